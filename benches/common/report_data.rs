//! The synthetic data of the report and serve benches: a 1,000-thread
//! host sampled at 1 Hz, `rows` active threads per tick, written by the
//! real writer.

use std::path::Path;
use std::time::{Duration, Instant};

use taskscope::agent::decode::decode;
use taskscope::bpf::types::{ts_thread, ts_thread_flags};
use taskscope::bpf::ThreadEntry;
use taskscope::output::sample::Sample;
use taskscope::output::tick::{Tick, TickStats};
use taskscope::output::{Formats, OutputDir, Writer, WriterConfig};

pub const THREADS: u32 = 1_000;

/// The active threads of tick `tick`: `rows` of the 1,000, on CPU, queued,
/// in disk waits and in syscalls.
pub fn tick_samples(tick: u64, rows: u32) -> Vec<Sample> {
    let now = 1_000_000_000_000 + tick * 1_000_000_000;
    let stride = THREADS / rows.max(1);
    (0..rows)
        .map(|k| {
            let i = (k * stride + (tick as u32 % stride.max(1))) % THREADS;
            let mut entry = ts_thread {
                tid: 1_000 + i,
                tgid: 1_000 + i / 40 * 40,
                flags: ts_thread_flags::TS_F_SWITCH_KNOWN.0
                    | ts_thread_flags::TS_F_IN_SYSCALL.0
                    | ts_thread_flags::TS_F_ENTER_KNOWN.0,
                sched_state: if i.is_multiple_of(7) { 2 } else { 0 },
                switch_out_ns: now - 1_000_000,
                switch_in_ns: now - 2_000_000_000,
                syscall_nr: [202, 0, 7, 230, 232, 17, 74][(i % 7) as usize],
                syscall_enter_ns: now - 20_000,
                syscall_seq: tick,
                cpu: i % 8,
                cgroup_id: 1,
                exe_id: u64::from(i / 40) + 1,
                ..Default::default()
            };
            let name = format!("app-{:02}", i % 40);
            for (d, s) in entry.comm.iter_mut().zip(name.bytes()) {
                *d = s as i8;
            }
            if i.is_multiple_of(3) {
                entry.flags |= ts_thread_flags::TS_F_ON_CPU.0;
            }
            decode(
                &ThreadEntry {
                    thread: entry,
                    ..Default::default()
                },
                now,
            )
        })
        .collect()
}

/// `seconds` of ticks ending at `end_us` into `out`; the time it took.
pub fn write_span(out: &Path, formats: Formats, seconds: u64, rows: u32, end_us: i64) -> Duration {
    let plan = taskscope::output::dir::check(out).unwrap();
    let mut config = WriterConfig::csv(
        "bench",
        Duration::from_secs(3_600),
        Duration::from_secs(600),
    );
    config.formats = formats;
    let mut writer = Writer::new(OutputDir::create(&plan).unwrap(), config).unwrap();
    let variants: Vec<Vec<Sample>> = (0..20).map(|t| tick_samples(t, rows)).collect();
    let ticks = seconds;
    let start_us = end_us - ticks as i64 * 1_000_000;
    let started = Instant::now();
    for t in 0..ticks {
        writer.write_tick(&Tick {
            ts_us: start_us + t as i64 * 1_000_000,
            mono_ns: 0,
            weight_us: 1_000_000,
            samples: variants[(t % 20) as usize].clone(),
            completions: Vec::new(),
            stacks: Vec::new(),
            stats: TickStats::default(),
        });
    }
    writer.close();
    started.elapsed()
}
