//! What stacks cost: symbolization throughput, the agent's CPU with and
//! without stacks, the window captures' cost to a context-switch-heavy
//! workload, and the agent's memory under process churn.
//!
//! 1. Symbolization, in this process: kernel addresses (kallsyms) and user
//!    addresses in this binary and libc, cold (fresh caches) and warm.
//! 2. The real agent at 20 Hz `--all` over 1,000 threads that wake every
//!    50-500 ms: its CPU time with `--stacks none` and with both kinds,
//!    alternating, from /proc/<pid>/stat.
//! 3. Same-CPU pipe ping-pong under the real agent at 20 Hz, `--stacks none`
//!    vs both kinds, alternating pairs.
//! 4. The agent's RSS while 10 short-lived processes per second start,
//!    each from its own (deleted) copy of a binary: the worst case for the
//!    per-process and per-file caches.
//! 5. CPython frames: the real agent at 20 Hz `--all` over 8 CPython 3.12
//!    processes spinning in one thread each and 4 of 48 threads napping
//!    50 ms, in turn with frames at their current lines (as shipped), at
//!    their first lines (`TS_NO_PYLINE`) and without the on-CPU frame
//!    chain (`TS_NO_PYCHAIN`): the agent's and its writer thread's CPU,
//!    and the writer's per Python row.
//!
//! Run as root: `cargo bench --bench stacks`. `TASKSCOPE_BENCH_CHURN_SECS`
//! sets the length of part 4 (default 60); `TASKSCOPE_BENCH_PYTHON_ONLY`
//! runs part 5 alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use taskscope::output::stacks::maps::{read_maps, FileCache};
use taskscope::output::stacks::perfmap::PerfMap;
use taskscope::output::stacks::symbolize::Symbolizer;

const FRAMES_PER_STACK: usize = 20;

/// Kernel text addresses from kallsyms (a few bytes into each function).
fn kernel_addresses(n: usize) -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
    let all: Vec<u64> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
            let kind = fields.next()?;
            (matches!(kind, "t" | "T") && addr != 0 && fields.nth(1).is_none())
                .then_some(addr + 0x10)
        })
        .collect();
    assert!(
        !all.is_empty(),
        "kallsyms shows no addresses (kptr_restrict?)"
    );
    let step = (all.len() / n).max(1);
    all.iter().step_by(step).take(n).copied().collect()
}

/// Addresses spread over this process's executable file mappings.
fn user_addresses(n: usize) -> Vec<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let ranges: Vec<(u64, u64)> = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')) && l.contains('/'))
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect();
    let total: u64 = ranges.iter().map(|(a, b)| b - a).sum();
    let step = total / n as u64;
    (0..n as u64)
        .map(|i| {
            let mut at = i * step + 5;
            for (a, b) in &ranges {
                if at < b - a {
                    return a + at;
                }
                at -= b - a;
            }
            unreachable!()
        })
        .collect()
}

/// µs per frame: (cold, warm).
fn symbolize_rate(kernel: bool, addrs: &[u64]) -> (f64, f64) {
    let mut files = FileCache::default();
    let maps = read_maps(std::process::id(), &mut files).expect("own maps");
    let mut symbolizer = Symbolizer::new();
    let pass = |s: &mut Symbolizer| {
        let start = Instant::now();
        for chunk in addrs.chunks(FRAMES_PER_STACK) {
            let frames = if kernel {
                s.kernel(chunk, false)
            } else {
                s.user(&maps, &PerfMap::default(), chunk)
            };
            assert_eq!(frames.len(), chunk.len());
        }
        start.elapsed().as_secs_f64() * 1e6 / addrs.len() as f64
    };
    let cold = pass(&mut symbolizer);
    let warm = pass(&mut symbolizer);
    (cold, warm)
}

/// 1,000 threads waking every 50-500 ms.
struct Wakers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn spawn_wakers(n: usize) -> Wakers {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..n)
        .map(|i| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let period = Duration::from_millis(50 + (i as u64 * 7_919) % 450);
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(period);
                    }
                })
                .unwrap()
        })
        .collect();
    Wakers { stop, threads }
}

impl Drop for Wakers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The real agent, started and given time to attach.
fn start_agent(args: &[&str], dir: &Path) -> Child {
    let child = spawn_agent(args, dir);
    std::thread::sleep(Duration::from_secs(2));
    child
}

/// (anonymous, file-backed) resident KiB: the symbolizer maps the binaries
/// it reads, and those pages are the page cache's, reclaimable.
fn rss_kib(pid: u32) -> (u64, u64) {
    (status_kib(pid, "RssAnon:"), status_kib(pid, "RssFile:"))
}

/// The ground-truth workload binary (its `--nap MS` mode is the
/// short-lived process).
fn nap_binary() -> PathBuf {
    let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-groundtruth");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/groundtruth.c");
    let status = Command::new("cc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
        .arg(&binary)
        .arg(source)
        .status()
        .expect("cc");
    assert!(status.success());
    binary
}

/// Part 5: the agent's and its writer thread's CPU (percent of a CPU) with
/// Python frames at their current lines (as shipped), at their first
/// lines (`TS_NO_PYLINE`: the reader before lines), and without on-CPU
/// chains (`TS_NO_PYCHAIN`), medians over `passes` passes of the three in
/// turn.
struct PythonCost {
    agent: [f64; 3],
    writer: [f64; 3],
}

/// The variants of part 5, in the order of `PythonCost`'s fields.
const PYTHON_VARIANTS: [(&str, Option<&str>); 3] = [
    ("lines", None),
    ("first lines", Some("TS_NO_PYLINE")),
    ("no on-CPU chains", Some("TS_NO_PYCHAIN")),
];

/// Python threads of part 5's workload (8 spinners, 4 × 48 nappers, 12
/// main threads): a row each per tick under `--all`.
const PYTHON_THREADS: f64 = 212.0;

/// CPU seconds of thread `tid` of process `pid` so far.
fn thread_cpu_seconds(pid: u32, tid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
    let Some(end) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[end + 2..].split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / rustix::param::clock_ticks_per_second() as f64
}

/// The agent's writer thread (`taskscope-writer`, shown truncated).
fn writer_tid(pid: u32) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim() == "taskscope-write")
        })
}

fn python_cost(passes: usize) -> PythonCost {
    let python = "/root/.pyenv/versions/3.12.1/bin/python3.12";
    let spin = "import threading, time\ndef py_spin():\n    x = 0\n    while True:\n        x += 1\nthreading.Thread(target=py_spin, daemon=True).start()\ntime.sleep(3600)\n";
    let nap = "import threading, time\ndef py_nap():\n    while True:\n        time.sleep(0.05)\nfor _ in range(48):\n    threading.Thread(target=py_nap, daemon=True).start()\ntime.sleep(3600)\n";
    let mut children: Vec<Child> = std::iter::repeat_n(spin, 8)
        .chain(std::iter::repeat_n(nap, 4))
        .map(|script| {
            Command::new(python)
                .args(["-c", script])
                .spawn()
                .unwrap_or_else(|e| panic!("start {python}: {e}"))
        })
        .collect();
    let mut agent_cpu: [Vec<f64>; 3] = Default::default();
    let mut writer_cpu: [Vec<f64>; 3] = Default::default();
    for pass in 0..passes {
        for turn in 0..3 {
            let variant = (pass + turn) % 3;
            let dir = scratch_dir("bench-stacks-python");
            let mut command = Command::new(env!("CARGO_BIN_EXE_taskscope"));
            command
                .args(["run", "--all", "-F", "20", "--no-pin", "--output-dir"])
                .arg(&dir)
                .stderr(Stdio::null());
            if let Some(knob) = PYTHON_VARIANTS[variant].1 {
                command.env(knob, "1");
            }
            let mut agent = command.spawn().expect("start taskscope");
            std::thread::sleep(Duration::from_secs(6));
            let writer = writer_tid(agent.id()).expect("the agent's writer thread");
            let before = (
                cpu_seconds(agent.id()),
                thread_cpu_seconds(agent.id(), writer),
            );
            let measure = Duration::from_secs(10);
            std::thread::sleep(measure);
            let after = (
                cpu_seconds(agent.id()),
                thread_cpu_seconds(agent.id(), writer),
            );
            stop_agent(&mut agent);
            let percent = |used: f64| 100.0 * used / measure.as_secs_f64();
            agent_cpu[variant].push(percent(after.0 - before.0));
            writer_cpu[variant].push(percent(after.1 - before.1));
        }
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    PythonCost {
        agent: agent_cpu.map(|mut v| median(&mut v)),
        writer: writer_cpu.map(|mut v| median(&mut v)),
    }
}

/// Part 5's table rows.
fn print_python_cost(cost: &PythonCost) {
    let percents = |v: &[f64; 3]| {
        v.iter()
            .map(|p| format!("{p:.2}%"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let names = PYTHON_VARIANTS.map(|(name, _)| name).join(" / ");
    println!(
        "| agent CPU, --all 20 Hz, 200 CPython 3.12 threads (8 spinning): {names} | {} of a CPU |",
        percents(&cost.agent)
    );
    println!(
        "| writer thread CPU, same: {names} | {} of a CPU |",
        percents(&cost.writer)
    );
    // A row per Python thread per tick.
    let rows = PYTHON_THREADS * 20.0;
    let per_row = cost
        .writer
        .map(|p| p / 100.0 / rows * 1e6)
        .iter()
        .map(|us| format!("{us:.2} µs"))
        .collect::<Vec<_>>()
        .join(" / ");
    println!("| writer CPU per Python row ({rows} rows/s): {names} | {per_row} |");
}

/// Perf maps (JIT names) on the writer: (ms to read a map of `lines`
/// lines, ns per lookup, µs to read 1,000 lines appended since).
fn perf_map_costs(lines: u64) -> (f64, f64, f64) {
    use std::io::Write;
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let line = |i: u64| {
        format!(
            "{:x} 80 JS:*handler_{i} /srv/app/routes.js:{i}:7\n",
            0x7f00_0000_0000 + i * 0x100
        )
    };
    let mut file = std::fs::File::create(&path).expect("create a perf map");
    for i in 0..lines {
        file.write_all(line(i).as_bytes()).unwrap();
    }
    let mut map = PerfMap::default();
    let start = Instant::now();
    map.refresh(std::process::id());
    let read_ms = start.elapsed().as_secs_f64() * 1e3;
    let lookups = 1_000_000u64;
    let start = Instant::now();
    let mut found = 0;
    for i in 0..lookups {
        found += usize::from(
            map.find(0x7f00_0000_0000 + (i * 7919 % lines) * 0x100 + 0x10)
                .is_some(),
        );
    }
    let lookup_ns = start.elapsed().as_secs_f64() * 1e9 / lookups as f64;
    assert_eq!(found as u64, lookups);
    for i in lines..lines + 1_000 {
        file.write_all(line(i).as_bytes()).unwrap();
    }
    let start = Instant::now();
    map.refresh(std::process::id());
    let append_us = start.elapsed().as_secs_f64() * 1e6;
    assert!(map.find(0x7f00_0000_0000 + (lines + 999) * 0x100).is_some());
    let _ = std::fs::remove_file(&path);
    (read_ms, lookup_ns, append_us)
}

fn main() {
    // 0. Perf maps (JIT frames): reading and looking up.
    let (read_ms, lookup_ns, append_us) = perf_map_costs(100_000);
    println!(
        "perf map of 100,000 lines (JIT names): read {read_ms:.1} ms, lookup {lookup_ns:.0} ns, 1,000 lines appended read in {append_us:.0} µs"
    );
    if std::env::var_os("TASKSCOPE_BENCH_PERF_MAP_ONLY").is_some() {
        return;
    }
    let passes = passes(6);
    if std::env::var_os("TASKSCOPE_BENCH_PYTHON_ONLY").is_some() {
        print_python_cost(&python_cost(passes));
        return;
    }

    // 1. Symbolization.
    let kernel = kernel_addresses(4_000);
    let user = user_addresses(4_000);
    let (k_cold, k_warm) = symbolize_rate(true, &kernel);
    let (u_cold, u_warm) = symbolize_rate(false, &user);

    // 2. Agent CPU, stacks off vs on, 1,000 waking threads.
    let wakers = spawn_wakers(1_000);
    let (mut cpu_off, mut cpu_on, mut cpu_ratio) = (vec![], vec![], vec![]);
    let measure = Duration::from_secs(10);
    for pass in 0..passes {
        let mut pair = [0.0; 2];
        for with in [pass % 2 == 0, pass % 2 == 1] {
            let stacks = if with { "kernel,user" } else { "none" };
            let dir = scratch_dir("bench-stacks-cpu");
            let mut agent = start_agent(&["--all", "-F", "20", "--stacks", stacks], &dir);
            let before = cpu_seconds(agent.id());
            std::thread::sleep(measure);
            let used = cpu_seconds(agent.id()) - before;
            stop_agent(&mut agent);
            pair[usize::from(with)] = 100.0 * used / measure.as_secs_f64();
        }
        cpu_off.push(pair[0]);
        cpu_on.push(pair[1]);
        cpu_ratio.push(pair[1] / pair[0]);
    }
    let rows_per_tick = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_dir(e.path().join("task")).ok())
        .map(|tasks| tasks.count() as u32)
        .sum::<u32>();
    drop(wakers);

    // 3. Ping-pong under the agent, stacks off vs on.
    let (mut pp_ratio, mut pp_off, mut pp_on) = (vec![], vec![], vec![]);
    for pass in 0..passes * 2 {
        let mut pair = [0.0; 2];
        for with in [pass % 2 == 0, pass % 2 == 1] {
            let stacks = if with { "kernel,user" } else { "none" };
            let dir = scratch_dir("bench-stacks-pingpong");
            let mut agent = start_agent(&["-F", "20", "--stacks", stacks], &dir);
            // Steady state: the first stacks of this (large, debug-info)
            // binary are symbolized cold during the warm-up.
            pingpong_per_sec(200_000);
            pair[usize::from(with)] = pingpong_per_sec(200_000);
            stop_agent(&mut agent);
        }
        pp_off.push(pair[0]);
        pp_on.push(pair[1]);
        pp_ratio.push(pair[1] / pair[0]);
    }

    // 4. RSS under process churn.
    let churn_secs: u64 = std::env::var("TASKSCOPE_BENCH_CHURN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let nap = nap_binary();
    let dir = scratch_dir("bench-stacks-churn");
    let mut agent = start_agent(&["--all", "-F", "20"], &dir);
    let copies = scratch_dir("bench-stacks-copies");
    std::fs::create_dir_all(&copies).unwrap();
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut children = Vec::new();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(churn_secs) {
        let copy = copies.join(format!("nap-{n}"));
        std::fs::copy(&nap, &copy).unwrap();
        children.push(Command::new(&copy).args(["--nap", "300"]).spawn().unwrap());
        std::fs::remove_file(&copy).unwrap();
        n += 1;
        children.retain_mut(|c| c.try_wait().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(100));
        let at = started.elapsed().as_secs();
        if at > 0 && at.is_multiple_of(10) && rss.last().is_none_or(|(t, _)| *t != at) {
            rss.push((at, rss_kib(agent.id())));
        }
    }
    for mut c in children {
        let _ = c.wait();
    }
    stop_agent(&mut agent);
    let rows = Command::new("sh")
        .current_dir(&dir)
        .args(["-c", "zstdcat stacks/*/*/*.csv.zst | grep -c nap_then_exit"])
        .output()
        .unwrap();

    println!();
    println!("| measure | result |");
    println!("| --- | --- |");
    let per_stack = |us_per_frame: f64| 1e6 / (us_per_frame * FRAMES_PER_STACK as f64);
    println!(
        "| symbolize kernel frame (kallsyms), cold / warm | {k_cold:.2} µs / {k_warm:.3} µs ({:.0} / {:.0} stacks/s of {FRAMES_PER_STACK} frames) |",
        per_stack(k_cold),
        per_stack(k_warm)
    );
    println!(
        "| symbolize user frame (ELF + DWARF), cold / warm | {u_cold:.2} µs / {u_warm:.3} µs ({:.0} / {:.0} stacks/s) |",
        per_stack(u_cold),
        per_stack(u_warm)
    );
    let (off, on) = (median(&mut cpu_off), median(&mut cpu_on));
    // Rows per second: the 1,000 wakers plus this process's other threads
    // and the rest of the machine, about 1,100 threads at 20 Hz.
    let rows_per_sec = f64::from(rows_per_tick) * 20.0;
    println!(
        "| agent CPU, --all 20 Hz, 1,000 waking threads: --stacks none / both | {off:.2}% / {on:.2}% of a CPU (×{:.2}; +{:.2} µs per sampled row) |",
        median(&mut cpu_ratio),
        (on - off) / 100.0 * 1e6 / rows_per_sec
    );
    println!(
        "| same-CPU pipe ping-pong under the agent at 20 Hz: stacks on vs off | {:.1}% ({:.0} vs {:.0} rt/s) |",
        100.0 * median(&mut pp_ratio),
        median(&mut pp_on),
        median(&mut pp_off)
    );
    let rss_text = rss
        .iter()
        .map(|(t, (anon, file))| {
            format!(
                "{t} s: {:.1} + {:.1}",
                *anon as f64 / 1024.0,
                *file as f64 / 1024.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!("| agent RSS, anonymous + file-backed MiB, {n} short-lived processes from distinct binaries over {churn_secs} s | {rss_text} |");
    println!(
        "| distinct nap stacks defined (one per period expected) | {} |",
        String::from_utf8_lossy(&rows.stdout).trim()
    );
    print_python_cost(&python_cost(passes));
}
