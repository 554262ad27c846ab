//! Writing ticks to rotating, compressed files that never break.
//!
//! Each table (`samples`, `stacks`, `ticks`) is written period by period. A period's
//! files are built in `OUT/.inprogress/` — an append-only CSV.zst journal
//! made durable every `--flush-interval`, plus the Parquet file when asked
//! for — and moved into their hive partition (`OUT/<table>/date=…/hour=…/`)
//! only when complete, with a no-replace rename. So a glob over the
//! partitions never sees a partial file, and after a crash at most one
//! flush interval is lost: the next start publishes the journals first
//! (`recover`). A write error (a full disk) abandons the open period — its
//! journal is cut back to its last flush and stays for recovery — drops
//! and counts the rows it cannot keep, logs once a minute, and writing
//! resumes with a new period as soon as a write succeeds (`failures`).
//!
//! Every sample row the writer receives ends in exactly one of: published
//! (in a file of its period), recovered (its period's journal published
//! later in this run), dropped (counted), or pending (in a journal left in
//! `.inprogress/`, which the next start publishes and counts). Cutting an
//! abandoned journal back to its last flush is what makes the count
//! exact: the journal then holds exactly the rows that flush made
//! durable, no partly written block that recovery might or might not
//! read.
//! After each publication, retention deletes the oldest periods beyond
//! `--max-disk` or `--max-age`.
//!
//! The writer runs on its own thread (`thread`) and owns enrichment
//! (`enrich`: users, cgroups, executables; `identity`: containers and
//! pods) and stack symbolization
//! (`stacks`), so slow lookups never delay a sampling tick. What it
//! receives — ticks of samples (`tick`, `sample`) — is defined here, with
//! the layer that consumes it; the agent builds it. It writes the store's
//! format: `decode` and `settle` turn thread-table entries into samples
//! (shared by the agent's sampler and `live`, the independent reader of a
//! running agent's pinned table that `taskscope top` uses), `rows` turns
//! a sample into the store's row, `period` and
//! `periods` write the periods' files, `dir` is the output directory.
//!
//! A period's `stacks` file holds every stack its samples refer to: a
//! stack's row is written before the first sample row that uses it in the
//! period, the tables are flushed together (stacks first) and published
//! stacks first, so neither a crash nor a reader racing publication sees a
//! sample whose stack is missing.

pub mod blocker;
pub mod capture;
pub mod decode;
pub mod dir;
pub mod enrich;
mod failures;
pub mod fd_names;
pub mod identity;
pub mod live;
pub mod period;
pub mod periods;
pub mod recover;
pub mod retention;
pub mod rows;
pub mod sample;
pub mod settle;
pub mod sockets;
pub mod stacks;
pub mod thread;
pub mod tick;
pub mod titles;
pub mod unix_peers;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::bpf::types::ts_completion_kind;
use crate::bpf::TrackKinds;
use crate::files::at;
use crate::store::layout::{INPROGRESS_DIR, TABLES};
use crate::store::names::dev_name;
use crate::store::schema::{Iorq, Syscalls, Table};
use crate::store::wait_class;
pub use dir::{OutputDir, OutputPlan};
use enrich::Enricher;
pub use period::Formats;
use period::Target;
use periods::{OpenPeriods, Published};
pub use recover::Recovered;
pub use retention::Retention;
use sample::{Sample, WaitSample};
use stacks::{Resolved, StackResolver};
use tick::Tick;

/// After a write error, ticks are dropped without touching the disk until
/// this much time has passed (no flood of empty files on a full disk).
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How files are cut, kept and made.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub host: String,
    pub rotate: Duration,
    pub flush_interval: Duration,
    pub formats: Formats,
    pub retention: Retention,
    /// Key/value metadata of Parquet files.
    pub metadata: Vec<(String, String)>,
    /// Tables of completions written (--track).
    pub track: TrackKinds,
    /// `--ship-to`: retention keeps periods not shipped there (unless
    /// over `--max-disk`).
    pub ship_to: Option<String>,
}

impl WriterConfig {
    /// CSV only, no retention limits, no metadata: for tests and benches.
    pub fn csv(host: &str, rotate: Duration, flush_interval: Duration) -> WriterConfig {
        WriterConfig {
            host: host.to_string(),
            rotate,
            flush_interval,
            formats: Formats {
                csv: true,
                parquet: false,
            },
            retention: Retention {
                max_bytes: u64::MAX,
                max_age: Duration::from_secs(100 * 365 * 86_400),
            },
            metadata: Vec::new(),
            track: TrackKinds::default(),
            ship_to: None,
        }
    }
}

/// What the writer did, for the final log line and tests. Of the sample
/// rows received, every one is in exactly one of `rows_published`,
/// `rows_recovered`, `rows_dropped` and `rows_pending` once the writer is
/// closed.
#[derive(Debug, Clone, Default)]
pub struct WriterStats {
    pub ticks: u64,
    /// Sample rows received from the sampler.
    pub rows: u64,
    /// Published in the files of their period.
    pub rows_published: u64,
    /// Published by recovering a journal this run abandoned.
    pub rows_recovered: u64,
    /// Never to be published: not written, or not yet durable when their
    /// period was abandoned, or lost with a removed output directory.
    pub rows_dropped: u64,
    /// In journals left in `.inprogress/` for the next start to publish.
    pub rows_pending: u64,
    /// What the start published of earlier runs' journals.
    pub recovered: Recovered,
    /// Files retention deleted before they were shipped (`--ship-to`).
    pub unshipped_deleted: u64,
}

/// Work for the writer thread.
pub enum Message {
    Tick(Tick),
    /// Publish the periods being written now (SIGHUP).
    Publish,
}

/// One log line of a writer's totals ([`WriterStats`]) at `level`:
/// `log_totals!(info, stats, "writer finished")`. The writer's closing
/// line and the agent's last one say the same numbers the same way.
macro_rules! log_totals {
    ($level:ident, $stats:expr, $($message:tt)+) => {
        tracing::$level!(
            ticks = $stats.ticks,
            rows = $stats.rows,
            published_rows = $stats.rows_published,
            recovered_rows = $stats.rows_recovered,
            dropped_rows = $stats.rows_dropped,
            pending_rows = $stats.rows_pending,
            $($message)+
        )
    };
}
pub(crate) use log_totals;

/// Where and how files are made: everything publishing needs.
struct Place {
    out: OutputDir,
    inprogress: OwnedFd,
    config: WriterConfig,
}

impl Place {
    fn target(&self) -> Target<'_> {
        Target {
            out: self.out.fd(),
            inprogress: &self.inprogress,
            perms: self.out.perms(),
            formats: self.config.formats,
            metadata: &self.config.metadata,
        }
    }
}

/// Writes every table.
pub struct Writer {
    place: Place,
    tables: OpenPeriods,
    enrich: Enricher,
    /// Owners of the pthread mutexes sampled threads wait for.
    futex_owners: blocker::FutexOwners,
    /// Wait classes remembered from row to row.
    classes: wait_class::Memo,
    stacks: StackResolver,
    /// The stacks of the current tick's samples.
    resolved: Vec<Resolved>,
    stats: WriterStats,
    /// A write failed and nothing has been made durable since.
    failing: bool,
    /// Journals of abandoned sample periods, each cut back to its last
    /// flush, and the rows each holds.
    pending: HashMap<String, u64>,
    /// When the last write failed.
    failed_at: Option<Instant>,
    last_error_log: Option<Instant>,
    errors_since_log: u64,
}

impl Writer {
    /// Name CPython frames in the stacks of threads that `switches` shows
    /// have not run since their capture (`stacks::python`).
    pub fn with_switches(mut self, switches: std::sync::Arc<crate::bpf::SwitchView>) -> Writer {
        self.stacks.set_switches(switches);
        self
    }

    /// Name CPython frames in on-CPU captures too, from the chains the
    /// on-CPU sample reads of the threads published in `map`.
    pub fn with_python_threads(mut self, map: Option<crate::bpf::python::PyThreadMap>) -> Writer {
        if let Some(map) = map {
            self.stacks.set_python_threads(map);
        }
        self
    }

    /// Prepare the output directory: publish what earlier runs left in
    /// `.inprogress/`, then apply retention.
    pub fn new(out: OutputDir, config: WriterConfig) -> Result<Writer> {
        let inprogress = prepare_dirs(&out, config.track)?;
        let tables = OpenPeriods::new(config.track);
        let track = config.track;
        let mut writer = Writer {
            place: Place {
                out,
                inprogress,
                config,
            },
            tables,
            futex_owners: blocker::FutexOwners::new(),
            classes: wait_class::Memo::default(),
            enrich: if track.any() {
                Enricher::new().remembering_threads()
            } else {
                Enricher::new()
            },
            stacks: StackResolver::new(),
            resolved: Vec::new(),
            stats: WriterStats::default(),
            failing: false,
            pending: HashMap::new(),
            failed_at: None,
            last_error_log: None,
            errors_since_log: 0,
        };
        let (recovered, _) = recover::recover_all(&writer.place.target(), &[])
            .context("cannot recover earlier files")?;
        if recovered.files > 0 || recovered.dropped_rows > 0 {
            info!(
                files = recovered.files,
                rows = recovered.rows,
                sample_rows = recovered.sample_rows,
                damaged_rows = recovered.dropped_rows,
                "published the files an earlier run left unfinished"
            );
        }
        writer.stats.recovered = recovered;
        writer.apply_retention();
        Ok(writer)
    }

    /// Handle one message.
    pub fn handle(&mut self, message: Message) {
        match message {
            Message::Tick(tick) => self.write_tick(&tick),
            Message::Publish => {
                info!("publishing the current files on request");
                self.publish_all();
            }
        }
    }

    /// Write one tick's rows.
    pub fn write_tick(&mut self, tick: &Tick) {
        self.stats.ticks += 1;
        let rows = tick.samples.len() as u64;
        self.stats.rows += rows;
        // Resolve even rows that are dropped: later rows reuse their
        // captures without a copy.
        self.resolve_stacks(tick);
        if self.failing
            && self
                .failed_at
                .is_some_and(|at| at.elapsed() < RETRY_INTERVAL)
        {
            self.stats.rows_dropped += rows;
            return;
        }
        if self.tables.needs_rotation(tick.ts_us) {
            self.publish_all();
        }
        let before = self.tables.samples.rows();
        if let Err(err) = self.write_rows(tick) {
            // Rows that reached the journal are accounted for with its
            // period; the others are dropped here.
            let written = self.tables.samples.rows().saturating_sub(before);
            self.abandon_all();
            self.drop_rows(rows.saturating_sub(written), &err);
            return;
        }
        self.flush_if_due();
    }

    /// The stacks of every sample of `tick`, in `self.resolved`.
    fn resolve_stacks(&mut self, tick: &Tick) {
        self.resolved.clear();
        for sample in &tick.samples {
            if let Some(stack) = &sample.stack {
                if let Some(raw) = stack.raw.and_then(|i| tick.stacks.get(i as usize)) {
                    self.stacks
                        .publish_python(sample.tgid, sample.tid, sample.exe_id, stack, raw);
                }
            }
        }
        for sample in &tick.samples {
            let resolved = match &sample.stack {
                Some(stack) => {
                    let raw = stack.raw.and_then(|i| tick.stacks.get(i as usize));
                    self.stacks
                        .resolve(sample.tgid, sample.tid, sample.exe_id, stack, raw)
                }
                None => Resolved::default(),
            };
            self.resolved.push(resolved);
        }
    }

    fn write_rows(&mut self, tick: &Tick) -> Result<()> {
        let target = self.place.target();
        let (host, rotate) = (&self.place.config.host, self.place.config.rotate);
        if self.tables.ensure_open(&target, host, tick.ts_us, rotate)? {
            self.stacks.new_period();
        }
        // Stacks first: a sample row never precedes its stack's row.
        for resolved in &self.resolved {
            for id in [resolved.kstack, resolved.ustack].into_iter().flatten() {
                if let Some(def) = self.stacks.unwritten(id) {
                    self.tables.stacks.write(&def)?;
                }
            }
        }
        self.enrich.prepare(&tick.samples);
        let names = self.enrich.names();
        for (sample, stacks) in tick.samples.iter().zip(&self.resolved) {
            let comm = sample::name_text(sample.comm_bytes());
            // A pthread mutex's owner, read from the process (blocker.rs),
            // in a copy of the sample (only then: a sample is ~250 bytes).
            let with_owner;
            let sample = match self.futex_owners.resolve(sample) {
                Some((kind, owner)) => {
                    with_owner = Sample {
                        wait: WaitSample {
                            lock: Some(kind),
                            blocker_tid: owner,
                            ..sample.wait
                        },
                        ..*sample
                    };
                    &with_owner
                }
                None => sample,
            };
            let waker_comm = match sample.wait.waker_tid {
                0 => "".into(),
                _ => sample::name_text(sample::until_nul(&sample.wait.waker_comm)),
            };
            let io_dev = sample.io.map(|io| dev_name(io.dev));
            let names = rows::SampleNames {
                comm: &comm,
                exe: names.exe(sample.tgid, sample.exe_id),
                user: names.user(sample.euid),
                cgroup: names.cgroup(sample.cgroup_id),
                io_dev: io_dev.as_deref(),
                host,
                container: names.container(sample),
                waker_comm: &waker_comm,
                target: names.target(sample),
                proc_title: names.title(sample),
            };
            let row = rows::sample_row(
                &mut self.classes,
                tick.ts_us,
                tick.weight_us,
                sample,
                names,
                stacks,
            );
            self.tables.samples.write(&row)?;
        }
        self.write_completions(tick)?;
        let row = rows::tick_row(tick, self.stats.rows_dropped, self.stats.unshipped_deleted);
        self.tables.ticks.write(&row)?;
        Ok(())
    }

    /// The ends of tracked syscalls and requests that arrived with `tick`.
    fn write_completions(&mut self, tick: &Tick) -> Result<()> {
        // Monotonic nanoseconds to wall-clock microseconds, as of the tick.
        let wall_us = |mono_ns: u64| tick.ts_us + (mono_ns as i64 - tick.mono_ns as i64) / 1_000;
        let names = self.enrich.names();
        for record in &tick.completions {
            let (comm, exe) = names.thread(record.tid);
            let thread = rows::ThreadNames { comm: &comm, exe };
            match ts_completion_kind(record.kind) {
                ts_completion_kind::TS_C_SYSCALL => {
                    if let Some(table) = &mut self.tables.syscalls {
                        let row = rows::syscall_row(record, wall_us(record.start_ns), thread);
                        table.write(&row)?;
                    }
                }
                ts_completion_kind::TS_C_IO => {
                    if let Some(table) = &mut self.tables.iorq {
                        let dev = dev_name(record.dev);
                        let row = rows::iorq_row(record, wall_us(record.start_ns), &dev, thread);
                        table.write(&row)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Let go of caches that are only needed while new stacks come
    /// (`StackResolver::release_idle`).
    pub fn release_idle_caches(&mut self) {
        if self.stacks.release_idle() {
            tracing::debug!("symbolizer idle: parsed files released");
        }
    }

    /// Make the open files' rows durable if the flush interval has passed
    /// (at once while writes are failing, to learn whether they work again).
    pub fn flush_if_due(&mut self) {
        let interval = if self.failing {
            Duration::ZERO
        } else {
            self.place.config.flush_interval
        };
        match self.tables.flush_if_due(interval) {
            Ok(true) => self.durable_again(),
            Ok(false) => {}
            Err(err) => {
                // The journals keep what their last flush made durable.
                self.abandon_all();
                self.drop_rows(0, &err);
            }
        }
    }

    /// Publish every table's open period.
    pub fn publish_all(&mut self) {
        let target = self.place.target();
        let mut published = Published::default();
        let result = self.tables.publish(&target, &mut published);
        self.stats.rows_published += published.sample_rows;
        if let Err(err) = result {
            self.abandon_all();
            self.drop_rows(0, &err.context("cannot publish"));
            return;
        }
        if published.files {
            self.durable_again();
        }
        self.apply_retention();
    }

    fn apply_retention(&mut self) {
        let now = crate::store::timefmt::unix_micros_now() / 1_000_000;
        let place = &self.place;
        match retention::enforce(
            place.out.fd(),
            &place.inprogress,
            &TABLES,
            place.config.retention,
            now,
            place.config.ship_to.as_deref(),
        ) {
            Ok(swept) => self.stats.unshipped_deleted += swept.unshipped_files as u64,
            Err(err) => warn!("retention failed: {err:#}"),
        }
    }

    /// Publish the open files (if any), try once more to recover the
    /// abandoned ones, and return the totals.
    pub fn close(mut self) -> WriterStats {
        self.publish_all();
        if !self.pending.is_empty() {
            self.recover_orphans();
        }
        self.stats.rows_pending = self.pending.values().sum();
        let (published, publications) = self.stacks.python_published();
        tracing::debug!(
            python_spliced = self.stacks.python_spliced,
            python_kept_native = self.stacks.python_kept_native,
            python_threads_published = published,
            python_publications = publications,
            "Python frames"
        );
        tracing::debug!(
            through_signal_frames = self.stacks.user_through_signal_frames,
            cut_live_stack_changed = self.stacks.user_cut_live_changed,
            "native user stacks resolved"
        );
        let stats = &self.stats;
        if stats.rows_dropped > 0 || stats.rows_pending > 0 {
            log_totals!(
                warn,
                stats,
                "writer finished; not every sample row was published (pending rows stay in {}/{INPROGRESS_DIR} and are published at the next start)",
                self.place.out.path().display()
            );
        } else {
            log_totals!(info, stats, "writer finished");
        }
        self.stats.clone()
    }
}

/// Create `.inprogress/` and the directory of every table written (the
/// tracked ones only with --track); the open `.inprogress/`.
fn prepare_dirs(out: &OutputDir, track: TrackKinds) -> Result<OwnedFd> {
    let path = out.path().display();
    let inprogress = at::ensure_dir_with(out.fd(), INPROGRESS_DIR, out.perms())
        .with_context(|| format!("cannot create {path}/{INPROGRESS_DIR}"))?;
    for table in TABLES {
        let tracked = match table {
            Syscalls::NAME => track.syscalls,
            Iorq::NAME => track.io,
            _ => true,
        };
        if tracked {
            at::ensure_dir_with(out.fd(), table, out.perms())
                .with_context(|| format!("cannot create {path}/{table}"))?;
        }
    }
    Ok(inprogress)
}
