//! Finding the data again: which files of a table can hold rows of a time
//! window, the period being written included, and what could not be used.
//!
//! Readers (`report`, `flamegraph`, `export`) run as any user and see what
//! the agent published, `<dir>/<table>/date=…/hour=…/<host>-<stamp>.<ext>`,
//! plus the journals of the periods being written in `<dir>/.inprogress/`
//! (`inprogress`: read up to their last complete row). A file's name gives
//! the second of its first row; its rows run until the next file of the
//! same host starts (a file can span the rest of its rotation period, or
//! less after a restart). So a file is selected when that span overlaps
//! the window — never by opening it — and the caller still filters rows by
//! their own timestamps.
//!
//! The decision a reader must know: nothing unreadable is skipped in
//! silence. What cannot be used — a directory that cannot be listed, a
//! damaged file, a period missing a table (`problems`) — is collected as a
//! [`Problem`] that the reading command prints, one line each, and turns
//! into exit status 3 (an incomplete answer).
//!
//! A live view asks [`version`] (`changes`) whether anything it would
//! read has changed, from directory entries and sizes only, before it
//! reads again.

mod changes;
mod inprogress;
mod problems;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::store::layout::{stamp_of, CSV_EXT, PARQUET_EXT};
pub use changes::{version, Version};
pub use inprogress::{journal_reader, open, published_paths, Opened, TolerantEnd};
pub use problems::{archive_window, Problem, TableReads};

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
        self.to_us.saturating_sub(self.from_us).max(1)
    }

    /// "2026-11-22 03:00:00 to 2026-11-22 04:00:00 UTC" (whole seconds).
    pub fn text(&self) -> String {
        format!(
            "{} to {} UTC",
            second_stamp(self.from_us),
            second_stamp(self.to_us)
        )
    }
}

/// A timestamp to the second, "2026-11-22 03:12:00".
fn second_stamp(us: i64) -> String {
    let mut text = String::new();
    crate::store::timefmt::write_timestamp_micros(&mut text, us);
    text.truncate(19);
    text
}

/// One data file: published, or the journal of a period being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub table: String,
    /// Full path.
    pub path: PathBuf,
    /// Path below the data directory: `<table>/date=…/hour=…/<name>` (for
    /// a journal, where its period will be published).
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
    /// A journal in `.inprogress/`: read it up to its last complete row
    /// (`open`, `journal_reader`).
    pub in_progress: bool,
    /// Rows after this time are not used: the newest complete tick of a
    /// period that was being written when the catalog was opened (set on
    /// all its files, also one published since; `inprogress`). None: no
    /// bound.
    pub until_us: Option<i64>,
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

/// The first and newest period of one host's files of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpan {
    pub host: String,
    pub periods: usize,
    /// Start of the first period, microseconds.
    pub first_us: i64,
    /// Start of the newest period, microseconds.
    pub newest_us: i64,
}

/// The data directory as a reader sees it. Opening it lists the journals
/// of the periods being written and reads their newest complete tick
/// first, before any published file is listed (see `inprogress`).
pub struct Catalog {
    dir: PathBuf,
    journals: Vec<inprogress::Journal>,
    /// Newest complete tick of each in-progress period with a ticks
    /// journal, by stem (`i64::MIN`: none yet).
    until: BTreeMap<String, i64>,
    /// What could not be used, in the order it was found.
    pub problems: Vec<Problem>,
}

impl Catalog {
    /// Look at `dir`. An error when it is not a directory, so a typo in
    /// --dir is not reported as "no data".
    pub fn open(dir: &Path) -> Result<Catalog> {
        if !dir.is_dir() {
            bail!(
                "{} is not a directory (the agent's output directory, --dir)",
                dir.display()
            );
        }
        let (journals, problem) = inprogress::list(dir);
        let mut catalog = Catalog {
            dir: dir.to_path_buf(),
            journals,
            until: BTreeMap::new(),
            problems: problem.into_iter().collect(),
        };
        let ticks: Vec<DataFile> = catalog
            .journals
            .iter()
            .filter(|j| {
                j.table == <crate::store::schema::Ticks as crate::store::schema::Table>::NAME
            })
            .filter_map(|j| catalog.journal_file(j))
            .collect();
        for file in ticks {
            let newest = inprogress::newest_tick(&file).unwrap_or(i64::MIN);
            catalog.until.insert(file.stem, newest);
        }
        Ok(catalog)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn journal_file(&self, journal: &inprogress::Journal) -> Option<DataFile> {
        let start = stamp_of(&journal.stem)?;
        Some(DataFile {
            table: journal.table.clone(),
            path: journal.path.clone(),
            relative: inprogress::published_relative(&journal.table, &journal.stem)?,
            format: FileFormat::Csv,
            host: host_of(&journal.stem).to_string(),
            stem: journal.stem.clone(),
            start_us: start * 1_000_000,
            end_us: None,
            size: journal.size,
            in_progress: true,
            // A period without a ticks journal has no bound (and no ticks:
            // readers that need them leave it out).
            until_us: self.until.get(&journal.stem).copied(),
        })
    }

    /// Whether `table` has a directory or a journal: a table never written
    /// (no --track) is not a missing one.
    pub fn has_table(&self, table: &str) -> bool {
        self.dir.join(table).is_dir() || self.journals.iter().any(|j| j.table == table)
    }

    /// Every data file of `table`, published and in progress, oldest first.
    /// A journal whose period was also found published is left out (the
    /// published file has every row). Directories that cannot be listed
    /// are problems, skipped.
    pub fn list(&mut self, table: &str) -> Vec<DataFile> {
        let mut files = self.published(table);
        let journals: Vec<DataFile> = self
            .journals
            .iter()
            .filter(|j| j.table == table)
            .filter(|j| !files.iter().any(|f| f.stem == j.stem))
            .filter_map(|j| self.journal_file(j))
            .collect();
        files.extend(journals);
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
        files
    }

    /// The published files of `table`, in no particular order.
    fn published(&mut self, table: &str) -> Vec<DataFile> {
        let table_dir = self.dir.join(table);
        let mut files = Vec::new();
        let Some(dates) = self.read_dir(&table_dir, "date=") else {
            return files;
        };
        for date in dates {
            let date_dir = table_dir.join(&date);
            let Some(hours) = self.read_dir(&date_dir, "hour=") else {
                continue;
            };
            for hour in hours {
                let hour_dir = date_dir.join(&hour);
                let entries = match std::fs::read_dir(&hour_dir) {
                    Ok(entries) => entries,
                    Err(err) => {
                        self.problems
                            .push(Problem::new(&hour_dir, format!("cannot read ({err})")));
                        continue;
                    }
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let (Some(format), Some(start)) = (FileFormat::of(&name), stamp_of(&name))
                    else {
                        continue;
                    };
                    // DirEntry::metadata does not follow a symlink.
                    let Ok(meta) = entry.metadata() else {
                        continue;
                    };
                    if !meta.is_file() {
                        continue;
                    }
                    let stem = name[..name.len() - format.ext().len() - 1].to_string();
                    // Published since the catalog was opened: read it to
                    // the same tick as the other tables' journals.
                    let until_us = self.until.get(&stem).copied();
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
                        in_progress: false,
                        until_us,
                    });
                }
            }
        }
        files
    }

    /// Names of the subdirectories of `dir` that start with `prefix`,
    /// sorted; None (and a problem unless it does not exist) when it
    /// cannot be read.
    fn read_dir(&mut self, dir: &Path, prefix: &str) -> Option<Vec<String>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                self.problems
                    .push(Problem::new(dir, format!("cannot read ({err})")));
                return None;
            }
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(prefix))
            .collect();
        names.sort();
        Some(names)
    }

    /// The files of `table` that can hold rows of `window`, one format per
    /// period as `prefer` says, oldest first.
    pub fn select(&mut self, table: &str, window: &Window, prefer: Prefer) -> Vec<DataFile> {
        let files: Vec<DataFile> = self
            .list(table)
            .into_iter()
            .filter(|file| file.overlaps(window))
            .collect();
        if prefer == Prefer::Both {
            return files;
        }
        let wanted = match prefer {
            Prefer::Csv => FileFormat::Csv,
            _ => FileFormat::Parquet,
        };
        let has_wanted = |stem: &str| files.iter().any(|f| f.stem == stem && f.format == wanted);
        files
            .iter()
            .filter(|file| file.format == wanted || !has_wanted(&file.stem))
            .cloned()
            .collect()
    }

    /// Nothing of `table` to answer from in `window`: no data files at
    /// all, or where the data is (per host: how many periods, the first
    /// and newest start). The one error every reader gives for it.
    pub fn no_data(&mut self, table: &str, window: &Window) -> anyhow::Error {
        let dir = self.dir().display().to_string();
        let spans = self.spans(table);
        if spans.is_empty() {
            return anyhow::anyhow!(
                "no {table} files under {dir} (the agent writes {dir}/{table}/date=*/hour=*/ and {dir}/.inprogress/; is it running with --output-dir {dir}?)"
            );
        }
        let hosts: Vec<String> = spans
            .iter()
            .map(|s| {
                format!(
                    "{}: {} period(s), the first from {}, the newest from {}",
                    s.host,
                    s.periods,
                    second_stamp(s.first_us),
                    second_stamp(s.newest_us)
                )
            })
            .collect();
        anyhow::anyhow!(
            "the window {} holds no {table} rows; the data under {dir} is elsewhere in time ({}); give --since or --from/--to",
            window.text(),
            hosts.join("; ")
        )
    }

    /// Per host, how many periods `table` has and when the first and the
    /// newest start: where the data is, for a window that holds none.
    pub fn spans(&mut self, table: &str) -> Vec<HostSpan> {
        let mut by_host: BTreeMap<String, (std::collections::BTreeSet<String>, i64, i64)> =
            BTreeMap::new();
        for file in self.list(table) {
            let entry = by_host.entry(file.host.clone()).or_insert((
                Default::default(),
                i64::MAX,
                i64::MIN,
            ));
            entry.0.insert(file.stem);
            entry.1 = entry.1.min(file.start_us);
            entry.2 = entry.2.max(file.start_us);
        }
        by_host
            .into_iter()
            .map(|(host, (stems, first_us, newest_us))| HostSpan {
                host,
                periods: stems.len(),
                first_us,
                newest_us,
            })
            .collect()
    }
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
        let mut catalog = Catalog::open(d).unwrap();
        let files = catalog.list("samples");
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
        let picked = catalog.select("samples", &late, Prefer::Parquet);
        let names: Vec<_> = picked.iter().map(|f| f.stem.as_str()).collect();
        assert_eq!(names, ["b-20261122T133000Z", "a-20261122T140000Z"]);

        let early = Window {
            from_us: a13,
            to_us: a13 + 60_000_000,
        };
        let picked = catalog.select("samples", &early, Prefer::Parquet);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].format, FileFormat::Parquet);
        let picked = catalog.select("samples", &early, Prefer::Csv);
        assert_eq!(picked[0].format, FileFormat::Csv);
        assert_eq!(catalog.select("samples", &early, Prefer::Both).len(), 2);
        assert!(catalog.list("iorq").is_empty());
        assert!(catalog.problems.is_empty());
    }

    #[test]
    fn journals_join_the_listing_unless_their_period_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(
            d,
            "samples/date=2026-11-22/hour=13/a-20261122T130000Z.csv.zst",
        );
        touch(d, ".inprogress/samples-a-20261122T130000Z.csv.zst.tmp");
        touch(d, ".inprogress/samples-a-20261122T140000Z.csv.zst.tmp");
        touch(d, ".inprogress/samples-a-20261122T140000Z.parquet.tmp");
        touch(
            d,
            ".inprogress/samples-a-20261122T120000Z.csv.zst.tmp.broken",
        );
        touch(d, ".inprogress/ticks-a-20261122T140000Z.csv.zst.tmp");
        let mut catalog = Catalog::open(d).unwrap();
        let files = catalog.list("samples");
        let got: Vec<(&str, bool)> = files
            .iter()
            .map(|f| (f.stem.as_str(), f.in_progress))
            .collect();
        assert_eq!(
            got,
            [("a-20261122T130000Z", false), ("a-20261122T140000Z", true)]
        );
        let journal = &files[1];
        assert_eq!(
            journal.relative,
            Path::new("samples/date=2026-11-22/hour=14/a-20261122T140000Z.csv.zst")
        );
        assert_eq!(files[0].end_us, Some(journal.start_us));
        // The ticks journal holds no complete tick: no row is usable yet.
        assert_eq!(journal.until_us, Some(i64::MIN));
        assert!(catalog.has_table("ticks") && !catalog.has_table("iorq"));
        let spans = catalog.spans("samples");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].periods, 2);
    }
}
