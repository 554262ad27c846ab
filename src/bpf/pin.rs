//! Pinning the thread table in a BPF filesystem, for other readers
//! (`taskscope top`, `bpf::live`), and the lock that says which agent owns
//! a pin.
//!
//! The decision a reader must know: the agent holds an exclusive `flock`
//! on the pin directory for as long as its pins exist (bpffs holds no
//! lock files, but a directory can be locked), so pins whose directory is
//! unlocked were left by an agent that is gone and are replaced; a live
//! agent's pins are never touched.
//!
//! What is pinned: `threads` (the entries), and beside it what decoding an
//! entry needs (`syscall_args`, `waits`, `fds`) and the
//! pool of stack captures (`stacks`: one entry when the agent runs without
//! stacks, so a reader tells by its size); `threads` is pinned last
//! and removed first, so a reader that finds it finds the rest. The
//! directory gets the files' modes and group (`--file-mode`, `--group`);
//! the pins themselves are 0600, root's: a reader must open them
//! read-write to mmap them (`bpf::live`), which would let it write the
//! table, so only root reads the live table.
//!
//! When the pin directory's parent is `/sys/fs/bpf` and no BPF filesystem
//! is mounted there (as on machines without systemd's mount), the agent
//! mounts one (mode 0755, so only root creates entries in it) and leaves
//! it mounted, as systemd would have; anywhere else it only warns.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tracing::{info, warn};

use super::probe::is_bpffs;
use super::skel::TaskscopeSkel;
use crate::files::at::{open_dir, Permissions};
use crate::files::locks::{self, Holder};

/// Where a BPF filesystem is usually mounted, and the only place the agent
/// mounts one itself: a mount anywhere else would hide what is there.
pub const USUAL_BPFFS: &str = "/sys/fs/bpf";

/// Mode of the pins: a reader opens them read-write (`bpf::live`).
pub const PIN_MODE: u32 = 0o600;

/// The pins, in the order they are made (`threads` last).
pub const PINNED_MAPS: [&str; 5] = ["syscall_args", "waits", "fds", "stacks", "threads"];

/// The pinned maps, and the lock on their directory that says a live
/// agent owns them.
pub struct Pin {
    /// The pin of the thread table itself (`DIR/threads`).
    pub path: PathBuf,
    /// Every pin made, `threads` last.
    pins: Vec<PathBuf>,
    _lock: OwnedFd,
}

impl Drop for Pin {
    fn drop(&mut self) {
        // `threads` first, so no reader finds it without the others; the
        // directory's lock is released after (field order).
        for path in self.pins.iter().rev() {
            if let Err(err) = std::fs::remove_file(path) {
                warn!("cannot remove pin {}: {err}", path.display());
            }
        }
    }
}

/// Mount a BPF filesystem at [`USUAL_BPFFS`] if `parent` is that
/// directory and nothing is mounted there. True when `parent` is a BPF
/// filesystem afterwards.
fn ensure_bpffs(parent: &Path) -> bool {
    if is_bpffs(parent) {
        return true;
    }
    if parent != Path::new(USUAL_BPFFS) {
        warn!(
            "not pinning the thread table: {} is not a mounted BPF filesystem (mount -t bpf bpf {0}, or give a --pin-dir under {USUAL_BPFFS})",
            parent.display()
        );
        return false;
    }
    match mount_bpffs(parent) {
        Ok(()) => {
            info!(
                "mounted a BPF filesystem at {} for the pinned thread table",
                parent.display()
            );
            true
        }
        Err(err) => {
            warn!(
                "not pinning the thread table: no BPF filesystem at {} and mounting one failed: {err}; `taskscope top` and other live readers cannot read this agent's table (mount -t bpf bpf {0}, then restart the agent)",
                parent.display()
            );
            false
        }
    }
}

fn mount_bpffs(at: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let target = CString::new(at.as_os_str().as_bytes())?;
    let (source, fstype, data) = (c"bpf", c"bpf", c"mode=0755");
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; mount(2) copies them.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Create the pin directory, or check the one there: a directory (not a
/// symlink) of this user that no one else may write to.
fn pin_directory(dir: &Path, perms: &Permissions) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir)
                .with_context(|| format!("cannot inspect {}", dir.display()))?;
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            if !meta.file_type().is_dir() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
                bail!(
                    "{} is not a directory of this user that others cannot write to; remove it or give another --pin-dir",
                    dir.display()
                );
            }
        }
        Err(err) => return Err(err).with_context(|| format!("cannot create {}", dir.display())),
    }
    share(dir, perms.dir_mode, perms)
}

/// Give `path` `mode` and the files' group.
fn share(path: &Path, mode: u32, perms: &Permissions) -> Result<()> {
    if let Some(gid) = perms.group {
        std::os::unix::fs::lchown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} group {gid}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Pin the thread table and what decoding it needs under `dir` (mounting
/// the usual BPF filesystem first when it is missing), unless a running
/// agent owns `dir`. Problems are warnings: the agent runs unpinned.
pub fn pin_table(skel: &mut TaskscopeSkel<'_>, dir: &Path, perms: &Permissions) -> Option<Pin> {
    let parent = dir.parent().unwrap_or(dir);
    if !ensure_bpffs(parent) {
        return None;
    }
    if let Err(err) = pin_directory(dir, perms) {
        warn!("not pinning the thread table: {err:#}");
        return None;
    }
    let lock = match lock_pin_dir(dir) {
        Ok(lock) => lock,
        Err(err) => {
            warn!("not pinning the thread table: {err:#}");
            return None;
        }
    };
    // Stale pins of an agent that is gone ("threads" first).
    for name in PINNED_MAPS.iter().rev() {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            warn!(
                "replacing {}: its agent is no longer running",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
        }
    }
    let mut pin = Pin {
        path: dir.join("threads"),
        pins: Vec::new(),
        _lock: lock,
    };
    for name in PINNED_MAPS {
        let path = dir.join(name);
        let maps = &mut skel.maps;
        let pinned = match name {
            "syscall_args" => maps.syscall_args.pin(&path),
            "waits" => maps.waits.pin(&path),
            "fds" => maps.fds.pin(&path),
            "stacks" => maps.stacks.pin(&path),
            _ => maps.threads.pin(&path),
        };
        if let Err(err) = pinned {
            warn!("cannot pin the {name} map at {}: {err}", path.display());
            return None; // dropping `pin` removes what was pinned
        }
        pin.pins.push(path.clone());
        let owner_only = Permissions {
            group: None,
            ..*perms
        };
        if let Err(err) = share(&path, PIN_MODE, &owner_only) {
            warn!("not pinning the thread table: {err:#}");
            return None;
        }
    }
    Some(pin)
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
