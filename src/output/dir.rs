//! The output directory, opened safely.
//!
//! The agent runs as root and writes where other users read, so every path
//! operation after the first open is relative to a directory fd, refuses to
//! follow symlinks (`O_NOFOLLOW`), creates with explicit modes (`O_EXCL`,
//! then `fchmod`, so the umask does not matter) and publishes with
//! `RENAME_NOREPLACE`. Renaming or replacing a directory above the output
//! directory after start-up cannot redirect the writes.
//!
//! [`check`] inspects the output directory and its ancestors without
//! writing anything; [`OutputDir::create`] then creates what is missing.
//!
//! Shared directories such as /tmp: the output directory may be created
//! inside a directory that others can write to if that directory is sticky
//! and owned by root (as systemd-tmpfiles does). The sticky bit's
//! guarantee is what makes this safe: in a sticky directory, only the
//! owner of an entry, the directory's owner and root can rename or remove
//! the entry, so the root-owned directory taskscope creates there cannot
//! be moved, replaced or deleted by anyone else. A name someone else
//! created first is not root's and is refused, as is a symlink at the name
//! (`O_NOFOLLOW`) and anything other than a directory; the checks are made
//! again on the opened descriptor, so nothing swapped in between check and
//! open is used. A non-sticky writable directory, or a sticky one owned by
//! another user (who may rename entries in it), is refused.
//! [`check_ancestors`] and [`check_private`] are the rules for everything
//! the root agent trusts (the settings file too).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::{Mode, OFlags};

use crate::files;
use crate::files::at::{ensure_dir_with, verify_dir, Permissions, FILE_MODE};
use crate::files::locks::{self, Holder};
use crate::files::trust::{check_ancestors, check_private, USE_INSTEAD};

/// Lock file that keeps two agents out of one directory.
const LOCK_NAME: &str = ".taskscope.lock";

/// The result of [`check`]: what exists and what must be created.
#[derive(Debug)]
pub struct OutputPlan {
    path: PathBuf,
    /// The nearest existing directory, and the names to create below it.
    existing: PathBuf,
    missing: Vec<String>,
}

/// Check that `path` (absolute) can be the output directory, and that no
/// other agent writes there (its lock is looked up, not taken). Writes
/// nothing.
pub fn check(path: &Path) -> Result<OutputPlan> {
    let owner = rustix::process::geteuid().as_raw();
    let mut existing = path.to_path_buf();
    let mut missing = Vec::new();
    loop {
        match std::fs::symlink_metadata(&existing) {
            Ok(meta) => {
                let what = if missing.is_empty() {
                    "output directory"
                } else {
                    "parent directory"
                };
                if meta.file_type().is_symlink() {
                    bail!(
                        "{what} {} is a symlink; refusing to follow it (give the real path)",
                        existing.display()
                    );
                }
                if !meta.is_dir() {
                    bail!(
                        "{what} {} exists and is not a directory",
                        existing.display()
                    );
                }
                if missing.is_empty() {
                    check_private(&existing, meta.uid(), meta.mode(), owner, what)?;
                    let holder = lock_holder(&existing).unwrap_or(Holder::Free);
                    if holder != Holder::Free {
                        bail!(
                            "{}: another taskscope agent{} is already writing here; stop it, or give another --output-dir",
                            existing.display(),
                            holder.pid_text()
                        );
                    }
                } else {
                    check_parent(&existing, meta.uid(), meta.mode(), owner)?;
                }
                // Catches read-only file systems before anything is loaded.
                rustix::fs::access(&existing, rustix::fs::Access::WRITE_OK)
                    .map_err(io::Error::from)
                    .with_context(|| format!("cannot write to {}", existing.display()))?;
                break;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let name = existing
                    .file_name()
                    .ok_or_else(|| anyhow!("cannot create {}", path.display()))?
                    .to_str()
                    .ok_or_else(|| anyhow!("{} is not valid UTF-8", path.display()))?
                    .to_string();
                missing.push(name);
                existing.pop();
            }
            Err(err) => {
                return Err(err).with_context(|| format!("cannot inspect {}", existing.display()))
            }
        }
    }
    missing.reverse();
    check_ancestors(&path.display().to_string(), &existing, USE_INSTEAD)?;
    Ok(OutputPlan {
        path: path.to_path_buf(),
        existing,
        missing,
    })
}

/// The nearest existing directory above a missing output directory: it
/// must be ours, or root's and sticky if others can write to it.
fn check_parent(path: &Path, uid: u32, mode: u32, owner: u32) -> Result<()> {
    if mode & 0o022 == 0 || (uid != 0 && uid != owner) {
        return check_private(path, uid, mode, owner, "parent directory");
    }
    if mode & 0o1000 == 0 {
        bail!(
            "parent directory {} is writable by other users (mode {:04o}) and not sticky: \
             they could rename what taskscope creates in it; {USE_INSTEAD}",
            path.display(),
            mode & 0o7777,
        );
    }
    Ok(())
}

/// The open output directory. Holds the lock for the agent's lifetime.
pub struct OutputDir {
    path: PathBuf,
    fd: OwnedFd,
    perms: Permissions,
    _lock: File,
}

impl OutputDir {
    /// Create whatever `plan` found missing and open the directory.
    pub fn create(plan: &OutputPlan) -> Result<OutputDir> {
        OutputDir::create_with(plan, Permissions::default())
    }

    /// As `create`, giving what is created `perms`.
    pub fn create_with(plan: &OutputPlan, perms: Permissions) -> Result<OutputDir> {
        let mut fd = if plan.missing.is_empty() {
            open_dir(&plan.existing)?
        } else {
            open_parent(&plan.existing)?
        };
        let mut at = plan.existing.clone();
        for name in &plan.missing {
            at.push(name);
            fd = ensure_dir_with(&fd, name, &perms)
                .with_context(|| format!("cannot create {}", at.display()))?;
        }
        let lock = lock(&fd).with_context(|| format!("cannot lock {}", plan.path.display()))?;
        Ok(OutputDir {
            path: plan.path.clone(),
            fd,
            perms,
            _lock: lock,
        })
    }

    /// Permissions of what is created inside.
    pub fn perms(&self) -> &Permissions {
        &self.perms
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Whether the path still names the directory this one has open (not
    /// removed, renamed away or replaced since it was opened).
    pub fn still_at_path(&self) -> Result<bool> {
        let opened = rustix::fs::fstat(&self.fd)
            .map_err(io::Error::from)
            .with_context(|| format!("cannot inspect the open {}", self.path.display()))?;
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => {
                Ok(meta.dev() == opened.st_dev as u64 && meta.ino() == opened.st_ino as u64)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err).with_context(|| format!("cannot inspect {}", self.path.display())),
        }
    }

    /// Create the directory again at its path after it was removed, with
    /// the checks and permissions of the first start ([`check`]).
    pub fn recreate(&self) -> Result<OutputDir> {
        let plan = check(&self.path)?;
        OutputDir::create_with(&plan, self.perms)
    }
}

/// Open an existing directory by path, not following a final symlink, and
/// verify what was actually opened.
fn open_dir(path: &Path) -> Result<OwnedFd> {
    let fd =
        files::at::open_dir(path).with_context(|| format!("cannot open {}", path.display()))?;
    verify_dir(&fd).with_context(|| format!("refusing {}", path.display()))?;
    Ok(fd)
}

/// Open the existing directory that the first missing one is created in,
/// checking what was opened by the rule of [`check_parent`].
fn open_parent(path: &Path) -> Result<OwnedFd> {
    let fd =
        files::at::open_dir(path).with_context(|| format!("cannot open {}", path.display()))?;
    let st = rustix::fs::fstat(&fd)
        .map_err(io::Error::from)
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    let owner = rustix::process::geteuid().as_raw();
    check_parent(path, st.st_uid, st.st_mode, owner)?;
    Ok(fd)
}

fn lock(dir: &OwnedFd) -> Result<File> {
    let fd = rustix::fs::openat(
        dir,
        LOCK_NAME,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )
    .map_err(io::Error::from)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE)).map_err(io::Error::from)?;
    match locks::try_lock(&fd)? {
        Ok(()) => Ok(File::from(fd)),
        Err(holder) => bail!(
            "another taskscope agent{} is already writing here",
            holder.pid_text()
        ),
    }
}

/// Whether an agent holds the lock of output directory `path` (and which
/// one), without taking it; free if there is no lock file.
pub fn lock_holder(path: &Path) -> io::Result<Holder> {
    match rustix::fs::open(
        path.join(LOCK_NAME),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => locks::flock_holder(&fd),
        Err(rustix::io::Errno::NOENT) => Ok(Holder::Free),
        Err(err) => Err(err.into()),
    }
}

impl AsFd for OutputDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::at::*;
    use rustix::fs::FileType;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tmp() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn creates_missing_directories_with_explicit_modes() {
        let base = tmp();
        let out = base.path().join("a/b/out");
        let old = rustix::process::umask(Mode::from_raw_mode(0o077));
        let plan = check(&out).unwrap();
        assert!(!out.exists(), "check must not write");
        let dir = OutputDir::create(&plan).unwrap();
        rustix::process::umask(old);
        for p in [base.path().join("a"), base.path().join("a/b"), out.clone()] {
            assert_eq!(
                std::fs::metadata(&p).unwrap().mode() & 0o7777,
                DIR_MODE,
                "{}",
                p.display()
            );
        }
        let f = create_file(dir.fd(), "x", FILE_MODE).unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o7777, FILE_MODE);
        assert!(create_file(dir.fd(), "x", FILE_MODE).is_err(), "O_EXCL");
    }

    #[test]
    fn refuses_symlinked_output_dir() {
        let base = tmp();
        let real = base.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = base.path().join("link");
        symlink(&real, &link).unwrap();
        let err = check(&link).unwrap_err().to_string();
        assert!(err.contains("is a symlink"), "{err}");
    }

    #[test]
    fn refuses_world_writable_dirs() {
        let base = tmp();
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check(&open).unwrap_err().to_string();
        assert!(err.contains("writable by other users"), "{err}");
        // Creating into it is refused as well.
        let err = check(&open.join("out")).unwrap_err().to_string();
        assert!(
            err.contains("parent directory") && err.contains("writable by other users"),
            "{err}"
        );
        // The advice is a directory of its own, never a chmod of a shared
        // directory.
        let err = check(&open).unwrap_err().to_string();
        assert!(
            err.contains("/var/lib/taskscope") && !err.contains("chmod"),
            "{err}"
        );
    }

    /// A sticky, root-owned, world-writable parent (like /tmp): creating the
    /// output directory in it is accepted; everything another user could
    /// have placed at the name is refused.
    #[test]
    fn sticky_root_owned_parents_like_tmp() {
        let base = tmp();
        let shared = base.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let out = shared.join("out");
        let dir = OutputDir::create(&check(&out).unwrap()).unwrap();
        let meta = std::fs::symlink_metadata(&out).unwrap();
        assert!(meta.is_dir());
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, DIR_MODE));
        drop(dir);
        // Once it exists, it is used as any root-owned directory.
        OutputDir::create(&check(&out).unwrap()).unwrap();
        // The shared directory itself is not an output directory.
        let err = check(&shared).unwrap_err().to_string();
        assert!(
            err.contains("shared directory")
                && err.contains("/tmp/taskscope")
                && !err.contains("chmod"),
            "{err}"
        );

        let nobody = Some(rustix::fs::Uid::from_raw(65534));
        // Another user's directory at the name, made before the check...
        let theirs = shared.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        rustix::fs::chown(&theirs, nobody, None).unwrap();
        let err = check(&theirs).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
        // ... or between the check and the creation.
        let late = shared.join("late");
        let plan = check(&late).unwrap();
        std::fs::create_dir(&late).unwrap();
        rustix::fs::chown(&late, nobody, None).unwrap();
        let err = format!("{:#}", OutputDir::create(&plan).err().unwrap());
        assert!(err.contains("owned by uid 65534"), "{err}");
        // A symlink planted at the name after the check is not followed.
        let planted = shared.join("planted");
        let plan = check(&planted).unwrap();
        let target = base.path().join("target");
        std::fs::create_dir(&target).unwrap();
        symlink(&target, &planted).unwrap();
        assert!(OutputDir::create(&plan).is_err());
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

        // Sticky but owned by another user: they may rename our entries.
        rustix::fs::chown(&shared, nobody, None).unwrap();
        let err = check(&shared.join("other")).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
        // Not sticky: anyone may rename our entries.
        rustix::fs::chown(&shared, Some(rustix::fs::Uid::from_raw(0)), None).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check(&shared.join("other")).unwrap_err().to_string();
        assert!(
            err.contains("not sticky") && !err.contains("chmod"),
            "{err}"
        );
        // Made non-sticky between check and creation: refused on the fd.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let plan = check(&shared.join("other")).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(OutputDir::create(&plan).is_err());
        assert!(!shared.join("other").exists());
    }

    #[test]
    fn refuses_dirs_owned_by_others() {
        let base = tmp();
        let theirs = base.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        rustix::fs::chown(&theirs, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
        let err = check(&theirs).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
        let err = check(&theirs.join("sub/out")).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn refuses_symlinks_inside() {
        let base = tmp();
        let plan = check(&base.path().join("out")).unwrap();
        let dir = OutputDir::create(&plan).unwrap();
        symlink("/etc", base.path().join("out/samples")).unwrap();
        assert!(ensure_dir(dir.fd(), "samples").is_err());
        symlink("/etc/passwd", base.path().join("out/f")).unwrap();
        assert!(create_file(dir.fd(), "f", FILE_MODE).is_err());
    }

    #[test]
    fn permissions_follow_the_file_mode_and_group() {
        assert_eq!(
            Permissions::new(0o640, Some(4)).unwrap(),
            Permissions {
                file_mode: 0o640,
                dir_mode: 0o750,
                group: Some(4)
            }
        );
        assert_eq!(Permissions::new(0o600, None).unwrap().dir_mode, 0o700);
        for bad in [0o666, 0o646, 0o755, 0o400, 0o4644] {
            assert!(Permissions::new(bad, None).is_err(), "{bad:o}");
        }
        let base = tmp();
        let perms = Permissions::new(0o640, Some(4)).unwrap();
        let plan = check(&base.path().join("out")).unwrap();
        let dir = OutputDir::create_with(&plan, perms).unwrap();
        let sub = ensure_dir_with(dir.fd(), "samples", &perms).unwrap();
        let file = create_file_with(&sub, "f", &perms).unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o640, 4));
        let meta = std::fs::metadata(base.path().join("out/samples")).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o750, 4));
        assert_eq!(
            list(&sub).unwrap(),
            vec![("f".to_string(), FileType::RegularFile)]
        );
        assert_eq!(size_of(&sub, "f").unwrap(), 0);
    }

    #[test]
    fn one_agent_per_directory() {
        let base = tmp();
        let out = base.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let plan = check(&out).unwrap();
        let second_plan = check(&out).unwrap();
        let _first = OutputDir::create(&plan).unwrap();
        // Checked before a second agent loads anything, naming the holder.
        let err = format!("{:#}", check(&out).unwrap_err());
        let holder = format!("another taskscope agent (pid {})", std::process::id());
        assert!(err.contains(&holder), "{err}");
        // And the lock itself, for one that checked before the first locked.
        let err = format!("{:#}", OutputDir::create(&second_plan).err().unwrap());
        assert!(err.contains(&holder), "{err}");
    }

    #[test]
    fn publish_never_replaces() {
        let base = tmp();
        let dir = OutputDir::create(&check(&base.path().join("out")).unwrap()).unwrap();
        create_file(dir.fd(), "a.tmp", FILE_MODE).unwrap();
        create_file(dir.fd(), "b", FILE_MODE).unwrap();
        assert!(publish(dir.fd(), "a.tmp", dir.fd(), "b").is_err());
        publish(dir.fd(), "a.tmp", dir.fd(), "c").unwrap();
        assert!(exists(dir.fd(), "c") && !exists(dir.fd(), "a.tmp"));
    }
}
