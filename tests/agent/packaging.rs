//! Packaging: the units pass `systemd-analyze verify`, the man page is
//! current and renders without warnings, the settings file drives the real
//! agent, and the Debian package installs, runs as its unit says (its
//! capability set, its ExecStart and ExecReload, a notify socket), and is
//! removed and purged without leftovers.
//!
//! This machine's PID 1 is not systemd, so units cannot be started by
//! systemd here: the service test plays systemd's part (bounding set,
//! umask, NOTIFY_SOCKET, WATCHDOG_USEC, SIGHUP, SIGTERM) with the command
//! lines read from the installed unit file.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"))
}

fn assert_ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The unit files shipped in packaging/.
fn unit_files() -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(repo().join("packaging"))
        .expect("packaging/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("service" | "timer")
            )
        })
        .collect();
    units.sort();
    units
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    // Timing-sensitive tests elsewhere run under this lock: keep this
    // CPU-heavy one from running beside them.
    let _serial = exclusive();
    let units = unit_files();
    let names: Vec<String> = units
        .iter()
        .map(|u| u.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "taskscope-export.service",
            "taskscope-export.timer",
            "taskscope.service"
        ]
    );
    // Not installed here: the units point at the binary under test, and
    // man finds the page in man/ (the package test verifies the installed
    // units unchanged).
    let scratch = scratch();
    let man = scratch.path().join("man/man8");
    std::fs::create_dir_all(&man).unwrap();
    std::fs::copy(repo().join("man/taskscope.8"), man.join("taskscope.8")).unwrap();
    let mut copies = Vec::new();
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        assert!(text.contains("/usr/bin/taskscope") || unit.extension().unwrap() == "timer");
        let copy = scratch.path().join(unit.file_name().unwrap());
        std::fs::write(&copy, text.replace("/usr/bin/taskscope", AGENT)).unwrap();
        copies.push(copy);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .env("MANPATH", scratch.path().join("man"))
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_page_is_current_complete_and_renders_without_warnings() {
    // Timing-sensitive tests elsewhere run under this lock: keep this
    // CPU-heavy one from running beside them.
    let _serial = exclusive();
    let generated = assert_ok(
        "taskscope generate manpage",
        &run(AGENT, &["generate", "manpage"]),
    );
    let page = repo().join("man/taskscope.8");
    let checked_in = std::fs::read_to_string(&page).expect("man/taskscope.8");
    assert!(
        checked_in == generated,
        "man/taskscope.8 is stale: regenerate it with \
         `target/release/taskscope generate manpage > man/taskscope.8`"
    );
    // Every flag of every subcommand's --help is on the page.
    for sub in ["run", "export", "import", "doctor", "schema"] {
        let help = assert_ok("help", &run(AGENT, &[sub, "--help"]));
        for word in help.split_whitespace() {
            let Some(flag) = word.strip_prefix("--") else {
                continue;
            };
            let flag: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if flag.is_empty() || flag == "help" {
                continue;
            }
            let roff = format!("\\-\\-{}", flag.replace('-', "\\-"));
            assert!(
                checked_in.contains(&roff),
                "man page lacks --{flag} of {sub}"
            );
        }
    }
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .output()
        .expect("man (apt-get install man-db)");
    assert!(out.status.success(), "man -l failed");
    assert!(
        out.stderr.is_empty(),
        "man -l warns:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a terminal, man emboldens by overstriking (X\bX): undo it.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    for section in ["FILES", "SIGNALS", "EXIT STATUS", "PERMISSIONS", "EXAMPLES"] {
        assert!(
            text.contains(&format!("\n{section}\n")),
            "no {section} section"
        );
    }
}

#[test]
fn shipped_settings_file_is_current() {
    let generated = assert_ok(
        "taskscope generate config",
        &run(AGENT, &["generate", "config"]),
    );
    let shipped = std::fs::read_to_string(repo().join("packaging/taskscope.toml")).unwrap();
    assert!(
        shipped == generated,
        "packaging/taskscope.toml is stale: regenerate it with \
         `target/release/taskscope generate config > packaging/taskscope.toml`"
    );
}

#[test]
fn settings_file_errors_are_one_line_naming_file_and_line_and_exit_2() {
    // Timing-sensitive tests elsewhere run under this lock: keep this
    // CPU-heavy one from running beside them.
    let _serial = exclusive();
    let scratch = scratch();
    let path = scratch.path().join("taskscope.toml");
    for (text, expected) in [
        ("frequency = 10\nbogus = 1\n", ":2: unknown key 'bogus'"),
        (
            "\nmax-age = \"forever\"\n",
            ":2: max-age: invalid value 'forever'",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = run(AGENT, &["run", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("taskscope: error: {}{expected}", path.display())),
            "{stderr}"
        );
    }
    // A value that clap accepts but the agent's checks refuse names the file too.
    std::fs::write(&path, "max-age = \"30m\"\n").unwrap();
    let out = run(AGENT, &["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
}

#[test]
fn settings_file_drives_the_agent_and_the_command_line_wins() {
    require_root();
    let _serial = exclusive();
    let scratch = scratch();
    let out = scratch.path().join("from-file");
    let settings = scratch.path().join("taskscope.toml");
    std::fs::write(
        &settings,
        format!(
            "output-dir = \"{}\"\nfrequency = 20\nall = true\nstacks = [\"none\"]\nno-pin = true\nduration = \"2s\"\n",
            out.display()
        ),
    )
    .unwrap();
    // The command line overrides the file's frequency.
    let status = AgentRun::new()
        .args(["--config", settings.to_str().unwrap(), "--frequency", "10"])
        .run();
    assert_success(&status);
    let weights = query(
        &out,
        "SELECT DISTINCT weight_us FROM read_csv('ticks/*/*/*.csv.zst')",
    );
    assert_eq!(weights.len(), 1);
    assert_eq!(
        weights[0]["weight_us"], 100_000,
        "--frequency 10 beats frequency = 20"
    );
    // `all = true` from the file: sleeping threads are sampled.
    let sleeping = query_number(
        &out,
        "SELECT count(*) FROM read_csv('samples/*/*/*.csv.zst') WHERE state = 'SLEEP'",
    );
    assert!(sleeping > 0.0, "all = true was not applied");
    let stacks = query_number(
        &out,
        "SELECT count(kstack_id) FROM read_csv('samples/*/*/*.csv.zst')",
    );
    assert_eq!(stacks, 0.0, "stacks = [\"none\"] was not applied");
}

/// The value of `Key=` in a unit file.
fn unit_setting(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .trim()
        .to_string()
}

/// Removes the package if a test stops half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "taskscope"]).output();
    }
}

fn package_status() -> String {
    let out = run("dpkg-query", &["-W", "-f=${Status}", "taskscope"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn debian_package_installs_runs_as_its_unit_says_and_purges_cleanly() {
    require_root();
    // Building the package keeps a CPU busy for ~20 s and the service
    // check loads BPF: both would disturb the timing of other BPF tests.
    let _serial = exclusive();
    assert!(
        !package_status().contains("installed"),
        "a taskscope package is installed on this machine ({}); this test would replace and \
         purge it: remove it first (dpkg --purge taskscope)",
        package_status()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let scratch = scratch();
    let deb = scratch.path().join("taskscope.deb");
    // The binary under test is the one cargo just built; --fast: xz -1.
    let started = Instant::now();
    let out = Command::new(&cargo)
        .current_dir(repo())
        .args(["deb", "--no-build", "--fast", "--output"])
        .arg(&deb)
        .output()
        .expect("run cargo deb");
    assert!(
        out.status.success(),
        "cargo deb failed (install it with `cargo install cargo-deb --locked`; ./dev.sh setup does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("cargo deb took {:?}", started.elapsed());

    let contents = assert_ok(
        "dpkg-deb -c",
        &run("dpkg-deb", &["-c", deb.to_str().unwrap()]),
    );
    let mut expected = vec![
        "./usr/bin/taskscope",
        "./etc/taskscope/taskscope.toml",
        "./usr/lib/systemd/system/taskscope.service",
        "./usr/lib/systemd/system/taskscope-export.service",
        "./usr/lib/systemd/system/taskscope-export.timer",
        "./usr/lib/tmpfiles.d/taskscope.conf",
        "./usr/share/man/man8/taskscope.8.gz",
        "./usr/share/doc/taskscope/README.md",
    ];
    if repo().join("share/taskscope.sql").exists() {
        // Issue 5's shipped SQL: enable its asset line in Cargo.toml.
        expected.push("./usr/share/taskscope/taskscope.sql");
    }
    // Issue 17's fleet views.
    expected.push("./usr/share/taskscope/taskscope-fleet.sql");
    for path in &expected {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "the package lacks {path}:\n{contents}"
        );
    }
    let conffiles = assert_ok(
        "dpkg-deb -I",
        &run("dpkg-deb", &["-I", deb.to_str().unwrap(), "conffiles"]),
    );
    assert_eq!(conffiles.trim(), "/etc/taskscope/taskscope.toml");

    // --- Install.
    let guard = Installed;
    assert_ok("dpkg -i", &run("dpkg", &["-i", deb.to_str().unwrap()]));
    assert!(package_status().contains("install ok installed"));
    let version = assert_ok(
        "taskscope --version",
        &run("/usr/bin/taskscope", &["--version"]),
    );
    assert!(
        version.starts_with("taskscope ") && version.contains("\ncommit "),
        "{version}"
    );
    assert_eq!(
        std::fs::read(repo().join("packaging/taskscope.toml")).unwrap(),
        std::fs::read("/etc/taskscope/taskscope.toml").unwrap()
    );
    for wanted in [
        "/etc/systemd/system/multi-user.target.wants/taskscope.service",
        "/etc/systemd/system/timers.target.wants/taskscope-export.timer",
    ] {
        assert!(
            std::fs::symlink_metadata(wanted).is_ok(),
            "{wanted}: the unit was not enabled"
        );
    }
    let man = assert_ok("man -w", &run("man", &["-w", "taskscope"]));
    assert_eq!(man.trim(), "/usr/share/man/man8/taskscope.8.gz");
    let rendered = Command::new("man")
        .args(["--warnings", "8", "taskscope"])
        .env("MANWIDTH", "80")
        .output()
        .expect("man");
    assert!(rendered.status.success() && rendered.stderr.is_empty());
    let verify = run(
        "systemd-analyze",
        &[
            "verify",
            "/usr/lib/systemd/system/taskscope.service",
            "/usr/lib/systemd/system/taskscope-export.service",
            "/usr/lib/systemd/system/taskscope-export.timer",
        ],
    );
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify of the installed units:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // The tmpfiles.d entry, applied to a scratch root.
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).unwrap();
    assert_ok(
        "systemd-tmpfiles",
        &run(
            "systemd-tmpfiles",
            &[
                "--create",
                &format!("--root={}", root.display()),
                "/usr/lib/tmpfiles.d/taskscope.conf",
            ],
        ),
    );
    for dir in ["var/lib/taskscope", "var/lib/taskscope/archive"] {
        let meta = std::fs::metadata(root.join(dir)).unwrap_or_else(|_| panic!("{dir}"));
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
            0o755
        );
    }

    // --- Start, reload, stop, as systemd would (see the module docs).
    service_lifecycle(scratch.path());

    // --- Remove: the program goes, the settings file stays.
    assert_ok("dpkg -r", &run("dpkg", &["-r", "taskscope"]));
    assert!(
        package_status().contains("config-files"),
        "{}",
        package_status()
    );
    for gone in [
        "/usr/bin/taskscope",
        "/usr/lib/systemd/system/taskscope.service",
        "/usr/lib/systemd/system/taskscope-export.timer",
        "/usr/share/man/man8/taskscope.8.gz",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} survived dpkg -r");
    }
    assert!(Path::new("/etc/taskscope/taskscope.toml").exists());

    // --- Purge: nothing of the package is left.
    assert_ok("dpkg -P", &run("dpkg", &["-P", "taskscope"]));
    drop(guard);
    assert_eq!(package_status(), "", "dpkg still knows taskscope");
    assert!(
        !Path::new("/etc/taskscope").exists(),
        "/etc/taskscope survived the purge"
    );
    let leftovers = run(
        "sh",
        &["-c", "find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled -name '*taskscope*' 2>/dev/null"],
    );
    assert_eq!(
        String::from_utf8_lossy(&leftovers.stdout).trim(),
        "",
        "unit links survived the purge"
    );
}

/// Run the installed unit's ExecStart under its capability bounding set
/// and umask, with a notify socket and watchdog; reload with its
/// ExecReload; stop with SIGTERM.
fn service_lifecycle(scratch: &Path) {
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/taskscope.service").unwrap();
    assert_eq!(unit_setting(&unit, "Type"), "notify");
    let exec_start = unit_setting(&unit, "ExecStart");
    let exec_reload = unit_setting(&unit, "ExecReload");
    let caps = unit_setting(&unit, "CapabilityBoundingSet");
    let umask = unit_setting(&unit, "UMask");
    let bounding: Vec<String> = caps
        .split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let bounding = format!("--bounding-set=-all,{}", bounding.join(","));

    let out = scratch.join("state");
    let socket_path = scratch.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Only the output directory and pinning differ from the unit: the
    // machine's /var/lib/taskscope and /sys/fs/bpf stay untouched.
    let command = format!(
        "umask {umask} && exec setpriv {bounding} --inh-caps=-all -- {exec_start} --output-dir {} --no-pin",
        out.display()
    );
    let workload = Workload::start();
    let child = Command::new("sh")
        .args(["-c", &command])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "30000000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the unit's ExecStart");
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    std::thread::sleep(Duration::from_secs(2));
    // ExecReload, with $MAINPID as systemd substitutes it.
    let reload = exec_reload.replace("$MAINPID", &child.id().to_string());
    assert_ok("ExecReload", &run("sh", &["-c", &reload]));
    let published = Instant::now();
    while files_under(&out)
        .iter()
        .filter(|p| p.starts_with("samples"))
        .count()
        == 0
    {
        assert!(
            published.elapsed() < Duration::from_secs(10),
            "SIGHUP published nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    send_signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = wait_with_limit(child, Duration::from_secs(30));
    drop(workload);
    assert_success(&status);
    // The unit's capabilities give complete data: executables of other
    // processes and symbolized kernel frames.
    let exes = query_number(
        &out,
        "SELECT count(exe) FROM read_csv('samples/*/*/*.csv.zst')",
    );
    assert!(exes > 0.0, "no exe paths: the unit lacks a capability");
    let symbolized = query_number(
        &out,
        "SELECT count(*) FROM read_csv('stacks/*/*/*.csv.zst') WHERE kind = 'kernel' AND frames LIKE '%+0x%' AND frames NOT LIKE '0x%'",
    );
    assert!(
        symbolized > 0.0,
        "kernel frames are not symbolized: the unit lacks CAP_SYSLOG"
    );
    let mode = std::fs::metadata(&out).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o755
    );
}
