//! The `syscalls` and `iorq` tables (`--track syscalls,io`): how the
//! syscalls and block requests that samples caught in progress ended.
//!
//! A row is written only for an event some sample saw, so every row joins
//! back to at least one sample by (`tid`, `seq`) = samples (`tid`,
//! `syscall_seq`) or (`tid`, `io_seq`). Long events are caught by more
//! ticks than short ones: the rows are a duration-biased sample of all
//! events (see the README's "Latency" section for how to weight them).
//! `comm` and `exe` are the thread's as the last sample that saw it showed
//! them, so latency can be filtered and grouped by name.

use super::{int, opt_int, opt_text, Column, ColumnType, Table, Value};
use crate::store::names::{io_flags_text, io_op_name};

/// The `syscalls` table.
pub struct Syscalls;

/// One row of `syscalls`: a completed syscall, every value its columns
/// read. Times `*_ns` are CLOCK_MONOTONIC, as the hooks took them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyscallRow<'a> {
    /// Entry time, microseconds since the epoch (UTC).
    pub enter_us: i64,
    pub tid: u32,
    pub tgid: u32,
    pub syscall: Option<&'static str>,
    pub syscall_nr: i32,
    pub seq: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub ret: i64,
    /// Empty when no sample of the thread is remembered.
    pub comm: &'a str,
    /// Empty when unknown.
    pub exe: &'a str,
}

impl Table for Syscalls {
    type Row<'a> = SyscallRow<'a>;
    const NAME: &'static str = "syscalls";
    const DESCRIPTION: &'static str = "With --track syscalls: one row per syscall that a sample caught in progress, written when it returned. Join to samples on (tid, seq) = (tid, syscall_seq).";
    fn columns() -> &'static [Column<Self>] {
        SYSCALL_COLUMNS
    }
    fn for_each_value<'r, 'a>(row: &'r Self::Row<'a>, out: impl FnMut(Value<'r>)) {
        Self::each_value(row, out)
    }
}

fn micros_between(from_ns: u64, to_ns: u64) -> Value<'static> {
    if from_ns == 0 || to_ns < from_ns {
        return Value::Null;
    }
    int(((to_ns - from_ns) / 1_000) as i64)
}

columns!(
    Syscalls,
    SYSCALL_COLUMNS = [
        Column {
            name: "enter_ts",
            ty: ColumnType::Timestamp,
            description: "When the syscall was entered (UTC, microseconds)",
            value: |r| Value::Timestamp(r.enter_us),
        },
        Column {
            name: "tid",
            ty: ColumnType::Int64,
            description: "Thread id",
            value: |r| int(r.tid),
        },
        Column {
            name: "tgid",
            ty: ColumnType::Int64,
            description: "Process id",
            value: |r| int(r.tgid),
        },
        Column {
            name: "syscall",
            ty: ColumnType::Text,
            description: "Name of the syscall",
            value: |r| r.syscall.map_or(Value::Null, Value::Text),
        },
        Column {
            name: "syscall_nr",
            ty: ColumnType::Int64,
            description: "Number of the syscall",
            value: |r| int(r.syscall_nr),
        },
        Column {
            name: "seq",
            ty: ColumnType::Int64,
            description:
                "The thread's syscall number since the agent started tracking it: samples.syscall_seq",
            value: |r| int(r.seq as i64),
        },
        Column {
            name: "duration_us",
            ty: ColumnType::Int64,
            description: "Time from entry to return, microseconds (exact)",
            value: |r| micros_between(r.start_ns, r.end_ns),
        },
        Column {
            name: "ret",
            ty: ColumnType::Int64,
            description: "Return value (negative: -errno)",
            value: |r| int(r.ret),
        },
        Column {
            name: "comm",
            ty: ColumnType::Text,
            description: COMM,
            value: |r| opt_text(r.comm),
        },
        Column {
            name: "exe",
            ty: ColumnType::Text,
            description: EXE,
            value: |r| opt_text(r.exe),
        },
    ]
);

const COMM: &str =
    "Thread name (as samples.comm) when the sample that saw this was taken; empty if not known";
const EXE: &str = "Path of the process's executable (as samples.exe); empty if not known";

/// The `iorq` table.
pub struct Iorq;

/// One row of `iorq`: a completed block request, every value its columns
/// read. Times `*_ns` are CLOCK_MONOTONIC, as the hooks took them.
#[derive(Debug, Clone, Copy, Default)]
pub struct IorqRow<'a> {
    /// When the request was queued, microseconds since the epoch (UTC).
    pub start_us: i64,
    pub tid: u32,
    pub tgid: u32,
    pub seq: u64,
    /// `major:minor`.
    pub dev: &'a str,
    /// REQ_OP_* number.
    pub op: u32,
    /// [`io_flags`](crate::store::names::io_flags) bits.
    pub flags: u32,
    pub sector: u64,
    pub bytes: u32,
    pub start_ns: u64,
    /// 0: the issue was not seen.
    pub issue_ns: u64,
    pub end_ns: u64,
    /// blk_status_t.
    pub error: i64,
    /// Empty when no sample of the thread is remembered.
    pub comm: &'a str,
    /// Empty when unknown.
    pub exe: &'a str,
}

impl Table for Iorq {
    type Row<'a> = IorqRow<'a>;
    const NAME: &'static str = "iorq";
    const DESCRIPTION: &'static str = "With --track io: one row per block request that a sample saw in flight, written when it completed. Join to samples on (tid, seq) = (tid, io_seq).";
    fn columns() -> &'static [Column<Self>] {
        IORQ_COLUMNS
    }
    fn for_each_value<'r, 'a>(row: &'r Self::Row<'a>, out: impl FnMut(Value<'r>)) {
        Self::each_value(row, out)
    }
}

columns!(
    Iorq,
    IORQ_COLUMNS = [
        Column {
            name: "start_ts",
            ty: ColumnType::Timestamp,
            description: "When the request was queued (UTC, microseconds)",
            value: |r| Value::Timestamp(r.start_us),
        },
        Column {
            name: "tid",
            ty: ColumnType::Int64,
            description: "Thread that submitted the request",
            value: |r| int(r.tid),
        },
        Column {
            name: "tgid",
            ty: ColumnType::Int64,
            description: "Its process id",
            value: |r| int(r.tgid),
        },
        Column {
            name: "seq",
            ty: ColumnType::Int64,
            description:
                "The thread's request number since the agent started tracking it: samples.io_seq",
            value: |r| int(r.seq as i64),
        },
        Column {
            name: "dev",
            ty: ColumnType::Text,
            description: "major:minor of the block device",
            value: |r| Value::Text(r.dev),
        },
        Column {
            name: "op",
            ty: ColumnType::Text,
            description: "READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES, ...",
            value: |r| Value::Text(io_op_name(r.op, r.flags, r.bytes)),
        },
        Column {
            name: "flags",
            ty: ColumnType::Text,
            description: "Request flags: SYNC, META, FUA, PREFLUSH joined with '|'; empty when none",
            value: |r| match io_flags_text(r.flags) {
                "" => Value::Null,
                text => Value::Text(text),
            },
        },
        Column {
            name: "sector",
            ty: ColumnType::Int64,
            description: "First sector (512 bytes)",
            value: |r| int(r.sector as i64),
        },
        Column {
            name: "bytes",
            ty: ColumnType::Int64,
            description: "Size in bytes",
            value: |r| int(r.bytes),
        },
        Column {
            name: "queued_us",
            ty: ColumnType::Int64,
            description: "Time from queueing to issue to the device; empty when the issue was not seen",
            value: |r| {
                opt_int(
                    (r.issue_ns >= r.start_ns && r.issue_ns != 0)
                        .then(|| (r.issue_ns - r.start_ns) / 1_000),
                )
            },
        },
        Column {
            name: "service_us",
            ty: ColumnType::Int64,
            description:
                "Time from issue to completion (the device's time); empty when the issue was not seen",
            value: |r| micros_between(r.issue_ns, r.end_ns),
        },
        Column {
            name: "duration_us",
            ty: ColumnType::Int64,
            description: "Time from queueing to completion, microseconds (exact)",
            value: |r| micros_between(r.start_ns, r.end_ns),
        },
        Column {
            name: "error",
            ty: ColumnType::Int64,
            description:
                "Block layer status: 0 success, else the kernel's blk_status_t code (10 = I/O error)",
            value: |r| int(r.error),
        },
        Column {
            name: "comm",
            ty: ColumnType::Text,
            description: COMM,
            value: |r| opt_text(r.comm),
        },
        Column {
            name: "exe",
            ty: ColumnType::Text,
            description: EXE,
            value: |r| opt_text(r.exe),
        },
    ]
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::column_names;

    #[test]
    fn issue_columns_are_present() {
        let syscalls = column_names::<Syscalls>();
        for name in [
            "tid",
            "tgid",
            "syscall",
            "seq",
            "enter_ts",
            "duration_us",
            "ret",
            "comm",
            "exe",
        ] {
            assert!(syscalls.contains(&name), "syscalls lacks {name}");
        }
        let iorq = column_names::<Iorq>();
        for name in [
            "tid",
            "tgid",
            "dev",
            "op",
            "flags",
            "sector",
            "bytes",
            "queued_us",
            "service_us",
            "duration_us",
            "error",
            "seq",
            "comm",
            "exe",
        ] {
            assert!(iorq.contains(&name), "iorq lacks {name}");
        }
    }

    #[test]
    fn durations_in_microseconds() {
        let row = IorqRow {
            start_us: 5,
            dev: "254:1",
            start_ns: 1_000_000,
            issue_ns: 1_500_000,
            end_ns: 4_000_000,
            op: 1,
            bytes: 4096,
            flags: 1,
            ..Default::default()
        };
        let value = |name: &str| {
            let column = Iorq::columns().iter().find(|c| c.name == name).unwrap();
            (column.value)(&row)
        };
        assert_eq!(value("queued_us"), Value::Int(500));
        assert_eq!(value("service_us"), Value::Int(2_500));
        assert_eq!(value("duration_us"), Value::Int(3_000));
        assert_eq!(value("op"), Value::Text("WRITE"));
        assert_eq!(value("flags"), Value::Text("SYNC"));
        crate::store::schema::assert_values_agree::<Iorq>(&row);
        crate::store::schema::assert_values_agree::<Iorq>(&IorqRow::default());
        crate::store::schema::assert_values_agree::<Syscalls>(&SyscallRow::default());
    }
}
