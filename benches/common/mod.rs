//! Shared helpers of the benchmark harnesses.
//!
//! Every figure is a ratio or difference measured side by side in one run:
//! passes with and without the agent alternate, and the median of each side
//! is reported, because these machines are noisy.

#![allow(dead_code)]

use std::time::Duration;

use taskscope::bpf::{Agent, LoadOptions};

/// Load the agent's programs as `taskscope run` would, but tracking this
/// process too (the real agent excludes itself; here the benchmark's own
/// threads are the workload).
pub fn load_agent(max_threads: u32, frequency: u32) -> Agent {
    assert!(
        rustix::process::geteuid().is_root(),
        "benchmarks load BPF programs: run them as root"
    );
    Agent::load(&LoadOptions {
        agent_tgid: u32::MAX,
        pids: Vec::new(),
        max_threads,
        frequency,
        pin_dir: None,
        stacks: taskscope::bpf::StackKinds {
            kernel: std::env::var_os("TS_STACKS").is_some(),
            user: std::env::var_os("TS_STACKS").is_some(),
        },
        track: track_from_env(),
    })
    .unwrap_or_else(|err| panic!("cannot load the BPF programs: {err:#}"))
}

/// `TS_TRACK=syscalls,io` loads the agent with `--track` hooks.
pub fn track_from_env() -> taskscope::bpf::TrackKinds {
    let kinds = std::env::var("TS_TRACK").unwrap_or_default();
    taskscope::bpf::TrackKinds {
        syscalls: kinds.split(',').any(|k| k == "syscalls"),
        io: kinds.split(',').any(|k| k == "io"),
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Pin the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// Every file below `dir`.
pub fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(files_below(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

/// Number of passes per side, from `TASKSCOPE_BENCH_PASSES` (default given).
pub fn passes(default: usize) -> usize {
    std::env::var("TASKSCOPE_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Round trips per second between two threads pinned to CPU 0, over pipes
/// (each round trip: 4 syscalls, 2 context switches, 2 wakeups).
pub fn pingpong_per_sec(round_trips: u64) -> f64 {
    use std::io::{Read, Write};
    let pipe = || {
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        (std::fs::File::from(r), std::fs::File::from(w))
    };
    let (mut to_echo_r, mut to_echo_w) = pipe();
    let (mut back_r, mut back_w) = pipe();
    let echo = std::thread::spawn(move || {
        pin_to(0);
        let mut byte = [0u8; 1];
        for _ in 0..round_trips {
            to_echo_r.read_exact(&mut byte).expect("read");
            back_w.write_all(&byte).expect("write");
        }
    });
    pin_to(0);
    let mut byte = [7u8; 1];
    let start = std::time::Instant::now();
    for _ in 0..round_trips {
        to_echo_w.write_all(&byte).expect("write");
        back_r.read_exact(&mut byte).expect("read");
    }
    let rate = round_trips as f64 / start.elapsed().as_secs_f64();
    echo.join().expect("echo thread");
    rate
}
