//! Kernel and user stacks of sampled threads.
//!
//! The kernel side keeps one stack buffer per thread slot: written when a
//! thread goes to sleep (at most once per sampling period per thread —
//! capturing at every switch halved a pipe ping-pong), by the on-CPU
//! sample for running threads, and by a refresh pass for sampled threads
//! whose capture is older than their current wait (see `sampler`). The
//! sampler only decides whether a buffer describes the row and copies new
//! captures; this module, on the writer thread, turns them into rows of
//! the `stacks` table: unwinds the user frames a frame-pointer walk loses,
//! symbolizes, and names each stack by a hash of its symbolized frames, so
//! the same code path has the same `stack_id` in every process and across
//! restarts.

pub mod collect;
pub mod maps;
pub mod symbolize;
pub mod unwind;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use maps::{FileCache, ProcessMaps};
use symbolize::{Frames, Symbolizer};
use unwind::{RawUser, UnwindCache};

pub use crate::bpf::StackKinds;
use crate::bpf::types::ts_stack;

/// Processes whose maps are kept before the cache is cleared.
const PROCESS_LIMIT: usize = 4_096;
/// Stack definitions kept (ids seen) before the cache is cleared.
const DEFINITION_LIMIT: usize = 100_000;
/// A process's maps are read again at most this often when an address
/// falls outside them (a library loaded since).
const MAPS_REFRESH: Duration = Duration::from_secs(10);

/// Where a sample's stacks are: a capture in the table, identified by its
/// slot and time; `raw` indexes `Tick::stacks` when the writer has not
/// seen this capture yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackRef {
    pub slot: u32,
    pub captured_ns: u64,
    pub raw: Option<u32>,
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
}

impl RawStacks {
    /// Copy the valid parts of a capture.
    pub fn from_capture(s: &ts_stack) -> RawStacks {
        use crate::bpf::types::ts_stack_flags as f;
        let has = |flag: f| s.flags & flag.0 != 0;
        let kframes = (s.kframes as usize).min(s.kips.len());
        let uframes = (s.uframes as usize).min(s.uips.len());
        RawStacks {
            kernel: if has(f::TS_S_KERNEL) { s.kips[..kframes].to_vec() } else { Vec::new() },
            user: if has(f::TS_S_USER) { s.uips[..uframes].to_vec() } else { Vec::new() },
            user_sp: s.user_sp,
            user_bp: s.user_bp,
            peek: has(f::TS_S_PEEK).then(|| s.peek.to_vec().into_boxed_slice()),
            kernel_full: kframes == s.kips.len(),
            user_full: uframes == s.uips.len(),
            kernel_first_exact: has(f::TS_S_ONCPU),
        }
    }
}

/// Kernel or user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StackKind {
    Kernel,
    User,
}

impl StackKind {
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Kernel => "kernel",
            StackKind::User => "user",
        }
    }
}

/// One row of the `stacks` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDef {
    pub id: i64,
    pub kind: StackKind,
    /// Frames innermost first, joined with `;`.
    pub frames: String,
    /// Module of the innermost frame.
    pub module: String,
    pub depth: u32,
    /// The stack is known to be cut short (depth limit, or the user stack
    /// does not end at a thread's entry point).
    pub truncated: bool,
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
    let bytes = [kind.name().as_bytes(), b":", frames.as_bytes(), &salt.to_le_bytes()];
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
            ["bpf_", "__bpf_", "__traceiter_", "trace_event_", "perf_trace_", "finish_task_switch"]
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
            "__libc_start_call_main" | "__libc_start_main" | "_start" | "start_thread" | "thread_start" | "clone" | "clone3" | "__clone" | "__clone3"
        )
    })
}

/// Per-process state: maps, and when they were read.
struct Process {
    maps: ProcessMaps,
    read_at: Instant,
}

/// Turns captures into stack ids, `kfunc` and `stacks` rows.
#[derive(Default)]
pub struct StackResolver {
    symbolizer: Option<Symbolizer>,
    files: FileCache,
    unwind: UnwindCache,
    processes: FxHashMap<(u32, u64), Process>,
    by_slot: FxHashMap<u32, (u64, Resolved)>,
    definitions: FxHashMap<i64, Arc<StackDef>>,
    /// Ids written to the current period's `stacks` file.
    emitted: FxHashSet<i64>,
    /// Stacks resolved (new captures), for the benchmarks.
    pub resolved: u64,
}

impl StackResolver {
    pub fn new() -> StackResolver {
        StackResolver::default()
    }

    /// The stacks of a sample of process `tgid` (image `exe_id`).
    pub fn resolve(&mut self, tgid: u32, exe_id: u64, stack: &StackRef, raw: Option<&RawStacks>) -> Resolved {
        if let Some((captured, resolved)) = self.by_slot.get(&stack.slot) {
            if *captured == stack.captured_ns {
                return resolved.clone();
            }
        }
        let Some(raw) = raw else { return Resolved::default() };
        let resolved = self.resolve_raw(tgid, exe_id, raw);
        self.resolved += 1;
        self.by_slot.insert(stack.slot, (stack.captured_ns, resolved.clone()));
        resolved
    }

    fn resolve_raw(&mut self, tgid: u32, exe_id: u64, raw: &RawStacks) -> Resolved {
        let mut resolved = Resolved::default();
        if !raw.kernel.is_empty() {
            let frames = self.symbolizer().kernel(&raw.kernel, raw.kernel_first_exact);
            // The wait point first: a capture at switch-out starts in the
            // agent's own hook and the scheduler, one from the iterator
            // at the caller of the scheduler; both name the same stack.
            let frames: Vec<Frames> = frames.into_iter().skip_while(is_switch_frame).collect();
            resolved.kfunc = frames.first().and_then(|f| f.function.clone());
            resolved.kstack = self.define(StackKind::Kernel, &frames, raw.kernel_full);
        }
        if !raw.user.is_empty() {
            self.ensure_process(tgid, exe_id, &raw.user);
            let process = &self.processes[&(tgid, exe_id)];
            let ips = unwind::recover(
                &RawUser { ips: &raw.user, sp: raw.user_sp, bp: raw.user_bp, peek: raw.peek.as_deref(), tgid },
                &process.maps,
                &mut self.unwind,
            );
            let symbolizer = self.symbolizer.get_or_insert_with(Symbolizer::new);
            let mut frames = symbolizer.user(&self.processes[&(tgid, exe_id)].maps, &ips);
            // A stack ends at its thread's entry point; what a walk finds
            // beyond it (`clone3`, `_start`) depends on how it was walked.
            let entry = frames.iter().position(is_thread_entry);
            if let Some(entry) = entry {
                frames.truncate(entry + 1);
            }
            resolved.ustack = self.define(StackKind::User, &frames, entry.is_none());
        }
        resolved
    }

    fn symbolizer(&mut self) -> &mut Symbolizer {
        self.symbolizer.get_or_insert_with(Symbolizer::new)
    }

    /// Read the process's maps the first time, and again (rate-limited)
    /// when an address falls outside them.
    fn ensure_process(&mut self, tgid: u32, exe_id: u64, ips: &[u64]) {
        let stale = match self.processes.get(&(tgid, exe_id)) {
            None => true,
            Some(p) => p.read_at.elapsed() >= MAPS_REFRESH && ips.iter().any(|a| p.maps.find(*a).is_none()),
        };
        if !stale {
            return;
        }
        if self.processes.len() >= PROCESS_LIMIT {
            self.processes.clear();
        }
        match maps::read_maps(tgid, &mut self.files) {
            Ok(maps) => {
                self.processes.insert((tgid, exe_id), Process { maps, read_at: Instant::now() });
            }
            Err(_) => {
                // Gone: keep what we had, or remember that there is nothing.
                self.processes
                    .entry((tgid, exe_id))
                    .or_insert_with(|| Process { maps: ProcessMaps::default(), read_at: Instant::now() });
            }
        }
    }

    /// The id of a stack, defining it if new.
    fn define(&mut self, kind: StackKind, frames: &[Frames], cut: bool) -> Option<i64> {
        if frames.is_empty() {
            return None;
        }
        let text = frames.iter().flat_map(|f| f.texts.iter().map(|t| &**t)).collect::<Vec<_>>().join(";");
        let depth = frames.iter().map(|f| f.texts.len() as u32).sum();
        if self.definitions.len() >= DEFINITION_LIMIT {
            self.definitions.clear();
        }
        // Two different paths never share an id: on a hash collision the
        // later one is salted.
        for salt in 0..16 {
            let id = stack_id(kind, &text, salt);
            match self.definitions.get(&id) {
                Some(def) if def.kind == kind && def.frames == text => return Some(id),
                Some(_) => continue,
                None => {
                    let module = frames[0].module.to_string();
                    let def = StackDef { id, kind, frames: text, module, depth, truncated: cut };
                    self.definitions.insert(id, Arc::new(def));
                    return Some(id);
                }
            }
        }
        None
    }

    /// The definition of `id` if the current period's `stacks` file does
    /// not have it yet; it counts as written from now on.
    pub fn unwritten(&mut self, id: i64) -> Option<Arc<StackDef>> {
        if self.emitted.insert(id) {
            self.definitions.get(&id).cloned()
        } else {
            None
        }
    }

    /// A new period starts: its `stacks` file has nothing yet.
    pub fn new_period(&mut self) {
        self.emitted.clear();
    }

    /// Sizes of the caches, for logs and benchmarks.
    pub fn cache_sizes(&self) -> (usize, usize, usize, usize) {
        let symbols = self.symbolizer.as_ref().map_or(0, Symbolizer::cached);
        (self.processes.len(), self.files.len(), symbols, self.definitions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_kind_and_frames_only() {
        let a = stack_id(StackKind::User, "main+0x1;_start+0x2", 0);
        assert_eq!(a, stack_id(StackKind::User, "main+0x1;_start+0x2", 0));
        assert_ne!(a, stack_id(StackKind::Kernel, "main+0x1;_start+0x2", 0));
        assert_ne!(a, stack_id(StackKind::User, "main+0x1;_start+0x3", 0));
        assert_ne!(a, stack_id(StackKind::User, "main+0x1;_start+0x2", 1));
        assert!(a >= 0);
    }

    fn frames(names: &[&str]) -> Vec<Frames> {
        names
            .iter()
            .map(|n| Frames {
                texts: vec![Arc::from(format!("{n}+0x1").as_str())],
                function: Some(Arc::from(*n)),
                module: Arc::from("m"),
                sched: false,
            })
            .collect()
    }

    #[test]
    fn definitions_are_written_once_per_period() {
        let mut r = StackResolver::new();
        let id = r.define(StackKind::User, &frames(&["f", "start_thread"]), false).unwrap();
        assert_eq!(r.define(StackKind::User, &frames(&["f", "start_thread"]), false), Some(id));
        let def = r.unwritten(id).expect("first time in this period");
        assert_eq!((def.frames.as_str(), def.depth, def.module.as_str()), ("f+0x1;start_thread+0x1", 2, "m"));
        assert!(r.unwritten(id).is_none());
        r.new_period();
        assert!(r.unwritten(id).is_some());
        assert_eq!(r.define(StackKind::User, &[], false), None);
    }

    #[test]
    fn switch_frames_and_entries() {
        let mut f = frames(&["bpf_prog_1234_on_sched_switch", "__traceiter_sched_switch", "finish_task_switch.isra.0", "io_schedule", "folio_wait_bit", "start_thread"]);
        f[3].sched = true;
        assert_eq!(f.iter().take_while(|f| is_switch_frame(f)).count(), 4);
        assert!(is_thread_entry(&f[5]) && !is_thread_entry(&f[4]));
    }
}
