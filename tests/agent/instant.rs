//! Rows that describe the sampling instant: no observer effect (the
//! thread the sampler displaced from its CPU is running, for the sample),
//! no blind start (threads already waiting when the agent starts get a
//! lower bound of how long).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// Threads of the test process that spin until dropped.
struct Spinners {
    tids: Vec<i64>,
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Spinners {
    fn start(count: usize) -> Spinners {
        let stop = Arc::new(AtomicBool::new(false));
        let (send, receive) = std::sync::mpsc::channel();
        let handles = (0..count)
            .map(|_| {
                let (stop, send) = (stop.clone(), send.clone());
                std::thread::spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    send.send(i64::from(unsafe { libc::gettid() }))
                        .expect("send tid");
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                })
            })
            .collect();
        let tids = (0..count).map(|_| receive.recv().expect("tid")).collect();
        Spinners {
            tids,
            stop,
            handles,
        }
    }

    /// Total time on a CPU and waiting on a run queue, nanoseconds, from
    /// /proc/<pid>/task/<tid>/schedstat (the scheduler's own accounting).
    fn schedstat(&self) -> (u64, u64) {
        self.tids.iter().fold((0, 0), |(run, wait), tid| {
            let path = format!("/proc/self/task/{tid}/schedstat");
            let text = std::fs::read_to_string(&path).expect("read schedstat");
            let mut fields = text
                .split_whitespace()
                .map(|f| f.parse::<u64>().expect("number"));
            let (r, w) = (fields.next().expect("run"), fields.next().expect("delay"));
            (run + r, wait + w)
        })
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// What one agent run saw of the spinners, and what the scheduler says.
struct Share {
    /// Share of the spinners' rows that say RUNQUEUE.
    sampled: f64,
    /// Share of their time the scheduler accounts as waiting for a CPU.
    truth: f64,
    /// Standard error of `sampled` from the spread between ticks: 0 on an
    /// idle machine (every tick sees one spinner of three waiting), larger
    /// when other load makes the number waiting vary from tick to tick.
    error: f64,
}

/// One agent run at `frequency` Hz on the spinners for `window`.
fn runqueue_share(spinners: &Spinners, frequency: u32, window: Duration) -> Share {
    let scratch = scratch();
    let out = scratch.path().join("out");
    let pid = std::process::id().to_string();
    let agent = AgentRun::new()
        .args([
            "--all",
            "--pid",
            &pid,
            "--frequency",
            &frequency.to_string(),
        ])
        .duration(format!("{}ms", window.as_millis() + 3_000))
        .output(&out)
        .spawn();
    wait_for_first_tick(&out, Duration::from_secs(30));
    let from_us = taskscope::store::timefmt::unix_micros_now();
    let (run_before, wait_before) = spinners.schedstat();
    std::thread::sleep(window);
    let (run_after, wait_after) = spinners.schedstat();
    let to_us = taskscope::store::timefmt::unix_micros_now();
    assert_success(&wait_with_limit(agent, Duration::from_secs(30)));

    let waited = (wait_after - wait_before) as f64;
    let truth = waited / (waited + (run_after - run_before) as f64);
    let tids = spinners
        .tids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let rows_in_window = format!(
        "FROM read_csv('samples/*/*/*.csv.zst') WHERE tid IN ({tids}) \
         AND epoch_us(ts) BETWEEN {from_us} AND {to_us}"
    );
    let rows = |what: &str| query_number(&out, &format!("SELECT {what} {rows_in_window}"));
    let count = rows("count(*)");
    assert!(
        count >= 9.0,
        "{frequency} Hz: only {count} spinner rows in the window"
    );
    let runnable = rows("avg(CASE WHEN state IN ('ON_CPU', 'RUNQUEUE') THEN 1.0 ELSE 0 END)");
    assert!(
        runnable >= 0.99,
        "{frequency} Hz: spinners ON_CPU or RUNQUEUE in {runnable:.3} of rows"
    );
    let sampled = rows("avg(CASE WHEN state = 'RUNQUEUE' THEN 1.0 ELSE 0 END)");
    let error = query_number(
        &out,
        &format!(
            "SELECT coalesce(stddev_samp(waiting) / sqrt(count(*)), 0) FROM \
             (SELECT avg(CASE WHEN state = 'RUNQUEUE' THEN 1.0 ELSE 0 END) AS waiting \
              {rows_in_window} GROUP BY ts)"
        ),
    );
    eprintln!(
        "{frequency} Hz: {count} rows, RUNQUEUE {:.1}% of rows (± {:.1} from tick to tick), \
         scheduler says {:.1}% of the time",
        sampled * 100.0,
        error * 100.0,
        truth * 100.0
    );
    Share {
        sampled,
        truth,
        error,
    }
}

/// Three spinners on two CPUs: at any instant one of them waits for a CPU
/// (33% on an otherwise idle machine; the scheduler's own accounting of
/// the same window is the truth on a busy one). The sampler preempts one
/// spinner to take its sample; that spinner is running, for the sample.
/// Within 5 points of the truth, plus twice the sampling error when other
/// load makes the ticks disagree (none on an idle machine).
#[test]
fn spinners_queue_as_often_as_the_scheduler_says() {
    require_root();
    let _serial = exclusive();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spinners = Spinners::start(cpus + 1);
    let mut failures = Vec::new();
    for (frequency, window_ms) in [(1, 10_000), (20, 3_000), (100, 3_000)] {
        let share = runqueue_share(&spinners, frequency, Duration::from_millis(window_ms));
        let tolerance = 0.05 + 2.0 * share.error;
        if (share.sampled - share.truth).abs() > tolerance {
            failures.push(format!(
                "{frequency} Hz: RUNQUEUE in {:.1}% of rows, the scheduler says {:.1}% (tolerance {:.1} points)",
                share.sampled * 100.0,
                share.truth * 100.0,
                tolerance * 100.0
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The first rows of `tid`, in tick order: (state, state_since_us,
/// syscall, syscall_us, since_lower_bound).
fn first_rows(out: &Path, tid: u32) -> Vec<serde_json::Map<String, serde_json::Value>> {
    query(
        out,
        &format!(
            "SELECT state, state_since_us, syscall, syscall_us, since_lower_bound \
             FROM read_csv('samples/*/*/*.csv.zst') WHERE tid = {tid} ORDER BY ts LIMIT 3"
        ),
    )
}

/// Threads blocked since before the agent started: their first rows say
/// they have waited at least as long (a lower bound, marked as one).
#[test]
fn waits_begun_before_the_agent_started_have_a_lower_bound() {
    require_root();
    let sleeper = Command::new("sleep")
        .arg("120")
        .stdin(Stdio::null())
        .spawn()
        .expect("start sleep");
    let mut reader = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start cat");
    let blocked_at = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(10_500));

    let _serial = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let (sleep_pid, cat_pid) = (sleeper.id(), reader.id());
    let status = AgentRun::new()
        .args(["--all", "--frequency", "10"])
        .args([
            "--pid",
            &sleep_pid.to_string(),
            "--pid",
            &cat_pid.to_string(),
        ])
        .duration(2)
        .output(&out)
        .run();
    let blocked_for_us = blocked_at.elapsed().as_micros() as f64;
    let mut sleeper = sleeper;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = reader.kill();
    let _ = reader.wait();
    assert_success(&status);

    for (pid, syscall) in [(sleep_pid, "clock_nanosleep"), (cat_pid, "read")] {
        let rows = first_rows(&out, pid);
        assert!(!rows.is_empty(), "no rows for {syscall} thread {pid}");
        for row in &rows {
            let number = |key: &str| row[key].as_f64().unwrap_or(-1.0);
            assert_eq!(row["state"], "SLEEP", "{row:?}");
            assert_eq!(row["syscall"], syscall, "{row:?}");
            assert_eq!(row["since_lower_bound"], true, "{row:?}");
            for key in ["state_since_us", "syscall_us"] {
                let value = number(key);
                assert!(
                    value >= 10e6 && value <= blocked_for_us,
                    "{key} {value} not between 10 s and {blocked_for_us} us: {row:?}"
                );
            }
        }
    }
}
