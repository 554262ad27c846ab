//! Touching the file system safely, for a process that runs as root and
//! writes where other users read: operations relative to an open
//! directory that never follow a symlink (`at`), what the agent trusts
//! (`trust`), user-named output paths (`destination`) and who holds a
//! lock (`locks`).
//!
//! The decision a reader must know: this is the bottom layer. It knows
//! nothing of taskscope's data, so the agent's writer, the readers and the
//! loader share one implementation of each rule instead of one each.

pub mod at;
pub mod destination;
pub mod locks;
pub mod trust;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::Mode;

/// A new private (0700) directory `.<name>.<purpose>-<pid>` next to
/// `target`, for files being prepared before they are moved into place.
pub fn private_dir_next_to(target: &Path, purpose: &str) -> Result<PathBuf> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent.join(format!(".{name}.{purpose}-{}", std::process::id()));
    rustix::fs::mkdir(&dir, Mode::from_raw_mode(0o700))
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
