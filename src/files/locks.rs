//! Who holds a `flock(2)` lock: the agent's output-directory lock
//! (`.taskscope.lock`) and its pin directory's lock.
//!
//! The decision a reader must know: asking never takes the lock. Trying
//! it (even shared, even for a microsecond) could make an agent starting
//! at that instant fail, so the kernel's table of locks (`/proc/locks`)
//! is read instead; only when that table cannot be read is the lock tried
//! (shared, non-blocking) and released at once.

use std::io;
use std::os::fd::AsFd;

use rustix::fs::FlockOperation;

/// Whether a lock is held, and by which process if that can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Free,
    /// Held; the holder's pid when `/proc/locks` names it.
    Held(Option<u32>),
}

impl Holder {
    /// ` (pid N)` when the holder is known, else nothing.
    pub fn pid_text(&self) -> String {
        match self {
            Holder::Held(Some(pid)) => format!(" (pid {pid})"),
            _ => String::new(),
        }
    }
}

/// Who holds a `flock` on the file open as `fd`.
pub fn flock_holder(fd: impl AsFd) -> io::Result<Holder> {
    let st = rustix::fs::fstat(&fd)?;
    match std::fs::read_to_string("/proc/locks") {
        Ok(table) => Ok(holder_in(&table, st.st_dev, st.st_ino)),
        Err(_) => match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                rustix::fs::flock(&fd, FlockOperation::Unlock)?;
                Ok(Holder::Free)
            }
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(Holder::Held(None)),
            Err(err) => Err(err.into()),
        },
    }
}

/// Take an exclusive `flock` on `fd` without waiting; `Err` in the result:
/// another process holds it (named when `/proc/locks` tells which).
pub fn try_lock(fd: impl AsFd) -> io::Result<Result<(), Holder>> {
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Ok(())),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            Ok(Err(flock_holder(&fd).unwrap_or(Holder::Held(None))))
        }
        Err(err) => Err(err.into()),
    }
}

/// The holder of a `flock` on (`dev`, `ino`) in the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 4321 fe:00:1234 0 EOF`; waiters, marked
/// `->`, hold nothing).
fn holder_in(table: &str, dev: u64, ino: u64) -> Holder {
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    for line in table.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&wanted.as_str()) {
            continue;
        }
        let pid = fields
            .get(4)
            .and_then(|p| p.parse().ok())
            .filter(|&p| p > 0);
        return Holder::Held(pid);
    }
    Holder::Free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode() {
        let table = "1: FLOCK  ADVISORY  WRITE 25966 00:29:52394 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 26000 00:29:52394 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 9505 fe:00:77 0 EOF\n";
        let dev = rustix::fs::makedev(0, 41);
        assert_eq!(holder_in(table, dev, 52394), Holder::Held(Some(25966)));
        assert_eq!(holder_in(table, dev, 52395), Holder::Free);
        assert_eq!(
            holder_in(table, rustix::fs::makedev(0xfe, 0), 77),
            Holder::Free
        );
    }

    #[test]
    fn a_lock_of_this_process_is_seen_and_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = std::fs::File::create(&path).unwrap();
        let other = std::fs::File::open(&path).unwrap();
        assert_eq!(flock_holder(&other).unwrap(), Holder::Free);
        rustix::fs::flock(&held, FlockOperation::NonBlockingLockExclusive).unwrap();
        assert_eq!(
            flock_holder(&other).unwrap(),
            Holder::Held(Some(std::process::id()))
        );
        // Asking took nothing: the holder still has it.
        drop(held);
        assert_eq!(flock_holder(&other).unwrap(), Holder::Free);
    }
}
