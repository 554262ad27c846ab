//! Helpers that run the real agent against real workloads and read its
//! files with the real DuckDB CLI and `zstdcat`.
//!
//! Nothing here skips: a test that needs root, BPF or DuckDB fails with the
//! reason when the machine cannot provide it.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The agent binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_taskscope");

/// Held while a test loads the BPF programs or keeps CPUs busy.
pub struct Exclusive {
    _file: std::fs::File,
    _guard: MutexGuard<'static, ()>,
}

/// Tests that load the BPF programs and keep CPUs busy run one at a time:
/// parallel workloads would distort each other's thread states. The lock
/// is also a file lock (`/run/lock/taskscope-tests.lock`), so two test runs
/// on one machine (two checkouts) take turns too.
pub fn exclusive() -> Exclusive {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = Path::new("/run/lock");
    let dir = if dir.is_dir() { dir } else { Path::new("/tmp") };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("taskscope-tests.lock"))
        .expect("open the test lock file");
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .expect("lock the test lock file");
    Exclusive {
        _file: file,
        _guard: guard,
    }
}

/// Fail (never skip) unless running as root, which loading BPF needs.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests load BPF programs and must run as root (the README's test command does)"
    );
}

/// A private scratch directory (mode 0755, owned by root) for one test.
pub fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("taskscope-test-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A directory on a real block device (not tmpfs), for I/O workloads.
pub fn disk_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dev = std::fs::metadata(&dir)
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
        .expect("stat target dir");
    let major = rustix::fs::major(dev);
    assert_ne!(
        major,
        0,
        "{} is not on a block device (major 0); I/O tests need a real disk",
        dir.display()
    );
    dir
}

/// `major:minor` of the whole disk (or partition) holding `path`, as the
/// agent reports it.
pub fn device_of(path: &Path) -> String {
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(path).expect("stat"));
    format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Compile `tests/workload/<name>.c` into the test target directory (with
/// frame pointers, so user stacks can be walked) and return the binary.
pub fn compile_workload(name: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/workload/{name}.c"));
    let binary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let status = Command::new("cc")
        .args([
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            "-pthread",
            "-Wall",
            "-Werror",
            "-o",
        ])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc (install gcc)");
    assert!(status.success(), "compiling {} failed", source.display());
    binary
}

/// Start a workload that prints one JSON line about itself (pids, tids,
/// paths) on stdout, and return it with that line.
pub fn spawn_workload(command: &mut Command) -> (Child, Value) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start workload {:?}: {e}", command.get_program()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the workload's first line");
    let info: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("workload said {line:?}: {e}"));
    (child, info)
}

/// The ground-truth workload binary, compiled once per test run.
pub fn groundtruth_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| compile_workload("groundtruth"))
}

/// A running ground-truth workload; stopped (and its children reaped) on
/// drop or by `stop`, after which its tids can still be looked up.
pub struct Workload {
    child: Child,
    pid: u32,
    pub info: Value,
}

impl Workload {
    pub fn start() -> Workload {
        let (child, info) = spawn_workload(Command::new(groundtruth_binary()).arg(disk_dir()));
        let pid = child.id();
        Workload { child, pid, info }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stop the workload (its spinners would slow down the queries).
    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }

    /// The tid of role `name` ("sleeper", "piperead", ...).
    pub fn tid(&self, name: &str) -> i64 {
        self.info[name]
            .as_i64()
            .unwrap_or_else(|| panic!("workload has no {name}"))
    }

    pub fn spinners(&self) -> Vec<i64> {
        self.info["spin"]
            .as_array()
            .expect("spin")
            .iter()
            .map(|v| v.as_i64().expect("tid"))
            .collect()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sample a fresh ground-truth workload: start it, run the agent with
/// `args` (and an output directory in a scratch directory) to completion,
/// stop the workload. Returns the (stopped) workload, the scratch
/// directory that owns the files, and the output directory.
pub fn sample_workload(args: &[&str]) -> (Workload, tempfile::TempDir, PathBuf) {
    let mut workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let status = AgentRun::new().args(args).output(&out).run();
    workload.stop();
    assert_success(&status);
    (workload, scratch, out)
}

/// One run of the agent, `taskscope run`, as every test starts it: not
/// pinning its table (unless [`AgentRun::pin_dir`]), logging at info on a
/// piped stderr, killed and failing the test if it outlives its limit
/// (30 s unless [`AgentRun::limit`]).
///
/// ```ignore
/// let status = AgentRun::new().args(["--all", "-F", "10"]).output(&out).duration(2).run();
/// let child = AgentRun::new().output(&out).spawn();
/// ```
#[derive(Debug, Clone)]
pub struct AgentRun {
    flags: Vec<OsString>,
    output: Option<PathBuf>,
    duration: Option<String>,
    pin_dir: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    limit: Duration,
}

impl Default for AgentRun {
    fn default() -> Self {
        AgentRun::new()
    }
}

impl AgentRun {
    pub fn new() -> AgentRun {
        AgentRun {
            flags: Vec::new(),
            output: None,
            duration: None,
            pin_dir: None,
            env: Vec::new(),
            limit: Duration::from_secs(30),
        }
    }

    /// More flags of `run`.
    pub fn args<I, S>(mut self, flags: I) -> AgentRun
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.flags
            .extend(flags.into_iter().map(|f| f.as_ref().to_os_string()));
        self
    }

    /// `--output-dir DIR`.
    pub fn output(mut self, dir: &Path) -> AgentRun {
        self.output = Some(dir.to_path_buf());
        self
    }

    /// `--duration VALUE` (seconds, or a duration as users type it).
    pub fn duration(mut self, value: impl ToString) -> AgentRun {
        self.duration = Some(value.to_string());
        self
    }

    /// `--pin-dir DIR` instead of `--no-pin`.
    pub fn pin_dir(mut self, dir: &Path) -> AgentRun {
        self.pin_dir = Some(dir.to_path_buf());
        self
    }

    /// An environment variable of the agent.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> AgentRun {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// How long [`AgentRun::run`] waits before it kills the agent and
    /// fails the test.
    pub fn limit(mut self, limit: Duration) -> AgentRun {
        self.limit = limit;
        self
    }

    /// The command line, to spawn by hand (stdout and stderr piped).
    pub fn command(&self) -> Command {
        let mut command = Command::new(AGENT);
        command.arg("run").args(&self.flags);
        if let Some(duration) = &self.duration {
            command.arg("--duration").arg(duration);
        }
        match &self.pin_dir {
            Some(dir) => command.arg("--pin-dir").arg(dir),
            None => command.arg("--no-pin"),
        };
        if let Some(dir) = &self.output {
            command.arg("--output-dir").arg(dir);
        }
        command
            .env("TASKSCOPE_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // An agent outlives a test that panics before stopping it (and
        // keeps sampling, with its BPF programs attached, into the next
        // tests): it is killed when the test's thread ends.
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec here.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }

    /// Start the agent in the background (stdout discarded, the log on a
    /// piped stderr).
    pub fn spawn(&self) -> Child {
        self.command()
            .stdout(Stdio::null())
            .spawn()
            .expect("start taskscope")
    }

    /// Run the agent to completion.
    pub fn run(&self) -> Output {
        let child = self.command().spawn().expect("start taskscope");
        wait_with_limit(child, self.limit)
    }
}

/// `taskscope ARGS` (any command) to completion; fails the test if it
/// outlives 5 minutes.
pub fn taskscope(args: &[&str]) -> Output {
    let child = Command::new(AGENT)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start taskscope");
    wait_with_limit(child, Duration::from_secs(300))
}

/// Send `sig` to `child`.
pub fn send_signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
}

/// Wait for `child`, killing it and failing the test after `limit`. Its
/// piped output is read as it comes, so a chatty child never blocks on a
/// full pipe.
pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            bytes
        })
    }
    let collect = |handle: Option<JoinHandle<Vec<u8>>>| {
        handle.map_or_else(Vec::new, |h| h.join().unwrap_or_default())
    };
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Output {
                status,
                stdout: collect(stdout),
                stderr: collect(stderr),
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&collect(stderr))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Assert the agent exited 0, showing its log otherwise.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "taskscope failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The DuckDB CLI (`pip install duckdb-cli`, done by the test command).
pub fn duckdb() -> PathBuf {
    if let Some(path) = std::env::var_os("TASKSCOPE_DUCKDB") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("duckdb"))
            .find(|candidate| candidate.is_file())
    });
    found.expect("the duckdb CLI is not on PATH: install it with `pip install duckdb-cli` (the README's test command does)")
}

/// Run `sql` in DuckDB with `dir` as working directory; rows as JSON objects.
pub fn query(dir: &Path, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    let out = Command::new(duckdb())
        .current_dir(dir)
        .args(["-json", "-c", sql])
        .output()
        .expect("run duckdb");
    assert!(
        out.status.success(),
        "duckdb failed on:\n{sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    let rows: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("duckdb printed {text:?}: {e}"));
    rows.as_array()
        .expect("array of rows")
        .iter()
        .map(|row| row.as_object().expect("row object").clone())
        .collect()
}

/// One number from a single-row, single-column query.
pub fn query_number(dir: &Path, sql: &str) -> f64 {
    let rows = query(dir, sql);
    assert_eq!(rows.len(), 1, "expected one row from {sql}");
    let value = rows[0].values().next().expect("one column");
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0.0)
}

/// Files below `dir` (recursively), as paths relative to it.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).expect("under base").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The value of `key=` on the agent's log line containing `message`.
pub fn log_field(log: &str, message: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .find(|line| line.contains(message))
        .unwrap_or_else(|| panic!("no '{message}' line in the log:\n{log}"));
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in: {line}"))
}

/// Run a shell pipeline (`sh -c`) in `dir`; its stdout.
pub fn shell(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .current_dir(dir)
        .args(["-c", script])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Run a README shell example with `bash -o pipefail`, the DuckDB CLI on
/// PATH; fails the test unless it succeeds and prints at least two
/// non-empty lines (a header and a row). Its stdout.
pub fn run_example(example: &str, script: &str) -> String {
    let duckdb_dir = duckdb().parent().expect("duckdb's directory").to_path_buf();
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                duckdb_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "README example failed:\n{example}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().filter(|l| !l.trim().is_empty()).count() >= 2,
        "README example printed no rows:\n{example}\noutput:\n{stdout}"
    );
    stdout
}

/// Wait until the agent writing to `out` has taken its first tick (its
/// `ticks` journal exists in `.inprogress/`): loading the programs takes
/// a second or more on a loaded machine, so a fixed sleep after spawning
/// is not "the agent runs". Fails the test after `limit`.
pub fn wait_for_first_tick(out: &Path, limit: Duration) {
    let inprogress = out.join(".inprogress");
    let start = Instant::now();
    loop {
        let started = std::fs::read_dir(&inprogress).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("ticks-"))
        });
        if started {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "the agent writing to {} took no tick within {limit:?}",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
