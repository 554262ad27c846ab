//! The clocks the agent reads: CLOCK_MONOTONIC (the clock the BPF hooks
//! stamp events with, so kernel times compare with it directly) and the
//! CPU time of the calling thread and of the whole process (the sampler's
//! own cost and the `--max-cpu` budget).

fn nanos(clock: rustix::time::ClockId) -> u64 {
    let ts = rustix::time::clock_gettime(clock);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the BPF hooks use), and
/// one instant on it and the wall clock (`store::timefmt`, which the
/// readers of the live table share).
pub use crate::store::timefmt::{monotonic_ns, now_pair};

/// CPU time of the calling thread, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    nanos(rustix::time::ClockId::ThreadCPUTime)
}

/// CPU time of the whole process (all its threads), nanoseconds.
pub fn process_cpu_ns() -> u64 {
    nanos(rustix::time::ClockId::ProcessCPUTime)
}
