//! Signal frames: a process blocked inside its signal handler (as
//! PostgreSQL's children forked from the postmaster's handlers are), with
//! no frame pointer from the handler back to the interrupted code, gets a
//! user stack that runs through the trampoline into the interrupted
//! function and on to `main` and the thread's entry point.

use std::process::Command;

use crate::support::*;

const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst')";
const STACKS: &str = "read_csv('stacks/*/*/*.csv.zst')";

#[test]
fn user_stacks_run_through_a_signal_frame_to_main() {
    require_root();
    let _serial = exclusive();
    let binary = compile_workload("sigframe");
    // The workload prints its line from inside the handler.
    let (mut child, info) = spawn_workload(&mut Command::new(&binary));
    let pid = info["pid"].as_i64().expect("pid");
    let scratch = scratch();
    let out = scratch.path().join("out");
    let status = AgentRun::new()
        .args(["--all", "-F", "50", "--pid", &pid.to_string()])
        .duration(3)
        .output(&out)
        .run();
    child.kill().expect("kill the workload");
    child.wait().expect("wait for the workload");
    assert_success(&status);

    let rows = query(
        &out,
        &format!(
            "SELECT t.frames, t.truncated, count(*) AS n FROM {SAMPLES} s \
             JOIN (SELECT DISTINCT stack_id, frames, truncated FROM {STACKS} WHERE kind = 'user') t \
             ON t.stack_id = s.ustack_id WHERE s.tid = {pid} GROUP BY ALL ORDER BY n DESC"
        ),
    );
    assert!(!rows.is_empty(), "no user stacks for the workload");
    let frames = rows[0]["frames"].as_str().expect("frames").to_string();
    let truncated = rows[0]["truncated"].as_bool().expect("truncated");
    eprintln!(
        "{} rows; most common stack ({} rows, truncated {truncated}): {frames}",
        rows.len(),
        rows[0]["n"]
    );
    let names: Vec<&str> = frames.split(';').collect();
    let at = |name: &str| {
        names
            .iter()
            .position(|f| f.starts_with(&format!("{name}+")))
            .unwrap_or_else(|| panic!("no {name} frame in {frames}"))
    };
    let (sleep, handler, waiter, main) = (
        at("in_handler_sleep"),
        at("on_signal"),
        at("wait_for_signal"),
        at("main"),
    );
    // The handler, the trampoline (libc's `__restore_rt`), the interrupted
    // libc function (`pause`), then its callers.
    assert_eq!(handler, sleep + 1, "{frames}");
    let trampoline = names[handler + 1];
    assert!(
        trampoline.starts_with("libc.so.6+") || trampoline.contains("restore_rt"),
        "the handler returns into libc's trampoline, not {trampoline}: {frames}"
    );
    assert!(
        names[handler + 2].contains("pause"),
        "the interrupted function follows the trampoline: {frames}"
    );
    assert_eq!(waiter, handler + 3, "{frames}");
    assert_eq!(main, waiter + 1, "{frames}");
    assert!(
        names
            .last()
            .is_some_and(|f| f.starts_with("__libc_start_call_main+")),
        "{frames}"
    );
    assert!(!truncated, "{frames}");
}
