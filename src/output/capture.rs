//! Which stack capture describes a row: the rule every reader of a
//! slot's stack buffer applies (the agent's sampler, `agent::stacks`, and
//! the live readers, `output::live`), so a row and its stacks are of one
//! moment of the thread.

use crate::bpf::types::ts_stack_flags;
use crate::bpf::StackHeader;
use crate::output::sample::Sample;
use crate::store::thread_state::ThreadState;

/// The scan a row comes from: its instant, and when its entries had all
/// been read (captures are matched to rows after that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    pub now_ns: u64,
    pub read_ns: u64,
}

/// Whether the capture `header` describes the state `sample` reports at
/// the scan instant: a capture of the very moment the row is of, never
/// only of the same kind of state, so every field of a row comes from one
/// moment of the thread.
///
/// - A waiting row takes the capture of the wait that began at the row's
///   switch-out.
/// - An ON_CPU row takes an on-CPU capture from its run since it last
///   slept (preempted or not, it has been computing since), up to the end
///   of the scan; none when it slept again between the scan instant and
///   the read of its entry (its run at the scan instant is gone). The
///   refresh pass's capture of the thread preempted during that run
///   counts too: it replaced the run's on-CPU capture when a RUNQUEUE row
///   asked for one, and without it the thread's ON_CPU rows went without
///   stacks until the next on-CPU sample hit it (12% of a busy Node
///   process's rows with five spinners on two CPUs).
/// - A RUNQUEUE row takes an on-CPU capture only of the run it was
///   preempted from: after its last sleep and before both the switch-out
///   and the scan instant. A thread woken from a sleep has not run since
///   it slept (its last sleep is its switch-out, so no on-CPU capture fits
///   in between): its stack is still the sleep's. Without that bound, a
///   thread woken before the scan instant and running by the time its
///   stack was looked at took the capture of where it ran next (issue 14:
///   `RUNQUEUE epoll_wait` rows with the stack of the `fdatasync` that
///   followed).
pub fn describes(header: &StackHeader, sample: &Sample, scan: Scan) -> bool {
    let has = |flag: ts_stack_flags| header.flags & flag.0 != 0;
    if !has(ts_stack_flags::TS_S_KERNEL) && !has(ts_stack_flags::TS_S_USER) {
        return false;
    }
    let at = header.captured_ns;
    match sample.state {
        // Exited: there is nothing left to capture.
        ThreadState::Zombie | ThreadState::Dead => false,
        ThreadState::OnCpu if has(ts_stack_flags::TS_S_ONCPU) => {
            sample.wait_ns <= scan.now_ns && (sample.wait_ns..=scan.read_ns).contains(&at)
        }
        ThreadState::RunQueue if has(ts_stack_flags::TS_S_ONCPU) => {
            (sample.wait_ns..=sample.switch_out_ns.min(scan.now_ns)).contains(&at)
        }
        // The refresh pass captured it preempted (that capture replaced
        // the run's on-CPU sample): a point of the run it resumed, unless
        // it has slept since (a sleep's switch-out is its `wait_ns`).
        ThreadState::OnCpu if has(ts_stack_flags::TS_S_PREEMPTED) => {
            header.switch_out_ns > sample.wait_ns
                && sample.wait_ns <= scan.now_ns
                && header.switch_out_ns <= scan.now_ns
                && at <= scan.read_ns
        }
        ThreadState::OnCpu => false,
        _ if has(ts_stack_flags::TS_S_ONCPU) => false,
        // A preempted or woken thread may have run since: only an exact
        // match tells its stack.
        _ => header.switch_out_ns == sample.switch_out_ns,
    }
}

/// The capture that describes `sample`: the slot's last one in the table
/// (`found`), or else the one handed on before for the slot (`handed`,
/// looked up only then), whose pool entry may since have gone to another
/// thread; the reader kept what it needs of it.
pub fn describing(
    found: Option<StackHeader>,
    handed: impl FnOnce() -> Option<StackHeader>,
    sample: &Sample,
    scan: Scan,
) -> Option<StackHeader> {
    found
        .filter(|h| describes(h, sample, scan))
        .or_else(|| handed().filter(|h| describes(h, sample, scan)))
}

/// Whether `header` is the capture of the wait a thread was in at the scan
/// instant while its row is of a later one: the row stands in for that
/// wait (`StateAt::stands_in`: the thread switched in and out again while
/// the scan reached it, and its entry keeps only the latest wait), and the
/// capture is the switch-out inside the capture window `window` that began
/// the wait at the scan instant. Such a capture is withheld, not attached:
/// its stack would sit beside the state, syscall and I/O of another wait
/// (`DISK fdatasync` with an `epoll_wait` stack). Counted per tick
/// (`ticks.stacks_of_other_wait`).
pub fn of_other_wait(header: &StackHeader, sample: &Sample, window: Option<(u64, u64)>) -> bool {
    let off_cpu_wait = !matches!(
        sample.state,
        ThreadState::OnCpu | ThreadState::RunQueue | ThreadState::Zombie | ThreadState::Dead
    );
    off_cpu_wait
        && header.flags & ts_stack_flags::TS_S_ONCPU.0 == 0
        && header.switch_out_ns != sample.switch_out_ns
        && window.is_some_and(|(from, to)| {
            (from..=to).contains(&header.switch_out_ns) && sample.switch_out_ns > to
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: ThreadState, wait_ns: u64, switch_out_ns: u64) -> Sample {
        let mut s = crate::output::decode::decode(&crate::bpf::ThreadEntry::default(), 0);
        s.state = state;
        s.wait_ns = wait_ns;
        s.switch_out_ns = switch_out_ns;
        s
    }

    /// A scan at 5,000 whose entries were all read by 6,000.
    const SCAN: Scan = Scan {
        now_ns: 5_000,
        read_ns: 6_000,
    };

    fn describes_now(header: &StackHeader, sample: &Sample) -> bool {
        describes(header, sample, SCAN)
    }

    const K: u32 = ts_stack_flags::TS_S_KERNEL.0;
    const U: u32 = ts_stack_flags::TS_S_USER.0;
    const ONCPU: u32 = ts_stack_flags::TS_S_ONCPU.0;
    const ITER: u32 = ts_stack_flags::TS_S_ITER.0;
    const PREEMPTED: u32 = ts_stack_flags::TS_S_PREEMPTED.0;

    #[test]
    fn running_rows_take_captures_since_the_last_sleep() {
        let at = |flags, captured_ns| StackHeader {
            flags,
            captured_ns,
            switch_out_ns: 0,
        };
        // Slept until 1,000, then ran (and was preempted at 1,700).
        let running = sample(ThreadState::OnCpu, 1_000, 1_700);
        assert!(describes_now(&at(ONCPU | K | U, 1_500), &running));
        assert!(
            !describes_now(&at(ONCPU | K | U, 900), &running),
            "before it last slept"
        );
        assert!(
            !describes_now(&at(ONCPU, 1_500), &running),
            "nothing captured"
        );
        let preempted = sample(ThreadState::RunQueue, 1_000, 1_700);
        assert!(describes_now(&at(ONCPU | U, 1_500), &preempted));
        // Never slept since the agent started: any on-CPU capture.
        assert!(describes_now(
            &at(ONCPU | U, 10),
            &sample(ThreadState::OnCpu, 0, 0)
        ));
        // The refresh pass's capture of it preempted during that run does
        // (captured at 1,800 while it waited from its switch-out at 1,700),
        // but not of its sleep, nor of a preemption before it slept.
        let iter = |flags, switch_out_ns| StackHeader {
            flags: ITER | K | U | flags,
            captured_ns: 1_800,
            switch_out_ns,
        };
        assert!(describes_now(&iter(PREEMPTED, 1_700), &running));
        assert!(
            !describes_now(&iter(0, 1_700), &running),
            "not known to be preempted"
        );
        assert!(
            !describes_now(&iter(PREEMPTED, 1_000), &running),
            "its sleep"
        );
        assert!(
            !describes_now(&iter(PREEMPTED, 900), &running),
            "before it slept"
        );
        assert!(
            !describes_now(&iter(PREEMPTED, 5_500), &running),
            "after the scan instant"
        );
        assert!(describes_now(
            &iter(PREEMPTED, 300),
            &sample(ThreadState::OnCpu, 0, 0)
        ));
        // A switch-out capture never describes a running thread.
        assert!(!describes_now(
            &StackHeader {
                flags: K | U,
                captured_ns: 1_700,
                switch_out_ns: 1_700
            },
            &running
        ));
    }

    #[test]
    fn on_cpu_captures_are_of_the_run_at_the_scan_instant() {
        let on_cpu = |captured_ns| StackHeader {
            flags: ONCPU | K | U,
            captured_ns,
            switch_out_ns: 0,
        };
        // Asleep in epoll_wait from 4,000, woken at 4,500, waiting for a
        // CPU at the scan instant (5,000); it ran after the scan and was
        // caught on CPU in the fdatasync that followed (5,500): that is
        // not where it waited for a CPU.
        let woken = sample(ThreadState::RunQueue, 4_000, 4_000);
        assert!(!describes_now(&on_cpu(5_500), &woken));
        assert!(!describes_now(&on_cpu(4_200), &woken), "while asleep");
        // Preempted at 4,600 after running since its sleep at 4,000: a
        // capture of that run, not of the one after the scan.
        let preempted = sample(ThreadState::RunQueue, 4_000, 4_600);
        assert!(describes_now(&on_cpu(4_300), &preempted));
        assert!(!describes_now(&on_cpu(4_700), &preempted));
        assert!(
            !describes_now(&on_cpu(3_900), &preempted),
            "before the sleep"
        );
        // Running since its sleep at 1,000 (preempted and back at 1,700):
        // captures of that run, until the scan read it (6,000).
        let running = sample(ThreadState::OnCpu, 1_000, 1_700);
        assert!(describes_now(&on_cpu(1_200), &running));
        assert!(describes_now(&on_cpu(5_900), &running));
        assert!(
            !describes_now(&on_cpu(6_100), &running),
            "after the scan read it"
        );
        // It slept again at 5,300, after the scan instant: its run at the
        // scan instant is gone from the entry.
        assert!(!describes_now(
            &on_cpu(4_900),
            &sample(ThreadState::OnCpu, 5_300, 5_300)
        ));
    }

    #[test]
    fn waiting_rows_take_captures_of_the_same_wait() {
        let waiting = sample(ThreadState::Sleep, 2_000, 2_000);
        let at = |flags, switch_out_ns| StackHeader {
            flags,
            captured_ns: 2_500,
            switch_out_ns,
        };
        assert!(describes_now(&at(K | U, 2_000), &waiting));
        assert!(
            !describes_now(&at(K | U, 1_000), &waiting),
            "an earlier wait"
        );
        assert!(
            !describes_now(&at(ONCPU | K, 0), &waiting),
            "an on-CPU capture"
        );
        // Asleep since before the agent started: a refresh capture.
        assert!(describes_now(
            &at(ITER | K, 0),
            &sample(ThreadState::Sleep, 0, 0)
        ));
        assert!(!describes_now(
            &at(K, 2_000),
            &sample(ThreadState::Zombie, 2_000, 2_000)
        ));
    }

    #[test]
    fn a_stand_in_row_never_takes_the_stack_of_the_earlier_wait() {
        // Window armed from 10,000; scan instant 12,000. At the scan the
        // thread waited in fdatasync since 11,900 (captured then); the
        // entry was read after it ran and went to sleep again at 12,300 in
        // epoll_wait: the row (state, syscall, I/O) is of that later wait.
        let window = Some((10_000, 12_000));
        let scan = Scan {
            now_ns: 12_000,
            read_ns: 12_400,
        };
        let stand_in = sample(ThreadState::Sleep, 12_300, 12_300);
        let at = |switch_out_ns| StackHeader {
            flags: K | U,
            captured_ns: switch_out_ns,
            switch_out_ns,
        };
        assert!(
            !describes(&at(11_900), &stand_in, scan),
            "the capture of the wait at the scan instant is another wait than the row's"
        );
        assert!(
            of_other_wait(&at(11_900), &stand_in, window),
            "withheld and counted"
        );
        assert!(
            describes(&at(12_300), &stand_in, scan),
            "a capture of the row's own wait (the refresh pass) is attached"
        );
        assert!(!of_other_wait(&at(12_300), &stand_in, window));
        // Not counted: captures outside the window, rows that are not
        // stand-ins, runnable and running rows, on-CPU captures.
        assert!(!of_other_wait(&at(9_000), &stand_in, window));
        assert!(!of_other_wait(&at(11_900), &stand_in, None));
        assert!(!of_other_wait(
            &at(11_500),
            &sample(ThreadState::Sleep, 11_900, 11_900),
            window
        ));
        for state in [ThreadState::RunQueue, ThreadState::OnCpu] {
            assert!(!of_other_wait(
                &at(11_900),
                &sample(state, 12_300, 12_300),
                window
            ));
        }
        let on_cpu_capture = StackHeader {
            flags: ONCPU | K,
            ..at(11_900)
        };
        assert!(!of_other_wait(&on_cpu_capture, &stand_in, window));
    }
}
