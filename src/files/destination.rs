//! Writing to a path the user named: `flamegraph -o`, `export -o`,
//! `import --dir`.
//!
//! These commands often run as root, so the path is treated as a request,
//! not a licence: what it names is looked at first (`lstat`, never
//! following a symlink) and
//!
//! - nothing there: the file is built under a temporary name in the same
//!   directory and renamed into place without replacing anything
//!   (`RENAME_NOREPLACE`), so readers never see half a file;
//! - a regular file: replaced the same way, but only with `--force`, and
//!   by an atomic exchange that is undone if what was there is no longer a
//!   regular file (someone swapped it meanwhile);
//! - a character device or a FIFO (`/dev/null`, `/dev/stdout`, a named
//!   pipe): written to directly, in place, never replaced;
//! - anything else (a symlink, a directory, a socket, a block device):
//!   refused with a one-line error, nothing written.
//!
//! The decision a reader must know: the check and the replacement are
//! separated in time, so the replacement itself re-checks (the exchange
//! hands back what it replaced); `rename(2)` alone would happily put a
//! regular file in place of `/dev/null`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, CWD};

/// What a user-named path holds now, and so how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing: created.
    New,
    /// A regular file, to be replaced (`--force` was given).
    Replace,
    /// A character device or FIFO: written in place.
    Stream,
}

/// A checked file destination.
#[derive(Debug, Clone)]
pub struct Destination {
    path: PathBuf,
    kind: Kind,
    force: bool,
}

/// How a user-named path that exists is described in messages.
fn describe(meta: &std::fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_symlink() {
        "a symlink"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

impl Destination {
    /// Decide how `path` can be written; writes nothing. `force` allows
    /// replacing an existing regular file.
    pub fn check(path: &Path, force: bool) -> Result<Destination> {
        let kind = match std::fs::symlink_metadata(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Kind::New,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot inspect {}", path.display()))
            }
            Ok(meta) => {
                let kind = meta.file_type();
                if kind.is_file() {
                    if !force {
                        bail!(
                            "{} exists; give another path, or --force to replace it",
                            path.display()
                        );
                    }
                    Kind::Replace
                } else if kind.is_char_device() || kind.is_fifo() {
                    Kind::Stream
                } else if kind.is_symlink() {
                    bail!(
                        "{} is a symlink; refusing to write through it (give the real path)",
                        path.display()
                    );
                } else {
                    bail!(
                        "{} is {}; refusing to replace it (give the path of a regular file)",
                        path.display(),
                        describe(&meta)
                    );
                }
            }
        };
        if kind != Kind::Stream {
            let parent = parent_of(path);
            match std::fs::metadata(parent) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => bail!(
                    "cannot write {}: {} is not a directory",
                    path.display(),
                    parent.display()
                ),
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot write {}", path.display()))
                }
            }
        }
        Ok(Destination {
            path: path.to_path_buf(),
            kind,
            force,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Open for writing: a new temporary file next to the path (mode 0600
    /// until committed), or the device or FIFO itself.
    pub fn open(&self) -> Result<(File, Pending)> {
        match self.kind {
            Kind::Stream => {
                let fd = rustix::fs::open(
                    &self.path,
                    OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io::Error::from)
                .with_context(|| format!("cannot open {}", self.path.display()))?;
                let st = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::CharacterDevice | FileType::Fifo => {}
                    _ => bail!(
                        "{} changed while it was opened; nothing written",
                        self.path.display()
                    ),
                }
                Ok((
                    File::from(fd),
                    Pending {
                        destination: self.clone(),
                        temp: None,
                    },
                ))
            }
            Kind::New | Kind::Replace => {
                let (temp, file) = temp_file_next_to(&self.path)?;
                Ok((
                    file,
                    Pending {
                        destination: self.clone(),
                        temp: Some(temp),
                    },
                ))
            }
        }
    }

    /// Write `bytes` to the destination, whole or not at all.
    pub fn write_all(&self, bytes: &[u8], mode: u32) -> Result<()> {
        let (mut file, pending) = self.open()?;
        io::Write::write_all(&mut file, bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        pending.commit(file, mode)
    }
}

/// A destination being written: its temporary file is removed unless
/// [`Pending::commit`] moves it into place.
pub struct Pending {
    destination: Destination,
    temp: Option<PathBuf>,
}

impl Pending {
    /// Finish: give the new file `mode` (less the umask), make it durable
    /// and move it into place. For a device or FIFO, nothing more to do.
    pub fn commit(mut self, file: File, mode: u32) -> Result<()> {
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        let path = self.destination.path.clone();
        let result = finish_temp(&file, mode)
            .with_context(|| format!("cannot write {}", path.display()))
            .and_then(|()| {
                drop(file);
                place(&temp, &path, self.destination.force)
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn finish_temp(file: &File, mode: u32) -> io::Result<()> {
    rustix::fs::fchmod(file, Mode::from_raw_mode(mode & !current_umask() & 0o777))?;
    file.sync_all()
}

/// A new file `.<name>.tmp-<pid>-<n>` in `path`'s directory (O_EXCL,
/// never through a symlink, mode 0600).
fn temp_file_next_to(path: &Path) -> Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = parent_of(path);
    for attempt in 0..100u32 {
        let temp = dir.join(format!(".{name}.tmp-{}-{attempt}", std::process::id()));
        match rustix::fs::open(
            &temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => return Ok((temp, File::from(fd))),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(err) => {
                return Err(io::Error::from(err))
                    .with_context(|| format!("cannot create {}", temp.display()))
            }
        }
    }
    bail!("cannot create a temporary file in {}", dir.display())
}

/// Move `temp` to `path`: never replacing anything unless `force`, and
/// then only a regular file.
fn place(temp: &Path, path: &Path, force: bool) -> Result<()> {
    match rustix::fs::renameat_with(CWD, temp, CWD, path, RenameFlags::NOREPLACE) {
        Ok(()) => return sync_parent(path),
        Err(rustix::io::Errno::EXIST) if force => {}
        Err(rustix::io::Errno::EXIST) => bail!(
            "{} appeared while it was written; nothing replaced (--force replaces it)",
            path.display()
        ),
        Err(err) => {
            return Err(io::Error::from(err))
                .with_context(|| format!("cannot move the new file to {}", path.display()))
        }
    }
    // Exchange, then look at what came back: only a regular file may be
    // replaced, whatever was checked before.
    match rustix::fs::renameat_with(CWD, temp, CWD, path, RenameFlags::EXCHANGE) {
        Ok(()) => {
            let old = rustix::fs::statat(CWD, temp, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io::Error::from)?;
            if FileType::from_raw_mode(old.st_mode) != FileType::RegularFile {
                rustix::fs::renameat_with(CWD, temp, CWD, path, RenameFlags::EXCHANGE)
                    .map_err(io::Error::from)
                    .with_context(|| {
                        format!(
                            "{} was replaced by something else while it was written, and \
                             putting it back failed: it is now at {}",
                            path.display(),
                            temp.display()
                        )
                    })?;
                bail!(
                    "{} was replaced by something that is not a regular file while it was \
                     written; left as it was",
                    path.display()
                );
            }
            std::fs::remove_file(temp)
                .with_context(|| format!("cannot remove the old {}", path.display()))?;
        }
        // File systems without RENAME_EXCHANGE: check again, then rename.
        Err(rustix::io::Errno::INVAL) => {
            let meta = std::fs::symlink_metadata(path)
                .with_context(|| format!("cannot inspect {}", path.display()))?;
            if !meta.file_type().is_file() {
                bail!(
                    "{} is now {}; refusing to replace it",
                    path.display(),
                    describe(&meta)
                );
            }
            std::fs::rename(temp, path)
                .with_context(|| format!("cannot move the new file to {}", path.display()))?;
        }
        Err(err) => {
            return Err(io::Error::from(err))
                .with_context(|| format!("cannot move the new file to {}", path.display()))
        }
    }
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Ok(dir) = File::open(parent_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn current_umask() -> u32 {
    // The commands that write user-named files are single-threaded: read
    // the umask by setting it back.
    let old = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
}

/// A checked directory destination (`import --dir`): missing, or an
/// empty directory (not through a symlink).
#[derive(Debug, Clone)]
pub struct DirDestination {
    path: PathBuf,
    exists: bool,
}

impl DirDestination {
    /// Decide whether `path` can receive a new directory; writes nothing.
    pub fn check(path: &Path) -> Result<DirDestination> {
        if path.file_name().is_none() {
            bail!("{} is not a directory name", path.display());
        }
        let exists = match std::fs::symlink_metadata(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot inspect {}", path.display()))
            }
            Ok(meta) if meta.is_dir() => {
                let mut entries = std::fs::read_dir(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if entries.next().is_some() {
                    bail!("{} is not empty; give a new directory", path.display());
                }
                true
            }
            Ok(meta) if meta.file_type().is_symlink() => bail!(
                "{} is a symlink; refusing to write through it (give the real path)",
                path.display()
            ),
            Ok(meta) => bail!(
                "{} is {}, not a directory; refusing to replace it",
                path.display(),
                describe(&meta)
            ),
        };
        let parent = parent_of(path);
        if !std::fs::metadata(parent).is_ok_and(|m| m.is_dir()) {
            bail!(
                "cannot create {}: {} is not a directory",
                path.display(),
                parent.display()
            );
        }
        Ok(DirDestination {
            path: path.to_path_buf(),
            exists,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new, private (0700) staging directory next to the destination.
    pub fn staging(&self) -> Result<PathBuf> {
        super::private_dir_next_to(&self.path, "import")
    }

    /// Give `staging` `mode` (less the umask) and move it to the
    /// destination: never over anything but the empty directory checked.
    pub fn commit(&self, staging: &Path, mode: u32) -> Result<()> {
        std::fs::set_permissions(
            staging,
            std::os::unix::fs::PermissionsExt::from_mode(mode & !current_umask() & 0o777),
        )
        .with_context(|| format!("cannot set the mode of {}", staging.display()))?;
        let flags = if self.exists {
            // rename(2) replaces a directory only if it is empty, and never
            // puts a directory in place of a file, link or device.
            let meta = std::fs::symlink_metadata(&self.path)
                .with_context(|| format!("cannot inspect {}", self.path.display()))?;
            if !meta.is_dir() {
                bail!(
                    "{} is now {}; refusing to replace it",
                    self.path.display(),
                    describe(&meta)
                );
            }
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        rustix::fs::renameat_with(CWD, staging, CWD, &self.path, flags)
            .map_err(io::Error::from)
            .with_context(|| {
                format!(
                    "cannot move {} to {}",
                    staging.display(),
                    self.path.display()
                )
            })?;
        sync_parent(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn error(result: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn new_files_are_created_with_the_mode_asked_for() {
        let dir = scratch();
        let path = dir.path().join("graph.svg");
        let dest = Destination::check(&path, false).unwrap();
        assert_eq!(dest.kind(), Kind::New);
        dest.write_all(b"<svg/>", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"<svg/>");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o644 & !current_umask());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn regular_files_are_replaced_only_with_force() {
        let dir = scratch();
        let path = dir.path().join("graph.svg");
        std::fs::write(&path, b"old").unwrap();
        let err = error(Destination::check(&path, false));
        assert!(err.contains("exists") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let dest = Destination::check(&path, true).unwrap();
        assert_eq!(dest.kind(), Kind::Replace);
        dest.write_all(b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn symlinks_directories_and_sockets_are_refused() {
        let dir = scratch();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        for force in [false, true] {
            let err = error(Destination::check(&link, force));
            assert!(err.contains("is a symlink"), "{err}");
            let err = error(Destination::check(dir.path(), force));
            assert!(err.contains("is a directory"), "{err}");
        }
        let socket = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = error(Destination::check(&socket, true));
        assert!(err.contains("is a socket"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn a_fifo_is_written_in_place() {
        let dir = scratch();
        let fifo = dir.path().join("pipe");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let dest = Destination::check(&fifo, false).unwrap();
        assert_eq!(dest.kind(), Kind::Stream);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        dest.write_all(b"folded 1\n", 0o644).unwrap();
        assert_eq!(reader.join().unwrap(), b"folded 1\n");
        let meta = std::fs::symlink_metadata(&fifo).unwrap();
        assert!(meta.file_type().is_fifo(), "the FIFO is still a FIFO");
    }

    #[test]
    fn a_swap_to_a_non_file_before_the_rename_is_undone() {
        let dir = scratch();
        let path = dir.path().join("out.svg");
        std::fs::write(&path, b"old").unwrap();
        let dest = Destination::check(&path, true).unwrap();
        let (mut file, pending) = dest.open().unwrap();
        io::Write::write_all(&mut file, b"new").unwrap();
        // Someone puts a FIFO where the file was.
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let err = error(pending.commit(file, 0o644));
        assert!(err.contains("not a regular file"), "{err}");
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn directories_must_be_missing_or_empty() {
        let dir = scratch();
        let fresh = dir.path().join("fresh");
        let dest = DirDestination::check(&fresh).unwrap();
        let staging = dest.staging().unwrap();
        std::fs::write(staging.join("f"), b"x").unwrap();
        dest.commit(&staging, 0o755).unwrap();
        assert!(fresh.join("f").is_file());
        let err = error(DirDestination::check(&fresh));
        assert!(err.contains("not empty"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = error(DirDestination::check(&file));
        assert!(err.contains("a regular file, not a directory"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let link = dir.path().join("link");
        symlink(&empty, &link).unwrap();
        let err = error(DirDestination::check(&link));
        assert!(err.contains("is a symlink"), "{err}");
        let dest = DirDestination::check(&empty).unwrap();
        let staging = dest.staging().unwrap();
        assert_eq!(
            std::fs::metadata(&staging).unwrap().permissions().mode() & 0o777,
            0o700
        );
        dest.commit(&staging, 0o755).unwrap();
        assert!(empty.is_dir());
    }
}
