//! Decoding a thread-table entry into a [`Sample`].
//!
//! The state name comes from the full state word the scheduler had at
//! switch-out (plus whether the thread was woken since, or is on a CPU), so
//! a `TASK_IDLE` kernel thread is `IDLE`, not `DISK`, and nothing is masked.
//! An uninterruptible wait is `DISK` only when the entry itself shows the
//! thread's own block request in flight, `UNINTERRUPTIBLE` otherwise (its
//! cause is the writer's `wait_class`).
//!
//! Whether a thread is inside a syscall is decided by the newest evidence:
//! its saved registers at switch-out, a later sys_enter, or (for threads on
//! a CPU) a later on-CPU sample. There is no sys_exit hook, so this rule is
//! what keeps a thread that returned to user mode from looking as if it
//! were still in its last syscall.

use crate::bpf::types::{ts_lock_flags, ts_perf_flags, ts_thread, ts_thread_flags, ts_wait};
use crate::bpf::{SchedFields, ThreadEntry};
use crate::output::sample::{IoSample, LockKind, Sample, SyscallSample, WaitSample};
use crate::store::thread_state::ThreadState;

/// Kernel task state bits (include/linux/sched.h; stable from 5.15 on).
mod bits {
    pub const TASK_INTERRUPTIBLE: u32 = 0x0001;
    pub const TASK_UNINTERRUPTIBLE: u32 = 0x0002;
    pub const TASK_STOPPED: u32 = 0x0004;
    pub const TASK_TRACED: u32 = 0x0008;
    pub const EXIT_DEAD: u32 = 0x0010;
    pub const EXIT_ZOMBIE: u32 = 0x0020;
    pub const TASK_PARKED: u32 = 0x0040;
    pub const TASK_DEAD: u32 = 0x0080;
    pub const TASK_WAKING: u32 = 0x0200;
    pub const TASK_NOLOAD: u32 = 0x0400;
    pub const TASK_NEW: u32 = 0x0800;
    pub const TASK_RTLOCK_WAIT: u32 = 0x1000;
    pub const TASK_FROZEN: u32 = 0x8000;
}

/// A thread's state at one instant, as decoded from its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateAt {
    pub state: ThreadState,
    /// Time in that state, microseconds; None when not known.
    pub since_us: Option<u64>,
    /// `since_us` is a lower bound: the wait began before the agent
    /// started, and its start is the scheduler's last-ran timestamp.
    pub since_lower_bound: bool,
    /// For ON_CPU: when it was switched in (CLOCK_MONOTONIC ns; 0 if not
    /// known), which decides who holds a CPU claimed twice.
    pub running_since_ns: u64,
    /// Switched in and out again after `now_ns` (the sampler was slow to
    /// reach the entry): the wait it was in at `now_ns` is gone, and the
    /// latest one, begun after `now_ns`, stands in for it whole.
    pub stands_in: bool,
}

/// The state of a thread at `now_ns` (when the scan started), from its
/// entry's scheduler fields. (The thread the sampler itself displaced is
/// put back on its CPU afterwards, by `settle::restore_displaced`.)
///
/// A scan is not an atomic snapshot: a thread may switch while the table is
/// being read, even twice (out and back in) when the sampler is preempted
/// mid-scan. The entry holds the latest switch-in, switch-out and wakeup
/// times, which is enough to reconstruct the state at `now_ns` in every
/// case; all rows of a tick thus describe the same instant.
pub fn thread_state_at(f: &SchedFields, now_ns: u64) -> StateAt {
    let since =
        |then_ns: u64| (then_ns != 0 && then_ns <= now_ns).then(|| (now_ns - then_ns) / 1_000);
    let on_cpu = |since_ns: u64| StateAt {
        state: ThreadState::OnCpu,
        since_us: since(since_ns),
        since_lower_bound: false,
        running_since_ns: since_ns,
        stands_in: false,
    };
    let off = |state: ThreadState, since_ns: u64| StateAt {
        state,
        since_us: since(since_ns),
        since_lower_bound: false,
        running_since_ns: 0,
        stands_in: false,
    };
    let (switch_in, switch_out, wakeup) = (f.switch_in_ns, f.switch_out_ns, f.wakeup_ns);
    let running = f.flags & ts_thread_flags::TS_F_ON_CPU.0 != 0;

    if f.flags & ts_thread_flags::TS_F_SWITCH_KNOWN.0 == 0 {
        // Seeded from the task struct and not switched since: as found,
        // off CPU at least since the seeded switch-out, if there is one.
        let woken = wakeup != 0 && wakeup <= now_ns;
        let seeded_out = f.flags & ts_thread_flags::TS_F_SINCE_SEEDED.0 != 0;
        return if running {
            on_cpu(0)
        } else if woken {
            off(ThreadState::RunQueue, wakeup)
        } else if seeded_out {
            let state = state_word(f.sched_state, f.exit_state, false);
            StateAt {
                since_lower_bound: true,
                ..off(state, switch_out)
            }
        } else {
            off(state_word(f.sched_state, f.exit_state, false), 0)
        };
    }
    // Off CPU since `out` (<= now): woken by now (after `out`), or in the
    // state it switched out in.
    let off_since = |out: u64| {
        if wakeup > out && wakeup <= now_ns {
            off(ThreadState::RunQueue, wakeup)
        } else {
            let state = state_word(f.sched_state, f.exit_state, false);
            off(state, out)
        }
    };
    match (running, switch_in <= now_ns, switch_out <= now_ns) {
        // Last event a switch-in, before now: on CPU.
        (true, true, _) => on_cpu(switch_in),
        // Switched in after now, out before: waiting at now.
        (true, false, true) => off_since(switch_out),
        // Out and back in, both after now: it was still running at now.
        (true, false, false) => on_cpu(0),
        // Last event a switch-out, before now.
        (false, _, true) => off_since(switch_out),
        // Switched out after now, in before: still running at now.
        (false, true, false) => on_cpu(switch_in),
        // In and out again, both after now: waiting for that switch-in at
        // now (its earlier sleep state is gone; the latest stands in).
        (false, false, false) => {
            if wakeup != 0 && wakeup <= now_ns {
                off(ThreadState::RunQueue, wakeup)
            } else {
                StateAt {
                    stands_in: true,
                    ..off(state_word(f.sched_state, f.exit_state, false), 0)
                }
            }
        }
    }
}

/// The state of a thread that is off CPU, from the state word it had at
/// switch-out and whether it was woken since.
fn state_word(sched_state: u32, exit_state: u32, woken: bool) -> ThreadState {
    use bits::*;
    if exit_state & EXIT_ZOMBIE != 0 {
        return ThreadState::Zombie;
    }
    if exit_state & EXIT_DEAD != 0 || sched_state & TASK_DEAD != 0 {
        return ThreadState::Dead;
    }
    if sched_state == 0 || woken || sched_state & TASK_WAKING != 0 {
        return ThreadState::RunQueue;
    }
    if sched_state & TASK_NEW != 0 {
        ThreadState::New
    } else if sched_state & TASK_FROZEN != 0 {
        ThreadState::Frozen
    } else if sched_state & TASK_PARKED != 0 {
        ThreadState::Parked
    } else if sched_state & TASK_TRACED != 0 {
        ThreadState::Traced
    } else if sched_state & TASK_STOPPED != 0 {
        ThreadState::Stopped
    } else if sched_state & TASK_RTLOCK_WAIT != 0 {
        ThreadState::RtLockWait
    } else if sched_state & TASK_UNINTERRUPTIBLE != 0 {
        if sched_state & TASK_NOLOAD != 0 {
            ThreadState::Idle
        } else {
            ThreadState::Uninterruptible
        }
    } else if sched_state & TASK_INTERRUPTIBLE != 0 {
        ThreadState::Sleep
    } else {
        ThreadState::Unknown
    }
}

/// The state of a peeked (first cache line only) entry.
pub fn peek_state(peek: &SchedFields, now_ns: u64) -> ThreadState {
    thread_state_at(peek, now_ns).state
}

fn since(now_ns: u64, then_ns: u64) -> u64 {
    now_ns.saturating_sub(then_ns) / 1_000
}

/// Decode a consistent copy of an entry, as of `now_ns` (CLOCK_MONOTONIC).
pub fn decode(full: &ThreadEntry, now_ns: u64) -> Sample {
    let entry = &full.thread;
    let flags = entry.flags;
    let has = |flag: ts_thread_flags| flags & flag.0 != 0;
    let StateAt {
        state,
        since_us: state_since_us,
        since_lower_bound,
        running_since_ns,
        stands_in,
    } = thread_state_at(&SchedFields::from(entry), now_ns);

    let seen = current_syscall(entry, state).map(|seen| syscall_sample(full, seen, now_ns));
    // Entered before the agent started: no later than the seeded time.
    let entry_seeded = seen.is_some_and(|(_, seeded)| seeded);
    let syscall = seen.map(|(sample, _)| sample);

    // A request started after the scan began did not exist at `now_ns`;
    // but when the latest wait stands in for the one at `now_ns`, so does
    // its request (one queued before that wait's switch-out), or the row
    // would mix two moments: that wait's state and stack without its I/O
    // (half the fsync thread's rows were UNINTERRUPTIBLE so, with the scan
    // preempted by busy threads).
    let io_by_ns = if stands_in {
        entry.switch_out_ns
    } else {
        now_ns
    };
    let io = (entry.io_rq != 0 && entry.io_insert_ns <= io_by_ns).then(|| IoSample {
        dev: entry.io_dev,
        op: entry.io_op,
        flags: entry.io_flags,
        bytes: entry.io_bytes,
        sector: entry.io_sector,
        age_us: since(now_ns, entry.io_insert_ns),
        seq: entry.io_rq_seq,
    });
    // DISK only with evidence of block I/O: its own request in flight.
    let state = match state {
        ThreadState::Uninterruptible if io.is_some() => ThreadState::Disk,
        other => other,
    };

    Sample {
        tid: entry.tid,
        tgid: entry.tgid,
        comm: entry.comm.map(|c| c as u8),
        state,
        state_since_us,
        since_lower_bound: since_lower_bound || entry_seeded,
        cpu: entry.cpu,
        syscall,
        io,
        euid: entry.euid,
        cgroup_id: entry.cgroup_id,
        exe_id: entry.exe_id,
        kthread: has(ts_thread_flags::TS_F_KTHREAD),
        running_since_ns,
        switch_in_ns: entry.switch_in_ns,
        switch_out_ns: entry.switch_out_ns,
        preempted: has(ts_thread_flags::TS_F_PREEMPTED),
        agent_preempted: has(ts_thread_flags::TS_F_AGENT_PREEMPTED),
        wait_ns: entry.wait_ns,
        slot: 0,
        stack: None,
        wait: WaitSample::default(),
        fd: None,
        start_ns: entry.start_ns,
    }
}

/// Whether a thread in `state` can have anything in its `waits` entry
/// that [`wait_of`] reports: a waker when running or runnable, a kernel
/// lock when in an uninterruptible wait.
pub fn has_wait_record(state: ThreadState) -> bool {
    matches!(
        state,
        ThreadState::OnCpu
            | ThreadState::RunQueue
            | ThreadState::Uninterruptible
            | ThreadState::Disk
    )
}

/// Who woke the thread of `entry` and which kernel lock it waits for, from
/// its `waits` entry, for a sample in `state`.
///
/// The waker is shown on ON_CPU and RUNQUEUE rows: the wakeup they follow
/// (a sleeping thread's last waker belongs to its previous wait). A kernel
/// lock wait counts only for a thread asleep since it began (contention
/// ended clears it); its owner only when read at the switch-out that began
/// the current sleep.
pub fn wait_of(w: &ts_wait, entry: &ts_thread, state: ThreadState) -> WaitSample {
    let mut out = WaitSample::default();
    if matches!(state, ThreadState::OnCpu | ThreadState::RunQueue) {
        if w.waker_tid != 0 {
            out.waker_tid = w.waker_tid;
            out.waker_comm = w.waker_comm.map(|c| c as u8);
        }
        return out;
    }
    if w.lock_addr == 0 || !matches!(state, ThreadState::Uninterruptible | ThreadState::Disk) {
        return out;
    }
    let flags = w.lock_flags;
    let kind = if flags & ts_lock_flags::TS_LCB_F_MUTEX.0 != 0 {
        LockKind::Mutex
    } else if flags & ts_lock_flags::TS_LCB_F_WRITE.0 != 0 {
        LockKind::RwsemWrite
    } else if flags & ts_lock_flags::TS_LCB_F_READ.0 != 0 {
        LockKind::RwsemRead
    } else {
        return out;
    };
    out.lock = Some(kind);
    if w.lock_owner != 0 && w.owner_ns == entry.switch_out_ns {
        out.blocker_tid = w.lock_owner;
    }
    out
}

/// Which evidence says the thread is in a syscall now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The entry's own record: sys_enter (exact mode), the last
    /// switch-out, or the seeding pass.
    Entry(i32),
    /// An on-CPU sample newer than the entry's record.
    OnCpu(i32),
}

/// The syscall the thread is in now, by the newest evidence.
fn current_syscall(entry: &ts_thread, state: ThreadState) -> Option<Seen> {
    let flags = entry.flags;
    if flags & ts_thread_flags::TS_F_KTHREAD.0 != 0
        || matches!(state, ThreadState::Zombie | ThreadState::Dead)
    {
        return None;
    }
    let from_sched =
        (flags & ts_thread_flags::TS_F_IN_SYSCALL.0 != 0).then_some(Seen::Entry(entry.syscall_nr));
    let running = flags & ts_thread_flags::TS_F_ON_CPU.0 != 0;
    if !running {
        // Off CPU (or preempted by the agent): fixed since the switch-out.
        return from_sched;
    }
    let entered_ns = if flags & ts_thread_flags::TS_F_ENTER_KNOWN.0 != 0 {
        entry.syscall_enter_ns
    } else {
        0
    };
    let sched_evidence_ns = entered_ns.max(entry.switch_out_ns);
    let perf_valid = entry.perf_flags & ts_perf_flags::TS_P_VALID.0 != 0;
    if perf_valid && entry.perf_ns > sched_evidence_ns {
        return (entry.perf_flags & ts_perf_flags::TS_P_IN_SYSCALL.0 != 0)
            .then_some(Seen::OnCpu(entry.perf_syscall_nr));
    }
    from_sched
}

/// The six arguments: the first three from the entry, the rest from the
/// array beside it.
fn six(low: [u64; 3], high: [u64; 3]) -> [u64; 6] {
    [low[0], low[1], low[2], high[0], high[1], high[2]]
}

/// The syscall row part for what `seen` says, and whether its time counts
/// from before the agent started (a seeded entry).
///
/// Its time in the syscall is exact only from sys_enter's entry time
/// (`--syscalls exact`). Otherwise it counts from the latest moment the
/// thread was seen inside it, which is no earlier than its entry: the last
/// switch-out (passive mode), an on-CPU sample, or the scheduler's last-ran
/// time for a syscall begun before the agent started.
fn syscall_sample(full: &ThreadEntry, seen: Seen, now_ns: u64) -> (SyscallSample, bool) {
    let entry = &full.thread;
    let has = |flag: ts_thread_flags| entry.flags & flag.0 != 0;
    let nr = match seen {
        Seen::Entry(nr) | Seen::OnCpu(nr) => nr,
    };
    let same = nr == entry.syscall_nr;
    let entered = same && has(ts_thread_flags::TS_F_ENTER_KNOWN);
    if let Seen::OnCpu(_) = seen {
        if !entered {
            // Entered no later than the sample; its arguments as then.
            let sample = SyscallSample {
                nr,
                elapsed_us: Some(since(now_ns, entry.perf_ns)),
                elapsed_lower_bound: true,
                args: Some(full.args.perf_args),
                seq: None,
            };
            return (sample, false);
        }
    }
    let seeded = same && !entered && has(ts_thread_flags::TS_F_ENTER_SEEDED);
    let bounded = same && !entered && has(ts_thread_flags::TS_F_ENTER_BOUND);
    let sample = SyscallSample {
        nr,
        elapsed_us: (entered || seeded || bounded).then(|| since(now_ns, entry.syscall_enter_ns)),
        elapsed_lower_bound: seeded || bounded,
        args: (same && has(ts_thread_flags::TS_F_ARGS_KNOWN))
            .then(|| six(entry.syscall_args, full.args.args_hi)),
        seq: entered.then_some(entry.syscall_seq),
    };
    (sample, seeded)
}

#[cfg(test)]
mod tests;
