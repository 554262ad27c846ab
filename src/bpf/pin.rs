//! Pinning the thread table in a BPF filesystem, for other readers, and
//! the lock that says which agent owns a pin.
//!
//! The decision a reader must know: the agent holds an exclusive `flock`
//! on the pin directory for as long as its pin exists (bpffs holds no
//! lock files, but a directory can be locked), so a pin whose directory
//! is unlocked was left by an agent that is gone and is replaced; a live
//! agent's pin is never touched.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tracing::warn;

use super::probe::is_bpffs;
use super::skel::TaskscopeSkel;
use crate::files::at::open_dir;
use crate::files::locks::{self, Holder};

/// The pinned thread table, and the lock on its directory that says a
/// live agent owns it.
pub struct Pin {
    pub path: PathBuf,
    _lock: OwnedFd,
}

/// Pin the thread table under `dir` if `dir` is on a BPF filesystem and
/// no running agent owns it. The agent holds an exclusive `flock` on
/// `dir` for as long as its pin exists (bpffs holds no lock files, but a
/// directory can be locked), so a pin whose directory is unlocked was
/// left by an agent that is gone and is replaced; a live agent's pin is
/// never touched.
pub fn pin_table(skel: &mut TaskscopeSkel<'_>, dir: &Path) -> Option<Pin> {
    let parent = dir.parent().unwrap_or(dir);
    if !is_bpffs(parent) {
        warn!(
            "not pinning the thread table: {} is not a mounted BPF filesystem",
            parent.display()
        );
        return None;
    }
    if let Err(err) = std::fs::create_dir(dir) {
        if err.kind() != std::io::ErrorKind::AlreadyExists {
            warn!(
                "not pinning the thread table: cannot create {}: {err}",
                dir.display()
            );
            return None;
        }
    }
    let lock = match lock_pin_dir(dir) {
        Ok(lock) => lock,
        Err(err) => {
            warn!("not pinning the thread table: {err:#}");
            return None;
        }
    };
    let path = dir.join("threads");
    if std::fs::symlink_metadata(&path).is_ok() {
        warn!(
            "replacing {}: its agent is no longer running",
            path.display()
        );
        let _ = std::fs::remove_file(&path);
    }
    match skel.maps.threads.pin(&path) {
        Ok(()) => Some(Pin { path, _lock: lock }),
        Err(err) => {
            warn!("cannot pin the thread table at {}: {err}", path.display());
            None
        }
    }
}

/// Lock the pin directory `dir` for this agent, or say which agent has it.
fn lock_pin_dir(dir: &Path) -> Result<OwnedFd> {
    let fd = open_dir(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    match locks::try_lock(&fd).with_context(|| format!("cannot lock {}", dir.display()))? {
        Ok(()) => Ok(fd),
        Err(holder) => bail!(
            "{} belongs to a running taskscope agent{}; give this one another --pin-dir, or --no-pin",
            dir.display(),
            holder.pid_text()
        ),
    }
}

/// Who holds the pin directory's lock (free if there is no directory);
/// asks, never takes it.
pub fn pin_dir_holder(dir: &Path) -> Holder {
    open_dir(dir)
        .ok()
        .and_then(|fd| locks::flock_holder(&fd).ok())
        .unwrap_or(Holder::Free)
}
