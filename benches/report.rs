//! `taskscope report` on a week of data: 1 Hz on a 1,000-thread host whose
//! default filter writes ~50 active threads per tick (5%), i.e. 30 million
//! rows in 168 hourly files per table. The data is made by the real writer
//! (CSV, then Parquet), then the real binary reports on it, timed by wall
//! clock; DuckDB's CLI runs the same aggregation for comparison when it is
//! on PATH. No BPF; runs as any user.
//!
//! Then the default report's question three ways in one run, each the best
//! of 3: `taskscope report`, `taskscope sql` (the query layer, DataFusion)
//! and the DuckDB CLI, with the ratios the query layer must keep (issue 15:
//! within 1.2x of report, 1.5x of DuckDB).
//!
//! Last, `--where` costs: the default report without and with a
//! `--where` (the engine's expression evaluated on Arrow batches; CSV rows
//! batched for it), and with TASKSCOPE_BENCH_REPORT_BASELINE=BINARY the
//! same runs by an older binary, as ratios.
//!
//! `cargo bench --bench report` (TASKSCOPE_BENCH_REPORT_DAYS=7,
//! TASKSCOPE_BENCH_REPORT_ROWS=50 per tick; TASKSCOPE_BENCH_REPORT_DATA=DIR
//! reads DIR/csv and DIR/parquet instead of writing them).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::report_data::write_span;
use taskscope::output::Formats;

fn write_week(out: &Path, formats: Formats, days: u64, rows: u32, end_us: i64) -> Duration {
    write_span(out, formats, days * 86_400, rows, end_us)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timed(program: &str, args: &[&str]) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(program).args(args).output().expect("run");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    let days = env("TASKSCOPE_BENCH_REPORT_DAYS", 7);
    let rows = env("TASKSCOPE_BENCH_REPORT_ROWS", 50) as u32;
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-report");
    let end_us = taskscope::store::timefmt::unix_micros_now() / 3_600_000_000 * 3_600_000_000;
    let given = std::env::var_os("TASKSCOPE_BENCH_REPORT_DATA").map(std::path::PathBuf::from);
    if given.is_none() {
        // A fresh week (never the one TASKSCOPE_BENCH_REPORT_DATA names,
        // which may be this very directory from an earlier run).
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
    }
    let data = given.clone().unwrap_or_else(|| base.clone());
    let csv_dir = data.join("csv");
    let parquet_dir = data.join("parquet");
    let total_rows = days * 86_400 * u64::from(rows);
    println!("report bench: {days} days at 1 Hz, {rows} rows per tick = {total_rows} sample rows");
    if given.is_some() {
        println!("  reading {}", data.display());
        compare_engines(&csv_dir, &parquet_dir, "30d");
        compare_where(&csv_dir, &parquet_dir, "30d");
        return;
    }
    let took = write_week(
        &csv_dir,
        Formats {
            csv: true,
            parquet: false,
        },
        days,
        rows,
        end_us,
    );
    println!("  wrote CSV in {:.1} s", took.as_secs_f64());
    let took = write_week(
        &parquet_dir,
        Formats {
            csv: false,
            parquet: true,
        },
        days,
        rows,
        end_us,
    );
    println!("  wrote Parquet in {:.1} s", took.as_secs_f64());
    let size = |dir: &Path| -> u64 {
        common::files_below(&dir.join("samples"))
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum()
    };
    println!(
        "  samples on disk: CSV {:.0} MiB, Parquet {:.0} MiB",
        size(&csv_dir) as f64 / 1048576.0,
        size(&parquet_dir) as f64 / 1048576.0
    );

    let agent = env!("CARGO_BIN_EXE_taskscope");
    let week = format!("{}d", days);
    println!("  {:<58} {:>9} {:>9}", "query", "CSV", "Parquet");
    for (label, args) in [
        (
            "report (state,comm,syscall,kfunc) over the whole window",
            vec!["report", "--since", week.as_str()],
        ),
        (
            "report --by comm --where \"state = 'DISK'\"",
            vec![
                "report",
                "--since",
                week.as_str(),
                "--by",
                "comm",
                "--where",
                "state = 'DISK'",
            ],
        ),
        (
            "report --timeline (6 h buckets)",
            vec!["report", "--since", week.as_str(), "--timeline"],
        ),
        ("report --since 2h", vec!["report", "--since", "2h"]),
    ] {
        let mut times = Vec::new();
        for dir in [&csv_dir, &parquet_dir] {
            let mut all = args.clone();
            all.extend(["--dir", dir.to_str().unwrap()]);
            times.push(timed(agent, &all).0);
        }
        println!(
            "  {label:<58} {:>8.2}s {:>8.2}s",
            times[0].as_secs_f64(),
            times[1].as_secs_f64()
        );
    }
    let duckdb = std::env::var("TASKSCOPE_DUCKDB").unwrap_or_else(|_| "duckdb".into());
    if Command::new(&duckdb)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut times = Vec::new();
        for (dir, glob) in [(&csv_dir, "*.csv.zst"), (&parquet_dir, "*.parquet")] {
            let sql = format!(
                "SELECT state, comm, syscall, kfunc, sum(weight_us) w FROM '{}/samples/*/*/{glob}' GROUP BY ALL ORDER BY w DESC LIMIT 20",
                dir.display()
            );
            times.push(timed(&duckdb, &["-c", &sql]).0);
        }
        println!(
            "  {:<58} {:>8.2}s {:>8.2}s",
            "duckdb CLI, the same GROUP BY (for comparison)",
            times[0].as_secs_f64(),
            times[1].as_secs_f64()
        );
    }
    compare_engines(&csv_dir, &parquet_dir, &week);
    compare_where(&csv_dir, &parquet_dir, &week);
}

/// The default report without and with a `--where`, best of 3, by this
/// binary and (TASKSCOPE_BENCH_REPORT_BASELINE) an older one.
fn compare_where(csv_dir: &Path, parquet_dir: &Path, window: &str) {
    let agent = env!("CARGO_BIN_EXE_taskscope");
    let baseline = std::env::var("TASKSCOPE_BENCH_REPORT_BASELINE").ok();
    println!(
        "  --where, best of 3:                          CSV   Parquet   CSV/base  Parquet/base"
    );
    for (label, predicate, old_too) in [
        ("no --where", None, true),
        ("--where \"state = 'DISK'\"", Some("state = 'DISK'"), true),
        (
            "--where \"comm LIKE 'app-1%' AND weight_us > 0\"",
            Some("comm LIKE 'app-1%' AND weight_us > 0"),
            true,
        ),
        (
            "--where \"regexp_like(comm, '^app-1') AND weight_us / 1000 > 0\"",
            Some("regexp_like(comm, '^app-1') AND weight_us / 1000 > 0"),
            false,
        ),
    ] {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for dir in [csv_dir, parquet_dir] {
            let mut args = vec!["report", "--since", window, "--dir", dir.to_str().unwrap()];
            if let Some(p) = predicate {
                args.extend(["--where", p]);
            }
            // This binary and the baseline in turn, each its best of 3.
            let old = baseline.as_deref().filter(|_| old_too);
            let (mut mine, mut before) = (f64::MAX, f64::MAX);
            for _ in 0..3 {
                mine = mine.min(timed(agent, &args).0.as_secs_f64());
                if let Some(old) = old {
                    before = before.min(timed(old, &args).0.as_secs_f64());
                }
            }
            ours.push(mine);
            if old.is_some() {
                theirs.push(before);
            }
        }
        let ratio = |i: usize| {
            theirs
                .get(i)
                .map_or("-".to_string(), |t| format!("{:.2}x", ours[i] / t))
        };
        println!(
            "  {label:<44} {:>6.2}s {:>8.2}s {:>10} {:>13}",
            ours[0],
            ours[1],
            ratio(0),
            ratio(1)
        );
    }
}

/// The default report's question (average active threads in 4 groups
/// over the window; by state, comm, syscall, kfunc, which files of every
/// version have, where the default's wait_class is newer) by `report`, by
/// `taskscope sql` and by the DuckDB CLI, and the ratios.
fn compare_engines(csv_dir: &Path, parquet_dir: &Path, window: &str) {
    let agent = env!("CARGO_BIN_EXE_taskscope");
    let active: Vec<String> = taskscope::store::thread_state::ThreadState::ALL
        .iter()
        .filter(|s| s.is_active())
        .map(|s| format!("'{}'", s.name()))
        .collect();
    let query = |samples: &str, ticks: &str| {
        format!(
            "SELECT state, comm, syscall, kfunc, \
             CAST(sum(weight_us) AS DOUBLE) / (SELECT sum(weight_us) FROM {ticks}) AS avg_active \
             FROM {samples} WHERE state IN ({}) GROUP BY state, comm, syscall, kfunc \
             ORDER BY avg_active DESC LIMIT 20",
            active.join(", ")
        )
    };
    let duckdb = std::env::var("TASKSCOPE_DUCKDB").unwrap_or_else(|_| "duckdb".into());
    let has_duckdb = Command::new(&duckdb)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    println!(
        "  the default report, best of 3 (in turn):  report      sql   duckdb  report/duckdb  sql/report  sql/duckdb"
    );
    for (name, dir, reader) in [
        (
            "CSV",
            csv_dir,
            "read_csv('{}/{}/*/*/*.csv.zst', hive_partitioning = true)",
        ),
        (
            "Parquet",
            parquet_dir,
            "read_parquet('{}/{}/*/*/*.parquet', hive_partitioning = true)",
        ),
    ] {
        let d = dir.to_str().unwrap();
        let report_args = [
            "report",
            "--since",
            window,
            "--dir",
            d,
            "--format",
            "csv",
            "--by",
            "state,comm,syscall,kfunc",
        ];
        let sql_text = query("samples", "ticks");
        let sql_args = [
            "sql", "--since", window, "--dir", d, "--format", "csv", &sql_text,
        ];
        let table = |t: &str| reader.replacen("{}", d, 1).replacen("{}", t, 1);
        let duck_text = format!(
            "SET threads = {}; {}",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            query(&table("samples"), &table("ticks"))
        );
        // The three in turn, three rounds, each its best: load that comes
        // and goes on a shared machine hits all three alike.
        let (mut report, mut sql, mut duck) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            report = report.min(timed(agent, &report_args).0);
            sql = sql.min(timed(agent, &sql_args).0);
            if has_duckdb {
                duck = duck.min(timed(&duckdb, &["-c", &duck_text]).0);
            }
        }
        let duck = has_duckdb.then_some(duck);
        let secs = |d: Duration| d.as_secs_f64();
        let ratio =
            |a: Duration| duck.map_or("-".to_string(), |d| format!("{:.2}x", secs(a) / secs(d)));
        println!(
            "  {name:<42} {:>7.2}s {:>7.2}s {:>8} {:>14} {:>11.2}x {:>11}",
            secs(report),
            secs(sql),
            duck.map_or("-".to_string(), |d| format!("{:.2}s", secs(d))),
            ratio(report),
            secs(sql) / secs(report),
            ratio(sql)
        );
    }
}
