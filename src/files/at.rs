//! Operations relative to an open directory, for a process that runs as
//! root and writes where other users read.
//!
//! Every path operation after the first open is relative to a directory
//! fd, refuses to follow symlinks (`O_NOFOLLOW`), creates with explicit
//! modes (`O_EXCL`, then `fchmod`, so the umask does not matter) and
//! publishes with `RENAME_NOREPLACE`. So renaming or replacing a directory
//! above the one opened cannot redirect what is written.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, CWD};

/// Mode of directories taskscope creates, by default.
pub const DIR_MODE: u32 = 0o755;
/// Mode of files taskscope creates, by default.
pub const FILE_MODE: u32 = 0o644;

/// Modes and group of what taskscope creates (`--file-mode`, `--group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    pub file_mode: u32,
    /// The file mode with search (x) wherever it has read.
    pub dir_mode: u32,
    pub group: Option<u32>,
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions {
            file_mode: FILE_MODE,
            dir_mode: DIR_MODE,
            group: None,
        }
    }
}

impl Permissions {
    /// Permissions for files of `file_mode`, owned by group `group`.
    /// Refuses modes that let anyone but the owner write, or execute.
    pub fn new(file_mode: u32, group: Option<u32>) -> Result<Permissions> {
        if file_mode & !0o777 != 0 {
            bail!("--file-mode {file_mode:o} has bits other than rwx for owner, group and others");
        }
        if file_mode & 0o022 != 0 {
            bail!("--file-mode {file_mode:04o} lets others than the owner write; use e.g. 0644 or 0640");
        }
        if file_mode & 0o111 != 0 {
            bail!("--file-mode {file_mode:04o} makes data files executable");
        }
        if file_mode & 0o600 != 0o600 {
            bail!("--file-mode {file_mode:04o} must let the owner read and write");
        }
        let dir_mode = file_mode | ((file_mode & 0o444) >> 2);
        Ok(Permissions {
            file_mode,
            dir_mode,
            group,
        })
    }

    fn apply(&self, fd: &OwnedFd, mode: u32) -> io::Result<()> {
        if let Some(gid) = self.group {
            rustix::fs::fchown(fd, None, Some(rustix::fs::Gid::from_raw(gid)))?;
        }
        // After chown: changing the group clears set-id bits, and the
        // umask must not matter.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }
}

/// Open directory `name` of `dir` (a path relative to it, or an absolute
/// path with [`CWD`]) for reading, never through a symlink at its last
/// component, never as anything but a directory.
pub fn open_dir_at(dir: impl AsFd, name: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open the directory at `path` as [`open_dir_at`] does.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    open_dir_at(CWD, path)
}

/// Open subdirectory `name` of `parent`, creating it (mode 0755) if missing.
pub fn ensure_dir(parent: &OwnedFd, name: &str) -> Result<OwnedFd> {
    ensure_dir_with(parent, name, &Permissions::default())
}

/// Open subdirectory `name` of `parent`, creating it with `perms` if
/// missing.
pub fn ensure_dir_with(parent: &OwnedFd, name: &str, perms: &Permissions) -> Result<OwnedFd> {
    let created = match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(perms.dir_mode)) {
        Ok(()) => true,
        Err(rustix::io::Errno::EXIST) => false,
        Err(err) => return Err(io::Error::from(err)).with_context(|| format!("mkdir {name}")),
    };
    let fd = open_dir_at(parent, name)
        .with_context(|| format!("cannot open directory {name} (a symlink?)"))?;
    if created {
        perms.apply(&fd, perms.dir_mode)?;
    }
    verify_dir(&fd).with_context(|| format!("refusing directory {name}"))?;
    Ok(fd)
}

/// Refuse an opened directory that is not ours or that others can write to.
pub fn verify_dir(fd: &OwnedFd) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(io::Error::from)?;
    let owner = rustix::process::geteuid().as_raw();
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        bail!("not a directory");
    }
    if st.st_uid != owner {
        bail!("owned by uid {}, not {owner}", st.st_uid);
    }
    if st.st_mode & 0o022 != 0 {
        bail!("writable by other users (mode {:04o})", st.st_mode & 0o7777);
    }
    Ok(())
}

/// Create a new file `name` in `dir` with exactly `mode`; fails if anything
/// (file or symlink) already has that name.
pub fn create_file(dir: &OwnedFd, name: &str, mode: u32) -> io::Result<File> {
    create_file_with(
        dir,
        name,
        &Permissions {
            file_mode: mode,
            ..Permissions::default()
        },
    )
}

/// Create a new file `name` in `dir` with `perms`; fails if anything (file
/// or symlink) already has that name.
pub fn create_file_with(dir: &OwnedFd, name: &str, perms: &Permissions) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(perms.file_mode),
    )?;
    perms.apply(&fd, perms.file_mode)?;
    Ok(File::from(fd))
}

/// Open an existing regular file `name` in `dir` for reading, never
/// through a symlink.
pub fn open_file(dir: &OwnedFd, name: &str) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Open subdirectory `name` of `dir` if it exists, never through a symlink.
pub fn open_subdir(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    open_dir_at(dir, name)
}

/// Names of the entries of `dir` with their types (no `.` and `..`).
pub fn list(dir: &OwnedFd) -> io::Result<Vec<(String, FileType)>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push((name, entry.file_type()));
        }
    }
    Ok(out)
}

/// Size in bytes of entry `name` of `dir` (not following symlinks).
pub fn size_of(dir: &OwnedFd, name: &str) -> io::Result<u64> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?.st_size as u64)
}

/// Remove the empty subdirectory `name` of `dir`; false if not empty.
pub fn remove_empty_dir(dir: &OwnedFd, name: &str) -> io::Result<bool> {
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::NOTEMPTY) | Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Move `from` (in `from_dir`) to `to` (in `to_dir`) without replacing
/// anything; makes both directory entries durable.
pub fn publish(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> io::Result<()> {
    rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE)?;
    rustix::fs::fsync(to_dir)?;
    rustix::fs::fsync(from_dir)?;
    Ok(())
}

/// Remove file `name` from `dir` (never a directory, never through a link).
pub fn remove_file(dir: &OwnedFd, name: &str) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Cut regular file `name` of `dir` back to `len` bytes (never through a
/// link) and make that durable. Needs no free space.
pub fn truncate_file(dir: &OwnedFd, name: &str, len: u64) -> io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::ftruncate(&fd, len)?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// Whether `name` exists in `dir` (as anything, symlinks included).
pub fn exists(dir: &OwnedFd, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}
