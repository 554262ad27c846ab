//! `--track`: which ends of syscalls and block requests reach the writer.
//!
//! The hooks decide "in flight at a tick" themselves: the sampler publishes
//! the instant its scan ended (`ThreadTable::set_tick_ns`; "every end
//! counts" while it reads the clock and scans), and the sys_exit and
//! block-completion hooks report every syscall entered (every request
//! queued) no later than the latest published instant: every call a row
//! of the tick shows began before the row was read. Deciding it
//! there, rather than asking the hooks to follow what the scan found, is
//! what keeps the calls that end right after the tick: a sampler that arms
//! its followers only after reading the rows lost them (67% of `fdatasync`
//! and 0% of `lseek` calls a pgbench tick caught got a row), which made the
//! latency from `syscalls` biased towards long calls.
//!
//! The hooks cannot know which threads the tick wrote (its filter, a tick
//! dropped under overload), so this side keeps the records of the events a
//! written row caught, by kind, thread and sequence number, and drops the
//! others: every `syscalls` and `iorq` row joins a sample.

use rustc_hash::FxHashMap;

use crate::bpf::types::{ts_completion, ts_completion_kind};
use crate::bpf::ThreadTable;
use crate::output::sample::Sample;

/// What `--track` follows to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tracked {
    Syscall,
    Io,
}

/// A syscall or request that a tick's rows caught in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Event {
    kind: Tracked,
    tid: u32,
    seq: u64,
}

/// Where an event was last seen.
#[derive(Debug, Clone, Copy)]
struct Seen {
    slot: usize,
    /// The last tick whose rows caught it.
    tick: u64,
    /// A tick the writer got caught it: its end belongs in the tables.
    written: bool,
}

/// Entry times come from the scheduler's clock (`rq_now`), which may run
/// ahead of CLOCK_MONOTONIC: a 500 µs nanosleep measured 375 µs here, and
/// calls entered just before the end of the scan were left out. The
/// published instant is this much later; ends of calls entered in between
/// that no row caught are dropped here like any other.
pub const ENTRY_CLOCK_MARGIN_NS: u64 = 1_000_000;

/// A request not seen in a tick for this many ticks is forgotten (its
/// completion, if ever reported, is dropped): requests last milliseconds.
const IO_FORGET_TICKS: u64 = 1_000;

/// The events caught by recent ticks whose end has not been reported yet.
#[derive(Default)]
pub struct Tracking {
    pending: FxHashMap<Event, Seen>,
}

impl Tracking {
    /// Note the events tick number `tick`'s rows `samples` caught in
    /// progress.
    pub fn caught(&mut self, tick: u64, samples: &[Sample]) {
        for sample in samples {
            let slot = sample.slot as usize;
            let mut note = |kind, seq| {
                let event = Event {
                    kind,
                    tid: sample.tid,
                    seq,
                };
                let seen = self.pending.entry(event).or_insert(Seen {
                    slot,
                    tick,
                    written: false,
                });
                seen.tick = tick;
                seen.slot = slot;
            };
            if let Some(seq) = sample.syscall.and_then(|s| s.seq) {
                note(Tracked::Syscall, seq);
            }
            if let Some(io) = sample.io.filter(|io| io.seq != 0) {
                note(Tracked::Io, io.seq.into());
            }
        }
    }

    /// The events that have ended by now without being caught by `tick`:
    /// a syscall whose thread has entered another one since (or whose slot
    /// changed hands), a request not seen for `IO_FORGET_TICKS`. Their
    /// records, if any, are in the ring buffer already: call this before
    /// draining it, and `forget` them after filtering the drained records.
    pub fn ended(&self, table: &ThreadTable, tick: u64) -> Vec<(Tracked, u32, u64)> {
        let mut ended = Vec::new();
        for (event, seen) in &self.pending {
            if seen.tick == tick {
                continue;
            }
            let gone = match event.kind {
                Tracked::Syscall => table
                    .read(seen.slot)
                    .is_none_or(|e| e.thread.tid != event.tid || e.thread.syscall_seq != event.seq),
                Tracked::Io => tick.saturating_sub(seen.tick) > IO_FORGET_TICKS,
            };
            if gone {
                ended.push((event.kind, event.tid, event.seq));
            }
        }
        ended
    }

    /// Keep the records of `drained` whose event a written tick caught, or
    /// tick `tick` (which carries them to the writer); each is reported
    /// once, so its event is done.
    pub fn keep(&mut self, tick: u64, drained: &mut Vec<ts_completion>) {
        drained.retain(|c| {
            let kind = if ts_completion_kind(c.kind) == ts_completion_kind::TS_C_IO {
                Tracked::Io
            } else {
                Tracked::Syscall
            };
            let event = Event {
                kind,
                tid: c.tid,
                seq: c.seq,
            };
            match self.pending.get(&event) {
                Some(seen) if seen.written || seen.tick == tick => {
                    self.pending.remove(&event);
                    true
                }
                _ => false,
            }
        });
    }

    /// Forget events `ended` returned.
    pub fn forget(&mut self, ended: &[(Tracked, u32, u64)]) {
        for &(kind, tid, seq) in ended {
            self.pending.remove(&Event { kind, tid, seq });
        }
    }

    /// Tick `tick` reached the writer: the events it caught belong in the
    /// tables whenever they end.
    pub fn written(&mut self, tick: u64) {
        for seen in self.pending.values_mut() {
            if seen.tick == tick {
                seen.written = true;
            }
        }
    }

    /// Events waiting for their end.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Nothing is waiting for its end.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::sample::{IoSample, SyscallSample};

    fn row(tid: u32, syscall_seq: Option<u64>, io_seq: Option<u32>) -> Sample {
        let mut s = crate::agent::decode::decode(&crate::bpf::ThreadEntry::default(), 0);
        s.tid = tid;
        s.slot = tid;
        s.syscall = syscall_seq.map(|seq| SyscallSample {
            nr: 75,
            elapsed_us: Some(1),
            elapsed_lower_bound: false,
            args: None,
            seq: Some(seq),
        });
        s.io = io_seq.map(|seq| IoSample {
            dev: 0,
            op: 0,
            flags: 0,
            bytes: 0,
            sector: 0,
            age_us: 0,
            seq,
        });
        s
    }

    fn record(kind: ts_completion_kind, tid: u32, seq: u64) -> ts_completion {
        ts_completion {
            kind: kind.0,
            tid,
            seq,
            ..Default::default()
        }
    }

    const SYSCALL: ts_completion_kind = ts_completion_kind::TS_C_SYSCALL;
    const IO: ts_completion_kind = ts_completion_kind::TS_C_IO;

    #[test]
    fn records_of_caught_events_are_kept_once_and_the_rest_dropped() {
        let mut tracking = Tracking::default();
        tracking.caught(1, &[row(10, Some(7), Some(3)), row(11, None, None)]);
        // Ended right after the tick, before the drain: kept with tick 1.
        let mut drained = vec![
            record(SYSCALL, 10, 7),
            // A thread the tick wrote no in-flight syscall for, or that the
            // filter left out: the hooks report it, nobody asked.
            record(SYSCALL, 11, 4),
            record(SYSCALL, 12, 9),
        ];
        tracking.keep(1, &mut drained);
        assert_eq!(drained.len(), 1);
        assert_eq!((drained[0].tid, drained[0].seq), (10, 7));
        tracking.written(1);
        // The request ends later: kept; a second record of one event is not.
        let mut later = vec![record(IO, 10, 3), record(IO, 10, 3), record(SYSCALL, 10, 7)];
        tracking.keep(2, &mut later);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].kind, IO.0);
        assert!(tracking.is_empty());
    }

    #[test]
    fn the_end_of_an_event_only_a_dropped_tick_caught_is_dropped() {
        let mut tracking = Tracking::default();
        tracking.caught(1, &[row(10, Some(7), None)]);
        tracking.written(1);
        // Tick 2 caught 7 again and 8 of another thread, and was dropped.
        tracking.caught(2, &[row(10, Some(7), None), row(20, Some(8), None)]);
        let mut drained = vec![record(SYSCALL, 10, 7), record(SYSCALL, 20, 8)];
        tracking.keep(3, &mut drained);
        assert_eq!(
            drained.iter().map(|c| c.tid).collect::<Vec<_>>(),
            [10],
            "7 was caught by the written tick 1; 8 only by the dropped tick 2"
        );
        assert_eq!(tracking.len(), 1);
    }
}
