//! What a sample's fd names (the `file` column): a path, `socket:[ino]`,
//! `pipe:[ino]`, `anon_inode:[eventfd]`, ...
//!
//! The BPF side records, when a thread switches out inside a syscall
//! whose first argument is a fd, the identity of the open file that fd
//! named then (`bpf/fd.bpf.h`: the struct file's address, its inode and
//! position). Here, on the writer thread, the name comes from
//! `readlink /proc/<tgid>/task/<tid>/fd/<n>` and is kept only when that
//! fd still names the same inode:
//!
//! * `socket:[ino]` and `pipe:[ino]` carry their inode in the name;
//! * for any other name, `/proc/<tgid>/task/<tid>/fdinfo/<n>` (which shows
//!   the inode without touching the file) is read before and after the
//!   readlink and must show the recorded inode both times;
//! * `anon_inode:[...]` names share one inode per kind of anonymous file,
//!   so they are taken as they are: only a fd closed and reopened as
//!   another anonymous kind in the few milliseconds between the sample
//!   and the write could be misnamed (the only window left).
//!
//! A fd closed or reused in between therefore gives an empty value, never
//! another file's name. Nothing here opens or stats the file itself (a
//! hung FUSE mount cannot stop the writer): readlink of a /proc fd link
//! and reading fdinfo take only the target task's fd table lock.
//!
//! Names are cached per (process, fd, struct file, inode): a process that
//! waits on the same file tick after tick costs one hash lookup per row.

use rustc_hash::FxHashMap;

use crate::output::sample::{FdSample, Sample};

/// Cached names before the cache is cleared.
const CACHE_LIMIT: usize = 65_536;
/// Names longer than this are cut (at a character boundary).
const NAME_LIMIT: usize = 1024;

/// The identity a name is cached under.
type Key = (u32, i32, u64, u64);

/// Names of the files samples' fds name, cached.
#[derive(Default)]
pub struct FdNames {
    names: FxHashMap<Key, Box<str>>,
}

/// The kind of file a name says, for the columns that follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A path in the file system (a regular file, a device, ...).
    Path,
    /// `socket:[ino]`, with its inode.
    Socket(u64),
    Pipe,
    Anon,
    Other,
}

/// What `name` is.
pub fn file_kind(name: &str) -> FileKind {
    if let Some(ino) = bracketed_inode(name, "socket:[") {
        FileKind::Socket(ino)
    } else if name.starts_with("pipe:[") {
        FileKind::Pipe
    } else if name.starts_with("anon_inode:") {
        FileKind::Anon
    } else if name.starts_with('/') {
        FileKind::Path
    } else {
        FileKind::Other
    }
}

impl FdNames {
    pub fn new() -> FdNames {
        FdNames::default()
    }

    /// Name the file of every sample that has one.
    pub fn prepare(&mut self, samples: &[Sample]) {
        if self.names.len() >= CACHE_LIMIT {
            self.names.clear();
        }
        for sample in samples {
            let Some(fd) = sample.fd else { continue };
            self.names
                .entry(key(sample.tgid, &fd))
                .or_insert_with(|| resolve(sample.tgid, sample.tid, &fd).into());
        }
    }

    /// The name of `sample`'s file; None when it has none or it could not
    /// be named for sure.
    pub fn name(&self, sample: &Sample) -> Option<&str> {
        let fd = sample.fd.as_ref()?;
        let name = self.names.get(&key(sample.tgid, fd))?;
        (!name.is_empty()).then_some(&**name)
    }
}

fn key(tgid: u32, fd: &FdSample) -> Key {
    (tgid, fd.fd, fd.file, fd.ino)
}

/// The name of `fd` of thread `tid` if it still names inode `fd.ino`;
/// empty otherwise.
pub fn resolve(tgid: u32, tid: u32, fd: &FdSample) -> String {
    let dir = format!("/proc/{tgid}/task/{tid}");
    let fdinfo = format!("{dir}/fdinfo/{}", fd.fd);
    let before = fdinfo_inode(&fdinfo);
    let Ok(target) = std::fs::read_link(format!("{dir}/fd/{}", fd.fd)) else {
        return String::new();
    };
    let mut name = target.to_string_lossy().into_owned();
    let same = match file_kind(&name) {
        FileKind::Socket(ino) => ino == fd.ino,
        FileKind::Pipe => bracketed_inode(&name, "pipe:[") == Some(fd.ino),
        FileKind::Anon => true,
        FileKind::Path | FileKind::Other => {
            before == Some(fd.ino) && fdinfo_inode(&fdinfo) == Some(fd.ino)
        }
    };
    if !same {
        return String::new();
    }
    if name.len() > NAME_LIMIT {
        let mut end = NAME_LIMIT;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// The inode in `prefix<ino>]`.
fn bracketed_inode(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(']')?.parse().ok()
}

/// The `ino:` line of a fdinfo file (Linux 5.14 and later show it).
fn fdinfo_inode(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("ino:"))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    fn own(fd: i32, ino: u64) -> FdSample {
        FdSample {
            fd,
            file: 1,
            ino,
            pos: 0,
        }
    }

    #[test]
    fn names_paths_pipes_and_sockets_of_the_same_inode_only() {
        let me = std::process::id();
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.db");
        let file = std::fs::File::create(&path).unwrap();
        let ino = file.metadata().unwrap().ino();
        let fd = file.as_raw_fd();
        assert_eq!(resolve(me, tid, &own(fd, ino)), path.to_string_lossy());
        // Another inode under the same fd number: never its name.
        assert_eq!(resolve(me, tid, &own(fd, ino + 1)), "");
        let (read, _write) = rustix::pipe::pipe().unwrap();
        let pipe_ino = std::fs::metadata(format!("/proc/self/fd/{}", read.as_raw_fd()))
            .unwrap()
            .ino();
        let name = resolve(me, tid, &own(read.as_raw_fd(), pipe_ino));
        assert_eq!(name, format!("pipe:[{pipe_ino}]"));
        assert_eq!(resolve(me, tid, &own(read.as_raw_fd(), pipe_ino + 1)), "");
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let name = resolve(me, tid, &own(socket.as_raw_fd(), 0));
        assert_eq!(name, "");
        let sock_ino = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .unwrap()
            .ino();
        let name = resolve(me, tid, &own(socket.as_raw_fd(), sock_ino));
        assert_eq!(file_kind(&name), FileKind::Socket(sock_ino));
        // A closed fd, a gone process: empty.
        assert_eq!(resolve(me, tid, &own(9_999, ino)), "");
        assert_eq!(resolve(4_000_000, 4_000_000, &own(fd, ino)), "");
    }

    #[test]
    fn kinds() {
        assert_eq!(file_kind("socket:[123]"), FileKind::Socket(123));
        assert_eq!(file_kind("pipe:[9]"), FileKind::Pipe);
        assert_eq!(file_kind("anon_inode:[eventfd]"), FileKind::Anon);
        assert_eq!(file_kind("/var/lib/x"), FileKind::Path);
        assert_eq!(file_kind("socket:[x]"), FileKind::Other);
    }
}
