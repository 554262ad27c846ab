//! Faults while running: the output directory removed, the wall clock
//! set back and forward.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::*;

const TICKS: &str = "read_csv('ticks/*/*/*.csv.zst')";

/// `rm -rf` of the output directory while the agent runs: within a second
/// it is created again (same checks, same modes) and later ticks land in
/// it; the agent exits 0.
#[test]
fn removed_output_dir_is_created_again() {
    require_root();
    let _guard = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let agent = spawn_agent(&[
        "run",
        "-F",
        "10",
        "--duration",
        "8",
        "--test-rotate-secs",
        "1",
        "--no-pin",
        "--output-dir",
        out.to_str().expect("utf-8 path"),
    ]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(out.join("ticks").is_dir(), "agent did not start writing");
    std::fs::remove_dir_all(&out).expect("remove the output directory");
    let removed_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros();
    let status = wait_with_limit(agent, Duration::from_secs(40));
    assert_success(&status);
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(
        log.contains("creating it again"),
        "no log line about the removed directory:\n{log}"
    );
    let mode = std::fs::metadata(&out)
        .expect("output dir again")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "recreated with mode {mode:o}");
    let after = query_number(
        &out,
        &format!("SELECT count(*) FROM {TICKS} WHERE epoch_us(ts) > {removed_us} + 1500000"),
    );
    assert!(
        after >= 30.0,
        "only {after} ticks written after the removal"
    );
}

/// The directory removed and its parent made writable by other users: the
/// agent cannot recreate it safely and exits 1 with one clear line.
#[test]
fn removed_output_dir_that_cannot_be_made_safely_stops_the_agent() {
    require_root();
    let _guard = exclusive();
    let scratch = scratch();
    let parent = scratch.path().join("parent");
    std::fs::create_dir(&parent).expect("mkdir parent");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = parent.join("out");
    let agent = spawn_agent(&[
        "run",
        "-F",
        "10",
        "--duration",
        "20",
        "--no-pin",
        "--output-dir",
        out.to_str().expect("utf-8 path"),
    ]);
    std::thread::sleep(Duration::from_secs(3));
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::remove_dir_all(&out).expect("remove the output directory");
    let status = wait_with_limit(agent, Duration::from_secs(15));
    let log = String::from_utf8_lossy(&status.stderr);
    assert_eq!(
        status.status.code(),
        Some(1),
        "agent did not exit 1:\n{log}"
    );
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("was removed while running and cannot be created again")
            && last.contains("writable by other users"),
        "last line does not say what happened and what to do: {last}\n{log}"
    );
    assert!(
        !out.exists(),
        "the directory was made under an unsafe parent"
    );
}
