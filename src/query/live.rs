//! The tables of `taskscope sql --live`: reads of a running agent's pinned
//! thread table (`output::live::read_samples`) as Arrow batches with the
//! files' schemas, for the same SQL as over the files.
//!
//! The decision a reader must know: a read becomes `samples` rows through
//! the writer's own row builder (`output::rows::sample_row`) and the
//! columns of `store::schema`, so a live row has every column of the files
//! (and `date`, `hour` of its read) with the values the agent's row for
//! the same instant would have, where a live read knows them. What only
//! the agent's writer resolves is NULL: `kfunc` and the stack ids, `exe`,
//! `user`, `cgroup`, `host`, the container and pod columns, `file`, the
//! socket columns and `proc_title` (see `output::live`). `weight_us` is the
//! interval between reads: each row stands for that much of one thread's
//! time, as a file row stands for the agent's tick.
//!
//! `ticks` has one row per read (ts, weight_us, threads walked, rows,
//! torn_reads; the agent's counters NULL), so the named queries that
//! divide by the sampled time (`top_activity`, `top_waits`,
//! `active_threads`) work live. `stacks`, `syscalls` and `iorq` are there
//! and empty (the live table has no stacks and no completed calls).
//!
//! [`LiveTables`] keeps the reads of a sliding window (the last
//! `round(window / interval)` reads, at least one) and registers them
//! with [`Engine::register_batches`] before each query.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use datafusion::arrow::array::{
    new_null_array, ArrayRef, BooleanBuilder, Date32Array, Int32Array, Int64Builder, RecordBatch,
    StringViewBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;

use super::{table_schema, Engine};
use crate::output::live::SampleRead;
use crate::output::rows::{sample_row, SampleNames};
use crate::output::sample::until_nul;
use crate::output::stacks::Resolved;
use crate::store::layout::TABLES;
use crate::store::names::dev_name;
use crate::store::schema::{
    ColumnType, FileTarget, SampleRow, Samples, Table, TickRow, Ticks, Value,
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
}

/// The reads in the window, oldest first.
pub struct LiveTables {
    reads: VecDeque<Read>,
    keep: usize,
    weight_us: u64,
    samples_schema: SchemaRef,
    ticks_schema: SchemaRef,
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
        })
    }

    /// How many reads the window holds at most.
    pub fn capacity(&self) -> usize {
        self.keep
    }

    /// Add a read (dropping the oldest beyond the window).
    pub fn push(&mut self, read: &SampleRead) -> Result<()> {
        let samples = samples_batch(read, self.weight_us, &self.samples_schema)?;
        let tick = tick_batch(read, self.weight_us, &self.ticks_schema)?;
        self.reads.push_back(Read {
            ts_us: read.ts_us,
            samples,
            tick,
        });
        while self.reads.len() > self.keep {
            self.reads.pop_front();
        }
        Ok(())
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

    /// Register `samples` and `ticks` of the reads in the window.
    pub fn register(&self, engine: &Engine) -> Result<()> {
        let samples = self.reads.iter().map(|r| r.samples.clone()).collect();
        engine.register_batches(Samples::NAME, self.samples_schema.clone(), samples)?;
        let ticks = self.reads.iter().map(|r| r.tick.clone()).collect();
        engine.register_batches(Ticks::NAME, self.ticks_schema.clone(), ticks)?;
        Ok(())
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

/// The names a live read has for one sample: its comm, its waker's, its
/// request's device.
struct LiveNames {
    comm: String,
    waker_comm: String,
    io_dev: Option<String>,
}

/// `samples` rows of one read, `weight_us` each, with `date` and `hour`.
pub fn samples_batch(read: &SampleRead, weight_us: u64, schema: &SchemaRef) -> Result<RecordBatch> {
    let names: Vec<LiveNames> = read
        .samples
        .iter()
        .map(|s| LiveNames {
            comm: String::from_utf8_lossy(s.comm_bytes()).into_owned(),
            waker_comm: String::from_utf8_lossy(until_nul(&s.wait.waker_comm)).into_owned(),
            io_dev: s.io.as_ref().map(|io| dev_name(io.dev)),
        })
        .collect();
    let stacks = Resolved::default();
    let rows: Vec<SampleRow<'_>> = read
        .samples
        .iter()
        .zip(&names)
        .map(|(sample, n)| {
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
            sample_row(read.ts_us, weight_us, sample, names, &stacks)
        })
        .collect();
    let mut columns = columns_of::<Samples>(&rows)?;
    columns.extend(partition_columns(read.ts_us, rows.len()));
    RecordBatch::try_new(schema.clone(), columns).context("live samples do not fit their schema")
}

/// The `ticks` row of one read.
pub fn tick_batch(read: &SampleRead, weight_us: u64, schema: &SchemaRef) -> Result<RecordBatch> {
    let row = TickRow {
        ts_us: read.ts_us,
        weight_us,
        threads: read.walked,
        rows: u32::try_from(read.samples.len()).unwrap_or(u32::MAX),
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
    use crate::bpf::types::ts_thread_flags;
    use crate::bpf::ThreadEntry;
    use crate::output::decode;
    use crate::query::{print, Limits};

    fn sample(
        tid: u32,
        comm: &[u8],
        flags: u32,
        sched_state: u32,
    ) -> crate::output::sample::Sample {
        let mut e = ThreadEntry::default();
        e.thread.tid = tid;
        e.thread.tgid = 100;
        e.thread.flags = flags | ts_thread_flags::TS_F_SWITCH_KNOWN.0;
        e.thread.sched_state = sched_state;
        e.thread.switch_in_ns = 100;
        e.thread.switch_out_ns = 200;
        for (i, b) in comm.iter().enumerate() {
            e.thread.comm[i] = *b as _;
        }
        decode::decode(&e, 1_000)
    }

    fn read(ts_us: i64) -> SampleRead {
        SampleRead {
            ts_us,
            samples: vec![
                sample(1, b"spin", ts_thread_flags::TS_F_ON_CPU.0, 0),
                sample(2, b"spin", ts_thread_flags::TS_F_ON_CPU.0, 0),
                sample(3, b"sleeper", 0, 0x1),
            ],
            walked: 10,
            torn: 0,
        }
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
        let mut tables = LiveTables::new(Duration::from_secs(1), None).unwrap();
        // 2026-12-01 06:30:00 UTC.
        tables.push(&read(1_796_106_600_000_000)).unwrap();
        tables.register(&engine).unwrap();
        let out = json(
            &engine,
            "SELECT tid, comm, state, weight_us, exe, user, host, kfunc, ts, date, hour \
             FROM samples ORDER BY tid",
        );
        let first = out.lines().next().unwrap();
        assert_eq!(
            first,
            r#"{"tid":1,"comm":"spin","state":"ON_CPU","weight_us":1000000,"exe":null,"user":null,"host":null,"kfunc":null,"ts":"2026-12-01 06:30:00.000000","date":"2026-12-01","hour":6}"#
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
            tables
                .push(&read(1_796_106_600_000_000 + i * 500_000))
                .unwrap();
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
