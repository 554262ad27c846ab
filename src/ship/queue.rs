//! The durable queue: published files not in the shipped ledger, oldest
//! period first, and the ledger itself (`store::shipped`).
//!
//! The queue is not a second list that could disagree with the disk: it
//! is the output directory's published files minus the ledger, computed
//! again on every pass. So a restart resumes where the last run stopped,
//! in the same order (period start, then `store::layout::TABLES` order:
//! a period's stacks before its samples), and a file retention deleted
//! simply leaves the queue.
//!
//! The decision a reader must know: the ledger is appended one line per
//! object (`O_APPEND`, one `write`, then `fdatasync`) only after the store
//! confirmed it, and rewritten (to a new file, then renamed over it) only
//! to drop lines of files that are gone. Everything is opened through the
//! output directory's fd, never following a symlink (`files::at`), and
//! created with an explicit mode.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use rustix::fs::{FileType, Mode, OFlags};

use crate::files::at;
use crate::store::layout::{stamp_of, CSV_EXT, PARQUET_EXT, TABLES};
use crate::store::shipped::{self, HEADER, LEDGER};

/// Mode of the ledger: it names files, nothing secret; others may read
/// it as they read the data.
const LEDGER_MODE: u32 = 0o644;

/// A published file waiting to be shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// `table/date=…/hour=…/name`.
    pub relative: String,
    pub table: String,
    pub date: String,
    pub hour: String,
    pub name: String,
    /// Start of its period (seconds since the epoch).
    pub start: i64,
}

impl Pending {
    /// Open the file for reading, never through a symlink.
    pub fn open(&self, out: &OwnedFd) -> std::io::Result<File> {
        let table = at::open_subdir(out, &self.table)?;
        let date = at::open_subdir(&table, &self.date)?;
        let hour = at::open_subdir(&date, &self.hour)?;
        at::open_file(&hour, &self.name)
    }
}

/// Every published data file of `out`, oldest period first.
pub fn published(out: &OwnedFd) -> Result<Vec<Pending>> {
    let mut files = Vec::new();
    for table in TABLES {
        let Ok(table_dir) = at::open_subdir(out, table) else {
            continue;
        };
        for (date, kind) in at::list(&table_dir).with_context(|| format!("cannot list {table}"))? {
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
                    let Some(start) = stamp_of(&name) else {
                        continue;
                    };
                    if kind != FileType::RegularFile || !data {
                        continue;
                    }
                    files.push(Pending {
                        relative: format!("{table}/{date}/{hour}/{name}"),
                        table: table.to_string(),
                        date: date.clone(),
                        hour: hour.clone(),
                        name,
                        start,
                    });
                }
            }
        }
    }
    let order = |table: &str| TABLES.iter().position(|t| *t == table);
    files.sort_by(|a, b| {
        (a.start, order(&a.table), &a.name).cmp(&(b.start, order(&b.table), &b.name))
    });
    Ok(files)
}

/// The shipped ledger of one output directory, open for appending.
pub struct Ledger {
    file: File,
    shipped: HashMap<String, String>,
}

impl Ledger {
    /// Open (or start) the ledger of `out` for `destination`, dropping the
    /// lines of files no longer in `present`. A ledger of another
    /// destination is replaced: its files go to the new one.
    pub fn open(out: &OwnedFd, destination: &str, present: &[Pending]) -> Result<Ledger> {
        let old = shipped::read(out)?;
        let mut shipped = if old.destination == destination {
            old.files
        } else {
            HashMap::new()
        };
        let present: HashSet<&str> = present.iter().map(|p| p.relative.as_str()).collect();
        let before = shipped.len();
        shipped.retain(|f, _| present.contains(f.as_str()));
        let exists = at::exists(out, LEDGER);
        if !exists || old.destination != destination || shipped.len() != before {
            rewrite(out, destination, &shipped)?;
        }
        let fd = rustix::fs::openat(
            out,
            LEDGER,
            OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot open {LEDGER} for appending"))?;
        Ok(Ledger {
            file: File::from(fd),
            shipped,
        })
    }

    pub fn contains(&self, relative: &str) -> bool {
        self.shipped.contains_key(relative)
    }

    /// Record a shipped file, durably.
    pub fn record(&mut self, relative: &str, size: u64, etag: &str) -> Result<()> {
        self.file
            .write_all(shipped::line(relative, size, etag).as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("cannot append to {LEDGER}"))?;
        self.shipped
            .insert(relative.to_string(), format!("{size} {etag}"));
        Ok(())
    }
}

/// Replace the ledger with one listing `files`: written beside it, made
/// durable, then renamed over it.
fn rewrite(out: &OwnedFd, destination: &str, files: &HashMap<String, String>) -> Result<()> {
    let tmp = format!("{LEDGER}.new");
    match at::remove_file(out, &tmp) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot remove {tmp}")),
    }
    let mut file =
        at::create_file(out, &tmp, LEDGER_MODE).with_context(|| format!("cannot create {tmp}"))?;
    let mut text = format!("{HEADER}{destination}\n");
    let mut sorted: Vec<(&String, &String)> = files.iter().collect();
    sorted.sort();
    for (relative, rest) in sorted {
        text.push_str(&format!("{relative} {rest}\n"));
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {tmp}"))?;
    rustix::fs::renameat(out, &tmp, out, LEDGER)
        .and_then(|()| rustix::fs::fsync(out))
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot replace {LEDGER}"))?;
    Ok(())
}
