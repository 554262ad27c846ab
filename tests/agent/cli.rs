//! Bad input: each case is one clear line on stderr, a non-zero exit, and
//! nothing written.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::*;

fn taskscope(args: &[&str]) -> Output {
    wait_with_limit(
        Command::new(AGENT)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start taskscope"),
        Duration::from_secs(30),
    )
}

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
    assert_one_line_error(&out, 2, "unexpected argument '--bogus'");
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
        assert_one_line_error(
            &out,
            2,
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
        assert_one_line_error(&taskscope(&all), 2, needle);
    }
    assert_nothing_written(&out_dir);
}

#[test]
fn symlinked_output_dir_is_refused() {
    require_root();
    let scratch = scratch();
    let target = scratch.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let link = scratch.path().join("link");
    symlink(&target, &link).unwrap();
    let out = taskscope(&[
        "run",
        "--duration",
        "1",
        "--no-pin",
        "--output-dir",
        link.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 1, "is a symlink");
    assert_nothing_written(&target);
}

#[test]
fn world_writable_output_dir_is_refused() {
    require_root();
    let scratch = scratch();
    let open = scratch.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = taskscope(&[
        "run",
        "--duration",
        "1",
        "--no-pin",
        "--output-dir",
        open.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 1, "writable by other users");
    assert_nothing_written(&open);
    // Creating a new output directory inside it is refused as well.
    let inside = open.join("out");
    let out = taskscope(&[
        "run",
        "--duration",
        "1",
        "--no-pin",
        "--output-dir",
        inside.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, 1, "writable by other users");
    assert!(!inside.exists());
}

#[test]
fn unwritable_output_dir() {
    require_root();
    let scratch = scratch();
    let readonly = scratch.path().join("ro");
    std::fs::create_dir(&readonly).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,mode=0755,size=1m", "none"])
        .arg(&readonly)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a read-only tmpfs failed");
    let out_dir = readonly.join("out");
    let out = taskscope(&[
        "run",
        "--duration",
        "1",
        "--no-pin",
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    let _ = Command::new("umount").arg(&readonly).status();
    assert_one_line_error(&out, 1, "cannot write to");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    assert!(!out_dir.exists());
}

#[test]
fn not_root_is_refused() {
    let scratch = scratch();
    let out_dir = scratch.path().join("out");
    let out = wait_with_limit(
        Command::new(AGENT)
            .args([
                "run",
                "--duration",
                "1",
                "--no-pin",
                "--output-dir",
                out_dir.to_str().unwrap(),
            ])
            .uid(65534)
            .gid(65534)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
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
    let out = wait_with_limit(
        Command::new(AGENT)
            .args([
                "run",
                "--duration",
                "1",
                "--no-pin",
                "--output-dir",
                out_dir.to_str().unwrap(),
            ])
            .env("TASKSCOPE_TEST_SYSFS_BTF", "/nonexistent/vmlinux")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
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
