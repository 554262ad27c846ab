//! CPython frames spliced into user stacks: real pyenv interpreters 3.11,
//! 3.12, 3.13 (and Debian's static python3.11) run one thread per state —
//! spinning, sleeping, blocked on a `threading.Lock`, reading a pipe —
//! and every thread's rows show its Python function, marked `python`, in
//! place of the eval loop, with the right state and syscall: off CPU from
//! the frames read after the fact, on CPU from the chain the on-CPU
//! sample read in BPF. Each frame names the line executing: the blocking
//! call's line in the blocked functions, the loop's lines in the spinner,
//! the call's line in their callers (lines found in the script's text). A
//! Python process that exits while sampled costs no error storm and no
//! wrong name.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst')";
const STACKS: &str = "read_csv('stacks/*/*/*.csv.zst')";

/// The interpreters of the machine image.
const PYTHONS: [&str; 4] = [
    "/root/.pyenv/versions/3.11.7/bin/python3.11",
    "/root/.pyenv/versions/3.12.1/bin/python3.12",
    "/root/.pyenv/versions/3.13.0/bin/python3.13",
    "/usr/bin/python3.11",
];

const PROGRAM: &str = r#"
import os, sys, threading, time
def py_spin():
    x = 0
    while True:
        x += 1
def py_sleep():
    time.sleep(3600)
lock = threading.Lock()
lock.acquire()
def py_wait_lock():
    lock.acquire()
r, w = os.pipe()
out = threading.Lock()
def py_read_pipe():
    os.read(r, 1)
def run(f):
    with out:
        sys.stdout.write(f"{f.__name__} {threading.get_native_id()}\n")
        sys.stdout.flush()
    f()
for f in (py_spin, py_sleep, py_wait_lock, py_read_pipe):
    threading.Thread(target=run, args=(f,), daemon=True).start()
time.sleep(3600)
"#;

/// Sleeps in `py_short` for a second, then exits.
const SHORT: &str = r#"
import time
def py_short():
    time.sleep(1)
py_short()
"#;

/// The line number (1-based, as Python counts) of the first line of
/// `script` after the line starting with `after` that contains `needle`.
fn line_of(script: &str, after: &str, needle: &str) -> usize {
    let lines: Vec<&str> = script.lines().collect();
    let from = lines
        .iter()
        .position(|l| l.starts_with(after))
        .unwrap_or_else(|| panic!("no {after:?} in the script"));
    from + 1
        + lines[from + 1..]
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} after {after:?}"))
        + 1
}

/// A Python program, killed when dropped; its threads' ids by function.
struct Program {
    child: Child,
    tids: Vec<(String, u32)>,
}

impl Program {
    fn start(python: &str, script: &Path) -> Program {
        let mut child = Command::new(python)
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {python}: {err}"));
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let tids = (0..4)
            .map(|_| {
                let line = lines.next().expect("a thread's line").unwrap();
                let (name, tid) = line.split_once(' ').unwrap();
                (name.to_string(), tid.parse().unwrap())
            })
            .collect();
        Program { child, tids }
    }

    fn tid(&self, name: &str) -> u32 {
        self.tids
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no thread {name} in {:?}", self.tids))
            .1
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// For thread `tid`'s rows with a user stack: how many, the share whose
/// stack has a `python` frame `function [...]`, the share of those in
/// `state` and syscall `syscall`, and the share of those whose frame is
/// `function [prog.py:line]` and whose caller `run`'s is
/// `run [prog.py:run_line]`.
fn python_share(
    dir: &Path,
    tid: u32,
    function: &str,
    (state, syscall): (&str, &str),
    (line, run_line): (usize, usize),
) -> (f64, f64, f64, f64) {
    let rows = query(
        dir,
        &format!(
            "WITH t AS (SELECT DISTINCT stack_id, \
                          list_zip(string_split(frames, ';'), string_split(frame_kinds, ';')) AS f \
                        FROM {STACKS}), \
                  s AS (SELECT s.state, s.syscall, \
                          len(list_filter(t.f, lambda x: x[1] LIKE '{function} [%' AND x[2] = 'python')) > 0 AS named, \
                          len(list_filter(t.f, lambda x: x[1] = '{function} [prog.py:{line}]' AND x[2] = 'python')) > 0 \
                          AND len(list_filter(t.f, lambda x: x[1] = 'run [prog.py:{run_line}]' AND x[2] = 'python')) > 0 AS at_line \
                        FROM {SAMPLES} s JOIN t ON t.stack_id = s.ustack_id WHERE s.tid = {tid}) \
             SELECT count(*) AS n, count(*) FILTER (named) AS named, \
                    count(*) FILTER (named AND state = '{state}' AND syscall = '{syscall}') AS right, \
                    count(*) FILTER (named AND at_line) AS at_line FROM s"
        ),
    );
    let get = |key: &str| rows[0][key].as_f64().unwrap_or(0.0);
    let (n, named) = (get("n"), get("named"));
    (
        n,
        named / n.max(1.0),
        get("right") / named.max(1.0),
        get("at_line") / named.max(1.0),
    )
}

/// Some of thread `tid`'s user stacks, for failure messages.
fn some_frames(dir: &Path, tid: u32) -> String {
    let rows = query(
        dir,
        &format!(
            "SELECT s.state, s.syscall, t.frames, t.frame_kinds, count(*) AS n FROM {SAMPLES} s \
             JOIN (SELECT DISTINCT stack_id, frames, frame_kinds FROM {STACKS}) t ON t.stack_id = s.ustack_id \
             WHERE s.tid = {tid} GROUP BY ALL ORDER BY n DESC LIMIT 3"
        ),
    );
    format!("{rows:#?}")
}

/// Thread `tid`'s user stacks with Python frames, for failure messages.
fn some_python_frames(dir: &Path, tid: u32) -> String {
    let rows = query(
        dir,
        &format!(
            "SELECT s.state, s.syscall, t.frames, count(*) AS n FROM {SAMPLES} s \
             JOIN (SELECT DISTINCT stack_id, frames, frame_kinds FROM {STACKS}) t ON t.stack_id = s.ustack_id \
             WHERE s.tid = {tid} AND t.frame_kinds LIKE '%python%' GROUP BY ALL ORDER BY n DESC LIMIT 5"
        ),
    );
    format!("{rows:#?}")
}

#[test]
fn python_functions_replace_the_eval_loop_on_and_off_cpu() {
    require_root();
    for python in PYTHONS {
        assert!(
            Path::new(python).is_file(),
            "{python} is missing: it is part of the machine image (pyenv; Debian's python3.11)"
        );
    }
    let _serial = exclusive();
    let scratch = scratch();
    let script = scratch.path().join("prog.py");
    std::fs::write(&script, PROGRAM).unwrap();
    let short = scratch.path().join("short.py");
    std::fs::write(&short, SHORT).unwrap();
    let programs: Vec<Program> = PYTHONS.iter().map(|p| Program::start(p, &script)).collect();

    let out = scratch.path().join("out");
    let agent = AgentRun::new()
        .args(["--all", "-F", "20"])
        .duration(8)
        .output(&out)
        .spawn();
    // A Python process that exits while sampled.
    wait_for_first_tick(&out, Duration::from_secs(20));
    let mut exiting = Command::new(PYTHONS[2])
        .arg(&short)
        .spawn()
        .expect("start the short Python program");
    let exiting_pid = exiting.id();
    exiting.wait().expect("the short Python program");
    let agent = wait_with_limit(agent, Duration::from_secs(60));
    assert_success(&agent);
    let log = String::from_utf8_lossy(&agent.stderr);

    // The lines executing: the blocking calls, the spinner's loop, and
    // `run`'s call of each function.
    let run_line = line_of(PROGRAM, "def run(", "    f()");
    let spin_lines = [
        line_of(PROGRAM, "def py_spin", "while True"),
        line_of(PROGRAM, "def py_spin", "x += 1"),
    ];
    for (python, program) in PYTHONS.iter().zip(&programs) {
        for (function, state, syscall, call) in [
            ("py_sleep", "SLEEP", "clock_nanosleep", "time.sleep("),
            ("py_wait_lock", "SLEEP", "futex", "lock.acquire()"),
            ("py_read_pipe", "SLEEP", "read", "os.read("),
        ] {
            let tid = program.tid(function);
            let line = line_of(PROGRAM, &format!("def {function}"), call);
            let (n, named, right, at_line) =
                python_share(&out, tid, function, (state, syscall), (line, run_line));
            eprintln!("{python} {function}: {n} rows with a user stack, {named:.3} name it, {right:.3} of those {state} in {syscall}, {at_line:.3} at line {line} (run at {run_line})");
            assert!(n >= 20.0, "{python} {function}: {n} rows with a user stack");
            assert!(
                named >= 0.9,
                "{python} {function}: named in {named:.3} of user stacks: {}",
                some_frames(&out, tid)
            );
            assert!(
                right >= 0.99,
                "{python} {function}: {right:.3} {state} in {syscall}"
            );
            assert!(
                at_line >= 0.9,
                "{python} {function}: {at_line:.3} at line {line}: {}",
                some_python_frames(&out, tid)
            );
        }
        // The spinner: its on-CPU captures name it too, from the frame
        // chain the on-CPU sample read in BPF at the capture. Counted
        // after the first 2 s: a thread's chain is read from the samples
        // after the writer first saw it on CPU, and on this loaded VM a
        // preempted spinner's rows keep its first capture for up to a
        // second or two.
        let tid = program.tid("py_spin");
        let rows = query(
            &out,
            &format!(
                "WITH t AS (SELECT DISTINCT stack_id, frames, frame_kinds FROM {STACKS}), \
                      s AS (SELECT s.state, \
                              len(list_filter(list_zip(string_split(t.frames, ';'), string_split(t.frame_kinds, ';')), \
                                  lambda x: x[1] LIKE 'py_spin [%' AND x[2] = 'python')) > 0 AS named, \
                              len(list_filter(list_zip(string_split(t.frames, ';'), string_split(t.frame_kinds, ';')), \
                                  lambda x: x[1] IN ('py_spin [prog.py:{}]', 'py_spin [prog.py:{}]') AND x[2] = 'python')) > 0 \
                              AND t.frames LIKE '%;run [prog.py:{run_line}];%' AS at_line, \
                              t.frame_kinds LIKE '%python%' AND t.frames NOT LIKE '%;run [prog.py:%' AS elsewhere, \
                              s.ts >= (SELECT min(ts) FROM {SAMPLES}) + INTERVAL 2 SECOND AS steady \
                            FROM {SAMPLES} s JOIN t ON t.stack_id = s.ustack_id WHERE s.tid = {tid}) \
                 SELECT count(*) AS n, \
                        count(*) FILTER (named) AS named, \
                        count(*) FILTER (steady) AS steady, \
                        count(*) FILTER (steady AND named) AS steady_named, \
                        count(*) FILTER (steady AND state = 'ON_CPU') AS on_cpu, \
                        count(*) FILTER (steady AND state = 'ON_CPU' AND named) AS on_cpu_named, \
                        count(*) FILTER (steady AND state = 'ON_CPU' AND named AND at_line) AS on_cpu_at_line, \
                        count(*) FILTER (named AND state NOT IN ('ON_CPU', 'RUNQUEUE')) AS named_waiting, \
                        count(*) FILTER (elsewhere) AS elsewhere FROM s",
                spin_lines[0], spin_lines[1]
            ),
        );
        let get = |key: &str| rows[0][key].as_f64().unwrap_or(0.0);
        eprintln!("{python} py_spin: {rows:?}");
        let spin = some_python_frames(&out, tid);
        assert!(get("on_cpu") >= 10.0, "{python} py_spin: {rows:?}");
        assert!(
            get("on_cpu_named") / get("on_cpu") >= 0.9,
            "{python} py_spin: ON_CPU rows named {rows:?}: {}",
            some_frames(&out, tid)
        );
        // At a line of its loop, called from `run`'s line.
        assert!(
            get("on_cpu_at_line") / get("on_cpu_named") >= 0.9,
            "{python} py_spin: ON_CPU rows at lines {spin_lines:?} {rows:?}: {spin}"
        );
        // Preempted (RUNQUEUE) rows take the capture of the run they were
        // preempted from: named the same way.
        assert!(
            get("steady_named") / get("steady") >= 0.9,
            "{python} py_spin: {rows:?}: {}",
            some_frames(&out, tid)
        );
        assert!(
            get("named") / get("n") >= 0.5,
            "{python} py_spin: including the first seconds {rows:?}"
        );
        // Only its few waits (for the GIL, at start) are off CPU.
        assert!(
            get("named_waiting") / get("named") <= 0.1,
            "{python} py_spin: {rows:?}"
        );
        assert_eq!(get("elsewhere"), 0.0, "{python} py_spin: {spin}");
    }

    // Every Python frame written is one of the program's functions, the
    // threading module's or the interpreter's start-up (importlib's frozen
    // modules, sampled while a thread imports): never garbage.
    let frames = query(
        &out,
        &format!(
            "SELECT DISTINCT regexp_extract(x[1], '^([^ ]+) \\[', 1) AS name, \
                    regexp_extract(x[1], '\\[(.*):[0-9]+\\]$', 1) AS file FROM \
               (SELECT unnest(list_zip(string_split(frames, ';'), string_split(frame_kinds, ';'))) AS x FROM {STACKS}) \
             WHERE x[2] = 'python' ORDER BY name"
        ),
    );
    let frames: Vec<(&str, &str)> = frames
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or(""),
                r["file"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let names: Vec<&str> = frames.iter().map(|(name, _)| *name).collect();
    let identifier = |name: &str| {
        !name.is_empty()
            && name.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
            })
    };
    for (name, file) in &frames {
        let known = match *file {
            "prog.py" | "short.py" => name.starts_with("py_") || ["run", "<module>"].contains(name),
            f if f.ends_with("threading.py") => identifier(name),
            f if f.starts_with("<frozen ") => identifier(name),
            _ => false,
        };
        assert!(
            known,
            "unexpected Python frame {name:?} in {file:?}: {frames:?}"
        );
    }
    for want in [
        "py_sleep",
        "py_wait_lock",
        "py_read_pipe",
        "run",
        "Thread.run",
        "<module>",
    ] {
        assert!(names.contains(&want), "{want} not among {names:?}");
    }

    // The same stacks through zstdcat and awk: the ids of stacks with a
    // `py_sleep [prog.py:N]` frame, N the line of its `time.sleep`.
    let line = line_of(PROGRAM, "def py_sleep", "time.sleep(");
    let awk = shell(
        &out,
        &format!(
            "zstdcat stacks/*/*/*.csv.zst | awk -F, '$1 != \"stack_id\" && /;py_sleep \\[prog.py:{line}\\];/ {{ print $1 }}' | sort -u | wc -l"
        ),
    );
    let duck = query_number(
        &out,
        &format!(
            "SELECT count(DISTINCT stack_id) FROM {STACKS} WHERE frames LIKE '%;py_sleep [prog.py:{line}];%'"
        ),
    );
    let awk: f64 = awk.trim().parse().unwrap();
    assert!(
        awk >= PYTHONS.len() as f64,
        "awk found {awk} py_sleep stacks"
    );
    assert_eq!(awk, duck, "awk and DuckDB disagree");

    // The flame graph draws only Python frames with --kind python, marked
    // _[p].
    let folded = taskscope(&[
        "flamegraph",
        "--dir",
        out.to_str().unwrap(),
        "--all-states",
        "--kind",
        "python",
        "--folded",
    ]);
    assert!(folded.status.success(), "{folded:?}");
    let folded = String::from_utf8_lossy(&folded.stdout);
    for want in ["py_sleep_[p]", "py_wait_lock_[p]", "py_read_pipe_[p]"] {
        assert!(folded.contains(want), "{want} not in {folded}");
    }
    for line in folded.lines() {
        let stack = line.rsplit_once(' ').unwrap().0;
        assert!(
            stack
                .split(';')
                .skip(2)
                .all(|f| f.ends_with("_[p]") || f == "[no stack]"),
            "{line}"
        );
    }

    // The process that exited: nothing logged about it, no error, and no
    // other function than its own in its stacks.
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("ERROR") || (l.contains("WARN") && l.contains(&exiting_pid.to_string()))
        })
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    let names = query(
        &out,
        &format!(
            "SELECT DISTINCT t.frames FROM {SAMPLES} s JOIN {STACKS} t ON t.stack_id = s.ustack_id \
             WHERE s.tgid = {exiting_pid} AND t.frame_kinds LIKE '%python%'"
        ),
    );
    // Sleeping (or, on CPU, at its first line), called from line 5.
    let sleep = line_of(SHORT, "def py_short", "time.sleep(");
    let call = line_of(SHORT, "def py_short", "py_short()");
    for row in &names {
        let frames = row["frames"].as_str().unwrap();
        assert!(
            [sleep, sleep - 1]
                .iter()
                .any(|line| frames.contains(&format!(
                    ";py_short [short.py:{line}];<module> [short.py:{call}];"
                ))),
            "{frames}"
        );
    }
}
