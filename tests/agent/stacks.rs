//! Stacks: the ground-truth workload's threads are caught where the test
//! put them, short-lived and deleted binaries still symbolize, every id a
//! period's samples use is defined in that period's stacks file, and slot
//! recycling under thread churn never hands one thread another's stack.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::support::*;

const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst', filename = true)";
const STACKS: &str = "read_csv('stacks/*/*/*.csv.zst', filename = true)";

/// Share of `tid`'s rows (restricted by `filter`) whose `kind` stack
/// exists; and among those, the share whose frames contain every `needle`.
fn stack_share(dir: &Path, tid: i64, filter: &str, kind: &str, needles: &[&str]) -> (f64, f64) {
    let id = if kind == "kernel" {
        "kstack_id"
    } else {
        "ustack_id"
    };
    let contains = needles
        .iter()
        .map(|n| format!("t.frames LIKE '%{n}%'"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let rows = query(
        dir,
        &format!(
            "SELECT count(*) AS n, count(s.{id}) AS with_stack, count(*) FILTER (WHERE {contains}) AS matching \
             FROM {SAMPLES} s LEFT JOIN (SELECT DISTINCT stack_id, frames FROM {STACKS}) t ON t.stack_id = s.{id} \
             WHERE s.tid = {tid} AND ({filter})"
        ),
    );
    let get = |key: &str| rows[0][key].as_f64().unwrap_or(0.0);
    let (n, with_stack, matching) = (get("n"), get("with_stack"), get("matching"));
    assert!(n > 0.0, "tid {tid} has no rows where {filter}");
    (
        with_stack / n,
        if with_stack > 0.0 {
            matching / with_stack
        } else {
            0.0
        },
    )
}

/// Every stack id referenced by a samples file is defined in the stacks
/// file of the same period, and an id always means the same frames.
fn assert_ids_resolve(dir: &Path) {
    for id in ["kstack_id", "ustack_id"] {
        let dangling = query_number(
            dir,
            &format!(
                "SELECT count(*) FROM {SAMPLES} s WHERE s.{id} IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM {STACKS} t WHERE t.stack_id = s.{id} \
                  AND regexp_extract(t.filename, 'date=.*$') = regexp_extract(s.filename, 'date=.*$'))"
            ),
        );
        assert_eq!(
            dangling, 0.0,
            "{id}: rows whose stack is not in the same period's stacks file"
        );
    }
    let ambiguous = query_number(
        dir,
        &format!("SELECT count(*) FROM (SELECT stack_id FROM {STACKS} GROUP BY stack_id HAVING count(DISTINCT kind || frames) > 1)"),
    );
    assert_eq!(ambiguous, 0.0, "one stack_id stands for different frames");
    let repeated = query_number(
        dir,
        &format!("SELECT count(*) FROM (SELECT filename, stack_id FROM {STACKS} GROUP BY ALL HAVING count(*) > 1)"),
    );
    assert_eq!(repeated, 0.0, "a stack defined twice in one period's file");
}

/// A copy of the ground-truth binary that naps `ms` and exits, deleted
/// from disk while it runs (so its mapping shows as "(deleted)").
fn start_deleted_nap(dir: &Path, n: usize, ms: u32) -> Child {
    let copy = dir.join(format!("gt-nap-{n}"));
    std::fs::copy(groundtruth_binary(), &copy).expect("copy the workload binary");
    let child = Command::new(&copy)
        .args(["--nap", &ms.to_string()])
        .spawn()
        .expect("start a nap");
    std::fs::remove_file(&copy).expect("delete the running binary");
    child
}

#[test]
fn stacks_show_where_each_thread_waits() {
    require_root();
    let _serial = exclusive();
    let mut workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let agent = AgentRun::new()
        .args(["--all", "-F", "20"])
        .duration(8)
        .output(&out)
        .spawn();
    // Short-lived processes from deleted binaries, one after another, while
    // the agent runs: each lives 0.4 s and is gone long before the period
    // is written.
    wait_for_first_tick(&out, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let mut naps = Vec::new();
    for n in 0..5 {
        let mut nap = start_deleted_nap(scratch.path(), n, 400);
        naps.push(nap.id() as i64);
        nap.wait().expect("nap");
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = wait_with_limit(agent, Duration::from_secs(30));
    workload.stop();
    assert_success(&status);

    assert_ids_resolve(&out);

    // Sleeping threads: kernel and user stacks on (nearly) every row, with
    // the workload's own function under libc.
    for (name, filter, kernel_fn, user_fn) in [
        ("sleeper", "state = 'SLEEP'", "nanosleep", "sleep_forever"),
        ("piperead", "true", "pipe_read", "read_pipe_forever"),
        ("futex", "true", "futex_wait", "wait_futex_forever"),
    ] {
        let tid = workload.tid(name);
        let (have, right) = stack_share(&out, tid, filter, "kernel", &[kernel_fn, "entry_SYSCALL"]);
        assert!(have >= 0.95, "{name}: kernel stack on {have:.3} of rows");
        assert!(
            right >= 0.99,
            "{name}: {right:.3} of kernel stacks contain {kernel_fn}"
        );
        let (have, right) = stack_share(
            &out,
            tid,
            filter,
            "user",
            &[user_fn, "worker_main", "start_thread"],
        );
        assert!(have >= 0.95, "{name}: user stack on {have:.3} of rows");
        assert!(
            right >= 0.99,
            "{name}: {right:.3} of user stacks contain {user_fn} < worker_main < start_thread"
        );
        // kfunc is the innermost kernel frame's function, on every row with a kernel stack.
        let kfunc = query_number(
            &out,
            &format!(
                "SELECT avg(CASE WHEN t.frames LIKE s.kfunc || '+0x%' THEN 1.0 ELSE 0 END) FROM {SAMPLES} s \
                 JOIN (SELECT DISTINCT stack_id, frames FROM {STACKS}) t ON t.stack_id = s.kstack_id WHERE s.tid = {tid}"
            ),
        );
        assert_eq!(
            kfunc, 1.0,
            "{name}: kfunc is not the innermost kernel frame"
        );
    }
    // The workload's function carries its source line.
    let lines = query_number(
        &out,
        &format!("SELECT count(*) FROM {STACKS} WHERE frames LIKE '%sleep_forever+0x%[groundtruth.c:%]%'"),
    );
    assert!(lines >= 1.0, "sleep_forever has no [groundtruth.c:line]");

    // Spinners on a CPU: user stacks from the perf event, in spin_forever.
    for tid in workload.spinners() {
        let (have, right) = stack_share(
            &out,
            tid,
            "state = 'ON_CPU'",
            "user",
            &["spin_forever", "worker_main"],
        );
        assert!(
            have >= 0.80,
            "spinner {tid}: user stack on {have:.3} of ON_CPU rows"
        );
        assert!(
            right >= 0.99,
            "spinner {tid}: {right:.3} of user stacks in spin_forever"
        );
    }

    // The fsync thread, waiting for the disk, is in the fdatasync or pwrite path.
    let fsync = workload.tid("fsync");
    let disk_stacks = query_number(
        &out,
        &format!("SELECT count(kstack_id) FROM {SAMPLES} WHERE tid = {fsync} AND state = 'DISK'"),
    );
    assert!(
        disk_stacks >= 1.0,
        "no kernel stack for the fsync thread in DISK"
    );
    let wrong = query(
        &out,
        &format!(
            "SELECT DISTINCT t.frames FROM {SAMPLES} s JOIN {STACKS} t ON t.stack_id = s.kstack_id \
             WHERE s.tid = {fsync} AND s.state = 'DISK' AND t.frames NOT LIKE '%fsync%' AND t.frames NOT LIKE '%pwrite%'"
        ),
    );
    assert!(
        wrong.is_empty(),
        "fsync thread in DISK outside fdatasync/pwrite: {wrong:?}"
    );

    // Short-lived processes from deleted binaries symbolize, and the same
    // code path in different processes has the same id.
    let nap_list = naps
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let nap_ids = query(
        &out,
        &format!(
            "SELECT DISTINCT s.ustack_id, t.module FROM {SAMPLES} s JOIN {STACKS} t ON t.stack_id = s.ustack_id \
             WHERE s.tid IN ({nap_list}) AND s.state = 'SLEEP' AND t.frames LIKE '%nap_then_exit%'"
        ),
    );
    let napped = query_number(
        &out,
        &format!("SELECT count(DISTINCT tid) FROM {SAMPLES} s JOIN {STACKS} t ON t.stack_id = s.ustack_id WHERE s.tid IN ({nap_list}) AND t.frames LIKE '%nap_then_exit%'"),
    );
    assert!(
        napped >= 4.0,
        "only {napped} of 5 short-lived processes have a symbolized user stack"
    );
    assert_eq!(
        nap_ids.len(),
        1,
        "the nap path in 5 processes should have one id: {nap_ids:?}"
    );

    // zstdcat | awk: the wait point is in the samples file itself.
    let awk = shell(
        &out,
        &format!(
            "zstdcat samples/*/*/*.csv.zst | awk -F, 'NR == 1 {{ for (i = 1; i <= NF; i++) col[$i] = i; next }} \
             $col[\"tid\"] == {} && $col[\"kfunc\"] != \"\" {{ n[$col[\"kfunc\"]]++ }} END {{ for (f in n) print f }}'",
            workload.tid("piperead")
        ),
    );
    assert!(
        awk.lines().all(|f| f.contains("pipe_read")) && !awk.is_empty(),
        "pipe reader's kfunc via awk: {awk:?}"
    );
}

#[test]
fn stacks_none_leaves_the_columns_empty() {
    require_root();
    let _serial = exclusive();
    let (_workload, _scratch, out) =
        sample_workload(&["--all", "-F", "10", "--duration", "2", "--stacks", "none"]);
    let rows = query(
        &out,
        &format!("SELECT count(*) AS n, count(kstack_id) AS k, count(ustack_id) AS u, count(kfunc) AS f FROM {SAMPLES}"),
    );
    assert!(rows[0]["n"].as_f64().unwrap() > 0.0, "no samples");
    for column in ["k", "u", "f"] {
        assert_eq!(
            rows[0][column].as_f64(),
            Some(0.0),
            "--stacks none still filled {column}"
        );
    }
    let stacks = query_number(&out, &format!("SELECT count(*) FROM {STACKS}"));
    assert_eq!(stacks, 0.0, "--stacks none wrote stacks");
}

#[test]
fn kernel_only_stacks() {
    require_root();
    let _serial = exclusive();
    let (workload, _scratch, out) =
        sample_workload(&["--all", "-F", "10", "--duration", "2", "--stacks", "kernel"]);
    let users = query_number(&out, &format!("SELECT count(ustack_id) FROM {SAMPLES}"));
    assert_eq!(users, 0.0, "--stacks kernel wrote user stacks");
    let (have, right) = stack_share(
        &out,
        workload.tid("futex"),
        "true",
        "kernel",
        &["futex_wait"],
    );
    assert!(
        have >= 0.95 && right >= 0.99,
        "futex kernel stacks: {have:.3} present, {right:.3} right"
    );
}

/// A pool of 8 captures for the ~100 threads `--all` samples: threads take
/// each other's entries all the time. Each sleeping thread still has its
/// own stacks on its rows (the sampler keeps what it read of a capture, and
/// the refresh pass captures again what was taken before it was read), and
/// never another thread's.
#[test]
fn a_small_stack_pool_still_gives_each_thread_its_own_stacks() {
    require_root();
    let _serial = exclusive();
    let mut workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let status = AgentRun::new()
        .args(["--all", "-F", "20", "--duration", "5"])
        .env("TS_STACK_POOL", "8")
        .output(&out)
        .run();
    workload.stop();
    assert_success(&status);
    assert_ids_resolve(&out);
    for (name, kernel_fn, user_fn) in [
        ("sleeper", "nanosleep", "sleep_forever"),
        ("piperead", "pipe_read", "read_pipe_forever"),
        ("futex", "futex_wait", "wait_futex_forever"),
    ] {
        let tid = workload.tid(name);
        let (have, right) = stack_share(&out, tid, "state = 'SLEEP'", "kernel", &[kernel_fn]);
        assert!(
            have >= 0.9 && right >= 0.99,
            "{name}: kernel stacks on {have:.3} of rows, {right:.3} of them with {kernel_fn}"
        );
        let (have, right) = stack_share(&out, tid, "state = 'SLEEP'", "user", &[user_fn]);
        assert!(
            have >= 0.9 && right >= 0.99,
            "{name}: user stacks on {have:.3} of rows, {right:.3} of them with {user_fn}"
        );
    }
    for tid in workload.spinners() {
        let (have, right) = stack_share(&out, tid, "state = 'ON_CPU'", "user", &["spin_forever"]);
        assert!(
            have >= 0.5 && right >= 0.99,
            "spinner {tid}: user stacks on {have:.3} of ON_CPU rows, {right:.3} of them in spin_forever"
        );
    }
}

#[test]
fn recycled_slots_keep_each_thread_its_own_state() {
    require_root();
    let _serial = exclusive();
    // Thousands of 2 ms threads through a 1024-slot table: every slot is
    // freed and reused several times during the run.
    let mut churn = Command::new(groundtruth_binary())
        .arg("--churn")
        .spawn()
        .expect("start the churner");
    // One-second periods: each period's stacks file must define the ids its
    // samples use, even those already written in earlier periods.
    let (workload, _scratch, out) = sample_workload(&[
        "--all",
        "-F",
        "20",
        "--duration",
        "4",
        "--max-threads",
        "1024",
        "--test-rotate-secs",
        "1",
    ]);
    let _ = churn.kill();
    let _ = churn.wait();
    let periods = query_number(
        &out,
        &format!("SELECT count(DISTINCT filename) FROM {STACKS}"),
    );
    assert!(
        periods >= 3.0,
        "only {periods} stacks files in 4 s of 1 s periods"
    );

    let churned = query_number(
        &out,
        &format!("SELECT count(DISTINCT tid) FROM {SAMPLES} WHERE comm = 'gt-churn'"),
    );
    assert!(churned >= 20.0, "only {churned} churn threads sampled");
    let ticks = query_number(&out, "SELECT count(*) FROM read_csv('ticks/*/*/*.csv.zst')");
    for name in ["sleeper", "piperead", "futex"] {
        let tid = workload.tid(name);
        let rows = query_number(
            &out,
            &format!("SELECT count(*) FROM {SAMPLES} WHERE tid = {tid}"),
        );
        assert!(rows >= ticks * 0.98, "{name} in {rows} of {ticks} ticks");
    }
    let twice = query_number(
        &out,
        &format!(
            "SELECT count(*) FROM (SELECT ts, tid FROM {SAMPLES} GROUP BY ALL HAVING count(*) > 1)"
        ),
    );
    assert_eq!(twice, 0.0, "a thread appears twice in one tick");
    for (name, user_fn) in [
        ("sleeper", "sleep_forever"),
        ("piperead", "read_pipe_forever"),
        ("futex", "wait_futex_forever"),
    ] {
        let (have, right) = stack_share(
            &out,
            workload.tid(name),
            "state = 'SLEEP'",
            "user",
            &[user_fn],
        );
        assert!(
            have >= 0.95 && right >= 0.99,
            "{name}: user stacks {have:.3} present, {right:.3} right"
        );
    }
    // Churn threads never show another thread's stack (each starts fresh
    // in start_thread; the functions below belong to other threads).
    let others = [
        "churn_forever",
        "sleep_forever",
        "read_pipe_forever",
        "wait_futex_forever",
        "fsync_forever",
        "spin_forever",
    ];
    let foreign_frames = others
        .iter()
        .map(|f| format!("t.frames LIKE '%{f}%'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let foreign = query(
        &out,
        &format!(
            "SELECT DISTINCT t.frames FROM {SAMPLES} s JOIN {STACKS} t ON t.stack_id = s.ustack_id \
             WHERE s.comm = 'gt-churn' AND ({foreign_frames})"
        ),
    );
    let own = query_number(
        &out,
        &format!(
            "SELECT count(*) FROM {SAMPLES} s JOIN {STACKS} t ON t.stack_id = s.ustack_id \
             WHERE s.comm = 'gt-churn' AND t.frames LIKE '%churn_briefly%'"
        ),
    );
    assert!(
        own >= 10.0,
        "only {own} churn rows with a user stack in churn_briefly"
    );
    assert!(
        foreign.is_empty(),
        "churn threads with foreign user stacks: {foreign:?}"
    );
    assert_ids_resolve(&out);
}

/// Rows from one moment (issue 14): threads flipping between a 1 ms
/// `epoll_wait` and `fdatasync` hundreds of times a second, with both CPUs
/// busy so the scan is preempted and reaches some entries after their
/// thread switched in and out again. A row's stack is of the row's own
/// wait: no `fdatasync` row carries the `epoll_wait` stack (kernel or
/// user) and no `epoll_wait` row the `fdatasync` one. Rows whose only
/// capture was of the other wait have no stack and are counted in
/// `ticks.stacks_of_other_wait`.
#[test]
fn no_row_mixes_the_stack_of_one_wait_with_the_state_of_another() {
    require_root();
    let _serial = exclusive();
    let binary = compile_workload("flip");
    let files = tempfile::tempdir_in(disk_dir()).expect("tempdir on disk");
    let (mut child, info) = spawn_workload(Command::new(&binary).arg(files.path()));
    let pid = info["pid"].as_i64().expect("pid").to_string();
    let tids: Vec<String> = info["flip"]
        .as_array()
        .expect("flip tids")
        .iter()
        .map(|t| t.to_string())
        .collect();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let status = AgentRun::new()
        .args(["--all", "-F", "100", "--pid", &pid])
        .duration(8)
        .output(&out)
        .run();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the workload");
    child.wait().expect("wait for the workload");
    assert_success(&status);
    assert_ids_resolve(&out);

    let flips = format!("s.tid IN ({})", tids.join(", "));
    let frames = |id: &str| {
        format!(
            "(SELECT frames FROM (SELECT DISTINCT stack_id, frames FROM {STACKS}) t WHERE t.stack_id = s.{id})"
        )
    };
    let (kernel, user) = (frames("kstack_id"), frames("ustack_id"));
    let rows = query(
        &out,
        &format!(
            "SELECT count(*) FILTER (WHERE s.syscall = 'fdatasync') AS sync_rows, \
                    count(*) FILTER (WHERE s.syscall = 'epoll_wait') AS epoll_rows, \
                    count(s.kstack_id) FILTER (WHERE s.syscall IN ('fdatasync', 'epoll_wait')) AS with_kernel, \
                    count(*) FILTER (WHERE s.syscall = 'fdatasync' AND ({kernel} LIKE '%ep_poll%' OR {user} LIKE '%flip_wait_epoll%')) AS sync_with_epoll, \
                    count(*) FILTER (WHERE s.syscall = 'epoll_wait' AND ({kernel} LIKE '%sync%' OR {user} LIKE '%flip_sync_file%')) AS epoll_with_sync \
             FROM {SAMPLES} s WHERE {flips} AND s.state <> 'ON_CPU'"
        ),
    );
    let get = |key: &str| rows[0][key].as_i64().unwrap_or(-1);
    let other_wait = query_number(
        &out,
        "SELECT coalesce(sum(stacks_of_other_wait), 0) FROM read_csv('ticks/*/*/*.csv.zst')",
    );
    eprintln!(
        "flip threads: {} fdatasync rows, {} epoll_wait rows, {} with kernel stacks; \
         {other_wait} rows of the run left without the other wait's stack",
        get("sync_rows"),
        get("epoll_rows"),
        get("with_kernel")
    );
    assert!(
        get("sync_rows") >= 50 && get("epoll_rows") >= 50,
        "the flip threads were not caught in both waits: {rows:?}"
    );
    assert!(
        get("with_kernel") * 2 >= get("sync_rows") + get("epoll_rows"),
        "most waiting rows should have a kernel stack: {rows:?}"
    );
    // None. (The last ones, about one row in 3,000, were entries that
    // missed a switch-out: this VM's kernel delivers no scheduler event in
    // the context of its hypervisor agent's threads, and the switch hook
    // used to trust the CPU's last switch-in record for whichever thread
    // switched out next. The missed switch-ins are now counted,
    // `switches_in_missed` in the agent's log.)
    let mixed_rows = get("sync_with_epoll") + get("epoll_with_sync");
    if mixed_rows > 0 {
        let mixed = query(
            &out,
            &format!(
                "SELECT s.ts, s.tid, s.state, s.syscall, s.state_since_us, s.syscall_us, {kernel} AS kernel, {user} AS user \
                 FROM {SAMPLES} s WHERE {flips} AND s.state <> 'ON_CPU' AND \
                 ((s.syscall = 'fdatasync' AND ({kernel} LIKE '%ep_poll%' OR {user} LIKE '%flip_wait_epoll%')) OR \
                  (s.syscall = 'epoll_wait' AND ({kernel} LIKE '%sync%' OR {user} LIKE '%flip_sync_file%')))"
            ),
        );
        panic!(
            "rows whose stack is of the other wait (fdatasync with epoll_wait's, epoll_wait with fdatasync's): {rows:?}\n{mixed:#?}"
        );
    }
}
