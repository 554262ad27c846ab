//! The named queries' answers on the ground-truth workload's files,
//! checked against what the workload did (`shipped_queries_answer_the_ground_truth`).

use std::path::Path;

use super::*;

/// What the ground-truth workload did, as the named queries tell it.
pub(super) fn check_answers(dir: &Path, format: &str, device: &str, pid: u32) {
    let by_pid = format!("FROM latency_summary(pid := {pid})");
    let results = run_sql(
        dir,
        format,
        &[
            "FROM top_activity(all_states := true)",
            "FROM top_waits()",
            "FROM latency_summary()",
            "FROM latency_histogram() WHERE name = 'clock_nanosleep'",
            "FROM top_stacks(all_states := true) WHERE top_comm IN ('gt-sleeper', 'gt-fsync')",
            "FROM top_syscalls(all_states := true)",
            "SELECT a.bucket_start, sum(a.avg_threads) AS threads, any_value(t.rows) AS rows \
             FROM active_threads(INTERVAL '1 second', all_states := true) a \
             JOIN (SELECT time_bucket(INTERVAL '1 second', ts) AS bucket_start, avg(rows) AS rows FROM ticks GROUP BY 1) t \
             USING (bucket_start) GROUP BY a.bucket_start",
            "FROM active_threads(INTERVAL '1 second') WHERE state = 'STOPPED'",
            "SELECT (SELECT count(*) FROM samples s WHERE kstack_id NOT IN (SELECT stack_id FROM stacks)) AS lost_kernel, \
                    (SELECT count(*) FROM samples s WHERE ustack_id NOT IN (SELECT stack_id FROM stacks)) AS lost_user, \
                    (SELECT count(*) FROM stacks) AS stacks, (SELECT count(DISTINCT stack_id) FROM stacks) AS ids, \
                    (SELECT count(*) FROM syscalls c WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.tid = c.tid AND s.syscall_seq = c.seq)) AS unsampled_syscalls, \
                    (SELECT count(*) FROM iorq r WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.tid = r.tid AND s.io_seq = r.seq)) AS unsampled_requests",
            "SELECT (SELECT count(*) FROM top_activity(from_ts := ago('10 minutes'))) AS recent, \
                    (SELECT count(*) FROM top_activity()) AS all_groups, \
                    (SELECT count(*) FROM top_activity(to_ts := ago('10 minutes'))) AS older, \
                    (SELECT count(*) FROM latency_summary(to_ts := ago('10 minutes'))) AS older_latencies",
            &by_pid,
            "FROM latency_histogram(pid := 1)",
            "FROM top_activity()",
            "FROM top_waits(all_states := true)",
        ],
    );
    let [activity, waits, summary, histogram, stacks, syscalls, timeline, stopped, joins, windows, workload_latencies, init_latencies, active, all_waits] =
        <[Vec<Row>; 14]>::try_from(results).expect("fourteen results");
    let context = |what: &str, rows: &[Row]| format!("{format}: {what}:\n{rows:#?}");

    // The sleeper is the one thread in clock_nanosleep, asleep all the time.
    let nanosleep = share_of(
        &activity,
        |r| text(r, "syscall") == "clock_nanosleep",
        "comm",
        "gt-sleeper",
        "avg_threads",
    );
    assert!(
        nanosleep >= 0.9,
        "{}",
        context("sleeper's share of clock_nanosleep", &activity)
    );
    let asleep: f64 = activity
        .iter()
        .filter(|r| {
            text(r, "comm") == "gt-sleeper"
                && text(r, "state") == "SLEEP"
                && text(r, "syscall") == "clock_nanosleep"
        })
        .map(|r| number(r, "avg_threads"))
        .sum();
    assert!(
        (0.7..=1.05).contains(&asleep),
        "{}",
        context(
            "the sleeper asleep in clock_nanosleep nearly all the time",
            &activity
        )
    );
    // The fsync thread holds most of the time in DISK.
    let disk = share_of(
        &activity,
        |r| text(r, "state") == "DISK",
        "comm",
        "gt-fsync",
        "avg_threads",
    );
    assert!(
        disk >= 0.9,
        "{}",
        context("fsync thread's share of DISK", &activity)
    );
    let disk_wait = waits
        .iter()
        .filter(|r| text(r, "state") == "DISK")
        .max_by(|a, b| number(a, "avg_threads").total_cmp(&number(b, "avg_threads")))
        .unwrap_or_else(|| panic!("{}", context("no DISK wait", &waits)));
    assert!(
        text(disk_wait, "top_comm") == "gt-fsync" && text(disk_wait, "syscall") == "fdatasync",
        "{}",
        context("top DISK wait", &waits)
    );
    assert!(
        waits
            .iter()
            .all(|r| !["ON_CPU", "SLEEP", "IDLE", "PARKED"].contains(&text(r, "state"))),
        "{}",
        context("top_waits lists a non-wait or an inactive state", &waits)
    );
    // Active threads only by default, like `taskscope report`; every state
    // (but ON_CPU, for waits) with all_states := true.
    assert!(
        active
            .iter()
            .all(|r| !["SLEEP", "IDLE"].contains(&text(r, "state")))
            && active.iter().any(|r| text(r, "state") == "ON_CPU"),
        "{}",
        context("top_activity() counts active states", &active)
    );
    assert!(
        all_waits.iter().any(|r| text(r, "state") == "SLEEP")
            && all_waits.iter().all(|r| text(r, "state") != "ON_CPU"),
        "{}",
        context("top_waits(all_states := true)", &all_waits)
    );
    let wait_share: f64 = waits.iter().map(|r| number(r, "share")).sum();
    assert!(
        (0.98..=1.02).contains(&wait_share),
        "{}",
        context("shares", &waits)
    );

    // Recorded latencies: the 200 ms sleeps, and the fsync thread's I/O on
    // its disk.
    let sleeps = summary
        .iter()
        .find(|r| text(r, "kind") == "syscall" && text(r, "name") == "clock_nanosleep")
        .unwrap_or_else(|| panic!("{}", context("no clock_nanosleep latency", &summary)));
    assert!(
        number(sleeps, "count") >= 5.0,
        "{}",
        context("sleeps", &summary)
    );
    assert!(
        (180_000.0..=240_000.0).contains(&number(sleeps, "p50_us")),
        "{}",
        context("clock_nanosleep p50 should be near 200 ms", &summary)
    );
    for (low, high) in [
        ("p50_us", "p95_us"),
        ("p95_us", "p99_us"),
        ("p99_us", "max_us"),
    ] {
        assert!(
            number(sleeps, low) <= number(sleeps, high),
            "{}",
            context("percentiles", &summary)
        );
    }
    assert!(
        summary.iter().any(|r| text(r, "name") == "fdatasync"),
        "{}",
        context("no fdatasync latency", &summary)
    );
    assert!(
        summary
            .iter()
            .any(|r| text(r, "kind") == "io" && text(r, "name").starts_with(&format!("{device} "))),
        "{}",
        context(&format!("no I/O latency on {device}"), &summary)
    );
    let fullest = histogram
        .iter()
        .max_by(|a, b| number(a, "count").total_cmp(&number(b, "count")))
        .unwrap_or_else(|| panic!("{}", context("no clock_nanosleep histogram", &histogram)));
    assert_eq!(
        (number(fullest, "low_us"), number(fullest, "high_us")),
        (131_072.0, 262_144.0),
        "{}",
        context("clock_nanosleep's log2 bucket holding 200 ms", &histogram)
    );
    let counted: f64 = histogram.iter().map(|r| number(r, "count")).sum();
    assert_eq!(
        counted,
        number(sleeps, "count"),
        "{}",
        context("histogram total", &histogram)
    );

    // Stacks: the sleeper's kernel and user stacks are in nanosleep, and
    // every id the samples use resolves to one stacks row.
    // Each frame has its kind: every kernel frame `kernel`, every frame of
    // this C program `native`.
    for (kind, frame_kind) in [("kernel", "kernel"), ("user", "native")] {
        let found = stacks.iter().any(|r| {
            let kinds: Vec<&str> = text(r, "frame_kinds").split(';').collect();
            text(r, "kind") == kind
                && text(r, "top_comm") == "gt-sleeper"
                && text(r, "frames").contains("nanosleep")
                && kinds.len() == text(r, "frames").split(';').count()
                && kinds.iter().all(|k| *k == frame_kind)
        });
        assert!(
            found,
            "{}",
            context(
                &format!("no {kind} nanosleep stack for the sleeper"),
                &stacks
            )
        );
    }
    assert!(
        stacks
            .iter()
            .any(|r| text(r, "top_comm") == "gt-fsync" && text(r, "frames").contains("fdatasync")),
        "{}",
        context("no fdatasync stack for the fsync thread", &stacks)
    );
    let joins = &joins[0];
    assert_eq!(number(joins, "lost_kernel"), 0.0, "{joins:?}");
    assert_eq!(number(joins, "lost_user"), 0.0, "{joins:?}");
    assert_eq!(
        number(joins, "stacks"),
        number(joins, "ids"),
        "stacks view: one row per id: {joins:?}"
    );
    assert_eq!(
        number(joins, "unsampled_syscalls"),
        0.0,
        "every syscalls row joins a sample: {joins:?}"
    );
    assert_eq!(
        number(joins, "unsampled_requests"),
        0.0,
        "every iorq row joins a sample: {joins:?}"
    );

    // Syscalls by time: the sleeper's, with its recorded calls.
    let nanosleep = syscalls
        .iter()
        .find(|r| text(r, "syscall") == "clock_nanosleep")
        .unwrap_or_else(|| panic!("{}", context("no clock_nanosleep", &syscalls)));
    assert_eq!(
        text(nanosleep, "top_comm"),
        "gt-sleeper",
        "{}",
        context("top_syscalls", &syscalls)
    );
    assert!(
        number(nanosleep, "recorded_calls") >= 5.0,
        "{}",
        context("top_syscalls", &syscalls)
    );
    assert!(
        (180_000.0..=240_000.0).contains(&number(nanosleep, "avg_us")),
        "{}",
        context("clock_nanosleep average", &syscalls)
    );

    // The timeline adds up to the rows per tick, and the stopped process is
    // in every bucket.
    assert!(
        timeline.len() >= 3,
        "{}",
        context("timeline buckets", &timeline)
    );
    for bucket in &timeline {
        let (threads, rows) = (number(bucket, "threads"), number(bucket, "rows"));
        assert!(
            (threads - rows).abs() <= 0.01 * rows + 0.01,
            "{}",
            context("active_threads per bucket vs ticks.rows", &timeline)
        );
    }
    assert_eq!(
        stopped.len(),
        timeline.len(),
        "{}",
        context("STOPPED buckets", &stopped)
    );
    assert!(
        stopped.iter().all(|r| number(r, "avg_threads") >= 0.9),
        "{}",
        context("the stopped child in each bucket", &stopped)
    );

    // Time windows: the data is minutes old at most.
    let windows = &windows[0];
    assert_eq!(
        number(windows, "recent"),
        number(windows, "all_groups"),
        "{windows:?}"
    );
    assert_eq!(number(windows, "older"), 0.0, "{windows:?}");
    assert_eq!(number(windows, "older_latencies"), 0.0, "{windows:?}");

    // Only the workload was sampled, so its pid selects every recorded
    // latency, and pid 1 none.
    assert_eq!(workload_latencies, summary, "latency_summary(pid := {pid})");
    assert!(
        init_latencies.is_empty(),
        "{}",
        context("pid 1", &init_latencies)
    );
}
