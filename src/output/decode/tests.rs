//! Unit tests of decoding: thread entries read at a scan instant become one sample row each.

use super::bits::*;
use super::*;

const ON_CPU: u32 = ts_thread_flags::TS_F_ON_CPU.0;
const AGENT: u32 = ts_thread_flags::TS_F_AGENT_PREEMPTED.0;
const IN_SYSCALL: u32 = ts_thread_flags::TS_F_IN_SYSCALL.0;
const SWITCH: u32 = ts_thread_flags::TS_F_SWITCH_KNOWN.0;
const ENTER: u32 = ts_thread_flags::TS_F_ENTER_KNOWN.0 | ts_thread_flags::TS_F_ARGS_KNOWN.0;
const ARGS: u32 = ts_thread_flags::TS_F_ARGS_KNOWN.0;

fn state(f: SchedFields, now_ns: u64) -> ThreadState {
    thread_state_at(&f, now_ns).state
}

fn fields(flags: u32, sched_state: u32, switch_out_ns: u64, wakeup_ns: u64) -> SchedFields {
    SchedFields {
        flags: flags | SWITCH,
        sched_state,
        switch_in_ns: 50,
        switch_out_ns,
        wakeup_ns,
        ..Default::default()
    }
}

#[test]
fn states_from_the_full_state_word() {
    let s = |sched_state, exit_state| {
        state(
            SchedFields {
                sched_state,
                exit_state,
                ..fields(0, 0, 100, 0)
            },
            1_000,
        )
    };
    assert_eq!(s(TASK_INTERRUPTIBLE, 0), ThreadState::Sleep);
    assert_eq!(s(TASK_UNINTERRUPTIBLE, 0), ThreadState::Uninterruptible);
    // TASK_IDLE = UNINTERRUPTIBLE | NOLOAD: not DISK.
    assert_eq!(s(TASK_UNINTERRUPTIBLE | TASK_NOLOAD, 0), ThreadState::Idle);
    // TASK_KILLABLE = UNINTERRUPTIBLE | WAKEKILL is still uninterruptible.
    assert_eq!(
        s(TASK_UNINTERRUPTIBLE | 0x100, 0),
        ThreadState::Uninterruptible
    );
    assert_eq!(s(TASK_STOPPED | 0x100, 0), ThreadState::Stopped);
    assert_eq!(s(TASK_TRACED, 0), ThreadState::Traced);
    assert_eq!(s(TASK_PARKED, 0), ThreadState::Parked);
    assert_eq!(s(TASK_DEAD, EXIT_ZOMBIE), ThreadState::Zombie);
    assert_eq!(s(TASK_DEAD, EXIT_DEAD), ThreadState::Dead);
    assert_eq!(s(TASK_NEW, 0), ThreadState::New);
    assert_eq!(s(TASK_FROZEN, 0), ThreadState::Frozen);
    assert_eq!(s(TASK_RTLOCK_WAIT, 0), ThreadState::RtLockWait);
    assert_eq!(s(0, 0), ThreadState::RunQueue);
    assert_eq!(s(0x4000_0000, 0), ThreadState::Unknown);
}

#[test]
fn woken_threads_wait_for_a_cpu() {
    assert_eq!(
        state(fields(0, TASK_INTERRUPTIBLE, 100, 150), 1_000),
        ThreadState::RunQueue
    );
    // A wakeup before the switch-out does not count.
    assert_eq!(
        state(fields(0, TASK_INTERRUPTIBLE, 100, 50), 1_000),
        ThreadState::Sleep
    );
    assert_eq!(
        state(fields(0, TASK_STOPPED, 100, 150), 1_000),
        ThreadState::RunQueue
    );
}

#[test]
fn threads_preempted_wait_for_a_cpu() {
    // Even by the agent: settle::restore_displaced decides that.
    assert_eq!(
        state(fields(AGENT, 0, 100, 0), 1_000),
        ThreadState::RunQueue
    );
    assert_eq!(
        state(fields(ON_CPU, TASK_INTERRUPTIBLE, 100, 0), 1_000),
        ThreadState::OnCpu
    );
}

#[test]
fn switches_during_the_scan_are_rewound() {
    let now = 1_000;
    let at = |flags, sched_state, switch_in_ns, switch_out_ns, wakeup_ns| {
        let f = SchedFields {
            flags: flags | SWITCH,
            sched_state,
            switch_in_ns,
            switch_out_ns,
            wakeup_ns,
            ..Default::default()
        };
        let s = thread_state_at(&f, now);
        (s.state, s.since_us)
    };
    // Switched in after the scan started: it was waiting at `now`
    // (woken at 800).
    assert_eq!(
        at(ON_CPU, TASK_INTERRUPTIBLE, 1_200, 500, 800),
        (ThreadState::RunQueue, Some(0))
    );
    // ... or asleep, when the wakeup came after `now` too.
    assert_eq!(
        at(ON_CPU, TASK_UNINTERRUPTIBLE, 1_200, 500, 1_100),
        (ThreadState::Uninterruptible, Some(0))
    );
    // Switched out (to sleep) after the scan started: still running.
    assert_eq!(
        at(0, TASK_INTERRUPTIBLE, 500, 1_500, 0).0,
        ThreadState::OnCpu
    );
    // Out and back in, both after `now`: it was running at `now`.
    assert_eq!(
        at(ON_CPU, TASK_UNINTERRUPTIBLE, 1_300, 1_100, 1_300),
        (ThreadState::OnCpu, None)
    );
    // In and out again, both after `now`: waiting for that switch-in.
    assert_eq!(
        at(0, TASK_UNINTERRUPTIBLE, 1_100, 1_300, 900).0,
        ThreadState::RunQueue
    );
    // Woken after the scan started: it was still asleep.
    assert_eq!(
        at(0, TASK_INTERRUPTIBLE, 50, 100, 1_100).0,
        ThreadState::Sleep
    );
    // Seeded entries (no switch seen) are taken as they are.
    let seeded = SchedFields {
        flags: ON_CPU,
        ..Default::default()
    };
    assert_eq!(
        thread_state_at(&seeded, now),
        StateAt {
            state: ThreadState::OnCpu,
            since_us: None,
            since_lower_bound: false,
            running_since_ns: 0,
            stands_in: false,
        }
    );
}

/// Decode `e` with arguments 3..5 [4, 5, 6] beside it, and an on-CPU
/// sample's arguments [10, ..., 15].
fn decode(e: &ts_thread, now_ns: u64) -> Sample {
    let args = crate::bpf::types::ts_syscall_args {
        args_hi: [4, 5, 6],
        perf_args: [10, 11, 12, 13, 14, 15],
        ..Default::default()
    };
    super::decode(&ThreadEntry { thread: *e, args }, now_ns)
}

const BOUND: u32 = ts_thread_flags::TS_F_ENTER_BOUND.0;

fn entry(flags: u32) -> ts_thread {
    ts_thread {
        tid: 42,
        tgid: 40,
        flags,
        sched_state: TASK_INTERRUPTIBLE,
        switch_in_ns: 1_000_000,
        switch_out_ns: 2_000_000,
        syscall_nr: 230,
        syscall_enter_ns: 1_500_000,
        syscall_args: [0, 0, 0x7ffd_0000],
        syscall_seq: 7,
        ..Default::default()
    }
}

#[test]
fn sleeping_in_a_syscall() {
    let s = decode(&entry(IN_SYSCALL | SWITCH | ENTER), 10_000_000);
    assert_eq!(s.state, ThreadState::Sleep);
    assert_eq!(s.state_since_us, Some(8_000));
    assert_eq!(
        s.syscall,
        Some(SyscallSample {
            nr: 230,
            elapsed_us: Some(8_500),
            elapsed_lower_bound: false,
            args: Some([0, 0, 0x7ffd_0000, 4, 5, 6]),
            seq: Some(7),
        })
    );
}

#[test]
fn passive_syscalls_count_from_the_switch_out() {
    // No sys_enter: the switch-out found it in the syscall and set the
    // entry time to itself, a lower bound.
    let mut e = entry(IN_SYSCALL | SWITCH | ARGS | BOUND);
    e.syscall_enter_ns = e.switch_out_ns;
    let s = decode(&e, 10_000_000);
    assert_eq!(s.state_since_us, Some(8_000));
    assert_eq!(
        s.syscall,
        Some(SyscallSample {
            nr: 230,
            elapsed_us: Some(8_000),
            elapsed_lower_bound: true,
            args: Some([0, 0, 0x7ffd_0000, 4, 5, 6]),
            seq: None,
        })
    );
    // Not a wait begun before the agent started.
    assert!(!s.since_lower_bound);
    // Running again, and sampled on the CPU inside a syscall since:
    // counted from that sample, with the sample's arguments.
    e.flags |= ON_CPU;
    e.switch_in_ns = 3_000_000;
    e.perf_flags = ts_perf_flags::TS_P_VALID.0 | ts_perf_flags::TS_P_IN_SYSCALL.0;
    e.perf_syscall_nr = 230;
    e.perf_ns = 4_000_000;
    assert_eq!(
        decode(&e, 10_000_000).syscall,
        Some(SyscallSample {
            nr: 230,
            elapsed_us: Some(6_000),
            elapsed_lower_bound: true,
            args: Some([10, 11, 12, 13, 14, 15]),
            seq: None,
        })
    );
}

#[test]
fn seeded_threads_have_no_times_but_arguments() {
    let mut e = entry(IN_SYSCALL | ARGS);
    e.switch_in_ns = 0;
    e.switch_out_ns = 0;
    e.syscall_enter_ns = 0;
    let s = decode(&e, 10_000_000);
    assert_eq!(s.state_since_us, None);
    assert_eq!(
        s.syscall,
        Some(SyscallSample {
            nr: 230,
            elapsed_us: None,
            elapsed_lower_bound: false,
            args: Some([0, 0, 0x7ffd_0000, 4, 5, 6]),
            seq: None,
        })
    );
    let s = decode(&entry(IN_SYSCALL), 10_000_000);
    assert_eq!(s.syscall.and_then(|c| c.args), None);
}

#[test]
fn waits_begun_before_the_agent_are_lower_bounds() {
    let seeded = ts_thread_flags::TS_F_SINCE_SEEDED.0 | ts_thread_flags::TS_F_ENTER_SEEDED.0;
    let mut e = entry(IN_SYSCALL | ARGS | seeded);
    e.switch_in_ns = 0;
    e.syscall_enter_ns = e.switch_out_ns;
    let s = decode(&e, 10_000_000);
    assert_eq!(s.state, ThreadState::Sleep);
    assert_eq!(s.state_since_us, Some(8_000));
    assert_eq!(s.syscall.and_then(|c| c.elapsed_us), Some(8_000));
    assert_eq!(s.syscall.map(|c| c.elapsed_lower_bound), Some(true));
    assert_eq!(s.syscall.and_then(|c| c.seq), None);
    assert!(s.since_lower_bound);
    // Woken since: waiting for a CPU since the wakeup, exactly; the
    // syscall's time is still a lower bound.
    e.wakeup_ns = 9_000_000;
    let s = decode(&e, 10_000_000);
    assert_eq!(
        (s.state, s.state_since_us, s.since_lower_bound),
        (ThreadState::RunQueue, Some(1_000), true)
    );
    // After its first switch the state is exact; a new syscall's
    // entry, seen by sys_enter, too.
    let mut e = entry(IN_SYSCALL | SWITCH | ENTER | ts_thread_flags::TS_F_ENTER_SEEDED.0);
    let s = decode(&e, 10_000_000);
    assert_eq!(s.syscall.and_then(|c| c.elapsed_us), Some(8_500));
    assert!(!s.since_lower_bound);
    // ... while the same syscall, still unseen by sys_enter, is not.
    e.flags &= !ts_thread_flags::TS_F_ENTER_KNOWN.0;
    assert!(decode(&e, 10_000_000).since_lower_bound);
}

#[test]
fn a_newer_on_cpu_sample_overrides_the_last_syscall() {
    let mut e = entry(ON_CPU | IN_SYSCALL | SWITCH | ENTER);
    e.switch_in_ns = 3_000_000;
    // Sampled in user mode after the syscall was entered: it returned.
    e.perf_flags = ts_perf_flags::TS_P_VALID.0 | ts_perf_flags::TS_P_USER.0;
    e.perf_ns = 4_000_000;
    let s = decode(&e, 5_000_000);
    assert_eq!(s.state, ThreadState::OnCpu);
    assert_eq!(s.state_since_us, Some(2_000));
    assert_eq!(s.syscall, None);
    // A syscall entered after that sample wins again.
    e.syscall_enter_ns = 4_500_000;
    assert_eq!(decode(&e, 5_000_000).syscall.map(|c| c.nr), Some(230));
    // A sample inside another syscall: that one, entered no later
    // than the sample (a lower bound), with the sample's arguments.
    e.perf_flags = ts_perf_flags::TS_P_VALID.0 | ts_perf_flags::TS_P_IN_SYSCALL.0;
    e.perf_syscall_nr = 0;
    e.perf_ns = 4_800_000;
    assert_eq!(
        decode(&e, 5_000_000).syscall,
        Some(SyscallSample {
            nr: 0,
            elapsed_us: Some(200),
            elapsed_lower_bound: true,
            args: Some([10, 11, 12, 13, 14, 15]),
            seq: None,
        })
    );
}

#[test]
fn zombies_and_kernel_threads_are_not_in_syscalls() {
    let mut e = entry(IN_SYSCALL | SWITCH);
    e.exit_state = EXIT_ZOMBIE;
    e.sched_state = TASK_DEAD;
    assert_eq!(decode(&e, 10_000_000).syscall, None);
    let k = entry(IN_SYSCALL | SWITCH | ts_thread_flags::TS_F_KTHREAD.0);
    assert_eq!(decode(&k, 10_000_000).syscall, None);
}

#[test]
fn io_in_flight() {
    let mut e = entry(SWITCH);
    e.sched_state = TASK_UNINTERRUPTIBLE;
    e.io_rq = 0xffff_8880_0000_1000;
    e.io_dev = (254 << 20) | 1;
    e.io_op = 1;
    e.io_bytes = 4096;
    e.io_insert_ns = 9_000_000;
    e.io_rq_seq = 3;
    let s = decode(&e, 10_000_000);
    assert_eq!(s.state, ThreadState::Disk);
    assert_eq!(
        s.io.map(|io| (io.dev, io.age_us, io.seq)),
        Some(((254 << 20) | 1, 1_000, 3))
    );
    // A request queued after the scan began is not evidence yet.
    e.io_insert_ns = 11_000_000;
    assert_eq!(decode(&e, 10_000_000).state, ThreadState::Uninterruptible);
    // ... unless the wait it belongs to, switched in and out again after
    // the scan began, stands in for the one at the scan instant.
    let (switch_in, switch_out) = (e.switch_in_ns, e.switch_out_ns);
    (e.switch_in_ns, e.switch_out_ns) = (10_500_000, 11_500_000);
    let s = decode(&e, 10_000_000);
    assert_eq!(
        (s.state, s.io.map(|io| io.seq)),
        (ThreadState::Disk, Some(3))
    );
    // A request queued after that switch-out is not that wait's.
    e.io_insert_ns = 12_000_000;
    assert_eq!(decode(&e, 10_000_000).state, ThreadState::Uninterruptible);
    (e.switch_in_ns, e.switch_out_ns) = (switch_in, switch_out);
    // Without a request of its own: not DISK (a vfork parent, a
    // journal commit, a kernel lock).
    e.io_rq = 0;
    let s = decode(&e, 10_000_000);
    assert_eq!((s.state, s.io), (ThreadState::Uninterruptible, None));
}

#[test]
fn runqueue_time_counts_from_the_wakeup() {
    let mut e = entry(SWITCH);
    e.wakeup_ns = 9_000_000;
    let s = decode(&e, 10_000_000);
    assert_eq!(s.state, ThreadState::RunQueue);
    assert_eq!(s.state_since_us, Some(1_000));
}

#[test]
fn the_waits_entry_is_read_only_for_states_it_can_describe() {
    let entry = ts_thread {
        switch_out_ns: 5_000,
        ..Default::default()
    };
    let wait = ts_wait {
        waker_tid: 42,
        lock_addr: 0xffff_8880_0000_1000,
        lock_flags: ts_lock_flags::TS_LCB_F_MUTEX.0,
        lock_owner: 43,
        owner_ns: 5_000,
        ..Default::default()
    };
    for state in ThreadState::ALL {
        let found = wait_of(&wait, &entry, state);
        // The sampler skips the entry for the other states: nothing of
        // it may be lost by that.
        if !has_wait_record(state) {
            assert_eq!(found, WaitSample::default(), "{state:?}");
        }
    }
    assert_eq!(wait_of(&wait, &entry, ThreadState::OnCpu).waker_tid, 42);
    assert_eq!(
        wait_of(&wait, &entry, ThreadState::Uninterruptible).blocker_tid,
        43
    );
    assert_eq!(
        wait_of(&wait, &entry, ThreadState::Disk).lock,
        Some(LockKind::Mutex)
    );
}
