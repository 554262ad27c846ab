//! The agent under load, as the real binary runs it:
//!
//! 1. **A crowd**: as many threads as the machine allows (aim: 100,000,
//!    64 KiB stacks, blocked in `read(2)`), sampled at 1 Hz with `--all`
//!    and with the default filter. Reported from the agent's own `ticks`
//!    table: CPU per pass, rows per tick, skipped ticks (overruns), and
//!    bytes on disk per tick; resident memory from /proc.
//! 2. **Churn**: 1,000 threads/s and 50 processes/s (ending by exit, exec
//!    or SIGKILL, reaped late) for 30 minutes under `--all -F 10`: the
//!    agent's RSS and occupied slots over time against the machine's live
//!    threads, and whether every thread that lived across two ticks was
//!    sampled.
//!
//! Run as root: `cargo bench --bench load`. `TASKSCOPE_BENCH_LOAD=crowd`
//! or `=churn` runs one part; `TASKSCOPE_BENCH_THREADS` (default 100000)
//! and `TASKSCOPE_BENCH_CHURN_SECS` (default 1800) size them. The crowd
//! part raises `kernel.pid_max`, `kernel.threads-max` and
//! `vm.max_map_count` for its run and restores them afterwards.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_seconds, files_below, scratch_dir, spawn_agent, status_kib, stop_agent};

fn main() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the load benchmark runs the agent: run it as root"
    );
    let part = std::env::var("TASKSCOPE_BENCH_LOAD").unwrap_or_default();
    if part.is_empty() || part == "crowd" {
        let threads = env_number("TASKSCOPE_BENCH_THREADS", 100_000);
        crowd(threads as usize);
    }
    if part.is_empty() || part == "churn" {
        churn(env_number("TASKSCOPE_BENCH_CHURN_SECS", 1_800));
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

/// Part 1: the crowd at 1 Hz.
fn crowd(wanted: usize) {
    let _limits = [
        Sysctl::at_least(
            "kernel/pid_max",
            (wanted as u64 * 2).clamp(65_536, 4_194_304),
        ),
        Sysctl::at_least("kernel/threads-max", wanted as u64 + 50_000),
        Sysctl::at_least("vm/max_map_count", wanted as u64 * 2 + 65_536),
    ];
    let started = Instant::now();
    let (mut crowd, threads) = start_crowd(wanted);
    println!(
        "crowd: {threads} of {wanted} threads started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let max_threads = (threads + 32_768).to_string();
    let mut results = Vec::new();
    for (label, filter) in [("--all", Some("--all")), ("default filter", None)] {
        let dir = scratch_dir(&format!("bench-crowd-{}", label.replace(' ', "-")));
        let mut args = vec!["-F", "1", "--max-threads", &max_threads];
        args.extend(filter);
        let run = run_agent(&args, Duration::from_secs(60), &dir);
        let ticks = query(
            &dir,
            "SELECT count(*) AS ticks, median(pass_us) AS pass_med, \
                    quantile_cont(pass_us, 0.99) AS pass_p99, max(pass_us) AS pass_max, \
                    median(threads) AS threads, median(rows) AS rows, \
                    sum(missed_ticks) AS missed, max(dropped_ticks) AS dropped, \
                    max(untracked_now) AS untracked \
             FROM read_csv('ticks/*/*/*.csv.zst') \
             WHERE ts > (SELECT min(ts) FROM read_csv('ticks/*/*/*.csv.zst'))",
        );
        let bytes: u64 = ["samples", "stacks", "ticks"]
            .iter()
            .flat_map(|t| files_below(&dir.join(t)))
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum();
        results.push((label, run, ticks, bytes));
    }
    writeln_line(&mut crowd, "release");
    let _ = crowd.wait();

    println!();
    println!("| {threads} threads, 1 Hz, 60 s | --all | default filter |");
    println!("| --- | --- | --- |");
    let row = |name: &str, cell: &dyn Fn(&Run, &Json, u64) -> String| {
        let cells: Vec<String> = results
            .iter()
            .map(|(_, run, ticks, bytes)| cell(run, ticks, *bytes))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    row("threads tracked (median per tick)", &|_, t, _| {
        num(t, "threads")
    });
    row("rows per tick (median)", &|_, t, _| num(t, "rows"));
    row("pass CPU, median / p99 / max (ms)", &|_, t, _| {
        format!(
            "{:.1} / {:.1} / {:.1}",
            f(t, "pass_med") / 1e3,
            f(t, "pass_p99") / 1e3,
            f(t, "pass_max") / 1e3
        )
    });
    row("skipped ticks (overruns) / dropped ticks", &|_, t, _| {
        format!("{} / {}", num(t, "missed"), num(t, "dropped"))
    });
    row("threads left out (max)", &|_, t, _| num(t, "untracked"));
    row("bytes on disk per tick (all tables)", &|_, t, b| {
        format!("{:.0} KiB", b as f64 / f(t, "ticks").max(1.0) / 1024.0)
    });
    row("agent CPU (% of one CPU)", &|r, _, _| {
        format!("{:.1}%", r.cpu_seconds / r.seconds * 100.0)
    });
    row("agent RSS at the end / peak (MiB)", &|r, _, _| {
        format!(
            "{:.0} / {:.0}",
            r.rss_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0
        )
    });
    println!();
}

/// Part 2: churn for `secs` seconds.
fn churn(secs: u64) {
    let dir = scratch_dir("bench-churn");
    let log = dir.with_extension("threads.csv");
    let mut agent = spawn_agent(&["--all", "-F", "10"], &dir);
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let churn = Command::new(load_binary())
        .args(["churn", &secs.to_string(), "1000", "50"])
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the churn workload");
    // (seconds into the churn, wall clock µs, agent RSS KiB, live threads)
    let mut points = Vec::new();
    let every = (secs / 15).max(10);
    let mut next = 20;
    while next <= secs {
        std::thread::sleep(Duration::from_secs(next).saturating_sub(started.elapsed()));
        points.push(point(&agent, started));
        next = if next == 20 {
            every.max(40)
        } else {
            next + every
        };
    }
    let output = churn
        .wait_with_output()
        .expect("wait for the churn workload");
    assert!(output.status.success(), "the churn workload failed");
    std::thread::sleep(Duration::from_secs(2));
    points.push(point(&agent, started));
    let summary = String::from_utf8_lossy(&output.stdout).trim().to_string();
    stop_agent(&mut agent);

    let lookups: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "(SELECT slots_used FROM read_csv('ticks/*/*/*.csv.zst') \
                  ORDER BY abs(epoch_us(ts) - {}) LIMIT 1) AS \"{}\"",
                p.wall_us, p.wall_us
            )
        })
        .collect();
    let slots = query(&dir, &format!("SELECT {}", lookups.join(", ")));
    let counted = Instant::now();
    let coverage = query(
        &dir,
        &format!(
            "WITH t AS (SELECT * FROM read_csv('{}', header = false, \
                 columns = {{'tid': 'BIGINT', 'start_us': 'BIGINT', 'end_us': 'BIGINT'}})), \
             k AS (SELECT epoch_us(ts) AS us FROM read_csv('ticks/*/*/*.csv.zst')), \
             s AS (SELECT DISTINCT tid, epoch_us(ts) AS us FROM read_csv('samples/*/*/*.csv.zst')), \
             spans AS (SELECT t.tid, t.start_us, t.end_us, count(k.us) AS ticks FROM t \
                       LEFT JOIN k ON k.us BETWEEN t.start_us AND t.end_us GROUP BY ALL), \
             lasting AS (SELECT * FROM spans WHERE ticks >= 2) \
             SELECT (SELECT count(*) FROM t) AS threads, (SELECT count(*) FROM lasting) AS lasting, \
                    (SELECT count(*) FROM lasting l WHERE NOT EXISTS (SELECT 1 FROM s \
                     WHERE s.tid = l.tid AND s.us BETWEEN l.start_us - 100000 AND l.end_us + 100000)) \
                    AS missing",
            log.display()
        ),
    );
    let _ = std::fs::remove_file(&log);

    println!("churn for {secs} s: {summary}");
    println!(
        "threads that lived across two ticks: {} of {}; not in the samples: {} (checked in {:.0} s)",
        num(&coverage, "lasting"),
        num(&coverage, "threads"),
        num(&coverage, "missing"),
        counted.elapsed().as_secs_f64()
    );
    println!();
    println!("| time into the churn | agent RSS (MiB) | slots used | live threads |");
    println!("| --- | --- | --- | --- |");
    for p in &points {
        println!(
            "| {} s | {:.1} | {} | {} |",
            p.seconds,
            p.rss_kib as f64 / 1024.0,
            num(&slots, &p.wall_us.to_string()),
            p.live_threads
        );
    }
    let first = points[0].rss_kib as f64;
    let last = points.last().expect("points").rss_kib as f64;
    let peak = points.iter().map(|p| p.rss_kib).max().expect("points") as f64;
    println!();
    println!(
        "RSS after 20 s {:.1} MiB, at the end {:.1} MiB ({:+.1}%), highest sampled {:.1} MiB",
        first / 1024.0,
        last / 1024.0,
        (last / first - 1.0) * 100.0,
        peak / 1024.0
    );
}

struct Point {
    seconds: u64,
    wall_us: i64,
    rss_kib: u64,
    live_threads: usize,
}

fn point(agent: &Child, started: Instant) -> Point {
    Point {
        seconds: started.elapsed().as_secs(),
        wall_us: taskscope::store::timefmt::unix_micros_now(),
        rss_kib: status_kib(agent.id(), "VmRSS:"),
        live_threads: machine_threads(agent.id()),
    }
}

/// What a run of the agent cost.
struct Run {
    seconds: f64,
    cpu_seconds: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

/// Run the real agent for `length` with `args`; its costs.
fn run_agent(args: &[&str], length: Duration, dir: &Path) -> Run {
    let mut child = spawn_agent(args, dir);
    let started = Instant::now();
    std::thread::sleep(length);
    let run = Run {
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds(child.id()),
        rss_kib: status_kib(child.id(), "VmRSS:"),
        hwm_kib: status_kib(child.id(), "VmHWM:"),
    };
    stop_agent(&mut child);
    run
}

/// `load crowd N`: the child and how many threads it could start.
fn start_crowd(n: usize) -> (Child, u64) {
    let mut child = Command::new(load_binary())
        .args(["crowd", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the crowd workload");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read the crowd's answer");
    let info: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("crowd said {line:?}: {e}"));
    (child, info["threads"].as_u64().expect("threads"))
}

fn writeln_line(child: &mut Child, line: &str) {
    use std::io::Write;
    let stdin = child.stdin.as_mut().expect("stdin");
    writeln!(stdin, "{line}").expect("write to the crowd");
    stdin.flush().expect("flush");
}

/// tests/workload/load.c, compiled once.
fn load_binary() -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/load.c");
    let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-load");
    let status = Command::new("cc")
        .args(["-O1", "-g", "-pthread", "-Wall", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "compiling {} failed", source.display());
    binary
}

/// A /proc/sys setting raised for the benchmark, restored on drop.
struct Sysctl {
    path: PathBuf,
    before: String,
}

impl Sysctl {
    fn at_least(name: &str, value: u64) -> Sysctl {
        let path = Path::new("/proc/sys").join(name);
        let before = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if before.trim().parse::<u64>().is_ok_and(|v| v < value) {
            std::fs::write(&path, value.to_string())
                .unwrap_or_else(|e| panic!("raise {} to {value}: {e}", path.display()));
        }
        Sysctl { path, before }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(err) = std::fs::write(&self.path, self.before.trim()) {
            eprintln!("could not restore {}: {err}", self.path.display());
        }
    }
}

type Json = Vec<serde_json::Map<String, serde_json::Value>>;

/// A query's rows from the DuckDB CLI, run in `dir`.
fn query(dir: &Path, sql: &str) -> Json {
    let duckdb = std::env::var_os("TASKSCOPE_DUCKDB").unwrap_or_else(|| "duckdb".into());
    let out = Command::new(duckdb)
        .args(["-json", "-c", sql])
        .current_dir(dir)
        .output()
        .expect("run the duckdb CLI (./dev.sh bench installs it)");
    assert!(
        out.status.success(),
        "duckdb failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("duckdb's JSON")
}

fn f(rows: &Json, column: &str) -> f64 {
    rows.first()
        .and_then(|r| r.get(column))
        .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn num(rows: &Json, column: &str) -> String {
    format!("{:.0}", f(rows, column))
}

/// Threads on the machine, not counting those of process `except`.
fn machine_threads(except: u32) -> usize {
    std::fs::read_dir("/proc")
        .expect("list /proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
                .is_some_and(|pid| pid != except)
        })
        // A process may end between listing and reading: count what is there.
        .filter_map(|e| std::fs::read_dir(e.path().join("task")).ok())
        .map(|tasks| tasks.count())
        .sum()
}
