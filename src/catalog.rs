//! Finding published files again: which files of a table can hold rows of
//! a time window.
//!
//! Readers (`report`, `flamegraph`, `export`) run as any user and see only
//! what the agent published: `<dir>/<table>/date=…/hour=…/<host>-<stamp>.<ext>`.
//! A file's name gives the second of its first row; its rows run until the
//! next file of the same host starts (a file can span the rest of its
//! rotation period, or less after a restart). So a file is selected when
//! that span overlaps the window — never by opening it — and the caller
//! still filters rows by their own timestamps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::output::rotate::stamp_of;
use crate::output::table::{CSV_EXT, PARQUET_EXT};

/// Format of a published file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileFormat {
    Csv,
    Parquet,
}

impl FileFormat {
    /// The format of a published file name, if it is a data file.
    pub fn of(name: &str) -> Option<FileFormat> {
        if name.ends_with(&format!(".{CSV_EXT}")) {
            Some(FileFormat::Csv)
        } else if name.ends_with(&format!(".{PARQUET_EXT}")) {
            Some(FileFormat::Parquet)
        } else {
            None
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            FileFormat::Csv => CSV_EXT,
            FileFormat::Parquet => PARQUET_EXT,
        }
    }
}

/// A half-open time window `[from_us, to_us)`, microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_us: i64,
    pub to_us: i64,
}

impl Window {
    pub fn contains(&self, ts_us: i64) -> bool {
        (self.from_us..self.to_us).contains(&ts_us)
    }

    /// Length in microseconds (at least 1).
    pub fn len_us(&self) -> i64 {
        (self.to_us - self.from_us).max(1)
    }
}

/// One published data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub table: String,
    /// Full path.
    pub path: PathBuf,
    /// Path below the data directory: `<table>/date=…/hour=…/<name>`.
    pub relative: PathBuf,
    pub format: FileFormat,
    /// `<host>-<stamp>[-N]`: the same for every table and format of a period.
    pub stem: String,
    pub host: String,
    /// Time of the first row (whole seconds).
    pub start_us: i64,
    /// Start of the host's next file of this table; `None` for its newest.
    pub end_us: Option<i64>,
    pub size: u64,
}

impl DataFile {
    /// Whether the file's span can hold rows of `window`.
    pub fn overlaps(&self, window: &Window) -> bool {
        self.start_us < window.to_us && self.end_us.is_none_or(|end| end > window.from_us)
    }
}

/// Which copy to read when a period was written in both formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    /// Parquet when present (reads faster), else CSV.
    Parquet,
    /// CSV when present, else Parquet.
    Csv,
    /// Every file, both formats.
    Both,
}

/// Every published data file of `table` under `dir`, oldest first. A
/// missing table directory is an empty list; an unreadable one an error
/// naming it.
pub fn list(dir: &Path, table: &str) -> Result<Vec<DataFile>> {
    let table_dir = dir.join(table);
    let mut files = Vec::new();
    let dates = match std::fs::read_dir(&table_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", table_dir.display()))
        }
    };
    for date in sorted_names(dates, &table_dir, "date=")? {
        let date_dir = table_dir.join(&date);
        let hours = std::fs::read_dir(&date_dir)
            .with_context(|| format!("cannot read {}", date_dir.display()))?;
        for hour in sorted_names(hours, &date_dir, "hour=")? {
            let hour_dir = date_dir.join(&hour);
            let names = std::fs::read_dir(&hour_dir)
                .with_context(|| format!("cannot read {}", hour_dir.display()))?;
            for entry in names {
                let entry = entry.with_context(|| format!("cannot read {}", hour_dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let (Some(format), Some(start)) = (FileFormat::of(&name), stamp_of(&name)) else {
                    continue;
                };
                let meta = entry
                    .metadata()
                    .with_context(|| format!("cannot stat {}", hour_dir.join(&name).display()))?;
                if !meta.is_file() {
                    continue;
                }
                let stem = name[..name.len() - format.ext().len() - 1].to_string();
                files.push(DataFile {
                    table: table.to_string(),
                    path: hour_dir.join(&name),
                    relative: Path::new(table).join(&date).join(&hour).join(&name),
                    format,
                    host: host_of(&stem).to_string(),
                    stem,
                    start_us: start * 1_000_000,
                    end_us: None,
                    size: meta.len(),
                });
            }
        }
    }
    files.sort_by(|a, b| {
        (&a.host, a.start_us, &a.stem, a.format).cmp(&(&b.host, b.start_us, &b.stem, b.format))
    });
    // Each file's rows end where the host's next file (of any format) begins.
    let mut starts: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for file in &files {
        starts
            .entry(file.host.as_str())
            .or_default()
            .push(file.start_us);
    }
    let ends: Vec<Option<i64>> = files
        .iter()
        .map(|file| {
            let host = &starts[file.host.as_str()];
            let next = host.partition_point(|&start| start <= file.start_us);
            host.get(next).copied()
        })
        .collect();
    for (file, end) in files.iter_mut().zip(ends) {
        file.end_us = end;
    }
    files.sort_by(|a, b| {
        (a.start_us, &a.host, &a.stem, a.format).cmp(&(b.start_us, &b.host, &b.stem, b.format))
    });
    Ok(files)
}

/// The files of `table` that can hold rows of `window`, one format per
/// period as `prefer` says, oldest first.
pub fn select(dir: &Path, table: &str, window: &Window, prefer: Prefer) -> Result<Vec<DataFile>> {
    let files: Vec<DataFile> = list(dir, table)?
        .into_iter()
        .filter(|file| file.overlaps(window))
        .collect();
    if prefer == Prefer::Both {
        return Ok(files);
    }
    let wanted = match prefer {
        Prefer::Csv => FileFormat::Csv,
        _ => FileFormat::Parquet,
    };
    let has_wanted = |stem: &str| files.iter().any(|f| f.stem == stem && f.format == wanted);
    Ok(files
        .iter()
        .filter(|file| file.format == wanted || !has_wanted(&file.stem))
        .cloned()
        .collect())
}

/// The host part of a stem `<host>-YYYYMMDDTHHMMSSZ[-N]`.
fn host_of(stem: &str) -> &str {
    let base = match stem.rsplit_once('-') {
        Some((rest, n)) if rest.ends_with('Z') && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => stem,
    };
    base.len()
        .checked_sub(17)
        .and_then(|cut| base.get(..cut))
        .unwrap_or(base)
}

fn sorted_names(entries: std::fs::ReadDir, parent: &Path, prefix: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", parent.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, relative: &str) {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn hosts_of_stems() {
        assert_eq!(host_of("web-1-20261122T130405Z"), "web-1");
        assert_eq!(host_of("web-1-20261122T130405Z-2"), "web-1");
        assert_eq!(host_of("db-20261122T130405Z"), "db");
    }

    #[test]
    fn spans_end_at_the_hosts_next_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(
            d,
            "samples/date=2026-11-22/hour=13/a-20261122T130000Z.csv.zst",
        );
        touch(
            d,
            "samples/date=2026-11-22/hour=13/a-20261122T130000Z.parquet",
        );
        touch(
            d,
            "samples/date=2026-11-22/hour=14/a-20261122T140000Z.csv.zst",
        );
        touch(
            d,
            "samples/date=2026-11-22/hour=13/b-20261122T133000Z.csv.zst",
        );
        touch(d, "samples/date=2026-11-22/hour=13/notes.txt");
        let files = list(d, "samples").unwrap();
        assert_eq!(files.len(), 4);
        let hour = 3_600_000_000;
        let a13 = 1_795_352_400_000_000; // 2026-11-22 13:00:00 UTC
        let find = |name: &str| files.iter().find(|f| f.path.ends_with(name)).unwrap();
        assert_eq!(find("a-20261122T130000Z.csv.zst").end_us, Some(a13 + hour));
        assert_eq!(find("a-20261122T130000Z.parquet").end_us, Some(a13 + hour));
        assert_eq!(find("a-20261122T140000Z.csv.zst").end_us, None);
        assert_eq!(find("b-20261122T133000Z.csv.zst").end_us, None);
        assert_eq!(find("b-20261122T133000Z.csv.zst").host, "b");

        let late = Window {
            from_us: a13 + hour + 1,
            to_us: a13 + 2 * hour,
        };
        let picked = select(d, "samples", &late, Prefer::Parquet).unwrap();
        let names: Vec<_> = picked.iter().map(|f| f.stem.as_str()).collect();
        assert_eq!(names, ["b-20261122T133000Z", "a-20261122T140000Z"]);

        let early = Window {
            from_us: a13,
            to_us: a13 + 60_000_000,
        };
        let picked = select(d, "samples", &early, Prefer::Parquet).unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].format, FileFormat::Parquet);
        let picked = select(d, "samples", &early, Prefer::Csv).unwrap();
        assert_eq!(picked[0].format, FileFormat::Csv);
        assert_eq!(select(d, "samples", &early, Prefer::Both).unwrap().len(), 2);
        assert!(list(d, "iorq").unwrap().is_empty());
    }
}
