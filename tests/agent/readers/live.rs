//! The period an agent is still writing: read once, and only by those
//! allowed to read it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

#[test]
fn the_period_being_written_is_read_once_by_those_allowed() {
    require_root();
    let _serial = exclusive();
    let workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let dir = out.to_str().unwrap().to_string();
    let started = Instant::now();
    let mut agent = AgentRun::new()
        .args([
            "--all",
            "--frequency",
            "10",
            "--flush-interval",
            "1s",
            "--file-mode",
            "0640",
            "--group",
            "adm",
        ])
        .output(Path::new(&dir))
        .spawn();
    // Two flushes after the first tick (loading takes longer on a busy
    // machine).
    wait_for_first_tick(&out, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let elapsed = || started.elapsed().as_secs_f64() + 0.5;

    // The journals are as private as the published files will be.
    let inprogress = out.join(".inprogress");
    let meta = std::fs::metadata(&inprogress).expect(".inprogress");
    assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o750, 4));
    let journals = files_under(&inprogress);
    assert!(
        journals
            .iter()
            .any(|j| j.to_string_lossy().starts_with("samples-")),
        "{journals:?}"
    );
    for journal in &journals {
        let meta = std::fs::metadata(inprogress.join(journal)).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.gid()),
            (0o640, 4),
            "{}",
            journal.display()
        );
    }

    // A member of the group reads the open period (nothing is published
    // before the hour ends) up to its last flush; others are told what
    // they cannot read.
    let args = [
        "report",
        "--dir",
        dir.as_str(),
        "--since",
        "5m",
        "--all-states",
        "--format",
        "json",
    ];
    // The first flush comes a flush interval after the first tick, which
    // a loaded machine may delay past the sleep above.
    let mut member = taskscope_as(4, &args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !member.status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        member = taskscope_as(4, &args);
    }
    assert!(member.status.success(), "{}", stderr(&member));
    let live = json_of(&member);
    let sampled = live["sampled_seconds"].as_f64().unwrap();
    assert!(sampled >= 2.0 && sampled <= elapsed(), "{live}");
    assert!(live["in_progress_until"].is_string(), "{live}");
    let other = taskscope_as(65534, &args);
    assert_eq!(other.status.code(), Some(3), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("Permission denied"),
        "{}",
        stderr(&other)
    );
    let flame = taskscope(&["flamegraph", "--dir", &dir, "--since", "5m", "--folded"]);
    assert!(
        flame.status.success() && !flame.stdout.is_empty(),
        "{}",
        stderr(&flame)
    );

    // Export takes the open period as a finished copy, marked partial.
    let archive = scratch.path().join("live.tar.zst");
    let export = taskscope(&[
        "export",
        "--dir",
        &dir,
        "--since",
        "5m",
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", stderr(&export));
    let imported = scratch.path().join("live");
    let import = taskscope(&[
        "import",
        archive.to_str().unwrap(),
        "--dir",
        imported.to_str().unwrap(),
    ]);
    assert!(import.status.success(), "{}", stderr(&import));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(imported.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["partial"], true, "{manifest}");
    let files = manifest["files"].as_array().unwrap();
    assert!(
        !files.is_empty() && files.iter().all(|f| f["in_progress"] == true),
        "{manifest}"
    );
    let rows = query_number(
        &imported,
        "SELECT count(*) FROM read_csv('samples/*/*/*.csv.zst')",
    );
    assert_eq!(
        rows as u64,
        manifest["tables"]["samples"]["rows"].as_u64().unwrap()
    );
    let archived = report_ok(&[
        "report",
        "--dir",
        imported.to_str().unwrap(),
        "--all-states",
        "--format",
        "json",
    ]);
    assert!(
        archived["sampled_seconds"].as_f64().unwrap() >= 2.0,
        "{archived}"
    );

    // Periods published (SIGHUP) while reports read: each answer counts
    // every tick once (never more time than the agent has run).
    for round in 0..6 {
        let reader = Command::new(AGENT)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("report");
        std::thread::sleep(Duration::from_millis(10 * round));
        send_signal(&agent, nix::sys::signal::Signal::SIGHUP);
        let out = wait_with_limit(reader, Duration::from_secs(30));
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
        let report = json_of(&out);
        let sampled = report["sampled_seconds"].as_f64().unwrap();
        assert!(
            sampled > 2.0 && sampled <= elapsed(),
            "round {round}: {sampled} s sampled in {} s",
            elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    send_signal(&agent, nix::sys::signal::Signal::SIGTERM);
    let status = agent.wait().expect("agent");
    let mut log = String::new();
    if let Some(mut pipe) = agent.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut log);
    }
    assert!(status.success(), "{log}");
    // All published now: the same ticks, counted once.
    let final_report = report_ok(&[
        "report",
        "--dir",
        &dir,
        "--since",
        "5m",
        "--all-states",
        "--format",
        "json",
    ]);
    let ticks = query_number(
        &out,
        "SELECT sum(weight_us) / 1e6 FROM read_csv('ticks/*/*/*.csv.zst')",
    );
    assert!(
        (final_report["sampled_seconds"].as_f64().unwrap() - ticks).abs() < 1e-6,
        "{final_report} vs {ticks} s of ticks"
    );
    drop(workload);
}
