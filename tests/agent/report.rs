//! `--track`, `taskscope report` and `taskscope flamegraph` on one
//! ground-truth run: exact durations of what samples caught, the report's
//! arithmetic against threads whose states are known, and a flame graph
//! that parses and renders.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// `taskscope <args>` that must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = taskscope(args);
    assert!(
        out.status.success(),
        "taskscope {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed {text:?}: {e}"))
}

/// Rows of a JSON report as (group value of `column`, avg_active).
fn groups(report: &Value, column: &str) -> Vec<(String, f64)> {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row[column].as_str().unwrap_or("").to_string(),
                row["avg_active"].as_f64().expect("avg_active"),
            )
        })
        .collect()
}

#[test]
fn tracking_report_and_flamegraph_on_ground_truth() {
    require_root();
    let _serial = exclusive();
    let (workload, _scratch, out) = sample_workload(&[
        "-F",
        "20",
        "--all",
        "--track",
        "syscalls,io",
        "--format",
        "csv,parquet",
        "--duration",
        "8s",
    ]);
    let dir = out.to_str().expect("utf-8");
    let sleeper = workload.tid("sleeper");
    let fsync = workload.tid("fsync");

    // --track syscalls: the sleeper's nanosleeps last its real 200 ms.
    let sleeps: Vec<f64> = query(
        &out,
        &format!(
            "SELECT duration_us FROM read_csv('syscalls/*/*/*.csv.zst') WHERE tid = {sleeper} AND syscall = 'clock_nanosleep' ORDER BY 1"
        ),
    )
    .iter()
    .map(|row| row["duration_us"].as_f64().expect("duration"))
    .collect();
    assert!(sleeps.len() >= 20, "only {} sleeps recorded", sleeps.len());
    // A nanosleep never returns early; its end also waits for a CPU
    // (the spinners keep every CPU busy), so allow a tail.
    let median = sleeps[sleeps.len() / 2];
    let within = sleeps
        .iter()
        .filter(|&&d| (180_000.0..=220_000.0).contains(&d))
        .count();
    assert!(
        sleeps[0] >= 199_000.0
            && (200_000.0..=220_000.0).contains(&median)
            && within as f64 >= 0.8 * sleeps.len() as f64,
        "sleeps not within 10% of 200 ms: {sleeps:?}"
    );
    // Every recorded syscall and request joins back to a sample.
    for (table, seq) in [("syscalls", "syscall_seq"), ("iorq", "io_seq")] {
        let orphans = query_number(
            &out,
            &format!(
                "SELECT count(*) FROM read_csv('{table}/*/*/*.csv.zst') t
                 ANTI JOIN read_csv('samples/*/*/*.csv.zst') s ON s.tid = t.tid AND s.{seq} = t.seq"
            ),
        );
        if orphans != 0.0 {
            let rows = query(
                &out,
                &format!(
                    "SELECT * FROM read_csv('{table}/*/*/*.csv.zst') t
                     ANTI JOIN read_csv('samples/*/*/*.csv.zst') s ON s.tid = t.tid AND s.{seq} = t.seq"
                ),
            );
            let ticks = query(
                &out,
                "SELECT max(dropped_ticks) d FROM read_csv('ticks/*/*/*.csv.zst')",
            );
            panic!("{table} rows that no sample caught: {rows:?}; ticks: {ticks:?}");
        }
    }
    // --track io: the fsync thread's requests, on the disk it writes to.
    let device = device_of(&disk_dir());
    let requests = query(
        &out,
        // Explicit types: when no issue was seen, the queued/service columns
        // are all empty and DuckDB would guess VARCHAR.
        &format!(
            "SELECT dev, op, duration_us, \
                    queued_us IS NULL OR abs(queued_us + service_us - duration_us) <= 1 AS adds_up \
             FROM read_csv('iorq/*/*/*.csv.zst', \
                           types = {{'queued_us': 'BIGINT', 'service_us': 'BIGINT', 'duration_us': 'BIGINT'}}) \
             WHERE tid = {fsync}"
        ),
    );
    assert!(
        !requests.is_empty(),
        "no iorq rows for the fsync thread; its samples: {:?}",
        query(
            &out,
            &format!(
                "SELECT state, io_dev, kfunc, syscall, count(*) n FROM read_csv('samples/*/*/*.csv.zst') \
                 WHERE tid = {fsync} GROUP BY ALL ORDER BY n DESC"
            )
        )
    );
    for row in &requests {
        assert_eq!(row["dev"].as_str(), Some(device.as_str()), "{row:?}");
        assert!(
            matches!(row["op"].as_str(), Some("WRITE" | "FLUSH")),
            "{row:?}"
        );
        assert!(
            row["duration_us"].as_f64().unwrap_or(-1.0) >= 0.0,
            "{row:?}"
        );
        // Queue time plus device time is the whole (each rounded down to µs).
        assert_eq!(row["adds_up"].as_bool(), Some(true), "{row:?}");
    }

    // report: the spinners (one more than CPUs) fill the CPUs and queue.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let spinners = json(&[
        "report",
        "--dir",
        dir,
        "--since",
        "1h",
        "--by",
        "state",
        "--where",
        "comm LIKE 'gt-spin%'",
        "--format",
        "json",
    ]);
    let by_state = groups(&spinners, "state");
    assert!(
        by_state
            .iter()
            .all(|(state, _)| state == "ON_CPU" || state == "RUNQUEUE"),
        "{by_state:?}"
    );
    let total: f64 = by_state.iter().map(|g| g.1).sum();
    assert!(
        (total - (cpus + 1.0)).abs() < 0.25,
        "{} spinners should add up to {} active threads: {by_state:?}",
        cpus + 1.0,
        cpus + 1.0
    );
    // Other work on the machine takes CPUs too: at most every CPU.
    let on_cpu = by_state
        .iter()
        .find(|g| g.0 == "ON_CPU")
        .map_or(0.0, |g| g.1);
    assert!(on_cpu > 0.0 && on_cpu <= cpus + 0.05, "{by_state:?}");
    // ... the fsync thread is the top DISK waiter, the sleeper the top
    // clock_nanosleep one.
    let disk = json(&[
        "report",
        "--dir",
        dir,
        "--by",
        "comm",
        "--where",
        "state = 'DISK'",
        "--format",
        "json",
    ]);
    assert_eq!(groups(&disk, "comm")[0].0, "gt-fsync", "{disk}");
    // Sleeping threads count only with --all-states.
    let sleeping = json(&[
        "report",
        "--dir",
        dir,
        "--by",
        "comm,syscall",
        "--where",
        &format!("syscall = 'clock_nanosleep' AND tgid = {}", workload.pid()),
        "--all-states",
        "--format",
        "json",
    ]);
    let top = &sleeping["rows"][0];
    assert_eq!(top["comm"], "gt-sleeper", "{sleeping}");
    assert!(
        (top["avg_active"].as_f64().unwrap() - 1.0).abs() < 0.1,
        "{sleeping}"
    );

    // The Parquet copy gives the same report as the CSV one.
    let default_json = ok(&[
        "report",
        "--dir",
        dir,
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "json",
        "--top",
        "1000",
    ]);
    shell(&out, "find . -name '*.parquet' -delete");
    let csv_json = ok(&[
        "report",
        "--dir",
        dir,
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "json",
        "--top",
        "1000",
    ]);
    assert_eq!(default_json, csv_json, "Parquet and CSV files disagree");

    // --latency: p50 of the sleeper's nanosleeps, from the tracked table.
    let latency = json(&[
        "report",
        "--dir",
        dir,
        "--latency",
        "--where",
        &format!("tid = {sleeper}"),
        "--format",
        "json",
    ]);
    let row = &latency["rows"][0];
    assert_eq!(row["syscall"], "clock_nanosleep", "{latency}");
    let p50 = row["p50_us"].as_f64().unwrap();
    assert!((180_000.0..=220_000.0).contains(&p50), "{latency}");
    let buckets: u64 = row["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, row["count"].as_u64().unwrap());
    // The tracked tables carry the thread's name: the same answer by comm.
    let by_comm = json(&[
        "report",
        "--dir",
        dir,
        "--latency",
        "--where",
        "comm = 'gt-sleeper' AND exe LIKE '%groundtruth'",
        "--format",
        "json",
    ]);
    assert_eq!(by_comm["rows"], latency["rows"], "{by_comm}");
    let grouped = json(&[
        "report",
        "--dir",
        dir,
        "--latency",
        "--by",
        "comm,syscall",
        "--where",
        "comm = 'gt-sleeper'",
        "--format",
        "json",
    ]);
    assert_eq!(grouped["rows"][0]["comm"], "gt-sleeper", "{grouped}");
    let io = ok(&["report", "--dir", dir, "--latency", "io", "--format", "csv"]);
    assert!(io.starts_with("dev,op,count,"), "{io}");
    assert!(io.contains(&device), "{io}");
    let fsync_io = ok(&[
        "report",
        "--dir",
        dir,
        "--latency",
        "io",
        "--where",
        "comm = 'gt-fsync'",
        "--format",
        "csv",
    ]);
    assert!(fsync_io.contains(&device), "{fsync_io}");
    let table = ok(&["report", "--dir", dir, "--latency"]);
    assert!(
        table.contains("clock_nanosleep") && table.contains(" .. "),
        "{table}"
    );

    // --timeline: per-bucket averages add up to the whole window's.
    let timeline = ok(&[
        "report",
        "--dir",
        dir,
        "--timeline",
        "--bucket",
        "1s",
        "--format",
        "csv",
    ]);
    let mut lines = timeline.lines();
    assert_eq!(lines.next(), Some("bucket,state,avg_active"));
    assert!(lines.any(|l| l.contains(",ON_CPU,")), "{timeline}");
    let chart = ok(&[
        "report",
        "--dir",
        dir,
        "--timeline",
        "--where",
        "comm LIKE 'gt-%'",
    ]);
    assert!(chart.contains("C=ON_CPU") && chart.contains('S'), "{chart}");

    // Bad input: one line, exit 2.
    for (args, message) in [
        (
            vec!["--where", "state = "],
            "--where: SQL syntax error at line 1, column 9",
        ),
        (vec!["--where", "nosuch = 1"], "column 'nosuch' not found"),
        (vec!["--by", "nosuch"], "--by: no column 'nosuch'"),
        (
            vec!["--latency", "--by", "state"],
            "no column 'state' in table syscalls",
        ),
    ] {
        let mut all = vec!["report", "--dir", dir];
        all.extend(args.iter().copied());
        let out = taskscope(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {stderr}");
        assert!(stderr.contains(message), "{all:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let missing = taskscope(&["report", "--dir", "/nonexistent/taskscope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not a directory"));

    // flamegraph: valid XML with the workload's functions, rendered.
    let svg_path = out.join("flame.svg");
    let svg_arg = svg_path.to_str().unwrap();
    ok(&[
        "flamegraph",
        "--dir",
        dir,
        "--where",
        "comm LIKE 'gt-%'",
        "--all-states",
        "-o",
        svg_arg,
    ]);
    let svg = std::fs::read_to_string(&svg_path).expect("svg");
    for name in [
        "sleep_forever",
        "spin_forever",
        "read_pipe_forever",
        "worker_main",
        "SLEEP",
        "ON_CPU",
        "DISK",
        "gt-sleeper",
    ] {
        assert!(
            svg.contains(&format!("<title>{name} (")),
            "no frame {name} in the flame graph"
        );
    }
    shell(
        &out,
        &format!("python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' {svg_arg}"),
    );
    let folded = ok(&[
        "flamegraph",
        "--dir",
        dir,
        "--folded",
        "--all-states",
        "--kind",
        "kernel",
        "--where",
        &format!("tid = {sleeper}"),
    ]);
    assert!(
        folded.lines().all(|l| l.starts_with("SLEEP;gt-sleeper;")
            || l.starts_with("RUNQUEUE;gt-sleeper;")
            || l.starts_with("ON_CPU;gt-sleeper;")),
        "{folded}"
    );
    assert!(
        folded.contains("clock_nanosleep") && !folded.contains("sleep_forever"),
        "{folded}"
    );
    screenshot(&svg_path, &out.join("flame.png"));
}

/// Render `svg` in headless Chromium; the PNG must show more than a blank
/// page.
fn screenshot(svg: &Path, png: &Path) {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no headless Chromium: the README's test command installs the chromium package");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1200,600",
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", svg.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(png).expect("screenshot written").len();
    assert!(
        size > 20_000,
        "the screenshot is {size} bytes: a blank page?"
    );
}
