//! JIT frames: real runtimes that write perf maps (CPython 3.12 under
//! `-X perf`, Node under `--perf-basic-prof`, Debian's OpenJDK 17 through
//! `jcmd <pid> Compiler.perfmap`) get their busy function named and marked
//! `jit`; a perf map that is missing, someone else's or a symlink names
//! nothing, costs no error storm and breaks nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst')";
const STACKS: &str = "read_csv('stacks/*/*/*.csv.zst')";

/// The pyenv CPython 3.12 of the machine image (`-X perf` needs 3.12+).
const PYTHON_312: &str = "/root/.pyenv/versions/3.12.1/bin/python3.12";

const PYTHON_BUSY: &str = r#"
import sys, time
def py_busy_jit(n):
    x = 0
    for i in range(n):
        x += i * i
    return x
end = time.time() + float(sys.argv[1])
while time.time() < end:
    py_busy_jit(10000)
"#;

const NODE_BUSY: &str = r#"
function jsBusyJit(n) { let x = 0; for (let i = 0; i < n; i++) { x += Math.sqrt(i) * i; } return x; }
const end = Date.now() + Number(process.argv[2]) * 1000;
let t = 0;
while (Date.now() < end) { t += jsBusyJit(100000); }
"#;

/// A hot method C2 compiles on its own (not inlined into `main`: the
/// test's command line says `dontinline`), called in a loop for
/// `args[0]` seconds on the main thread.
const JAVA_BUSY: &str = r#"
public class Busy {
    static double javaBusyJit(int n) {
        double x = 0;
        for (int i = 0; i < n; i++) {
            x += Math.sqrt(i) * i;
        }
        return x;
    }

    public static void main(String[] args) {
        long end = System.nanoTime() + (long) (Double.parseDouble(args[0]) * 1e9);
        double t = 0;
        while (System.nanoTime() < end) {
            t += javaBusyJit(100000);
        }
        System.out.println(t);
    }
}
"#;

/// A child killed when dropped (a failing test leaves no spinner behind).
struct Runtime(Child);

impl Runtime {
    /// `program` with `args`, in `dir` (Node leaves `isolate-*.log` files
    /// in its working directory).
    fn start(program: &str, args: &[&str], dir: &Path) -> Runtime {
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {program}: {err}"));
        Runtime(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Its perf map, once it has `lines` lines.
    fn perf_map(&self, lines: usize) -> PathBuf {
        let path = PathBuf::from(format!("/tmp/perf-{}.map", self.pid()));
        let start = Instant::now();
        loop {
            let have = std::fs::read_to_string(&path).map_or(0, |t| t.lines().count());
            if have >= lines {
                return path;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} wrote no perf map ({have} lines)",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(format!("/tmp/perf-{}.map", self.0.id()));
    }
}

/// For process `pid`'s on-CPU rows: how many there are, the share with a
/// user stack, the share of those whose stack has a frame that starts with
/// `name` and is marked `jit`, and the number of frames marked `jit`.
fn jit_share(dir: &Path, pid: u32, name: &str) -> (f64, f64, f64, f64) {
    let rows = query(
        dir,
        &format!(
            "WITH s AS (SELECT * FROM {SAMPLES} WHERE tgid = {pid} AND state = 'ON_CPU'), \
                  t AS (SELECT DISTINCT stack_id, frames, frame_kinds FROM {STACKS}), \
                  j AS (SELECT s.ustack_id, \
                          list_zip(string_split(t.frames, ';'), string_split(t.frame_kinds, ';')) AS f \
                        FROM s JOIN t ON t.stack_id = s.ustack_id) \
             SELECT (SELECT count(*) FROM s) AS n, \
                    (SELECT count(ustack_id) FROM s) AS with_stack, \
                    (SELECT count(*) FROM j WHERE len(list_filter(f, lambda x: x[1] LIKE '{name}%' AND x[2] = 'jit')) > 0) AS named, \
                    (SELECT coalesce(sum(len(list_filter(f, lambda x: x[2] = 'jit'))), 0)::BIGINT FROM j) AS jit_frames"
        ),
    );
    // A number or a failure, never a silent 0 (a sum is a HUGEINT, which
    // `duckdb -json` writes as a string: the query casts it).
    let get = |key: &str| {
        rows[0][key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number: {rows:?}"))
    };
    let (n, with_stack) = (get("n"), get("with_stack"));
    assert!(n > 0.0, "process {pid} has no ON_CPU rows");
    (
        n,
        with_stack / n,
        if with_stack > 0.0 {
            get("named") / with_stack
        } else {
            0.0
        },
        get("jit_frames"),
    )
}

/// Some of the process's user frames, for failure messages.
fn some_frames(dir: &Path, pid: u32) -> String {
    let rows = query(
        dir,
        &format!(
            "SELECT t.frames, t.frame_kinds, count(*) AS n FROM {SAMPLES} s JOIN {STACKS} t ON t.stack_id = s.ustack_id \
             WHERE s.tgid = {pid} GROUP BY ALL ORDER BY n DESC LIMIT 3"
        ),
    );
    format!("{rows:#?}")
}

#[test]
fn jit_frames_are_named_from_perf_maps() {
    require_root();
    assert!(
        Path::new(PYTHON_312).is_file(),
        "{PYTHON_312} is missing: it is part of the machine image (pyenv), needed for `-X perf`"
    );
    let _serial = exclusive();
    let scratch = scratch();
    let script = scratch.path().join("busy.py");
    std::fs::write(&script, PYTHON_BUSY).unwrap();
    let node_script = scratch.path().join("busy.js");
    std::fs::write(&node_script, NODE_BUSY).unwrap();
    let script = script.to_str().unwrap();
    let python = |perf: bool| {
        let mut args = if perf { vec!["-X", "perf"] } else { vec![] };
        args.extend([script, "20"]);
        Runtime::start(PYTHON_312, &args, scratch.path())
    };
    let good = python(true);
    let node = Runtime::start(
        "node",
        &["--perf-basic-prof", node_script.to_str().unwrap(), "20"],
        scratch.path(),
    );
    // Maps that must not be used: replaced by a symlink to the real one,
    // handed to another user, deleted (the runtime still writes to it).
    let symlinked = python(true);
    let stranger = python(true);
    let missing = python(true);
    // A runtime names a function in its map once it has compiled it (V8)
    // or first called it (CPython's trampolines): sampling starts after
    // the busy function's warm-up, as it would on a service. (Without the
    // wait, a loaded machine once sampled CPython before its entry was
    // written: 0.889 of its stacks named.)
    for (map, name) in [
        (good.perf_map(20), "py_busy_jit"),
        (node.perf_map(20), "jsBusyJit"),
    ] {
        let warm = Instant::now();
        while !std::fs::read_to_string(&map).is_ok_and(|t| t.contains(name)) {
            assert!(
                warm.elapsed() < Duration::from_secs(10),
                "{name} never appeared in {}",
                map.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let map = symlinked.perf_map(20);
    let moved = scratch.path().join("moved.map");
    std::fs::copy(&map, &moved).unwrap();
    std::fs::remove_file(&map).unwrap();
    std::os::unix::fs::symlink(&moved, &map).unwrap();
    std::os::unix::fs::chown(stranger.perf_map(20), Some(65534), None).unwrap();
    std::fs::remove_file(missing.perf_map(20)).unwrap();

    let out = scratch.path().join("out");
    let agent = AgentRun::new()
        .args(["-F", "20"])
        .duration(8)
        .output(&out)
        .spawn();
    let agent = wait_with_limit(agent, Duration::from_secs(60));
    assert_success(&agent);
    let log = String::from_utf8_lossy(&agent.stderr);

    // Any function named from the map counts (the module's own loop,
    // between calls, is `py::<module>`: 10 of 54 rows once on a loaded
    // machine); the busy function itself is asserted below.
    for (runtime, name, what) in [
        (&good, "py::", "python3.12 -X perf"),
        (&node, "JS:", "node --perf-basic-prof"),
    ] {
        let (n, have, named, _) = jit_share(&out, runtime.pid(), name);
        eprintln!(
            "{what}: {n} ON_CPU rows, user stack on {have:.3}, {name} jit frame in {named:.3}"
        );
        assert!(have >= 0.9, "{what}: user stacks on {have:.3} of rows");
        assert!(
            named >= 0.9,
            "{what}: {named:.3} of user stacks have a jit frame {name}…: {}",
            some_frames(&out, runtime.pid())
        );
    }
    // Python: the busy function itself, by name, on most stacks.
    let (_, _, named, _) = jit_share(&out, good.pid(), "py::py_busy_jit");
    assert!(
        named >= 0.5,
        "python3.12 -X perf: py_busy_jit named in {named:.3} of stacks: {}",
        some_frames(&out, good.pid())
    );
    // Node: the busy function itself, by name.
    let (_, _, named, _) = jit_share(&out, node.pid(), "JS:*jsBusyJit");
    let (_, _, any_tier, _) = jit_share(&out, node.pid(), "JS:");
    assert!(
        named >= 0.5 || any_tier > 0.9 && some_frames(&out, node.pid()).contains("jsBusyJit"),
        "node: jsBusyJit named in {named:.3} of stacks: {}",
        some_frames(&out, node.pid())
    );

    // The flame graph draws only JIT frames with --kind jit, marked _[j].
    let folded = taskscope(&[
        "flamegraph",
        "--dir",
        out.to_str().unwrap(),
        "--kind",
        "jit",
        "--folded",
    ]);
    assert!(folded.status.success(), "{folded:?}");
    let folded = String::from_utf8_lossy(&folded.stdout);
    assert!(
        folded.contains("py::py_busy_jit:") && folded.contains("jsBusyJit"),
        "{folded}"
    );
    for line in folded.lines() {
        let stack = line.rsplit_once(' ').unwrap().0;
        assert!(
            stack
                .split(';')
                .skip(2)
                .all(|f| f.ends_with("_[j]") || f == "[no stack]"),
            "{line}"
        );
    }

    for (runtime, what) in [
        (&symlinked, "a symlinked map"),
        (&stranger, "a map owned by another user"),
        (&missing, "a deleted map"),
    ] {
        let (n, have, _, jit_frames) = jit_share(&out, runtime.pid(), "py::");
        eprintln!("{what}: {n} ON_CPU rows, user stack on {have:.3}, {jit_frames} jit frames");
        assert!(have >= 0.5, "{what}: user stacks on {have:.3} of rows");
        assert_eq!(
            jit_frames,
            0.0,
            "{what} named frames: {}",
            some_frames(&out, runtime.pid())
        );
        // The interpreter's frames, or the Python functions read from
        // the interpreter in their place (`python` frames, on and off
        // CPU): never a name from the refused map.
        let frames = some_frames(&out, runtime.pid());
        let python_kind = frames.contains("python;") || frames.contains(";python");
        assert!(
            (frames.contains("_PyEval_EvalFrameDefault") || python_kind)
                && !frames.contains("py::"),
            "{what}: interpreter or python frames expected: {frames}"
        );
    }
    // Refused maps are logged once each, not per stack.
    for (runtime, reason) in [(&symlinked, "NotRegular"), (&stranger, "Owner")] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("not naming JIT frames") && l.contains(&format!("pid={}", runtime.pid()))
            })
            .collect();
        assert_eq!(lines.len(), 1, "{reason}: {lines:?}\n{log}");
        assert!(lines[0].contains(reason), "{lines:?}");
    }
    assert!(
        !log.lines().any(|l| l.contains("not naming JIT frames")
            && l.contains(&format!("pid={}", missing.pid()))),
        "a missing map is not a problem: {log}"
    );
}

/// Whether a `-XX:+PrintCompilation` line says C2 (tier 4) compiled
/// `Busy::javaBusyJit` itself (`651 1090  4  Busy::javaBusyJit (28
/// bytes)`), not an on-stack replacement of its loop (`% 4
/// Busy::javaBusyJit @ 4 (28 bytes)`) nor its retirement (`made not
/// entrant`).
fn c2_compiled(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    !line.contains("made not entrant")
        && words
            .windows(3)
            .any(|w| w[0] == "4" && w[1] == "Busy::javaBusyJit" && w[2].starts_with('('))
}

/// Debian's OpenJDK writes its perf map only when asked (`jcmd <pid>
/// Compiler.perfmap`, JDK 17+): asked once C2 has compiled the hot method,
/// the map names it and the agent marks it `jit`. Started with
/// `-XX:+PreserveFramePointer`: the compiled method keeps `rbp` as a frame
/// pointer, so the kernel's walk goes on to its caller (the interpreted
/// `main`, `Interpreter` in the map); without it the leaf is named just
/// the same, but its caller is skipped (the walk lands in `StubRoutines`).
#[test]
fn java_jit_frames_are_named_from_jcmd_perfmap() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    std::fs::write(scratch.path().join("Busy.java"), JAVA_BUSY).unwrap();
    let started = Instant::now();
    let mut child = Command::new("java")
        .args([
            "-XX:+PreserveFramePointer",
            "-XX:CompileCommand=dontinline,Busy::javaBusyJit",
            "-XX:+PrintCompilation",
            "Busy.java",
            "60",
        ])
        .current_dir(scratch.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("cannot start java: {err} (openjdk-17-jdk-headless: ./dev.sh setup)")
        });
    let stdout = child.stdout.take().unwrap();
    let java = Runtime(child);
    // The JVM prints a line per compilation as long as it runs: the pipe
    // is drained to the end, the C2 compilation of the method signalled.
    let (compiled, c2) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if c2_compiled(&line) {
                let _ = compiled.send(());
            }
        }
    });
    c2.recv_timeout(Duration::from_secs(30))
        .expect("C2 never compiled Busy::javaBusyJit within 30 s");
    let warm_up = started.elapsed();

    let asked = Instant::now();
    let map = PathBuf::from(format!("/tmp/perf-{}.map", java.pid()));
    let jcmd = Command::new("jcmd")
        .args([&java.pid().to_string(), "Compiler.perfmap"])
        .output()
        .unwrap_or_else(|err| panic!("cannot run jcmd: {err} (openjdk-17-jdk-headless)"));
    assert!(jcmd.status.success(), "{jcmd:?}");
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    let jcmd_time = asked.elapsed();
    let entries = text
        .lines()
        .filter(|l| l.ends_with("Busy.javaBusyJit(int)"))
        .count();
    eprintln!(
        "java: start-up and warm-up to C2 {:.2} s, jcmd Compiler.perfmap {:.2} s, \
         {} map lines, {entries} for javaBusyJit",
        warm_up.as_secs_f64(),
        jcmd_time.as_secs_f64(),
        text.lines().count()
    );
    assert!(entries > 0, "javaBusyJit is not in {}", map.display());

    let out = scratch.path().join("out");
    let agent = AgentRun::new()
        .args(["-F", "20"])
        .duration(5)
        .output(&out)
        .spawn();
    let agent = wait_with_limit(agent, Duration::from_secs(60));
    assert_success(&agent);
    let log = String::from_utf8_lossy(&agent.stderr);
    // The map is root's, like the JVM: the owner check lets it through.
    assert!(
        !log.lines()
            .any(|l| l.contains("not naming JIT frames")
                && l.contains(&format!("pid={}", java.pid()))),
        "{log}"
    );

    let method = "double Busy.javaBusyJit(int)";
    let (n, have, named, jit_frames) = jit_share(&out, java.pid(), method);
    eprintln!(
        "java -XX:+PreserveFramePointer: {n} ON_CPU rows, user stack on {have:.3}, \
         {method} jit frame in {named:.3}, {jit_frames} jit frames"
    );
    assert!(have >= 0.9, "java: user stacks on {have:.3} of rows");
    assert!(jit_frames > 0.0, "java: no jit frames");
    assert!(
        named >= 0.9,
        "java: {named:.3} of user stacks have a jit frame {method}: {}",
        some_frames(&out, java.pid())
    );
    // Frame pointers kept: the method's caller, `main`, follows it on the
    // stack (interpreted; compiled, had its loop run long enough).
    let rows = query(
        &out,
        &format!(
            "SELECT count(*) FILTER (WHERE string_split(t.frames, ';')[1] LIKE '{method}%' \
                      AND (string_split(t.frames, ';')[2] LIKE 'Interpreter%' \
                           OR string_split(t.frames, ';')[2] LIKE 'void Busy.main(%')) \
                    / count(*) AS share \
             FROM {SAMPLES} s JOIN (SELECT DISTINCT stack_id, frames FROM {STACKS}) t \
               ON t.stack_id = s.ustack_id \
             WHERE s.tgid = {} AND s.state = 'ON_CPU'",
            java.pid()
        ),
    );
    let caller = rows[0]["share"].as_f64().unwrap_or(0.0);
    eprintln!("java: javaBusyJit called from main on {caller:.3} of stacks");
    assert!(
        caller >= 0.9,
        "java: {caller:.3}: {}",
        some_frames(&out, java.pid())
    );
    eprintln!("java: whole test {:.1} s", started.elapsed().as_secs_f64());
}
