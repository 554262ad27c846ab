//! Sampler side: which capture describes each row.
//!
//! A slot's stack buffer holds its thread's last capture. For each row the
//! sampler checks that the capture belongs to the state the row reports
//! (`describes`) and otherwise asks the refresh pass (a sleepable task
//! iterator) to capture the thread now. A row whose capture is still not
//! right gets no stack ids rather than wrong ones.
//!
//! Three sources keep captures current at little cost:
//! - the switch hook captures a thread going to sleep at most once per
//!   sampling period, and every thread that goes to sleep in a short
//!   window before each tick (`arm`): a short wait that a tick sees
//!   started in that window;
//! - the on-CPU sample captures running threads;
//! - the refresh pass serves longer waits whose capture is older, at most
//!   `REFRESH_BUDGET` threads per pass, paced so that passes (each walks
//!   every task) take at most 1/`REFRESH_PACE` of a CPU.
//!
//! A thread that has not switched since its last sample keeps the same
//! capture: the sampler copies a buffer out of the table only the first
//! time it hands it to the writer (`sent`), and the writer resolves it
//! once and reuses the result for every later row.

use rustc_hash::FxHashMap;
use tracing::warn;

use super::clock::monotonic_ns;
use crate::bpf::types::ts_stack_flags;
use crate::bpf::{Agent, StackHeader, ThreadTable};
use crate::output::sample::{Sample, StackRef};
use crate::output::stacks::RawStacks;
use crate::store::thread_state::ThreadState;

/// Threads the refresh pass is asked for at most per pass.
const REFRESH_BUDGET: usize = 256;
/// A refresh pass that took t waits t × this before the next one.
const REFRESH_PACE: u64 = 50;
/// The capture window before each tick: at most this long...
const WINDOW_MAX_NS: u64 = 2_000_000;
/// ...and at most this fraction of the period.
const WINDOW_PERIOD_DIVISOR: u64 = 20;

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

/// What stack collection did in one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectStats {
    /// Rows with a capture that describes them.
    pub with_stacks: u32,
    /// Threads the refresh pass was asked to capture.
    pub requested: u32,
    /// Rows left without a stack because the only capture was of another
    /// wait than the row's (`of_other_wait`).
    pub of_other_wait: u32,
    /// Captures copied for the writer (new since last handed over).
    pub copied: u32,
}

/// Per-agent state of stack collection on the sampler thread.
pub struct Collector {
    /// Per slot: `captured_ns` of the capture last handed to the writer.
    sent: FxHashMap<u32, u64>,
    /// No refresh pass before this time.
    next_refresh_ns: u64,
    window_ns: u64,
    /// Where the next request budget starts, so a large backlog is served
    /// in turn.
    rotate: usize,
    refresh_failed: bool,
    /// Start of the capture window armed for the coming tick (0: none).
    armed_from_ns: u64,
}

impl Collector {
    /// For a sampling period of `period_ns`.
    pub fn new(period_ns: u64) -> Collector {
        Collector {
            sent: FxHashMap::default(),
            next_refresh_ns: 0,
            window_ns: (period_ns / WINDOW_PERIOD_DIVISOR).min(WINDOW_MAX_NS),
            rotate: 0,
            refresh_failed: false,
            armed_from_ns: 0,
        }
    }

    /// Attach a capture to every row it describes (refreshing stale ones
    /// when due) and return the captures the writer has not seen, which
    /// `StackRef::raw` indexes.
    pub fn collect(
        &mut self,
        agent: &Agent,
        samples: &mut [Sample],
        now_ns: u64,
    ) -> (Vec<RawStacks>, CollectStats) {
        let table = agent.table();
        let mut stats = CollectStats::default();
        let mut stale: Vec<usize> = Vec::new();
        let mut headers: Vec<Option<StackHeader>> = Vec::with_capacity(samples.len());
        // The window closed at the scan instant (`disarm` runs right after
        // `now_ns` is read; a capture after it only fails to match).
        let window = (self.armed_from_ns != 0).then_some((self.armed_from_ns, now_ns));
        let scan = Scan {
            now_ns,
            read_ns: monotonic_ns(),
        };
        let mut other_wait: Vec<bool> = Vec::with_capacity(samples.len());
        for (i, sample) in samples.iter().enumerate() {
            let found = table.stack_header(sample.slot as usize);
            other_wait.push(found.is_some_and(|h| of_other_wait(&h, sample, window)));
            let header = found.filter(|h| describes(h, sample, scan));
            if header.is_none() && refreshable(sample) {
                stale.push(i);
            }
            headers.push(header);
        }
        if !stale.is_empty() && now_ns >= self.next_refresh_ns && !self.refresh_failed {
            let start = self.rotate % stale.len();
            let chosen: Vec<usize> = stale
                .iter()
                .cycle()
                .skip(start)
                .take(stale.len().min(REFRESH_BUDGET))
                .copied()
                .collect();
            self.rotate = self.rotate.wrapping_add(chosen.len());
            for &i in &chosen {
                table.request_stack(samples[i].slot as usize);
            }
            stats.requested = chosen.len() as u32;
            let started = monotonic_ns();
            let refreshed = agent.refresh_stacks();
            let took = monotonic_ns() - started;
            self.next_refresh_ns = started + took * REFRESH_PACE;
            match refreshed {
                Ok(true) => {
                    for &i in &chosen {
                        headers[i] = table
                            .stack_header(samples[i].slot as usize)
                            .filter(|h| describes(h, &samples[i], scan));
                    }
                }
                Ok(false) => self.refresh_failed = true,
                Err(err) => {
                    warn!("stack refresh failed, not trying again: {err:#}");
                    self.refresh_failed = true;
                }
            }
        }
        let mut raws = Vec::new();
        for ((sample, header), other_wait) in samples.iter_mut().zip(headers).zip(other_wait) {
            let Some(header) = header else {
                stats.of_other_wait += u32::from(other_wait);
                continue;
            };
            let slot = sample.slot;
            if self.sent.get(&slot) == Some(&header.captured_ns) {
                sample.stack = Some(StackRef {
                    slot,
                    captured_ns: header.captured_ns,
                    raw: None,
                });
                stats.with_stacks += 1;
                continue;
            }
            // Copy it out; a capture that replaced it meanwhile counts if
            // it describes the row too.
            let Some(copy) = table.read_stack(slot as usize) else {
                continue;
            };
            let copied = StackHeader {
                flags: copy.flags,
                captured_ns: copy.captured_ns,
                switch_out_ns: copy.switch_out_ns,
            };
            if copied != header && !describes(&copied, sample, scan) {
                stats.of_other_wait += u32::from(of_other_wait(&copied, sample, window));
                continue;
            }
            sample.stack = Some(StackRef {
                slot,
                captured_ns: copied.captured_ns,
                raw: Some(raws.len() as u32),
            });
            raws.push(RawStacks::from_capture(&copy).with_chain(
                &copy,
                sample.tid,
                table.py_chains(),
            ));
            self.sent.insert(slot, copied.captured_ns);
            stats.with_stacks += 1;
        }
        stats.copied = raws.len() as u32;
        if self.sent.len() > table.capacity() * 2 {
            self.sent
                .retain(|&slot, _| (slot as usize) < table.high_water());
        }
        (raws, stats)
    }

    /// Capture every thread that goes to sleep in the window before the
    /// tick due at `tick_ns`.
    pub fn arm(&mut self, table: &ThreadTable, tick_ns: u64) {
        self.armed_from_ns = tick_ns.saturating_sub(self.window_ns).max(1);
        table.set_capture_window(self.armed_from_ns);
    }

    /// Close the window as the tick begins: a capture made after the scan
    /// instant would replace the one that describes the sample (a thread
    /// switching thousands of times a second would never keep one).
    pub fn disarm(&self, table: &ThreadTable) {
        table.set_capture_window(0);
    }

    /// The writer did not get the captures of a dropped tick whose rows
    /// are `samples`: hand those over again with the next tick. Only
    /// those: forgetting every capture would make the tick after each drop
    /// carry a copy of every stack, which under overload (drops every
    /// tick) multiplies both the scan cost and the queued memory.
    pub fn forget_dropped(&mut self, samples: &[Sample]) {
        for sample in samples {
            if let Some(StackRef {
                slot, raw: Some(_), ..
            }) = sample.stack
            {
                self.sent.remove(&slot);
            }
        }
    }
}

/// Rows whose thread a refresh pass can capture: off CPU and not exited.
fn refreshable(sample: &Sample) -> bool {
    !matches!(
        sample.state,
        ThreadState::OnCpu | ThreadState::Zombie | ThreadState::Dead
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: ThreadState, wait_ns: u64, switch_out_ns: u64) -> Sample {
        let mut s = crate::agent::decode::decode(&crate::bpf::ThreadEntry::default(), 0);
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
        assert!(refreshable(&waiting) && refreshable(&sample(ThreadState::RunQueue, 0, 1)));
        assert!(
            !refreshable(&sample(ThreadState::OnCpu, 1, 0))
                && !refreshable(&sample(ThreadState::Zombie, 0, 1))
        );
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
