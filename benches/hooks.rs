//! Hook overhead with the shipped defaults: what the agent's kernel hooks
//! add to every syscall and context switch on the machine.
//!
//! * `getppid()` in a loop: cost per syscall.
//! * Same-CPU pipe ping-pong: round trips per second (each round trip is
//!   4 syscalls, 2 context switches and 2 wakeups).
//! * Cross-CPU pipe ping-pong (the two threads pinned to CPUs 0 and 1):
//!   every wakeup comes from the other CPU, and is handed over to the
//!   wakee's CPU when that one is idle (csd_queue_cpu names the waker).
//!
//! Each pass measures, in rotating order: no agent; the syscall floor (an
//! empty `sys_enter` + `sys_exit` pair, no agent); the scheduler floor (an
//! empty `sched_switch` + `sched_wakeup` pair, no agent: what any program
//! on the hooks a ping-pong runs costs); the agent as `run` ships it
//! (stacks on, `--syscalls passive`); and `--syscalls exact` (stacks on).
//! Three more setups leave one part of the defaults' work out (the fd
//! record of `file`, the waker record, the hand-over hook) to show what
//! each costs.
//! Medians of the per-pass ratios to "no agent" are reported, and, from
//! the kernel's own BPF run-time statistics (`kernel.bpf_stats_enabled`,
//! switched on for the run), the nanoseconds each scheduler hook takes per
//! run during the ping-pong (csd_queue_cpu: during the cross-CPU one):
//! unlike the rates, those hardly move with the load other work puts on
//! the machine. Run as root:
//! `cargo bench --bench hooks` (`TASKSCOPE_BENCH_PASSES=N` passes;
//! `TASKSCOPE_BENCH_SETUPS=shipped,TS_NO_FD` runs only those setups
//! beside "no agent").

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::*;
use taskscope::bpf::floor::{EmptyHooks, Floor};
use taskscope::bpf::{StackKinds, SyscallMode};

const SYSCALLS: u64 = 1_000_000;
const ROUND_TRIPS: u64 = 40_000;
/// Cross-CPU round trips are slower (an IPI each way when the other CPU
/// sleeps).
const CROSS_ROUND_TRIPS: u64 = 10_000;

fn getppid_ns() -> f64 {
    let start = Instant::now();
    for _ in 0..SYSCALLS {
        // SAFETY: getppid has no arguments and no side effects.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    start.elapsed().as_nanos() as f64 / SYSCALLS as f64
}

/// What is loaded during one measurement.
#[derive(Clone, Copy)]
enum Setup {
    NoAgent,
    Floor(Floor),
    Default,
    /// The defaults without one part of the switch-out's work (`TS_NO_*`).
    Without(&'static str),
    Exact,
}

const SETUPS: [(Setup, &str); 8] = [
    (Setup::NoAgent, "no agent"),
    (
        Setup::Floor(Floor::Syscalls),
        "empty sys_enter + sys_exit (syscall floor)",
    ),
    (
        Setup::Floor(Floor::Scheduler),
        "empty sched_switch + sched_wakeup (scheduler floor)",
    ),
    (
        Setup::Default,
        "agent, shipped defaults (stacks on, --syscalls passive)",
    ),
    (Setup::Exact, "agent, --syscalls exact (stacks on)"),
    (
        Setup::Without("TS_NO_FD"),
        "defaults without the fd record of `file` (TS_NO_FD)",
    ),
    (
        Setup::Without("TS_NO_WAKER"),
        "defaults without the waker record (TS_NO_WAKER)",
    ),
    (
        Setup::Without("TS_NO_CSD"),
        "defaults without the hand-over waker hook (TS_NO_CSD)",
    ),
];

/// The agent's scheduler hooks whose run time is reported.
const HOOKS: [&str; 3] = ["on_sched_switch", "on_sched_wakeup", "on_csd_queue"];

/// The column of `HOOKS` a program's run time goes in: the agent's hooks
/// by name, the scheduler floor's empty programs under the hook they
/// stand in for.
fn hook_column(name: &str) -> Option<&'static str> {
    match name {
        "floor_switch" => Some(HOOKS[0]),
        "floor_wakeup" => Some(HOOKS[1]),
        _ => HOOKS.iter().find(|h| **h == name).copied(),
    }
}

/// Run time and runs so far of the programs reported in `HOOKS` whose id
/// is in `ids` (loaded by this process: the ids its load took), by column.
fn hook_runs(ids: (u32, u32)) -> HashMap<String, (u64, u64)> {
    let mut runs = HashMap::new();
    for info in libbpf_rs::query::ProgInfoIter::default() {
        let name = info.name.to_string_lossy();
        let column = hook_column(&name);
        if let Some(column) = column.filter(|_| info.id > ids.0 && info.id <= ids.1) {
            let e = runs.entry(column.to_string()).or_insert((0, 0));
            e.0 += info.run_time_ns;
            e.1 += info.run_cnt;
        }
    }
    runs
}

/// The highest program id loaded now.
fn newest_prog_id() -> u32 {
    libbpf_rs::query::ProgInfoIter::default()
        .map(|info| info.id)
        .max()
        .unwrap_or(0)
}

/// Nanoseconds per run of each hook between two `hook_runs` readings.
fn per_run(before: &HashMap<String, (u64, u64)>, after: &HashMap<String, (u64, u64)>) -> [f64; 3] {
    HOOKS.map(|name| {
        let (t0, n0) = before.get(name).copied().unwrap_or((0, 0));
        let (t1, n1) = after.get(name).copied().unwrap_or((0, 0));
        if n1 > n0 {
            (t1 - t0) as f64 / (n1 - n0) as f64
        } else {
            f64::NAN
        }
    })
}

/// Switches `kernel.bpf_stats_enabled` on while it lives (the statistics
/// cost two clock reads per run: never on while rates are measured).
struct BpfStats(String);

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> BpfStats {
        let old = std::fs::read_to_string(Self::PATH).expect("read bpf_stats_enabled");
        std::fs::write(Self::PATH, "1").expect("enable BPF run-time statistics");
        BpfStats(old.trim().to_string())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

/// What one setup measured.
#[derive(Clone, Copy)]
struct Measured {
    getppid_ns: f64,
    /// Round trips per second, same CPU and across CPUs 0 and 1.
    pingpong: f64,
    cross: f64,
    /// ns per run of each of `HOOKS`.
    hooks: [f64; 3],
}

/// Load `setup`, measure, unload: getppid() ns, ping-pong round trips per
/// second (same CPU, across two), ns per run of each of `HOOKS` (the
/// scheduler hooks during the same-CPU ping-pong, csd_queue_cpu during
/// the cross-CPU one).
fn measure(setup: Setup) -> Measured {
    let before_load = newest_prog_id();
    let stacks = StackKinds {
        kernel: true,
        user: true,
    };
    let hold: (Option<taskscope::bpf::Agent>, Option<EmptyHooks>) = match setup {
        Setup::NoAgent => (None, None),
        Setup::Floor(floor) => (
            None,
            Some(EmptyHooks::attach(floor).expect("attach the empty hooks of a floor")),
        ),
        Setup::Default => (
            Some(load_agent_with(32_768, 1, stacks, SyscallMode::Passive)),
            None,
        ),
        Setup::Without(part) => {
            std::env::set_var(part, "1");
            let agent = load_agent_with(32_768, 1, stacks, SyscallMode::Passive);
            std::env::remove_var(part);
            (Some(agent), None)
        }
        Setup::Exact => (
            Some(load_agent_with(32_768, 1, stacks, SyscallMode::Exact)),
            None,
        ),
    };
    let ids = (before_load, newest_prog_id());
    let getppid_ns = getppid_ns();
    let pingpong = pingpong_per_sec(ROUND_TRIPS);
    let cross = pingpong_on(CROSS_ROUND_TRIPS, 0, 1);
    let stats = BpfStats::enable();
    let before = hook_runs(ids);
    pingpong_per_sec(ROUND_TRIPS / 4);
    let mut hooks = per_run(&before, &hook_runs(ids));
    let before = hook_runs(ids);
    pingpong_on(CROSS_ROUND_TRIPS / 4, 0, 1);
    hooks[2] = per_run(&before, &hook_runs(ids))[2];
    drop(stats);
    drop(hold);
    Measured {
        getppid_ns,
        pingpong,
        cross,
        hooks,
    }
}

/// The setups to run: "no agent" (the reference) and those whose label
/// contains one of the comma-separated words of `TASKSCOPE_BENCH_SETUPS`
/// (all when unset), e.g. `shipped,TS_NO_FD`.
fn chosen_setups() -> Vec<(Setup, &'static str)> {
    let wanted = std::env::var("TASKSCOPE_BENCH_SETUPS").ok();
    SETUPS
        .iter()
        .enumerate()
        .filter(|(i, (_, name))| {
            *i == 0
                || wanted
                    .as_deref()
                    .is_none_or(|w| w.split(',').any(|word| name.contains(word.trim())))
        })
        .map(|(_, setup)| *setup)
        .collect()
}

fn main() {
    let passes = passes(20);
    let setups = chosen_setups();
    println!(
        "hook overhead: {passes} passes of {} setups in rotating order, {SYSCALLS} getppid() and {ROUND_TRIPS} ping-pong round trips each",
        setups.len()
    );
    let mut getppid = vec![Vec::new(); setups.len()];
    let mut pingpong = vec![Vec::new(); setups.len()];
    let mut cross = vec![Vec::new(); setups.len()];
    let mut cross_kept = vec![Vec::new(); setups.len()];
    let mut hook_ns = vec![vec![Vec::new(); HOOKS.len()]; setups.len()];
    let (mut added, mut share, mut kept) = (
        vec![Vec::new(); setups.len()],
        vec![Vec::new(); setups.len()],
        vec![Vec::new(); setups.len()],
    );
    for pass in 0..passes {
        let mut results = vec![
            Measured {
                getppid_ns: 0.0,
                pingpong: 0.0,
                cross: 0.0,
                hooks: [f64::NAN; 3],
            };
            setups.len()
        ];
        for k in 0..setups.len() {
            let i = (pass + k) % setups.len();
            results[i] = measure(setups[i].0);
        }
        let base = results[0];
        let (base_ns, base_rt) = (base.getppid_ns, base.pingpong);
        for (i, m) in results.iter().enumerate() {
            let (ns, rt) = (m.getppid_ns, m.pingpong);
            cross[i].push(m.cross);
            cross_kept[i].push(100.0 * m.cross / base.cross);
            for (k, v) in m.hooks.iter().enumerate() {
                if v.is_finite() {
                    hook_ns[i][k].push(*v);
                }
            }
            getppid[i].push(ns);
            pingpong[i].push(rt);
            added[i].push(ns - base_ns);
            share[i].push(100.0 * (ns - base_ns) / base_ns);
            kept[i].push(100.0 * rt / base_rt);
        }
    }
    println!();
    println!(
        "| setup | getppid() | added per getppid() | % of the call | ping-pong | vs no agent | cross-CPU ping-pong | vs no agent | sched_switch | sched_wakeup | csd_queue_cpu |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, (_, name)) in setups.iter().enumerate() {
        let hooks: Vec<String> = hook_ns[i]
            .iter_mut()
            .map(|v| {
                if v.is_empty() {
                    "–".to_string()
                } else {
                    format!("{:.0} ns", median(v))
                }
            })
            .collect();
        println!(
            "| {name} | {:.0} ns | {:+.1} ns | {:+.1}% | {:.0} rt/s | {:.1}% | {:.0} rt/s | {:.1}% | {} |",
            median(&mut getppid[i]),
            median(&mut added[i]),
            median(&mut share[i]),
            median(&mut pingpong[i]),
            median(&mut kept[i]),
            median(&mut cross[i]),
            median(&mut cross_kept[i]),
            hooks.join(" | "),
        );
    }
}
