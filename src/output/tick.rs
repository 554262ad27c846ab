//! A tick on its way from the sampler to the writer: its samples, the
//! ends of tracked syscalls and requests, new stack captures and its
//! counters, and the memory the queue between the two may hold.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::bpf::types::ts_completion;
use crate::output::sample::Sample;
use crate::output::stacks::RawStacks;

/// Memory the queued ticks may hold (`Tick::approx_bytes`) before the
/// sampler drops ticks: 64 ticks of 10,000 threads with stacks would
/// otherwise be ~700 MB. Sized for the agent's whole resident memory to
/// stay within 64 MiB at 10,000 threads (`benches/sampler.rs`): the queue
/// is the one part of it that grows with a stalled writer, and 64 MiB
/// here alone broke that goal. 16 MiB is four ticks of 10,000 rows (352
/// bytes each, `Sample`): a writer that falls behind by more than that,
/// as while it symbolizes the first captures, drops ticks and counts
/// them. One tick is always let through into an empty queue (however
/// many first captures it carries).
pub const QUEUE_BYTES: usize = 16 << 20;

/// One tick's worth of samples.
#[derive(Debug, Clone)]
pub struct Tick {
    /// Wall-clock time of the tick, microseconds since the epoch (UTC).
    pub ts_us: i64,
    /// CLOCK_MONOTONIC nanoseconds at `ts_us` (converts kernel times).
    pub mono_ns: u64,
    /// Thread time each row stands for.
    pub weight_us: u64,
    pub samples: Vec<Sample>,
    /// Ends of tracked syscalls and requests reported since the last tick.
    pub completions: Vec<ts_completion>,
    /// Stack captures the writer has not seen (`StackRef::raw` indexes).
    pub stacks: Vec<RawStacks>,
    pub stats: TickStats,
}

impl Tick {
    /// Heap memory the tick holds, roughly (what the writer queue counts).
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let stacks: usize = self
            .stacks
            .iter()
            .map(|s| {
                size_of::<RawStacks>()
                    + (s.kernel.capacity() + s.user.capacity()) * size_of::<u64>()
                    + s.peek.as_ref().map_or(0, |p| p.len())
            })
            .sum();
        size_of::<Tick>()
            + self.samples.capacity() * size_of::<Sample>()
            + self.completions.capacity() * size_of::<ts_completion>()
            + stacks
    }
}

/// Memory held by the ticks in the writer's queue, shared by the sampler
/// (adds before sending) and the writer (subtracts once written).
#[derive(Clone, Default)]
pub struct QueuedBytes(Arc<AtomicUsize>);

impl QueuedBytes {
    /// Reserve `bytes` unless that would pass `QUEUE_BYTES`. A tick is
    /// always let through into an empty queue, however large.
    pub fn try_reserve(&self, bytes: usize) -> bool {
        let queued = self.0.load(Ordering::Acquire);
        if queued > 0 && queued + bytes > QUEUE_BYTES {
            return false;
        }
        self.0.fetch_add(bytes, Ordering::AcqRel);
        true
    }

    pub fn release(&self, bytes: usize) {
        self.0.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one tick cost and saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct TickStats {
    /// Live slots scanned.
    pub walked: u32,
    /// Rows produced.
    pub emitted: u32,
    /// Entries skipped because writers kept changing them.
    pub torn: u32,
    /// CPU time of the scan, microseconds.
    pub pass_us: u64,
    /// Deadlines skipped since the previous tick the writer got (those
    /// skipped before dropped ticks included), so the `ticks` table sums
    /// to every skipped deadline.
    pub missed_ticks: u64,
    /// Ticks dropped since start because the writer fell behind.
    pub dropped_ticks_total: u64,
    /// The sample rows of those ticks.
    pub dropped_tick_rows_total: u64,
    /// New threads not tracked since start because the table was full.
    pub untracked_total: u64,
    /// Live threads left out of the full table now (see `Coverage`).
    pub untracked_now: u64,
    /// Slots of the table in use (owned, or exited and not yet recycled).
    pub slots_used: u64,
    /// BPF map updates that failed in the hooks since start.
    pub map_update_failed: u64,
    /// Rows with stacks.
    pub stack_rows: u32,
    /// Threads the stack refresh pass was asked to capture.
    pub stack_requests: u32,
    /// Rows left without a stack: the only capture was of another wait.
    pub stacks_of_other_wait: u32,
}
