//! Passive syscalls (the default) against exact ones (`--syscalls exact`),
//! on the ground-truth workload: what the default gives up.
//!
//! Without a sys_enter hook, a syscall's time counts from the switch-out
//! that found the thread inside it, so `syscall_us` is short by the time
//! between the entry and that switch-out — the same quantity the exact
//! mode shows as `syscall_us - state_since_us` of a thread asleep in its
//! syscall. The test measures it in exact mode and checks that the
//! default's values are lower bounds, marked as such, off by no more.

use std::path::Path;

use crate::support::*;

/// Typical shortfall of the default's `syscall_us` against the exact value
/// on a thread that blocks as soon as it enters: the median of exact
/// mode's entry-to-switch-out gap (the README's documented error).
const ENTRY_TO_SWITCH_MEDIAN_US: f64 = 100.0;

/// Most that gap may be: a thread preempted between its entry and its
/// sleep adds its wait on the run queue (1.25 ms seen once in CI with the
/// suite's other agents busy on both CPUs), still far below the 200 ms
/// sleep.
const ENTRY_TO_SWITCH_MAX_US: f64 = 50_000.0;

/// One run of the agent on `workload` with `args` added, 3 s at 50 Hz.
fn run(workload: &Workload, out: &Path, args: &[&str]) {
    let status = AgentRun::new()
        .args(["--all", "--frequency", "50", "--pid"])
        .args([workload.pid().to_string()])
        .args(args)
        .duration(3)
        .output(out)
        .run();
    assert_success(&status);
}

fn rows_of(tid: i64, syscall: &str) -> String {
    format!(
        "FROM read_csv('samples/*/*/*.csv.zst') WHERE tid = {tid} AND syscall = '{syscall}' \
         AND state = 'SLEEP'"
    )
}

#[test]
fn default_syscall_times_are_marked_lower_bounds_within_the_entry_latency() {
    require_root();
    let _serial = exclusive();
    let started = epoch_us();
    let workload = Workload::start();
    let scratch = scratch();
    let (passive, exact) = (scratch.path().join("passive"), scratch.path().join("exact"));
    // The pipe reader stays asleep on one CPU throughout.
    let reader_cpu = last_cpu(workload.tid("piperead"));
    let lost_before = irq_and_steal_us(reader_cpu);
    run(&workload, &passive, &[]);
    run(&workload, &exact, &["--syscalls", "exact"]);
    let lost_between = irq_and_steal_us(reader_cpu) - lost_before;
    assert_eq!(
        last_cpu(workload.tid("piperead")),
        reader_cpu,
        "the pipe reader asleep in read() moved to another CPU"
    );

    // The sleeper: clock_nanosleep(200 ms) in a loop, entered while the
    // agents ran.
    let sleeper = rows_of(workload.tid("sleeper"), "clock_nanosleep");
    let stats = |out: &Path| {
        query(
            out,
            &format!(
                "SELECT count(*) n, \
                 count(*) FILTER (WHERE syscall_us_lower_bound) bounded, \
                 count(*) FILTER (WHERE since_lower_bound) seeded, \
                 count(*) FILTER (WHERE syscall_us IS NULL) no_time, \
                 coalesce(min(syscall_us - state_since_us), -1) min_gap, \
                 coalesce(max(syscall_us - state_since_us), -1) max_gap, \
                 coalesce(quantile_cont(syscall_us - state_since_us, 0.5), -1) p50_gap, \
                 coalesce(max(syscall_us) FILTER (WHERE NOT since_lower_bound), -1) max_us, \
                 coalesce(max(syscall_us) FILTER (WHERE since_lower_bound), -1) max_seeded_us, \
                 avg(syscall_us) avg_us {sleeper}"
            ),
        )
        .remove(0)
    };
    let number = |row: &serde_json::Map<String, serde_json::Value>, key: &str| {
        row[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {row:?}"))
    };
    let ticks = |out: &Path| {
        query_number(
            out,
            "SELECT count(DISTINCT ts) FROM read_csv('samples/*/*/*.csv.zst')",
        )
    };
    eprintln!(
        "ticks: passive {}, exact {}",
        ticks(&passive),
        ticks(&exact)
    );
    let (p, e) = (stats(&passive), stats(&exact));
    eprintln!("sleeper, passive: {p:?}\nsleeper, exact: {e:?}");
    let n = number(&p, "n");
    // 150 ticks; fewer when the writer drops some on a loaded machine.
    assert!(n >= 40.0, "passive: {n} rows of the sleeper asleep");
    // The default: every row has a time, marked a lower bound (not one
    // from before the agent started), counted from the switch-out.
    assert_eq!(
        number(&p, "no_time"),
        0.0,
        "passive rows without syscall_us"
    );
    assert_eq!(
        number(&p, "bounded"),
        n,
        "passive rows not marked lower bounds"
    );
    // Only the sleep under way when the agent started counts from before
    // it (at most 200 ms of ticks at 50 Hz).
    assert!(
        number(&p, "seeded") <= 11.0,
        "passive: {} rows marked since_lower_bound",
        number(&p, "seeded")
    );
    assert_eq!(
        (number(&p, "min_gap"), number(&p, "max_gap")),
        (0.0, 0.0),
        "passive: syscall_us counts from the switch-out (= state_since_us)"
    );
    // One clock_nanosleep(200 ms) asleep: at most its 200 ms and a late
    // timer (tens of ms on this shared machine under load).
    assert!(
        number(&p, "max_us") <= 250_000.0,
        "passive: a 200 ms sleep shown {} us long",
        number(&p, "max_us")
    );
    // Exact: the entry seen, not a bound; what the default gives up is the
    // entry-to-switch-out time, which exact mode shows.
    let n = number(&e, "n");
    assert!(n >= 40.0, "exact: {n} rows of the sleeper asleep");
    assert_eq!(number(&e, "no_time"), 0.0, "exact rows without syscall_us");
    assert!(
        number(&e, "bounded") == number(&e, "seeded") && number(&e, "seeded") <= 11.0,
        "exact rows marked lower bounds: {e:?}"
    );
    assert!(
        number(&e, "min_gap") >= 0.0
            && number(&e, "p50_gap") <= ENTRY_TO_SWITCH_MEDIAN_US
            && number(&e, "max_gap") <= ENTRY_TO_SWITCH_MAX_US,
        "exact: entry to switch-out {}..{} us, median {} us; documented median at most \
         {ENTRY_TO_SWITCH_MEDIAN_US} us, the run-queue wait of a preemption at most \
         {ENTRY_TO_SWITCH_MAX_US} us",
        number(&e, "min_gap"),
        number(&e, "max_gap"),
        number(&e, "p50_gap")
    );
    // Both see the same sleep: averages within sampling noise (uniform
    // over 200 ms, 40 to 150 rows each: standard error 5 to 9 ms).
    let (avg_p, avg_e) = (number(&p, "avg_us"), number(&e, "avg_us"));
    assert!(
        (avg_p - avg_e).abs() <= 25_000.0,
        "sleeper's mean syscall_us: passive {avg_p:.0} us, exact {avg_e:.0} us"
    );

    // The pipe reader blocked in read() before either agent started: both
    // modes give the same seeded lower bound, marked in both columns, and
    // the same arguments as /proc.
    let reader = rows_of(workload.tid("piperead"), "read");
    let entry = |out: &Path| {
        query(
            out,
            &format!(
                "SELECT count(*) n, \
                 count(*) FILTER (WHERE syscall_us_lower_bound AND since_lower_bound) bounded, \
                 min(epoch_us(ts) - syscall_us) first_entry, max(epoch_us(ts) - syscall_us) last_entry, \
                 count(DISTINCT (syscall_arg0, syscall_arg1, syscall_arg2, syscall_arg3, syscall_arg4, syscall_arg5)) args \
                 {reader}"
            ),
        )
        .remove(0)
    };
    let (p, e) = (entry(&passive), entry(&exact));
    eprintln!("pipe reader, passive: {p:?}\npipe reader, exact: {e:?}");
    for row in [&p, &e] {
        let n = number(row, "n");
        assert!(n >= 40.0, "{n} rows of the pipe reader asleep");
        assert_eq!(
            number(row, "bounded"),
            n,
            "pipe reader rows not lower bounds: {row:?}"
        );
        assert_eq!(
            number(row, "args"),
            1.0,
            "pipe reader's arguments changed: {row:?}"
        );
    }
    // The entry instant each row implies: the same in every row of a run,
    // never before the reader entered read() (a lower bound never
    // overstates the wait), and in both runs nearly the same (the
    // scheduler's last-ran time, not the hook). It is converted from the
    // run queue's task clock, which leaves out IRQ and steal time: what
    // accumulates of those on the reader's CPU between the two runs moves
    // the second run's bound later (232 ms once in CI, on a VM whose host
    // was busy), so that much is allowed, taken from that CPU's line of
    // /proc/stat, plus a tick per field for its rounding. Earlier only by what the offset between the
    // scheduler's clock and CLOCK_MONOTONIC moved between the runs (NTP
    // slews the latter, up to 0.5 ms per second): -1.3 ms once in the
    // suite, so 5 ms are allowed.
    let spread = number(&p, "last_entry") - number(&p, "first_entry");
    assert!(
        spread <= 1_000.0,
        "passive: entry instants spread {spread} us"
    );
    for (run, row) in [("passive", &p), ("exact", &e)] {
        let early = started - number(row, "first_entry");
        assert!(
            early <= 5_000.0,
            "{run}: the reader's entry put {early} us before the workload started"
        );
    }
    let later = number(&e, "first_entry") - number(&p, "first_entry");
    let rounding = 3.0 * 10_000.0;
    eprintln!("IRQ and steal time on CPU {reader_cpu} between the runs: {lost_between} us");
    assert!(
        (-5_000.0..=5_000.0 + lost_between + rounding).contains(&later),
        "the exact run's (second) entry instant is {later} us after the passive run's \
         ({lost_between} us of IRQ and steal time between them)"
    );
}

/// Microseconds since the epoch, as the files' `ts` counts them.
fn epoch_us() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_micros() as f64
}

/// IRQ, soft-IRQ and steal time of `cpu` so far (from its line of
/// /proc/stat, in clock ticks of 10 ms), in microseconds: what its run
/// queue's task clock leaves out.
fn irq_and_steal_us(cpu: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("no {name} line in /proc/stat"));
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().expect("a /proc/stat counter"))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    (fields[5] + fields[6] + fields[7]) * 10_000.0
}

/// The CPU `tid` last ran on (field 39 of its stat).
fn last_cpu(tid: i64) -> usize {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).expect("the thread's stat");
    // Fields after the command's closing parenthesis start at field 3.
    let rest = &stat[stat.rfind(')').expect("stat's comm") + 2..];
    rest.split_whitespace()
        .nth(39 - 3)
        .and_then(|f| f.parse().ok())
        .expect("the processor field")
}
