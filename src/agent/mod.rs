//! `taskscope run`: the agent. It checks that it may run, loads the BPF
//! programs, samples the thread table on a fixed schedule (`sampler`) and
//! hands each tick to the writer thread (`output`) until it is told to
//! stop, then publishes what it wrote.
//!
//! The decision a reader must know: two threads and a bounded queue. The
//! sampler never waits for the writer (a full queue drops whole ticks and
//! counts them); the writer owns every slow lookup (names, stacks) and the
//! disk. The sampler's parts are here: decoding table entries (`decode`),
//! stack capture (`stacks`), the clock, signals, the `--max-cpu` budget,
//! service notification and privileges; `doctor` checks the same things
//! without sampling.

pub mod budget;
pub mod clock;
pub mod config;
// Decoding and settling moved to `output` (the live reader of `top` uses
// them too, and must not depend on the agent); the old paths stay.
pub use crate::output::decode;
pub mod doctor;
pub mod privileges;
pub mod sampler;
pub mod service;
pub use crate::output::settle;
pub mod signals;
pub mod stacks;
pub mod tracking;

use std::thread;

use anyhow::{Context, Result};
use crossbeam_channel::bounded;
use tracing::info;

use crate::bpf::Agent;
use crate::output::tick::QueuedBytes;
use crate::output::{self, OutputDir, Writer, WriterConfig};
use crate::store::timefmt;
pub use config::Config;
use service::Service;
use signals::Shutdown;

/// How long the writer may be behind before the sampler drops ticks (the
/// queue is bounded in bytes too, `output::tick::QUEUE_BYTES`): a few
/// seconds of stall, as the first symbolization of a large binary takes,
/// cost no rows. 64 ticks were 1.3 s at 50 Hz, and dropped ticks.
const QUEUE_SECONDS: usize = 10;

/// The queue's length in ticks at `frequency`: [`QUEUE_SECONDS`] of them,
/// at least 64.
fn queue_ticks(frequency: u32) -> usize {
    (QUEUE_SECONDS * frequency as usize).max(64)
}

/// `taskscope run`: check, load, sample until told to stop, publish.
pub fn run_agent(config: &Config) -> Result<()> {
    // First: the signals `main` held are answered from here on.
    let shutdown = Shutdown::install()?;
    signals::release();
    privileges::check_can_trace()?;
    privileges::raise_open_file_limit();
    let plan = output::dir::check(&config.output_dir)?;
    let mut agent = Agent::load(&config.load_options())?;
    let out = OutputDir::create_with(&plan, config.perms)?;
    info!(
        output_dir = %out.path().display(),
        frequency = config.frequency,
        all = config.include_all,
        rotate = %timefmt::human_duration(config.rotate),
        "sampling"
    );
    let writer_config = WriterConfig {
        host: config.host.clone(),
        rotate: config.rotate,
        flush_interval: config.flush_interval,
        formats: config.formats,
        retention: config.retention,
        metadata: file_metadata(config),
        track: agent.features().track,
        ship_to: config.ship_to.clone(),
    };
    let service = Service::from_env();
    service.check_period(config.period());
    let status = format!(
        "sampling at {} Hz into {}",
        config.frequency,
        config.output_dir.display()
    );
    let writer_service = service.clone();
    let (sender, receiver) = bounded(queue_ticks(config.frequency));
    let queued_bytes = QueuedBytes::default();
    let writer_queued = queued_bytes.clone();
    let flush_interval = config.flush_interval;
    let publish = shutdown.clone();
    // The writer is made on its own thread (the symbolizer it owns cannot
    // move between threads); it reports whether it could start.
    let (ready_tx, ready_rx) = bounded::<Result<()>>(1);
    let switches = agent.table().switch_view();
    let python_threads = agent.python_threads()?;
    let writer_thread = thread::Builder::new()
        .name("taskscope-writer".into())
        .spawn(move || {
            match Writer::new(out, writer_config).map(|w| {
                w.with_switches(switches)
                    .with_python_threads(python_threads)
            }) {
                Ok(writer) => {
                    let _ = ready_tx.send(Ok(()));
                    let supervisor = WriterSupervisor {
                        signals: publish,
                        service: writer_service,
                        status,
                    };
                    Some(output::thread::writer_loop(
                        writer,
                        receiver,
                        writer_queued,
                        flush_interval,
                        supervisor,
                    ))
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    None
                }
            }
        })
        .context("cannot start the writer thread")?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(err),
        Err(_) => anyhow::bail!("the writer thread stopped while starting"),
    }

    let result = sampler::sample_loop(
        &mut agent,
        config,
        &shutdown,
        sender,
        &service,
        &queued_bytes,
    );
    service.stopping();
    let (stats, writer_error) = writer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?
        .context("the writer thread did not start")?;
    // The sampler stops with "the writer thread stopped"; the writer says why.
    if let Some(err) = writer_error {
        return Err(err);
    }
    output::log_totals!(info, stats, "stopped");
    result?;
    if stats.rows_pending > 0 {
        anyhow::bail!(
            "{} sample rows could not be published before exit (is the disk full?); they are kept in {}/{} and published at the next start",
            stats.rows_pending,
            config.output_dir.display(),
            crate::store::layout::INPROGRESS_DIR
        );
    }
    Ok(())
}

/// What the writer thread reports to the agent and asks of it:
/// publication requests come from the signals, readiness and liveness go
/// to the service manager.
struct WriterSupervisor {
    signals: Shutdown,
    service: Service,
    status: String,
}

impl output::thread::Supervisor for WriterSupervisor {
    fn take_publish_request(&self) -> bool {
        self.signals.take_publish_request()
    }

    fn tick_written(&self) {
        self.service.tick_written(&self.status);
    }

    fn writer_alive(&self) {
        self.service.writer_alive();
    }
}

/// Key/value metadata of Parquet files: where and how they were made.
fn file_metadata(config: &Config) -> Vec<(String, String)> {
    let uname = rustix::system::uname();
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            stat.lines()
                .find_map(|l| l.strip_prefix("btime ").map(|v| v.trim().to_string()))
        })
        .unwrap_or_default();
    vec![
        ("host".into(), config.host.clone()),
        (
            "kernel".into(),
            uname.release().to_string_lossy().into_owned(),
        ),
        ("taskscope_version".into(), env!("CARGO_PKG_VERSION").into()),
        ("frequency_hz".into(), config.frequency.to_string()),
        ("weight_us".into(), config.weight_us().to_string()),
        ("boot_time".into(), boot_time),
    ]
}
