//! Shared helpers of the benchmark harnesses.
//!
//! Every figure is a ratio or difference measured side by side in one run:
//! passes with and without the agent alternate, and the median of each side
//! is reported, because these machines are noisy.

#![allow(dead_code)]

pub mod memcg;
pub mod report_data;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use taskscope::bpf::{Agent, LoadOptions};

/// The real agent, `taskscope run ARGS --no-pin --output-dir DIR`, in the
/// background (its log discarded).
pub fn spawn_agent(args: &[&str], dir: &Path) -> Child {
    spawn_agent_in(args, dir, None)
}

/// As `spawn_agent`, in the memory cgroup `cgroup` from before its first
/// instruction (so its BPF maps are charged there, as under systemd).
pub fn spawn_agent_in(args: &[&str], dir: &Path, cgroup: Option<&memcg::MemCgroup>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskscope"));
    command
        .arg("run")
        .args(args)
        .args(["--no-pin", "--output-dir"])
        .arg(dir)
        .stderr(Stdio::null());
    if let Some(cgroup) = cgroup {
        let procs = std::ffi::CString::new(cgroup.procs().into_os_string().into_encoded_bytes())
            .expect("a cgroup path without NUL");
        // SAFETY: between fork and exec the closure only makes
        // async-signal-safe calls (open, write, close) on memory
        // allocated before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            });
        }
    }
    command.spawn().expect("start taskscope")
}

/// Stop the agent with SIGTERM; it must exit 0.
pub fn stop_agent(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the agent");
    assert!(child.wait().expect("wait").success(), "the agent failed");
}

/// A fresh (removed) directory `name` below the target's tmp directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A `kB` field of `/proc/PID/status` (`"VmRSS:"`, `"RssAnon:"`, ...).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read status")
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// CPU seconds (user + system) of process `pid` so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // After the command name (which may hold spaces): utime and stime are
    // the 12th and 13th fields.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / rustix::param::clock_ticks_per_second() as f64
}

/// Load the agent's programs as `taskscope run` would, but tracking this
/// process too (the real agent excludes itself; here the benchmark's own
/// threads are the workload).
pub fn load_agent(max_threads: u32, frequency: u32) -> Agent {
    let stacks = std::env::var_os("TS_STACKS").is_some();
    load_agent_with(
        max_threads,
        frequency,
        taskscope::bpf::StackKinds {
            kernel: stacks,
            user: stacks,
        },
        syscalls_from_env(),
    )
}

/// As [`load_agent`], with the stacks and syscall mode given.
#[allow(dead_code)]
pub fn load_agent_with(
    max_threads: u32,
    frequency: u32,
    stacks: taskscope::bpf::StackKinds,
    syscalls: taskscope::bpf::SyscallMode,
) -> Agent {
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
        pin_permissions: Default::default(),
        stacks,
        track: track_from_env(),
        syscalls,
    })
    .unwrap_or_else(|err| panic!("cannot load the BPF programs: {err:#}"))
}

/// `TS_SYSCALLS=exact` loads the agent with the sys_enter hook.
pub fn syscalls_from_env() -> taskscope::bpf::SyscallMode {
    match std::env::var("TS_SYSCALLS").as_deref() {
        Ok("exact") => taskscope::bpf::SyscallMode::Exact,
        _ => taskscope::bpf::SyscallMode::Passive,
    }
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
    pingpong_on(round_trips, 0, 0)
}

/// As [`pingpong_per_sec`], with the echo thread pinned to `echo_cpu` and
/// the caller to `cpu`: on two CPUs, every wakeup is made from the other
/// CPU (handed over to the wakee's CPU when that one is idle).
pub fn pingpong_on(round_trips: u64, cpu: usize, echo_cpu: usize) -> f64 {
    use std::io::{Read, Write};
    let pipe = || {
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        (std::fs::File::from(r), std::fs::File::from(w))
    };
    let (mut to_echo_r, mut to_echo_w) = pipe();
    let (mut back_r, mut back_w) = pipe();
    let echo = std::thread::spawn(move || {
        pin_to(echo_cpu);
        let mut byte = [0u8; 1];
        for _ in 0..round_trips {
            to_echo_r.read_exact(&mut byte).expect("read");
            back_w.write_all(&byte).expect("write");
        }
    });
    pin_to(cpu);
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
