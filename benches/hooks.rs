//! Hook overhead with the shipped defaults: what the agent's kernel hooks
//! add to every syscall and context switch on the machine.
//!
//! * `getppid()` in a loop: cost per syscall.
//! * Same-CPU pipe ping-pong: round trips per second (each round trip is
//!   4 syscalls, 2 context switches and 2 wakeups).
//!
//! Each pass measures, in rotating order: no agent; the floor (an empty
//! `sys_enter` + `sys_exit` pair, no agent); the agent as `run` ships it
//! (stacks on, `--syscalls passive`); and `--syscalls exact` (stacks on).
//! Medians of the per-pass ratios to "no agent" are reported. Run as root:
//! `cargo bench --bench hooks` (`TASKSCOPE_BENCH_PASSES=N` passes).

mod common;

use std::time::Instant;

use common::*;
use taskscope::bpf::floor::EmptySyscallHooks;
use taskscope::bpf::{StackKinds, SyscallMode};

const SYSCALLS: u64 = 1_000_000;
const ROUND_TRIPS: u64 = 40_000;

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
    Floor,
    Default,
    Exact,
}

const SETUPS: [(Setup, &str); 4] = [
    (Setup::NoAgent, "no agent"),
    (Setup::Floor, "empty sys_enter + sys_exit (floor)"),
    (
        Setup::Default,
        "agent, shipped defaults (stacks on, --syscalls passive)",
    ),
    (Setup::Exact, "agent, --syscalls exact (stacks on)"),
];

/// Load `setup`, measure, unload.
fn measure(setup: Setup) -> (f64, f64) {
    let stacks = StackKinds {
        kernel: true,
        user: true,
    };
    let hold: (Option<taskscope::bpf::Agent>, Option<EmptySyscallHooks>) = match setup {
        Setup::NoAgent => (None, None),
        Setup::Floor => (
            None,
            Some(EmptySyscallHooks::attach().expect("attach the empty syscall hooks")),
        ),
        Setup::Default => (
            Some(load_agent_with(32_768, 1, stacks, SyscallMode::Passive)),
            None,
        ),
        Setup::Exact => (
            Some(load_agent_with(32_768, 1, stacks, SyscallMode::Exact)),
            None,
        ),
    };
    let syscall = getppid_ns();
    let pingpong = pingpong_per_sec(ROUND_TRIPS);
    drop(hold);
    (syscall, pingpong)
}

fn main() {
    let passes = passes(20);
    println!(
        "hook overhead: {passes} passes of {} setups in rotating order, {SYSCALLS} getppid() and {ROUND_TRIPS} ping-pong round trips each",
        SETUPS.len()
    );
    let mut getppid = vec![Vec::new(); SETUPS.len()];
    let mut pingpong = vec![Vec::new(); SETUPS.len()];
    let (mut added, mut share, mut kept) = (
        vec![Vec::new(); SETUPS.len()],
        vec![Vec::new(); SETUPS.len()],
        vec![Vec::new(); SETUPS.len()],
    );
    for pass in 0..passes {
        let mut results = [(0.0, 0.0); SETUPS.len()];
        for k in 0..SETUPS.len() {
            let i = (pass + k) % SETUPS.len();
            results[i] = measure(SETUPS[i].0);
        }
        let (base_ns, base_rt) = results[0];
        for (i, &(ns, rt)) in results.iter().enumerate() {
            getppid[i].push(ns);
            pingpong[i].push(rt);
            added[i].push(ns - base_ns);
            share[i].push(100.0 * (ns - base_ns) / base_ns);
            kept[i].push(100.0 * rt / base_rt);
        }
    }
    println!();
    println!(
        "| setup | getppid() | added per getppid() | % of the call | ping-pong | vs no agent |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, (_, name)) in SETUPS.iter().enumerate() {
        println!(
            "| {name} | {:.0} ns | {:+.1} ns | {:+.1}% | {:.0} rt/s | {:.1}% |",
            median(&mut getppid[i]),
            median(&mut added[i]),
            median(&mut share[i]),
            median(&mut pingpong[i]),
            median(&mut kept[i]),
        );
    }
}
