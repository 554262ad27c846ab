//! What a user's `top` shows: the CPU of the real `taskscope run` binary,
//! with its default settings (stacks on, `--syscalls passive`), over N
//! threads, read from its own `/proc/<pid>/stat` in steady state (after
//! the first seconds, whose first stack captures and symbolization cost
//! more).
//!
//! `cargo bench --bench agentcpu` (as root); `TASKSCOPE_BENCH_THREADS`
//! (default 1,000) threads of this process wait on a condition variable
//! and wake every 1–10 s. The agent runs `--all` at the default 1 Hz and
//! at 20 Hz.

use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Seconds after start before measuring, and how long to measure.
const WARMUP: u64 = 6;
const MEASURE: u64 = 12;

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read the agent's stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / rustix::param::clock_ticks_per_second() as f64
}

/// The agent's CPU in steady state, percent of one CPU.
fn agent_cpu(extra: &[&str]) -> f64 {
    let out = tempfile::tempdir().expect("scratch directory");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_taskscope"))
        .args(["run", "--all", "--no-pin", "--output-dir"])
        .arg(out.path().join("out"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start taskscope run");
    std::thread::sleep(Duration::from_secs(WARMUP));
    let before = cpu_seconds(agent.id());
    std::thread::sleep(Duration::from_secs(MEASURE));
    let after = cpu_seconds(agent.id());
    let _ = Command::new("kill")
        .args(["-INT", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    100.0 * (after - before) / MEASURE as f64
}

fn main() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the agent loads BPF programs: run the bench as root"
    );
    let threads: usize = std::env::var("TASKSCOPE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let wake = Arc::new((Mutex::new(()), Condvar::new()));
    for i in 0..threads {
        let wake = Arc::clone(&wake);
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let period = Duration::from_millis(1_000 + (i as u64 * 7_919) % 9_000);
                let (lock, cvar) = &*wake;
                let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    guard = cvar
                        .wait_timeout(guard, period)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            })
            .expect("spawn a waiting thread");
    }
    println!(
        "agent CPU, {threads} threads waking every 1-10 s, measured over {MEASURE} s after {WARMUP} s"
    );
    println!("| `taskscope run` flags | agent CPU (utime + stime) |");
    println!("| --- | --- |");
    for flags in [&["--all"][..], &["--all", "--frequency", "20"][..]] {
        let cpu = agent_cpu(&flags[1..]);
        println!("| `{}` | {cpu:.2}% of one CPU |", flags.join(" "));
    }
}
