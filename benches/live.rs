//! Cost of the live reader (`taskscope top`, `bpf::live` +
//! `output::live::read_now`) over 10,000 threads: CPU per read of the
//! pinned table, and what that is at top's default 1 Hz (goal ≤ 0.5% of a
//! CPU). Then the cost of one `taskscope sql --live` refresh: read, the
//! read as a `samples` batch (`query::live`), and a GROUP BY query over
//! the newest read or a 60-read window (process CPU: the query engine's
//! threads included).
//!
//! The workload is this process: 10,000 threads sleeping on a condition
//! variable. The BPF programs are loaded and the table pinned as the
//! agent does (in /sys/fs/bpf, mounted when missing); the reader opens the
//! pins as another process would. Run as root: `cargo bench --bench live`.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use common::*;
use taskscope::bpf::live::LiveTable;
use taskscope::bpf::{Agent, LoadOptions, StackKinds, SyscallMode, TrackKinds};
use taskscope::cli::sql_live::read_into;
use taskscope::output::live::{now_ns, read_now, LiveStacks};
use taskscope::query::live::{register_empty, LiveTables};
use taskscope::query::{Engine, Limits};

const THREADS: usize = 10_000;
/// The agent's default table size on this machine's scale (`--max-threads`).
const MAX_THREADS: u32 = 32_768;

fn main() {
    assert!(
        rustix::process::geteuid().is_root(),
        "benchmarks load BPF programs: run them as root"
    );
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .stack_size(32 * 1024)
                .name(format!("sleeper{}", i % 100))
                .spawn(move || {
                    let (lock, cvar) = &*stop;
                    let mut stopped = lock.lock().unwrap();
                    while !*stopped {
                        stopped = cvar.wait(stopped).unwrap();
                    }
                })
                .expect("spawn sleeper")
        })
        .collect();
    let pin_dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/taskscope-bench-{}",
        std::process::id()
    ));
    let agent = Agent::load(&LoadOptions {
        agent_tgid: u32::MAX,
        pids: Vec::new(),
        max_threads: MAX_THREADS,
        frequency: 1,
        pin_dir: Some(pin_dir.clone()),
        pin_permissions: Default::default(),
        stacks: StackKinds::default(),
        track: TrackKinds::default(),
        syscalls: SyscallMode::Passive,
    })
    .unwrap_or_else(|err| panic!("cannot load the BPF programs: {err:#}"));
    assert!(
        agent.features().pinned.is_some(),
        "the table was not pinned in {}",
        pin_dir.display()
    );
    let table = LiveTable::open(&pin_dir).unwrap_or_else(|err| panic!("{err}"));
    let reads = passes(50);
    println!(
        "live reader: {THREADS} sleeping threads, table of {MAX_THREADS} slots, {reads} reads each"
    );
    for (what, all, with_stacks) in [
        ("active states, with stacks (top's default)", false, true),
        ("active states, without stacks", false, false),
        ("all states (--all-states, a), with stacks", true, true),
        ("all states, without stacks", true, false),
    ] {
        let mut rows = 0;
        let mut walked = 0;
        let mut stacks = LiveStacks::new();
        let cpu0 = thread_cpu();
        let wall0 = Instant::now();
        for _ in 0..reads {
            let read = read_now(&table, all, now_ns(), with_stacks.then_some(&mut stacks));
            rows = read.rows.len();
            walked = read.walked;
        }
        let cpu = (thread_cpu() - cpu0).as_secs_f64() / reads as f64;
        let wall = wall0.elapsed().as_secs_f64() / reads as f64;
        println!(
            "  {what}: {:.2} ms CPU ({:.2} ms wall) per read, {walked} threads walked, {rows} rows; at 1 Hz {:.3}% of a CPU (goal <= 0.5%)",
            cpu * 1e3,
            wall * 1e3,
            cpu * 100.0
        );
    }
    sql_live(&table, reads);
    drop(table);
    drop(agent);
    let _ = std::fs::remove_dir(&pin_dir);
    *stop.0.lock().unwrap() = true;
    stop.1.notify_all();
    for t in threads {
        let _ = t.join();
    }
}

/// One `sql --live` refresh: read, batch, register, query.
fn sql_live(table: &LiveTable, reads: usize) {
    const QUERY: &str = "SELECT state, wait_class, comm, count(*) AS n FROM samples \
                         GROUP BY ALL ORDER BY n DESC LIMIT 10";
    let engine = Engine::new(Limits::default()).expect("the query engine");
    register_empty(&engine).expect("empty tables");
    let second = std::time::Duration::from_secs(1);
    println!("sql --live refresh ({QUERY}):");
    for (what, all, window) in [
        ("active states, newest read (the default)", false, None),
        ("all states (--all), newest read", true, None),
        (
            "all states (--all), --window 60s: 60 reads",
            true,
            Some(60 * second),
        ),
    ] {
        let mut tables = LiveTables::new(second, window).expect("tables");
        let mut stacks = LiveStacks::new();
        for _ in 0..tables.capacity().saturating_sub(1) {
            read_into(&mut tables, table, &mut stacks, all, now_ns()).expect("a batch");
        }
        let me = std::process::id();
        let cpu0 = cpu_seconds(me);
        let wall0 = Instant::now();
        let mut answer_rows = 0;
        for _ in 0..reads {
            read_into(&mut tables, table, &mut stacks, all, now_ns()).expect("a batch");
            tables.register(&engine).expect("registered");
            let batches = engine.query(QUERY).expect("the query runs");
            answer_rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
        }
        let cpu = (cpu_seconds(me) - cpu0) / reads as f64;
        let wall = wall0.elapsed().as_secs_f64() / reads as f64;
        println!(
            "  {what}: {:.2} ms CPU ({:.2} ms wall) per refresh, {} sample rows in the tables, {answer_rows} answer rows; at 1 Hz {:.2}% of a CPU",
            cpu * 1e3,
            wall * 1e3,
            tables.rows(),
            cpu * 100.0
        );
    }
}
