//! Bad input: each case is a clear message on stderr (one line, or clap's
//! whole message for flags clap rejects), a non-zero exit, and nothing
//! written. And what users type for times, days and durations, and where
//! the output directory may be (`outputs`), through the real binary.

mod outputs;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::*;

/// Exit code `code` and exactly one line on stderr containing `needle`.
fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status; stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line of error, got:\n{stderr}");
    assert!(lines[0].starts_with("taskscope: error"), "{}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "{:?} does not mention {needle:?}",
        lines[0]
    );
}

/// A flag clap rejects: exit 2 and clap's whole message behind
/// `taskscope: `, whose first line contains `needle`.
fn assert_usage_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr:\n{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("taskscope: error: "), "{stderr}");
    assert!(
        first.contains(needle),
        "{first:?} does not mention {needle:?}"
    );
    assert!(
        stderr.contains("For more information, try '--help'."),
        "{stderr}"
    );
}

fn assert_nothing_written(dir: &Path) {
    assert!(
        !dir.exists() || files_under(dir).is_empty(),
        "{} has files: {:?}",
        dir.display(),
        files_under(dir)
    );
}

#[test]
fn help_and_version() {
    let out = taskscope(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("run") && help.contains("Sample thread states"),
        "{help}"
    );
    let out = taskscope(&["run", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--output-dir",
        "--frequency",
        "--all",
        "--pid",
        "--duration",
        "--format",
        "--rotate",
        "--verbose",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    let out = taskscope(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("taskscope "));
}

#[test]
fn unknown_flag() {
    let scratch = scratch();
    let out_dir = scratch.path().join("out");
    let out = taskscope(&["run", "--bogus", "--output-dir", out_dir.to_str().unwrap()]);
    assert_usage_error(&out, "unexpected argument '--bogus'");
    assert_nothing_written(&out_dir);
}

#[test]
fn frequency_out_of_range() {
    let scratch = scratch();
    let out_dir = scratch.path().join("out");
    for bad in ["0", "5000"] {
        let out = taskscope(&[
            "run",
            "--frequency",
            bad,
            "--output-dir",
            out_dir.to_str().unwrap(),
        ]);
        assert_usage_error(
            &out,
            &format!("invalid value '{bad}' for '--frequency <HZ>'"),
        );
    }
    assert_nothing_written(&out_dir);
}

#[test]
fn bad_storage_flags() {
    let scratch = scratch();
    let out_dir = scratch.path().join("out");
    for (args, needle) in [
        (
            vec!["--format", "json"],
            "invalid value 'json' for '--format <FORMAT>'",
        ),
        (
            vec!["--max-disk", "lots"],
            "invalid value 'lots' for '--max-disk <SIZE>'",
        ),
        (
            vec!["--max-disk", "1K"],
            "--max-disk must be at least 64KiB",
        ),
        (
            vec!["--max-age", "10m"],
            "--max-age 10m is shorter than --rotate 1h",
        ),
        (
            vec!["--file-mode", "0666"],
            "--file-mode 0666 lets others than the owner write",
        ),
        (
            vec!["--group", "no-such-group-anywhere"],
            "--group no-such-group-anywhere: no such group",
        ),
    ] {
        let mut all = vec!["run", "--no-pin", "--output-dir", out_dir.to_str().unwrap()];
        all.extend(args);
        let out = taskscope(&all);
        if needle.starts_with("invalid value") {
            assert_usage_error(&out, needle);
        } else {
            assert_one_line_error(&out, 2, needle);
        }
    }
    assert_nothing_written(&out_dir);
}

#[test]
fn not_root_is_refused() {
    let scratch = scratch();
    let out_dir = scratch.path().join("out");
    let out = wait_with_limit(
        AgentRun::new()
            .duration(1)
            .output(&out_dir)
            .command()
            .uid(65534)
            .gid(65534)
            .spawn()
            .expect("start taskscope as nobody"),
        Duration::from_secs(30),
    );
    assert_one_line_error(&out, 1, "needs root");
    assert!(
        !out_dir.exists(),
        "nothing may be created without privileges"
    );
}

#[test]
fn missing_kernel_btf() {
    require_root();
    let scratch = scratch();
    let out_dir = scratch.path().join("out");
    let out = AgentRun::new()
        .duration(1)
        .output(&out_dir)
        .env("TASKSCOPE_TEST_SYSFS_BTF", "/nonexistent/vmlinux")
        .run();
    assert_one_line_error(&out, 1, "kernel BTF not found at /nonexistent/vmlinux");
    assert!(!out_dir.exists());
}

#[test]
fn missing_pid() {
    let out = taskscope(&[
        "run",
        "--pid",
        "4194304",
        "--no-pin",
        "--output-dir",
        "/nonexistent",
    ]);
    assert_one_line_error(&out, 2, "--pid 4194304: no such process");
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of `micros`.
fn utc_text(micros: i64) -> String {
    let mut text = String::new();
    taskscope::store::timefmt::write_timestamp_micros(&mut text, micros);
    text.truncate(19);
    text
}

/// `--from` without `--to` reads up to now in report, flamegraph and
/// export alike (report and flamegraph called the window empty); a time
/// with an offset is the same instant as its UTC form; durations in the
/// friendly forms work in flags and in the settings file.
#[test]
fn from_without_to_reads_up_to_now() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let out_dir = scratch.path().join("out");
    let settings = scratch.path().join("taskscope.toml");
    std::fs::write(
        &settings,
        "duration = \"3 seconds\"\nmax-age = \"1d12h\"\nflush-interval = \"1s\"\n",
    )
    .expect("settings file");
    let started = taskscope::store::timefmt::unix_micros_now();
    let run = AgentRun::new()
        .args(["--config", settings.to_str().unwrap(), "-F", "10", "--all"])
        .output(&out_dir)
        .run();
    assert_success(&run);
    let took = taskscope::store::timefmt::unix_micros_now() - started;
    assert!(took < 20_000_000, "duration = \"3 seconds\" ran {took} us");
    let dir = out_dir.to_str().unwrap();
    let from_us = started / 60_000_000 * 60_000_000 - 60_000_000;
    let from = utc_text(from_us);
    let from_plus_one = format!("{}+01:00", utc_text(from_us + 3_600_000_000));

    let report = |from: &str| {
        let out = taskscope(&["report", "--dir", dir, "--from", from, "--format", "json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "report --from {from}: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (json["from"].as_str().unwrap_or_default().to_string(), json)
    };
    let (shown_from, json) = report(&from);
    assert!(shown_from.starts_with(&from), "{json}");
    let to = json["to"].as_str().expect("to");
    assert!(to > utc_text(started).as_str(), "--to is now: {json}");
    assert!(!json["rows"].as_array().expect("rows").is_empty(), "{json}");
    assert_eq!(report(&from_plus_one).0, shown_from, "offset +01:00");
    assert_eq!(
        report(&format!("{}Z", from.replace(' ', "T"))).0,
        shown_from
    );

    let folded = taskscope(&["flamegraph", "--dir", dir, "--from", &from, "--folded"]);
    assert!(
        folded.status.success() && !folded.stdout.is_empty(),
        "flamegraph --from without --to: {}",
        String::from_utf8_lossy(&folded.stderr)
    );
    let archive = scratch.path().join("a.tar.zst");
    let export = taskscope(&[
        "export",
        "--dir",
        dir,
        "--from",
        &from_plus_one,
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert!(
        export.status.success() && archive.exists(),
        "export --from without --to: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    // Friendly durations reach back the same way.
    let since = taskscope(&[
        "report", "--dir", dir, "--since", "1h 30m", "--format", "json",
    ]);
    assert!(
        since.status.success(),
        "{}",
        String::from_utf8_lossy(&since.stderr)
    );
}

/// Times and days that do not exist, times without a date and windows in
/// the future: exit 2 with the reason, in every reading command, and no
/// archive written (`export --day 2026-02-30` exported 2 March).
#[test]
fn impossible_times_and_future_windows_are_refused() {
    let scratch = scratch();
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let dir = data.to_str().unwrap();
    let archive = scratch.path().join("x.tar.zst");
    let archive = archive.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["export", "--day", "2026-02-30"],
            "2026-02-30 is not a date",
        ),
        (
            vec!["export", "--day", "2026-13-01"],
            "2026-13-01 is not a date",
        ),
        (
            vec!["export", "--from", "2026-04-31 08:00"],
            "is not a valid time",
        ),
        (
            vec!["report", "--from", "2026-02-30"],
            "is not a valid time",
        ),
        (
            vec!["report", "--to", "2026-11-30 24:00"],
            "is not a valid time",
        ),
        (vec!["flamegraph", "--from", "08:00"], "has no date"),
        (
            vec!["report", "--since", "1 fortnight"],
            "is not a duration",
        ),
        (vec!["report", "--since", "1mo"], "no fixed length"),
    ] {
        let mut all = args.clone();
        all.extend(["--dir", dir]);
        if all[0] == "export" {
            all.extend(["-o", archive]);
        }
        assert_usage_error(&taskscope(&all), needle);
    }
    for args in [
        vec!["report", "--from", "2999-01-01"],
        vec!["flamegraph", "--from", "2999-01-01 08:00+01:00"],
        vec!["export", "--day", "2999-01-01", "-o", archive],
        vec!["export", "--from", "2999-01-01", "-o", archive],
    ] {
        let mut all = args.clone();
        all.extend(["--dir", dir]);
        assert_one_line_error(&taskscope(&all), 2, "after now");
    }
    assert!(!Path::new(archive).exists(), "an archive was written");
}

/// A missing argument is named (the message was "not provided:" and
/// nothing after it); valid values and "did you mean" tips are kept.
#[test]
fn usage_errors_say_everything_clap_knows() {
    let out = taskscope(&["export", "--since", "1h"]);
    assert_usage_error(&out, "the following required arguments were not provided:");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().nth(1).map(str::trim),
        Some("--output <PATH>"),
        "{stderr}"
    );
    let out = taskscope(&["export", "-o", "/nonexistent/x.tar.zst"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_usage_error(&out, "not provided");
    assert!(
        stderr.contains("--from <TIME>|--since <DURATION>|--day <DAY>"),
        "{stderr}"
    );
    let out = taskscope(&["run", "--stacks", "python"]);
    assert_usage_error(&out, "invalid value 'python' for '--stacks <KINDS>'");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[possible values: kernel, user, none]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = taskscope(&["report", "--form", "2026-11-30"]);
    assert_usage_error(&out, "unexpected argument '--form'");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a similar argument exists: '--from'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // In a settings file, the same facts on the file's one line.
    let scratch = scratch();
    let settings = scratch.path().join("taskscope.toml");
    std::fs::write(&settings, "\nformat = [\"json\"]\n").unwrap();
    let out = taskscope(&["run", "--config", settings.to_str().unwrap(), "--check"]);
    assert_one_line_error(&out, 2, ":2: format: invalid value 'json'");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[possible values: csv, parquet]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
