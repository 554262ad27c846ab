//! Process titles (the `proc_title` column): which process is which when
//! all of them are called `postgres`.
//!
//! **What is recorded**: argv\[0\] as the process left it, and nothing
//! else: the bytes of `/proc/<pid>/cmdline` up to the first NUL, at most
//! [`TITLE_LIMIT`] bytes, control characters written as `\xNN`. A title a
//! process set for itself (setproctitle writes over argv\[0\]'s area:
//! `postgres: walwriter`, `nginx: worker process`) shows; the arguments of
//! a plain command line (`mysql -pPASSWORD`, `--token=...`) never reach a
//! file. A process that writes its secrets into its own title is not
//! protected. Kernel threads and zombies: empty.
//!
//! **Where it is read**: reading another process's cmdline takes its mmap
//! lock, which a process stuck in a page fault can hold for a long time.
//! So the files are read on a thread of their own ([`Titles::new`]
//! spawns it), never on the writer thread or the tick path: the writer
//! sends the processes of each tick's samples (a non-blocking send that is
//! dropped when the reader is behind) and takes the reader's latest
//! published map when it has changed. A hung process delays the titles of
//! the processes after it in that round, never a row.
//!
//! **Freshness and identity**: each process that appears in samples is
//! read again at most every [`REFRESH`] (postgres backends retitle
//! themselves per statement), and dropped after [`FORGET`] without
//! samples. A title is kept with the process's start time (from
//! `/proc/<pid>/stat`, read before and after the cmdline and required to
//! match) and a moment it was seen alive; a row takes it only when the
//! thread's own start time (`task->start_time`, from the BPF table) lies
//! between the two, so a reused pid never shows the previous process's
//! title: a row whose title is not resolved yet is empty. (stat's start
//! time has clock-tick resolution, 10 ms: a pid reused within 10 ms of a
//! thread creation of its previous owner is the only ambiguity left.)

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rustc_hash::FxHashMap;
use tracing::debug;

use crate::output::sample::Sample;

/// A title longer than this is cut (at a character boundary).
pub const TITLE_LIMIT: usize = 128;
/// A process's title is read again at most this often.
pub const REFRESH: Duration = Duration::from_secs(1);
/// A process without samples for this long is forgotten.
const FORGET: Duration = Duration::from_secs(30);
/// Processes followed at most (a bound on memory and on a round's work).
const PROCESS_LIMIT: usize = 65_536;
/// Ticks' process lists the reader may be behind by before the writer
/// drops one.
const QUEUE: usize = 4;

/// A process's title as the reader last saw it.
#[derive(Debug, Clone)]
struct Title {
    text: Box<str>,
    /// The process started at or after this (CLOCK_MONOTONIC ns).
    started_after_ns: u64,
    /// The process was alive at this moment (CLOCK_MONOTONIC ns).
    alive_ns: u64,
}

type TitleMap = FxHashMap<u32, Title>;

/// What the reader publishes: a map and its version.
#[derive(Default)]
struct Published {
    version: u64,
    titles: Arc<TitleMap>,
}

/// The writer's side: sends processes to read, lends the titles read.
pub struct Titles {
    requests: Option<Sender<Vec<u32>>>,
    published: Arc<Mutex<Published>>,
    version: u64,
    current: Arc<TitleMap>,
    reader: Option<JoinHandle<()>>,
}

impl Titles {
    /// Start the reader thread. Without one (it could not be spawned)
    /// every title stays empty.
    pub fn new() -> Titles {
        let published = Arc::new(Mutex::new(Published::default()));
        let (requests, incoming) = crossbeam_channel::bounded(QUEUE);
        let shared = Arc::clone(&published);
        let reader = std::thread::Builder::new()
            .name("taskscope-titles".into())
            .spawn(move || read_loop(&incoming, &shared));
        let (requests, reader) = match reader {
            Ok(handle) => (Some(requests), Some(handle)),
            Err(err) => {
                tracing::warn!("proc_title stays empty: cannot start its reader thread: {err}");
                (None, None)
            }
        };
        Titles {
            requests,
            published,
            version: 0,
            current: Arc::default(),
            reader,
        }
    }

    /// Ask for the titles of the processes of `samples`, and take the
    /// latest titles read. Never waits for the reader.
    pub fn prepare(&mut self, samples: &[Sample]) {
        if let Some(requests) = &self.requests {
            let mut tgids: Vec<u32> = samples
                .iter()
                .filter(|s| !s.kthread)
                .map(|s| s.tgid)
                .collect();
            tgids.sort_unstable();
            tgids.dedup();
            if !tgids.is_empty() {
                match requests.try_send(tgids) {
                    Ok(()) | Err(TrySendError::Full(_)) => {}
                    Err(TrySendError::Disconnected(_)) => self.requests = None,
                }
            }
        }
        if let Ok(published) = self.published.try_lock() {
            if published.version != self.version {
                self.version = published.version;
                self.current = Arc::clone(&published.titles);
            }
        }
    }

    /// The title of the process of `sample`; empty when not known for
    /// that very process.
    pub fn title(&self, sample: &Sample) -> &str {
        if sample.kthread {
            return "";
        }
        match self.current.get(&sample.tgid) {
            Some(t) if t.started_after_ns <= sample.start_ns && sample.start_ns <= t.alive_ns => {
                &t.text
            }
            _ => "",
        }
    }
}

impl Default for Titles {
    fn default() -> Self {
        Titles::new()
    }
}

impl Drop for Titles {
    fn drop(&mut self) {
        // The reader ends when its channel closes; a reader stuck on a
        // hung process is left behind rather than waited for.
        self.requests = None;
        if let Some(reader) = self.reader.take() {
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}

/// The reader thread: follow the processes the writer names, read their
/// titles at most every REFRESH, publish a new map when one changed.
fn read_loop(incoming: &Receiver<Vec<u32>>, published: &Mutex<Published>) {
    let mut wanted: FxHashMap<u32, Instant> = FxHashMap::default();
    let mut titles: TitleMap = FxHashMap::default();
    let mut read_at: FxHashMap<u32, Instant> = FxHashMap::default();
    let mut version = 0u64;
    loop {
        match incoming.recv_timeout(REFRESH / 4) {
            Ok(tgids) => note(&mut wanted, tgids),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while let Ok(tgids) = incoming.try_recv() {
            note(&mut wanted, tgids);
        }
        let started = Instant::now();
        let mut changed = false;
        wanted.retain(|tgid, seen| {
            let keep = seen.elapsed() < FORGET;
            if !keep {
                changed |= titles.remove(tgid).is_some();
                read_at.remove(tgid);
            }
            keep
        });
        let mut reads = 0usize;
        for &tgid in wanted.keys() {
            if read_at.get(&tgid).is_some_and(|at| at.elapsed() < REFRESH) {
                continue;
            }
            read_at.insert(tgid, Instant::now());
            reads += 1;
            match read_title(tgid) {
                Some(title) => {
                    // Published even when the text is the same: the alive
                    // moment moved on, so threads started since resolve.
                    titles.insert(tgid, title);
                    changed = true;
                }
                None => changed |= titles.remove(&tgid).is_some(),
            }
        }
        if changed {
            version += 1;
            let snapshot = Arc::new(titles.clone());
            if let Ok(mut out) = published.lock() {
                out.version = version;
                out.titles = snapshot;
            }
            debug!(
                processes = titles.len(),
                reads,
                us = started.elapsed().as_micros() as u64,
                "process titles read"
            );
        }
    }
}

fn note(wanted: &mut FxHashMap<u32, Instant>, tgids: Vec<u32>) {
    let now = Instant::now();
    for tgid in tgids {
        if wanted.len() < PROCESS_LIMIT || wanted.contains_key(&tgid) {
            wanted.insert(tgid, now);
        }
    }
}

/// The title of process `tgid` now, if it is a live process with one's
/// memory (None for a gone process; an empty text for a zombie or a
/// process with no argv).
fn read_title(tgid: u32) -> Option<Title> {
    let clock_tick_ns = clock_tick_ns();
    let (start_ticks, zombie) = stat_start(tgid)?;
    let alive_ns = monotonic_ns();
    let text = if zombie {
        String::new()
    } else {
        argv0(tgid).unwrap_or_default()
    };
    let (again, _) = stat_start(tgid)?;
    if again != start_ticks {
        return None;
    }
    // stat's start time counts clock ticks of CLOCK_BOOTTIME; the BPF side
    // keeps CLOCK_MONOTONIC. One clock tick plus a millisecond of margin
    // for the offset read between the two clocks.
    let started_after_ns = boot_to_monotonic(start_ticks * clock_tick_ns).saturating_sub(1_000_000);
    Some(Title {
        text: text.into_boxed_str(),
        started_after_ns,
        alive_ns,
    })
}

/// argv\[0\] of process `tgid`, bounded and with control characters
/// escaped; None when its cmdline cannot be read.
fn argv0(tgid: u32) -> Option<String> {
    let mut file = std::fs::File::open(format!("/proc/{tgid}/cmdline")).ok()?;
    // Only the first bytes are asked for: the kernel copies no more of the
    // process's memory than that.
    let mut buf = [0u8; TITLE_LIMIT + 1];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if buf[..len].contains(&0) {
                    break;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let bytes = &buf[..len];
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    Some(printable(&bytes[..end]))
}

/// `bytes` as text of at most TITLE_LIMIT bytes: invalid UTF-8 replaced,
/// control characters written as `\xNN`, cut at a character boundary.
pub fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(TITLE_LIMIT));
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        let escaped;
        let piece: &str = if c.is_control() {
            escaped = format!("\\x{:02x}", u32::from(c));
            &escaped
        } else {
            c.encode_utf8(&mut utf8)
        };
        if out.len() + piece.len() > TITLE_LIMIT {
            break;
        }
        out.push_str(piece);
    }
    out
}

/// Start time (clock ticks since boot) of process `tgid` and whether it
/// is a zombie, from `/proc/<tgid>/stat`.
fn stat_start(tgid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/stat")).ok()?;
    parse_stat(&text)
}

/// Field 22 (starttime) and field 3 (state) of a stat line; the name in
/// parentheses may contain anything, so fields count from its last `)`.
fn parse_stat(text: &str) -> Option<(u64, bool)> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

fn clock_tick_ns() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

fn monotonic_ns() -> u64 {
    timespec_ns(rustix::time::clock_gettime(
        rustix::time::ClockId::Monotonic,
    ))
}

fn boottime_ns() -> u64 {
    match rustix::time::clock_gettime_dynamic(rustix::time::DynamicClockId::Boottime) {
        Ok(ts) => timespec_ns(ts),
        Err(_) => monotonic_ns(),
    }
}

/// CLOCK_BOOTTIME ns `boot_ns` in CLOCK_MONOTONIC (they differ by the
/// time the machine was suspended), to within a microsecond or so.
fn boot_to_monotonic(boot_ns: u64) -> u64 {
    let before = monotonic_ns();
    let boot = boottime_ns();
    let after = monotonic_ns();
    let offset = boot.saturating_sub(before / 2 + after / 2);
    boot_ns.saturating_sub(offset)
}

fn timespec_ns(ts: rustix::time::Timespec) -> u64 {
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_only_and_printable() {
        assert_eq!(printable(b"postgres: walwriter"), "postgres: walwriter");
        assert_eq!(printable(b"a\tb\x01"), "a\\x09b\\x01");
        let long = vec![b'x'; 300];
        assert_eq!(printable(&long).len(), TITLE_LIMIT);
        let wide = "é".repeat(100);
        let cut = printable(wide.as_bytes());
        assert!(cut.len() <= TITLE_LIMIT && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn stat_fields() {
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10";
        assert_eq!(parse_stat(line), Some((12345, false)));
        let zombie = "42 (x) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 0 0";
        assert_eq!(parse_stat(zombie), Some((777, true)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_title_and_a_reused_pid() {
        let me = std::process::id();
        let title = read_title(me).unwrap();
        let exe_arg0 = std::env::args().next().unwrap();
        assert_eq!(&*title.text, printable(exe_arg0.as_bytes()));
        // This thread started after the process and before it was seen
        // alive; read our own thread's start as the BPF side would.
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let text = std::fs::read_to_string(format!("/proc/{me}/task/{tid}/stat")).unwrap();
        let (thread_ticks, _) = parse_stat(&text).unwrap();
        let thread_start = boot_to_monotonic(thread_ticks * clock_tick_ns());
        assert!(title.started_after_ns <= thread_start + clock_tick_ns());
        assert!(title.alive_ns >= thread_start);
        assert!(read_title(4_000_000).is_none());

        let mut titles = Titles::new();
        let sample = |start_ns, kthread| Sample {
            tid: me,
            tgid: me,
            start_ns,
            kthread,
            ..Sample::default()
        };
        titles.current = Arc::new([(me, title.clone())].into_iter().collect());
        let inside = title.started_after_ns + 1;
        assert_eq!(titles.title(&sample(inside, false)), &*title.text);
        // A thread started after the process was last seen alive may be
        // another process's under a reused pid: empty.
        assert_eq!(titles.title(&sample(title.alive_ns + 1, false)), "");
        // One started before this process: another process's.
        if title.started_after_ns > 0 {
            assert_eq!(titles.title(&sample(title.started_after_ns - 1, false)), "");
        }
        assert_eq!(titles.title(&sample(inside, true)), "");
    }

    #[test]
    fn the_reader_thread_publishes() {
        let me = std::process::id();
        let mut titles = Titles::new();
        let probe = Sample {
            tid: me,
            tgid: me,
            start_ns: 1,
            ..Sample::default()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while titles.current.get(&me).is_none() {
            assert!(Instant::now() < deadline, "no title published in 5 s");
            titles.prepare(&[probe]);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!titles.current[&me].text.is_empty());
    }
}
