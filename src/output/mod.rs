//! Writing ticks to rotating, compressed files.
//!
//! A file is written in `OUT/.inprogress/` and moved into its hive
//! partition (`OUT/samples/date=…/hour=…/`) only when complete, with a
//! no-replace rename: a glob over the partitions never sees a partial file,
//! and no published file is ever overwritten. While a file is open, its
//! rows are made durable every `--flush-interval`.
//!
//! The writer runs on its own thread and owns enrichment (names, users,
//! cgroups, executables), so slow lookups never delay a sampling tick.

pub mod csv;
pub mod dir;
pub mod rotate;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{debug, error, info};

use crate::enrich::{syscall_name, Enricher};
use crate::sampler::Tick;
use crate::schema::{io_dev_text, SampleRow, Samples, Table};
use csv::CsvFile;
pub use dir::{OutputDir, OutputPlan};
use rotate::{FileName, Period};

/// Where files are written before they are complete.
pub const INPROGRESS_DIR: &str = ".inprogress";
/// Extension of CSV files.
pub const CSV_EXT: &str = "csv.zst";
/// Minimum time between two error log lines of the same kind.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How files are cut.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub host: String,
    pub rotate: Duration,
    pub flush_interval: Duration,
}

/// What the writer did, for the final log line and tests.
#[derive(Debug, Clone, Default)]
pub struct WriterStats {
    pub ticks: u64,
    pub rows: u64,
    pub files_published: u64,
    pub rows_dropped: u64,
}

struct OpenFile {
    csv: CsvFile,
    name: FileName,
    tmp: String,
    period: Period,
    last_flush: Instant,
}

/// Writes the `samples` table.
pub struct Writer {
    out: OutputDir,
    inprogress: OwnedFd,
    config: WriterConfig,
    current: Option<OpenFile>,
    enrich: Enricher,
    stats: WriterStats,
    last_error_log: Option<Instant>,
    errors_since_log: u64,
}

impl Writer {
    pub fn new(out: OutputDir, config: WriterConfig) -> Result<Writer> {
        let inprogress = dir::ensure_dir(out.fd(), INPROGRESS_DIR)
            .with_context(|| format!("cannot create {}/{INPROGRESS_DIR}", out.path().display()))?;
        dir::ensure_dir(out.fd(), Samples::NAME)
            .with_context(|| format!("cannot create {}/{}", out.path().display(), Samples::NAME))?;
        Ok(Writer {
            out,
            inprogress,
            config,
            current: None,
            enrich: Enricher::new(),
            stats: WriterStats::default(),
            last_error_log: None,
            errors_since_log: 0,
        })
    }

    /// Write one tick's rows. Errors are logged (rate-limited) and counted
    /// as dropped rows; the writer carries on with a new file.
    pub fn write_tick(&mut self, tick: &Tick) {
        self.stats.ticks += 1;
        if self.current.as_ref().is_some_and(|f| !f.period.contains(tick.ts_us)) {
            self.publish_current();
        }
        if self.current.is_none() {
            match self.open(tick.ts_us) {
                Ok(file) => self.current = Some(file),
                Err(err) => {
                    self.drop_rows(tick.samples.len() as u64, &err);
                    return;
                }
            }
        }
        if let Err(err) = self.write_rows(tick) {
            self.abandon_current();
            self.drop_rows(tick.samples.len() as u64, &err);
            return;
        }
        self.flush_if_due();
    }

    fn write_rows(&mut self, tick: &Tick) -> Result<()> {
        self.enrich.prepare(&tick.samples);
        let names = self.enrich.names();
        let file = self.current.as_mut().expect("open file");
        for sample in &tick.samples {
            let comm = String::from_utf8_lossy(sample.comm_bytes());
            let io_dev = io_dev_text(sample);
            let row = SampleRow {
                ts_us: tick.ts_us,
                weight_us: tick.weight_us,
                sample,
                comm: &comm,
                exe: names.exe(sample.tgid, sample.exe_id),
                user: names.user(sample.euid),
                cgroup: names.cgroup(sample.cgroup_id),
                syscall: sample.syscall.and_then(|s| syscall_name(s.nr)),
                io_dev: io_dev.as_deref(),
            };
            file.csv.write_row::<Samples>(&row).context("cannot write a sample row")?;
        }
        self.stats.rows += tick.samples.len() as u64;
        Ok(())
    }

    /// Flush the open file if the flush interval has passed.
    pub fn flush_if_due(&mut self) {
        let due = self
            .current
            .as_ref()
            .is_some_and(|f| f.last_flush.elapsed() >= self.config.flush_interval);
        if !due {
            return;
        }
        let file = self.current.as_mut().expect("open file");
        match file.csv.flush_durable() {
            Ok(()) => file.last_flush = Instant::now(),
            Err(err) => {
                let rows = file.csv.rows();
                self.abandon_current();
                self.drop_rows(rows, &anyhow::Error::from(err).context("cannot flush the current file"));
            }
        }
    }

    /// Publish the open file (if any) and return the totals.
    pub fn close(mut self) -> WriterStats {
        self.publish_current();
        info!(
            ticks = self.stats.ticks,
            rows = self.stats.rows,
            files = self.stats.files_published,
            dropped = self.stats.rows_dropped,
            "writer finished"
        );
        self.stats.clone()
    }

    fn open(&mut self, first_us: i64) -> Result<OpenFile> {
        let name = FileName::new(&self.config.host, first_us);
        let mut attempt = 0;
        let (tmp, file) = loop {
            let tmp = format!("{}-{}.tmp", Samples::NAME, name.with_ext(CSV_EXT, attempt));
            match dir::create_file(&self.inprogress, &tmp, dir::FILE_MODE) {
                Ok(file) => break (tmp, file),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(err) => return Err(err).with_context(|| format!("cannot create {INPROGRESS_DIR}/{tmp}")),
            }
        };
        let csv = CsvFile::create::<Samples>(file).with_context(|| format!("cannot start {tmp}"))?;
        debug!(file = %tmp, "started file");
        Ok(OpenFile {
            csv,
            name,
            tmp,
            period: Period::containing(first_us, self.config.rotate),
            last_flush: Instant::now(),
        })
    }

    fn publish_current(&mut self) {
        let Some(file) = self.current.take() else { return };
        let rows = file.csv.rows();
        let tmp = file.tmp.clone();
        if let Err(err) = self.publish(file) {
            let _ = dir::remove_file(&self.inprogress, &tmp);
            self.drop_rows(rows, &err);
        }
    }

    fn publish(&mut self, file: OpenFile) -> Result<()> {
        file.csv.finish().with_context(|| format!("cannot finish {}", file.tmp))?;
        let table = dir::ensure_dir(self.out.fd(), Samples::NAME)?;
        let date = dir::ensure_dir(&table, &file.name.date_dir)?;
        let hour = dir::ensure_dir(&date, &file.name.hour_dir)?;
        for attempt in 0..100 {
            let final_name = file.name.with_ext(CSV_EXT, attempt);
            if dir::exists(&hour, &final_name) {
                continue;
            }
            match dir::publish(&self.inprogress, &file.tmp, &hour, &final_name) {
                Ok(()) => {
                    self.stats.files_published += 1;
                    debug!(file = %format!("{}/{}/{}/{final_name}", Samples::NAME, file.name.date_dir, file.name.hour_dir), "published");
                    return Ok(());
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err).with_context(|| format!("cannot publish {final_name}")),
            }
        }
        anyhow::bail!("cannot find a free name for {}", file.name.stem)
    }

    fn abandon_current(&mut self) {
        if let Some(file) = self.current.take() {
            let _ = dir::remove_file(&self.inprogress, &file.tmp);
        }
    }

    fn drop_rows(&mut self, rows: u64, err: &anyhow::Error) {
        self.stats.rows_dropped += rows;
        self.errors_since_log += 1;
        let due = self.last_error_log.is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL);
        if due {
            error!(
                dropped_rows_total = self.stats.rows_dropped,
                errors = self.errors_since_log,
                "cannot write samples: {err:#}"
            );
            self.last_error_log = Some(Instant::now());
            self.errors_since_log = 0;
        }
    }
}
