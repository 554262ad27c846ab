//! Unix socket peers (issue 13, `peer_pid`, `peer_comm`, and the `sock_*`
//! columns of unix sockets): a server and a client process over a unix
//! stream socket, each blocked in read() while the other sleeps.

use std::process::Command;

use crate::support::*;

const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst')";

#[test]
fn each_end_of_a_unix_socket_names_the_other_process() {
    require_root();
    let _guard = exclusive();
    let binary = compile_workload("peers");
    let dir = scratch();
    let (mut workload, info) = spawn_workload(Command::new(&binary).arg(dir.path()));
    let server = info["server"].as_i64().expect("server");
    let client = info["client"].as_i64().expect("client");
    let path = info["path"].as_str().expect("path").to_string();
    let out = dir.path().join("out");
    let status = AgentRun::new()
        .args(["--all", "--frequency", "50"])
        .args(["--pid", &server.to_string(), "--pid", &client.to_string()])
        .output(&out)
        .duration(4)
        .run();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workload.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = workload.wait();
    assert_success(&status);
    // (rows in read, share on a CPU or right, rows naming another peer) of
    // one end. A wait begun before the agent started (since_lower_bound)
    // has no file by design (its fd may name another file by now than
    // the syscall holds): not counted.
    let share = |tid: i64, right: &str| {
        let rows = query(
            &out,
            &format!(
                "SELECT count(*) AS n, avg(CASE WHEN state = 'ON_CPU' OR ({right}) \
                 THEN 1.0 ELSE 0.0 END) AS share, \
                 count(*) FILTER (WHERE peer_pid IS NOT NULL AND NOT ({right})) AS wrong \
                 FROM {SAMPLES} WHERE tid = {tid} AND syscall IN ('read', 'recvfrom') \
                 AND NOT since_lower_bound"
            ),
        );
        let n = rows[0]["n"].as_f64().unwrap_or(0.0);
        let wrong = rows[0]["wrong"].as_f64().unwrap_or(-1.0);
        (n, rows[0]["share"].as_f64().unwrap_or(0.0), wrong)
    };
    let client_right = format!(
        "peer_pid = {server} AND peer_comm = 'ts-userver' AND sock_proto = 'unix' \
         AND sock_state = 'ESTABLISHED' AND sock_remote = '{path}' AND file LIKE 'socket:[%]'"
    );
    let (n, right, wrong) = share(client, &client_right);
    assert!(n >= 40.0, "only {n} read samples of the client");
    assert!(
        right >= 0.9,
        "the client's rows name the server ({server}, ts-userver, {path}) on {right:.3} of {n}"
    );
    assert_eq!(wrong, 0.0, "client rows naming another peer");
    let server_right = format!(
        "peer_pid = {client} AND peer_comm = 'ts-uclient' AND sock_proto = 'unix' \
         AND sock_local = '{path}'"
    );
    let (n, right, wrong) = share(server, &server_right);
    assert!(n >= 40.0, "only {n} read samples of the server");
    assert!(
        right >= 0.9,
        "the server's rows name the client ({client}, ts-uclient) on {right:.3} of {n}"
    );
    assert_eq!(wrong, 0.0, "server rows naming another peer");
}
