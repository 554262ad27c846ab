//! `taskscope top` in a real terminal (tmux): live over the ground-truth
//! workload with a real agent, drill-down, resize, quit; history mode
//! against `report`; no agent; not a terminal.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// A tmux session running an interactive shell, killed on drop.
/// Removes a pin directory when the test ends, also when it fails: pins
/// of an agent killed with its test would keep their maps in the kernel.
pub(crate) struct PinsRemoved(pub(crate) std::path::PathBuf);

impl Drop for PinsRemoved {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub(crate) struct Tmux {
    name: String,
}

impl Tmux {
    pub(crate) fn start(tag: &str, width: u16, height: u16) -> Tmux {
        // One session start at a time: two first `new-session`s race to
        // start the tmux server.
        static START: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = START.lock().unwrap_or_else(|p| p.into_inner());
        let name = format!("tstop-{tag}-{}", std::process::id());
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &name])
            .output();
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .args(["env", "-i", "TERM=xterm-256color", "PATH=/usr/bin:/bin"])
            .args(["bash", "--norc", "--noprofile"])
            .status()
            .expect("tmux is installed (apt-get install tmux; ./dev.sh setup does)");
        assert!(status.success(), "tmux new-session failed");
        let tmux = Tmux { name };
        tmux.line("PS1='ready$ '; clear");
        // Cleared, nothing typed ahead of the prompt.
        tmux.wait_for(|screen| screen.trim() == "ready$", Duration::from_secs(5));
        tmux
    }

    /// Type `text` and Enter.
    pub(crate) fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    pub(crate) fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn display(&self, format: &str) -> String {
        let out = Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.name, format])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Wait until `ok(screen)`; fails with the last screen after `limit`.
    pub(crate) fn wait_for(&self, ok: impl Fn(&str) -> bool, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "not on screen within {limit:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
    }
}

/// The line of `screen` holding every one of `words`.
pub(crate) fn line_with<'a>(screen: &'a str, words: &[&str]) -> Option<&'a str> {
    screen
        .lines()
        .find(|line| words.iter().all(|w| line.contains(w)))
}

/// The status line `echo TOP-EXIT=$?` printed (not the command line).
fn exit_status(screen: &str) -> Option<&str> {
    screen
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TOP-EXIT="))
        .find(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
}

/// The terminal is the shell's again: alternate screen left, cursor
/// shown, the prompt back, top's exit status printed.
fn assert_clean_exit(tmux: &Tmux) {
    let screen = tmux.wait_for(
        |s| exit_status(s).is_some() && s.trim_end().ends_with("ready$"),
        Duration::from_secs(5),
    );
    assert_eq!(exit_status(&screen), Some("0"), "top failed:\n{screen}");
    assert!(
        !screen.contains("avg active threads by state"),
        "top's screen is still shown:\n{screen}"
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "alternate screen not left"
    );
    assert_eq!(tmux.display("#{cursor_flag}"), "1", "cursor left hidden");
}

/// Live: the spinners on CPU and the sleeper in clock_nanosleep within
/// 3 s of start; a group drilled down to a thread; a resize to 80×24
/// redraws; q leaves a clean terminal. Then history mode over the run's
/// files shows the report's top groups, in its order.
#[test]
fn top_live_then_history_over_the_ground_truth() {
    require_root();
    let _serial = exclusive();
    let mut workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    // The usual bpffs: the agent mounts it when it is missing.
    let pin_dir = Path::new("/sys/fs/bpf").join(format!("taskscope-test-{}", std::process::id()));
    let _pins = PinsRemoved(pin_dir.clone());
    let from = chrono_text(-60);
    let agent = AgentRun::new()
        .args(["-F", "10"])
        .pin_dir(&pin_dir)
        .output(&out)
        .duration(40)
        .limit(Duration::from_secs(60))
        .spawn();
    wait_for_first_tick(&out, Duration::from_secs(20));
    for name in ["threads", "syscall_args", "waits", "fds", "stacks"] {
        let meta = std::fs::metadata(pin_dir.join(name))
            .unwrap_or_else(|e| panic!("{} not pinned: {e}", pin_dir.join(name).display()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}: pin mode");
    }

    let tmux = Tmux::start("live", 100, 30);
    let started = Instant::now();
    tmux.line(&format!(
        "{AGENT} top --pin-dir {} --all-states --by state,comm,syscall; echo TOP-EXIT=$?",
        pin_dir.display()
    ));
    // Keys go to top only once it has the terminal (raw mode, alternate
    // screen); typed before, the shell's line discipline echoes them onto
    // the main screen.
    tmux.wait_for(|s| s.contains("taskscope top live"), Duration::from_secs(3));
    // The filter is a SQL condition on the rows (as report's --where).
    const GT: &str = "comm LIKE 'gt-%'";
    tmux.keys(&["/"]);
    tmux.line(GT);
    // Within 3 s: every spinner runnable (on a CPU or queued for one:
    // one more spinner than CPUs, and this machine's other work, keep
    // some queued) and the sleeper in clock_nanosleep.
    let spinners: Vec<String> = (0..workload.spinners().len())
        .map(|i| format!("gt-spin{i}"))
        .collect();
    let screen = tmux.wait_for(
        |s| {
            spinners.iter().all(|spin| {
                line_with(s, &["ON_CPU", spin]).is_some()
                    || line_with(s, &["RUNQUEUE", spin]).is_some()
            }) && line_with(s, &["SLEEP", "gt-sleeper", "clock_nanosleep"]).is_some()
        },
        Duration::from_secs(3)
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(500)),
    );
    assert!(
        started.elapsed() <= Duration::from_secs(4),
        "took {:?}:\n{screen}",
        started.elapsed()
    );
    // The chart is stacked by wait class, over the filtered rows: the
    // spinners' CPU or RUNQUEUE, and no state letter such as S (SLEEP).
    assert!(
        screen.contains("avg active threads by wait class"),
        "{screen}"
    );
    let chart: String = screen
        .lines()
        .filter(|l| l.contains('┤') || l.contains('│'))
        .collect();
    assert!(
        (chart.contains('C') || chart.contains('R')) && !chart.contains('S'),
        "{screen}"
    );
    // And on a CPU: some read within the last ten shows a spinner there.
    tmux.wait_for(
        |s| line_with(s, &["ON_CPU", "gt-spin"]).is_some(),
        Duration::from_secs(10),
    );

    // Drill down: the sleeper's group, its thread, the thread.
    tmux.keys(&["/"]);
    tmux.keys(&vec!["BSpace"; GT.len()]);
    tmux.line("comm = 'gt-sleeper'");
    tmux.wait_for(
        |s| line_with(s, &["SLEEP", "gt-sleeper"]).is_some() && !s.contains("gt-spin"),
        Duration::from_secs(3),
    );
    tmux.keys(&["Enter"]);
    let sleeper = workload.tid("sleeper").to_string();
    tmux.wait_for(
        |s| s.contains("threads of") && line_with(s, &[&sleeper, "gt-sleeper"]).is_some(),
        Duration::from_secs(3),
    );
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(
        |s| s.contains(&format!("thread {sleeper} (gt-sleeper)")),
        Duration::from_secs(3),
    );
    assert!(
        line_with(&screen, &["SLEEP", "TIMER", "clock_nanosleep"]).is_some(),
        "the thread's recent states:\n{screen}"
    );
    // Its current stacks, from the agent's pinned captures, resolved as
    // the writer resolves them: the kernel's sleep, then the workload's
    // own function in the user stack.
    let screen = tmux.wait_for(
        |s| s.contains("  kernel") && s.contains("hrtimer_nanosleep") && s.contains("  user"),
        Duration::from_secs(5),
    );
    assert!(
        screen.contains("stacks at") && screen.contains("in clock_nanosleep"),
        "the stacks' heading:\n{screen}"
    );
    assert!(
        screen.contains("sleep_forever"),
        "the sleeper's own function in its user stack:\n{screen}"
    );

    // Resize (SIGWINCH) to 80×24: redrawn at the new size, still running.
    let status = Command::new("tmux")
        .args(["resize-window", "-t", &tmux.name, "-x", "80", "-y", "24"])
        .status()
        .unwrap();
    assert!(status.success());
    let screen = tmux.wait_for(
        |s| s.lines().count() <= 24 && s.contains("taskscope top live"),
        Duration::from_secs(3),
    );
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    assert_clean_exit(&tmux);

    // Another user may not read the live table (pins are 0600): told so,
    // and offered the files.
    tmux.line("clear");
    tmux.wait_for(|s| s.trim() == "ready$", Duration::from_secs(5));
    tmux.line(&format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups {AGENT} top --pin-dir {}; echo TOP-EXIT=$?",
        pin_dir.display()
    ));
    let screen = tmux.wait_for(|s| s.contains("[y/N]"), Duration::from_secs(10));
    assert!(
        screen.contains("not permitted to read the live thread table"),
        "{screen}"
    );
    tmux.line("n");
    let screen = tmux.wait_for(|s| exit_status(s).is_some(), Duration::from_secs(10));
    assert_eq!(exit_status(&screen), Some("1"), "{screen}");
    drop(tmux);

    // History over the recorded window, against report's CSV.
    send_signal(&agent, nix::sys::signal::Signal::SIGTERM);
    assert_success(&wait_with_limit(agent, Duration::from_secs(20)));
    workload.stop();
    assert!(!pin_dir.join("threads").exists(), "pins left behind");
    let _ = std::fs::remove_dir(&pin_dir);
    let to = chrono_text(1);
    let dir = out.to_str().unwrap();
    let report = taskscope(&[
        "report", "--dir", dir, "--from", &from, "--to", &to, "--format", "csv",
    ]);
    assert_success(&report);
    let csv = String::from_utf8_lossy(&report.stdout).into_owned();
    let expected: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .take(5)
        .map(|l| l.split(',').take(4).map(str::to_string).collect())
        .collect();
    assert!(expected.len() >= 3, "report has few groups:\n{csv}");

    let tmux = Tmux::start("history", 160, 40);
    tmux.line(&format!(
        "{AGENT} top --dir {dir} --from '{from}' --to '{to}'; echo TOP-EXIT=$?"
    ));
    let screen = tmux.wait_for(|s| s.contains("group(s)"), Duration::from_secs(20));
    let table: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.contains("AAS"))
        .skip(1)
        .collect();
    for (i, key) in expected.iter().enumerate() {
        let line = table.get(i).copied().unwrap_or_default();
        for value in key.iter().filter(|v| !v.is_empty()) {
            let shown: String = value.chars().take(10).collect();
            assert!(
                line.contains(&shown),
                "row {i} of top should be report's {key:?}, is '{line}':\n{screen}\nreport:\n{csv}"
            );
        }
    }
    // Drill down to the first group's first thread: its states, and
    // where its stacks are.
    tmux.keys(&["Enter"]);
    tmux.wait_for(|s| s.contains("threads of"), Duration::from_secs(10));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(
        |s| s.contains("its states in the window") && s.contains("flamegraph"),
        Duration::from_secs(10),
    );
    assert!(screen.contains("kstack_id"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for(
        |s| s.contains("by wait_class,comm"),
        Duration::from_secs(10),
    );
    // A filter (SQL, report's --where): only the spinners' groups; a
    // bad one says why and changes nothing.
    const SPIN: &str = "regexp_like(comm, '^gt-spin') AND tid > 0";
    tmux.keys(&["/"]);
    tmux.line(SPIN);
    let screen = tmux.wait_for(
        |s| s.contains("filter 'regexp_like") && s.contains("gt-spin"),
        Duration::from_secs(10),
    );
    let rows: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.contains("AAS"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.contains("group(s)"))
        .collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|l| l.contains("gt-spin")),
        "{screen}"
    );
    tmux.keys(&["/"]);
    tmux.keys(&vec!["BSpace"; SPIN.len()]);
    tmux.line("nosuch = 1");
    tmux.wait_for(
        |s| s.contains("filter:") && s.contains("nosuch"),
        Duration::from_secs(10),
    );
    // (The prompt holds the filter in force: the bad one changed nothing.)
    tmux.keys(&["/"]);
    tmux.keys(&vec!["BSpace"; SPIN.len()]);
    tmux.keys(&["Enter"]);
    // Move the window back a whole length: nothing there, and said so.
    tmux.keys(&["["]);
    tmux.wait_for(
        |s| s.contains("no samples in this window"),
        Duration::from_secs(10),
    );
    tmux.keys(&["q"]);
    assert_clean_exit(&tmux);
}

/// UTC text of now + `seconds`, as --from/--to take it.
fn chrono_text(seconds: i64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{seconds} seconds"),
            "+%Y-%m-%d %H:%M:%S",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// No agent: one clear message and an offer of history mode; declined,
/// exit 1 and a clean terminal.
#[test]
fn top_without_an_agent_says_so_and_offers_history() {
    let tmux = Tmux::start("noagent", 100, 30);
    tmux.line(&format!(
        "{AGENT} top --pin-dir /sys/fs/bpf/taskscope-no-such-agent; echo TOP-EXIT=$?"
    ));
    let screen = tmux.wait_for(|s| s.contains("[y/N]"), Duration::from_secs(10));
    assert!(
        screen.contains("no live thread table") && screen.contains("Show the files in"),
        "{screen}"
    );
    tmux.line("n");
    let screen = tmux.wait_for(|s| exit_status(s).is_some(), Duration::from_secs(10));
    assert_eq!(exit_status(&screen), Some("1"), "{screen}");
    assert_eq!(tmux.display("#{alternate_on}"), "0");
}

/// Not a terminal: one line, exit 2.
#[test]
fn top_needs_a_terminal() {
    let out = taskscope(&["top", "--pin-dir", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs a terminal"), "{stderr}");
}
