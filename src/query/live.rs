//! The tables of `taskscope sql --live`: reads of a running agent's pinned
//! thread table, given as `samples` rows (`store::schema::SampleRow`, made
//! by `output::live::with_sample_rows` with the writer's own row builder),
//! as Arrow batches with the files' schemas, for the same SQL as over the
//! files. (The query layer sees the data through `store` alone: the
//! caller reads the table and makes the rows.)
//!
//! The decision a reader must know: the batches are built from the
//! columns of `store::schema`, so a live row has every column of the
//! files (and `date`, `hour` of its read) with the values the agent's row
//! for the same instant would have, where a live read knows them. Empty
//! text is NULL: what only the agent's writer resolves — `exe`, `user`,
//! `cgroup`, `host`, the container and pod columns, `file`, the socket
//! columns, `proc_title` (see `output::live`).
//! `weight_us` is the interval between reads: each row stands for that
//! much of one thread's time, as a file row stands for the agent's tick.
//!
//! `ticks` has one row per read (ts, weight_us, threads walked, rows,
//! torn_reads; the agent's counters NULL), so the named queries that
//! divide by the sampled time (`top_activity`, `top_waits`,
//! `active_threads`) work live. `stacks` holds the definitions of the
//! stacks the window's rows name (once each, under the newest read that
//! names it), when the agent pinned its captures; `syscalls` and `iorq`
//! are there and empty (the live table has no completed calls).
//!
//! [`LiveTables`] keeps the reads of a sliding window (the last
//! `round(window / interval)` reads, at least one) and registers them
//! with [`Engine::register_batches`] before each query.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use datafusion::arrow::array::{
    new_null_array, ArrayRef, BooleanBuilder, Date32Array, Int32Array, Int64Builder, RecordBatch,
    StringViewBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;

use super::{table_schema, Engine};
use crate::store::layout::TABLES;
use crate::store::schema::{
    ColumnType, SampleRow, Samples, StackRow, Stacks, Table, TickRow, Ticks, Value,
};

/// The `ticks` columns a live read fills; the others are the agent's own
/// counters, NULL here.
const LIVE_TICK_COLUMNS: [&str; 5] = ["ts", "weight_us", "threads", "rows", "torn_reads"];

const DAY_US: i64 = 86_400_000_000;
const HOUR_US: i64 = 3_600_000_000;

/// One read as tables.
struct Read {
    ts_us: i64,
    samples: RecordBatch,
    tick: RecordBatch,
    /// The definitions of the stacks its rows name.
    stacks: Vec<Arc<StackRow>>,
}

/// The reads in the window, oldest first.
pub struct LiveTables {
    reads: VecDeque<Read>,
    keep: usize,
    weight_us: u64,
    samples_schema: SchemaRef,
    ticks_schema: SchemaRef,
    stacks_schema: SchemaRef,
}

impl LiveTables {
    /// Reads every `interval`; with `window`, the tables hold the reads of
    /// the last `window` (`round(window / interval)` of them), else the
    /// newest read only.
    pub fn new(interval: Duration, window: Option<Duration>) -> Result<LiveTables> {
        let keep = match window {
            Some(w) => (w.as_secs_f64() / interval.as_secs_f64().max(1e-3)).round() as usize,
            None => 1,
        };
        Ok(LiveTables {
            reads: VecDeque::new(),
            keep: keep.max(1),
            weight_us: interval.as_micros() as u64,
            samples_schema: schema(Samples::NAME)?,
            ticks_schema: schema(Ticks::NAME)?,
            stacks_schema: schema(Stacks::NAME)?,
        })
    }

    /// How many reads the window holds at most.
    pub fn capacity(&self) -> usize {
        self.keep
    }

    /// Add a read made at `ts_us` (dropping the oldest beyond the
    /// window): its `samples` rows (their `weight_us` the interval), the
    /// threads it walked and those it skipped as torn.
    pub fn push(&mut self, read: &LiveRead<'_, '_>) -> Result<()> {
        let samples = samples_batch(read, &self.samples_schema)?;
        let tick = tick_batch(read, self.weight_us, &self.ticks_schema)?;
        self.reads.push_back(Read {
            ts_us: read.ts_us,
            samples,
            tick,
            stacks: read.stacks.to_vec(),
        });
        while self.reads.len() > self.keep {
            self.reads.pop_front();
        }
        Ok(())
    }

    /// `weight_us` of the rows of a read: the interval.
    pub fn weight_us(&self) -> u64 {
        self.weight_us
    }

    /// Reads in the tables now.
    pub fn reads(&self) -> usize {
        self.reads.len()
    }

    /// Time of the newest read.
    pub fn newest_ts(&self) -> Option<i64> {
        self.reads.back().map(|r| r.ts_us)
    }

    /// Rows of `samples` in the tables now.
    pub fn rows(&self) -> usize {
        self.reads.iter().map(|r| r.samples.num_rows()).sum()
    }

    /// Register `samples`, `ticks` and `stacks` of the reads in the
    /// window.
    pub fn register(&self, engine: &Engine) -> Result<()> {
        let samples = self.reads.iter().map(|r| r.samples.clone()).collect();
        engine.register_batches(Samples::NAME, self.samples_schema.clone(), samples)?;
        let ticks = self.reads.iter().map(|r| r.tick.clone()).collect();
        engine.register_batches(Ticks::NAME, self.ticks_schema.clone(), ticks)?;
        engine.register_batches(Stacks::NAME, self.stacks_schema.clone(), self.stacks()?)?;
        Ok(())
    }

    /// One `stacks` row per stack the window's rows name, under the
    /// newest read that names it.
    fn stacks(&self) -> Result<Vec<RecordBatch>> {
        let mut seen = HashSet::new();
        let mut batches = Vec::new();
        for read in self.reads.iter().rev() {
            let rows: Vec<StackRow> = read
                .stacks
                .iter()
                .filter(|def| seen.insert(def.id))
                .map(|def| StackRow::clone(def))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let mut columns = columns_of::<Stacks>(&rows)?;
            columns.extend(partition_columns(read.ts_us, rows.len()));
            batches.push(
                RecordBatch::try_new(self.stacks_schema.clone(), columns)
                    .context("live stacks do not fit their schema")?,
            );
        }
        Ok(batches)
    }
}

fn schema(table: &str) -> Result<SchemaRef> {
    table_schema(table).ok_or_else(|| anyhow!("no table {table}"))
}

/// Register every table of the files, empty: the query can be planned
/// (and its errors shown) before anything is read, and `stacks`,
/// `syscalls` and `iorq` stay empty.
pub fn register_empty(engine: &Engine) -> Result<()> {
    for table in TABLES {
        engine.register_batches(table, schema(table)?, Vec::new())?;
    }
    Ok(())
}

/// `date` and `hour` columns of `rows` rows read at `ts_us`.
fn partition_columns(ts_us: i64, rows: usize) -> [ArrayRef; 2] {
    let date = ts_us.div_euclid(DAY_US) as i32;
    let hour = (ts_us.rem_euclid(DAY_US) / HOUR_US) as i32;
    [
        Arc::new(Date32Array::from(vec![date; rows])),
        Arc::new(Int32Array::from(vec![hour; rows])),
    ]
}

/// The columns of table `T` for `rows`, in `schema`'s types (the files'
/// columns, without the partition columns). Empty text is NULL: in a live
/// row it is a name the read could not resolve.
fn columns_of<'a, T: Table>(rows: &[T::Row<'a>]) -> Result<Vec<ArrayRef>> {
    let mut out: Vec<ArrayRef> = Vec::with_capacity(T::columns().len());
    for column in T::columns() {
        let values = rows.iter().map(|row| (column.value)(row));
        let mismatch = || anyhow!("column {}: a value not of its type", column.name);
        let array: ArrayRef = match column.ty {
            ColumnType::Timestamp => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
                for v in values {
                    match v {
                        Value::Timestamp(us) => b.append_value(us),
                        Value::Null => b.append_null(),
                        _ => return Err(mismatch()),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for v in values {
                    match v {
                        Value::Int(n) => b.append_value(n),
                        Value::Null => b.append_null(),
                        _ => return Err(mismatch()),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Text => {
                let mut b = StringViewBuilder::with_capacity(rows.len());
                for v in values {
                    match v {
                        Value::Text(s) if !s.is_empty() => b.append_value(s),
                        Value::Text(_) | Value::Null => b.append_null(),
                        _ => return Err(mismatch()),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Bool => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for v in values {
                    match v {
                        Value::Bool(x) => b.append_value(x),
                        Value::Null => b.append_null(),
                        _ => return Err(mismatch()),
                    }
                }
                Arc::new(b.finish())
            }
        };
        out.push(array);
    }
    Ok(out)
}

/// One read of the live table, as rows.
pub struct LiveRead<'r, 'a> {
    /// Time of the read (UTC, microseconds).
    pub ts_us: i64,
    pub rows: &'r [SampleRow<'a>],
    /// Live threads walked.
    pub walked: u32,
    /// Threads skipped because their entry kept changing while read.
    pub torn: u32,
    /// The definitions of the stacks `rows` name.
    pub stacks: &'r [Arc<StackRow>],
}

/// The `samples` batch of one read, with `date` and `hour`.
pub fn samples_batch(read: &LiveRead<'_, '_>, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = columns_of::<Samples>(read.rows)?;
    columns.extend(partition_columns(read.ts_us, read.rows.len()));
    RecordBatch::try_new(schema.clone(), columns).context("live samples do not fit their schema")
}

/// The `ticks` row of one read.
pub fn tick_batch(
    read: &LiveRead<'_, '_>,
    weight_us: u64,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let row = TickRow {
        ts_us: read.ts_us,
        weight_us,
        threads: read.walked,
        rows: u32::try_from(read.rows.len()).unwrap_or(u32::MAX),
        torn_reads: read.torn,
        ..TickRow::default()
    };
    let mut columns = columns_of::<Ticks>(&[row])?;
    for (column, def) in columns.iter_mut().zip(Ticks::columns()) {
        if !LIVE_TICK_COLUMNS.contains(&def.name) {
            *column = new_null_array(column.data_type(), 1);
        }
    }
    columns.extend(partition_columns(read.ts_us, 1));
    RecordBatch::try_new(schema.clone(), columns).context("a live tick does not fit its schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{print, Limits};
    use crate::store::schema::{ContainerIdentity, FileTarget, WaitColumns};
    use crate::store::thread_state::ThreadState;
    use crate::store::wait_class::WaitClass;

    /// A live row: what `output::live::with_sample_rows` leaves empty is.
    fn row(ts_us: i64, tid: u32, comm: &'static str, state: ThreadState) -> SampleRow<'static> {
        SampleRow {
            ts_us,
            weight_us: 500_000,
            tid,
            tgid: 100,
            comm,
            exe: "",
            user: "",
            state,
            state_since_us: Some(0),
            cpu: 0,
            syscall: None,
            syscall_nr: None,
            syscall_us: None,
            syscall_args: None,
            syscall_seq: None,
            io_dev: None,
            io_op: None,
            io_bytes: None,
            io_us: None,
            io_seq: None,
            cgroup: "",
            kfunc: None,
            kstack_id: None,
            ustack_id: None,
            wait_class: if state == ThreadState::OnCpu {
                WaitClass::Cpu
            } else {
                WaitClass::Timer
            },
            since_lower_bound: false,
            syscall_us_lower_bound: None,
            host: "",
            container: ContainerIdentity::default(),
            wait: WaitColumns::default(),
            target: FileTarget::default(),
            proc_title: "",
        }
    }

    /// Push a read at `ts_us`: two spinners on CPU, a sleeper.
    fn push(tables: &mut LiveTables, ts_us: i64) {
        let rows = [
            row(ts_us, 1, "spin", ThreadState::OnCpu),
            row(ts_us, 2, "spin", ThreadState::OnCpu),
            row(ts_us, 3, "sleeper", ThreadState::Sleep),
        ];
        let read = LiveRead {
            ts_us,
            rows: &rows,
            walked: 10,
            torn: 0,
            stacks: &[],
        };
        tables.push(&read).unwrap();
    }

    fn json(engine: &Engine, sql: &str) -> String {
        let batches = engine.query(sql).expect("the query runs");
        let mut out = Vec::new();
        print::write(&mut out, &batches, print::Format::Json).expect("prints");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_read_is_the_files_samples_table_with_what_a_read_cannot_know_null() {
        let engine = Engine::new(Limits::default()).unwrap();
        register_empty(&engine).unwrap();
        let mut tables = LiveTables::new(Duration::from_millis(500), None).unwrap();
        assert_eq!(tables.weight_us(), 500_000);
        // 2026-12-01 06:30:00 UTC.
        push(&mut tables, 1_796_106_600_000_000);
        tables.register(&engine).unwrap();
        let out = json(
            &engine,
            "SELECT tid, comm, state, weight_us, exe, user, host, kfunc, ts, date, hour \
             FROM samples ORDER BY tid",
        );
        let first = out.lines().next().unwrap();
        assert_eq!(
            first,
            r#"{"tid":1,"comm":"spin","state":"ON_CPU","weight_us":500000,"exe":null,"user":null,"host":null,"kfunc":null,"ts":"2026-12-01 06:30:00.000000","date":"2026-12-01","hour":6}"#
        );
        assert_eq!(out.lines().count(), 3);
        assert_eq!(
            json(
                &engine,
                "SELECT state, count(*) AS n FROM samples GROUP BY ALL ORDER BY n DESC"
            ),
            "{\"state\":\"ON_CPU\",\"n\":2}\n{\"state\":\"SLEEP\",\"n\":1}\n"
        );
        // Every column of the files is there.
        let columns = json(
            &engine,
            "SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'samples'",
        );
        let expected = Samples::columns().len() + 2;
        assert_eq!(columns, format!("{{\"n\":{expected}}}\n"));
    }

    #[test]
    fn a_window_keeps_its_reads_and_the_named_queries_average_over_them() {
        let engine = Engine::new(Limits::default()).unwrap();
        register_empty(&engine).unwrap();
        let mut tables =
            LiveTables::new(Duration::from_millis(500), Some(Duration::from_secs(2))).unwrap();
        assert_eq!(tables.capacity(), 4);
        for i in 0..6 {
            push(&mut tables, 1_796_106_600_000_000 + i * 500_000);
        }
        assert_eq!((tables.reads(), tables.rows()), (4, 12));
        tables.register(&engine).unwrap();
        assert_eq!(
            json(
                &engine,
                "SELECT count(*) AS n, min(ts) AS first FROM samples"
            ),
            "{\"n\":12,\"first\":\"2026-12-01 06:30:01.000000\"}\n"
        );
        assert_eq!(
            json(
                &engine,
                "SELECT count(*) AS n, sum(threads) AS walked, max(pass_us) AS p FROM ticks"
            ),
            "{\"n\":4,\"walked\":40,\"p\":null}\n"
        );
        // Two spinners on CPU in every read: 2 average active threads.
        let top = json(
            &engine,
            "SELECT state, comm, avg_threads FROM top_activity() ORDER BY avg_threads DESC",
        );
        assert_eq!(
            top.lines().next(),
            Some(r#"{"state":"ON_CPU","comm":"spin","avg_threads":2.0}"#)
        );
    }
}
