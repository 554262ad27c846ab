//! "Read the live threads now": one scan of a running agent's pinned
//! thread table (`bpf::live`) turned into rows with the `samples`
//! columns a live read can fill, for `taskscope top`; for `sql --live`,
//! the writer's own `samples` rows of it ([`with_sample_rows`]).
//!
//! The decision a reader must know: the rows come from the agent's own
//! decoder (`decode`, `settle`), so a live row says what the agent's row
//! for the same instant says about state, syscall, I/O, waker and wait
//! class. Stacks too, when the agent pinned its captures (`bpf::live`):
//! a row takes its slot's last capture only if that capture describes it
//! (`capture::describes`, the sampler's rule), and [`LiveStacks`] resolves
//! it with the writer's own resolver, so `kfunc`, `kstack_id` and
//! `ustack_id` are the agent's (CPython frames are not spliced live: that
//! needs the agent's switch view). The reader never asks the agent for a
//! capture, so a row whose capture is older than its state has none.
//! What only the agent's writer adds is left empty: the executable, user,
//! cgroup and container names, the fd's file and the socket,
//! pthread-mutex blockers (read from process memory). `wait_class` is
//! classified as the writer does: with `kfunc` where a stack gave one.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::bpf::live::LiveTable;
use crate::output::capture::{describes, describing, Scan};
use crate::output::decode;
use crate::output::rows::{sample_row, SampleNames};
use crate::output::sample::{name_text, until_nul};
use crate::output::sample::{Sample, StackRef};
use crate::output::settle;
use crate::output::stacks::{RawStacks, Resolved, StackResolver};
use crate::store::names::{dev_name, io_op_name, syscall_name};
use crate::store::schema::{FileTarget, SampleRow, StackRow};
use crate::store::thread_state::ThreadState;
use crate::store::timefmt::{monotonic_ns, now_pair};
use crate::store::wait_class::{classify, Memo, WaitClass, WaitFacts};

/// One thread as a live read saw it: the `samples` columns it can fill.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRow {
    /// Time of the read (UTC, microseconds).
    pub ts_us: i64,
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    pub state: ThreadState,
    pub state_since_us: Option<u64>,
    pub cpu: u32,
    pub syscall: Option<&'static str>,
    pub syscall_nr: Option<i32>,
    pub syscall_us: Option<u64>,
    pub io_dev: Option<String>,
    pub io_op: Option<&'static str>,
    pub io_bytes: Option<u32>,
    pub io_us: Option<u64>,
    pub wait_class: WaitClass,
    pub kthread: bool,
    pub waker_tid: Option<u32>,
    pub waker_comm: Option<String>,
    pub blocker_tid: Option<u32>,
    pub blocker_kind: Option<&'static str>,
    /// Innermost kernel function outside the scheduler, from the stack
    /// capture that describes the row (None without one).
    pub kfunc: Option<Arc<str>>,
    pub kstack_id: Option<i64>,
    pub ustack_id: Option<i64>,
}

#[cfg(test)]
impl LiveRow {
    /// A row for tests: thread `tid` of process 1 named `comm`, in `state`
    /// and `wait_class`, in `syscall`; everything else empty or zero.
    pub fn for_test(
        tid: u32,
        comm: &str,
        state: ThreadState,
        wait_class: WaitClass,
        syscall: Option<&'static str>,
    ) -> LiveRow {
        LiveRow {
            ts_us: 0,
            tid,
            tgid: 1,
            comm: comm.to_string(),
            state,
            state_since_us: None,
            cpu: 0,
            syscall,
            syscall_nr: None,
            syscall_us: None,
            io_dev: None,
            io_op: None,
            io_bytes: None,
            io_us: None,
            wait_class,
            kthread: false,
            waker_tid: None,
            waker_comm: None,
            blocker_tid: None,
            blocker_kind: None,
            kfunc: None,
            kstack_id: None,
            ustack_id: None,
        }
    }
}

/// One read of the table.
#[derive(Debug, Clone, Default)]
pub struct LiveRead {
    pub rows: Vec<LiveRow>,
    /// Live threads walked.
    pub walked: u32,
    /// Threads skipped because their entry kept changing while read.
    pub torn: u32,
}

fn text(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// The row of a decoded sample read at `ts_us`, with its stacks.
pub fn live_row(sample: &Sample, ts_us: i64, stacks: &Resolved) -> LiveRow {
    let syscall = sample.syscall.as_ref();
    let io = sample.io.as_ref();
    let name = syscall.and_then(|s| syscall_name(s.nr));
    let wait = &sample.wait;
    LiveRow {
        ts_us,
        tid: sample.tid,
        tgid: sample.tgid,
        comm: text(&sample.comm),
        state: sample.state,
        state_since_us: sample.state_since_us,
        cpu: sample.cpu,
        syscall: name,
        syscall_nr: syscall.map(|s| s.nr),
        syscall_us: syscall.and_then(|s| s.elapsed_us),
        io_dev: io.map(|io| dev_name(io.dev)),
        io_op: io.map(|io| io_op_name(io.op, io.flags, io.bytes)),
        io_bytes: io.map(|io| io.bytes),
        io_us: io.map(|io| io.age_us),
        wait_class: classify(&WaitFacts {
            state: sample.state,
            syscall: name,
            kfunc: stacks.kfunc.as_deref(),
            own_io: io.is_some(),
            kthread: sample.kthread,
            kernel_lock: wait.lock.is_some_and(|l| l.in_kernel()),
        }),
        kthread: sample.kthread,
        waker_tid: (wait.waker_tid != 0).then_some(wait.waker_tid),
        waker_comm: (wait.waker_tid != 0).then(|| text(&wait.waker_comm)),
        blocker_tid: (wait.blocker_tid != 0).then_some(wait.blocker_tid),
        blocker_kind: wait.lock.map(|l| l.name()),
        kfunc: stacks.kfunc.clone(),
        kstack_id: stacks.kstack,
        ustack_id: stacks.ustack,
    }
}

/// One read of the table as the agent's decoder left it: the decoded
/// samples (for `sql --live`, which makes `samples` rows of them with the
/// writer's own `output::rows::sample_row`).
#[derive(Debug, Clone, Default)]
pub struct SampleRead {
    /// Time of the read (UTC, microseconds).
    pub ts_us: i64,
    pub samples: Vec<Sample>,
    /// The stacks of each sample (same order), or empty without stacks.
    pub stacks: Vec<Resolved>,
    /// Live threads walked.
    pub walked: u32,
    /// Threads skipped because their entry kept changing while read.
    pub torn: u32,
}

impl SampleRead {
    /// The stacks of sample `i` (none when the read has no stacks).
    pub fn stacks_of(&self, i: usize) -> &Resolved {
        static NONE: Resolved = Resolved {
            kstack: None,
            ustack: None,
            kfunc: None,
        };
        self.stacks.get(i).unwrap_or(&NONE)
    }
}

/// The stacks of live rows: each slot's last capture, taken for a row it
/// describes and resolved by the writer's own resolver (symbolized,
/// unwound, named by the same `stack_id`), once per capture.
#[derive(Default)]
pub struct LiveStacks {
    resolver: StackResolver,
    /// Slot → the capture last resolved for it: not copied again, and
    /// still describing the slot's rows after the pool gave its entry to
    /// another thread.
    resolved: FxHashMap<u32, crate::bpf::StackHeader>,
}

impl LiveStacks {
    pub fn new() -> LiveStacks {
        LiveStacks::default()
    }

    /// The stacks of `samples` (read from `table` at `scan.0`, whose
    /// entries had all been read by `scan.1`), in their order. Every
    /// capture is matched and copied first, then resolved: resolving (the
    /// first time a process is symbolized takes a while) must not let the
    /// captures move on past the read.
    pub fn resolve(
        &mut self,
        table: &LiveTable,
        samples: &mut [Sample],
        scan: (u64, u64),
    ) -> Vec<Resolved> {
        let scan = Scan {
            now_ns: scan.0,
            read_ns: scan.1,
        };
        let copies: Vec<Option<Option<RawStacks>>> = samples
            .iter_mut()
            .map(|sample| self.copy(table, sample, scan))
            .collect();
        let out = samples
            .iter()
            .zip(copies)
            .map(|(sample, copy)| match (copy, &sample.stack) {
                (Some(raw), Some(stack)) => self.resolver.resolve(
                    sample.tgid,
                    sample.tid,
                    sample.exe_id,
                    stack,
                    raw.as_ref(),
                ),
                _ => Resolved::default(),
            })
            .collect();
        if self.resolved.len() > table.capacity() * 2 {
            self.resolved.clear();
        }
        out
    }

    /// The capture that describes `sample`, noted in `sample.stack`:
    /// `Some(None)` when it was resolved before (not copied again),
    /// `Some(Some(copy))` when new, `None` when no capture describes it.
    fn copy(
        &mut self,
        table: &LiveTable,
        sample: &mut Sample,
        scan: Scan,
    ) -> Option<Option<RawStacks>> {
        let slot = sample.slot;
        let header = describing(
            table.stack_header(slot as usize),
            || self.resolved.get(&slot).copied(),
            sample,
            scan,
        )?;
        if self.resolved.get(&slot) == Some(&header) {
            sample.stack = Some(StackRef {
                slot,
                captured_ns: header.captured_ns,
                raw: None,
            });
            return Some(None);
        }
        // Copy it out; a capture that replaced it meanwhile counts if it
        // describes the row too.
        let copy = table.read_stack(slot as usize)?;
        let copied = crate::bpf::StackHeader {
            flags: copy.flags,
            captured_ns: copy.captured_ns,
            switch_out_ns: copy.switch_out_ns,
        };
        if copied != header && !describes(&copied, sample, scan) {
            return None;
        }
        self.resolved.insert(slot, copied);
        sample.stack = Some(StackRef {
            slot,
            captured_ns: copied.captured_ns,
            raw: None,
        });
        Some(Some(RawStacks::from_capture(&copy)))
    }

    /// The definition (frames, innermost first) of a stack these rows
    /// named.
    pub fn definition(&self, id: i64) -> Option<Arc<StackRow>> {
        self.resolver.definition(id)
    }
}

/// Read every live thread of `table` now: active ones only unless `all`
/// (sleeping and idle threads too). `woke_ns` is when the caller woke to
/// read (CLOCK_MONOTONIC), so the thread this reader displaced from its
/// CPU is put back there, as the agent does for its own.
pub fn read_now(
    table: &LiveTable,
    all: bool,
    woke_ns: u64,
    stacks: Option<&mut LiveStacks>,
) -> LiveRead {
    let read = read_samples(table, all, woke_ns, stacks);
    LiveRead {
        rows: read
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| live_row(s, read.ts_us, read.stacks_of(i)))
            .collect(),
        walked: read.walked,
        torn: read.torn,
    }
}

/// [`read_now`]'s scan, the samples decoded and settled but not yet rows
/// (with their stacks when `stacks` is given and the agent pinned them).
pub fn read_samples(
    table: &LiveTable,
    all: bool,
    woke_ns: u64,
    stacks: Option<&mut LiveStacks>,
) -> SampleRead {
    let mut read = SampleRead::default();
    let reader_cpu = u32::try_from(rustix::thread::sched_getcpu()).ok();
    // The read's instant on both clocks at once (as the agent's ticks).
    let (now_ns, ts_us) = now_pair();
    read.ts_us = ts_us;
    let mut samples = Vec::new();
    for slot in 0..table.capacity() {
        if !table.is_live(slot) {
            continue;
        }
        read.walked += 1;
        if !all && !decode::peek_state(&table.peek(slot), now_ns).is_active() {
            continue;
        }
        let Some(entry) = table.read(slot) else {
            read.torn += 1;
            continue;
        };
        let mut sample = decode::decode(&entry, now_ns);
        sample.slot = slot as u32;
        if !all && !sample.state.is_active() {
            continue;
        }
        if decode::has_wait_record(sample.state) {
            if let Some(wait) = table.read_wait(slot) {
                sample.wait = decode::wait_of(&wait, &entry.thread, sample.state);
            }
        }
        samples.push(sample);
    }
    if let Some(cpu) = reader_cpu {
        settle::restore_displaced(&mut samples, cpu, woke_ns.min(now_ns), now_ns);
    }
    settle::settle_cpus(&mut samples, now_ns);
    if let Some(stacks) = stacks.filter(|_| table.has_stacks()) {
        read.stacks = stacks.resolve(table, &mut samples, (now_ns, monotonic_ns()));
    }
    read.samples = samples;
    read
}

/// The names a live read has for one sample: its comm, its waker's, its
/// request's device.
struct LiveNames {
    comm: String,
    waker_comm: String,
    io_dev: Option<String>,
}

/// The `samples` rows of `read`, `weight_us` each, made by the writer's
/// own row builder (`rows::sample_row`, so the values are the agent's),
/// handed to `f`, with the read's stacks (`kfunc` and the stack ids) where
/// it has them. What only the writer resolves is empty: no executable,
/// user, cgroup, host, container, file, socket or process title.
pub fn with_sample_rows<R>(
    read: &SampleRead,
    weight_us: u64,
    f: impl FnOnce(&[SampleRow<'_>]) -> R,
) -> R {
    let names: Vec<LiveNames> = read
        .samples
        .iter()
        .map(|s| LiveNames {
            comm: name_text(s.comm_bytes()).into_owned(),
            waker_comm: name_text(until_nul(&s.wait.waker_comm)).into_owned(),
            io_dev: s.io.as_ref().map(|io| dev_name(io.dev)),
        })
        .collect();
    let mut classes = Memo::default();
    let rows: Vec<SampleRow<'_>> = read
        .samples
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, (sample, n))| {
            let names = SampleNames {
                comm: &n.comm,
                exe: "",
                user: "",
                cgroup: "",
                io_dev: n.io_dev.as_deref(),
                host: "",
                container: None,
                waker_comm: &n.waker_comm,
                target: FileTarget::default(),
                proc_title: "",
            };
            sample_row(
                &mut classes,
                read.ts_us,
                weight_us,
                sample,
                names,
                read.stacks_of(i),
            )
        })
        .collect();
    f(&rows)
}

/// CLOCK_MONOTONIC now, nanoseconds (the clock of the table's times).
pub fn now_ns() -> u64 {
    monotonic_ns()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::types::ts_thread_flags;
    use crate::bpf::ThreadEntry;

    fn entry(tid: u32, flags: u32, sched_state: u32, nr: i32) -> ThreadEntry {
        let mut e = ThreadEntry::default();
        e.thread.tid = tid;
        e.thread.tgid = tid;
        e.thread.flags = flags | ts_thread_flags::TS_F_SWITCH_KNOWN.0;
        e.thread.sched_state = sched_state;
        e.thread.switch_in_ns = 100;
        e.thread.switch_out_ns = 200;
        e.thread.syscall_nr = nr;
        for (i, b) in b"spin".iter().enumerate() {
            e.thread.comm[i] = *b as _;
        }
        e
    }

    #[test]
    fn a_sleeper_in_clock_nanosleep_is_a_timer_wait() {
        let nr = (0..500)
            .find(|&nr| syscall_name(nr) == Some("clock_nanosleep"))
            .expect("clock_nanosleep has a number");
        let e = entry(7, ts_thread_flags::TS_F_IN_SYSCALL.0, 0x1, nr);
        let row = live_row(&decode::decode(&e, 1_000), 5, &Resolved::default());
        assert_eq!(row.state, ThreadState::Sleep);
        assert_eq!(row.syscall, Some("clock_nanosleep"));
        assert_eq!(row.wait_class, WaitClass::Timer);
        assert_eq!((row.tid, row.ts_us, row.comm.as_str()), (7, 5, "spin"));
        assert_eq!(row.state_since_us, Some(0));
    }

    #[test]
    fn a_read_makes_the_writers_rows_without_the_writers_names() {
        let read = SampleRead {
            ts_us: 42,
            samples: vec![decode::decode(
                &entry(9, ts_thread_flags::TS_F_ON_CPU.0, 0, 0),
                1_000,
            )],
            stacks: Vec::new(),
            walked: 3,
            torn: 0,
        };
        with_sample_rows(&read, 1_000_000, |rows| {
            let row = &rows[0];
            assert_eq!((row.ts_us, row.weight_us, row.tid), (42, 1_000_000, 9));
            assert_eq!(
                (row.comm, row.exe, row.user, row.host),
                ("spin", "", "", "")
            );
            assert_eq!(row.state, ThreadState::OnCpu);
            assert_eq!((row.kfunc, row.kstack_id), (None, None));
        });
    }

    #[test]
    fn a_running_thread_is_on_cpu_with_its_time_in_state() {
        let mut e = entry(8, ts_thread_flags::TS_F_ON_CPU.0, 0, 0);
        e.thread.switch_out_ns = 50;
        let row = live_row(&decode::decode(&e, 2_100), 0, &Resolved::default());
        assert_eq!(row.state, ThreadState::OnCpu);
        assert_eq!(row.wait_class, WaitClass::Cpu);
        assert_eq!(row.syscall, None);
        assert_eq!(row.state_since_us, Some(2));
        assert_eq!(row.waker_tid, None);
    }
}
