//! The agent's thread filters against the threads of a known workload:
//! by default only active threads are written (checked against their own
//! schedstat), and `--pid` keeps exactly that process's threads.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn default_filter_writes_only_active_threads() {
    require_root();
    let _serial = exclusive();
    // As sample_workload, but the sleeper's own schedule is measured while
    // the agent runs (see below).
    let mut workload = Workload::start();
    let _scratch = scratch();
    let out = _scratch.path().join("out");
    let agent = AgentRun::new()
        .args(["--frequency", "20"])
        .duration(3)
        .output(&out)
        .spawn();
    let active = active_fraction(
        workload.pid(),
        workload.tid("sleeper"),
        Duration::from_secs(3),
    );
    let status = wait_with_limit(agent, Duration::from_secs(30));
    workload.stop();
    assert_success(&status);
    let states = query(
        &out,
        "SELECT DISTINCT state FROM read_csv('samples/*/*/*.csv.zst') ORDER BY state",
    );
    for row in &states {
        let state = row["state"].as_str().unwrap();
        assert!(
            [
                "ON_CPU",
                "RUNQUEUE",
                "DISK",
                "UNINTERRUPTIBLE",
                "STOPPED",
                "TRACED"
            ]
            .contains(&state),
            "{state} written without --all"
        );
    }
    for name in ["piperead", "futex", "zombie"] {
        let rows = query_number(
            &out,
            &format!(
                "SELECT count(*) FROM read_csv('samples/*/*/*.csv.zst') WHERE tid = {}",
                workload.tid(name)
            ),
        );
        assert_eq!(rows, 0.0, "{name} is not active and must not be written");
    }
    // The sleeper wakes every 200 ms and then really is runnable for a moment
    // (longer on a busy machine, behind the spinners): a tick may catch it
    // there, but never asleep. How often it is runnable or running is the
    // kernel's own account (schedstat: time on a CPU and time waiting for
    // one), measured while the agent ran.
    let sleeper = query(
        &out,
        &format!(
            "SELECT state FROM read_csv('samples/*/*/*.csv.zst') WHERE tid = {}",
            workload.tid("sleeper")
        ),
    );
    let ticks = 60.0;
    assert!(
        sleeper.len() as f64 <= ticks * active * 2.0 + 4.0,
        "sleeper written in {} of ~{ticks} ticks, but it is active {:.1}% of the time",
        sleeper.len(),
        active * 100.0
    );
    for row in &sleeper {
        let state = row["state"].as_str().unwrap();
        assert!(
            ["ON_CPU", "RUNQUEUE"].contains(&state),
            "sleeper written as {state} without --all"
        );
    }
    for tid in workload
        .spinners()
        .iter()
        .chain([workload.tid("stopped")].iter())
    {
        let rows = query_number(
            &out,
            &format!("SELECT count(*) FROM read_csv('samples/*/*/*.csv.zst') WHERE tid = {tid}"),
        );
        assert!(
            rows >= 55.0,
            "active thread {tid} in only {rows} of ~60 ticks"
        );
    }
}

#[test]
fn pid_filter_tracks_only_that_process() {
    require_root();
    let _serial = exclusive();
    // --pid needs the workload's pid before the agent starts.
    let mut workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let pid = workload.pid().to_string();
    let status = AgentRun::new()
        .args(["--all", "--pid", &pid, "--frequency", "20"])
        .duration(2)
        .output(&out)
        .run();
    workload.stop();
    assert_success(&status);
    let tgids = query(
        &out,
        "SELECT DISTINCT tgid FROM read_csv('samples/*/*/*.csv.zst')",
    );
    assert_eq!(tgids.len(), 1, "rows from other processes: {tgids:?}");
    assert_eq!(tgids[0]["tgid"].as_i64(), Some(workload.pid() as i64));
    let threads = query_number(
        &out,
        "SELECT count(DISTINCT tid) FROM read_csv('samples/*/*/*.csv.zst')",
    );
    // main + spinners + sleeper, piperead, futex, fsync
    let expected = 1 + workload.spinners().len() + 4;
    assert_eq!(
        threads as usize, expected,
        "every thread of the process, and only those"
    );
}

/// The share of `period` that thread `tid` spends running or waiting for a
/// CPU, from /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU, then
/// waiting on a run queue).
fn active_fraction(pid: u32, tid: i64, period: Duration) -> f64 {
    let read = || -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
            .expect("read schedstat (CONFIG_SCHED_INFO)");
        text.split_whitespace()
            .take(2)
            .map(|v| v.parse::<u64>().expect("schedstat number"))
            .sum()
    };
    let before = (read(), Instant::now());
    std::thread::sleep(period);
    let busy = read() - before.0;
    busy as f64 / before.1.elapsed().as_nanos() as f64
}
