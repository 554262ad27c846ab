//! `taskscope serve`: how long the page waits for its data, through the
//! real server over HTTP.
//!
//! - First view: `/api/info`, then `/api/overview` (the chart and the top
//!   groups: what the page asks before it can draw) over one hour of a 1,000-thread host
//!   sampled with `--all` at 1 Hz (1,000 rows per tick, 3.6 million rows).
//! - Top Activity over a week: `/api/activity` over the week of
//!   `benches/report.rs` (50 active rows per tick, 30 million rows), in
//!   30-minute buckets (≤ 500 points).
//! - The live page's poll: `/api/changes` (the data version; stat only)
//!   of that week's directory, per request (the median run of 100).
//!
//! Data is written by the real writer, Parquet and CSV (or the week is
//! read from TASKSCOPE_BENCH_SERVE_WEEK=DIR, data of `benches/report.rs`);
//! each figure is the median of 5 runs, with the slowest. No BPF.
//!
//! `cargo bench --bench serve`

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::report_data::write_span;
use taskscope::output::Formats;

const RUNS: usize = 5;

struct Server(Child, u16);

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_taskscope"))
            .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start taskscope serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("serve line");
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("serve printed {line:?}"));
        Server(child, port)
    }

    /// GET `target`: the body, which must come with a 200.
    fn get(&self, target: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.1)).expect("connect");
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("receive");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "GET {target}: {head}\n{body}"
        );
        body.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Median and slowest of `RUNS` runs of `work`.
fn timed(mut work: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], times[RUNS - 1])
}

fn iso(us: i64) -> String {
    let mut text = String::new();
    taskscope::store::timefmt::write_timestamp_micros(&mut text, us);
    text[..19].replace(' ', "T") + "Z"
}

/// The newest tick of the data behind `server`, µs.
fn newest(server: &Server) -> i64 {
    let info: serde_json::Value = serde_json::from_str(&server.get("/api/info")).expect("info");
    (info["newest_unix"].as_f64().expect("newest tick") * 1e6) as i64
}

fn write(dir: &Path, parquet: bool, seconds: u64, rows: u32, end_us: i64) -> Duration {
    let formats = Formats {
        csv: !parquet,
        parquet,
    };
    write_span(dir, formats, seconds, rows, end_us)
}

fn main() {
    let base = common::scratch_dir("bench-serve");
    let end_us = taskscope::store::timefmt::unix_micros_now() / 3_600_000_000 * 3_600_000_000;
    println!("serve bench: median (slowest) of {RUNS} runs, over HTTP");
    println!("  {:<62} {:>15} {:>15}", "", "CSV", "Parquet");

    let mut row = Vec::new();
    for parquet in [false, true] {
        let dir = base.join(if parquet { "hour-parquet" } else { "hour-csv" });
        write(&dir, parquet, 3_600, 1_000, end_us);
        let server = Server::start(&dir);
        let to = newest(&server) + 1_000_000;
        let window = format!("from={}&to={}", iso(to - 3_600_000_000), iso(to));
        // As the page asks: info, then the chart and the top groups in one
        // answer (one read of the hour).
        row.push(timed(|| {
            server.get("/api/info");
            server.get(&format!("/api/overview?{window}&by=wait_class&top=15"));
        }));
    }
    let cell = |(median, slowest): (f64, f64)| format!("{median:.2}s ({slowest:.2}s)");
    println!(
        "  {:<62} {:>15} {:>15}",
        "first view, 1 h of 1,000 threads at 1 Hz (info + overview)",
        cell(row[0]),
        cell(row[1])
    );

    let week_dirs: Vec<PathBuf> = match std::env::var_os("TASKSCOPE_BENCH_SERVE_WEEK") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            vec![dir.join("csv"), dir.join("parquet")]
        }
        None => [false, true]
            .iter()
            .map(|&parquet| {
                let dir = base.join(if parquet { "week-parquet" } else { "week-csv" });
                write(&dir, parquet, 7 * 86_400, 50, end_us);
                dir
            })
            .collect(),
    };
    let mut row = Vec::new();
    let mut polls = Vec::new();
    for dir in &week_dirs {
        let server = Server::start(dir);
        let (median, slowest) = timed(|| {
            for _ in 0..100 {
                server.get("/api/changes");
            }
        });
        polls.push((median / 100.0, slowest / 100.0));
        let to = newest(&server) + 1_000_000;
        let target = format!(
            "/api/activity?from={}&to={}&by=wait_class",
            iso(to - 7 * 86_400_000_000),
            iso(to)
        );
        let answer: serde_json::Value =
            serde_json::from_str(&server.get(&target)).expect("activity JSON");
        assert!(answer["times"].as_array().expect("times").len() <= 500);
        row.push(timed(|| {
            server.get(&target);
        }));
    }
    println!(
        "  {:<62} {:>15} {:>15}",
        "Top Activity over a week (30 min buckets)",
        cell(row[0]),
        cell(row[1])
    );
    let ms =
        |(median, slowest): (f64, f64)| format!("{:.2}ms ({:.2}ms)", median * 1e3, slowest * 1e3);
    println!(
        "  {:<62} {:>15} {:>15}",
        "/api/changes over the week's directory, per request",
        ms(polls[0]),
        ms(polls[1])
    );
}
