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
    let agent = AgentRun::new()
        .args(["-F", "10", "--test-rotate-secs", "1"])
        .duration(8)
        .output(&out)
        .spawn();
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
    let agent = AgentRun::new()
        .args(["-F", "10"])
        .duration(20)
        .output(&out)
        .spawn();
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

/// Sets CLOCK_REALTIME and, when dropped (also when the test panics), puts
/// it back where it would be had it never been touched: the wall time at
/// creation plus the CLOCK_MONOTONIC time elapsed since.
struct WallClockGuard {
    wall_at_start: std::time::SystemTime,
    mono_at_start: std::time::Instant,
}

impl WallClockGuard {
    fn new() -> WallClockGuard {
        WallClockGuard {
            wall_at_start: std::time::SystemTime::now(),
            mono_at_start: std::time::Instant::now(),
        }
    }

    fn set(&self, to: std::time::SystemTime) {
        let since = to
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time after 1970");
        rustix::time::clock_settime(
            rustix::time::ClockId::Realtime,
            rustix::time::Timespec {
                tv_sec: since.as_secs() as i64,
                tv_nsec: since.subsec_nanos() as _,
            },
        )
        .expect("clock_settime(CLOCK_REALTIME) (needs root)");
    }

    /// Where the wall clock would be without the test.
    fn true_now(&self) -> std::time::SystemTime {
        self.wall_at_start + self.mono_at_start.elapsed()
    }
}

impl Drop for WallClockGuard {
    fn drop(&mut self) {
        let now = self.true_now();
        self.set(now);
    }
}

/// The wall clock set back one hour for 3 s and forward again while the
/// agent runs at 10 Hz: ticks stay on the CLOCK_MONOTONIC schedule (every
/// deadline written, skipped or dropped is accounted for), rows carry the
/// wall time of their tick (so 3 s of rows say an hour earlier), each file
/// holds only rows of its own hour partition, no file is overwritten (every
/// row the writer wrote is read back) and DuckDB reads them all.
#[test]
fn wall_clock_jumps_keep_the_schedule_and_the_files() {
    require_root();
    let _guard = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let agent = AgentRun::new()
        .args(["--all", "-F", "10"])
        .duration(12)
        .output(&out)
        .spawn();
    std::thread::sleep(Duration::from_secs(3));
    {
        let clock = WallClockGuard::new();
        clock.set(clock.true_now() - Duration::from_secs(3600));
        std::thread::sleep(Duration::from_secs(3));
        // Dropping the guard sets the clock forward again.
    }
    let status = wait_with_limit(agent, Duration::from_secs(40));
    assert_success(&status);
    let log = String::from_utf8_lossy(&status.stderr);
    let written = log_field(&log, "writer finished", "ticks") as f64;
    let taken = log_field(&log, "sampler finished", "ticks") as f64;
    let missed = log_field(&log, "sampler finished", "missed_ticks") as f64;

    let ticks = "read_csv('ticks/*/*/*.csv.zst', hive_partitioning = true, filename = true)";
    let row = &query(
        &out,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT filename) AS files, \
             count(*) FILTER (WHERE epoch_us(ts) < (SELECT max(epoch_us(ts)) FROM {ticks}) - 1800000000) AS back, \
             count(*) FILTER (WHERE CAST(date AS VARCHAR) <> strftime(ts, '%Y-%m-%d') \
                              OR CAST(hour AS INTEGER) <> hour(ts)) AS misplaced \
             FROM {ticks}"
        ),
    )[0];
    let number = |key: &str| {
        row[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {row:?}"))
    };
    assert_eq!(
        number("n"),
        written,
        "ticks rows read back: {row:?}, writer wrote {written}"
    );
    assert_eq!(
        number("misplaced"),
        0.0,
        "rows outside their file's hour: {row:?}"
    );
    assert!(
        number("files") >= 3.0,
        "no new period at each jump: {row:?}"
    );
    // ~3 s of ticks at 10 Hz carry the earlier hour.
    assert!(
        (number("back") - 30.0).abs() <= 5.0,
        "{} ticks during the hour back, expected ~30: {row:?}",
        number("back")
    );
    // The monotonic schedule: 12 s at 10 Hz, whatever the wall clock did.
    assert!(
        (taken + missed - 120.0).abs() <= 3.0,
        "{taken} ticks taken and {missed} skipped in 12 s at 10 Hz"
    );
    let samples = query_number(
        &out,
        "SELECT count(DISTINCT ts) FROM read_csv('samples/*/*/*.csv.zst')",
    );
    assert!(
        samples >= written - 2.0,
        "samples of {samples} ticks, {written} written"
    );
    eprintln!("clock: {row:?}; taken {taken}, missed {missed}, written {written}");
}
