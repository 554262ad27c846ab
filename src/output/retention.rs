//! Retention: keep the output directory under `--max-disk` and younger
//! than `--max-age` by deleting whole periods, oldest first.
//!
//! A period is every published file (of every table and format) that
//! starts at the same second — the files one open period produced. Files in
//! `.inprogress/` are never deleted, but their size counts, so the limit
//! holds for what is on disk. The directory is walked on every pass
//! (through directory fds, never following links), so the limit holds
//! across restarts and for files left by earlier runs.
//!
//! With `--ship-to`, a period is kept until every file of it is in the
//! shipped ledger (`store::shipped`), however old: only `--max-disk`
//! deletes a period that is not shipped, and such deletions are counted
//! (`Swept::unshipped_files`, the `unshipped_deleted` column of `ticks`)
//! and logged as a warning.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::{Context, Result};
use rustix::fs::FileType;
use tracing::{debug, info, warn};

use crate::files::at;
use crate::store::layout::{stamp_of, CSV_EXT, PARQUET_EXT};
use crate::store::shipped;

/// Limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_age: Duration,
}

/// What a pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub files: usize,
    pub bytes: u64,
    /// Bytes on disk after the pass (published and in progress).
    pub remaining: u64,
    /// Of `files`, those not shipped yet (`--ship-to`, over `--max-disk`).
    pub unshipped_files: usize,
}

struct Published {
    table: String,
    date: String,
    hour: String,
    name: String,
    size: u64,
}

/// Delete what `limits` no longer allow among the published files of
/// `tables` under `out`; `now_secs` is the current time. With
/// `ship_to` (the `--ship-to` destination), periods not shipped there
/// are deleted only over `limits.max_bytes`.
pub fn enforce(
    out: &OwnedFd,
    inprogress: &OwnedFd,
    tables: &[&str],
    limits: Retention,
    now_secs: i64,
    ship_to: Option<&str>,
) -> Result<Swept> {
    let shipped = match ship_to {
        Some(destination) => {
            Some(shipped::shipped_to(out, destination).context("cannot read what was shipped")?)
        }
        None => None,
    };
    let is_shipped = |file: &Published| {
        shipped.as_ref().is_none_or(|set| {
            set.contains_key(&format!(
                "{}/{}/{}/{}",
                file.table, file.date, file.hour, file.name
            ))
        })
    };
    let mut periods: BTreeMap<i64, Vec<Published>> = BTreeMap::new();
    let mut total: u64 = 0;
    for (name, kind) in at::list(inprogress).context("cannot list .inprogress")? {
        if kind == FileType::RegularFile {
            total += at::size_of(inprogress, &name).unwrap_or(0);
        }
    }
    for table in tables {
        for file in published(out, table)? {
            total += file.size;
            if let Some(start) = stamp_of(&file.name) {
                periods.entry(start).or_default().push(file);
            }
        }
    }

    let oldest_allowed = now_secs - limits.max_age.as_secs() as i64;
    let mut swept = Swept::default();
    while let Some((&start, files)) = periods.first_key_value() {
        let over_disk = total > limits.max_bytes;
        if start >= oldest_allowed && !over_disk {
            break;
        }
        if !over_disk && !files.iter().all(&is_shipped) {
            // Old enough to go but not shipped yet: kept, and so is every
            // later period (they go in order once shipped).
            break;
        }
        let files = periods.remove(&start).expect("present");
        for file in &files {
            if !is_shipped(file) {
                swept.unshipped_files += 1;
            }
            let table = at::open_subdir(out, &file.table)?;
            let date = at::open_subdir(&table, &file.date)?;
            let hour = at::open_subdir(&date, &file.hour)?;
            at::remove_file(&hour, &file.name)
                .with_context(|| format!("cannot delete {}/{}", file.table, file.name))?;
            total = total.saturating_sub(file.size);
            swept.files += 1;
            swept.bytes += file.size;
            debug!(file = %format!("{}/{}/{}/{}", file.table, file.date, file.hour, file.name), "retention deleted");
            // Partitions left empty go too.
            if at::remove_empty_dir(&date, &file.hour).unwrap_or(false) {
                let _ = at::remove_empty_dir(&table, &file.date);
            }
        }
    }
    swept.remaining = total;
    if swept.unshipped_files > 0 {
        warn!(
            files = swept.unshipped_files,
            max_disk = limits.max_bytes,
            "retention deleted periods that were not shipped yet: the output directory is over --max-disk (is the object store reachable?)"
        );
    }
    if swept.files > 0 {
        info!(
            files = swept.files,
            bytes = swept.bytes,
            remaining = total,
            "retention deleted the oldest periods"
        );
    }
    Ok(swept)
}

/// Published data files of `table`: `table/date=*/hour=*/*.{csv.zst,parquet}`.
fn published(out: &OwnedFd, table: &str) -> Result<Vec<Published>> {
    let mut files = Vec::new();
    let Ok(table_dir) = at::open_subdir(out, table) else {
        return Ok(files);
    };
    for (date, kind) in at::list(&table_dir)? {
        if kind != FileType::Directory || !date.starts_with("date=") {
            continue;
        }
        let Ok(date_dir) = at::open_subdir(&table_dir, &date) else {
            continue;
        };
        for (hour, kind) in at::list(&date_dir)? {
            if kind != FileType::Directory || !hour.starts_with("hour=") {
                continue;
            }
            let Ok(hour_dir) = at::open_subdir(&date_dir, &hour) else {
                continue;
            };
            for (name, kind) in at::list(&hour_dir)? {
                let data = name.ends_with(&format!(".{CSV_EXT}"))
                    || name.ends_with(&format!(".{PARQUET_EXT}"));
                if kind != FileType::RegularFile || !data {
                    continue;
                }
                let size = at::size_of(&hour_dir, &name).unwrap_or(0);
                files.push(Published {
                    table: table.to_string(),
                    date: date.clone(),
                    hour: hour.clone(),
                    name,
                    size,
                });
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::at::{create_file, ensure_dir, FILE_MODE};
    use crate::output::dir::{check, OutputDir};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &OwnedFd, name: &str, bytes: usize) {
        create_file(dir, name, FILE_MODE)
            .unwrap()
            .write_all(&vec![b'x'; bytes])
            .unwrap();
    }

    #[test]
    fn deletes_oldest_periods_first_and_empty_partitions() {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = OutputDir::create(&check(&base.path().join("out")).unwrap()).unwrap();
        let inprogress = ensure_dir(out.fd(), ".inprogress").unwrap();
        write(&inprogress, "samples-h-20261122T140000Z.csv.zst.tmp", 100);
        for (table, size) in [("samples", 1_000), ("ticks", 100)] {
            let t = ensure_dir(out.fd(), table).unwrap();
            let d = ensure_dir(&t, "date=2026-11-22").unwrap();
            for hour in ["11", "12", "13"] {
                let h = ensure_dir(&d, &format!("hour={hour}")).unwrap();
                write(&h, &format!("h-20261122T{hour}0000Z.csv.zst"), size);
                write(&h, &format!("h-20261122T{hour}0000Z.parquet"), size / 2);
            }
        }
        // 3 periods of 1650 bytes + 100 in progress; allow 3500: the oldest goes.
        let now = stamp_of("h-20261122T140000Z").unwrap();
        let limits = Retention {
            max_bytes: 3_500,
            max_age: Duration::from_secs(86_400),
        };
        let swept = enforce(
            out.fd(),
            &inprogress,
            &["samples", "ticks"],
            limits,
            now,
            None,
        )
        .unwrap();
        assert_eq!(
            swept,
            Swept {
                files: 4,
                bytes: 1_650,
                remaining: 3_400,
                unshipped_files: 0,
            }
        );
        assert!(!base
            .path()
            .join("out/samples/date=2026-11-22/hour=11")
            .exists());
        assert!(base
            .path()
            .join("out/samples/date=2026-11-22/hour=12/h-20261122T120000Z.csv.zst")
            .exists());
        // Max age: periods starting more than 90 minutes ago go.
        let limits = Retention {
            max_bytes: u64::MAX,
            max_age: Duration::from_secs(90 * 60),
        };
        let swept = enforce(
            out.fd(),
            &inprogress,
            &["samples", "ticks"],
            limits,
            now,
            None,
        )
        .unwrap();
        assert_eq!(swept.files, 4);
        assert!(base
            .path()
            .join("out/ticks/date=2026-11-22/hour=13")
            .exists());
        // The file being written is never deleted, even over the limit.
        let limits = Retention {
            max_bytes: 0,
            max_age: Duration::from_secs(86_400),
        };
        enforce(
            out.fd(),
            &inprogress,
            &["samples", "ticks"],
            limits,
            now,
            None,
        )
        .unwrap();
        assert!(base
            .path()
            .join("out/.inprogress/samples-h-20261122T140000Z.csv.zst.tmp")
            .exists());
        assert!(!base.path().join("out/samples/date=2026-11-22").exists());
    }

    #[test]
    fn unshipped_periods_stay_unless_over_max_disk() {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = OutputDir::create(&check(&base.path().join("out")).unwrap()).unwrap();
        let inprogress = ensure_dir(out.fd(), ".inprogress").unwrap();
        let t = ensure_dir(out.fd(), "samples").unwrap();
        let d = ensure_dir(&t, "date=2026-11-22").unwrap();
        for hour in ["11", "12", "13"] {
            let h = ensure_dir(&d, &format!("hour={hour}")).unwrap();
            write(&h, &format!("h-20261122T{hour}0000Z.parquet"), 100);
        }
        let destination = "s3://bucket/prefix";
        let mut ledger = create_file(out.fd(), shipped::LEDGER, FILE_MODE).unwrap();
        write!(
            ledger,
            "{}{destination}\n{}",
            shipped::HEADER,
            shipped::line(
                "samples/date=2026-11-22/hour=11/h-20261122T110000Z.parquet",
                100,
                "\"e\""
            )
        )
        .unwrap();
        let now = stamp_of("h-20261122T140000Z").unwrap();
        let old = Retention {
            max_bytes: u64::MAX,
            max_age: Duration::from_secs(90 * 60),
        };
        // Hours 11 and 12 are too old; only the shipped 11 goes.
        let swept = enforce(
            out.fd(),
            &inprogress,
            &["samples"],
            old,
            now,
            Some(destination),
        )
        .unwrap();
        assert_eq!((swept.files, swept.unshipped_files), (1, 0));
        assert!(base
            .path()
            .join("out/samples/date=2026-11-22/hour=12")
            .exists());
        // A ledger of another destination ships nothing.
        let swept = enforce(
            out.fd(),
            &inprogress,
            &["samples"],
            old,
            now,
            Some("s3://other"),
        )
        .unwrap();
        assert_eq!(swept.files, 0);
        // Over --max-disk, unshipped periods go too, and are counted.
        let full = Retention {
            max_bytes: 100,
            max_age: Duration::from_secs(86_400),
        };
        let swept = enforce(
            out.fd(),
            &inprogress,
            &["samples"],
            full,
            now,
            Some(destination),
        )
        .unwrap();
        assert_eq!((swept.files, swept.unshipped_files), (1, 1));
        assert!(!base
            .path()
            .join("out/samples/date=2026-11-22/hour=12")
            .exists());
        assert!(base
            .path()
            .join("out/samples/date=2026-11-22/hour=13")
            .exists());
    }
}
