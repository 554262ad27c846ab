//! Sampling cost at 10,000 threads: the per-tick scan, the per-row cost of
//! writing, bytes per row on disk and the agent's resident memory.
//!
//! The workload is this process: 10,000 threads (32 KiB stacks) that sleep
//! on a condition variable and wake every 1-10 s, like idle daemon threads.
//! Run as root: `cargo bench --bench sampler`.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::memcg::{Charge, MemCgroup};
use common::*;
use taskscope::agent::clock::monotonic_ns;
use taskscope::agent::sampler::scan;
use taskscope::output::tick::Tick;
use taskscope::output::{self, OutputDir, Writer, WriterConfig};

struct Sleepers {
    stop: Arc<(Mutex<bool>, Condvar)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn spawn_sleepers(n: usize) -> Sleepers {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let threads = (0..n)
        .map(|i| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .stack_size(32 * 1024)
                .name(format!("sleeper{}", i % 100))
                .spawn(move || {
                    let period = Duration::from_millis(1_000 + (i as u64 * 7_919) % 9_000);
                    let (lock, cvar) = &*stop;
                    let mut stopped = lock.lock().unwrap();
                    while !*stopped {
                        stopped = cvar.wait_timeout(stopped, period).unwrap().0;
                    }
                })
                .expect("spawn sleeper")
        })
        .collect();
    Sleepers { stop, threads }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = common::scratch_dir(name);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

fn file_bytes_and_rows(dir: &std::path::Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut rows = 0;
    for entry in files_below(&dir.join("samples")) {
        bytes += std::fs::metadata(&entry).unwrap().size();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("zstdcat '{}' | wc -l", entry.display()))
            .output()
            .unwrap();
        rows += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
            - 1;
    }
    (bytes, rows)
}

/// Resident memory of the agent, KiB: the peak (`VmHWM`), and the largest
/// anonymous and file-backed (mapped files, plus the BPF maps it mmaps,
/// which the kernel counts as shared memory) parts seen twice a second,
/// and in steady state: the largest sum of both over the last 10 s of the
/// run (after the first stack captures, their symbolization, and the
/// symbolizer's release of its parsed files 30 s after its last lookup).
/// And what its memory cgroup was charged (`common::memcg`: systemd's
/// `MemoryMax` counts that, the kernel memory of its BPF maps included).
#[derive(Default, Clone, Copy)]
struct Rss {
    peak: u64,
    anon: u64,
    file: u64,
    steady_anon: u64,
    steady_file: u64,
    /// The cgroup's largest total charge (page cache of the files written
    /// included: reclaimable).
    cg_peak: u64,
    /// The largest anonymous + kernel charge seen, and its parts.
    cg_hard: Charge,
    /// The largest anonymous + kernel charge of the last 10 s.
    cg_steady: Charge,
    /// What is left at the end once the page cache (and the kernel
    /// memory indexing it) is reclaimed: the floor under a limit.
    cg_floor: Charge,
}

/// Run the real agent binary for `secs`, in a memory cgroup of its own;
/// its resident memory and the cgroup's charges.
fn run_agent(args: &[&str], secs: u64, dir: &std::path::Path) -> Rss {
    let cgroup = MemCgroup::create("taskscope-bench-sampler");
    let mut child = common::spawn_agent_in(args, dir, Some(&cgroup));
    let mut rss = Rss::default();
    let until = Instant::now() + Duration::from_secs(secs);
    let steady_from = until - Duration::from_secs(10);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        let pid = child.id();
        let anon = common::status_kib(pid, "RssAnon:");
        let file = common::status_kib(pid, "RssFile:") + common::status_kib(pid, "RssShmem:");
        rss.anon = rss.anon.max(anon);
        rss.file = rss.file.max(file);
        let charge = cgroup.charge();
        if charge.hard > rss.cg_hard.hard {
            rss.cg_hard = charge;
        }
        if Instant::now() >= steady_from {
            if anon + file > rss.steady_anon + rss.steady_file {
                (rss.steady_anon, rss.steady_file) = (anon, file);
            }
            if charge.hard > rss.cg_steady.hard {
                rss.cg_steady = charge;
            }
        }
    }
    rss.peak = common::status_kib(child.id(), "VmHWM:");
    rss.cg_peak = cgroup.peak_kib();
    cgroup.reclaim();
    std::thread::sleep(Duration::from_millis(200));
    rss.cg_floor = cgroup.charge();
    common::stop_agent(&mut child);
    rss
}

/// Run the real agent for `secs` under a memory limit of `limit_mib`
/// (`MemoryMax=`): None if it lived, else the second the kernel killed it.
fn killed_under_limit(
    args: &[&str],
    limit_mib: u64,
    secs: u64,
    dir: &std::path::Path,
) -> Option<f64> {
    let cgroup = MemCgroup::create("taskscope-bench-limit");
    cgroup.limit(limit_mib << 20);
    let started = Instant::now();
    let mut child = common::spawn_agent_in(args, dir, Some(&cgroup));
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                cgroup.oom_kills() > 0,
                "the agent stopped under the limit without an OOM kill: {status}"
            );
            return Some(started.elapsed().as_secs_f64());
        }
    }
    common::stop_agent(&mut child);
    None
}

fn main() {
    let threads: usize = std::env::var("TASKSCOPE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let passes = passes(40);
    let started = Instant::now();
    let sleepers = spawn_sleepers(threads);
    println!(
        "{threads} sleeping threads started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut agent = load_agent(65_536, 1);

    // 1. The scan with the default (active) filter.
    let mut default_pass = Vec::new();
    let mut samples = Vec::new();
    let mut walked = 0;
    for _ in 0..passes {
        samples.clear();
        let before = thread_cpu();
        let now = monotonic_ns();
        let stats = scan(agent.table(), false, now, now, &mut samples);
        default_pass.push((thread_cpu() - before).as_secs_f64() * 1e3);
        walked = stats.walked;
        std::thread::sleep(Duration::from_millis(20));
    }
    // For comparison: one walk of every task with the task iterator (what
    // reconciliation does every 10 s, and what iterator-based tools do
    // every tick).
    let mut iterator_pass = Vec::new();
    for generation in 0..10 {
        let before = thread_cpu();
        agent.reconcile(100 + generation).unwrap();
        iterator_pass.push((thread_cpu() - before).as_secs_f64() * 1e3);
    }

    // 2. --all: scan + decode + enrich + CSV + zstd, per row.
    let dir = scratch("bench-write");
    let plan = output::dir::check(&dir).unwrap();
    let mut writer = Writer::new(
        OutputDir::create(&plan).unwrap(),
        WriterConfig::csv("bench", Duration::from_secs(3_600), Duration::from_secs(10)),
    )
    .unwrap();
    let ticks = 30;
    let mut per_row = Vec::new();
    let mut min_rows = usize::MAX;
    let base_ts = taskscope::store::timefmt::unix_micros_now();
    for i in 0..ticks {
        // Ticks one second apart, as at 1 Hz.
        let now = monotonic_ns();
        let before = thread_cpu();
        let mut samples = Vec::with_capacity(threads + 64);
        let stats = scan(agent.table(), true, now, now, &mut samples);
        let rows = samples.len();
        let tick = Tick {
            ts_us: base_ts + i * 1_000_000,
            mono_ns: 0,
            weight_us: 1_000_000,
            samples,
            completions: Vec::new(),
            stacks: Vec::new(),
            stats,
        };
        writer.write_tick(&tick);
        per_row.push((thread_cpu() - before).as_nanos() as f64 / rows as f64);
        min_rows = min_rows.min(rows);
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.close();
    drop(agent);

    let quick = std::env::var_os("TASKSCOPE_BENCH_QUICK").is_some();
    if quick {
        drop(sleepers);
        println!(
            "scan, default filter: {:.3} ms (walked {walked}); --all per row: {:.2} µs",
            median(&mut default_pass),
            median(&mut per_row) / 1e3
        );
        return;
    }
    // 3. Bytes per row and resident memory of the real agent.
    let dir_1hz = scratch("bench-agent-1hz");
    let _ = run_agent(&["--all", "--frequency", "1"], 30, &dir_1hz);
    let (bytes_1hz, rows_1hz) = file_bytes_and_rows(&dir_1hz);
    let dir_20hz = scratch("bench-agent-20hz-all");
    let rss_all = run_agent(&["--all", "--frequency", "20"], 60, &dir_20hz);
    let (bytes_20hz, rows_20hz) = file_bytes_and_rows(&dir_20hz);
    let dir_default = scratch("bench-agent-20hz");
    let rss_default = run_agent(&["--frequency", "20"], 60, &dir_default);
    // Without user stacks nothing symbolizes this process's debug info
    // (the bench binary's DWARF is tens of MiB): what that costs.
    let dir_kernel = scratch("bench-agent-20hz-kernel");
    let rss_kernel = run_agent(
        &["--all", "--frequency", "20", "--stacks", "kernel"],
        40,
        &dir_kernel,
    );
    // The goal's limit, as a service would set it.
    let limit_mib = 64;
    let dir_limited = scratch("bench-agent-20hz-all-limited");
    let killed = killed_under_limit(&["--all", "--frequency", "20"], limit_mib, 30, &dir_limited);
    drop(sleepers);

    println!();
    println!("| measure ({threads} threads) | result |");
    println!("| --- | --- |");
    println!(
        "| scan, default (active) filter, CPU per pass | {:.3} ms (walked {walked} threads) |",
        median(&mut default_pass)
    );
    println!(
        "| task-iterator walk of all tasks, CPU per pass (reference) | {:.3} ms |",
        median(&mut iterator_pass)
    );
    println!(
        "| --all: scan + enrich + CSV + zstd, CPU per row | {:.2} µs |",
        median(&mut per_row) / 1e3
    );
    println!(
        "| --all: fewest rows in a tick (threads dropped: none if ≥ {threads}) | {min_rows} |"
    );
    println!(
        "| bytes per row on disk, --all at 1 Hz for 30 s | {:.1} ({rows_1hz} rows) |",
        bytes_1hz as f64 / rows_1hz as f64
    );
    println!(
        "| bytes per row on disk, --all at 20 Hz for 60 s | {:.1} ({rows_20hz} rows) |",
        bytes_20hz as f64 / rows_20hz as f64
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (name, rss) in [
        ("--all at 20 Hz, 60 s", rss_all),
        ("default filter at 20 Hz, 60 s", rss_default),
        ("--all at 20 Hz, --stacks kernel, 40 s", rss_kernel),
    ] {
        println!(
            "| agent RSS, {name}: peak (VmHWM); largest anonymous; largest file-backed + shared; steady (largest of the last 10 s) anonymous + file-backed | {:.1} MiB; {:.1} MiB; {:.1} MiB; {:.1} + {:.1} = {:.1} MiB |",
            mib(rss.peak),
            mib(rss.anon),
            mib(rss.file),
            mib(rss.steady_anon),
            mib(rss.steady_file),
            mib(rss.steady_anon + rss.steady_file)
        );
        println!(
            "| agent's memory cgroup, {name}: largest charge (page cache included); largest anonymous + kernel (BPF maps included: what a limit cannot reclaim); steady (largest of the last 10 s) anonymous + kernel | {:.1} MiB; {:.1} + {:.1} = {:.1} MiB; {:.1} + {:.1} = {:.1} MiB |",
            mib(rss.cg_peak),
            mib(rss.cg_hard.anon),
            mib(rss.cg_hard.kernel),
            mib(rss.cg_hard.hard),
            mib(rss.cg_steady.anon),
            mib(rss.cg_steady.kernel),
            mib(rss.cg_steady.hard),
        );
        println!(
            "| agent's memory cgroup, {name}: at the end, once its page cache is reclaimed (what a limit cannot take back): anonymous + kernel | {:.1} + {:.1} = {:.1} MiB |",
            mib(rss.cg_floor.anon),
            mib(rss.cg_floor.kernel),
            mib(rss.cg_floor.hard),
        );
    }
    println!(
        "| --all at 20 Hz under a {limit_mib} MiB memory limit (MemoryMax), 30 s | {} |",
        match killed {
            None => "lived".to_string(),
            Some(at) => format!("OOM-killed after {at:.1} s"),
        }
    );
}
