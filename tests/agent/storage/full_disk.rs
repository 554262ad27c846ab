//! A full disk: the agent survives it and counts what it drops, and every
//! sample row ends in exactly one place (published, recovered or counted as
//! dropped), with the counts the files' own.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

use super::assert_files_whole;

#[test]
fn a_full_disk_is_survived_and_counted() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let small = scratch.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=640k,mode=0755", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "cannot mount a small tmpfs");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let out = small.join("out");
    let child = AgentRun::new()
        .args([
            "--all",
            "--frequency",
            "50",
            "--format",
            "csv,parquet",
            "--test-rotate-secs",
            "1",
            "--flush-interval",
            "1s",
        ])
        .output(&out)
        .spawn();
    // Fill it up.
    let start = Instant::now();
    loop {
        let st = rustix::fs::statvfs(&small).unwrap();
        if st.f_bavail < 8 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the file system did not fill up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent died on a full disk"
    );
    // Make room: writing resumes.
    let room_at = taskscope::store::timefmt::unix_micros_now();
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(grown.success());
    std::thread::sleep(Duration::from_secs(4));
    send_signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = wait_with_limit(child, Duration::from_secs(20));
    assert_success(&status);
    let log = String::from_utf8_lossy(&status.stderr);
    let errors = log
        .lines()
        .filter(|l| l.contains("cannot write samples"))
        .count();
    assert!(errors >= 1, "the full disk was not reported:\n{log}");
    assert!(
        errors <= 3,
        "errors are logged at most once a minute, got {errors}:\n{log}"
    );
    assert_files_whole(&out);
    let dropped = query_number(
        &out,
        "SELECT max(dropped_rows) FROM read_parquet('ticks/*/*/*.parquet')",
    );
    assert!(dropped > 0.0, "ticks.dropped_rows does not show the loss");
    let after = query_number(
        &out,
        &format!(
            "SELECT count(*) FROM read_csv('samples/*/*/*.csv.zst') WHERE epoch_us(ts) > {room_at}"
        ),
    );
    assert!(after > 0.0, "writing did not resume after space returned");
}

/// A disk that is full from the first seconds to the end (a 48 KiB tmpfs,
/// every thread at 10 Hz): every sample row the sampler produced ends in
/// exactly one place, published, recovered (this run or the next start)
/// or counted as dropped, and the counts are the files' own: restarted
/// with room, the agent publishes exactly the rows the first run said were
/// pending, and DuckDB counts published + recovered + pending rows. The
/// run that could not publish exits 1 saying where the rows are, and the
/// log never claims "writing again" at the end when nothing was written.
#[test]
fn a_full_disk_loses_no_row_unaccounted() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let small = scratch.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48k,mode=0755", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "cannot mount a small tmpfs");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let out = small.join("out");
    let run = AgentRun::new()
        .args(["--all", "-F", "10", "--flush-interval", "1s"])
        .duration(10)
        .output(&out);
    let child = run.spawn();
    // The disk fills up while the agent writes, however few threads this
    // host has: a filler takes every block left once the first tick is in.
    // and the first flush has put rows in the journal.
    wait_for_first_tick(&out, Duration::from_secs(30));
    let journal_bytes = || -> u64 {
        std::fs::read_dir(out.join(".inprogress"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("samples-"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    let start = Instant::now();
    let at_first_tick = journal_bytes();
    while journal_bytes() <= at_first_tick {
        assert!(start.elapsed() < Duration::from_secs(10), "no flush");
        std::thread::sleep(Duration::from_millis(50));
    }
    let filler = small.join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = [0u8; 4096];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
    }
    let first = wait_with_limit(child, Duration::from_secs(60));
    let log = String::from_utf8_lossy(&first.stderr).into_owned();
    let produced = log_field(&log, "sampler finished", "rows");
    let dropped_with_ticks = log_field(&log, "sampler finished", "dropped_tick_rows");
    let field = |key: &str| log_field(&log, "writer finished", key);
    let (received, published, recovered, dropped, pending) = (
        field("rows"),
        field("published_rows"),
        field("recovered_rows"),
        field("dropped_rows"),
        field("pending_rows"),
    );
    assert_eq!(
        produced,
        received + dropped_with_ticks,
        "sampler vs writer:\n{log}"
    );
    assert_eq!(
        received,
        published + recovered + dropped + pending,
        "rows unaccounted for:\n{log}"
    );
    assert!(dropped > 0, "the disk was not full:\n{log}");
    assert!(pending > 0, "the journal kept nothing:\n{log}");
    assert!(
        log.contains("cannot write samples"),
        "the full disk was not reported:\n{log}"
    );
    assert_eq!(first.status.code(), Some(1), "{log}");
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.starts_with("taskscope: error: ") && last.contains("published at the next start"),
        "{last}"
    );
    let closing = &log[log.find("sampler finished").unwrap()..];
    assert!(
        published > 0 || !closing.contains("writing again"),
        "'writing again' logged at exit with nothing written:\n{log}"
    );

    // Room again: the next start publishes exactly what was pending.
    std::fs::remove_file(&filler).unwrap();
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(grown.success());
    let second_start = taskscope::store::timefmt::unix_micros_now();
    let second = AgentRun::new()
        .args(["-F", "1"])
        .duration(1)
        .output(&out)
        .limit(Duration::from_secs(60))
        .run();
    assert_success(&second);
    let log2 = String::from_utf8_lossy(&second.stderr).into_owned();
    let recovered_at_start = log_field(&log2, "an earlier run left unfinished", "sample_rows");
    assert_eq!(recovered_at_start, pending, "{log2}");
    assert_files_whole(&out);
    let on_disk = query_number(
        &out,
        &format!(
            "SELECT count(*) FROM read_csv('samples/*/*/*.csv.zst', types = {{'ts': 'TIMESTAMP'}}) WHERE epoch_us(ts) < {second_start}"
        ),
    ) as u64;
    assert_eq!(
        on_disk,
        published + recovered + pending,
        "the first run's rows in the files"
    );
    assert!(
        std::fs::read_dir(out.join(".inprogress"))
            .unwrap()
            .all(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                !name.starts_with("samples-")
            }),
        "a samples journal is left in .inprogress"
    );
}
