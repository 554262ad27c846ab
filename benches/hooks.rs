//! Hook overhead: what the agent's kernel hooks add to every syscall and
//! context switch on the machine.
//!
//! * `getppid()` in a loop: cost per syscall with and without the hooks.
//! * Same-CPU pipe ping-pong: round trips per second with and without
//!   (each round trip is 4 syscalls, 2 context switches and 2 wakeups).
//!
//! Passes alternate (with, without, without, with, ...) and medians are
//! compared. Run as root: `cargo bench --bench hooks`.

mod common;

use std::time::Instant;

use common::*;

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

fn main() {
    let passes = passes(30);
    let (mut sys_off, mut sys_on, mut pp_off, mut pp_on) = (vec![], vec![], vec![], vec![]);
    let (mut sys_delta, mut pp_ratio) = (vec![], vec![]);
    println!("hook overhead: {passes} alternating pairs, {SYSCALLS} getppid() and {ROUND_TRIPS} ping-pong round trips each");
    for pass in 0..passes {
        let with_first = pass % 2 == 1;
        let mut pair = [(0.0, 0.0); 2];
        for with in [with_first, !with_first] {
            let agent = with.then(|| load_agent(32_768, 1));
            let syscall = getppid_ns();
            let pingpong = pingpong_per_sec(ROUND_TRIPS);
            drop(agent);
            pair[usize::from(with)] = (syscall, pingpong);
        }
        let [(s_off, p_off), (s_on, p_on)] = pair;
        sys_off.push(s_off);
        sys_on.push(s_on);
        pp_off.push(p_off);
        pp_on.push(p_on);
        sys_delta.push(s_on - s_off);
        pp_ratio.push(p_on / p_off);
    }
    println!();
    println!("| measure | without agent | with agent | effect (median of pairs) |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| getppid() | {:.0} ns | {:.0} ns | {:+.0} ns per syscall |",
        median(&mut sys_off),
        median(&mut sys_on),
        median(&mut sys_delta)
    );
    println!(
        "| same-CPU pipe ping-pong | {:.0} rt/s | {:.0} rt/s | {:.1}% of baseline |",
        median(&mut pp_off),
        median(&mut pp_on),
        100.0 * median(&mut pp_ratio)
    );
}
