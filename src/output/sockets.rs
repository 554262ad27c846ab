//! The connection behind a sampled socket (the `sock_*` and `tcp_*`
//! columns): protocol, local and remote address:port, state, and for TCP
//! the smoothed round-trip time, congestion window and retransmissions.
//!
//! From sock_diag (netlink `NETLINK_SOCK_DIAG`, `inet_diag` with
//! `INET_DIAG_INFO` = `struct tcp_info`), the interface `ss` uses, on the
//! writer thread: one dump of TCP and UDP over IPv4 and IPv6, keyed by
//! socket inode (which the `file` column's `socket:[inode]` carries). A
//! dump is taken only for ticks whose samples wait on sockets, at most
//! every [`REFRESH`] (values are at most that old), or sooner when a
//! sampled socket is missing from the last one (at most every
//! [`MISS_RETRY`]).
//!
//! Network namespaces: the dump lists the sockets of the agent's network
//! namespace only, and inodes are unique across namespaces, so a socket of
//! another namespace is simply not found: its columns are empty, never
//! another namespace's values. Unix sockets come in the same dump
//! (`AF_UNIX`, with their bound paths and the inode of their peer), and
//! the process at the other end from `unix_peers`.
//!
//! Why not a crate: the request and the reply are three fixed kernel
//! structs (`inet_diag_req_v2`, `inet_diag_msg`, the head of `tcp_info`)
//! read at fixed offsets; the netlink crates (netlink-sys,
//! netlink-packet-core/-utils/-sock-diag) would add four dependencies for
//! about a hundred lines.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tracing::debug;

use crate::output::unix_peers::{self, Holders, UnixSocket};

/// Values are at most this old.
pub const REFRESH: Duration = Duration::from_secs(1);
/// A sampled socket missing from the last dump asks for a new one at most
/// this often.
pub const MISS_RETRY: Duration = Duration::from_millis(200);
/// Sockets kept from one dump (a bound on memory).
const SOCKET_LIMIT: usize = 262_144;

/// One socket as sock_diag shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    /// `tcp`, `tcp6`, `udp`, `udp6`.
    pub proto: &'static str,
    pub local: String,
    pub remote: String,
    /// TCP state (`ESTABLISHED`, `LISTEN`, ...); for UDP `CONNECTED` or
    /// `UNCONNECTED`.
    pub state: &'static str,
    /// TCP only: smoothed RTT (µs), congestion window (segments), total
    /// retransmissions.
    pub srtt_us: Option<u32>,
    pub cwnd: Option<u32>,
    pub retrans: Option<u32>,
}

/// The sockets of one dump, by inode.
#[derive(Debug, Default)]
pub struct Dump {
    /// TCP and UDP sockets.
    pub inet: FxHashMap<u64, SocketInfo>,
    pub unix: FxHashMap<u64, UnixSocket>,
}

impl Dump {
    pub fn unix(&self, inode: u64) -> Option<&UnixSocket> {
        self.unix.get(&inode)
    }
}

/// Sockets by inode, from the last dump.
#[derive(Default)]
pub struct Sockets {
    dump: Dump,
    dumped_at: Option<Instant>,
    failed_logged: bool,
    /// The processes holding the peers of sampled unix sockets.
    holders: Holders,
    /// Reused between ticks: sampled inodes, their unix peers.
    wanted: Vec<u64>,
    peers: Vec<u64>,
}

impl Sockets {
    pub fn new() -> Sockets {
        Sockets::default()
    }

    /// Make sure the sockets of `inodes` are as fresh as the rules above
    /// say.
    pub fn prepare(&mut self, inodes: impl Iterator<Item = u64>) {
        self.wanted.clear();
        self.wanted.extend(inodes);
        if self.wanted.is_empty() {
            return;
        }
        self.refresh();
        // The processes at the other end of sampled unix sockets.
        self.peers.clear();
        for inode in &self.wanted {
            if let Some(peer) = self.dump.unix.get(inode).and_then(|u| u.peer) {
                self.peers.push(peer);
            }
        }
        self.peers.sort_unstable();
        self.peers.dedup();
        self.holders.prepare(&self.peers);
    }

    /// Dump again if the rules say so.
    fn refresh(&mut self) {
        let missing = self
            .wanted
            .iter()
            .any(|i| !self.dump.inet.contains_key(i) && !self.dump.unix.contains_key(i));
        let due = match self.dumped_at {
            None => true,
            Some(at) => at.elapsed() >= REFRESH || (missing && at.elapsed() >= MISS_RETRY),
        };
        if !due {
            return;
        }
        self.dumped_at = Some(Instant::now());
        match dump() {
            Ok(sockets) => self.dump = sockets,
            Err(err) => {
                self.dump = Dump::default();
                if !self.failed_logged {
                    self.failed_logged = true;
                    tracing::warn!("socket columns stay empty: sock_diag failed: {err}");
                }
            }
        }
    }

    /// A TCP or UDP socket.
    pub fn get(&self, inode: u64) -> Option<&SocketInfo> {
        self.dump.inet.get(&inode)
    }

    /// A unix socket, the name of its peer (empty when unbound or
    /// unknown), and the one process holding that peer, if known.
    pub fn unix(&self, inode: u64) -> Option<UnixView<'_>> {
        let socket = self.dump.unix.get(&inode)?;
        let peer = socket.peer;
        Some(UnixView {
            socket,
            peer_name: peer
                .and_then(|p| self.dump.unix.get(&p))
                .map_or("", |p| &p.name),
            peer_process: peer.and_then(|p| self.holders.get(p)),
        })
    }
}

/// A sampled unix socket with what is known of its other end.
#[derive(Debug, Clone, Copy)]
pub struct UnixView<'a> {
    pub socket: &'a UnixSocket,
    pub peer_name: &'a str,
    /// pid and comm of the process holding the peer socket.
    pub peer_process: Option<(u32, &'a str)>,
}

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_INFO: u16 = 2;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Every TCP, UDP and unix socket of this network namespace, by inode.
pub fn dump() -> io::Result<Dump> {
    let started = Instant::now();
    let socket = DiagSocket::open()?;
    let mut out = FxHashMap::default();
    for (family, protocol) in [
        (libc::AF_INET as u8, IPPROTO_TCP),
        (libc::AF_INET6 as u8, IPPROTO_TCP),
        (libc::AF_INET as u8, IPPROTO_UDP),
        (libc::AF_INET6 as u8, IPPROTO_UDP),
    ] {
        socket.send(&inet_request(family, protocol))?;
        socket.replies(|msg| {
            if out.len() < SOCKET_LIMIT {
                if let Some((inode, info)) = parse_inet_diag(msg, protocol) {
                    out.insert(inode, info);
                }
            }
        })?;
    }
    let mut unix = FxHashMap::default();
    socket.send(&unix_peers::request())?;
    socket.replies(|msg| {
        if unix.len() < SOCKET_LIMIT {
            if let Some((inode, info)) = unix_peers::parse(msg) {
                unix.insert(inode, info);
            }
        }
    })?;
    debug!(
        sockets = out.len(),
        unix = unix.len(),
        us = started.elapsed().as_micros() as u64,
        "sock_diag dump"
    );
    Ok(Dump { inet: out, unix })
}

/// An `inet_diag_req_v2` for every state, with INET_DIAG_INFO.
fn inet_request(family: u8, protocol: u8) -> [u8; 56] {
    let mut req = [0u8; 56];
    req[0] = family;
    req[1] = protocol;
    req[2] = 1 << (INET_DIAG_INFO - 1);
    req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    req
}

/// A NETLINK_SOCK_DIAG socket, closed on drop.
struct DiagSocket(std::os::fd::OwnedFd);

impl DiagSocket {
    fn open() -> io::Result<DiagSocket> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of the size given. A reply
        // never takes long; the timeout only bounds a misbehaving kernel.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(DiagSocket(owned))
    }

    /// Send a dump request whose payload is `request` (a sock_diag
    /// request of its family).
    fn send(&self, request: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut msg = vec![0u8; 16 + request.len()];
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
        msg[16..].copy_from_slice(request);
        // SAFETY: sending `msg.len()` bytes of a live buffer to the kernel
        // (the socket's default destination, pid 0).
        let sent = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Call `each` with the payload of every reply message until the
    /// dump's end.
    fn replies(&self, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: receiving into a live buffer of its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                if len < 16 || len > rest.len() {
                    return Ok(());
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let errno = rest
                            .get(16..20)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    _ => each(&rest[16..len]),
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// One `inet_diag_msg` (72 bytes) and its attributes.
fn parse_inet_diag(msg: &[u8], protocol: u8) -> Option<(u64, SocketInfo)> {
    if msg.len() < 72 {
        return None;
    }
    let family = msg[0];
    let state = msg[1];
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let v6 = i32::from(family) == libc::AF_INET6;
    let address = |at: usize, port: u16| -> String {
        if v6 {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&msg[at..at + 16]);
            format!("[{}]:{port}", Ipv6Addr::from(octets))
        } else {
            let ip = Ipv4Addr::new(msg[at], msg[at + 1], msg[at + 2], msg[at + 3]);
            format!("{ip}:{port}")
        }
    };
    let inode = u64::from(u32_at(msg, 68)?);
    let tcp = protocol == IPPROTO_TCP;
    let mut info = SocketInfo {
        proto: match (tcp, v6) {
            (true, false) => "tcp",
            (true, true) => "tcp6",
            (false, false) => "udp",
            (false, true) => "udp6",
        },
        local: address(8, sport),
        remote: address(24, dport),
        state: if tcp {
            tcp_state(state)
        } else if state == 1 {
            "CONNECTED"
        } else {
            "UNCONNECTED"
        },
        srtt_us: None,
        cwnd: None,
        retrans: None,
    };
    // Attributes: struct rtattr { u16 len; u16 type; } + payload, 4-aligned.
    let mut rest = &msg[72..];
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]);
        if len < 4 || len > rest.len() {
            break;
        }
        if kind == INET_DIAG_INFO && tcp {
            let tcp_info = &rest[4..len];
            // struct tcp_info: rtt at 68 (µs), snd_cwnd at 80,
            // total_retrans at 100.
            info.srtt_us = u32_at(tcp_info, 68);
            info.cwnd = u32_at(tcp_info, 80);
            info.retrans = u32_at(tcp_info, 100);
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Some((inode, info))
}

/// Name of TCP state `state` (include/net/tcp_states.h).
fn tcp_state(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
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
    fn finds_a_listener_and_a_connection_by_inode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        let sockets = dump().unwrap().inet;
        eprintln!(
            "dump of {} sockets took {:?}",
            sockets.len(),
            started.elapsed()
        );
        let l = &sockets[&inode(listener.as_raw_fd())];
        assert_eq!(l.state, "LISTEN");
        assert_eq!(l.local, format!("127.0.0.1:{port}"));
        let c = &sockets[&inode(client.as_raw_fd())];
        assert_eq!((c.proto, c.state), ("tcp", "ESTABLISHED"));
        assert_eq!(c.remote, format!("127.0.0.1:{port}"));
        assert!(c.srtt_us.is_some() && c.cwnd.is_some_and(|w| w > 0));
        let u = &sockets[&inode(udp.as_raw_fd())];
        assert_eq!((u.proto, u.state), ("udp", "UNCONNECTED"));
        assert_eq!(tcp_state(99), "UNKNOWN");
    }
}
