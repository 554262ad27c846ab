//! Kernel and user stacks of sampled threads.
//!
//! The kernel side keeps one stack buffer per thread slot: written when a
//! thread goes to sleep (at most once per sampling period per thread —
//! capturing at every switch halved a pipe ping-pong), by the on-CPU
//! sample for running threads, and by a refresh pass for sampled threads
//! whose capture is older than their current wait (`agent::stacks`). The
//! sampler only decides whether a buffer describes the row and copies new
//! captures; this module, on the writer thread, turns them into rows of
//! the `stacks` table: unwinds the user frames a frame-pointer walk loses,
//! symbolizes, puts CPython functions in place of the interpreter loop's
//! frames (`python`, `splice`: for a capture taken off CPU whose thread
//! has not run since, checked through a read-only view of the thread
//! table before and after reading the interpreter's memory; for an
//! on-CPU capture from the frame chain the sample read in BPF with it,
//! `python::oncpu`), and
//! names each stack by a hash of its symbolized frames, so the same code
//! path has the same `stack_id` in every process and across restarts.

pub mod maps;
pub mod perfmap;
pub mod python;
mod resolve_native;
mod resolve_python;
#[cfg(target_arch = "x86_64")]
mod sigframe;
pub mod splice;
pub mod symbolize;
pub mod unwind;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use maps::{FileCache, ProcessMaps};
use perfmap::PerfMap;
use symbolize::{Frames, Symbolizer};
use unwind::{RawUser, UnwindCache};

use crate::bpf::types::ts_stack;
use crate::bpf::SwitchView;
use crate::output::sample::StackRef;
use crate::store::schema::{StackKind, StackRow};
use python::Interpreter;
use resolve_native::user_key;

/// Stack definitions kept (ids seen) before the cache is cleared.
const DEFINITION_LIMIT: usize = 100_000;

/// Entries of the memo of Python processes' native frames kept before it
/// is cleared (a few stacks per thread pool; each entry a few KiB).
const PYTHON_MEMO_LIMIT: usize = 4_096;

/// Entries of the kernel memo kept before it is cleared. Kernel stacks
/// repeat across threads and processes: it fills slowly, so it grows as
/// needed.
const KERNEL_MEMO_LIMIT: usize = 65_536;
/// Entries of the user memo kept before it is cleared. Its keys include
/// the process, so under thread and process churn it fills at the rate new
/// threads are sampled (~850 a second in the churn test): it is allocated
/// whole at first use (~1 MiB) instead of doubling in steps as it fills,
/// which made the agent's memory rise for minutes. Thread pools share
/// keys, so 16,384 covers far more threads; a clear only costs unwinding
/// the stacks seen again.
const USER_MEMO_LIMIT: usize = 16_384;

/// A 128-bit digest of what `feed` hashes (two independent 64-bit hashes),
/// so that a memo hit is a true repeat.
fn content_key<T: Hash>(value: &T) -> u128 {
    let mut fx = rustc_hash::FxHasher::default();
    value.hash(&mut fx);
    #[allow(deprecated)]
    let mut sip = std::hash::SipHasher::new_with_keys(0x7461_736b_7363_6f70, 0x6d65_6d6f_6b65_7973);
    value.hash(&mut sip);
    (u128::from(sip.finish()) << 64) | u128::from(fx.finish())
}

fn memo_insert<V>(memo: &mut FxHashMap<u128, V>, limit: usize, key: u128, value: V) {
    if memo.len() >= limit {
        memo.clear();
    }
    memo.insert(key, value);
}

/// A capture copied out of the table, for the writer.
#[derive(Debug, Clone, Default)]
pub struct RawStacks {
    pub kernel: Vec<u64>,
    pub user: Vec<u64>,
    pub user_sp: u64,
    pub user_bp: u64,
    pub peek: Option<Box<[u8]>>,
    pub kernel_full: bool,
    pub user_full: bool,
    /// The kernel stack starts at an interrupted instruction (on-CPU
    /// sample), not at a return address.
    pub kernel_first_exact: bool,
    /// Captured by the on-CPU sample (else at or after a switch-out).
    pub on_cpu: bool,
    /// The switch-out the capture belongs to (off CPU).
    pub switch_out_ns: u64,
    /// The CPython frame chain read in BPF with it, by the on-CPU sample
    /// or at the switch-out (a thread the writer published:
    /// `python::Publisher`).
    pub python: Option<python::Chain>,
}

impl RawStacks {
    /// Copy the valid parts of a capture.
    pub fn from_capture(s: &ts_stack) -> RawStacks {
        use crate::bpf::types::ts_stack_flags as f;
        let has = |flag: f| s.flags & flag.0 != 0;
        let kframes = (s.kframes as usize).min(s.kips.len());
        let uframes = (s.uframes as usize).min(s.uips.len());
        RawStacks {
            kernel: if has(f::TS_S_KERNEL) {
                s.kips[..kframes].to_vec()
            } else {
                Vec::new()
            },
            user: if has(f::TS_S_USER) {
                s.uips[..uframes].to_vec()
            } else {
                Vec::new()
            },
            user_sp: s.user_sp,
            user_bp: s.user_bp,
            peek: has(f::TS_S_PEEK).then(|| s.peek.to_vec().into_boxed_slice()),
            kernel_full: kframes == s.kips.len(),
            user_full: uframes == s.uips.len(),
            kernel_first_exact: has(f::TS_S_ONCPU),
            on_cpu: has(f::TS_S_ONCPU),
            switch_out_ns: s.switch_out_ns,
            python: None,
        }
    }

    /// With the frame chain read with the capture `s` of thread `tid`,
    /// if `chains` still holds it.
    pub fn with_chain(
        mut self,
        s: &ts_stack,
        tid: u32,
        chains: Option<&crate::bpf::python::PyChains>,
    ) -> RawStacks {
        use crate::bpf::types::ts_stack_flags as f;
        if s.flags & f::TS_S_PYTHON.0 != 0 {
            self.python = chains
                .and_then(|c| c.read(s.py_chain, tid, s.captured_ns))
                .map(|c| python::Chain::from_capture(&c));
        }
        self
    }
}

/// The stacks of one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub kstack: Option<i64>,
    pub ustack: Option<i64>,
    /// Innermost kernel function outside the scheduler: where it waits.
    pub kfunc: Option<Arc<str>>,
}

/// The id of a stack: a 63-bit FNV-1a hash of its kind and frames.
pub fn stack_id(kind: StackKind, frames: &str, salt: u32) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = [
        kind.name().as_bytes(),
        b":",
        frames.as_bytes(),
        &salt.to_le_bytes(),
    ];
    for byte in bytes.iter().flat_map(|b| b.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash & 0x7fff_ffff_ffff_ffff) as i64
}

/// Frames at the top of a kernel stack that say nothing about the wait:
/// the agent's own tracing machinery (a capture from a tracepoint) and
/// the context switch itself (`.sched.text`, and `finish_task_switch`
/// where a switched-out task resumes).
fn is_switch_frame(frames: &Frames) -> bool {
    frames.sched
        || frames.function.as_deref().is_some_and(|f| {
            [
                "bpf_",
                "__bpf_",
                "__traceiter_",
                "trace_event_",
                "perf_trace_",
                "finish_task_switch",
            ]
            .iter()
            .any(|p| f.starts_with(p))
        })
}

/// The function a complete user stack ends in: the first one its thread
/// ran (the outermost that every walk reaches the same way).
fn is_thread_entry(frames: &Frames) -> bool {
    frames.function.as_deref().is_some_and(|f| {
        matches!(
            f,
            "__libc_start_call_main"
                | "__libc_start_main"
                | "_start"
                | "start_thread"
                | "thread_start"
                | "clone"
                | "clone3"
                | "__clone"
                | "__clone3"
        )
    })
}

/// Per-process state: maps, and when they were read; its perf map; its
/// CPython interpreter (looked for once per reading of the maps).
struct Process {
    maps: ProcessMaps,
    jit: PerfMap,
    python: Option<Option<Interpreter>>,
    python_cache: python::ReadCache,
    read_at: Instant,
    used_at: Instant,
}

/// Turns captures into stack ids, `kfunc` and `stacks` rows.
#[derive(Default)]
pub struct StackResolver {
    symbolizer: Option<Symbolizer>,
    files: FileCache,
    unwind: UnwindCache,
    processes: FxHashMap<(u32, u64), Process>,
    pruned_at: Option<Instant>,
    by_slot: FxHashMap<u32, (u64, Resolved)>,
    /// Captures resolved before, by content: a thread that waits in the
    /// same place again (a worker idling in its loop) yields the same raw
    /// stack, and unwinding and symbolizing it again would give the same
    /// ids. Kernel part by its addresses; user part by process, addresses,
    /// registers and stack window.
    kernel_memo: FxHashMap<u128, (Option<i64>, Option<Arc<str>>)>,
    user_memo: FxHashMap<u128, Option<i64>>,
    /// Native user frames of Python processes' captures, by content.
    python_memo: FxHashMap<u128, (Arc<[Frames]>, bool)>,
    /// Interpreter files' symbols.
    python_files: python::SymbolCache,
    /// Ids of spliced stacks by native content and Python frames.
    spliced_memo: FxHashMap<u128, Option<i64>>,
    definitions: FxHashMap<i64, Arc<StackRow>>,
    /// Ids written to the current period's `stacks` file.
    emitted: FxHashSet<i64>,
    /// Stacks resolved (new captures), for the benchmarks.
    pub resolved: u64,
    /// The threads' switches, to read CPython frames only of a thread that
    /// has not run since its capture; none: no Python frames.
    switches: Option<Arc<SwitchView>>,
    /// User stacks whose eval-loop frames were replaced by Python frames,
    /// and those of Python threads that kept their native frames (the
    /// thread ran since the capture, or the read did not agree).
    pub python_spliced: u64,
    pub python_kept_native: u64,
    /// Native user stacks unwound through a signal frame, and those cut
    /// short where the unwind needed the live stack and found it changed.
    pub user_through_signal_frames: u64,
    pub user_cut_live_changed: u64,
    /// Python threads published for the on-CPU sample to read their frame
    /// chains (`python::Publisher`); none: on-CPU captures keep the
    /// eval loop's native frames.
    publisher: Option<python::Publisher>,
}

impl StackResolver {
    pub fn new() -> StackResolver {
        StackResolver::default()
    }

    /// Release the symbolizer's parsed files if it has been idle for
    /// `symbolize::PARSED_IDLE` (the resolved stacks stay).
    pub fn release_idle(&mut self) -> bool {
        self.symbolizer
            .as_mut()
            .is_some_and(|s| s.release_idle(symbolize::PARSED_IDLE))
    }

    /// Name CPython frames, checking thread switches in `switches`.
    pub fn set_switches(&mut self, switches: Arc<SwitchView>) {
        self.switches = Some(switches);
    }

    /// Name CPython frames of on-CPU captures too, publishing Python
    /// threads in `map` for the on-CPU sample to read their chains.
    pub fn set_python_threads(&mut self, map: crate::bpf::python::PyThreadMap) {
        self.publisher = Some(python::Publisher::new(map));
    }

    /// Python threads whose chains the on-CPU sample reads now, and
    /// publications so far (for logs and benchmarks).
    pub fn python_published(&self) -> (usize, u64) {
        self.publisher
            .as_ref()
            .map_or((0, 0), |p| (p.len(), p.publications))
    }

    /// The stacks of a sample of thread `tid` of process `tgid` (image
    /// `exe_id`).
    pub fn resolve(
        &mut self,
        tgid: u32,
        tid: u32,
        exe_id: u64,
        stack: &StackRef,
        raw: Option<&RawStacks>,
    ) -> Resolved {
        if let Some((captured, resolved)) = self.by_slot.get(&stack.slot) {
            if *captured == stack.captured_ns {
                return resolved.clone();
            }
        }
        let Some(raw) = raw else {
            return Resolved::default();
        };
        if self.definitions.len() >= DEFINITION_LIMIT {
            self.evict_definitions();
        }
        let resolved = self.resolve_raw((tgid, tid, stack.slot), exe_id, raw);
        self.resolved += 1;
        self.by_slot
            .insert(stack.slot, (stack.captured_ns, resolved.clone()));
        resolved
    }

    fn resolve_raw(&mut self, thread: (u32, u32, u32), exe_id: u64, raw: &RawStacks) -> Resolved {
        let tgid = thread.0;
        let mut resolved = Resolved::default();
        let kernel_key = (!raw.kernel.is_empty())
            .then(|| content_key(&(&raw.kernel, raw.kernel_first_exact, raw.kernel_full)));
        if let Some((kstack, kfunc)) = kernel_key.and_then(|key| self.kernel_memo.get(&key)) {
            (resolved.kstack, resolved.kfunc) = (*kstack, kfunc.clone());
        } else if let Some(key) = kernel_key {
            let frames = self
                .symbolizer()
                .kernel(&raw.kernel, raw.kernel_first_exact);
            // The wait point first: a capture at switch-out starts in the
            // agent's own hook and the scheduler, one from the iterator
            // at the caller of the scheduler; both name the same stack.
            let frames: Vec<Frames> = frames.into_iter().skip_while(is_switch_frame).collect();
            resolved.kfunc = frames.first().and_then(|f| f.function.clone());
            resolved.kstack = self.define(StackKind::Kernel, &frames, raw.kernel_full);
            memo_insert(
                &mut self.kernel_memo,
                KERNEL_MEMO_LIMIT,
                key,
                (resolved.kstack, resolved.kfunc.clone()),
            );
        }
        if raw.user.is_empty() {
            return resolved;
        }
        self.ensure_process(tgid, exe_id, &raw.user);
        self.ensure_perf_map(tgid, exe_id, &raw.user);
        if let Some(interpreter) = self.python_of(thread, exe_id, raw) {
            // The native frames by content, as for other processes, but
            // the frames themselves: the Python ones differ by moment.
            let process = &self.processes[&(tgid, exe_id)];
            let key = user_key(tgid, exe_id, raw, &process.maps, process.jit.generation());
            let (frames, cut) = match self.python_memo.get(&key) {
                Some((frames, cut)) => (Arc::clone(frames), *cut),
                None => {
                    let (frames, cut, settled) = self.native_user(tgid, exe_id, raw);
                    let frames: Arc<[Frames]> = frames.into();
                    if settled {
                        memo_insert(
                            &mut self.python_memo,
                            PYTHON_MEMO_LIMIT,
                            key,
                            (Arc::clone(&frames), cut),
                        );
                    }
                    (frames, cut)
                }
            };
            resolved.ustack =
                match self.python_frames(thread, exe_id, raw, interpreter, &frames, cut) {
                    Some(groups) => {
                        self.python_spliced += 1;
                        // The same native stack with the same Python frames
                        // (a pool's threads waiting in one place) is the same
                        // stack: splice and name it once.
                        let spliced_key = content_key(&(key, &groups));
                        match self.spliced_memo.get(&spliced_key) {
                            Some(id) => *id,
                            None => {
                                let spliced = splice::splice(&frames, &groups, !cut)
                                    .expect("python_frames checked the splice");
                                let id = self.define(StackKind::User, &spliced, cut);
                                memo_insert(
                                    &mut self.spliced_memo,
                                    USER_MEMO_LIMIT,
                                    spliced_key,
                                    id,
                                );
                                id
                            }
                        }
                    }
                    None => {
                        self.python_kept_native += 1;
                        self.define(StackKind::User, &frames, cut)
                    }
                };
            return resolved;
        }
        let process = &self.processes[&(tgid, exe_id)];
        let key = user_key(tgid, exe_id, raw, &process.maps, process.jit.generation());
        if let Some(ustack) = self.user_memo.get(&key) {
            resolved.ustack = *ustack;
        } else {
            let (frames, cut, settled) = self.native_user(tgid, exe_id, raw);
            resolved.ustack = self.define(StackKind::User, &frames, cut);
            if self.user_memo.capacity() == 0 {
                self.user_memo.reserve(USER_MEMO_LIMIT);
            }
            if settled {
                memo_insert(&mut self.user_memo, USER_MEMO_LIMIT, key, resolved.ustack);
            }
        }
        resolved
    }

    fn symbolizer(&mut self) -> &mut Symbolizer {
        self.symbolizer.get_or_insert_with(Symbolizer::new)
    }

    /// The id of a stack, defining it if new.
    fn define(&mut self, kind: StackKind, frames: &[Frames], cut: bool) -> Option<i64> {
        if frames.is_empty() {
            return None;
        }
        // `;` separates frames, and `frame_kinds` lists one kind per
        // frame: a frame's own text never contains one.
        let text = frames
            .iter()
            .flat_map(|f| f.texts.iter().map(|t| t.replace(';', "_")))
            .collect::<Vec<_>>()
            .join(";");
        let frame_kinds = frames
            .iter()
            .flat_map(|f| f.texts.iter().map(|_| f.kind.name()))
            .collect::<Vec<_>>()
            .join(";");
        let depth = frames.iter().map(|f| f.texts.len() as u32).sum();
        // Two different paths never share an id: on a hash collision the
        // later one is salted.
        for salt in 0..16 {
            let id = stack_id(kind, &text, salt);
            match self.definitions.get(&id) {
                Some(def) if def.kind == kind && def.frames == text => return Some(id),
                Some(_) => continue,
                None => {
                    let module = frames[0].module.to_string();
                    let def = StackRow {
                        id,
                        kind,
                        frames: text,
                        frame_kinds,
                        module,
                        depth,
                        truncated: cut,
                    };
                    self.definitions.insert(id, Arc::new(def));
                    return Some(id);
                }
            }
        }
        None
    }

    /// Forget the definitions no thread's current stacks use (and the
    /// memos, which may name them). Those in use stay: a sample that reuses
    /// its thread's resolved stacks in a later period must find them.
    fn evict_definitions(&mut self) {
        let live: FxHashSet<i64> = self
            .by_slot
            .values()
            .flat_map(|(_, r)| [r.kstack, r.ustack])
            .flatten()
            .collect();
        self.definitions.retain(|id, _| live.contains(id));
        self.kernel_memo.clear();
        self.user_memo.clear();
        self.python_memo.clear();
        self.spliced_memo.clear();
    }

    /// The definition of `id` if the current period's `stacks` file does
    /// not have it yet; it counts as written from now on.
    pub fn unwritten(&mut self, id: i64) -> Option<Arc<StackRow>> {
        if self.emitted.insert(id) {
            self.definitions.get(&id).cloned()
        } else {
            None
        }
    }

    /// The definition of stack `id`, if this resolver made it (a live
    /// reader shows a thread's frames from it; nothing counts as written).
    pub fn definition(&self, id: i64) -> Option<Arc<StackRow>> {
        self.definitions.get(&id).cloned()
    }

    /// A new period starts: its `stacks` file has nothing yet.
    pub fn new_period(&mut self) {
        self.emitted.clear();
    }

    /// Sizes of the caches, for logs and benchmarks.
    pub fn cache_sizes(&self) -> (usize, usize, usize, usize) {
        let symbols = self.symbolizer.as_ref().map_or(0, Symbolizer::cached);
        (
            self.processes.len(),
            self.files.len(),
            symbols,
            self.definitions.len(),
        )
    }
}

#[cfg(test)]
mod tests;
