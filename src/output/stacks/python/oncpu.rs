//! Python frames of on-CPU captures: the frame chain the on-CPU sample
//! read in BPF at the instant of the native stack (`bpf/python.bpf.h`;
//! the switch hook reads it too for the captures it takes of a published
//! thread going to sleep).
//!
//! The writer publishes a Python thread (`Publisher`) the first time it
//! sees an on-CPU capture of it without a chain: its thread state (found
//! as for off-CPU reads) and the offsets of its interpreter's `Layout`.
//! From then on each on-CPU sample of the thread walks its chain; the
//! writer names the code objects after the fact (`Interpreter::groups`,
//! the same grouping and checks as off CPU) and, since a code object may
//! be freed and its memory reused by then, only while each still has the
//! fingerprint the sample took (its qualified name and file objects and
//! first line). Each frame's line comes from the instruction pointer the
//! sample read with it (`Interpreter::code_frame`). A chain that failed, was cut at `TS_PY_DEPTH` frames or
//! does not match keeps the native frames.
//!
//! Entries are removed when their slot holds another thread, after
//! `IDLE` without an on-CPU capture, or when their chain failed (the
//! thread state moved: the next capture publishes it again); a freed
//! entry of `py_chains` is handed out again only after `QUARANTINE`, so a
//! sample still writing it for its old thread is long done.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tracing::debug;

use super::{Current, Entry, Interpreter, Link, Memory, PyFrame, ReadCache};
use super::{FRAME_OWNED_BY_CSTACK, MAX_FRAMES};
use crate::bpf::python::{PyThreadMap, PY_THREADS};
use crate::bpf::types::{ts_py_chain, ts_py_flags, ts_py_thread};
use crate::bpf::SwitchView;

/// `ts_py_thread.cframe_current` when `current` is the frame itself.
const DIRECT: u32 = u32::MAX;
/// `ts_py_thread.shim_owner` when `marker` is `is_entry`.
const IS_ENTRY: u32 = u32::MAX;
/// A published thread without an on-CPU capture this long is removed.
const IDLE: Duration = Duration::from_secs(60);
/// Entries are checked for removal this often.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// A freed chain entry is reused after this long.
const QUARANTINE: Duration = Duration::from_secs(1);
/// A thread whose thread state was not found is looked for again after
/// this long.
const RETRY: Duration = Duration::from_secs(5);

/// The frame chain an on-CPU sample read with its capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chain {
    /// Walked to the first frame: per frame, innermost first, the code
    /// object's address (bit 0: closes its group; 1 alone: a shim), its
    /// fingerprint and the frame's instruction pointer.
    Complete(Vec<(u64, u64, u64)>),
    /// Deeper than the sample walks.
    Truncated,
    /// A read failed or the thread state was not the thread's.
    Failed,
}

impl Chain {
    pub fn from_capture(c: &ts_py_chain) -> Chain {
        let n = (c.n as usize).min(c.frames.len());
        if c.flags & ts_py_flags::TS_PY_COMPLETE.0 != 0 {
            Chain::Complete(
                c.frames[..n]
                    .iter()
                    .map(|f| (f.code, f.print, f.instr))
                    .collect(),
            )
        } else if c.flags & ts_py_flags::TS_PY_TRUNCATED.0 != 0 {
            Chain::Truncated
        } else {
            Chain::Failed
        }
    }
}

impl Interpreter {
    /// What the on-CPU sample needs to read thread `tid`'s chain (all but
    /// its `chain` entry); `None` if it has no thread state.
    pub fn published(&self, tgid: u32, tid: u32, cache: &mut ReadCache) -> Option<ts_py_thread> {
        let memory = Memory(nix::unistd::Pid::from_raw(i32::try_from(tgid).ok()?));
        let (tstate, _) = self.find_thread(&memory, tid, cache)?;
        let o = &self.layout;
        let off = |at: u64| u32::try_from(at).ok();
        let (current, cframe_current) = match o.current {
            Current::Direct(at) => (off(at)?, DIRECT),
            Current::ViaCFrame {
                cframe,
                current_frame,
            } => (off(cframe)?, off(current_frame)?),
        };
        let (marker, shim_owner) = match o.entry {
            Entry::IsEntry(at) => (off(at)?, IS_ENTRY),
            Entry::CStackShim => (off(o.frame_owner)?, u32::from(FRAME_OWNED_BY_CSTACK)),
        };
        Some(ts_py_thread {
            tstate,
            tgid,
            chain: 0,
            native_id: off(o.thread_native_id)?,
            current,
            cframe_current,
            previous: off(o.frame_previous)?,
            code: off(o.frame_code)?,
            instr: off(o.frame_instr)?,
            marker,
            shim_owner,
            code_qualname: off(o.code_qualname)?,
            code_filename: off(o.code_filename)?,
            code_firstlineno: off(o.code_firstlineno)?,
            pad: 0,
        })
    }

    /// The Python frames of a complete chain read by the on-CPU sample,
    /// grouped by loop call as `thread_frames` groups them; `None` if a
    /// frame is not understood or a code object is not the one sampled.
    pub fn chain_frames(
        &self,
        tgid: u32,
        frames: &[(u64, u64, u64)],
        cache: &mut ReadCache,
    ) -> Option<Vec<Vec<PyFrame>>> {
        if frames.len() > MAX_FRAMES {
            return None;
        }
        let shims = self.layout.entry == Entry::CStackShim;
        let chain = frames
            .iter()
            .map(|&(code, print, instr)| match code {
                1 if shims => Some(Link {
                    code: None,
                    print: None,
                    instr: 0,
                    closes: true,
                }),
                _ if code & 6 != 0 || code & !7 == 0 || (shims && code & 1 != 0) => None,
                _ => Some(Link {
                    code: Some(code & !7),
                    print: Some(print),
                    instr,
                    closes: code & 1 != 0,
                }),
            })
            .collect::<Option<Vec<Link>>>()?;
        let memory = Memory(nix::unistd::Pid::from_raw(i32::try_from(tgid).ok()?));
        self.groups(&memory, &chain, cache)
    }
}

/// A thread published in `py_threads`.
#[derive(Debug, Clone, Copy)]
struct Published {
    tgid: u32,
    slot: u32,
    chain: u32,
    used: Instant,
}

/// The writer's side of `py_threads`: which threads are published, and
/// the free entries of `py_chains`.
pub struct Publisher {
    map: PyThreadMap,
    published: FxHashMap<u32, Published>,
    free: VecDeque<(u32, Instant)>,
    /// Threads whose thread state was not found, and when.
    tried: FxHashMap<u32, Instant>,
    pruned_at: Instant,
    /// Threads published, and updates of the map that failed.
    pub publications: u64,
    pub map_errors: u64,
}

impl Publisher {
    pub fn new(map: PyThreadMap) -> Publisher {
        let long_ago = Instant::now()
            .checked_sub(QUARANTINE)
            .unwrap_or_else(Instant::now);
        Publisher {
            map,
            published: FxHashMap::default(),
            free: (0..PY_THREADS).map(|i| (i, long_ago)).collect(),
            tried: FxHashMap::default(),
            pruned_at: Instant::now(),
            publications: 0,
            map_errors: 0,
        }
    }

    /// Whether thread `tid` of `tgid` should be looked for and published
    /// (not published, not looked for in vain lately, room left).
    pub fn wants(&self, tgid: u32, tid: u32) -> bool {
        let published = self.published.get(&tid).is_some_and(|p| p.tgid == tgid);
        let tried = self.tried.get(&tid).is_some_and(|t| t.elapsed() < RETRY);
        !published
            && !tried
            && self
                .free
                .front()
                .is_some_and(|(_, t)| t.elapsed() >= QUARANTINE)
    }

    /// Publish thread `tid` of `tgid` (slot `slot`) as `thread` says, or
    /// remember that it has no thread state.
    pub fn publish(&mut self, tgid: u32, tid: u32, slot: u32, thread: Option<ts_py_thread>) {
        let Some(mut thread) = thread else {
            if self.tried.len() >= PY_THREADS as usize * 4 {
                self.tried.clear();
            }
            self.tried.insert(tid, Instant::now());
            return;
        };
        self.remove(tid);
        let Some((chain, _)) = self.free.pop_front() else {
            return;
        };
        thread.chain = chain;
        match self.map.publish(tid, &thread) {
            Ok(()) => {
                self.publications += 1;
                self.published.insert(
                    tid,
                    Published {
                        tgid,
                        slot,
                        chain,
                        used: Instant::now(),
                    },
                );
            }
            Err(err) => {
                self.map_errors += 1;
                debug!(tid, "cannot publish a Python thread: {err:#}");
                self.free.push_back((chain, Instant::now()));
            }
        }
    }

    /// Thread `tid` had an on-CPU capture with its chain.
    pub fn used(&mut self, tid: u32) {
        if let Some(p) = self.published.get_mut(&tid) {
            p.used = Instant::now();
        }
    }

    /// Stop reading thread `tid`'s chain.
    pub fn remove(&mut self, tid: u32) {
        if let Some(p) = self.published.remove(&tid) {
            self.map.remove(tid);
            self.free.push_back((p.chain, Instant::now()));
        }
    }

    /// Remove (at most every `PRUNE_EVERY`) the threads whose slot holds
    /// another thread now, and those without an on-CPU capture for `IDLE`.
    pub fn prune(&mut self, switches: Option<&SwitchView>) {
        if self.pruned_at.elapsed() < PRUNE_EVERY {
            return;
        }
        self.pruned_at = Instant::now();
        self.tried.retain(|_, t| t.elapsed() < RETRY);
        let gone: Vec<u32> = self
            .published
            .iter()
            .filter(|(&tid, p)| {
                p.used.elapsed() >= IDLE
                    || switches
                        .and_then(|s| s.read(p.slot as usize))
                        .is_some_and(|s| s.tid != tid)
            })
            .map(|(&tid, _)| tid)
            .collect();
        for tid in gone {
            self.remove(tid);
        }
    }

    /// Threads published now.
    pub fn len(&self) -> usize {
        self.published.len()
    }

    pub fn is_empty(&self) -> bool {
        self.published.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::types::ts_py_frame;

    #[test]
    fn chains_decode_by_their_flags() {
        let mut c = ts_py_chain {
            n: 2,
            flags: ts_py_flags::TS_PY_COMPLETE.0,
            ..Default::default()
        };
        c.frames[0] = ts_py_frame {
            code: 0x1000,
            print: 7,
            instr: 0x10c8,
        };
        c.frames[1] = ts_py_frame {
            code: 1,
            print: 0,
            instr: 0,
        };
        c.frames[2] = ts_py_frame {
            code: 0x2000,
            print: 9,
            instr: 0x20c8,
        };
        assert_eq!(
            Chain::from_capture(&c),
            Chain::Complete(vec![(0x1000, 7, 0x10c8), (1, 0, 0)])
        );
        c.flags = ts_py_flags::TS_PY_TRUNCATED.0;
        assert_eq!(Chain::from_capture(&c), Chain::Truncated);
        c.flags = ts_py_flags::TS_PY_FAILED.0;
        assert_eq!(Chain::from_capture(&c), Chain::Failed);
        c.flags = 0;
        assert_eq!(Chain::from_capture(&c), Chain::Failed);
    }
}
