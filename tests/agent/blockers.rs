//! Wakers and blockers (issue 13) against a workload whose threads wait
//! for one another in known ways (tests/workload/blockers.c): one agent
//! run, several checks, DuckDB and `taskscope sql` on the files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The blockers workload, compiled once per test run.
fn blockers_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| compile_workload("blockers"))
}

/// The running workload (killed on drop) and its tids by role.
struct Blockers {
    child: Child,
    tids: Value,
}

impl Blockers {
    fn start() -> Blockers {
        let (child, tids) = spawn_workload(Command::new(blockers_binary()).stdin(Stdio::piped()));
        Blockers { child, tids }
    }

    fn tid(&self, role: &str) -> i64 {
        self.tids[role]
            .as_i64()
            .unwrap_or_else(|| panic!("no {role}"))
    }

    /// Let bk-kwaiter start its kernel lock wait.
    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"g\n").expect("tell the workload to go");
        stdin.flush().expect("flush");
    }
}

impl Drop for Blockers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst', union_by_name = true)";

/// Share of `tid`'s rows matching `predicate` among those matching `among`,
/// and how many those are.
fn share_of(dir: &Path, tid: i64, among: &str, predicate: &str) -> (f64, f64) {
    let rows = query(
        dir,
        &format!(
            "SELECT avg(CASE WHEN {predicate} THEN 1.0 ELSE 0.0 END) AS share, count(*) AS n \
             FROM {SAMPLES} WHERE tid = {tid} AND {among}"
        ),
    );
    let row = &rows[0];
    (
        row["share"].as_f64().unwrap_or(0.0),
        row["n"].as_f64().unwrap_or(0.0),
    )
}

#[test]
fn wakers_and_blockers() {
    require_root();
    let _serial = exclusive();
    let mut workload = Blockers::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let pid = workload.tid("pid").to_string();
    let agent = AgentRun::new()
        .args(["--all", "-F", "100", "--pid", &pid])
        .output(&out)
        .duration(6)
        .spawn();
    wait_for_first_tick(&out, Duration::from_secs(20));
    workload.go();
    let status = wait_with_limit(agent, Duration::from_secs(40));
    assert_success(&status);
    let log = String::from_utf8_lossy(&status.stderr);
    let (holder, kholder) = (workload.tid("holder"), workload.tid("kholder"));
    drop(workload);

    // Three threads wait in pthread_mutex_lock for bk-holder.
    for waiter in ["mwait0", "mwait1", "mwait2"] {
        let (share, n) = share_of(
            &out,
            workload_tid(&out, waiter),
            "true",
            &format!("blocker_tid = {holder} AND blocker_kind = 'pthread_mutex'"),
        );
        assert!(
            n >= 200.0 && share >= 0.9,
            "{waiter}: blocker is bk-holder on {share} of {n} rows\n{log}"
        );
    }
    // A condition variable has no owner.
    let cv = workload_tid(&out, "cvwait");
    let (share, n) = share_of(
        &out,
        cv,
        "true",
        "blocker_tid IS NULL AND blocker_kind IS NULL",
    );
    assert!(
        n >= 200.0 && share == 1.0,
        "cvwait: no blocker on {share} of {n} rows"
    );
    // A kernel mutex (the pipe's, held by a thread stuck in a page fault).
    let kw = workload_tid(&out, "kwaiter");
    let (share, n) = share_of(
        &out,
        kw,
        "state = 'UNINTERRUPTIBLE'",
        &format!("wait_class = 'LOCK' AND blocker_kind = 'mutex' AND blocker_tid = {kholder}"),
    );
    assert!(
        n >= 200.0 && share >= 0.9,
        "kwaiter: LOCK held by bk-kholder on {share} of {n} rows\n{log}"
    );
    // The pipe reader runs after bk-pwriter woke it, on the spot or
    // through the reader's CPU's wake list (csd_queue_cpu names the waker
    // then). A named waker must never be wrong.
    let reader = workload_tid(&out, "preader");
    let running = "state IN ('ON_CPU', 'RUNQUEUE')";
    let (share, n) = share_of(&out, reader, running, "waker_comm = 'bk-pwriter'");
    let (wrong, _) = share_of(
        &out,
        reader,
        running,
        "waker_comm IS NOT NULL AND waker_comm <> 'bk-pwriter'",
    );
    let seen = query(
        &out,
        &format!(
            "SELECT state, waker_comm, count(*) AS n FROM {SAMPLES} \
             WHERE tid = {reader} GROUP BY ALL ORDER BY n DESC"
        ),
    );
    eprintln!("preader: waker bk-pwriter on {share:.3} of {n} running rows, another on {wrong}");
    // At least 30 rows: how often the reader runs follows the load.
    assert!(
        n >= 30.0 && share >= 0.9 && wrong == 0.0,
        "preader: waker bk-pwriter on {share} of {n} rows, another on {wrong}: {seen:?}"
    );
    // `report --blockers` names bk-holder first, asleep in
    // clock_nanosleep while three threads wait for it.
    let dir = out.to_str().expect("utf-8 path");
    let report = taskscope(&[
        "report",
        "--dir",
        dir,
        "--since",
        "1h",
        "--blockers",
        "--format",
        "json",
    ]);
    assert_success(&report);
    let doc: Value = serde_json::from_slice(&report.stdout).expect("report JSON");
    let first = &doc["blockers"][0];
    assert_eq!(first["comm"], "bk-holder", "{doc:#}");
    assert_eq!(first["waiters"], 3, "{doc:#}");
    assert_eq!(first["doing"][0]["syscall"], "clock_nanosleep", "{doc:#}");
    assert!(
        first["doing"][0]["share"].as_f64().unwrap_or(0.0) >= 0.9,
        "{doc:#}"
    );
    let text = taskscope(&["report", "--dir", dir, "--since", "1h", "--blockers"]);
    assert_success(&text);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("1. bk-holder [tid ")
            && text.contains("bk-holder meanwhile: SLEEP (TIMER) in clock_nanosleep"),
        "{text}"
    );
    // ... and so does the shipped SQL.
    let sql = Command::new(duckdb())
        .arg("-init")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("share/taskscope.sql"))
        .env("TASKSCOPE_DIR", &out)
        .args(["-json", "-c", "FROM top_blockers() LIMIT 2"])
        .output()
        .expect("run duckdb");
    let rows: Value = serde_json::from_slice(&sql.stdout).unwrap_or_else(|e| {
        panic!(
            "top_blockers: {e}: {}",
            String::from_utf8_lossy(&sql.stderr)
        )
    });
    assert_eq!(rows[0]["blocker_comm"], "bk-holder", "{rows:#}");
    assert_eq!(rows[0]["waiters"], 3, "{rows:#}");
    assert_eq!(rows[0]["syscall"], "clock_nanosleep", "{rows:#}");
    assert_eq!(rows[1]["blocker_comm"], "bk-kholder", "{rows:#}");
    // `taskscope sql` gives DuckDB's rows, and they are not empty.
    crate::query::same_rows(&out, &out, "auto", &["SELECT * FROM top_blockers()"]);
    let ours = crate::query::rows(&out, "SELECT * FROM top_blockers() LIMIT 1");
    assert_eq!(ours[0]["blocker_comm"], "bk-holder", "{ours:?}");
    // `--by blocker` groups by blocker_tid.
    let by = taskscope(&[
        "report",
        "--dir",
        dir,
        "--since",
        "1h",
        "--all-states",
        "--by",
        "blocker",
        "--format",
        "csv",
    ]);
    assert_success(&by);
    let by = String::from_utf8_lossy(&by.stdout);
    assert!(
        by.lines()
            .next()
            .is_some_and(|h| h.starts_with("blocker_tid")),
        "{by}"
    );
    assert!(
        by.lines().any(|l| l.starts_with(&format!("{holder},"))),
        "{by}"
    );
    // A thread woken by its timer has no waker: bk-timed runs 30 ms after
    // each 100 ms clock_nanosleep, so ticks catch it on a CPU (or waiting
    // for one) after its timer woke it, about a quarter of the time.
    let timed = workload_tid(&out, "timed");
    let (share, running) = share_of(
        &out,
        timed,
        "state IN ('ON_CPU', 'RUNQUEUE')",
        "waker_tid IS NULL",
    );
    let wakers = query(
        &out,
        &format!(
            "SELECT coalesce(waker_comm, '') AS waker_comm, state, count(*) AS n FROM {SAMPLES} \
             WHERE tid = {timed} AND state IN ('ON_CPU', 'RUNQUEUE') GROUP BY ALL ORDER BY n DESC"
        ),
    );
    assert!(
        running >= 50.0,
        "bk-timed: only {running} rows on a CPU or waiting for one (expected ~140 at 100 Hz for 6 s): {wakers:?}"
    );
    assert!(
        share >= 0.9,
        "bk-timed, woken by its timer: no waker on {share:.3} of its {running} running rows; wakers: {wakers:?}"
    );
}

/// Wakeups handed over to the wakee's CPU (tests/workload/handover.c: a
/// pipe writer on CPU 0 wakes a reader asleep on an idle CPU 1, which the
/// kernel does through CPU 1's wake list, outside the writer's context)
/// name their waker: csd_queue_cpu notes it at the hand-over (Linux 6.6+).
/// Without that hook (`TS_NO_CSD=1` in the environment) about none do.
#[test]
fn handed_over_wakeups_name_the_waker() {
    require_root();
    let _serial = exclusive();
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    let binary = BINARY.get_or_init(|| compile_workload("handover"));
    let (mut child, tids) = spawn_workload(&mut Command::new(binary));
    let scratch = scratch();
    let out = scratch.path().join("out");
    let pid = tids["pid"].as_i64().expect("pid").to_string();
    let agent = AgentRun::new()
        .args(["--all", "-F", "100", "--pid", &pid])
        .output(&out)
        .duration(5)
        .spawn();
    let status = wait_with_limit(agent, Duration::from_secs(40));
    let _ = child.kill();
    let _ = child.wait();
    assert_success(&status);
    let log = String::from_utf8_lossy(&status.stderr);
    let (reader, writer) = (
        workload_tid(&out, "ho-reader"),
        workload_tid(&out, "ho-writer"),
    );
    assert_eq!(
        (reader, writer),
        (
            tids["reader"].as_i64().unwrap(),
            tids["writer"].as_i64().unwrap()
        )
    );
    // Rows after its first sleep: until a wakeup is seen there is no
    // waker to name (a reader slowed down by other work on its CPU may
    // find bytes waiting at first).
    let running = format!(
        "state IN ('ON_CPU', 'RUNQUEUE') AND ts > (SELECT min(ts) FROM {SAMPLES} \
         WHERE tid = {reader} AND state = 'SLEEP')"
    );
    let running = running.as_str();
    let (share, n) = share_of(
        &out,
        reader,
        running,
        &format!("waker_tid = {writer} AND waker_comm = 'ho-writer'"),
    );
    let (wrong, _) = share_of(
        &out,
        reader,
        running,
        &format!("waker_tid IS NOT NULL AND waker_tid <> {writer}"),
    );
    let seen = query(
        &out,
        &format!(
            "SELECT state, cpu, waker_comm, count(*) AS n FROM {SAMPLES} \
             WHERE tid = {reader} GROUP BY ALL ORDER BY n DESC"
        ),
    );
    // How many wakeups were handed over follows the load on CPU 1 (a
    // busy CPU is woken on the spot): said, not asserted.
    let handovers = ["handovers_noted", "handovers_taken", "handovers_stale"]
        .map(|key| format!("{key}={}", log_field(&log, "sampler finished", key)));
    eprintln!(
        "ho-reader: waker ho-writer on {share:.3} of {n} running rows, another on {wrong}; {}",
        handovers.join(" ")
    );
    // ~30% of 500 ticks: the reader spins 3 ms of every 10.
    assert!(
        n >= 50.0 && share >= 0.9 && wrong == 0.0,
        "ho-reader: waker ho-writer on {share} of {n} rows, another on {wrong}: {seen:?}\n{log}"
    );
}

/// A role's tid as the files name it (by thread name, so a mix-up of tids
/// shows): bk-`role`, or `role` itself when it has a dash.
fn workload_tid(dir: &Path, role: &str) -> i64 {
    let comm = if role.contains('-') {
        role.to_string()
    } else {
        format!("bk-{role}")
    };
    let rows = query(
        dir,
        &format!("SELECT DISTINCT tid FROM {SAMPLES} WHERE comm = '{comm}'"),
    );
    assert_eq!(rows.len(), 1, "{comm}: {rows:?}");
    rows[0]["tid"].as_i64().expect("tid")
}
