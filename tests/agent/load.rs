//! Load and fault behaviour: a thread table too small for the threads,
//! thread and process churn, overload at 1000 Hz. Workloads come from
//! `tests/workload/load.c`; the agent's own `ticks` table is the witness.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let agent = spawn_agent(&[
        "run",
        "--all",
        "-F",
        "10",
        "--max-threads",
        "64",
        "--pid",
        &pid,
        "--duration",
        "12",
        "--no-pin",
        "--output-dir",
        out.to_str().expect("utf-8 path"),
    ]);
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
        row[key].as_f64().unwrap_or_else(|| panic!("{key} in {row:?}"))
    };
    let row = &full[0];
    assert!(number(row, "n") >= 20.0, "too few ticks before release: {row:?}");
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
