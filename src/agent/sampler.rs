//! The sampling loop.
//!
//! Ticks fall on absolute deadlines (start + n × period on CLOCK_MONOTONIC),
//! so there is no drift; a tick that starts a whole period late skips the
//! missed deadlines and counts them as overruns instead of queueing them.
//! Each tick scans the mmap-ed thread table up to its high-water mark (no
//! syscalls), decodes the threads that pass the filter and hands the batch
//! to the writer thread. If the writer falls behind, whole ticks are dropped
//! and counted; the sampler never blocks on it.

use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::{Sender, TrySendError};
use tracing::{info, warn};

use super::budget::CpuBudget;
use super::clock::{monotonic_ns, now_pair, thread_cpu_ns};
use super::config::Config;
use super::decode;
use super::service::Service;
use super::settle;
use super::signals::Shutdown;
use super::stacks::Collector;
use super::tracking::Tracking;
use crate::bpf::fd_syscalls::is_fd_syscall;
use crate::bpf::types::{ts_slot_state, ts_thread};
use crate::bpf::{Agent, ThreadTable};
use crate::output::sample::{FdSample, Sample};
use crate::output::tick::{QueuedBytes, Tick, TickStats};
use crate::store::thread_state::ThreadState;

/// How many entries ahead the scan prefetches (three 4 KiB pages; measured
/// flat from 12 to 160, so the scan is near the memory floor of one cache
/// line per thread).
const PREFETCH_AHEAD: usize = 48;
/// Minimum time between two log lines about overruns or drops.
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Reconciliation interval while threads are left out of a full table:
/// the pass both measures how many are left out and tracks them as slots
/// free up (a pass over 10,000 threads costs ~4 ms of CPU).
const FULL_TABLE_RECONCILE: Duration = Duration::from_secs(1);

/// Scan the table once: decode every live thread that passes the filter,
/// and hand back slots the kernel released. `tick_ns` is the tick's
/// deadline (when the sampler woke), `now_ns` the time the scan started
/// (both CLOCK_MONOTONIC).
pub fn scan(
    table: &ThreadTable,
    include_all: bool,
    tick_ns: u64,
    now_ns: u64,
    samples: &mut Vec<Sample>,
) -> TickStats {
    let mut stats = TickStats::default();
    // The CPU the sampler took to sample: its displaced thread is put back.
    let sampler_cpu = u32::try_from(rustix::thread::sched_getcpu()).ok();
    let high_water = table.high_water();
    for slot in 0..high_water {
        // The scan is bound by memory latency (one cache line per entry,
        // entries 256 bytes apart): ask for entries ahead of time.
        table.prefetch(slot + PREFETCH_AHEAD);
        let slot_state = table.slot_state(slot);
        if slot_state == ts_slot_state::TS_SLOT_EXITED.0 {
            table.recycle(slot);
            continue;
        }
        if slot_state != ts_slot_state::TS_SLOT_LIVE.0 {
            continue;
        }
        stats.walked += 1;
        if !include_all && !decode::peek_state(&table.peek(slot), now_ns).is_active() {
            continue;
        }
        let Some(entry) = table.read(slot) else {
            stats.torn += 1;
            continue;
        };
        if entry.thread.slot_state != ts_slot_state::TS_SLOT_LIVE.0 {
            continue;
        }
        let mut sample = decode::decode(&entry, now_ns);
        sample.slot = slot as u32;
        sample.fd = fd_of(table, &entry.thread, &sample);
        if include_all || sample.state.is_active() {
            // Most rows of `--all` are sleepers, which the waits entry
            // says nothing about: skip its cache line for them.
            if decode::has_wait_record(sample.state) {
                if let Some(wait) = table.read_wait(slot) {
                    sample.wait = decode::wait_of(&wait, &entry.thread, sample.state);
                }
            }
            samples.push(sample);
        }
    }
    if let Some(cpu) = sampler_cpu {
        settle::restore_displaced(samples, cpu, tick_ns, now_ns);
    }
    settle::settle_cpus(samples, now_ns);
    stats.emitted = samples.len() as u32;
    stats
}

/// The file `sample`'s fd syscall works on, as the thread's own context
/// found it during that syscall (`bpf/fd.bpf.h`): read after the syscall's
/// entry (so during it), or, when the entry was not seen, at the switch-out
/// the thread still waits from or at the on-CPU sample whose arguments an
/// ON_CPU row carries; and for the fd of the syscall's arguments.
fn fd_of(table: &ThreadTable, entry: &ts_thread, sample: &Sample) -> Option<FdSample> {
    let syscall = sample.syscall?;
    let fd = syscall.args?[0];
    if !is_fd_syscall(syscall.nr) || fd > i32::MAX as u64 {
        return None;
    }
    let found = table.read_fd(sample.slot as usize)?;
    let during = if syscall.seq.is_some() {
        found.at_ns >= entry.syscall_enter_ns
    } else if sample.state == ThreadState::OnCpu {
        // Passive: the on-CPU sample or the switch-out that found it in
        // the syscall the row names (the one whose arguments it carries).
        found.at_ns != 0 && (found.at_ns == entry.perf_ns || found.at_ns == entry.switch_out_ns)
    } else {
        found.at_ns == sample.switch_out_ns
    };
    (during && found.fd as u64 == fd && found.file != 0).then_some(FdSample {
        fd: found.fd,
        file: found.file,
        ino: found.ino,
        pos: found.pos,
    })
}

/// How many live threads the full table leaves out. Measured by each
/// reconciliation pass (it tries to track every thread it walks); between
/// passes, forks that found the table full are added. An upper bound until
/// the next pass (left-out threads that exit are not seen), and passes run
/// every `FULL_TABLE_RECONCILE` while the count is not zero.
#[derive(Debug, Clone, Copy)]
struct Coverage {
    /// Threads the last pass could not give a slot.
    left_out_at_pass: u64,
    /// `slots_exhausted` when the last pass ended.
    exhausted_at_pass: u64,
}

impl Coverage {
    fn untracked_now(&self, exhausted_now: u64) -> u64 {
        self.left_out_at_pass + exhausted_now.saturating_sub(self.exhausted_at_pass)
    }
}

struct LoopCounters {
    ticks: u64,
    /// Sample rows produced (sent to the writer or dropped with a tick).
    rows: u64,
    missed: u64,
    dropped_ticks: u64,
    dropped_tick_rows: u64,
    torn: u64,
    last_log: Option<Instant>,
    slots_exhausted: u64,
}

pub fn sample_loop(
    agent: &mut Agent,
    config: &Config,
    shutdown: &Shutdown,
    sender: Sender<Tick>,
    service: &Service,
    queued_bytes: &QueuedBytes,
) -> Result<()> {
    let period_ns = config.period().as_nanos() as u64;
    let start_ns = monotonic_ns();
    let stop_ns = config.duration.map(|d| start_ns + d.as_nanos() as u64);
    let reconcile_ns = config.reconcile_interval.as_nanos() as u64;
    let mut next_ns = start_ns;
    let mut budget = config
        .max_cpu
        .map(|percent| CpuBudget::new(percent, config.frequency, start_ns));
    let mut stride = 1u64;
    let mut last_reconcile_ns = start_ns;
    let mut generation = 1u32;
    let mut counters = LoopCounters {
        ticks: 0,
        rows: 0,
        missed: 0,
        dropped_ticks: 0,
        dropped_tick_rows: 0,
        torn: 0,
        last_log: None,
        slots_exhausted: 0,
    };
    let mut coverage = Coverage {
        left_out_at_pass: agent.seed_left_out(),
        exhausted_at_pass: agent.table().counters().slots_exhausted,
    };
    // Skipped deadlines not yet in a tick the writer got.
    let mut unreported_missed = 0u64;
    let full_reconcile_ns = reconcile_ns.min(FULL_TABLE_RECONCILE.as_nanos() as u64);
    let mut samples_capacity = 64;
    let mut collector = config.stacks.any().then(|| Collector::new(period_ns));
    let mut tracking = Tracking::default();
    let mut tick_number = 0u64;

    loop {
        let wake_ns = stop_ns.map_or(next_ns, |stop| stop.min(next_ns));
        if !shutdown.sleep_until(wake_ns) {
            break;
        }
        // --track: every syscall and request that ends from here on may
        // be one this tick's rows catch (tracking.rs).
        if config.track.any() {
            agent.table().set_tick_ns(u64::MAX);
        }
        // The tick's instant, on both clocks at once: its rows' durations
        // count to `now_ns`, its `ts` is the same instant's wall time.
        let (now_ns, ts_us) = now_pair();
        if let Some(collector) = &collector {
            collector.disarm(agent.table());
        }
        if stop_ns.is_some_and(|stop| now_ns >= stop) {
            break;
        }
        let taken_period_ns = period_ns * stride;
        let late_ns = now_ns - next_ns;
        let mut missed = 0;
        if late_ns >= taken_period_ns {
            missed = late_ns / taken_period_ns;
            next_ns += missed * taken_period_ns;
            counters.missed += missed;
        }

        let cpu_before = thread_cpu_ns();
        let mut samples = Vec::with_capacity(samples_capacity);
        let mut stats = scan(
            agent.table(),
            config.include_all,
            next_ns,
            now_ns,
            &mut samples,
        );
        tick_number += 1;
        if config.track.any() {
            // Every row's syscall or request began before its entry was
            // read, so no later than now: a row that stands in for the
            // scan instant (a later wait) is of one begun after `now_ns`.
            agent
                .table()
                .set_tick_ns(monotonic_ns() + super::tracking::ENTRY_CLOCK_MARGIN_NS);
            tracking.caught(tick_number, &samples);
        }
        let mut stacks = Vec::new();
        if let Some(collector) = &mut collector {
            let (raws, collected) = collector.collect(agent, &mut samples, now_ns);
            stacks = raws;
            stats.stack_rows = collected.with_stacks;
            stats.stack_requests = collected.requested;
            stats.stacks_of_other_wait = collected.of_other_wait;
        }
        let mut completions = Vec::new();
        if config.track.any() {
            let ended = tracking.ended(agent.table(), tick_number);
            if let Err(err) = agent.drain_completions(&mut completions) {
                warn!("{err:#}");
            }
            tracking.keep(tick_number, &mut completions);
            tracking.forget(&ended);
        }
        stats.pass_us = (thread_cpu_ns() - cpu_before) / 1_000;
        unreported_missed += missed;
        stats.missed_ticks = unreported_missed;
        stats.dropped_ticks_total = counters.dropped_ticks;
        stats.dropped_tick_rows_total = counters.dropped_tick_rows;
        let hooks = agent.table().counters();
        stats.untracked_total = hooks.slots_exhausted;
        stats.untracked_now = coverage.untracked_now(hooks.slots_exhausted);
        stats.slots_used = agent.table().slots_used();
        stats.map_update_failed = hooks.map_update_failed;
        // Room for a few more rows than this tick's: a Vec that outgrows
        // its capacity doubles, and at 10,000 rows of 352 bytes one more
        // thread (or a restored displaced row) cost 3.5 MB more per tick.
        samples_capacity = samples.len() + samples.len() / 32 + 64;
        counters.ticks += 1;
        counters.rows += samples.len() as u64;
        counters.torn += u64::from(stats.torn);

        let tick = Tick {
            ts_us,
            mono_ns: now_ns,
            weight_us: config.weight_us() * stride,
            samples,
            completions,
            stacks,
            stats,
        };
        let bytes = tick.approx_bytes();
        let sent = if queued_bytes.try_reserve(bytes) {
            sender
                .try_send(tick)
                .inspect_err(|_| queued_bytes.release(bytes))
        } else {
            Err(TrySendError::Full(tick))
        };
        match sent {
            Ok(()) => {
                unreported_missed = 0;
                tracking.written(tick_number);
            }
            Err(TrySendError::Full(tick)) => {
                // Every syscalls and iorq row joins a sample: the ends of
                // what only this tick caught are dropped (tracking.rs).
                counters.dropped_ticks += 1;
                counters.dropped_tick_rows += tick.samples.len() as u64;
                // Its new captures never reached the writer.
                if let Some(collector) = &mut collector {
                    collector.forget_dropped(&tick.samples);
                }
            }
            Err(TrySendError::Disconnected(_)) => anyhow::bail!("the writer thread stopped"),
        }
        next_ns += taken_period_ns;
        if let Some(budget) = &mut budget {
            stride = budget.update(now_ns);
        }
        if let Some(collector) = &mut collector {
            collector.arm(agent.table(), next_ns);
        }

        let interval_ns = if stats.untracked_now > 0 {
            full_reconcile_ns
        } else {
            reconcile_ns
        };
        if now_ns - last_reconcile_ns >= interval_ns {
            generation = generation.wrapping_add(1);
            if let Some(left_out) = reconcile(agent, generation) {
                coverage = Coverage {
                    left_out_at_pass: left_out,
                    exhausted_at_pass: agent.table().counters().slots_exhausted,
                };
            }
            last_reconcile_ns = now_ns;
        }
        log_trouble(agent.table(), &mut counters, stats.untracked_now);
        service.sampler_alive();
    }
    let hooks = agent.table().counters();
    info!(
        ticks = counters.ticks,
        rows = counters.rows,
        missed_ticks = counters.missed,
        dropped_ticks = counters.dropped_ticks,
        dropped_tick_rows = counters.dropped_tick_rows,
        torn_reads = counters.torn,
        requests_in_flight = agent.requests_in_flight(),
        untracked_threads = hooks.slots_exhausted,
        io_contended = hooks.io_contended,
        map_update_failed = hooks.map_update_failed,
        task_storage_failed = hooks.storage_failed,
        switches_in_late = hooks.switch_in_late,
        switches_in_missed = hooks.switch_in_missed,
        handovers_noted = hooks.handovers_noted,
        handovers_taken = hooks.handovers_taken,
        handovers_stale = hooks.handovers_stale,
        handovers_unnamed = hooks.handovers_unnamed,
        "sampler finished"
    );
    Ok(())
}

/// Run the task iterator, then release slots of threads that two passes in
/// a row did not see (their exit was missed by the hooks). Returns how
/// many live threads the pass left out (table full); `None` if it failed.
fn reconcile(agent: &mut Agent, generation: u32) -> Option<u64> {
    let left_out = match agent.reconcile(generation) {
        Ok(left_out) => left_out,
        Err(err) => {
            warn!("reconciliation pass failed: {err:#}");
            return None;
        }
    };
    let table = agent.table();
    let mut released = 0;
    for slot in 0..table.high_water() {
        if table.slot_state(slot) == ts_slot_state::TS_SLOT_LIVE.0
            && generation.wrapping_sub(table.seen_gen(slot)) >= 2
        {
            table.mark_exited(slot);
            released += 1;
        }
    }
    if released > 0 {
        info!(
            released,
            "released slots of threads whose exit was not seen"
        );
    }
    Some(left_out)
}

fn log_trouble(table: &ThreadTable, counters: &mut LoopCounters, untracked_now: u64) {
    let due = counters
        .last_log
        .is_none_or(|at| at.elapsed() >= LOG_INTERVAL);
    if !due {
        return;
    }
    let hooks = table.counters();
    let exhausted = hooks.slots_exhausted;
    if counters.missed > 0
        || counters.dropped_ticks > 0
        || exhausted > counters.slots_exhausted
        || untracked_now > 0
        || hooks.map_update_failed > 0
    {
        warn!(
            missed_ticks = counters.missed,
            dropped_ticks = counters.dropped_ticks,
            untracked_threads = exhausted - counters.slots_exhausted,
            untracked_now,
            map_update_failed = hooks.map_update_failed,
            "sampler is behind or the thread table is full (totals since start; new untracked threads since last report; live threads left out now, raise --max-threads)"
        );
        counters.slots_exhausted = exhausted;
        counters.last_log = Some(Instant::now());
    }
}
