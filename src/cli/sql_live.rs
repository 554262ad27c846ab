//! `taskscope sql --live`: one query re-run over reads of a running
//! agent's pinned thread table, every `--interval`, over the newest read
//! or the reads of a sliding `--window` (`query::live` makes the tables).
//!
//! The decision a reader must know: the SQL is planned once over empty
//! tables before the table is opened, so bad SQL is a usage error (exit
//! 2, with its position) and never waits for an agent. The reader is the
//! one `top` uses (`bpf::live`: the pins mapped read-only, entries copied
//! under the sequence counter), so it never disturbs the agent.
//!
//! Output: on a terminal with `--format table`, each answer is redrawn in
//! place under a header line (cursor home, lines cleared, cursor hidden and
//! shown again on exit); otherwise every answer is printed once, for a
//! script: `table` with a `-- TIME UTC: N row(s)` line before each, `csv`
//! as one CSV stream (one header, a first column `read_ts`: the time of
//! the newest read), `json` as one line per answer: `{"ts": TIME, "reads":
//! N, "rows": [ROW, ...]}`. SIGINT, SIGTERM and SIGHUP end it with exit 0
//! after the current answer (or within 2 s, cursor shown, if a query runs
//! longer); `--count N` ends it after N answers.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use ratatui::crossterm::{cursor, queue, terminal};

use super::parse;
use super::sql::SqlFormat;
use crate::bpf::live::LiveTable;
use crate::error::{Outcome, Usage};
use crate::output::live::{now_ns, read_samples, with_sample_rows, LiveStacks};
use crate::query::live::{register_empty, LiveRead, LiveTables};
use crate::query::{print, Engine, Limits, QueryError};
use crate::store::timefmt;

/// Flags of `taskscope sql` for live queries.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Query the running agent's live thread table (root) instead of the
    /// files, again every --interval: samples holds the newest read (or
    /// --window's reads), ticks one row per read
    #[arg(long, conflicts_with_all = ["dir", "since", "from", "to"])]
    pub live: bool,

    /// With --live: the running agent's --pin-dir
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/sys/fs/bpf/taskscope",
        requires = "live"
    )]
    pub pin_dir: PathBuf,

    /// With --live: how often to read the table and run the query again
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse::duration, requires = "live")]
    pub interval: Duration,

    /// With --live: the tables hold the reads of this last DURATION (60s
    /// at 1s: 60 reads) [default: the newest read only]
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, requires = "live")]
    pub window: Option<Duration>,

    /// With --live: stop after N answers [default: until Ctrl-C]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), requires = "live")]
    pub count: Option<u64>,

    /// With --live: read sleeping and idle threads too (default: active
    /// threads only, as the agent writes without --all)
    #[arg(long, requires = "live")]
    pub all: bool,
}

/// Answers a script reads, or the screen redrawn.
enum Sink {
    Screen { drawn: bool },
    Table,
    Csv { header: bool },
    Json,
}

/// Show the cursor again (raw write: no lock of stdout is needed).
fn show_cursor() {
    let _ = rustix::io::write(std::io::stdout(), b"\x1b[?25h");
}

/// `taskscope sql --live`.
pub fn run(args: &LiveArgs, sql: &str, limits: Limits, format: SqlFormat) -> Result<Outcome> {
    if args.interval < Duration::from_millis(100) {
        return Err(Usage("--interval must be at least 100ms".into()).into());
    }
    if args.window.is_some_and(|w| w < args.interval) {
        return Err(Usage("--window must be at least --interval".into()).into());
    }
    let engine = Engine::new(limits)?;
    register_empty(&engine)?;
    engine.query(sql).map_err(QueryError::into_anyhow)?;
    let table = LiveTable::open(&args.pin_dir).map_err(|err| anyhow!("{err}"))?;
    let mut tables = LiveTables::new(args.interval, args.window)?;

    let stdout = std::io::stdout();
    let mut sink = match format {
        SqlFormat::Table if stdout.is_terminal() => Sink::Screen { drawn: false },
        SqlFormat::Table => Sink::Table,
        SqlFormat::Csv => Sink::Csv { header: true },
        SqlFormat::Json => Sink::Json,
    };
    let screen = matches!(sink, Sink::Screen { .. });
    let stop = signals(screen)?;
    let result = refresh_loop(args, sql, &engine, &table, &mut tables, &mut sink, &stop);
    if screen {
        let mut out = stdout.lock();
        let _ = queue!(out, cursor::Show);
        let _ = out.flush();
    }
    match result {
        Err(err) if is_broken_pipe(&err) => Ok(Outcome::Done),
        other => other.map(|()| Outcome::Done),
    }
}

/// A reader of the output went away (`| head`): not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// SIGINT, SIGTERM, SIGHUP: a message on the returned channel; if the loop
/// has not ended 2 s later (a long query), the cursor is shown and the
/// process exits 0 from the signal thread.
fn signals(screen: bool) -> Result<mpsc::Receiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install the signal handlers")?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("sql-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let _ = tx.send(signal);
                std::thread::sleep(Duration::from_secs(2));
                if screen {
                    show_cursor();
                }
                std::process::exit(0);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(rx)
}

fn refresh_loop(
    args: &LiveArgs,
    sql: &str,
    engine: &Engine,
    table: &LiveTable,
    tables: &mut LiveTables,
    sink: &mut Sink,
    stop: &mpsc::Receiver<i32>,
) -> Result<()> {
    let interval_ns = args.interval.as_nanos() as u64;
    // Deadlines on CLOCK_MONOTONIC, the table's clock, as top's.
    let mut next_ns = now_ns();
    let mut answers = 0u64;
    let mut stacks = LiveStacks::new();
    loop {
        let wait = Duration::from_nanos(next_ns.saturating_sub(now_ns()));
        match stop.recv_timeout(wait) {
            Ok(_) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let walked = read_into(tables, table, &mut stacks, args.all, next_ns)?;
        tables.register(engine)?;
        let batches = engine.query(sql).map_err(QueryError::into_anyhow)?;
        let ts_us = tables.newest_ts().unwrap_or_default();
        let info = Info {
            ts_us,
            reads: tables.reads(),
            walked,
            interval: args.interval,
            window: args.window,
            pin_dir: table.dir().display().to_string(),
        };
        write_answer(sink, &batches, &info)?;
        answers += 1;
        if args.count.is_some_and(|n| answers >= n) {
            return Ok(());
        }
        next_ns += interval_ns;
        let now = now_ns();
        if next_ns < now {
            // A query longer than the interval: the next read now + one.
            next_ns = now + interval_ns;
        }
    }
}

/// Read `table` now (sleepers too if `all`; `woke_ns` as for
/// `output::live::read_samples`) and add the read to `tables`. Returns the
/// threads walked.
pub fn read_into(
    tables: &mut LiveTables,
    table: &LiveTable,
    stacks: &mut LiveStacks,
    all: bool,
    woke_ns: u64,
) -> Result<u32> {
    let read = read_samples(table, all, woke_ns, Some(stacks));
    let mut named = HashSet::new();
    let definitions: Vec<_> = read
        .stacks
        .iter()
        .flat_map(|s| [s.kstack, s.ustack])
        .flatten()
        .filter(|id| named.insert(*id))
        .filter_map(|id| stacks.definition(id))
        .collect();
    with_sample_rows(&read, tables.weight_us(), |rows| {
        tables.push(&LiveRead {
            ts_us: read.ts_us,
            rows,
            walked: read.walked,
            torn: read.torn,
            stacks: &definitions,
        })
    })?;
    Ok(read.walked)
}

/// What the header says of an answer.
struct Info {
    ts_us: i64,
    reads: usize,
    walked: u32,
    interval: Duration,
    window: Option<Duration>,
    pin_dir: String,
}

fn ts_text(us: i64) -> String {
    let mut text = String::new();
    timefmt::write_timestamp_micros(&mut text, us);
    text
}

fn write_answer(sink: &mut Sink, batches: &[RecordBatch], info: &Info) -> Result<()> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let ts = ts_text(info.ts_us);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match sink {
        Sink::Screen { drawn } => {
            let mut body = Vec::new();
            print::write(&mut body, batches, print::Format::Table)?;
            let window = match info.window {
                Some(w) => format!(
                    "window {}: {} read(s)",
                    timefmt::human_duration(w),
                    info.reads
                ),
                None => "newest read".to_string(),
            };
            let header = format!(
                "taskscope sql --live {} UTC · {rows} row(s) · every {} · {window} · {} threads · Ctrl-C quits · {}",
                ts.get(11..19).unwrap_or(&ts),
                timefmt::human_duration(info.interval),
                info.walked,
                info.pin_dir,
            );
            draw(&mut out, &header, &String::from_utf8_lossy(&body), !*drawn)?;
            *drawn = true;
        }
        Sink::Table => {
            writeln!(out, "-- {ts} UTC: {rows} row(s)")?;
            print::write(&mut out, batches, print::Format::Table)?;
            writeln!(out)?;
        }
        Sink::Csv { header } => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(*header)
                .build(&mut out);
            for batch in batches {
                writer.write(&with_read_ts(batch, &ts)?)?;
            }
            // An empty answer still gives its header once.
            if *header && rows == 0 {
                if let Some(batch) = batches.first() {
                    writer.write(&with_read_ts(batch, &ts)?)?;
                }
            }
            *header = false;
        }
        Sink::Json => {
            let mut writer = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::JsonArray>(Vec::new());
            for batch in batches {
                writer.write(&print::printable(batch)?)?;
            }
            writer.finish()?;
            let array = writer.into_inner();
            let ts = serde_json::to_string(&ts)?;
            write!(out, "{{\"ts\":{ts},\"reads\":{},\"rows\":", info.reads)?;
            out.write_all(&array)?;
            writeln!(out, "}}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `batch` as printed, after a first column `read_ts`.
fn with_read_ts(batch: &RecordBatch, ts: &str) -> Result<RecordBatch> {
    let printable = print::printable(batch)?;
    let mut fields = vec![Field::new("read_ts", DataType::Utf8, false)];
    fields.extend(
        printable
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone()),
    );
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(StringArray::from(vec![ts; printable.num_rows()]))];
    columns.extend(printable.columns().iter().cloned());
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Redraw the screen from its top: the header, then `body`, each line cut
/// to the terminal's width, as many as fit (the rest counted), every line
/// cleared to its end and the screen below the last.
fn draw(out: &mut impl Write, header: &str, body: &str, first: bool) -> Result<()> {
    let (width, height) = terminal::size().unwrap_or((80, 24));
    let (width, height) = (usize::from(width.max(10)), usize::from(height.max(3)));
    if first {
        queue!(out, cursor::Hide, terminal::Clear(terminal::ClearType::All))?;
    }
    queue!(out, cursor::MoveTo(0, 0))?;
    let mut lines: Vec<&str> = vec![header];
    lines.extend(body.lines());
    // The last row stays free: a newline there would scroll the screen.
    let room = height - 1;
    let hidden = lines.len().saturating_sub(room);
    if hidden > 0 {
        lines.truncate(room - 1);
    }
    let cut = |line: &str| -> String { line.chars().take(width).collect() };
    for line in &lines {
        write!(out, "{}", cut(line))?;
        queue!(out, terminal::Clear(terminal::ClearType::UntilNewLine))?;
        writeln!(out)?;
    }
    if hidden > 0 {
        let more = hidden + 1;
        write!(
            out,
            "{}",
            cut(&format!(
                "… {more} more line(s): a LIMIT, a taller terminal, or --format csv"
            ))
        )?;
        queue!(out, terminal::Clear(terminal::ClearType::UntilNewLine))?;
        writeln!(out)?;
    }
    queue!(out, terminal::Clear(terminal::ClearType::FromCursorDown))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_answers_start_with_the_read_time() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)])),
            vec![Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                1, 2,
            ]))],
        )
        .unwrap();
        let with = with_read_ts(&batch, "2026-12-01 06:30:00.000000").unwrap();
        assert_eq!(with.schema().field(0).name(), "read_ts");
        assert_eq!((with.num_columns(), with.num_rows()), (2, 2));
    }

    #[test]
    fn a_long_answer_is_cut_to_the_screen() {
        let mut out = Vec::new();
        let body: String = (0..100).map(|i| format!("line {i}\n")).collect();
        draw(&mut out, "head", &body, true).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("head") && text.contains("line 0"));
        assert!(!text.contains("line 99"));
        assert!(text.contains("more line(s)"));
    }
}
