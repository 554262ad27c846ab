//! What the writer does when writing fails: give up the open periods
//! (each journal cut back to its last flush, `settle`), drop and count the
//! rows it cannot keep, log once a minute, publish the abandoned journals
//! once writes work again, and make a removed output directory again.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{error, info, warn};

use super::period::Abandoned;
use super::{prepare_dirs, recover, Writer};
use crate::files::at;
use crate::store::layout::parse_journal_name;
use crate::store::schema::{Samples, Table};

/// Minimum time between two error log lines.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Writer {
    /// Give up the open periods after a write error: each journal is cut
    /// back to its last flush (or removed if nothing in it was durable),
    /// the sample rows beyond that are dropped, the rest pending recovery.
    pub(super) fn abandon_all(&mut self) {
        let (samples, others) = self.tables.abandon(&self.place.target());
        for abandoned in &others {
            settle(&self.place.inprogress, abandoned);
        }
        if let Some(samples) = samples {
            let kept = settle(&self.place.inprogress, &samples);
            self.stats.rows_dropped += samples.rows_written - kept;
            if kept > 0 {
                self.pending.insert(samples.journal, kept);
            }
        }
    }

    /// A flush or publication wrote data: the disk takes data again.
    pub(super) fn durable_again(&mut self) {
        if self.failing {
            self.failing = false;
            info!(
                dropped_rows_total = self.stats.rows_dropped,
                "writing again"
            );
            self.recover_orphans();
        }
    }

    /// Publish journals of periods abandoned after write errors (and any
    /// an earlier run left).
    pub(super) fn recover_orphans(&mut self) {
        let open = self.tables.journals();
        let open: Vec<&str> = open.iter().map(String::as_str).collect();
        match recover::recover_all(&self.place.target(), &open) {
            Ok((_, per_journal)) => {
                for (journal, recovered) in per_journal {
                    let Some(table) = parse_journal_name(&journal).map(|(t, _)| t) else {
                        continue;
                    };
                    let recovered = recovered.unwrap_or(0);
                    match self.pending.remove(&journal) {
                        Some(held) => {
                            if recovered > held {
                                warn!(
                                    journal,
                                    held,
                                    recovered,
                                    "recovered more rows than the journal was known to hold"
                                );
                            }
                            self.stats.rows_recovered += recovered;
                            self.stats.rows_dropped += held.saturating_sub(recovered);
                        }
                        None if table == Samples::NAME => {
                            self.stats.recovered.sample_rows += recovered;
                            self.stats.recovered.rows += recovered;
                        }
                        None => self.stats.recovered.rows += recovered,
                    }
                }
            }
            Err(err) => warn!("cannot recover abandoned files yet: {err:#}"),
        }
    }

    /// Notice that the output directory was removed (or replaced) while
    /// running and create it again, with the checks of the first start.
    /// The rows of the open periods went with the removed directory and
    /// are counted as dropped. An error means the directory cannot be made
    /// again safely: the agent must stop.
    pub fn check_output_dir(&mut self) -> Result<()> {
        if self.place.out.still_at_path()? {
            return Ok(());
        }
        let path = self.place.out.path().display().to_string();
        warn!(output_dir = %path, "the output directory was removed or replaced while running; creating it again");
        let out = self.place.out.recreate().with_context(|| {
            format!(
                "the output directory {path} was removed while running and cannot be created again"
            )
        })?;
        let inprogress = prepare_dirs(&out, self.place.config.track)?;
        // The open periods' journals and those pending recovery went with
        // the removed directory.
        let (samples, _) = self.tables.abandon(&self.place.target());
        if let Some(samples) = samples {
            self.stats.rows_dropped += samples.rows_written;
        }
        self.stats.rows_dropped += self.pending.drain().map(|(_, rows)| rows).sum::<u64>();
        self.place.out = out;
        self.place.inprogress = inprogress;
        Ok(())
    }

    pub(super) fn drop_rows(&mut self, rows: u64, err: &anyhow::Error) {
        self.stats.rows_dropped += rows;
        self.errors_since_log += 1;
        self.failing = true;
        self.failed_at = Some(Instant::now());
        let due = self
            .last_error_log
            .is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL);
        if due {
            error!(
                dropped_rows_total = self.stats.rows_dropped,
                errors = self.errors_since_log,
                "cannot write samples (will keep trying): {err:#}"
            );
            self.last_error_log = Some(Instant::now());
            self.errors_since_log = 0;
        }
    }
}

/// Leave an abandoned journal holding exactly the rows its last flush made
/// durable: cut back to that length, or removed if nothing was durable.
/// Returns the rows it holds now.
fn settle(inprogress: &OwnedFd, abandoned: &Abandoned) -> u64 {
    if abandoned.rows_durable == 0 {
        let _ = at::remove_file(inprogress, &abandoned.journal);
        return 0;
    }
    if abandoned.rows_durable < abandoned.rows_written {
        if let Err(err) = at::truncate_file(inprogress, &abandoned.journal, abandoned.durable_len) {
            warn!(
                journal = abandoned.journal,
                "cannot cut the journal back to its last flush ({err}); its recovery may count rows already counted as dropped"
            );
        }
    }
    abandoned.rows_durable
}
