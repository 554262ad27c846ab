//! top's filter (`/`): a SQL condition over the rows, as `report --where`
//! takes it (`comm LIKE 'pg%' AND wait_class = 'IO'`), parsed and
//! evaluated by the query layer's expression evaluator (`query::predicate`,
//! DataFusion).
//!
//! The decision a reader must know: in history mode the condition goes to
//! the report as its `--where` (over every column of `samples`); live, it
//! is evaluated on the live rows themselves, batched with the `samples`
//! column names and types of what a live read fills ([`LIVE_SCHEMA`]), so
//! the same text means the same thing in both modes, and a column that
//! only the agent's writer fills (`file`, `exe`, ...) is an error naming
//! the live columns. A read's result is kept with the read (see
//! `source::Live`): a redraw does not evaluate it again.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use datafusion::arrow::array::TimestampMicrosecondArray;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::physical_expr::PhysicalExpr;

use crate::output::live::LiveRow;
use crate::query::predicate;

/// The columns of a live row, with the names and types of `samples`.
const LIVE_SCHEMA: &[(&str, DataType)] = &[
    ("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
    ("tid", DataType::Int64),
    ("tgid", DataType::Int64),
    ("comm", DataType::Utf8),
    ("state", DataType::Utf8),
    ("state_since_us", DataType::Int64),
    ("cpu", DataType::Int64),
    ("syscall", DataType::Utf8),
    ("syscall_nr", DataType::Int64),
    ("syscall_us", DataType::Int64),
    ("io_dev", DataType::Utf8),
    ("io_op", DataType::Utf8),
    ("io_bytes", DataType::Int64),
    ("io_us", DataType::Int64),
    ("wait_class", DataType::Utf8),
    ("waker_tid", DataType::Int64),
    ("waker_comm", DataType::Utf8),
    ("blocker_tid", DataType::Int64),
    ("blocker_kind", DataType::Utf8),
    ("kfunc", DataType::Utf8),
    ("kstack_id", DataType::Int64),
    ("ustack_id", DataType::Int64),
];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(
        LIVE_SCHEMA
            .iter()
            .map(|(name, ty)| Field::new(*name, ty.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// A checked filter for live rows.
pub struct LiveFilter {
    pub text: String,
    expr: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
}

impl std::fmt::Debug for LiveFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFilter")
            .field("text", &self.text)
            .finish()
    }
}

impl LiveFilter {
    /// `text` as a condition over live rows: a one-line error (with the
    /// position, and the live columns when a column is unknown).
    pub fn new(text: &str) -> Result<LiveFilter> {
        let schema = schema();
        let expr = predicate::parse(text, &schema)
            .and_then(|expr| predicate::compile(expr, &schema))
            .map_err(|err| {
                let message = err.to_string();
                if message.contains("not found") || message.contains("No field named") {
                    let names: Vec<&str> = LIVE_SCHEMA.iter().map(|(n, _)| *n).collect();
                    anyhow!("{message} (live rows have: {})", names.join(", "))
                } else {
                    anyhow!(message)
                }
            })?;
        Ok(LiveFilter {
            text: text.to_string(),
            expr,
            schema,
        })
    }

    /// Which of `rows` the condition keeps (false and NULL leave a row out).
    pub fn keep(&self, rows: &[LiveRow]) -> Result<Vec<bool>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = batch(rows, &self.schema)?;
        let mask = predicate::evaluate(self.expr.as_ref(), &batch).map_err(|e| anyhow!(e))?;
        Ok((0..mask.len()).map(|i| mask.value(i)).collect())
    }
}

fn ints(rows: &[LiveRow], f: impl Fn(&LiveRow) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

fn texts(rows: &[LiveRow], f: impl Fn(&LiveRow) -> Option<&str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

/// `rows` as a batch of [`LIVE_SCHEMA`] (in its order).
fn batch(rows: &[LiveRow], schema: &SchemaRef) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            rows.iter()
                .map(|r| Some(r.ts_us))
                .collect::<TimestampMicrosecondArray>(),
        ),
        ints(rows, |r| Some(r.tid.into())),
        ints(rows, |r| Some(r.tgid.into())),
        texts(rows, |r| Some(r.comm.as_str())),
        texts(rows, |r| Some(r.state.name())),
        ints(rows, |r| {
            r.state_since_us.and_then(|v| i64::try_from(v).ok())
        }),
        ints(rows, |r| Some(r.cpu.into())),
        texts(rows, |r| r.syscall),
        ints(rows, |r| r.syscall_nr.map(i64::from)),
        ints(rows, |r| r.syscall_us.and_then(|v| i64::try_from(v).ok())),
        texts(rows, |r| r.io_dev.as_deref()),
        texts(rows, |r| r.io_op),
        ints(rows, |r| r.io_bytes.map(i64::from)),
        ints(rows, |r| r.io_us.and_then(|v| i64::try_from(v).ok())),
        texts(rows, |r| Some(r.wait_class.name())),
        ints(rows, |r| r.waker_tid.map(i64::from)),
        texts(rows, |r| r.waker_comm.as_deref()),
        ints(rows, |r| r.blocker_tid.map(i64::from)),
        texts(rows, |r| r.blocker_kind),
        texts(rows, |r| r.kfunc.as_deref()),
        ints(rows, |r| r.kstack_id),
        ints(rows, |r| r.ustack_id),
    ];
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| anyhow!("live rows do not fit their schema: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::thread_state::ThreadState;
    use crate::store::wait_class::WaitClass;

    fn row(
        tid: u32,
        comm: &str,
        state: ThreadState,
        class: WaitClass,
        syscall: Option<&'static str>,
    ) -> LiveRow {
        LiveRow {
            ts_us: 1_764_554_400_000_000,
            tgid: 100,
            state_since_us: Some(1_500),
            cpu: 1,
            syscall_us: syscall.map(|_| 2_000_000),
            ..LiveRow::for_test(tid, comm, state, class, syscall)
        }
    }

    #[test]
    fn sql_conditions_over_live_rows() {
        let rows = [
            row(1, "gt-spin0", ThreadState::OnCpu, WaitClass::Cpu, None),
            row(
                2,
                "gt-sleeper",
                ThreadState::Sleep,
                WaitClass::Timer,
                Some("clock_nanosleep"),
            ),
            row(
                3,
                "postgres",
                ThreadState::Disk,
                WaitClass::Io,
                Some("fdatasync"),
            ),
        ];
        let keep = |text: &str| LiveFilter::new(text).unwrap().keep(&rows).unwrap();
        assert_eq!(keep("comm LIKE 'gt-%'"), [true, true, false]);
        assert_eq!(
            keep("syscall_us / 1000 > 1500 AND wait_class <> 'IO'"),
            [false, true, false]
        );
        assert_eq!(
            keep("regexp_like(comm, '^gt-s(l|p)') AND tid >= 2"),
            [false, true, false]
        );
        // NULL (no syscall) leaves a row out.
        assert_eq!(keep("syscall <> 'fdatasync'"), [false, true, false]);
        assert_eq!(keep("ts IS NOT NULL AND cpu = 1"), [true, true, true]);
    }

    #[test]
    fn errors_say_where_and_what_live_rows_have() {
        let err = LiveFilter::new("file = 'x'").unwrap_err().to_string();
        assert!(
            err.contains("file") && err.contains("live rows have: ts, tid"),
            "{err}"
        );
        let err = LiveFilter::new("comm = ").unwrap_err().to_string();
        assert!(err.contains("syntax"), "{err}");
        assert!(LiveFilter::new("tid + 1").is_err());
    }
}
