//! Running under a service manager: the agent, started the way systemd
//! starts a `Type=notify` unit, reports READY=1 once its first tick is
//! written, pings the watchdog from its sampling loop, and says STOPPING=1.
//! The test plays systemd: it owns the notification socket.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

/// One notification, or None after `timeout`.
fn receive(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).expect("timeout");
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(err)
            if err.kind() == std::io::ErrorKind::WouldBlock
                || err.kind() == std::io::ErrorKind::TimedOut =>
        {
            None
        }
        Err(err) => panic!("recv: {err}"),
    }
}

fn journals(out: &Path, table: &str) -> Vec<String> {
    std::fs::read_dir(out.join(".inprogress"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&format!("{table}-")) && name.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

fn agent_with_env(out: &Path, env: &[(&str, &str)]) -> std::process::Child {
    env.iter()
        .fold(
            AgentRun::new()
                .args(["--frequency", "10", "--stacks", "none"])
                .output(out),
            |run, (key, value)| run.env(key, value),
        )
        .spawn()
}

#[test]
fn notify_socket_gets_ready_after_the_first_tick_then_watchdog_pings() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let socket_path = scratch.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    // 2 s watchdog: pings due every second, the loop runs every 100 ms.
    let child = agent_with_env(
        &out,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let started = Instant::now();

    let ready = receive(&socket, Duration::from_secs(30)).expect("no notification within 30 s");
    assert!(
        ready.starts_with("READY=1\n") && ready.contains("STATUS=sampling at 10 Hz into "),
        "first notification was {ready:?}"
    );
    let ticks = journals(&out, "ticks");
    assert_eq!(
        ticks.len(),
        1,
        "READY=1 came before the first tick's journal existed: {ticks:?}"
    );

    let mut pings = Vec::new();
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(4_300) {
        if let Some(message) = receive(&socket, Duration::from_millis(200)) {
            assert_eq!(message, "WATCHDOG=1\n", "unexpected notification");
            pings.push(started.elapsed());
        }
    }
    assert!(
        pings.len() >= 3,
        "expected a WATCHDOG=1 about every second, got {pings:?}"
    );
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            // About every half interval (1 s): far from every 100 ms tick,
            // well within the 2 s the manager would wait. The bounds leave
            // room for this test's own scheduling delays.
            gap >= Duration::from_millis(500) && gap < Duration::from_millis(1_900),
            "pings should come every half watchdog interval (1 s): {pings:?}"
        );
    }

    send_signal(&child, nix::sys::signal::Signal::SIGTERM);
    let stopping = receive(&socket, Duration::from_secs(5));
    let status = wait_with_limit(child, Duration::from_secs(10));
    assert_success(&status);
    assert_eq!(stopping.as_deref(), Some("STOPPING=1\n"));
}

#[test]
fn abstract_notify_socket_without_watchdog() {
    require_root();
    let _serial = exclusive();
    use std::os::linux::net::SocketAddrExt;
    let scratch = scratch();
    let out = scratch.path().join("out");
    let name = format!("taskscope-notify-test-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).expect("bind abstract socket");
    let child = agent_with_env(&out, &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let ready = receive(&socket, Duration::from_secs(30)).expect("no READY within 30 s");
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    // No WATCHDOG_USEC: no pings, however long it runs.
    assert_eq!(receive(&socket, Duration::from_millis(1_500)), None);
    send_signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        receive(&socket, Duration::from_secs(5)).as_deref(),
        Some("STOPPING=1\n")
    );
    assert_success(&wait_with_limit(child, Duration::from_secs(10)));
}

#[test]
fn an_agent_that_cannot_start_never_says_ready() {
    // Timing-sensitive tests elsewhere run under this lock: keep this
    // CPU-heavy one from running beside them.
    let _serial = exclusive();
    let scratch = scratch();
    let socket_path = scratch.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    // Refused before anything is loaded: the parent is world-writable and
    // not sticky (a sticky, root-owned parent such as /tmp is accepted).
    let open = scratch.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(
        &open,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777),
    )
    .expect("chmod");
    let out = AgentRun::new()
        .output(&open.join("out"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .run();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(receive(&socket, Duration::from_millis(200)), None);
}
