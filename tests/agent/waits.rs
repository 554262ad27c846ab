//! What threads wait on (issue 13): the `file` of fd syscalls, the socket
//! behind it, the process title. One agent run over `tests/workload/waits.c`
//! is shared by every check here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::*;

/// The waits workload binary, compiled once per test run.
fn waits_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| compile_workload("waits"))
}

/// A started workload, stopped on drop, and what it printed.
struct Running {
    child: Child,
    info: Value,
}

impl Running {
    fn start(command: &mut Command) -> Running {
        let (child, info) = spawn_workload(command);
        Running { child, info }
    }

    fn int(&self, key: &str) -> i64 {
        self.info[key]
            .as_i64()
            .unwrap_or_else(|| panic!("workload has no {key}: {}", self.info))
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A network namespace, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> NetNs {
        let name = format!("tswaits{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip (install iproute2)")
            .success();
        assert!(ok, "ip netns add {name} failed");
        let up = Command::new("ip")
            .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
            .status()
            .expect("run ip")
            .success();
        assert!(up, "cannot bring lo up in {name}");
        NetNs(name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The facts of the shared run: the workloads' info and the output.
struct Run {
    main: Value,
    netns: Value,
    _scratch: tempfile::TempDir,
    out: PathBuf,
}

/// Password-like arguments the workload is started with: never in a file.
const SECRETS: [&str; 2] = ["--password=hunter2", "-pSECRET"];

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        require_root();
        let _guard = exclusive();
        let binary = waits_binary();
        let dir = disk_dir().join(format!("waits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("workload dir");
        let mut main = Running::start(Command::new(binary).arg(&dir).args(SECRETS));
        let ns = NetNs::new();
        let mut netns = Running::start(
            Command::new("ip")
                .args(["netns", "exec", &ns.0])
                .arg(binary)
                .arg("--net"),
        );
        let scratch = scratch();
        let out = scratch.path().join("out");
        let pids = [main.int("pid"), main.int("peer"), netns.int("pid")];
        let mut args = vec!["--all".to_string(), "--frequency".into(), "50".into()];
        for pid in pids {
            args.extend(["--pid".to_string(), pid.to_string()]);
        }
        let status = AgentRun::new().args(&args).output(&out).duration(4).run();
        main.stop();
        netns.stop();
        let _ = std::fs::remove_dir_all(&dir);
        assert_success(&status);
        Run {
            main: main.info.clone(),
            netns: netns.info.clone(),
            _scratch: scratch,
            out,
        }
    })
}

const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst')";

/// Rows of thread `tid` in syscall `syscall`: (count, share where `predicate`).
fn share(run: &Run, tid: i64, syscall: &str, predicate: &str) -> (f64, f64) {
    let rows = query(
        &run.out,
        &format!(
            "SELECT count(*) AS n, avg(CASE WHEN {predicate} THEN 1.0 ELSE 0.0 END) AS share \
             FROM {SAMPLES} WHERE tid = {tid} AND syscall = '{syscall}'"
        ),
    );
    let n = rows[0]["n"].as_f64().unwrap_or(0.0);
    let share = rows[0]["share"].as_f64().unwrap_or(0.0);
    (n, share)
}

fn tid(info: &Value, name: &str) -> i64 {
    info[name]
        .as_i64()
        .unwrap_or_else(|| panic!("workload has no {name}"))
}

#[test]
fn fdatasync_names_its_file() {
    let run = run();
    let fsync_file = run.main["fsync_file"].as_str().expect("fsync_file");
    let (n, named) = share(
        run,
        tid(&run.main, "wt-fsync"),
        "fdatasync",
        &format!("file = '{fsync_file}'"),
    );
    assert!(n >= 20.0, "only {n} fdatasync samples");
    // On a CPU the file is known once the on-CPU sample or a switch-out
    // has seen the syscall: most of the time, not always.
    assert!(
        named >= 0.8,
        "file named {fsync_file} on {named:.3} of {n} fdatasync samples"
    );
    let (n, named) = share(
        run,
        tid(&run.main, "wt-fsync"),
        "fdatasync",
        &format!("state = 'ON_CPU' OR file = '{fsync_file}'"),
    );
    assert!(
        named >= 0.9,
        "file named {fsync_file} on {named:.3} of {n} fdatasync samples off CPU"
    );
    // Its position is the file's (pwrite does not move it: 0).
    let (_, pos) = share(
        run,
        tid(&run.main, "wt-fsync"),
        "fdatasync",
        "state = 'ON_CPU' OR file_pos IS NOT NULL",
    );
    assert!(pos >= 0.9, "file_pos on {pos:.3}");
}

#[test]
fn a_reused_fd_number_is_never_misnamed() {
    let run = run();
    let swapped = tid(&run.main, "wt-swapped");
    let other = run.main["other_file"].as_str().expect("other_file");
    let pipe = format!("pipe:[{}]", run.main["swap_pipe_ino"]);
    let rows = query(
        &run.out,
        &format!(
            "SELECT coalesce(file, '') AS file, count(*) AS n FROM {SAMPLES} \
             WHERE tid = {swapped} AND syscall = 'read' AND state = 'SLEEP' GROUP BY ALL"
        ),
    );
    // Its waits (SLEEP) are on the pipe; a read that found the other file
    // under the fd (the swapper was quicker) ends at once, on a CPU.
    let mut empty = 0.0;
    let mut total = 0.0;
    for row in &rows {
        let file = row["file"].as_str().unwrap_or("");
        let n = row["n"].as_f64().unwrap_or(0.0);
        total += n;
        assert!(
            file.is_empty() || file == pipe,
            "wt-swapped's read named {file:?} ({n} rows): it reads {pipe}, whose fd number was pointed at {other}"
        );
        if file.is_empty() {
            empty += n;
        }
    }
    assert!(total >= 20.0, "only {total} read samples of wt-swapped");
    // The fd named the other file when a sample was first named: the
    // check ran (later samples of the same open pipe hit the cache, right).
    assert!(empty >= 1.0, "no empty row: {rows:?}");
}

#[test]
fn a_tcp_client_shows_its_connection_and_the_server_listens() {
    let run = run();
    let port = run.main["port"].as_i64().expect("port");
    let remote = format!("127.0.0.1:{port}");
    let client = tid(&run.main, "wt-client");
    let (n, right) = share(
        run,
        client,
        "recvfrom",
        &format!("state = 'ON_CPU' OR (sock_remote = '{remote}' AND sock_state = 'ESTABLISHED' AND sock_proto = 'tcp')"),
    );
    assert!(n >= 20.0, "only {n} recvfrom samples of wt-client");
    assert!(
        right >= 0.9,
        "remote {remote} ESTABLISHED on {right:.3} of {n} samples"
    );
    let (_, srtt) = share(
        run,
        client,
        "recvfrom",
        "state = 'ON_CPU' OR tcp_srtt_us > 0",
    );
    assert!(srtt >= 0.9, "srtt on {srtt:.3}");
    let (n, listens) = share(
        run,
        tid(&run.main, "wt-accept"),
        "accept",
        &format!("sock_state = 'LISTEN' AND sock_local = '{remote}'"),
    );
    assert!(n >= 20.0, "only {n} accept samples");
    assert!(
        listens >= 0.9,
        "LISTEN on {remote} on {listens:.3} of {n} samples"
    );
}

#[test]
fn a_socket_in_another_network_namespace_is_empty_or_right() {
    let run = run();
    let port = run.netns["port"].as_i64().expect("port");
    let client = tid(&run.netns, "wt-client");
    let (n, _) = share(run, client, "recvfrom", "true");
    assert!(
        n >= 20.0,
        "only {n} recvfrom samples of the namespace's client"
    );
    let (_, ok) = share(
        run,
        client,
        "recvfrom",
        &format!("sock_remote IS NULL OR sock_remote = '127.0.0.1:{port}'"),
    );
    assert_eq!(
        ok, 1.0,
        "a socket of another namespace got another's connection"
    );
    // Its fd is still named.
    let (_, named) = share(
        run,
        client,
        "recvfrom",
        "state = 'ON_CPU' OR file LIKE 'socket:[%]'",
    );
    assert!(named >= 0.9, "socket named on {named:.3}");
}

#[test]
fn report_groups_by_file_and_by_peer() {
    let run = run();
    let dir = run.out.to_str().expect("utf-8 path");
    let report = |by: &str| {
        let out = taskscope(&[
            "report",
            "--dir",
            dir,
            "--since",
            "1h",
            "--all-states",
            "--by",
            by,
        ]);
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fsync_file = run.main["fsync_file"].as_str().expect("fsync_file");
    let by_file = report("comm,file");
    assert!(
        by_file
            .lines()
            .any(|l| l.contains("wt-fsync") && l.contains(fsync_file)),
        "report --by comm,file has no line of wt-fsync on {fsync_file}:\n{by_file}"
    );
    let peer = format!("127.0.0.1:{}", run.main["port"]);
    let by_peer = report("comm,peer");
    assert!(
        by_peer
            .lines()
            .any(|l| l.contains("wt-client") && l.contains(&peer)),
        "report --by comm,peer has no line of wt-client to {peer}:\n{by_peer}"
    );
}

#[test]
fn password_like_arguments_never_reach_a_file() {
    let run = run();
    for path in files_under(&run.out) {
        let bytes = std::fs::read(run.out.join(&path)).expect("read output file");
        let text = if path.extension().is_some_and(|e| e == "zst") {
            zstd::decode_all(&bytes[..]).expect("zstd")
        } else {
            bytes
        };
        for secret in ["hunter2", "SECRET"] {
            assert!(
                !text.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {}",
                path.display()
            );
        }
    }
    let _ = &run.netns;
}
