//! Turning ids into names: users, cgroups, executables, and through
//! `identity` containers and pods (the names of syscalls, I/O operations
//! and devices are the store's: `store::names`), and, with `--track`, the
//! names of threads whose syscalls or requests samples saw, for the
//! `syscalls` and `iorq` rows written when those end.
//!
//! Runs on the writer thread, never on the sampling tick. Every lookup is
//! cached; caches are bounded (cleared when they grow past a limit) and a
//! miss that needs a filesystem walk (cgroups) is rate-limited, so a flood
//! of new ids cannot turn enrichment into the agent's main cost.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tracing::debug;

use crate::output::fd_names::{file_kind, FdNames, FileKind};
use crate::output::identity::{Identities, Identity};
use crate::output::sample::Sample;
use crate::output::sockets::Sockets;
use crate::output::titles::Titles;
use crate::store::schema::{FileTarget, SocketRow};

/// Entries per cache before it is cleared.
const CACHE_LIMIT: usize = 65_536;
/// Minimum time between two walks of the cgroup tree.
const CGROUP_RESCAN_INTERVAL: Duration = Duration::from_secs(5);

/// Cached id-to-name lookups, in two phases per tick: [`Enricher::prepare`]
/// resolves whatever the tick's samples need (the only phase that may touch
/// the file system), then [`Enricher::names`] lends `&str`s for writing, so
/// rows borrow names instead of counting references.
pub struct Enricher {
    users: FxHashMap<u32, Box<str>>,
    exes: FxHashMap<(u32, u64), Box<str>>,
    cgroups: CgroupNames,
    identities: Identities,
    /// What samples' fds name (`fd_names`).
    fds: FdNames,
    /// The connections of sampled sockets (`sockets`).
    sockets: Sockets,
    /// Process titles, read on their own thread (`titles`).
    titles: Titles,
    /// With `--track`: by tid, the last sample that saw the thread in a
    /// syscall or with a request in flight.
    threads: Option<FxHashMap<u32, SeenThread>>,
}

/// A thread as a sample showed it: its name and process image.
#[derive(Debug, Clone, Copy)]
struct SeenThread {
    comm: [u8; 16],
    tgid: u32,
    exe_id: u64,
}

impl Default for Enricher {
    fn default() -> Self {
        Enricher::new()
    }
}

impl Enricher {
    pub fn new() -> Enricher {
        Enricher {
            users: FxHashMap::default(),
            exes: FxHashMap::default(),
            cgroups: CgroupNames::new(),
            identities: Identities::node(),
            fds: FdNames::new(),
            sockets: Sockets::new(),
            titles: Titles::new(),
            threads: None,
        }
    }

    /// Also remember the names of threads that samples saw in a syscall or
    /// with a request in flight (for `--track`).
    pub fn remembering_threads(mut self) -> Enricher {
        self.threads = Some(FxHashMap::default());
        self
    }

    /// Resolve and cache every name `samples` refer to.
    pub fn prepare(&mut self, samples: &[Sample]) {
        for map_len in [self.users.len(), self.exes.len()] {
            if map_len >= CACHE_LIMIT {
                self.users.clear();
                self.exes.clear();
            }
        }
        self.identities.new_tick();
        self.fds.prepare(samples);
        self.titles.prepare(samples);
        let fds = &self.fds;
        self.sockets.prepare(
            samples
                .iter()
                .filter_map(|s| match file_kind(fds.name(s)?) {
                    FileKind::Socket(inode) => Some(inode),
                    _ => None,
                }),
        );
        if let Some(threads) = &mut self.threads {
            if threads.len() >= CACHE_LIMIT {
                threads.clear();
            }
            for sample in samples {
                let seen = sample.syscall.is_some_and(|s| s.seq.is_some()) || sample.io.is_some();
                if seen {
                    let seen = SeenThread {
                        comm: sample.comm,
                        tgid: sample.tgid,
                        exe_id: sample.exe_id,
                    };
                    threads.insert(sample.tid, seen);
                }
            }
        }
        for sample in samples {
            self.users
                .entry(sample.euid)
                .or_insert_with(|| user_name(sample.euid));
            if sample.exe_id != 0 {
                self.exes
                    .entry((sample.tgid, sample.exe_id))
                    .or_insert_with(|| exe_path(sample.tgid));
            }
            self.cgroups.prepare(sample.cgroup_id);
            let v2_path = self.cgroups.path(sample.cgroup_id);
            self.identities.prepare(
                sample.tgid,
                sample.exe_id,
                sample.cgroup_id,
                v2_path,
                sample.kthread,
            );
        }
    }

    /// Names resolved by the last `prepare`.
    pub fn names(&self) -> Names<'_> {
        Names { enricher: self }
    }
}

/// Read-only view of an [`Enricher`]'s caches.
pub struct Names<'a> {
    enricher: &'a Enricher,
}

impl<'a> Names<'a> {
    /// Effective user name of `uid` (the number when it has no name).
    pub fn user(&self, uid: u32) -> &'a str {
        self.enricher.users.get(&uid).map_or("", |name| name)
    }

    /// Executable of process `tgid` with image `exe_id`; empty for kernel
    /// threads and processes gone before the lookup.
    pub fn exe(&self, tgid: u32, exe_id: u64) -> &'a str {
        self.enricher
            .exes
            .get(&(tgid, exe_id))
            .map_or("", |path| path)
    }

    /// Name and executable of thread `tid` as the last sample that saw it
    /// in a syscall or with a request in flight showed them (empty when
    /// none is remembered).
    pub fn thread(&self, tid: u32) -> (std::borrow::Cow<'a, str>, &'a str) {
        match self.enricher.threads.as_ref().and_then(|t| t.get(&tid)) {
            Some(seen) => {
                let comm = &seen.comm;
                let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                (
                    String::from_utf8_lossy(&comm[..len]),
                    self.exe(seen.tgid, seen.exe_id),
                )
            }
            None => (std::borrow::Cow::Borrowed(""), ""),
        }
    }

    /// Path of cgroup `id` below the cgroup v2 root ("/system.slice/x.service").
    pub fn cgroup(&self, id: u64) -> &'a str {
        self.enricher.cgroups.path(id)
    }

    /// What `sample`'s syscall works on (`fd_names`).
    pub fn target(&self, sample: &Sample) -> FileTarget<'a> {
        let Some(file) = self.enricher.fds.name(sample) else {
            return FileTarget::default();
        };
        let kind = file_kind(file);
        let socket = match kind {
            FileKind::Socket(inode) if self.enricher.sockets.get(inode).is_none() => {
                self.enricher.sockets.unix(inode).map(|u| SocketRow {
                    proto: "unix",
                    local: &u.socket.name,
                    remote: u.peer_name,
                    state: u.socket.state,
                    srtt_us: None,
                    cwnd: None,
                    retrans: None,
                    peer_pid: u.peer_process.map(|(pid, _)| pid),
                    peer_comm: u.peer_process.map_or("", |(_, comm)| comm),
                })
            }
            FileKind::Socket(inode) => self.enricher.sockets.get(inode).map(|s| SocketRow {
                proto: s.proto,
                local: &s.local,
                remote: &s.remote,
                state: s.state,
                srtt_us: s.srtt_us,
                cwnd: s.cwnd,
                retrans: s.retrans,
                peer_pid: None,
                peer_comm: "",
            }),
            _ => None,
        };
        FileTarget {
            file: Some(file),
            file_pos: (kind == FileKind::Path).then(|| sample.fd.map_or(0, |fd| fd.pos)),
            socket,
        }
    }

    /// Title of the process of `sample` (`titles`); empty when not known
    /// for that very process.
    pub fn title(&self, sample: &Sample) -> &'a str {
        self.enricher.titles.title(sample)
    }

    /// Container and pod of the thread of `sample`, if it is in one.
    pub fn container(&self, sample: &Sample) -> Option<&'a Identity> {
        let v2_path = self.enricher.cgroups.path(sample.cgroup_id);
        self.enricher
            .identities
            .get(sample.tgid, sample.exe_id, sample.cgroup_id, v2_path)
    }
}

fn user_name(uid: u32) -> Box<str> {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name.into_boxed_str(),
        _ => uid.to_string().into_boxed_str(),
    }
}

fn exe_path(tgid: u32) -> Box<str> {
    match std::fs::read_link(format!("/proc/{tgid}/exe")) {
        Ok(path) => path.to_string_lossy().into(),
        Err(_) => "".into(),
    }
}

/// cgroup id to path, from a walk of the cgroup v2 hierarchy (a cgroup's
/// id is the inode number of its directory).
struct CgroupNames {
    root: Option<PathBuf>,
    names: FxHashMap<u64, Box<str>>,
    last_scan: Option<Instant>,
}

impl CgroupNames {
    fn new() -> CgroupNames {
        let root = cgroup2_mount();
        debug!(root = ?root, "cgroup v2 hierarchy");
        CgroupNames {
            root,
            names: FxHashMap::default(),
            last_scan: None,
        }
    }

    /// Make sure `id` is known if it can be: walk the tree again on a miss,
    /// at most every CGROUP_RESCAN_INTERVAL.
    fn prepare(&mut self, id: u64) {
        if id == 0 || self.names.contains_key(&id) {
            return;
        }
        let due = self
            .last_scan
            .is_none_or(|at| at.elapsed() >= CGROUP_RESCAN_INTERVAL);
        if due {
            self.rescan();
        }
    }

    /// The path of `id`, empty when unknown.
    fn path(&self, id: u64) -> &str {
        self.names.get(&id).map_or("", |path| path)
    }

    fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        let mut names = FxHashMap::default();
        walk_cgroups(&root, &root, &mut names, 0);
        self.names = names;
    }
}

fn walk_cgroups(root: &Path, dir: &Path, names: &mut FxHashMap<u64, Box<str>>, depth: usize) {
    use std::os::unix::fs::MetadataExt;
    if depth > 32 || names.len() >= CACHE_LIMIT {
        return;
    }
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    let relative = dir.strip_prefix(root).unwrap_or(Path::new(""));
    names.insert(
        meta.ino(),
        format!("/{}", relative.display()).into_boxed_str(),
    );
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk_cgroups(root, &entry.path(), names, depth + 1);
        }
    }
}

/// Mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mount(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tgid: u32, euid: u32, exe_id: u64, cgroup_id: u64) -> Sample {
        Sample {
            tid: tgid,
            tgid,
            euid,
            exe_id,
            cgroup_id,
            ..Sample::default()
        }
    }

    #[test]
    fn users_and_exes() {
        let me = std::process::id();
        let mut e = Enricher::new();
        e.prepare(&[
            sample(me, 0, 1, 0),
            sample(me, 4_000_000, 0, 0),
            sample(4_000_000, 0, 7, 0),
        ]);
        let names = e.names();
        assert_eq!(names.user(0), "root");
        assert_eq!(names.user(4_000_000), "4000000");
        assert_eq!(
            names.exe(me, 1),
            std::env::current_exe().unwrap().to_string_lossy()
        );
        assert_eq!(names.exe(me, 0), "");
        assert_eq!(names.exe(4_000_000, 7), "");
    }

    #[test]
    fn threads_seen_in_syscalls_are_remembered() {
        use crate::output::sample::SyscallSample;
        let me = std::process::id();
        let mut in_syscall = sample(me, 0, 1, 0);
        in_syscall.tid = 7;
        in_syscall.comm[..4].copy_from_slice(b"wal1");
        in_syscall.syscall = Some(SyscallSample {
            nr: 75,
            elapsed_us: Some(5),
            elapsed_lower_bound: false,
            args: None,
            seq: Some(3),
        });
        let mut other = sample(me, 0, 1, 0);
        other.tid = 8;
        // Without --track nothing is kept.
        let mut e = Enricher::new();
        e.prepare(&[in_syscall]);
        assert_eq!(e.names().thread(7), ("".into(), ""));
        let mut e = Enricher::new().remembering_threads();
        e.prepare(&[in_syscall, other]);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            e.names().thread(7),
            ("wal1".into(), exe.to_string_lossy().as_ref())
        );
        // A thread not seen in a syscall is not remembered.
        assert_eq!(e.names().thread(8), ("".into(), ""));
        // Kept across ticks whose samples do not show it.
        e.prepare(&[other]);
        assert_eq!(e.names().thread(7).0, "wal1");
    }

    #[test]
    fn own_cgroup_resolves() {
        use std::os::unix::fs::MetadataExt;
        let Some(root) = cgroup2_mount() else {
            panic!("no cgroup2 hierarchy mounted; taskscope's cgroup column needs one");
        };
        // Our own cgroup v2 path from /proc/self/cgroup ("0::/path").
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("cgroup v2 entry")
            .to_string();
        let dir = root.join(path.trim_start_matches('/'));
        let id = std::fs::metadata(&dir).unwrap().ino();
        let mut e = Enricher::new();
        e.prepare(&[sample(1, 0, 0, id), sample(1, 0, 0, 0)]);
        assert_eq!(e.names().cgroup(id), path.as_str());
        assert_eq!(e.names().cgroup(0), "");
    }

    #[test]
    fn mountinfo_unescaping() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
