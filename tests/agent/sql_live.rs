//! `taskscope sql --live` against a real agent over the ground-truth
//! workload: the spinners runnable and the sleeper in clock_nanosleep in
//! every answer of a 3-answer JSON run, GROUP BY ALL over the newest read
//! (active threads only by default), a sliding window that holds several
//! reads and the named queries' averages over it, SIGTERM ending a
//! stream with exit 0, bad SQL (exit 2 with its position, before any
//! read), another user (not permitted) and no agent (one line, exit 1).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::top::{line_with, PinsRemoved, Tmux};

fn live(pin_dir: &Path, args: &[&str], query: &str) -> Output {
    let mut all = vec!["sql", "--live", "--pin-dir", pin_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(query);
    taskscope(&all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The answers of a `--format json` run: one object per line.
fn answers(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect()
}

fn rows(answer: &Value) -> &Vec<Value> {
    answer["rows"].as_array().expect("rows is an array")
}

/// The rows of `answer` whose comm is `comm`.
fn of_comm<'a>(answer: &'a Value, comm: &str) -> Vec<&'a Value> {
    rows(answer).iter().filter(|r| r["comm"] == comm).collect()
}

#[test]
fn sql_live_over_the_ground_truth() {
    require_root();
    let _serial = exclusive();
    let mut workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let pin_dir =
        Path::new("/sys/fs/bpf").join(format!("taskscope-sqltest-{}", std::process::id()));
    let _pins = PinsRemoved(pin_dir.clone());
    let agent = AgentRun::new()
        .args(["-F", "10"])
        .pin_dir(&pin_dir)
        .output(&out)
        .duration(60)
        .limit(Duration::from_secs(90))
        .spawn();
    wait_for_first_tick(&out, Duration::from_secs(20));
    let pid = workload.pid();
    let spinners: Vec<String> = (0..workload.spinners().len())
        .map(|i| format!("gt-spin{i}"))
        .collect();

    // Three answers, one a second, within 3 s of start (and the binary's
    // start): each with every spinner on a CPU or queued for one, the
    // sleeper (with --all: sleepers too) in clock_nanosleep.
    let started = Instant::now();
    // Stacks come from the agent's pinned captures, resolved as the
    // writer resolves them: `kfunc` and the stack ids on the rows, their
    // definitions in `stacks`.
    let query = format!(
        "SELECT s.comm, s.state, s.syscall, s.kfunc, u.frames AS uframes \
         FROM samples s LEFT JOIN stacks u ON u.stack_id = s.ustack_id WHERE s.tgid = {pid}"
    );
    let run = live(
        &pin_dir,
        &["--count", "3", "--format", "json", "--all"],
        &query,
    );
    let took = started.elapsed();
    assert!(run.status.success(), "{}", stderr(&run));
    let got = answers(&run);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        took <= Duration::from_secs(3) + Duration::from_millis(500),
        "took {took:?}"
    );
    let mut sleeper_seen = 0;
    let mut sleeper_stacks = 0;
    let mut spinner_stacks = 0;
    for answer in &got {
        assert_eq!(answer["reads"], 1, "{answer}");
        assert!(
            answer["ts"].as_str().is_some_and(|t| t.len() == 26),
            "{answer}"
        );
        for spin in &spinners {
            let rows = of_comm(answer, spin);
            assert!(
                rows.len() == 1
                    && ["ON_CPU", "RUNQUEUE"].contains(&rows[0]["state"].as_str().unwrap_or("")),
                "{spin} is not runnable in {answer}"
            );
        }
        if of_comm(answer, "gt-sleeper")
            .iter()
            .any(|r| r["state"] == "SLEEP" && r["syscall"] == "clock_nanosleep")
        {
            sleeper_seen += 1;
        }
        let frames = |r: &&Value| r["uframes"].as_str().unwrap_or("").to_string();
        if of_comm(answer, "gt-sleeper")
            .iter()
            .any(|r| r["kfunc"] == "hrtimer_nanosleep" && frames(r).contains("sleep_forever"))
        {
            sleeper_stacks += 1;
        }
        spinner_stacks += spinners
            .iter()
            .flat_map(|spin| of_comm(answer, spin))
            .filter(|r| frames(r).contains("spin_forever"))
            .count();
    }
    // The sleeper wakes every 200 ms for a few microseconds.
    assert!(sleeper_seen >= 2, "the sleeper in clock_nanosleep: {got:?}");
    assert!(
        sleeper_stacks >= 2,
        "the sleeper's kfunc and user stack: {got:?}"
    );
    assert!(
        spinner_stacks >= spinners.len(),
        "spinners' user stacks: {spinner_stacks} rows with spin_forever in {got:?}"
    );

    // The shipped top_stacks works live: the window's stacks are in
    // `stacks`, once each, and the spinners' user stack leads.
    let run = live(
        &pin_dir,
        &["--count", "1", "--format", "json", "--window", "3s"],
        "SELECT frames, avg_threads FROM top_stacks('user') LIMIT 1",
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let got = answers(&run);
    let top = &rows(&got[0]);
    assert!(
        top.len() == 1
            && top[0]["frames"]
                .as_str()
                .is_some_and(|f| f.starts_with("spin_forever")),
        "top_stacks('user') live: {got:?}"
    );
    let run = live(
        &pin_dir,
        &["--count", "1", "--format", "csv", "--window", "3s"],
        "SELECT count(*) - count(DISTINCT stack_id) AS repeated FROM stacks",
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with(",0")),
        "a stack defined twice: {}",
        String::from_utf8_lossy(&run.stdout)
    );

    // GROUP BY ALL over the newest read; without --all active threads
    // only (as the agent writes): no sleeper.
    let run = live(
        &pin_dir,
        &["--count", "1", "--format", "csv"],
        &format!("SELECT state, count(*) AS n FROM samples WHERE tgid = {pid} GROUP BY ALL ORDER BY state"),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let csv = String::from_utf8_lossy(&run.stdout).into_owned();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("read_ts,state,n"), "{csv}");
    let mut runnable = 0;
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 3, "{csv}");
        assert!(
            !["SLEEP", "IDLE"].contains(&fields[1]),
            "a sleeper without --all: {csv}"
        );
        if ["ON_CPU", "RUNQUEUE"].contains(&fields[1]) {
            runnable += fields[2].parse::<usize>().expect("a count");
        }
    }
    assert!(runnable >= spinners.len(), "{csv}");

    // A table when stdout is not a terminal: each answer once, after a
    // line with its time.
    let run = live(
        &pin_dir,
        &["--count", "2", "--interval", "200ms"],
        "SELECT state, count(*) AS n FROM samples GROUP BY ALL",
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("-- ")).collect();
    assert_eq!(heads.len(), 2, "{text}");
    assert!(
        heads
            .iter()
            .all(|h| h.ends_with("row(s)") && h.contains(" UTC: ")),
        "{text}"
    );
    assert!(text.contains("| state"), "{text}");

    // A window of 5 reads (1 s at 200 ms): the rows of several reads, and
    // the named queries average over them (each spinner: one thread).
    let run = live(
        &pin_dir,
        &[
            "--interval",
            "200ms",
            "--window",
            "1s",
            "--count",
            "7",
            "--format",
            "json",
        ],
        &format!(
            "SELECT count(*) AS n, count(DISTINCT ts) AS reads, \
                    (SELECT sum(avg_threads) FROM top_activity() WHERE comm = 'gt-spin0') AS spin0 \
             FROM samples WHERE tgid = {pid}"
        ),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let got = answers(&run);
    assert_eq!(got.len(), 7);
    let reads: Vec<i64> = got.iter().map(|a| a["reads"].as_i64().unwrap()).collect();
    assert_eq!(reads, [1, 2, 3, 4, 5, 5, 5]);
    let first = &rows(&got[0])[0];
    let last = &rows(&got[6])[0];
    assert_eq!(last["reads"], 5, "{last}");
    let n = |row: &Value| row["n"].as_i64().unwrap();
    assert!(
        n(last) > n(first) && n(last) >= 5 * spinners.len() as i64,
        "a window's rows: first {first}, last {last}"
    );
    let spin0 = last["spin0"].as_f64().unwrap_or(0.0);
    assert!((spin0 - 1.0).abs() <= 0.01, "gt-spin0's average: {last}");

    // SIGTERM ends a stream with exit 0 after whole answers.
    let mut child = Command::new(AGENT)
        .args([
            "sql",
            "--live",
            "--pin-dir",
            pin_dir.to_str().unwrap(),
            "--format",
            "json",
            "SELECT count(*) AS n FROM samples",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sql --live");
    std::thread::sleep(Duration::from_millis(2500));
    send_signal(&child, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "sql --live outlived SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stream = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0), "{}", stderr(&stream));
    let got = answers(&stream);
    assert!(got.len() >= 2, "answers before SIGTERM: {got:?}");

    // Bad SQL: one line with its position, exit 2.
    let run = live(&pin_dir, &[], "SELECT state, nope FROM samples");
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    let err = stderr(&run);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("line 1, column 15") && err.contains("nope"),
        "{err}"
    );
    let run = live(&pin_dir, &[], "SELECT state FROM samples GROUP state");
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("SQL syntax error at line 1, column 27"),
        "{}",
        stderr(&run)
    );

    // Another user may not open the pins (mode 0600): one line, exit 1.
    let run = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            AGENT,
            "sql",
            "--live",
            "--count",
            "1",
        ])
        .arg("--pin-dir")
        .arg(&pin_dir)
        .arg("SELECT count(*) FROM samples")
        .output()
        .expect("setpriv");
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(
        err.contains("not permitted to read the live thread table"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // On a terminal: redrawn in place under one header line, the cursor
    // hidden meanwhile; Ctrl-C exits 0 and shows it again.
    let tmux = Tmux::start("sqllive", 120, 40);
    tmux.line(&format!(
        "{AGENT} sql --live --pin-dir {} --all \"{query} ORDER BY comm\"; echo SQL-EXIT=$?",
        pin_dir.display()
    ));
    let screen = tmux.wait_for(
        |s| {
            line_with(s, &["gt-sleeper", "SLEEP", "clock_nanosleep"]).is_some()
                && line_with(s, &["gt-spin0"]).is_some()
        },
        Duration::from_secs(5),
    );
    assert!(
        screen
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("taskscope sql --live")),
        "{screen}"
    );
    assert_eq!(
        tmux.display("#{cursor_flag}"),
        "0",
        "cursor shown while drawing"
    );
    std::thread::sleep(Duration::from_millis(2200));
    let screen = tmux.capture();
    assert_eq!(
        screen.matches("taskscope sql --live").count(),
        1,
        "not redrawn in place:\n{screen}"
    );
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for(
        |s| s.lines().any(|l| l.trim().ends_with("SQL-EXIT=0")) && s.trim_end().ends_with("ready$"),
        Duration::from_secs(5),
    );
    assert!(
        screen.contains("gt-sleeper"),
        "the last answer stays: {screen}"
    );
    assert_eq!(tmux.display("#{cursor_flag}"), "1", "cursor left hidden");
    drop(tmux);

    // The agent was not disturbed: it ends as usual and removes its pins.
    send_signal(&agent, nix::sys::signal::Signal::SIGTERM);
    assert_success(&wait_with_limit(agent, Duration::from_secs(20)));
    workload.stop();
    assert!(!pin_dir.join("threads").exists(), "pins left behind");
}

/// No agent: one line naming the cause and what to do, exit 1; bad SQL is
/// found first (exit 2) without an agent.
#[test]
fn sql_live_without_an_agent_says_so() {
    let pin_dir = Path::new("/sys/fs/bpf/taskscope-no-such-agent");
    let run = live(pin_dir, &["--count", "1"], "SELECT count(*) FROM samples");
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let err = stderr(&run);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no live thread table") && err.contains("taskscope run"),
        "{err}"
    );
    assert!(run.stdout.is_empty());
    let run = live(pin_dir, &[], "SELECT nope FROM samples");
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    // Flags of the files make no sense live.
    let run = live(pin_dir, &["--since", "1h"], "SELECT 1");
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("cannot be used with"),
        "{}",
        stderr(&run)
    );
}
