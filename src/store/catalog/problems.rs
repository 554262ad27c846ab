//! What a reader could not use, and which periods an answer must leave out
//! because of it.
//!
//! The unit is the *period* (all tables' files of one `<host>-<stamp>`):
//! an answer that divides `samples` by `ticks` is right only over periods
//! whose files of both tables were read whole. So a damaged file, or a
//! table without a file for a period that others have, leaves out the
//! whole period and is named once as a [`Problem`]. These rules know
//! nothing of how files are read (the report's splitter today, a query
//! engine later): they take, per table, each file and why it could not be
//! read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Catalog, DataFile, Window};

/// One thing a reader could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    /// What is wrong and what it means for the answer (no trailing period).
    pub what: String,
}

impl Problem {
    pub fn new(path: &Path, what: impl Into<String>) -> Problem {
        Problem {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)
    }
}

/// One table's files as read for an answer, each with the reason it could
/// not be read whole (None: it was).
pub type TableReads<'a> = (&'a str, Vec<(&'a DataFile, Option<String>)>);

impl Catalog {
    /// The files of every table in `tables` for the periods that reach
    /// into `window` in any of them, so that the tables of one answer cover
    /// the same periods (`Catalog::select` per table).
    pub fn select_periods(
        &mut self,
        tables: &[&str],
        window: &Window,
        prefer: super::Prefer,
    ) -> Vec<Vec<DataFile>> {
        let all: Vec<Vec<DataFile>> = tables
            .iter()
            .map(|table| self.select(table, &Window::ALL, prefer))
            .collect();
        let stems: BTreeSet<&str> = all
            .iter()
            .flatten()
            .filter(|f| f.overlaps(window))
            .map(|f| f.stem.as_str())
            .collect();
        all.iter()
            .map(|files| {
                files
                    .iter()
                    .filter(|f| stems.contains(f.stem.as_str()))
                    .cloned()
                    .collect()
            })
            .collect()
    }

    /// The periods (stems) an answer combining `reads` must leave out: one
    /// of its files could not be read whole, or a table has no file for it
    /// while `needs(table, stem)`. Each cause becomes one problem: per bad
    /// file, per missing file, or once for a table missing altogether.
    pub fn leave_out(
        &mut self,
        reads: &[TableReads<'_>],
        needs: impl Fn(&str, &str) -> bool,
    ) -> BTreeSet<String> {
        let mut left_out = BTreeSet::new();
        for (_, files) in reads {
            for (file, reason) in files {
                if let Some(reason) = reason {
                    left_out.insert(file.stem.clone());
                    self.problems.push(Problem::new(
                        &file.path,
                        format!("{reason}; its period is left out of the answer"),
                    ));
                }
            }
        }
        let stems: BTreeSet<&str> = reads
            .iter()
            .flat_map(|(_, files)| files.iter().map(|(f, _)| f.stem.as_str()))
            .collect();
        for (table, files) in reads {
            let missing: Vec<&str> = stems
                .iter()
                .copied()
                .filter(|stem| needs(table, stem) && !files.iter().any(|(f, _)| f.stem == *stem))
                .collect();
            if missing.is_empty() {
                continue;
            }
            if files.is_empty() && !self.has_table(table) {
                self.problems.push(Problem::new(
                    &self.dir.join(table),
                    format!(
                        "missing: no {table} files, so {} period(s) are left out of the answer",
                        missing.len()
                    ),
                ));
            } else {
                for stem in &missing {
                    let relative = super::inprogress::published_relative(table, stem)
                        .map(|p| p.with_file_name(format!("{stem}.*")))
                        .unwrap_or_else(|| PathBuf::from(table));
                    self.problems.push(Problem::new(
                        &self.dir.join(relative),
                        "missing (the period has files of other tables); its period is left out of the answer",
                    ));
                }
            }
            left_out.extend(missing.iter().map(|s| s.to_string()));
        }
        left_out
    }
}

impl Window {
    /// Every time there is.
    pub const ALL: Window = Window {
        from_us: i64::MIN,
        to_us: i64::MAX,
    };
}

/// The window of an imported export archive: `<dir>/manifest.json`'s
/// `window`. None when `dir` holds no manifest.
pub fn archive_window(dir: &Path) -> Result<Option<Window>> {
    use std::io::Read;
    let path = dir.join("manifest.json");
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut text = String::new();
    file.take(256 << 20)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an export manifest; give the window with --since or --from/--to",
            path.display()
        )
    })?;
    let time = |key: &str| {
        value["window"][key]
            .as_str()
            .and_then(crate::store::timefmt::parse_timestamp_micros)
    };
    match (time("from"), time("to")) {
        (Some(from_us), Some(to_us)) if from_us < to_us => Ok(Some(Window { from_us, to_us })),
        _ => bail!(
            "{} has no window (from, to); give the window with --since or --from/--to",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::catalog::FileFormat;

    fn file(table: &str, stem: &str) -> DataFile {
        DataFile {
            table: table.into(),
            path: PathBuf::from(format!("/d/{table}/{stem}.csv.zst")),
            relative: PathBuf::from(format!("{table}/{stem}.csv.zst")),
            format: FileFormat::Csv,
            stem: stem.into(),
            host: "h".into(),
            start_us: 0,
            end_us: None,
            size: 1,
            in_progress: false,
            until_us: None,
        }
    }

    #[test]
    fn a_bad_or_missing_file_leaves_its_period_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ticks")).unwrap();
        let mut catalog = Catalog::open(dir.path()).unwrap();
        let (a, b, c) = (
            "h-20261122T130000Z",
            "h-20261122T140000Z",
            "h-20261122T150000Z",
        );
        let samples = [file("samples", a), file("samples", b), file("samples", c)];
        let ticks = [file("ticks", a), file("ticks", b)];
        let reads = [
            (
                "samples",
                vec![
                    (&samples[0], None),
                    (
                        &samples[1],
                        Some("row 3: weight_us 'x' is not a number".into()),
                    ),
                    (&samples[2], None),
                ],
            ),
            ("ticks", vec![(&ticks[0], None), (&ticks[1], None)]),
        ];
        let out = catalog.leave_out(&reads, |_, _| true);
        assert_eq!(out, BTreeSet::from([b.to_string(), c.to_string()]));
        let lines: Vec<String> = catalog.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("/d/samples/h-20261122T140000Z.csv.zst: row 3"));
        assert!(lines[1].contains("ticks/date=2026-11-22/hour=15/h-20261122T150000Z.*: missing"));

        // A table that is not there at all is one line.
        let mut catalog = Catalog::open(dir.path()).unwrap();
        let reads = [
            ("samples", vec![(&samples[0], None), (&samples[1], None)]),
            ("stacks", vec![]),
        ];
        assert_eq!(catalog.leave_out(&reads, |_, _| true).len(), 2);
        assert_eq!(catalog.problems.len(), 1);
        assert!(catalog.problems[0]
            .what
            .starts_with("missing: no stacks files, so 2"));
        // ... unless the answer does not need it.
        let mut catalog = Catalog::open(dir.path()).unwrap();
        assert!(catalog.leave_out(&reads, |t, _| t != "stacks").is_empty());
    }

    #[test]
    fn archive_windows() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(archive_window(dir.path()).unwrap(), None);
        let manifest = dir.path().join("manifest.json");
        std::fs::write(
            &manifest,
            r#"{"window": {"from": "2026-11-22 13:00:00.000000", "to": "2026-11-22 14:00:00.000000"}}"#,
        )
        .unwrap();
        let window = archive_window(dir.path()).unwrap().unwrap();
        assert_eq!(window.len_us(), 3_600_000_000);
        std::fs::write(&manifest, "{").unwrap();
        assert!(archive_window(dir.path()).is_err());
    }
}
