//! Load and fault behaviour: a thread table too small for the threads,
//! thread and process churn, overload at 1000 Hz. Workloads come from
//! `tests/workload/load.c`; the agent's own `ticks` table is the witness.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;

const TICKS: &str = "read_csv('ticks/*/*/*.csv.zst')";
const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst')";

/// The load workload binary, compiled once per test run.
fn load_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/load.c");
        let binary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("load");
        let status = Command::new("cc")
            .args(["-O1", "-g", "-pthread", "-Wall", "-Werror", "-o"])
            .arg(&binary)
            .arg(&source)
            .status()
            .expect("run cc (install gcc)");
        assert!(status.success(), "compiling {} failed", source.display());
        binary
    })
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// `load crowd N`, driven through its stdin; killed on drop.
struct Crowd {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    pid: u32,
}

impl Crowd {
    fn start(threads: usize) -> Crowd {
        let mut child = Command::new(load_binary())
            .args(["crowd", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the crowd workload");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read crowd pid");
        let info: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("crowd said {line:?}: {e}"));
        let pid = info["pid"].as_u64().expect("pid") as u32;
        Crowd {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// Send one command, read one line of answer.
    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write to the crowd");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the crowd");
        line.trim().to_string()
    }

    fn live_threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .expect("list the crowd's threads")
            .count()
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--max-threads 64` (near the flag's minimum of 16) with ~300 threads of
/// one process selected by `--pid`: every tick counts the excess as
/// `untracked_now`; when the crowd exits the count drops to zero and new
/// threads are tracked again.
#[test]
fn full_table_counts_left_out_threads_and_recovers() {
    require_root();
    let _guard = exclusive();
    let mut crowd = Crowd::start(300);
    let live = crowd.live_threads();
    let excess = live as f64 - 64.0;
    let scratch = scratch();
    let out = scratch.path().join("out");
    let pid = crowd.pid.to_string();
    let agent = AgentRun::new()
        .args(["--all", "-F", "10", "--max-threads", "64", "--pid", &pid])
        .duration(12)
        .output(&out)
        .spawn();
    std::thread::sleep(Duration::from_secs(5));
    let released = crowd.ask("release");
    assert_eq!(released, "released");
    let released_us = unix_micros();
    std::thread::sleep(Duration::from_secs(3));
    let late: Vec<i64> = crowd
        .ask("late 20")
        .split_whitespace()
        .map(|tid| tid.parse().expect("tid"))
        .collect();
    assert_eq!(late.len(), 20);
    let status = wait_with_limit(agent, Duration::from_secs(40));
    assert_success(&status);
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(
        log.contains("untracked_now="),
        "no log line about left-out threads:\n{log}"
    );

    // While the crowd lived (ticks from 1 s after start to 0.5 s before the
    // release): the excess left out, the table full.
    let full = query(
        &out,
        &format!(
            "SELECT min(untracked_now) lo, max(untracked_now) hi, min(slots_used) used_lo, \
             max(slots_used) used_hi, count(*) n FROM {TICKS} \
             WHERE epoch_us(ts) < {released_us} - 500000 \
             AND epoch_us(ts) > (SELECT min(epoch_us(ts)) FROM {TICKS}) + 1000000"
        ),
    );
    let number = |row: &serde_json::Map<String, serde_json::Value>, key: &str| {
        row[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {row:?}"))
    };
    let row = &full[0];
    assert!(
        number(row, "n") >= 20.0,
        "too few ticks before release: {row:?}"
    );
    for key in ["lo", "hi"] {
        assert!(
            (number(row, key) - excess).abs() <= 3.0,
            "untracked_now {key} = {} but {live} threads live in a table of 64 (excess {excess}): {row:?}",
            number(row, key)
        );
    }
    assert_eq!(number(row, "used_lo"), 64.0, "table not full: {row:?}");
    assert_eq!(number(row, "used_hi"), 64.0, "table not full: {row:?}");

    // From 2 s after the release: nothing left out, and the new threads
    // are sampled in every tick after they started.
    let after = query_number(
        &out,
        &format!(
            "SELECT max(untracked_now) FROM {TICKS} WHERE epoch_us(ts) > {released_us} + 2000000"
        ),
    );
    assert_eq!(after, 0.0, "threads still left out after the crowd exited");
    let tids = late
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let sampled = query_number(
        &out,
        &format!("SELECT count(DISTINCT tid) FROM {SAMPLES} WHERE tid IN ({tids})"),
    );
    assert_eq!(sampled, 20.0, "not every late thread was tracked");
    eprintln!("load: live {live}, excess {excess}, ticks before release {row:?}");
}

/// Resident memory of `pid` in KiB (VmRSS).
/// Resident memory of `pid`, KiB: `VmRSS` or one of its parts
/// (`RssAnon`: the heap and stacks, where a leak would show; `RssFile`:
/// mapped files such as the binaries whose debug info is symbolized, which
/// the kernel can reclaim).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Threads on the machine, not counting those of process `except`.
fn machine_threads(except: u32) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == except {
            continue;
        }
        // A process may end between listing and reading: count what is there.
        if let Ok(tasks) = std::fs::read_dir(entry.path().join("task")) {
            n += tasks.count();
        }
    }
    n
}

/// 2 minutes of churn (1,000 threads/s living 1–500 ms, 50 processes/s ending by
/// exit, exec or SIGKILL and reaped 300 ms late) under `--all -F 10`:
/// afterwards the occupied slots match the machine's threads as they did
/// before the churn, the agent's
/// anonymous memory at the end is at most 10% above its level after 20 s, and every thread
/// that lived across two ticks is in the samples.
#[test]
fn churn_reclaims_slots_and_samples_every_lasting_thread() {
    const CHURN_SECS: u64 = 120;
    require_root();
    let _guard = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let log = scratch.path().join("threads.csv");
    let agent = AgentRun::new()
        .args(["--all", "-F", "10"])
        .duration(CHURN_SECS + 12)
        .output(&out)
        .spawn();
    let agent_pid = agent.id();
    std::thread::sleep(Duration::from_secs(3));
    // Threads the agent cannot track whatever the churn (this VM's pid 1
    // had 17 threads that never got a slot, before and after it): the
    // churn may not change the gap between slots and live threads.
    let counted_before_us = unix_micros();
    let live_before = machine_threads(agent_pid);
    let churn_start = Instant::now();
    let churn = Command::new(load_binary())
        .args(["churn", &CHURN_SECS.to_string(), "1000", "50"])
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the churn workload");
    std::thread::sleep(Duration::from_secs(20));
    let rss_20s = rss_kib(agent_pid);
    let anon_20s = status_kib(agent_pid, "RssAnon:");
    let churned = wait_with_limit(churn, Duration::from_secs(CHURN_SECS + 30));
    assert!(churned.status.success(), "churn workload failed");
    let rss_end = rss_kib(agent_pid);
    let anon_end = status_kib(agent_pid, "RssAnon:");
    let summary: serde_json::Value =
        serde_json::from_slice(&churned.stdout).expect("churn summary");
    let elapsed = churn_start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let counted_at_us = unix_micros();
    let live = machine_threads(agent_pid);
    let status = wait_with_limit(agent, Duration::from_secs(60));
    assert_success(&status);

    let threads = summary["threads"].as_f64().expect("threads");
    let processes = summary["processes"].as_f64().expect("processes");
    assert!(
        threads >= 900.0 * CHURN_SECS as f64 && processes >= 45.0 * CHURN_SECS as f64,
        "the workload fell short of its rates: {summary} in {elapsed:.1} s"
    );
    // A leak shows in anonymous memory (heap). Mapped files come and go
    // with what is being symbolized: the debug info of this test binary,
    // tens of MiB, is mapped when its threads' stacks are symbolized.
    eprintln!(
        "churn: agent RSS {rss_20s} KiB after 20 s, {rss_end} KiB at the end; \
         anonymous {anon_20s} -> {anon_end} KiB"
    );
    // Only growth is a leak (it may shrink as the allocator gives back
    // what a burst used).
    let anon_growth = anon_end as f64 / anon_20s as f64;
    assert!(
        anon_growth <= 1.10,
        "agent anonymous memory {anon_20s} KiB after 20 s of churn, {anon_end} KiB at the end \
         (RSS {rss_20s} -> {rss_end} KiB)"
    );

    let slots_at = |at_us: i64| {
        query_number(
            &out,
            &format!("SELECT slots_used FROM {TICKS} ORDER BY abs(epoch_us(ts) - {at_us}) LIMIT 1"),
        )
    };
    let (slots_before, slots_used) = (slots_at(counted_before_us), slots_at(counted_at_us));
    let (gap_before, gap_after) = (slots_before - live_before as f64, slots_used - live as f64);
    eprintln!(
        "slots used - live threads: {slots_before} - {live_before} before the churn, \
         {slots_used} - {live} after"
    );
    // Others may start and stop threads on this machine between the count
    // and the tick; a leak of churned slots would be tens of thousands.
    let tolerance = 10.0 + live as f64 * 0.05;
    assert!(
        (gap_after - gap_before).abs() <= tolerance,
        "{slots_used} slots used but {live} threads live after the churn, \
         {slots_before} and {live_before} before it"
    );

    let log_csv = format!(
        "read_csv('{}', header = false, columns = {{'tid': 'BIGINT', 'start_us': 'BIGINT', 'end_us': 'BIGINT'}})",
        log.display()
    );
    let coverage = query(
        &out,
        &format!(
            "WITH t AS (SELECT * FROM {log_csv}), \
             k AS (SELECT epoch_us(ts) AS us FROM {TICKS}), \
             s AS (SELECT DISTINCT tid, epoch_us(ts) AS us FROM {SAMPLES}), \
             spans AS (SELECT t.tid, t.start_us, t.end_us, count(k.us) AS ticks FROM t \
                       LEFT JOIN k ON k.us BETWEEN t.start_us AND t.end_us GROUP BY ALL), \
             lasting AS (SELECT * FROM spans WHERE ticks >= 2) \
             SELECT (SELECT count(*) FROM lasting) AS lasting, \
                    (SELECT count(*) FROM lasting l WHERE NOT EXISTS (SELECT 1 FROM s \
                     WHERE s.tid = l.tid AND s.us BETWEEN l.start_us - 100000 AND l.end_us + 100000)) AS missing"
        ),
    );
    let lasting = coverage[0]["lasting"].as_f64().expect("lasting");
    let missing = coverage[0]["missing"].as_f64().expect("missing");
    assert!(
        lasting >= 0.2 * threads,
        "only {lasting} of {threads} threads spanned two ticks"
    );
    assert_eq!(
        missing, 0.0,
        "{missing} of {lasting} threads that lived across two ticks are not in the samples"
    );
    eprintln!(
        "churn: {summary} in {elapsed:.1} s; RSS {rss_20s} -> {rss_end} KiB; \
         slots_used {slots_used} vs {live} live; {lasting} lasting threads, {missing} missing"
    );
}

/// Overload: 1000 Hz `--all` over 10,000 sleeping threads for 20 s. The
/// sampler cannot keep up: deadlines are skipped and counted
/// (`missed_ticks`), the writer's bounded queue drops whole ticks
/// (`dropped_ticks`), every deadline is accounted for, memory stays flat
/// and the files DuckDB reads are complete.
#[test]
fn overload_skips_and_drops_ticks_with_flat_memory() {
    const THREADS: usize = 10_000;
    const SECS: u64 = 20;
    require_root();
    let _guard = exclusive();
    let crowd = Crowd::start(THREADS);
    assert!(crowd.live_threads() > THREADS, "crowd did not start");
    let scratch = scratch();
    let out = scratch.path().join("out");
    let agent = AgentRun::new()
        .args(["--all", "-F", "1000"])
        .duration(SECS)
        .output(&out)
        .spawn();
    let agent_pid = agent.id();
    let mut rss = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(6));
        rss.push(rss_kib(agent_pid));
    }
    let status = wait_with_limit(agent, Duration::from_secs(SECS + 60));
    assert_success(&status);
    drop(crowd);

    // Once warm, memory is flat. Between the first two readings the
    // writer's queue fills (at most QUEUE_BYTES of ticks) and, behind it,
    // the first symbolization of this test's own binary (the crowd's
    // threads live in it; ~60 MiB of DWARF caches, once) may land; after
    // that, growth beyond the queue's budget and 10% is growth without
    // bound (before the byte budget: +97 MB in 12 s, ~48 MB per reading).
    let warm = rss[1] as f64;
    let last = rss[2] as f64;
    let queue_kib = taskscope::output::tick::QUEUE_BYTES as f64 / 1024.0;
    assert!(
        last <= warm * 1.10 + queue_kib,
        "agent RSS grew under overload beyond the queue's budget once warm: {rss:?} KiB at 6, 12, 18 s"
    );
    let row = &query(
        &out,
        &format!(
            "SELECT count(*) AS written, sum(missed_ticks) AS missed, max(dropped_ticks) AS dropped, \
             sum(rows) AS tick_rows, max(threads) AS threads FROM {TICKS}"
        ),
    )[0];
    let number = |key: &str| {
        row[key]
            .as_f64()
            .or_else(|| row[key].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("{key} in {row:?}"))
    };
    let (written, missed, dropped) = (number("written"), number("missed"), number("dropped"));
    assert!(missed > 0.0, "no deadline was skipped at 1000 Hz: {row:?}");
    assert!(
        number("threads") >= THREADS as f64,
        "crowd not tracked: {row:?}"
    );
    // Every deadline is a tick written, dropped or skipped (the last few
    // ticks may still be in flight when --duration ends).
    let deadlines = (SECS * 1000) as f64;
    let accounted = written + missed + dropped;
    assert!(
        (accounted - deadlines).abs() <= deadlines * 0.02,
        "{accounted} ticks accounted for ({row:?}) of {deadlines} deadlines"
    );
    let samples = query_number(&out, &format!("SELECT count(*) FROM {SAMPLES}"));
    assert_eq!(
        samples,
        number("tick_rows"),
        "samples files hold other than the rows the ticks table says were written"
    );
    eprintln!(
        "overload: {written} ticks written, {missed} skipped, {dropped} dropped of {deadlines}; \
         {samples} rows; RSS {rss:?} KiB at 6, 12, 18 s"
    );
}

/// CPU time of process `pid` (user + system), seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime and stime the 14th and 15th.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / rustix::param::clock_ticks_per_second() as f64
}

/// `--max-cpu 10` with a load that would take far more (1000 Hz `--all`
/// over 3,000 threads): after the first seconds the agent's measured CPU
/// stays near 10% of one CPU, ticks are taken less often, and their
/// weight_us grows so that the ticks' weights still add up to the time
/// sampled.
#[test]
fn max_cpu_keeps_the_agent_near_its_budget() {
    const SECS: f64 = 16.0;
    require_root();
    let _guard = exclusive();
    let crowd = Crowd::start(3000);
    let scratch = scratch();
    let out = scratch.path().join("out");
    let agent = AgentRun::new()
        .args(["--all", "-F", "1000", "--max-cpu", "10"])
        .duration(16)
        .output(&out)
        .spawn();
    let pid = agent.id();
    std::thread::sleep(Duration::from_secs(6));
    let (cpu_from, at_from) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(9));
    let used = (cpu_seconds(pid) - cpu_from) / at_from.elapsed().as_secs_f64() * 100.0;
    let status = wait_with_limit(agent, Duration::from_secs(40));
    assert_success(&status);
    drop(crowd);
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(
        log.contains("CPU budget"),
        "no log line about the budget:\n{log}"
    );
    eprintln!("--max-cpu 10: the agent used {used:.1}% of a CPU from 6 to 15 s");
    assert!(
        used <= 15.0,
        "agent used {used:.1}% of a CPU with --max-cpu 10:\n{log}"
    );
    let row = &query(
        &out,
        &format!(
            "SELECT max(weight_us) AS w, sum(weight_us) AS covered, count(*) AS n FROM {TICKS}"
        ),
    )[0];
    let number = |key: &str| {
        row[key]
            .as_f64()
            .or_else(|| row[key].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("{key} in {row:?}"))
    };
    assert!(number("w") >= 8000.0, "weight_us never grew: {row:?}");
    let sample_weights = query_number(
        &out,
        &format!("SELECT count(DISTINCT weight_us) FROM {SAMPLES}"),
    );
    assert!(
        sample_weights >= 2.0,
        "rows do not carry the effective weight"
    );
    // Ticks that were skipped (missed) or dropped do not count; with the
    // budget there should be few. The weights cover the run within 15%.
    let covered = number("covered") / 1e6;
    assert!(
        (covered - SECS).abs() <= SECS * 0.15,
        "ticks' weight_us add up to {covered:.1} s of a {SECS} s run: {row:?}"
    );
    eprintln!("max-cpu: {used:.1}% of a CPU measured; ticks {row:?}");
}
