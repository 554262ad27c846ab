//! Sampler side: which capture describes each row.
//!
//! A thread's last capture is in the entry of the `stacks` pool its slot
//! names, until another thread takes that entry (`bpf::table::StackPool`).
//! For each row the sampler checks that the capture belongs to the state
//! the row reports (`describes`) and otherwise asks the refresh pass (a
//! sleepable task iterator) to capture the thread now. A row whose capture is still not
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
//! once and reuses the result for every later row. `sent` keeps each
//! capture's header, so the capture goes on describing the thread's rows
//! after the pool gave its entry to another thread.

use rustc_hash::FxHashMap;
use tracing::warn;

use super::clock::monotonic_ns;
use crate::bpf::{Agent, StackHeader, ThreadTable};
use crate::output::capture::{describes, describing, of_other_wait, Scan};
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
    /// Per slot: the capture last handed to the writer, which still
    /// describes the slot's rows after the pool gave its entry to another
    /// thread (the writer keeps its stacks).
    sent: FxHashMap<u32, StackHeader>,
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
            let header = describing(found, || self.sent.get(&sample.slot).copied(), sample, scan);
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
            if self.sent.get(&slot) == Some(&header) {
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
            self.sent.insert(slot, copied);
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

    fn sample(state: ThreadState) -> Sample {
        let mut s = crate::agent::decode::decode(&crate::bpf::ThreadEntry::default(), 0);
        s.state = state;
        s
    }

    #[test]
    fn waits_are_refreshed_running_and_exited_threads_are_not() {
        assert!(refreshable(&sample(ThreadState::Sleep)));
        assert!(refreshable(&sample(ThreadState::RunQueue)));
        assert!(!refreshable(&sample(ThreadState::OnCpu)));
        assert!(!refreshable(&sample(ThreadState::Zombie)));
    }
}
