//! `taskscope report` on a week of data: 1 Hz on a 1,000-thread host whose
//! default filter writes ~50 active threads per tick (5%), i.e. 30 million
//! rows in 168 hourly files per table. The data is made by the real writer
//! (CSV, then Parquet), then the real binary reports on it, timed by wall
//! clock; DuckDB's CLI runs the same aggregation for comparison when it is
//! on PATH. No BPF; runs as any user.
//!
//! `cargo bench --bench report` (TASKSCOPE_BENCH_REPORT_DAYS=7,
//! TASKSCOPE_BENCH_REPORT_ROWS=50 per tick).

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
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let end_us = taskscope::store::timefmt::unix_micros_now() / 3_600_000_000 * 3_600_000_000;
    let csv_dir = base.join("csv");
    let parquet_dir = base.join("parquet");
    let total_rows = days * 86_400 * u64::from(rows);
    println!("report bench: {days} days at 1 Hz, {rows} rows per tick = {total_rows} sample rows");
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
}
