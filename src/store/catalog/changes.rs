//! A cheap sign that what a reader would see in the data directory has
//! changed: [`version`], a token made from directory entries and sizes
//! only (stat, never a read), so a live view can ask it every second and
//! read the files again only when it differs.
//!
//! The decision a reader must know: published files are never changed in
//! place — they are written elsewhere and renamed in, and retention or an
//! import deletes or renames whole files — so any change to the published
//! files of an hour changes the modification time of its `hour=HH`
//! directory. The token therefore stats directories, not files: for each
//! table every `date=`/`hour=` directory (its name, mtime and size), and
//! for the periods being written the journals' names plus the size of each
//! period's `ticks` journal, which grows at every flush. Other journals'
//! sizes are left out when their period has a ticks journal: a busy table
//! also grows between flushes, but readers use its rows only up to the
//! newest flushed tick (see `inprogress`), so that growth shows nothing
//! new. A week of hourly files is 5 tables × (1 + 7 + 7 × 24) directories
//! to list or stat, plus `.inprogress/` and its few journals.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::SystemTime;

use super::inprogress;
use crate::store::layout::TABLES;
use crate::store::schema::{Table, Ticks};

/// The token of a data directory, and how many entries it looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Equal for equal contents (within one process; not a stored value).
    pub token: u64,
    /// Directories and journals looked at: the cost of one token.
    pub entries: usize,
}

/// The token of `dir` as a reader would see it now. Directories that
/// cannot be listed count as their error, so a change of permission
/// changes the token too; nothing is followed through a symlink below the
/// table directories.
pub fn version(dir: &Path) -> Version {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut entries = 0;
    let (journals, problem) = inprogress::list(dir);
    problem.map(|p| p.to_string()).hash(&mut hasher);
    let ticked: BTreeSet<&str> = journals
        .iter()
        .filter(|j| j.table == Ticks::NAME)
        .map(|j| j.stem.as_str())
        .collect();
    for journal in &journals {
        entries += 1;
        (&journal.table, &journal.stem).hash(&mut hasher);
        if journal.table == Ticks::NAME || !ticked.contains(journal.stem.as_str()) {
            journal.size.hash(&mut hasher);
        }
    }
    for table in TABLES {
        table.hash(&mut hasher);
        entries += 1;
        for date in subdirectories(&dir.join(table), "date=", &mut hasher) {
            entries += 1;
            entries += subdirectories(&date, "hour=", &mut hasher).len();
        }
    }
    Version {
        token: hasher.finish(),
        entries,
    }
}

/// The subdirectories of `dir` named `prefix…`, each hashed with its name,
/// modification time and size (one `fstatat` each, not following a
/// symlink); an unreadable `dir` is hashed as its error.
fn subdirectories(dir: &Path, prefix: &str, hasher: &mut impl Hasher) -> Vec<std::path::PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            err.kind().hash(hasher);
            return Vec::new();
        }
    };
    let mut found: Vec<(String, Option<SystemTime>, u64)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(|m| m.is_dir())?;
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name, meta.modified().ok(), meta.len()))
        })
        .collect();
    found.sort();
    found.hash(hasher);
    found
        .into_iter()
        .map(|(name, _, _)| dir.join(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn write(dir: &Path, relative: &str, bytes: &[u8]) {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn append(dir: &Path, relative: &str, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(relative))
            .unwrap();
        file.write_all(bytes).unwrap();
    }

    /// Directory times come from the kernel's coarse clock (a few ms): a
    /// test that renames into a directory right after creating it waits a
    /// tick so the two changes get different times.
    fn tick() {
        std::thread::sleep(Duration::from_millis(20));
    }

    #[test]
    fn the_token_changes_with_what_readers_see_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hour = "date=2026-11-22/hour=13";
        write(
            d,
            &format!("samples/{hour}/a-20261122T130000Z.csv.zst"),
            b"x",
        );
        write(d, &format!("ticks/{hour}/a-20261122T130000Z.csv.zst"), b"x");
        let ticks = ".inprogress/ticks-a-20261122T140000Z.csv.zst.tmp";
        let samples = ".inprogress/samples-a-20261122T140000Z.csv.zst.tmp";
        write(d, ticks, b"ts\n");
        write(d, samples, b"ts,tid\n");
        let first = version(d);
        // Nothing changed: the same token (and its cost: 2 journals; per
        // table its directory, and for the two written ones a date and
        // an hour).
        assert_eq!(version(d), first);
        assert_eq!(first.entries, 2 + 5 + 2 * 2);

        // A flush: the ticks journal grows.
        append(d, ticks, b"2026-11-22 14:00:01\n");
        let flushed = version(d);
        assert_ne!(flushed, first);
        assert_eq!(version(d), flushed);
        // The samples journal grows between flushes: nothing a reader
        // uses (rows after the newest flushed tick are not read).
        append(d, samples, b"2026-11-22 14:00:02,1\n");
        assert_eq!(version(d), flushed);

        // The period is published: journals renamed to the hour directory.
        tick();
        let published = "date=2026-11-22/hour=14/a-20261122T140000Z.csv.zst";
        for (table, journal) in [("ticks", ticks), ("samples", samples)] {
            std::fs::create_dir_all(d.join(table).join("date=2026-11-22/hour=14")).unwrap();
            std::fs::rename(d.join(journal), d.join(table).join(published)).unwrap();
        }
        let after = version(d);
        assert_ne!(after, flushed);
        assert_eq!(version(d), after);

        // Retention deletes an old file: its hour directory changes.
        tick();
        std::fs::remove_file(d.join(format!("samples/{hour}/a-20261122T130000Z.csv.zst"))).unwrap();
        let retained = version(d);
        assert_ne!(retained, after);
        assert_eq!(version(d), retained);

        // A period without a ticks journal is read to its end: its growth
        // counts.
        let lone = ".inprogress/samples-b-20261122T150000Z.csv.zst.tmp";
        write(d, lone, b"ts,tid\n");
        let opened = version(d);
        assert_ne!(opened, retained);
        append(d, lone, b"2026-11-22 15:00:01,1\n");
        assert_ne!(version(d), opened);
    }
}
