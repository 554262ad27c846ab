//! Answers count active threads over the time they cover (windows that
//! cut periods, empty windows that say where the data is).

use std::process::Command;

use serde_json::Value;

use super::*;

#[test]
fn answers_count_active_threads_over_the_time_they_cover() {
    require_root();
    let _serial = exclusive();
    let (workload, scratch, out) = sample_workload(&[
        "--all",
        "--frequency",
        "10",
        "--duration",
        "6",
        "--format",
        "csv",
    ]);
    let dir = out.to_str().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let by_state = |extra: &[&str]| -> Value {
        let mut args = vec![
            "report", "--dir", dir, "--by", "state", "--format", "json", "--top", "100",
        ];
        args.extend(extra);
        report_ok(&args)
    };
    let states = |report: &Value| -> Vec<String> {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap_or("").to_string())
            .collect()
    };

    // Active threads by default: the spinners, the fsync thread, the
    // stopped child; not the sleepers and idle kworkers --all wrote.
    let active = by_state(&[]);
    let all = by_state(&["--all-states"]);
    assert_eq!(active["states"], "active");
    assert!(
        states(&active)
            .iter()
            .all(|s| !["SLEEP", "IDLE", "PARKED"].contains(&s.as_str())),
        "{active}"
    );
    assert!(states(&all).iter().any(|s| s == "SLEEP"), "{all}");
    let (active_total, all_total) = (
        active["avg_active_total"].as_f64().unwrap(),
        all["avg_active_total"].as_f64().unwrap(),
    );
    let not_counted = active["avg_not_counted"].as_f64().unwrap();
    assert!(
        active_total >= cpus,
        "{active_total} active threads, fewer than the {cpus} CPUs the spinners fill: {active}"
    );
    assert!(
        (active_total + not_counted - all_total).abs() < 1e-6,
        "{active} {all}"
    );
    assert!(not_counted >= 1.0, "the sleepers are not counted: {active}");
    let table = String::from_utf8(taskscope(&["report", "--dir", dir]).stdout).unwrap();
    assert!(
        table.lines().nth(1).is_some_and(|l| l
            .starts_with("counted: active threads (ON_CPU, RUNQUEUE, DISK")
            && l.contains("not counted:")),
        "{table}"
    );

    // --where on ts restricts the time sampled too: the spinners still
    // fill the CPUs over the half of the run it keeps.
    let first_tick = query(
        &out,
        "SELECT strftime(min(ts) + INTERVAL 3 SECOND, '%Y-%m-%d %H:%M:%S.%f') AS t FROM read_csv('ticks/*/*/*.csv.zst')",
    )[0]["t"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = query_number(
        &out,
        &format!("SELECT sum(weight_us) / 1e6 FROM read_csv('ticks/*/*/*.csv.zst') WHERE ts >= '{first_tick}'"),
    );
    let spinners = report_ok(&[
        "report",
        "--dir",
        dir,
        "--format",
        "json",
        "--where",
        &format!("ts >= '{first_tick}' AND comm LIKE 'gt-spin%'"),
    ]);
    assert!(
        (spinners["sampled_seconds"].as_f64().unwrap() - kept).abs() < 1e-6,
        "{spinners} vs {kept} s of ticks"
    );
    let spinning = spinners["avg_active_total"].as_f64().unwrap();
    assert!(
        (spinning - (cpus + 1.0)).abs() < 0.3,
        "{spinning}: {spinners}"
    );
    assert_usage_error(
        &taskscope(&[
            "report",
            "--dir",
            dir,
            "--where",
            &format!("ts >= '{first_tick}' OR comm = 'x'"),
        ]),
        "--from/--to",
    );
    let deep = format!("{}tid = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_usage_error(
        &taskscope(&["report", "--dir", dir, "--where", &deep]),
        "nests too deeply",
    );

    // --by ts prints times, as in the files.
    let ticks = report_ok(&[
        "report", "--dir", dir, "--by", "ts", "--format", "json", "--top", "3",
    ]);
    for row in ticks["rows"].as_array().unwrap() {
        let ts = row["ts"].as_str().unwrap();
        assert!(
            ts.len() == 26
                && ts.starts_with("20")
                && ts.as_bytes()[10] == b' '
                && ts.as_bytes()[19] == b'.',
            "{ticks}"
        );
    }

    // The timeline's default bucket follows the 6 s of data, not the hour.
    let timeline = report_ok(&["report", "--dir", dir, "--timeline", "--format", "json"]);
    assert_eq!(timeline["bucket_seconds"], 1.0, "{timeline}");
    let drawn: Vec<&str> = timeline["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert!(
        drawn.contains(&"ON_CPU") && !drawn.contains(&"SLEEP"),
        "{timeline}"
    );

    // Flame graph: state, then thread name, then frames; active by default.
    let folded = |extra: &[&str]| -> String {
        let mut args = vec![
            "flamegraph",
            "--dir",
            dir,
            "--folded",
            "--where",
            "comm LIKE 'gt-%'",
        ];
        args.extend(extra);
        let out = taskscope(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let default = folded(&[]);
    assert!(
        default.lines().any(|l| l.starts_with("ON_CPU;gt-spin")),
        "{default}"
    );
    // Its uninterruptible waits count as active: DISK while its own request
    // is in flight, UNINTERRUPTIBLE otherwise (on a fast disk the waits for
    // writeback and the cache flush can be all of them in 6 s at 10 Hz; the
    // ground-truth test checks DISK itself).
    assert!(
        default
            .lines()
            .any(|l| l.starts_with("DISK;gt-fsync;") || l.starts_with("UNINTERRUPTIBLE;gt-fsync;")),
        "{default}"
    );
    assert!(
        !default.lines().any(|l| l.starts_with("SLEEP;")),
        "{default}"
    );
    let every = folded(&["--all-states"]);
    assert!(
        every.lines().any(|l| l.starts_with("SLEEP;gt-sleeper;")),
        "{every}"
    );
    // Never an SVG on a terminal (script gives the command one).
    let terminal = Command::new("script")
        .args([
            "-qec",
            &format!("{AGENT} flamegraph --dir {dir}"),
            "/dev/null",
        ])
        .output()
        .expect("run script");
    let said = String::from_utf8_lossy(&terminal.stdout);
    assert_eq!(terminal.status.code(), Some(2), "{said}");
    assert!(
        said.contains("would go to the terminal") && !said.contains("<svg"),
        "{said}"
    );

    // An imported archive is reported over its own window, not the last hour.
    let window = query(
        &out,
        "SELECT strftime(min(ts) - INTERVAL 1 MINUTE, '%Y-%m-%d %H:%M:%S') AS f, \
                strftime(max(ts) + INTERVAL 1 MINUTE, '%Y-%m-%d %H:%M:%S') AS t FROM read_csv('ticks/*/*/*.csv.zst')",
    );
    let (from, to) = (
        window[0]["f"].as_str().unwrap(),
        window[0]["t"].as_str().unwrap(),
    );
    let archive = scratch.path().join("incident.tar.zst");
    let export = taskscope(&[
        "export",
        "--dir",
        dir,
        "--from",
        from,
        "--to",
        to,
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", stderr(&export));
    let imported = scratch.path().join("incident");
    let import = taskscope(&[
        "import",
        archive.to_str().unwrap(),
        "--dir",
        imported.to_str().unwrap(),
    ]);
    assert!(import.status.success(), "{}", stderr(&import));
    let report = report_ok(&[
        "report",
        "--dir",
        imported.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        report["from"].as_str(),
        Some(format!("{from}.000000").as_str()),
        "{report}"
    );
    assert_eq!(
        report["to"].as_str(),
        Some(format!("{to}.000000").as_str()),
        "{report}"
    );
    assert_eq!(
        report["avg_active_total"], active["avg_active_total"],
        "{report}"
    );
    drop(workload);
}
