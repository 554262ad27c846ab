//! The single source of truth for every output column.
//!
//! Each table is a list of [`Column`]s: name, type, description and the
//! function that extracts the value from a row. The CSV header, the CSV
//! fields, the docs (`taskscope schema`, the README's schema section) are
//! all produced from these lists, and tests check that they agree.

mod completions;

use std::fmt::Write;

pub use completions::{io_flags_text, Iorq, IorqRow, SyscallRow, Syscalls};

use crate::enrich::{dev_name, io_op_name};
use crate::record::Sample;
use crate::sampler::TickStats;
use crate::stacks::{Resolved, StackDef};

/// Logical type of a column (the SQL type DuckDB reads it as).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTC timestamp with microseconds.
    Timestamp,
    /// 64-bit signed integer.
    Int64,
    /// UTF-8 text.
    Text,
    /// true or false.
    Bool,
}

impl ColumnType {
    /// The DuckDB SQL type name.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::Int64 => "BIGINT",
            ColumnType::Text => "VARCHAR",
            ColumnType::Bool => "BOOLEAN",
        }
    }

    /// The Arrow type written to Parquet. Text is dictionary-encoded: names,
    /// states and paths repeat on almost every row.
    pub fn arrow(self) -> arrow_schema::DataType {
        use arrow_schema::{DataType, TimeUnit};
        match self {
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Text => {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
            }
            ColumnType::Bool => DataType::Boolean,
        }
    }

    /// Parse one CSV field written for this type (empty is NULL).
    pub fn parse(self, field: &str) -> Result<Value<'_>, String> {
        if field.is_empty() {
            return Ok(Value::Null);
        }
        match self {
            ColumnType::Text => Ok(Value::Text(field)),
            ColumnType::Bool => match field {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("'{field}' is not true or false")),
            },
            ColumnType::Int64 => field
                .parse()
                .map(Value::Int)
                .map_err(|_| format!("'{field}' is not an integer")),
            ColumnType::Timestamp => crate::timefmt::parse_timestamp_micros(field)
                .map(Value::Timestamp)
                .ok_or_else(|| format!("'{field}' is not a timestamp")),
        }
    }
}

/// One value of one row; `Null` is written as an empty CSV field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'r> {
    Null,
    Int(i64),
    Text(&'r str),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Bool(bool),
}

/// A table of output files.
pub trait Table: 'static {
    /// What one row is made from.
    type Row<'a>;
    /// Directory name under the output directory.
    const NAME: &'static str;
    /// One sentence for the docs.
    const DESCRIPTION: &'static str;
    fn columns() -> &'static [Column<Self>];
}

/// One column of table `T`.
pub struct Column<T: Table + ?Sized> {
    pub name: &'static str,
    pub ty: ColumnType,
    pub description: &'static str,
    pub value: for<'r, 'a> fn(&'r T::Row<'a>) -> Value<'r>,
}

/// The `samples` table: one row per sampled thread per tick.
pub struct Samples;

/// A sample with its names resolved, ready to be written.
pub struct SampleRow<'a> {
    pub ts_us: i64,
    pub weight_us: u64,
    pub sample: &'a Sample,
    pub comm: &'a str,
    pub exe: &'a str,
    pub user: &'a str,
    pub cgroup: &'a str,
    pub syscall: Option<&'static str>,
    pub io_dev: Option<&'a str>,
    pub stacks: &'a Resolved,
}

fn opt_int(v: Option<u64>) -> Value<'static> {
    v.map_or(Value::Null, |v| Value::Int(v as i64))
}

fn opt_text(s: &str) -> Value<'_> {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Text(s)
    }
}

fn syscall_arg(row: &SampleRow<'_>, index: usize) -> Value<'static> {
    // Registers are shown as signed: fds and small values read naturally,
    // AT_FDCWD is -100, user-space pointers stay positive.
    match row.sample.syscall.and_then(|s| s.args) {
        Some(args) => Value::Int(args[index] as i64),
        None => Value::Null,
    }
}

impl Table for Samples {
    type Row<'a> = SampleRow<'a>;
    const NAME: &'static str = "samples";
    const DESCRIPTION: &'static str = "One row per sampled thread per tick.";
    fn columns() -> &'static [Column<Self>] {
        SAMPLE_COLUMNS
    }
}

static SAMPLE_COLUMNS: &[Column<Samples>] = &[
    Column {
        name: "ts",
        ty: ColumnType::Timestamp,
        description: "Time of the tick (UTC, microseconds); the same for every row of one tick",
        value: |r| Value::Timestamp(r.ts_us),
    },
    Column { name: "tid", ty: ColumnType::Int64, description: "Thread id", value: |r| Value::Int(r.sample.tid.into()) },
    Column {
        name: "tgid",
        ty: ColumnType::Int64,
        description: "Process id (thread group id)",
        value: |r| Value::Int(r.sample.tgid.into()),
    },
    Column {
        name: "comm",
        ty: ColumnType::Text,
        description: "Thread name (task comm, at most 15 bytes)",
        value: |r| Value::Text(r.comm),
    },
    Column {
        name: "exe",
        ty: ColumnType::Text,
        description: "Path of the process's executable; empty for kernel threads and processes gone before lookup",
        value: |r| opt_text(r.exe),
    },
    Column {
        name: "user",
        ty: ColumnType::Text,
        description: "Effective user name (the uid when it has no name)",
        value: |r| Value::Text(r.user),
    },
    Column {
        name: "state",
        ty: ColumnType::Text,
        description: "ON_CPU, RUNQUEUE, SLEEP, DISK, IDLE, STOPPED, TRACED, ZOMBIE, DEAD, PARKED, NEW, FROZEN, RTLOCK_WAIT",
        value: |r| Value::Text(r.sample.state.name()),
    },
    Column {
        name: "state_since_us",
        ty: ColumnType::Int64,
        description: "Time in the current state: since switch-in (ON_CPU), wakeup or preemption (RUNQUEUE), switch-out (others); empty if the thread has not switched since the agent started",
        value: |r| opt_int(r.sample.state_since_us),
    },
    Column {
        name: "cpu",
        ty: ColumnType::Int64,
        description: "CPU the thread runs on, or last ran on",
        value: |r| Value::Int(r.sample.cpu.into()),
    },
    Column {
        name: "syscall",
        ty: ColumnType::Text,
        description: "Name of the syscall the thread is in; empty when not in a syscall",
        value: |r| r.syscall.map_or(Value::Null, Value::Text),
    },
    Column {
        name: "syscall_nr",
        ty: ColumnType::Int64,
        description: "Number of that syscall",
        value: |r| r.sample.syscall.map_or(Value::Null, |s| Value::Int(s.nr.into())),
    },
    Column {
        name: "syscall_us",
        ty: ColumnType::Int64,
        description: "Time in that syscall so far; empty when its entry happened before the agent started",
        value: |r| opt_int(r.sample.syscall.and_then(|s| s.elapsed_us)),
    },
    Column {
        name: "syscall_arg0",
        ty: ColumnType::Int64,
        description: "First syscall argument (signed 64-bit register value)",
        value: |r| syscall_arg(r, 0),
    },
    Column {
        name: "syscall_arg1",
        ty: ColumnType::Int64,
        description: "Second syscall argument",
        value: |r| syscall_arg(r, 1),
    },
    Column {
        name: "syscall_arg2",
        ty: ColumnType::Int64,
        description: "Third syscall argument",
        value: |r| syscall_arg(r, 2),
    },
    Column {
        name: "io_dev",
        ty: ColumnType::Text,
        description: "major:minor of the block device of the thread's request in flight",
        value: |r| r.io_dev.map_or(Value::Null, Value::Text),
    },
    Column {
        name: "io_op",
        ty: ColumnType::Text,
        description: "Operation of that request: READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES, ...",
        value: |r| r.sample.io.map_or(Value::Null, |io| Value::Text(io_op_name(io.op, io.flags, io.bytes))),
    },
    Column {
        name: "io_bytes",
        ty: ColumnType::Int64,
        description: "Size of that request in bytes",
        value: |r| r.sample.io.map_or(Value::Null, |io| Value::Int(io.bytes.into())),
    },
    Column {
        name: "io_us",
        ty: ColumnType::Int64,
        description: "Age of that request (since it was queued)",
        value: |r| r.sample.io.map_or(Value::Null, |io| Value::Int(io.age_us as i64)),
    },
    Column {
        name: "cgroup",
        ty: ColumnType::Text,
        description: "cgroup v2 path of the thread",
        value: |r| opt_text(r.cgroup),
    },
    Column {
        name: "weight_us",
        ty: ColumnType::Int64,
        description: "Thread time this row stands for: 1,000,000 / frequency",
        value: |r| Value::Int(r.weight_us as i64),
    },
    Column {
        name: "kfunc",
        ty: ColumnType::Text,
        description: "Innermost kernel function of the kernel stack outside the scheduler: where the thread waits (what wchan showed)",
        value: |r| r.stacks.kfunc.as_deref().map_or(Value::Null, Value::Text),
    },
    Column {
        name: "kstack_id",
        ty: ColumnType::Int64,
        description: "Kernel stack of the thread (stacks.stack_id); empty when not captured",
        value: |r| r.stacks.kstack.map_or(Value::Null, Value::Int),
    },
    Column {
        name: "ustack_id",
        ty: ColumnType::Int64,
        description: "User stack of the thread (stacks.stack_id); empty when not captured and for kernel threads",
        value: |r| r.stacks.ustack.map_or(Value::Null, Value::Int),
    },
    Column {
        name: "syscall_seq",
        ty: ColumnType::Int64,
        description: "The thread's syscall number of that syscall (1, 2, ... since tracking began); empty when its entry was not seen. With --track syscalls, syscalls.seq",
        value: |r| opt_int(r.sample.syscall.and_then(|s| s.seq)),
    },
    Column {
        name: "io_seq",
        ty: ColumnType::Int64,
        description: "The thread's request number of the request in flight. With --track io, iorq.seq",
        value: |r| r.sample.io.map_or(Value::Null, |io| Value::Int(io.seq.into())),
    },
];

/// The `io_dev` text of a sample, computed once per row.
pub fn io_dev_text(sample: &Sample) -> Option<String> {
    sample.io.map(|io| dev_name(io.dev))
}

/// Column names of table `T`, in file order.
pub fn column_names<T: Table>() -> Vec<&'static str> {
    T::columns().iter().map(|c| c.name).collect()
}

/// Text or Markdown description of table `T`.
pub fn describe<T: Table>(markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "### `{}`\n\n{}\n", T::NAME, T::DESCRIPTION);
        let _ = writeln!(out, "| column | type | description |\n| --- | --- | --- |");
        for c in T::columns() {
            let _ = writeln!(out, "| `{}` | {} | {} |", c.name, c.ty.sql(), c.description);
        }
    } else {
        let _ = writeln!(out, "{}: {}", T::NAME, T::DESCRIPTION);
        for c in T::columns() {
            let _ = writeln!(out, "  {:<16} {:<10} {}", c.name, c.ty.sql(), c.description);
        }
    }
    out
}

/// The `ticks` table: one row per tick, the agent's own cost and coverage.
pub struct Ticks;

/// One tick's self-metrics, ready to be written.
pub struct TickRow<'a> {
    pub ts_us: i64,
    pub weight_us: u64,
    pub stats: &'a TickStats,
    /// Sample rows the writer dropped since start (write errors, full
    /// disk); the sampler's dropped ticks' rows are added from `stats`.
    pub dropped_rows: u64,
}

impl Table for Ticks {
    type Row<'a> = TickRow<'a>;
    const NAME: &'static str = "ticks";
    const DESCRIPTION: &'static str =
        "One row per tick: what the sampler saw and what it cost, and what was lost.";
    fn columns() -> &'static [Column<Self>] {
        TICK_COLUMNS
    }
}

fn int(v: impl Into<i64>) -> Value<'static> {
    Value::Int(v.into())
}

static TICK_COLUMNS: &[Column<Ticks>] = &[
    Column { name: "ts", ty: ColumnType::Timestamp, description: "Time of the tick (UTC), as in samples", value: |r| Value::Timestamp(r.ts_us) },
    Column {
        name: "weight_us",
        ty: ColumnType::Int64,
        description: "Thread time each sample row of this tick stands for",
        value: |r| int(r.weight_us as i64),
    },
    Column { name: "threads", ty: ColumnType::Int64, description: "Tracked threads scanned", value: |r| int(r.stats.walked) },
    Column { name: "rows", ty: ColumnType::Int64, description: "Sample rows the tick produced", value: |r| int(r.stats.emitted) },
    Column {
        name: "pass_us",
        ty: ColumnType::Int64,
        description: "CPU time of the scan and of stack collection, microseconds",
        value: |r| int(r.stats.pass_us as i64),
    },
    Column {
        name: "missed_ticks",
        ty: ColumnType::Int64,
        description: "Deadlines skipped because ticks overran, since the previous row (0: on time); the sum over rows is every skipped deadline",
        value: |r| int(r.stats.missed_ticks as i64),
    },
    Column {
        name: "torn_reads",
        ty: ColumnType::Int64,
        description: "Threads skipped in this tick because their entry kept changing while read",
        value: |r| int(r.stats.torn),
    },
    Column {
        name: "dropped_ticks",
        ty: ColumnType::Int64,
        description: "Ticks dropped since start because the writer fell behind",
        value: |r| int(r.stats.dropped_ticks_total as i64),
    },
    Column {
        name: "dropped_rows",
        ty: ColumnType::Int64,
        description: "Sample rows produced since start that will never be published: lost to write errors (full disk) or with dropped ticks",
        value: |r| int((r.dropped_rows + r.stats.dropped_tick_rows_total) as i64),
    },
    Column {
        name: "untracked_threads",
        ty: ColumnType::Int64,
        description: "New threads not tracked since start because the thread table was full",
        value: |r| int(r.stats.untracked_total as i64),
    },
    Column {
        name: "untracked_now",
        ty: ColumnType::Int64,
        description: "Live threads left out because the thread table is full, as of the last task-iterator pass (every second while not 0) plus new threads refused since",
        value: |r| int(r.stats.untracked_now as i64),
    },
    Column {
        name: "slots_used",
        ty: ColumnType::Int64,
        description: "Thread-table slots in use (threads tracked, plus exited threads' slots not yet recycled)",
        value: |r| int(r.stats.slots_used as i64),
    },
    Column {
        name: "map_update_failures",
        ty: ColumnType::Int64,
        description: "BPF map updates that failed in the hooks since start (their event was dropped)",
        value: |r| int(r.stats.map_update_failed as i64),
    },
    Column {
        name: "stack_rows",
        ty: ColumnType::Int64,
        description: "Sample rows of this tick with stacks",
        value: |r| int(r.stats.stack_rows),
    },
    Column {
        name: "stack_refreshes",
        ty: ColumnType::Int64,
        description: "Threads whose stacks were captured anew for this tick (their capture predated their wait)",
        value: |r| int(r.stats.stack_requests),
    },
];

/// The `stacks` table: the symbolized stacks a period's samples refer to.
pub struct Stacks;

impl Table for Stacks {
    type Row<'a> = StackDef;
    const NAME: &'static str = "stacks";
    const DESCRIPTION: &'static str =
        "One row per stack referenced by the same period's samples (kstack_id, ustack_id); each period's file stands on its own.";
    fn columns() -> &'static [Column<Self>] {
        STACK_COLUMNS
    }
}

static STACK_COLUMNS: &[Column<Stacks>] = &[
    Column {
        name: "stack_id",
        ty: ColumnType::Int64,
        description: "Hash of the kind and the symbolized frames: the same path has the same id in every process and run",
        value: |r| Value::Int(r.id),
    },
    Column { name: "kind", ty: ColumnType::Text, description: "kernel or user", value: |r| Value::Text(r.kind.name()) },
    Column {
        name: "frames",
        ty: ColumnType::Text,
        description: "Frames innermost first, joined with ';': function+0xoffset, then [file:line] where debug info allows; inlined calls marked [inlined]; unsymbolized frames as module+0xoffset or 0xaddress",
        value: |r| Value::Text(&r.frames),
    },
    Column {
        name: "module",
        ty: ColumnType::Text,
        description: "Module of the innermost frame: vmlinux, a kernel module, or a binary or library name",
        value: |r| Value::Text(&r.module),
    },
    Column { name: "depth", ty: ColumnType::Int64, description: "Number of frames", value: |r| Value::Int(r.depth.into()) },
    Column {
        name: "truncated",
        ty: ColumnType::Bool,
        description: "The stack is known to be incomplete: the depth limit was reached, or a user stack does not end in a thread entry point",
        value: |r| Value::Bool(r.truncated),
    },
];

/// Every table's description, as `taskscope schema` prints it.
pub fn describe_all(markdown: bool) -> String {
    let mut out = describe::<Samples>(markdown);
    out.push('\n');
    out.push_str(&describe::<Stacks>(markdown));
    out.push('\n');
    out.push_str(&describe::<Ticks>(markdown));
    out.push('\n');
    out.push_str(&describe::<Syscalls>(markdown));
    out.push('\n');
    out.push_str(&describe::<Iorq>(markdown));
    out
}

/// The Arrow schema of table `T`.
pub fn arrow_schema<T: Table>() -> arrow_schema::Schema {
    arrow_schema::Schema::new(
        T::columns()
            .iter()
            .map(|c| arrow_schema::Field::new(c.name, c.ty.arrow(), true))
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_columns_are_present_in_order() {
        let names = column_names::<Samples>();
        let required = [
            "ts",
            "tid",
            "tgid",
            "comm",
            "exe",
            "user",
            "state",
            "state_since_us",
            "cpu",
            "syscall",
            "syscall_nr",
            "syscall_us",
            "syscall_arg0",
            "syscall_arg1",
            "syscall_arg2",
            "io_dev",
            "io_op",
            "io_bytes",
            "io_us",
            "cgroup",
            "weight_us",
        ];
        for name in required {
            assert!(names.contains(&name), "missing column {name}");
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate column names");
    }

    #[test]
    fn values_parse_back_from_csv() {
        assert_eq!(ColumnType::Int64.parse("-100"), Ok(Value::Int(-100)));
        assert_eq!(ColumnType::Int64.parse(""), Ok(Value::Null));
        assert_eq!(ColumnType::Text.parse("a,b"), Ok(Value::Text("a,b")));
        assert_eq!(
            ColumnType::Timestamp.parse("2026-11-22 13:04:05.000123"),
            Ok(Value::Timestamp(1_795_352_645_000_123))
        );
        assert!(ColumnType::Int64.parse("x").is_err());
        assert!(ColumnType::Timestamp.parse("yesterday").is_err());
    }

    #[test]
    fn ticks_columns_are_described() {
        let names = column_names::<Ticks>();
        for name in [
            "ts",
            "threads",
            "rows",
            "pass_us",
            "missed_ticks",
            "dropped_ticks",
            "dropped_rows",
        ] {
            assert!(names.contains(&name), "ticks lacks {name}");
        }
        assert_eq!(arrow_schema::<Ticks>().fields().len(), names.len());
    }

    #[test]
    fn every_column_is_described() {
        for c in Samples::columns() {
            assert!(!c.description.is_empty(), "{} has no description", c.name);
            assert!(
                !c.description.contains('|'),
                "{} breaks the markdown table",
                c.name
            );
        }
        let md = describe::<Samples>(true);
        assert!(md.contains("| `ts` | TIMESTAMP |"));
    }
}
