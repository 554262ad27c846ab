//! The files never break or vanish: both formats agree, readers never see a
//! partial file, kill -9 loses at most the flush interval, a full disk is
//! survived (`full_disk`), retention keeps the newest periods, modes and
//! groups hold.

mod full_disk;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Every published data file is whole: zstd frames check out, Parquet
/// footers read, and DuckDB reads every row of both tables.
fn assert_files_whole(out: &Path) {
    let files = files_under(out);
    let csv: Vec<_> = files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".csv.zst") && !f.starts_with(".inprogress"))
        .collect();
    let parquet: Vec<_> = files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".parquet") && !f.starts_with(".inprogress"))
        .collect();
    for f in &csv {
        shell(out, &format!("zstd -tq '{}'", f.display()));
    }
    for table in ["samples", "ticks"] {
        if csv.iter().any(|f| f.starts_with(table)) {
            let nulls = query_number(
                out,
                &format!("SELECT count(*) FROM read_csv('{table}/*/*/*.csv.zst') WHERE ts IS NULL"),
            );
            assert_eq!(nulls, 0.0, "{table}: rows without a timestamp");
        }
        if parquet.iter().any(|f| f.starts_with(table)) {
            let nulls = query_number(
                out,
                &format!(
                    "SELECT count(*) FROM read_parquet('{table}/*/*/*.parquet') WHERE ts IS NULL"
                ),
            );
            assert_eq!(nulls, 0.0, "{table}: parquet rows without a timestamp");
        }
    }
}

#[test]
fn csv_and_parquet_hold_identical_rows_with_the_right_types() {
    require_root();
    let _serial = exclusive();
    let (_workload, _scratch, out) = sample_workload(&[
        "--all",
        "--frequency",
        "20",
        "--duration",
        "3",
        "--format",
        "csv,parquet",
    ]);
    for table in ["samples", "ticks"] {
        let csv = query_number(
            &out,
            &format!("SELECT count(*) FROM read_csv('{table}/*/*/*.csv.zst')"),
        );
        let parquet = query_number(
            &out,
            &format!("SELECT count(*) FROM read_parquet('{table}/*/*/*.parquet')"),
        );
        assert!(
            csv > 0.0 && csv == parquet,
            "{table}: {csv} CSV rows, {parquet} Parquet rows"
        );
        let differing = query_number(
            &out,
            &format!(
                "SELECT count(*) FROM (SELECT * FROM read_parquet('{table}/*/*/*.parquet') EXCEPT ALL SELECT * FROM read_csv('{table}/*/*/*.csv.zst'))"
            ),
        );
        assert_eq!(differing, 0.0, "{table}: Parquet rows missing from CSV");
    }
    let types = query(&out, "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('samples/*/*/*.parquet'))");
    let type_of = |name: &str| {
        types
            .iter()
            .find(|r| r["column_name"] == name)
            .map(|r| r["column_type"].as_str().unwrap().to_string())
    };
    assert_eq!(type_of("ts").as_deref(), Some("TIMESTAMP"));
    for int in [
        "tid",
        "tgid",
        "state_since_us",
        "syscall_nr",
        "io_bytes",
        "weight_us",
    ] {
        assert_eq!(type_of(int).as_deref(), Some("BIGINT"), "{int}");
    }
    assert_eq!(type_of("state").as_deref(), Some("VARCHAR"));
    let meta = query(
        &out,
        "SELECT DISTINCT key::VARCHAR k FROM parquet_kv_metadata('samples/*/*/*.parquet')",
    );
    for key in [
        "host",
        "kernel",
        "taskscope_version",
        "frequency_hz",
        "boot_time",
    ] {
        assert!(
            meta.iter().any(|r| r["k"] == key),
            "Parquet metadata lacks {key}: {meta:?}"
        );
    }
    // One ticks row per tick, counting the tick's sample rows.
    let mismatched = query_number(
        &out,
        "SELECT count(*) FROM read_parquet('ticks/*/*/*.parquet') t FULL JOIN \
         (SELECT ts, count(*) n FROM read_parquet('samples/*/*/*.parquet') GROUP BY ts) s USING (ts) \
         WHERE t.rows IS DISTINCT FROM s.n",
    );
    assert_eq!(
        mismatched, 0.0,
        "ticks.rows must match the samples of each tick"
    );
}

#[test]
fn readers_never_see_a_partial_file() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let child = AgentRun::new()
        .args([
            "--all",
            "--frequency",
            "10",
            "--format",
            "csv,parquet",
            "--test-rotate-secs",
            "1",
            "--flush-interval",
            "1s",
        ])
        .output(&out)
        .spawn();
    // Wait for the first published files.
    let start = Instant::now();
    while !files_under(&out)
        .iter()
        .any(|f| f.starts_with("samples") && f.to_string_lossy().ends_with(".parquet"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing published"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every 100 ms, alternately over the CSV and the Parquet glob: every
    // query succeeds, sees only whole rows, and rows only ever appear.
    let mut last = [0.0, 0.0];
    let mut queries = 0;
    let until = Instant::now() + Duration::from_secs(10);
    let mut next_hup = Instant::now();
    while Instant::now() < until {
        if Instant::now() >= next_hup {
            send_signal(&child, nix::sys::signal::Signal::SIGHUP);
            next_hup = Instant::now() + Duration::from_millis(700);
        }
        let which = queries % 2;
        let sql = if which == 0 {
            "SELECT count(*) FROM read_csv('samples/*/*/*.csv.zst') WHERE ts IS NOT NULL AND tid IS NOT NULL AND weight_us IS NOT NULL"
        } else {
            "SELECT count(*) FROM read_parquet('samples/*/*/*.parquet') WHERE ts IS NOT NULL AND weight_us IS NOT NULL"
        };
        let rows = query_number(&out, sql);
        assert!(
            rows >= last[which],
            "rows disappeared: {} -> {rows}",
            last[which]
        );
        last[which] = rows;
        queries += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    send_signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_success(&wait_with_limit(child, Duration::from_secs(10)));
    assert!(queries >= 15, "only {queries} queries ran");
    assert_files_whole(&out);
    let final_rows = query_number(
        &out,
        "SELECT count(*) FROM read_parquet('samples/*/*/*.parquet')",
    );
    assert!(final_rows >= last[1]);
}

/// A deterministic sequence of pseudo-random numbers (printed seed).
struct Lcg(u64);

impl Lcg {
    fn next_ms(&mut self, low: u64, high: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        low + (self.0 >> 33) % (high - low)
    }
}

#[test]
fn kill_9_at_random_moments_loses_at_most_the_flush_interval() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let seed = taskscope::store::timefmt::unix_micros_now() as u64;
    println!("seed {seed}");
    let mut rng = Lcg(seed);
    let agent = AgentRun::new()
        .args([
            "--all",
            "--frequency",
            "20",
            "--format",
            "csv,parquet",
            "--test-rotate-secs",
            "2",
            "--flush-interval",
            "1s",
        ])
        .output(&out);
    // (start, kill) wall-clock times in microseconds of each run.
    let mut runs = Vec::new();
    for _ in 0..20 {
        let started = taskscope::store::timefmt::unix_micros_now();
        let spawned = std::time::SystemTime::now();
        let child = agent.spawn();
        // Killed at a random moment of sampling, however long loading
        // takes on a busy machine: from this run's first journal on (the
        // previous run's is older).
        let begun = Instant::now();
        while !files_under(&out.join(".inprogress")).iter().any(|f| {
            f.to_string_lossy().starts_with("ticks-")
                && std::fs::metadata(out.join(".inprogress").join(f))
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= spawned)
        }) {
            assert!(begun.elapsed() < Duration::from_secs(60), "no first tick");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.next_ms(1_500, 4_500)));
        let killed = taskscope::store::timefmt::unix_micros_now();
        send_signal(&child, nix::sys::signal::Signal::SIGKILL);
        let _ = wait_with_limit(child, Duration::from_secs(10));
        runs.push((started, killed));
        // Between restarts, whatever is published reads cleanly.
        assert_files_whole(&out);
    }
    // A last, clean run recovers the last journal.
    let status = AgentRun::new()
        .args(["--all", "--frequency", "20", "--format", "csv,parquet"])
        .duration(1)
        .output(&out)
        .run();
    assert_success(&status);
    assert_files_whole(&out);
    assert!(
        files_under(&out.join(".inprogress")).is_empty(),
        "journals left behind"
    );

    for format in [
        "read_csv('samples/*/*/*.csv.zst')",
        "read_parquet('samples/*/*/*.parquet')",
    ] {
        // Nothing was published twice.
        let dupes = query_number(
            &out,
            &format!("SELECT count(*) - count(DISTINCT (ts, tid)) FROM {format}"),
        );
        assert_eq!(dupes, 0.0, "{format}: rows published twice");
        for (i, (started, killed)) in runs.iter().enumerate() {
            // From the run's first tick to one flush interval (plus a tick)
            // before the kill, nothing is missing: no gap longer than a few
            // ticks (a loaded machine may skip a tick, which the agent
            // counts in ticks.missed_ticks; lost data would leave a gap of
            // a whole flush interval), and the tail reaches the flush point.
            let flushed = killed - 1_100_000;
            let window = query(
                &out,
                &format!(
                    "SELECT min(t) first_us, max(t) last_us, max(gap) max_gap, count(*) ticks \
                     FROM (SELECT t, t - lag(t) OVER (ORDER BY t) gap \
                           FROM (SELECT DISTINCT epoch_us(ts) t FROM {format} \
                                 WHERE epoch_us(ts) BETWEEN {started} AND {killed}))"
                ),
            );
            let row = &window[0];
            let last = row["last_us"]
                .as_i64()
                .unwrap_or_else(|| panic!("run {i}: no samples at all"));
            let max_gap = row["max_gap"].as_i64().unwrap_or(0);
            assert!(
                max_gap <= MAX_SKIPPED_GAP_US,
                "run {i} ({format}): a {max_gap} µs hole in the ticks before the kill ({row:?})"
            );
            assert!(
                last >= flushed - MAX_SKIPPED_GAP_US,
                "run {i} ({format}): the last surviving tick is {} ms before the kill, \
                 more than the flush interval ({row:?})",
                (killed - last) / 1000
            );
        }
    }
}

/// The longest run of skipped ticks a busy 2-CPU machine may cause at 20 Hz
/// (each is 50 ms); data lost on kill -9 would leave a hole of a second.
const MAX_SKIPPED_GAP_US: i64 = 300_000;

#[test]
fn retention_keeps_the_newest_periods_under_the_limit() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let limit: u64 = 256 << 10;
    let status = AgentRun::new()
        .args([
            "--all",
            "--frequency",
            "50",
            "--format",
            "csv,parquet",
            "--test-rotate-secs",
            "1",
            "--max-disk",
            "256K",
        ])
        .duration(12)
        .output(&out)
        .limit(Duration::from_secs(60))
        .run();
    assert_success(&status);
    let total: u64 = files_under(&out)
        .iter()
        .filter(|f| !f.starts_with(".inprogress") && f.to_string_lossy().contains("date="))
        .map(|f| std::fs::metadata(out.join(f)).unwrap().len())
        .sum();
    assert!(
        total <= limit,
        "{total} bytes published over the {limit} limit"
    );
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("retention deleted"),
        "nothing was deleted"
    );
    // What remains is the newest periods: no gap between them and the end.
    let last = query_number(
        &out,
        "SELECT epoch_us(max(ts)) FROM read_parquet('samples/*/*/*.parquet')",
    );
    let end = query_number(
        &out,
        "SELECT epoch_us(max(ts)) FROM read_parquet('ticks/*/*/*.parquet')",
    );
    assert!(end - last < 1_000_000.0, "the newest period is missing");
    let first = query_number(
        &out,
        "SELECT epoch_us(min(ts)) FROM read_parquet('samples/*/*/*.parquet')",
    );
    let kept_ticks = query_number(
        &out,
        "SELECT count(DISTINCT ts) FROM read_parquet('samples/*/*/*.parquet')",
    );
    let span_ticks = (last - first) / 20_000.0 + 1.0;
    assert!(
        kept_ticks >= span_ticks * 0.95,
        "periods are missing in the middle: {kept_ticks} of {span_ticks}"
    );
}

#[test]
fn group_only_access_with_file_mode_and_group() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    // gid 4 is Debian's `adm`; nobody (65534) is not in it.
    let status = AgentRun::new()
        .args(["--file-mode", "0640", "--group", "4"])
        .duration(1)
        .output(&out)
        .run();
    assert_success(&status);
    for entry in files_under(&out)
        .iter()
        .filter(|f| f.to_string_lossy().contains("date="))
    {
        let meta = std::fs::metadata(out.join(entry)).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o640, 4), "{entry:?}");
        let hour = out.join(entry).parent().unwrap().to_path_buf();
        let meta = std::fs::metadata(&hour).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.gid()),
            (0o750, 4),
            "{}",
            hour.display()
        );
    }
    let glob = format!("{}/samples/*/*/*.csv.zst", out.display());
    let read_as = |gid: u32| {
        Command::new("sh")
            .args(["-c", &format!("zstdcat {glob} | head -1")])
            .uid(65534)
            .gid(gid)
            .output()
            .unwrap()
    };
    let member = read_as(4);
    assert!(
        String::from_utf8_lossy(&member.stdout).starts_with("ts,"),
        "a member of the group cannot read"
    );
    let stranger = read_as(65534);
    assert!(
        !String::from_utf8_lossy(&stranger.stdout).starts_with("ts,"),
        "someone outside the group can read"
    );
}

#[test]
fn sighup_publishes_the_current_period_at_once() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("out");
    // Hourly files: without SIGHUP nothing would be published for an hour.
    let child = AgentRun::new()
        .args(["--all", "--frequency", "10", "--format", "parquet"])
        .output(&out)
        .spawn();
    std::thread::sleep(Duration::from_secs(3));
    let parquet = |out: &Path| {
        files_under(out)
            .into_iter()
            .filter(|f| f.starts_with("samples") && f.to_string_lossy().ends_with(".parquet"))
            .count()
    };
    assert_eq!(parquet(&out), 0, "published before the period ended");
    send_signal(&child, nix::sys::signal::Signal::SIGHUP);
    let asked = Instant::now();
    while parquet(&out) == 0 {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "SIGHUP did not publish within 2 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = query_number(
        &out,
        "SELECT count(*) FROM read_parquet('samples/*/*/*.parquet')",
    );
    assert!(rows > 0.0);
    // Sampling goes on into a new file; SIGTERM publishes that one too.
    std::thread::sleep(Duration::from_secs(1));
    send_signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert_success(&wait_with_limit(child, Duration::from_secs(10)));
    assert_eq!(parquet(&out), 2);
    assert!(files_under(&out.join(".inprogress")).is_empty());
}
