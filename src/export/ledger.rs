//! What `export --keep-for` may delete: the ledger of the archives this
//! host's exports wrote into a directory.
//!
//! When export names the archive itself (`-o DIR/`), it records the
//! archive in `DIR/.taskscope-exports-<host>.jsonl`: its name, the end of
//! its window, and the identity of the file it created (device, inode,
//! size, owner). `--keep-for` deletes only archives of that ledger whose
//! window ended long enough ago *and* whose name still leads to that very
//! file. So another host's archives (another ledger), a user's file named
//! like an archive, an archive that was replaced or renamed, and archives
//! made before the ledger existed are never touched.
//!
//! The decision a reader must know, and why not the alternatives: a name
//! pattern (what export did before) matched any file; reading each
//! archive's manifest says which host made it but not whether this
//! export wrote the file (a copy looks the same) and costs a read of every
//! archive; an extended attribute travels with copies (`cp -a`) and is not
//! supported everywhere. The ledger is one small file, locked with
//! `flock` while it is read and rewritten (two exports take turns), and
//! trusted only if it is a regular file owned by the exporting user and
//! writable by nobody else.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// One archive this host's export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// File name in the ledger's directory.
    name: String,
    /// End of the archive's window, microseconds since the epoch (UTC).
    end_us: i64,
    dev: u64,
    ino: u64,
    size: u64,
    uid: u32,
}

/// The ledger of one directory, open and locked.
pub struct Ledger {
    dir: OwnedFd,
    dir_path: PathBuf,
    file: File,
    entries: Vec<Entry>,
}

/// The ledger's file name for `host`.
pub fn ledger_name(host: &str) -> String {
    format!(".taskscope-exports-{host}.jsonl")
}

impl Ledger {
    /// Open (create) and lock the ledger of `host`'s exports in `dir`.
    pub fn open(dir: &Path, host: &str) -> Result<Ledger> {
        let name = ledger_name(host);
        let path = dir.join(&name);
        let dir_fd = crate::files::at::open_dir(dir)
            .with_context(|| format!("cannot open {}", dir.display()))?;
        let fd = rustix::fs::openat(
            &dir_fd,
            name.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io::Error::from)
        .with_context(|| format!("cannot open the export ledger {}", path.display()))?;
        let st = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
        let euid = rustix::process::geteuid().as_raw();
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_uid != euid
            || st.st_mode & 0o022 != 0
        {
            bail!(
                "refusing the export ledger {}: it must be a regular file owned by uid {euid} \
                 and writable by nobody else (it is uid {}, mode {:04o})",
                path.display(),
                st.st_uid,
                st.st_mode & 0o7777
            );
        }
        rustix::fs::flock(&fd, FlockOperation::LockExclusive)
            .map_err(io::Error::from)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        let mut file = File::from(fd);
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(line) {
                Ok(entry) if plain_name(&entry.name) => entries.push(entry),
                _ => warn!(
                    "{}:{}: not an entry of the export ledger; ignored",
                    path.display(),
                    number + 1
                ),
            }
        }
        Ok(Ledger {
            dir: dir_fd,
            dir_path: dir.to_path_buf(),
            file,
            entries,
        })
    }

    /// Record the archive `name` (just written; its window ended at
    /// `end_us`), replacing any earlier entry of that name.
    pub fn record(&mut self, name: &str, end_us: i64) -> Result<()> {
        let st = rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io::Error::from)
            .with_context(|| format!("cannot inspect {}", self.dir_path.join(name).display()))?;
        self.entries.retain(|e| e.name != name);
        self.entries.push(Entry {
            name: name.to_string(),
            end_us,
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            uid: st.st_uid,
        });
        self.save()
    }

    /// Delete the recorded archives whose window ended before `oldest_us`
    /// and whose name still leads to the file export wrote (never `keep`);
    /// forget entries whose file is gone or is no longer that file.
    /// Returns the names deleted.
    pub fn prune(&mut self, oldest_us: i64, keep: &str) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        let mut kept = Vec::new();
        for entry in std::mem::take(&mut self.entries) {
            if !self.still_ours(&entry) {
                continue;
            }
            if entry.end_us >= oldest_us || entry.name == keep {
                kept.push(entry);
                continue;
            }
            match rustix::fs::unlinkat(&self.dir, entry.name.as_str(), AtFlags::empty()) {
                Ok(()) => {
                    info!(archive = %self.dir_path.join(&entry.name).display(), "deleted: older than --keep-for");
                    deleted.push(entry.name);
                }
                Err(err) => {
                    warn!(
                        "cannot delete {}: {err}",
                        self.dir_path.join(&entry.name).display()
                    );
                    kept.push(entry);
                }
            }
        }
        self.entries = kept;
        self.save()?;
        Ok(deleted)
    }

    /// Whether the entry's name still leads to the file export wrote.
    fn still_ours(&self, entry: &Entry) -> bool {
        match rustix::fs::statat(&self.dir, entry.name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                    && st.st_dev == entry.dev
                    && st.st_ino == entry.ino
                    && st.st_size as u64 == entry.size
                    && st.st_uid == entry.uid
            }
            Err(_) => false,
        }
    }

    /// Rewrite the ledger in place (the lock stays on this file).
    fn save(&mut self) -> Result<()> {
        let mut text = String::new();
        for entry in &self.entries {
            text.push_str(&serde_json::to_string(entry).context("cannot write the export ledger")?);
            text.push('\n');
        }
        let path = self.dir_path.clone();
        let write = |file: &mut File| -> io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(text.as_bytes())?;
            file.sync_data()
        };
        write(&mut self.file)
            .with_context(|| format!("cannot write the export ledger in {}", path.display()))
    }
}

/// A name of a file directly in the directory.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn only_recorded_archives_that_are_still_the_same_file_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        for name in [
            "old.tar.zst",
            "replaced.tar.zst",
            "young.tar.zst",
            "new.tar.zst",
        ] {
            std::fs::write(at(name), b"archive").unwrap();
        }
        std::fs::write(at("unrecorded.tar.zst"), b"mine").unwrap();
        {
            let mut ledger = Ledger::open(dir.path(), "h").unwrap();
            ledger.record("old.tar.zst", DAY).unwrap();
            ledger.record("replaced.tar.zst", DAY).unwrap();
            ledger.record("young.tar.zst", 40 * DAY).unwrap();
            ledger.record("new.tar.zst", DAY).unwrap();
        }
        // A user's file takes the name of a recorded archive.
        std::fs::remove_file(at("replaced.tar.zst")).unwrap();
        std::fs::write(at("replaced.tar.zst"), b"a user's file").unwrap();
        // Another host's ledger says nothing about this host's archives.
        let mut other = Ledger::open(dir.path(), "other").unwrap();
        assert!(other.prune(50 * DAY, "").unwrap().is_empty());
        drop(other);
        let mut ledger = Ledger::open(dir.path(), "h").unwrap();
        let deleted = ledger.prune(30 * DAY, "new.tar.zst").unwrap();
        assert_eq!(deleted, vec!["old.tar.zst".to_string()]);
        for name in [
            "replaced.tar.zst",
            "young.tar.zst",
            "new.tar.zst",
            "unrecorded.tar.zst",
        ] {
            assert!(at(name).exists(), "{name} was deleted");
        }
        let names: Vec<&str> = ledger.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["young.tar.zst", "new.tar.zst"],
            "the replaced one is forgotten"
        );
        drop(ledger);
        let text = std::fs::read_to_string(at(&ledger_name("h"))).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn a_ledger_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ledger_name("h"));
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = format!("{:#}", Ledger::open(dir.path(), "h").err().unwrap());
        assert!(err.contains("refusing the export ledger"), "{err}");
    }
}
