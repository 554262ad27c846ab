//! Where the files are: tables, partitions, names, extensions, the
//! `.inprogress/` directory and its journals, and rotation periods.
//!
//! A period is a multiple of `--rotate` counted from the Unix epoch (UTC),
//! so hourly files start on the hour on every host. A file is named after
//! its first row's second and lives in the hive partition of that time:
//! `<table>/date=YYYY-MM-DD/hour=HH/<host>-YYYYMMDDTHHMMSSZ.<ext>`. The
//! period being written is a journal in `.inprogress/`,
//! `<table>-<host>-<stamp>.csv.zst.tmp`. The writer makes these names and
//! every reader finds files by them; this module is the one place that
//! spells them.

use std::time::Duration;

use crate::store::schema::{Iorq, Samples, Stacks, Syscalls, Table, Ticks};
use crate::store::timefmt::Civil;

/// Where files are written before they are complete.
pub const INPROGRESS_DIR: &str = ".inprogress";
/// Every table, in the order their files are written.
pub const TABLES: [&str; 5] = [
    Stacks::NAME,
    Samples::NAME,
    Syscalls::NAME,
    Iorq::NAME,
    Ticks::NAME,
];
/// Extension of CSV files.
pub const CSV_EXT: &str = "csv.zst";
/// Extension of Parquet files.
pub const PARQUET_EXT: &str = "parquet";
/// Suffix of files in `.inprogress/`.
pub const TMP_SUFFIX: &str = ".tmp";

/// Journal name of table `table`'s file `stem`.
pub fn journal_name(table: &str, stem: &str) -> String {
    format!("{table}-{stem}.{CSV_EXT}{TMP_SUFFIX}")
}

/// In-progress Parquet name of table `table`'s file `stem`.
pub fn parquet_tmp_name(table: &str, stem: &str) -> String {
    format!("{table}-{stem}.{PARQUET_EXT}{TMP_SUFFIX}")
}

/// The table and stem of a journal name made by `journal_name`.
pub fn parse_journal_name(name: &str) -> Option<(&str, &str)> {
    let base = name
        .strip_suffix(TMP_SUFFIX)?
        .strip_suffix(CSV_EXT)?
        .strip_suffix('.')?;
    base.split_once('-')
}

/// The host name, restricted to characters that are safe in file names:
/// what files (and export archives) are named after.
pub fn host_name() -> String {
    let raw = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

/// A half-open time range `[start_us, end_us)`, microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start_us: i64,
    pub end_us: i64,
}

impl Period {
    /// The period of length `rotate` that contains `ts_us`.
    pub fn containing(ts_us: i64, rotate: Duration) -> Period {
        let len = rotate.as_micros().max(1) as i64;
        let start_us = ts_us.div_euclid(len) * len;
        Period {
            start_us,
            end_us: start_us + len,
        }
    }

    pub fn contains(&self, ts_us: i64) -> bool {
        (self.start_us..self.end_us).contains(&ts_us)
    }
}

/// Where a file whose first row is at `first_us` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// `date=2026-11-22`
    pub date_dir: String,
    /// `hour=13`
    pub hour_dir: String,
    /// `host-20261122T130000Z` (without extension)
    pub stem: String,
}

impl FileName {
    pub fn new(host: &str, first_us: i64) -> FileName {
        let c = Civil::from_unix(first_us.div_euclid(1_000_000));
        FileName {
            date_dir: format!("date={}", c.date()),
            hour_dir: format!("hour={:02}", c.hour),
            stem: format!("{host}-{}", c.compact()),
        }
    }

    /// The file name of a stem as made by `new` (`<host>-<stamp>`, maybe
    /// with `-N` appended).
    pub fn from_stem(stem: &str) -> Option<FileName> {
        let start = stamp_of(stem)?;
        let c = Civil::from_unix(start);
        Some(FileName {
            date_dir: format!("date={}", c.date()),
            hour_dir: format!("hour={:02}", c.hour),
            stem: stem.to_string(),
        })
    }

    /// The final name with extension, `-N` added when `attempt` > 0.
    pub fn with_ext(&self, ext: &str, attempt: u32) -> String {
        if attempt == 0 {
            format!("{}.{ext}", self.stem)
        } else {
            format!("{}-{attempt}.{ext}", self.stem)
        }
    }
}

/// Start time (seconds since the epoch) in a file name or stem
/// `<host>-YYYYMMDDTHHMMSSZ[-N][.ext]`.
pub fn stamp_of(name: &str) -> Option<i64> {
    let base = name.split('.').next()?;
    let rest = match base.rsplit_once('-') {
        Some((rest, n))
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && rest.ends_with('Z') =>
        {
            rest
        }
        _ => base,
    };
    if rest.len() < 17 || !rest.is_char_boundary(rest.len() - 17) {
        return None;
    }
    let (host_dash, stamp) = rest.split_at(rest.len() - 16);
    if !host_dash.ends_with('-') {
        return None;
    }
    crate::store::timefmt::parse_compact(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_names_round_trip() {
        let name = journal_name("samples", "web-1-20261122T130405Z");
        assert_eq!(name, "samples-web-1-20261122T130405Z.csv.zst.tmp");
        assert_eq!(
            parse_journal_name(&name),
            Some(("samples", "web-1-20261122T130405Z"))
        );
        assert_eq!(
            parse_journal_name(&journal_name("ticks", "h-20261122T130405Z-2")),
            Some(("ticks", "h-20261122T130405Z-2"))
        );
        assert_eq!(parse_journal_name("samples-x.parquet.tmp"), None);
    }

    #[test]
    fn host_name_is_file_name_safe() {
        let host = host_name();
        assert!(!host.is_empty());
        assert!(
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)),
            "{host}"
        );
    }

    #[test]
    fn periods_are_aligned_to_the_epoch() {
        let hour = Duration::from_secs(3_600);
        // 2026-11-22 13:04:05.5 UTC
        let ts = 1_795_352_645_500_000;
        let p = Period::containing(ts, hour);
        assert_eq!(p.start_us, 1_795_352_400_000_000);
        assert_eq!(p.end_us - p.start_us, 3_600_000_000);
        assert!(p.contains(ts) && !p.contains(p.end_us));
        let m = Period::containing(ts, Duration::from_secs(60));
        assert_eq!(m.start_us, 1_795_352_640_000_000);
    }

    #[test]
    fn names_and_partitions() {
        let f = FileName::new("web-1", 1_795_352_645_500_000);
        assert_eq!(f.date_dir, "date=2026-11-22");
        assert_eq!(f.hour_dir, "hour=13");
        assert_eq!(f.with_ext("csv.zst", 0), "web-1-20261122T130405Z.csv.zst");
        assert_eq!(f.with_ext("csv.zst", 2), "web-1-20261122T130405Z-2.csv.zst");
        assert_eq!(FileName::from_stem(&f.stem), Some(f.clone()));
    }

    #[test]
    fn stamps_from_names() {
        assert_eq!(
            stamp_of("web-1-20261122T130405Z.csv.zst"),
            Some(1_795_352_645)
        );
        assert_eq!(
            stamp_of("web-1-20261122T130405Z-3.parquet"),
            Some(1_795_352_645)
        );
        assert_eq!(stamp_of("web-1-20261122T130405Z-3"), Some(1_795_352_645));
        assert_eq!(stamp_of("20261122T130405Z.csv.zst"), None);
        assert_eq!(stamp_of("notes.txt"), None);
    }
}
