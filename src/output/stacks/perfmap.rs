//! Names of JIT code, from the perf map its runtime writes.
//!
//! A runtime that generates code (Node's `--perf-basic-prof`, CPython 3.12+
//! under `-X perf`, a JVM's `jcmd <pid> Compiler.perfmap`) appends
//! `START SIZE name` lines to `/tmp/perf-<pid>.map` as it goes, `<pid>`
//! being the process's id in its own PID namespace and `/tmp` its own
//! (read through `/proc/<pid>/root`). The agent runs as root and the file
//! lies in a directory anyone can write to, so it is opened without
//! following a symlink (`O_NOFOLLOW`, non-blocking against a FIFO) and
//! used only if it is a regular file owned by the process's effective or
//! file-system uid (blazesym's and perf's rule: a map someone else planted
//! does not name another user's code). Anything else — no file, a symlink,
//! a stranger's file — leaves the frames as they were (`0x…`, native).
//!
//! Maps only grow while the process lives, so each process's map is read
//! incrementally: from where the last reading stopped, complete lines
//! only, at most `MAP_BYTE_LIMIT` bytes in all. A file replaced or cut
//! short since (same pid, new process) is read again from the start.
//! Names live in one string per process, entries in a sorted vector
//! (24 bytes each).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of one process's perf map read at most; the rest is not named.
/// Node writes ~150 KiB in its first second, a large JVM a few MiB.
pub const MAP_BYTE_LIMIT: u64 = 16 << 20;
/// A map is looked at again at most this often, when an address in
/// anonymous executable memory is not named by it.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Longest name kept (bytes); longer ones are cut.
const NAME_LIMIT: usize = 512;

/// One entry: code `[start, end)` named `names[name.0..name.1]`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u64,
    end: u64,
    name: (u32, u32),
}

/// Why a process's map is not used (logged once per process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A symlink, a directory, a FIFO... at the map's path.
    NotRegular,
    /// Owned by uid `file`, the process runs as `process`.
    Owner { file: u32, process: u32 },
}

/// The perf map of one process, as far as it has been read.
#[derive(Debug, Default)]
pub struct PerfMap {
    entries: Vec<Entry>,
    names: String,
    /// Bytes of the file consumed (complete lines).
    read: u64,
    /// Device and inode of the file read.
    file: Option<(u64, u64)>,
    checked_at: Option<Instant>,
    /// The last reason the file was refused, if it was.
    pub refused: Option<Refused>,
}

impl PerfMap {
    /// Bytes of the map read so far: changes whenever new entries may
    /// name frames differently.
    pub fn generation(&self) -> u64 {
        self.read
    }

    /// Memory held (bytes), for the resolver's budget.
    pub fn bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>() + self.names.capacity()
    }

    /// The name and start of the code that contains `addr`; the entry
    /// written last wins where code was freed and its memory reused.
    pub fn find(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.entries.partition_point(|e| e.start <= addr);
        let e = self.entries.get(i.checked_sub(1)?)?;
        (addr < e.end || (addr == e.start && e.end == e.start))
            .then(|| (&self.names[e.name.0 as usize..e.name.1 as usize], e.start))
    }

    /// Whether a look at the file is due: never looked, or not for
    /// `REFRESH`.
    pub fn due(&self) -> bool {
        self.checked_at.is_none_or(|t| t.elapsed() >= REFRESH)
    }

    /// Read what process `tgid` appended to its map since the last time.
    /// Returns the reason the file was refused if it was refused now for
    /// the first time (for the caller to log once).
    pub fn refresh(&mut self, tgid: u32) -> Option<Refused> {
        self.checked_at = Some(Instant::now());
        let Some(owner) = ProcessIds::read(tgid) else {
            return None; // Gone: keep what was read.
        };
        let path = format!("/proc/{tgid}/root/tmp/perf-{}.map", owner.ns_tgid);
        let (mut file, meta) = match open_no_follow(&path).and_then(|f| {
            let meta = f.metadata()?;
            Ok((f, meta))
        }) {
            Ok(opened) => opened,
            // A symlink at the path (`O_NOFOLLOW`).
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                return self.refuse(Refused::NotRegular);
            }
            Err(_) => return None, // No map (yet): nothing to name.
        };
        let refused = if !meta.file_type().is_file() {
            Some(Refused::NotRegular)
        } else if meta.uid() != owner.euid && meta.uid() != owner.fsuid {
            Some(Refused::Owner {
                file: meta.uid(),
                process: owner.euid,
            })
        } else {
            None
        };
        if let Some(refused) = refused {
            return self.refuse(refused);
        }
        self.refused = None;
        let identity = (meta.dev(), meta.ino());
        if self.file != Some(identity) || meta.len() < self.read {
            self.clear();
            self.file = Some(identity);
        }
        let until = meta.len().min(MAP_BYTE_LIMIT);
        if until <= self.read {
            return None;
        }
        let mut new = Vec::with_capacity((until - self.read) as usize);
        if file.seek(SeekFrom::Start(self.read)).is_err()
            || (&mut file)
                .take(until - self.read)
                .read_to_end(&mut new)
                .is_err()
        {
            return None;
        }
        // Complete lines only: the runtime may be writing the last one.
        let complete = new.iter().rposition(|&b| b == b'\n').map(|i| i + 1)?;
        self.parse(&new[..complete]);
        self.read += complete as u64;
        None
    }

    /// Forget what was read; `refused` if it is news.
    fn refuse(&mut self, refused: Refused) -> Option<Refused> {
        self.clear();
        let first = self.refused.as_ref() != Some(&refused);
        self.refused = Some(refused.clone());
        first.then_some(refused)
    }

    fn clear(&mut self) {
        self.entries = Vec::new();
        self.names = String::new();
        self.read = 0;
        self.file = None;
    }

    /// Add the entries of complete lines `text`; malformed lines are
    /// skipped (a map is the runtime's, not ours to judge).
    fn parse(&mut self, text: &[u8]) {
        let sorted_until = self.entries.len();
        for line in text.split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let mut fields = line.trim_end_matches('\r').splitn(3, ' ');
            let (Some(start), Some(size), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let start = start.trim_start_matches("0x");
            let size = size.trim_start_matches("0x");
            let (Ok(start), Ok(size)) = (
                u64::from_str_radix(start, 16),
                u64::from_str_radix(size, 16),
            ) else {
                continue;
            };
            let name = name.trim();
            if name.is_empty() || self.names.len() + NAME_LIMIT > u32::MAX as usize {
                continue;
            }
            let mut cut = name.len().min(NAME_LIMIT);
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            let from = self.names.len() as u32;
            self.names.push_str(&name[..cut]);
            self.entries.push(Entry {
                start,
                end: start.saturating_add(size),
                name: (from, self.names.len() as u32),
            });
        }
        if self.entries.len() > sorted_until {
            // Stable: of two entries at one address, the later one stays
            // last, and `find` takes the last.
            self.entries.sort_by_key(|e| e.start);
        }
    }
}

/// What a process's `status` says about whose its map is and where.
struct ProcessIds {
    /// The pid the process sees itself as (innermost PID namespace).
    ns_tgid: u32,
    euid: u32,
    fsuid: u32,
}

impl ProcessIds {
    fn read(tgid: u32) -> Option<ProcessIds> {
        let status = std::fs::read_to_string(format!("/proc/{tgid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|rest| rest.split_whitespace().collect::<Vec<_>>())
        };
        let ns_tgid = field("NStgid:")
            .and_then(|ids| ids.last()?.parse().ok())
            .unwrap_or(tgid);
        let uids = field("Uid:")?;
        let uid = |i: usize| uids.get(i)?.parse().ok();
        Some(ProcessIds {
            ns_tgid,
            euid: uid(1)?,
            fsuid: uid(3)?,
        })
    }
}

/// Open `path` for reading without following a symlink at its end and
/// without blocking on a FIFO.
fn open_no_follow(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// The frame text of an address `offset` bytes into JIT code `name`.
pub fn frame_text(name: &str, offset: u64) -> Arc<str> {
    Arc::from(format!("{name}+0x{offset:x}").as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_and_the_last_written_wins() {
        let mut map = PerfMap::default();
        map.parse(b"7f0000001000 40 py::busy:/tmp/x.py\n7f0000000000 100 JS:~old /x.js:1:2\nbad line\n7f0000002000 zz nope\n\n");
        assert_eq!(
            map.find(0x7f00_0000_1010),
            Some(("py::busy:/tmp/x.py", 0x7f00_0000_1000))
        );
        assert_eq!(
            map.find(0x7f00_0000_0010),
            Some(("JS:~old /x.js:1:2", 0x7f00_0000_0000))
        );
        assert_eq!(map.find(0x7f00_0000_1040), None, "one past the end");
        assert_eq!(map.find(0x10), None);
        // Code freed and reused: the later entry names it.
        map.parse(b"7f0000001000 40 py::other:/tmp/x.py\r\n");
        assert_eq!(map.find(0x7f00_0000_1000).unwrap().0, "py::other:/tmp/x.py");
        let long = format!("1000 10 {}\n", "é".repeat(NAME_LIMIT));
        map.parse(long.as_bytes());
        assert!(map.find(0x1000).unwrap().0.len() <= NAME_LIMIT);
    }

    #[test]
    fn own_map_is_read_incrementally_and_complete_lines_only() {
        use std::io::Write;
        // This test process's own map, as a runtime would write it.
        let tgid = std::process::id();
        let ids = ProcessIds::read(tgid).unwrap();
        let path = format!("/tmp/perf-{}.map", ids.ns_tgid);
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::File::create(&path).unwrap();
        let mut map = PerfMap::default();
        assert!(map.due());
        assert_eq!(map.refresh(tgid), None);
        assert!(!map.due());
        write!(file, "1000 10 first\n2000 10 sec").unwrap();
        map.refresh(tgid);
        assert_eq!(map.find(0x1004).unwrap().0, "first");
        assert_eq!(map.find(0x2004), None, "a line being written waits");
        let generation = map.generation();
        writeln!(file, "ond").unwrap();
        map.refresh(tgid);
        assert_eq!(map.find(0x2004).unwrap().0, "second");
        assert!(map.generation() > generation);
        // Replaced by another file (a new process with the same pid).
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "3000 10 third\n").unwrap();
        map.refresh(tgid);
        assert_eq!(
            (map.find(0x1004), map.find(0x3004).unwrap().0),
            (None, "third")
        );
        // Cut short in the middle of a line (a full disk, a runtime killed
        // mid-write, someone emptying it): read again from the start,
        // complete lines only, so the cut entry names nothing (never a
        // name cut short) and the entries before it stay.
        std::fs::write(&path, "3000 10 third\n4000 10 fourth\n5000 10 fifth\n").unwrap();
        map.refresh(tgid);
        assert_eq!(map.find(0x5004).unwrap().0, "fifth");
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len("3000 10 third\n4000 10 fou".len() as u64)
            .unwrap();
        map.refresh(tgid);
        assert_eq!(
            (
                map.find(0x3004).unwrap().0,
                map.find(0x4004),
                map.find(0x5004)
            ),
            ("third", None, None)
        );
        // Emptied, then written again from the start.
        file.set_len(0).unwrap();
        map.refresh(tgid);
        assert_eq!((map.find(0x3004), map.generation()), (None, 0));
        std::fs::write(&path, "6000 10 sixth\n").unwrap();
        map.refresh(tgid);
        assert_eq!(map.find(0x6004).unwrap().0, "sixth");
        // Someone else's file names nothing, and is reported once.
        std::os::unix::fs::chown(&path, Some(ids.euid + 4242), None).unwrap();
        let stranger = Refused::Owner {
            file: ids.euid + 4242,
            process: ids.euid,
        };
        assert_eq!(map.refresh(tgid), Some(stranger));
        assert_eq!(map.refresh(tgid), None, "reported once");
        assert_eq!((map.find(0x3004), map.generation()), (None, 0));
        // A symlink to a good map is not followed.
        let target = format!("{path}.target");
        std::fs::write(&target, "3000 10 third\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert_eq!(map.refresh(tgid), Some(Refused::NotRegular));
        assert_eq!(map.find(0x3004), None);
        // A FIFO neither blocks nor names.
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path.as_str(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(map.refresh(tgid), None, "the same reason is reported once");
        assert_eq!(map.refused, Some(Refused::NotRegular));
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&target).unwrap();
        // Gone: nothing, no error.
        assert_eq!(map.refresh(tgid), None);
    }
}
