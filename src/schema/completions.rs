//! The `syscalls` and `iorq` tables (`--track syscalls,io`): how the
//! syscalls and block requests that samples caught in progress ended.
//!
//! A row is written only for an event some sample saw, so every row joins
//! back to at least one sample by (`tid`, `seq`) = samples (`tid`,
//! `syscall_seq`) or (`tid`, `io_seq`). Long events are caught by more
//! ticks than short ones: the rows are a duration-biased sample of all
//! events (see the README's "Latency" section for how to weight them).

use super::{int, opt_int, Column, ColumnType, Table, Value};
use crate::bpf::types::{ts_completion, ts_io_flags};
use crate::enrich::io_op_name;

/// The `syscalls` table.
pub struct Syscalls;

/// One completed syscall, ready to be written.
pub struct SyscallRow<'a> {
    pub record: &'a ts_completion,
    /// Entry time, microseconds since the epoch (UTC).
    pub enter_us: i64,
    pub syscall: Option<&'static str>,
}

impl Table for Syscalls {
    type Row<'a> = SyscallRow<'a>;
    const NAME: &'static str = "syscalls";
    const DESCRIPTION: &'static str = "With --track syscalls: one row per syscall that a sample caught in progress, written when it returned. Join to samples on (tid, seq) = (tid, syscall_seq).";
    fn columns() -> &'static [Column<Self>] {
        SYSCALL_COLUMNS
    }
}

fn micros_between(from_ns: u64, to_ns: u64) -> Value<'static> {
    if from_ns == 0 || to_ns < from_ns {
        return Value::Null;
    }
    int(((to_ns - from_ns) / 1_000) as i64)
}

static SYSCALL_COLUMNS: &[Column<Syscalls>] = &[
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
        value: |r| int(r.record.tid),
    },
    Column {
        name: "tgid",
        ty: ColumnType::Int64,
        description: "Process id",
        value: |r| int(r.record.tgid),
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
        value: |r| int(r.record.syscall_nr),
    },
    Column {
        name: "seq",
        ty: ColumnType::Int64,
        description:
            "The thread's syscall number since the agent started tracking it: samples.syscall_seq",
        value: |r| int(r.record.seq as i64),
    },
    Column {
        name: "duration_us",
        ty: ColumnType::Int64,
        description: "Time from entry to return, microseconds (exact)",
        value: |r| micros_between(r.record.start_ns, r.record.end_ns),
    },
    Column {
        name: "ret",
        ty: ColumnType::Int64,
        description: "Return value (negative: -errno)",
        value: |r| int(r.record.ret),
    },
];

/// The `iorq` table.
pub struct Iorq;

/// One completed block request, ready to be written.
pub struct IorqRow<'a> {
    pub record: &'a ts_completion,
    /// When the request was queued, microseconds since the epoch (UTC).
    pub start_us: i64,
    /// `major:minor`.
    pub dev: &'a str,
}

impl Table for Iorq {
    type Row<'a> = IorqRow<'a>;
    const NAME: &'static str = "iorq";
    const DESCRIPTION: &'static str = "With --track io: one row per block request that a sample saw in flight, written when it completed. Join to samples on (tid, seq) = (tid, io_seq).";
    fn columns() -> &'static [Column<Self>] {
        IORQ_COLUMNS
    }
}

/// `ts_io_flags` as text: `SYNC|META|FUA|PREFLUSH` (empty when none).
pub fn io_flags_text(flags: u32) -> &'static str {
    const NAMES: [&str; 16] = [
        "",
        "SYNC",
        "META",
        "SYNC|META",
        "FUA",
        "SYNC|FUA",
        "META|FUA",
        "SYNC|META|FUA",
        "PREFLUSH",
        "SYNC|PREFLUSH",
        "META|PREFLUSH",
        "SYNC|META|PREFLUSH",
        "FUA|PREFLUSH",
        "SYNC|FUA|PREFLUSH",
        "META|FUA|PREFLUSH",
        "SYNC|META|FUA|PREFLUSH",
    ];
    const _: () = assert!(
        ts_io_flags::TS_IO_SYNC.0 == 1
            && ts_io_flags::TS_IO_META.0 == 2
            && ts_io_flags::TS_IO_FUA.0 == 4
            && ts_io_flags::TS_IO_PREFLUSH.0 == 8
    );
    NAMES[(flags & 0xf) as usize]
}

static IORQ_COLUMNS: &[Column<Iorq>] = &[
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
        value: |r| int(r.record.tid),
    },
    Column {
        name: "tgid",
        ty: ColumnType::Int64,
        description: "Its process id",
        value: |r| int(r.record.tgid),
    },
    Column {
        name: "seq",
        ty: ColumnType::Int64,
        description:
            "The thread's request number since the agent started tracking it: samples.io_seq",
        value: |r| int(r.record.seq as i64),
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
        value: |r| Value::Text(io_op_name(r.record.op, r.record.flags, r.record.bytes)),
    },
    Column {
        name: "flags",
        ty: ColumnType::Text,
        description: "Request flags: SYNC, META, FUA, PREFLUSH joined with '|'; empty when none",
        value: |r| match io_flags_text(r.record.flags) {
            "" => Value::Null,
            text => Value::Text(text),
        },
    },
    Column {
        name: "sector",
        ty: ColumnType::Int64,
        description: "First sector (512 bytes)",
        value: |r| int(r.record.sector as i64),
    },
    Column {
        name: "bytes",
        ty: ColumnType::Int64,
        description: "Size in bytes",
        value: |r| int(r.record.bytes),
    },
    Column {
        name: "queued_us",
        ty: ColumnType::Int64,
        description: "Time from queueing to issue to the device; empty when the issue was not seen",
        value: |r| {
            opt_int(
                (r.record.issue_ns >= r.record.start_ns && r.record.issue_ns != 0)
                    .then(|| (r.record.issue_ns - r.record.start_ns) / 1_000),
            )
        },
    },
    Column {
        name: "service_us",
        ty: ColumnType::Int64,
        description:
            "Time from issue to completion (the device's time); empty when the issue was not seen",
        value: |r| micros_between(r.record.issue_ns, r.record.end_ns),
    },
    Column {
        name: "duration_us",
        ty: ColumnType::Int64,
        description: "Time from queueing to completion, microseconds (exact)",
        value: |r| micros_between(r.record.start_ns, r.record.end_ns),
    },
    Column {
        name: "error",
        ty: ColumnType::Int64,
        description:
            "Block layer status: 0 success, else the kernel's blk_status_t code (10 = I/O error)",
        value: |r| int(r.record.ret),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::column_names;

    #[test]
    fn flags_text() {
        assert_eq!(io_flags_text(0), "");
        assert_eq!(io_flags_text(1 | 8), "SYNC|PREFLUSH");
        assert_eq!(io_flags_text(15), "SYNC|META|FUA|PREFLUSH");
    }

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
        ] {
            assert!(iorq.contains(&name), "iorq lacks {name}");
        }
    }

    #[test]
    fn durations_in_microseconds() {
        let record = ts_completion {
            kind: 2,
            start_ns: 1_000_000,
            issue_ns: 1_500_000,
            end_ns: 4_000_000,
            op: 1,
            bytes: 4096,
            flags: 1,
            ..Default::default()
        };
        let row = IorqRow {
            record: &record,
            start_us: 5,
            dev: "254:1",
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
    }
}
