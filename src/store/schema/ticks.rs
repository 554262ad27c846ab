//! The `ticks` table: one row per tick, the agent's own cost and coverage.

use super::{int, Column, ColumnType, Table, Value};

/// The `ticks` table.
pub struct Ticks;

/// One row of `ticks`: every value its columns read.
#[derive(Debug, Clone, Copy, Default)]
pub struct TickRow {
    /// Time of the tick, microseconds since the epoch (UTC).
    pub ts_us: i64,
    pub weight_us: u64,
    /// Tracked threads scanned.
    pub threads: u32,
    /// Sample rows the tick produced.
    pub rows: u32,
    pub pass_us: u64,
    /// Deadlines skipped since the previous row.
    pub missed_ticks: u64,
    pub torn_reads: u32,
    /// Totals since start.
    pub dropped_ticks: u64,
    pub dropped_rows: u64,
    pub untracked_threads: u64,
    pub untracked_now: u64,
    pub slots_used: u64,
    pub map_update_failures: u64,
    pub stack_rows: u32,
    pub stack_refreshes: u32,
    pub stacks_of_other_wait: u32,
    /// Files retention deleted before they were shipped, since start.
    pub unshipped_deleted: u64,
}

impl Table for Ticks {
    type Row<'a> = TickRow;
    const NAME: &'static str = "ticks";
    const DESCRIPTION: &'static str =
        "One row per tick: what the sampler saw and what it cost, and what was lost.";
    fn columns() -> &'static [Column<Self>] {
        TICK_COLUMNS
    }
    fn for_each_value<'r, 'a>(row: &'r Self::Row<'a>, out: impl FnMut(Value<'r>)) {
        Self::each_value(row, out)
    }
}

columns!(
    Ticks,
    TICK_COLUMNS = [
        Column { name: "ts", ty: ColumnType::Timestamp, description: "Time of the tick (UTC), as in samples", value: |r| Value::Timestamp(r.ts_us) },
        Column {
            name: "weight_us",
            ty: ColumnType::Int64,
            description: "Thread time each sample row of this tick stands for",
            value: |r| int(r.weight_us as i64),
        },
        Column { name: "threads", ty: ColumnType::Int64, description: "Tracked threads scanned", value: |r| int(r.threads) },
        Column { name: "rows", ty: ColumnType::Int64, description: "Sample rows the tick produced", value: |r| int(r.rows) },
        Column {
            name: "pass_us",
            ty: ColumnType::Int64,
            description: "CPU time of the scan and of stack collection, microseconds",
            value: |r| int(r.pass_us as i64),
        },
        Column {
            name: "missed_ticks",
            ty: ColumnType::Int64,
            description: "Deadlines skipped because ticks overran, since the previous row (0: on time); the sum over rows is every skipped deadline",
            value: |r| int(r.missed_ticks as i64),
        },
        Column {
            name: "torn_reads",
            ty: ColumnType::Int64,
            description: "Threads skipped in this tick because their entry kept changing while read",
            value: |r| int(r.torn_reads),
        },
        Column {
            name: "dropped_ticks",
            ty: ColumnType::Int64,
            description: "Ticks dropped since start because the writer fell behind",
            value: |r| int(r.dropped_ticks as i64),
        },
        Column {
            name: "dropped_rows",
            ty: ColumnType::Int64,
            description: "Sample rows produced since start that will never be published: lost to write errors (full disk) or with dropped ticks",
            value: |r| int(r.dropped_rows as i64),
        },
        Column {
            name: "untracked_threads",
            ty: ColumnType::Int64,
            description: "New threads not tracked since start because the thread table was full",
            value: |r| int(r.untracked_threads as i64),
        },
        Column {
            name: "untracked_now",
            ty: ColumnType::Int64,
            description: "Live threads left out because the thread table is full, as of the last task-iterator pass (every second while not 0) plus new threads refused since",
            value: |r| int(r.untracked_now as i64),
        },
        Column {
            name: "slots_used",
            ty: ColumnType::Int64,
            description: "Thread-table slots in use (threads tracked, plus exited threads' slots not yet recycled)",
            value: |r| int(r.slots_used as i64),
        },
        Column {
            name: "map_update_failures",
            ty: ColumnType::Int64,
            description: "BPF map updates that failed in the hooks since start (their event was dropped)",
            value: |r| int(r.map_update_failures as i64),
        },
        Column {
            name: "stack_rows",
            ty: ColumnType::Int64,
            description: "Sample rows of this tick with stacks",
            value: |r| int(r.stack_rows),
        },
        Column {
            name: "stack_refreshes",
            ty: ColumnType::Int64,
            description: "Threads whose stacks were captured anew for this tick (their capture predated their wait)",
            value: |r| int(r.stack_refreshes),
        },
        Column {
            name: "stacks_of_other_wait",
            ty: ColumnType::Int64,
            description: "Sample rows of this tick left without stacks because the only capture was of another wait than the row's (the thread switched in and out again while the scan reached it)",
            value: |r| int(r.stacks_of_other_wait),
        },
        Column {
            name: "unshipped_deleted",
            ty: ColumnType::Int64,
            description: "Published files retention deleted before --ship-to had shipped them (over --max-disk), since start",
            value: |r| int(r.unshipped_deleted as i64),
        },
    ]
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{arrow_schema, column_names};

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
        crate::store::schema::assert_values_agree::<Ticks>(&TickRow {
            ts_us: 1,
            weight_us: 50_000,
            threads: 10,
            rows: 9,
            ..Default::default()
        });
    }
}
