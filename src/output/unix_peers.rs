//! Unix sockets and the process at their other end (`sock_*` columns with
//! `sock_proto` = `unix`, and `peer_pid`, `peer_comm`).
//!
//! Two steps, both on the writer thread and both only for ticks whose
//! samples wait on sockets:
//!
//! 1. sock_diag for `AF_UNIX` ([`dump`], with `UDIAG_SHOW_NAME` and
//!    `UDIAG_SHOW_PEER`) gives, per socket inode, its bound path, its
//!    state and the inode of the socket at the other end. It is taken
//!    with the TCP/UDP dump (`sockets`), at most every second.
//! 2. The peer inode to a process: the kernel keeps no socket→process
//!    link, so [`Holders`] maps socket inodes to the one process whose
//!    fd table holds them, from a walk of `/proc/*/fd` (readlink only: the
//!    fd table lock, never the target's memory). The walk runs only when
//!    a sampled socket's peer inode is unknown, at most once per
//!    [`RESCAN`]; a known holder is checked again (one readlink of the fd
//!    it was found under) at most once per [`RESCAN`].
//!
//! Wrong never, empty when unknown: a peer socket held by several
//! processes (shared across fork, passed with SCM_RIGHTS and still open in
//! the sender) has no single peer process: empty. A peer that exited
//! closed its socket (no peer inode any more), a socket of another network
//! namespace is not in the dump, a holder whose fd no longer names the
//! inode is dropped: empty.
//!
//! Why not SO_PEERCRED: it is a property of one's own socket; reading it
//! for another process's socket means duplicating that process's fd into
//! the agent (`pidfd_getfd`), which keeps the connection open while held
//! and names the process that connected, not the one holding the socket
//! now. Measured: see README, Unix socket peers.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tracing::debug;

/// A holder walk or check runs at most this often.
pub const RESCAN: Duration = Duration::from_secs(1);
/// A peer inode a walk did not find starts no other walk for this long
/// (a peer held by no visible process would otherwise cost a walk a
/// second).
pub const MISS_HOLD: Duration = Duration::from_secs(10);
/// Socket inodes kept from one walk (a bound on memory).
const HOLDER_LIMIT: usize = 262_144;

/// One unix socket as sock_diag shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocket {
    /// Bound path (`@name` for an abstract one); empty when unbound.
    pub name: String,
    pub state: &'static str,
    /// Inode of the socket at the other end, when connected.
    pub peer: Option<u64>,
}

/// Request a dump of every unix socket with its name and peer.
pub fn request() -> [u8; 24] {
    const UDIAG_SHOW_NAME: u32 = 0x01;
    const UDIAG_SHOW_PEER: u32 = 0x04;
    let mut req = [0u8; 24];
    req[0] = libc::AF_UNIX as u8;
    req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    req[12..16].copy_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER).to_ne_bytes());
    req
}

/// One `unix_diag_msg` (16 bytes) and its attributes.
pub fn parse(msg: &[u8]) -> Option<(u64, UnixSocket)> {
    const UNIX_DIAG_NAME: u16 = 0;
    const UNIX_DIAG_PEER: u16 = 2;
    if msg.len() < 16 || i32::from(msg[0]) != libc::AF_UNIX {
        return None;
    }
    let state = msg[2];
    let inode = u64::from(u32::from_ne_bytes(msg[4..8].try_into().ok()?));
    let mut socket = UnixSocket {
        name: String::new(),
        state: match state {
            1 => "ESTABLISHED",
            10 => "LISTEN",
            _ => "UNCONNECTED",
        },
        peer: None,
    };
    let mut rest = &msg[16..];
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]);
        if len < 4 || len > rest.len() {
            break;
        }
        let payload = &rest[4..len];
        match kind {
            UNIX_DIAG_NAME => socket.name = unix_name(payload),
            UNIX_DIAG_PEER if payload.len() >= 4 => {
                let peer = u32::from_ne_bytes(payload[..4].try_into().ok()?);
                socket.peer = (peer != 0).then_some(u64::from(peer));
            }
            _ => {}
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Some((inode, socket))
}

/// A sun_path as text: `@name` for the abstract namespace (leading NUL),
/// a path up to its NUL otherwise.
fn unix_name(path: &[u8]) -> String {
    match path.split_first() {
        Some((0, abstract_name)) => {
            format!("@{}", crate::output::titles::printable(abstract_name))
        }
        _ => {
            let end = memchr::memchr(0, path).unwrap_or(path.len());
            String::from_utf8_lossy(&path[..end]).into_owned()
        }
    }
}

/// The process holding a socket: pid, the fd it was found under, and its
/// name then.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    pid: u32,
    fd: i32,
    comm: Box<str>,
}

/// Socket inodes to the one process that holds each.
#[derive(Default)]
pub struct Holders {
    /// None: held by several processes (no single peer).
    by_inode: FxHashMap<u64, Option<Holder>>,
    walked_at: Option<Instant>,
    checked_at: Option<Instant>,
    /// Inodes the last walks did not find, and when.
    missed: FxHashMap<u64, Instant>,
}

impl Holders {
    pub fn new() -> Holders {
        Holders::default()
    }

    /// Make sure the holders of `inodes` are known if they can be: walk
    /// /proc again when one is unknown (at most every RESCAN), and check
    /// the known ones at most every RESCAN.
    pub fn prepare(&mut self, inodes: &[u64]) {
        if inodes.is_empty() {
            return;
        }
        let due = |at: Option<Instant>| at.is_none_or(|at| at.elapsed() >= RESCAN);
        if due(self.checked_at) {
            self.checked_at = Some(Instant::now());
            for inode in inodes {
                let still = match self.by_inode.get(inode) {
                    Some(Some(holder)) => holds(holder.pid, holder.fd, *inode),
                    _ => true,
                };
                if !still {
                    self.by_inode.remove(inode);
                }
            }
        }
        self.missed.retain(|_, at| at.elapsed() < MISS_HOLD);
        let unknown = inodes
            .iter()
            .any(|i| !self.by_inode.contains_key(i) && !self.missed.contains_key(i));
        if unknown && due(self.walked_at) {
            self.walked_at = Some(Instant::now());
            let started = Instant::now();
            self.by_inode = walk();
            for inode in inodes {
                if !self.by_inode.contains_key(inode) && self.missed.len() < HOLDER_LIMIT {
                    self.missed.insert(*inode, started);
                }
            }
            debug!(
                sockets = self.by_inode.len(),
                us = started.elapsed().as_micros() as u64,
                "socket holders walk"
            );
        }
    }

    /// The one process holding socket `inode` (pid, comm), if known.
    pub fn get(&self, inode: u64) -> Option<(u32, &str)> {
        let holder = self.by_inode.get(&inode)?.as_ref()?;
        Some((holder.pid, &holder.comm))
    }
}

/// Whether fd `fd` of process `pid` still names socket `inode`.
fn holds(pid: u32, fd: i32, inode: u64) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .is_ok_and(|target| socket_inode(target.as_os_str().as_encoded_bytes()) == Some(inode))
}

/// `inode` of a `socket:[inode]` link.
fn socket_inode(link: &[u8]) -> Option<u64> {
    std::str::from_utf8(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
        .ok()?
        .parse()
        .ok()
}

/// Every socket inode any process holds, with its one holder (None when
/// several processes hold it).
fn walk() -> FxHashMap<u64, Option<Holder>> {
    let mut out: FxHashMap<u64, Option<Holder>> = FxHashMap::default();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id();
    for entry in processes.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut comm: Option<Box<str>> = None;
        for fd_entry in fds.flatten() {
            let Some(fd) = fd_entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(target) = std::fs::read_link(fd_entry.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(target.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            if out.len() >= HOLDER_LIMIT && !out.contains_key(&inode) {
                continue;
            }
            let comm = comm.get_or_insert_with(|| process_comm(pid)).clone();
            match out.get_mut(&inode) {
                // Another fd of the same process: still one holder.
                Some(Some(holder)) if holder.pid == pid => {}
                Some(slot) => *slot = None,
                None => {
                    out.insert(inode, Some(Holder { pid, fd, comm }));
                }
            }
        }
    }
    out
}

fn process_comm(pid: u32) -> Box<str> {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(text) => text.trim_end_matches('\n').into(),
        Err(_) => "".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    fn inode(fd: i32) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino()
    }

    #[test]
    fn the_dump_names_paths_and_peers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (server, _) = listener.accept().unwrap();
        let sockets = crate::output::sockets::dump().unwrap();
        let unix = |fd: i32| sockets.unix(inode(fd)).unwrap().clone();
        let l = unix(listener.as_raw_fd());
        assert_eq!(
            (l.state, l.name.as_str(), l.peer),
            ("LISTEN", path.to_str().unwrap(), None)
        );
        let c = unix(client.as_raw_fd());
        assert_eq!(c.state, "ESTABLISHED");
        assert_eq!(c.peer, Some(inode(server.as_raw_fd())));
        assert_eq!(c.name, "");
        let s = unix(server.as_raw_fd());
        assert_eq!(s.peer, Some(inode(client.as_raw_fd())));
        assert_eq!(s.name, path.to_str().unwrap());
    }

    #[test]
    fn holders_are_one_process_or_none() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        // Our own process is left out of the walk: a child holds `b`.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                b.try_clone().unwrap(),
            )))
            .spawn()
            .unwrap();
        let b_inode = inode(b.as_raw_fd());
        drop(b);
        let mut holders = Holders::new();
        holders.prepare(&[b_inode, inode(a.as_raw_fd())]);
        assert_eq!(holders.get(b_inode), Some((child.id(), "sleep")));
        assert_eq!(holders.get(inode(a.as_raw_fd())), None);
        child.kill().unwrap();
        child.wait().unwrap();
        // The check finds the fd gone (after RESCAN): empty, not stale.
        holders.checked_at = None;
        holders.walked_at = None;
        holders.prepare(&[b_inode]);
        assert_eq!(holders.get(b_inode), None);
        assert_eq!(socket_inode(b"socket:[42]"), Some(42));
        assert_eq!(socket_inode(b"pipe:[42]"), None);
        assert_eq!(unix_name(b"\0abc"), "@abc");
        assert_eq!(unix_name(b"/run/x.sock\0\0"), "/run/x.sock");
    }
}
