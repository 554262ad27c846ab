//! From what the agent collected to the store's rows: a sample with the
//! names the writer resolved becomes a `samples` row (with its wait class,
//! inferred here on the writer thread, never on the tick path), a tick's
//! counters a `ticks` row, a completion record a `syscalls` or `iorq` row
//! (with the names of its thread from the last sample that saw it).
//!
//! The store's rows are plain structs of the values their columns read;
//! filling one is a handful of copies per row (the writer's per-row cost
//! is measured by `benches/writer.rs`).

use crate::bpf::types::{ts_completion, ts_io_flags};
use crate::output::identity::Identity;
use crate::output::sample::Sample;
use crate::output::stacks::Resolved;
use crate::output::tick::{Tick, TickStats};
use crate::store::names::{io_flags, io_op_name, syscall_name};
use crate::store::schema::{FileTarget, IorqRow, SampleRow, SyscallRow, TickRow, WaitColumns};
use crate::store::wait_class::{Memo, WaitFacts};

// The store names the BPF side's I/O flag bits.
const _: () = assert!(
    ts_io_flags::TS_IO_SYNC.0 == io_flags::SYNC
        && ts_io_flags::TS_IO_META.0 == io_flags::META
        && ts_io_flags::TS_IO_FUA.0 == io_flags::FUA
        && ts_io_flags::TS_IO_PREFLUSH.0 == io_flags::PREFLUSH
);

/// The names a sample's row shows, resolved by the writer.
#[derive(Debug, Clone, Copy)]
pub struct SampleNames<'a> {
    pub comm: &'a str,
    pub exe: &'a str,
    pub user: &'a str,
    pub cgroup: &'a str,
    /// `major:minor` of its request in flight.
    pub io_dev: Option<&'a str>,
    /// The agent's host name.
    pub host: &'a str,
    /// Its container and pod, if it is in one that was recognized.
    pub container: Option<&'a Identity>,
    /// Name of the thread that woke it (empty when none).
    pub waker_comm: &'a str,
    /// What its syscall's fd names.
    pub target: FileTarget<'a>,
    /// Title of its process (argv[0] as the process left it).
    pub proc_title: &'a str,
}

/// The `samples` row of `sample` at `ts_us`; `classes` remembers wait
/// classes from row to row.
pub fn sample_row<'a>(
    classes: &mut Memo,
    ts_us: i64,
    weight_us: u64,
    sample: &Sample,
    names: SampleNames<'a>,
    stacks: &'a Resolved,
) -> SampleRow<'a> {
    let syscall = sample.syscall.as_ref();
    let io = sample.io.as_ref();
    let syscall_name = syscall.and_then(|s| syscall_name(s.nr));
    let kfunc = stacks.kfunc.as_deref();
    let wait_class = classes.classify(
        syscall.map(|s| s.nr),
        &WaitFacts {
            state: sample.state,
            syscall: syscall_name,
            kfunc,
            own_io: io.is_some(),
            kthread: sample.kthread,
            kernel_lock: sample.wait.lock.is_some_and(|l| l.in_kernel()),
        },
    );
    let wait = &sample.wait;
    SampleRow {
        ts_us,
        weight_us,
        tid: sample.tid,
        tgid: sample.tgid,
        comm: names.comm,
        exe: names.exe,
        user: names.user,
        state: sample.state,
        state_since_us: sample.state_since_us,
        cpu: sample.cpu,
        syscall: syscall_name,
        syscall_nr: syscall.map(|s| s.nr),
        syscall_us: syscall.and_then(|s| s.elapsed_us),
        syscall_args: syscall.and_then(|s| s.args),
        syscall_seq: syscall.and_then(|s| s.seq),
        io_dev: names.io_dev,
        io_op: io.map(|io| io_op_name(io.op, io.flags, io.bytes)),
        io_bytes: io.map(|io| io.bytes),
        io_us: io.map(|io| io.age_us),
        io_seq: io.map(|io| io.seq),
        cgroup: names.cgroup,
        kfunc,
        kstack_id: stacks.kstack,
        ustack_id: stacks.ustack,
        wait_class,
        since_lower_bound: sample.since_lower_bound,
        syscall_us_lower_bound: syscall
            .filter(|s| s.elapsed_us.is_some())
            .map(|s| s.elapsed_lower_bound),
        host: names.host,
        container: names.container.map(Identity::row).unwrap_or_default(),
        wait: WaitColumns {
            waker_tid: (wait.waker_tid != 0).then_some(wait.waker_tid),
            waker_comm: names.waker_comm,
            blocker_tid: (wait.blocker_tid != 0).then_some(wait.blocker_tid),
            blocker_kind: wait.lock.map(|l| l.name()),
        },
        target: names.target,
        proc_title: names.proc_title,
    }
}

/// The `ticks` row of `tick`; `dropped_rows` counts the sample rows the
/// writer dropped since start (the sampler's dropped ticks' rows are
/// added from the tick's counters).
pub fn tick_row(tick: &Tick, dropped_rows: u64, unshipped_deleted: u64) -> TickRow {
    let stats: &TickStats = &tick.stats;
    TickRow {
        ts_us: tick.ts_us,
        weight_us: tick.weight_us,
        threads: stats.walked,
        rows: stats.emitted,
        pass_us: stats.pass_us,
        missed_ticks: stats.missed_ticks,
        torn_reads: stats.torn,
        dropped_ticks: stats.dropped_ticks_total,
        dropped_rows: dropped_rows + stats.dropped_tick_rows_total,
        untracked_threads: stats.untracked_total,
        untracked_now: stats.untracked_now,
        slots_used: stats.slots_used,
        map_update_failures: stats.map_update_failed,
        stack_rows: stats.stack_rows,
        stack_refreshes: stats.stack_requests,
        stacks_of_other_wait: stats.stacks_of_other_wait,
        unshipped_deleted,
    }
}

/// The name and executable of a completion's thread (empty if unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadNames<'a> {
    pub comm: &'a str,
    pub exe: &'a str,
}

/// The `syscalls` row of a completed syscall entered at `enter_us`.
pub fn syscall_row<'a>(
    record: &ts_completion,
    enter_us: i64,
    thread: ThreadNames<'a>,
) -> SyscallRow<'a> {
    SyscallRow {
        enter_us,
        tid: record.tid,
        tgid: record.tgid,
        syscall: syscall_name(record.syscall_nr),
        syscall_nr: record.syscall_nr,
        seq: record.seq,
        start_ns: record.start_ns,
        end_ns: record.end_ns,
        ret: record.ret,
        comm: thread.comm,
        exe: thread.exe,
    }
}

/// The `iorq` row of a completed request queued at `start_us`, on
/// device `dev` (`major:minor`).
pub fn iorq_row<'a>(
    record: &ts_completion,
    start_us: i64,
    dev: &'a str,
    thread: ThreadNames<'a>,
) -> IorqRow<'a> {
    IorqRow {
        start_us,
        tid: record.tid,
        tgid: record.tgid,
        seq: record.seq,
        dev,
        op: record.op,
        flags: record.flags,
        sector: record.sector,
        bytes: record.bytes,
        start_ns: record.start_ns,
        issue_ns: record.issue_ns,
        end_ns: record.end_ns,
        error: record.ret,
        comm: thread.comm,
        exe: thread.exe,
    }
}
