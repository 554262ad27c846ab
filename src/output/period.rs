//! One table's files: the period being written and its publication.
//!
//! Every open period has a journal: a CSV.zst file in `.inprogress/` that
//! only grows and is made decodable every `--flush-interval`. With CSV
//! output the journal *is* the file, renamed into its partition when the
//! period ends; with Parquet output the Parquet file is written alongside
//! and the journal is deleted once the Parquet file is published. After a
//! crash or a write error the journal is what `recover` publishes.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracing::debug;

use crate::files::at::{self, Permissions};
use crate::store::csv::CsvFile;
use crate::store::layout::{
    journal_name, parquet_tmp_name, FileName, Period, CSV_EXT, PARQUET_EXT,
};
use crate::store::parquet::ParquetFile;
use crate::store::schema::Table;

/// Which formats are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub csv: bool,
    pub parquet: bool,
}

/// What publishing needs from the writer.
pub struct Target<'a> {
    pub out: &'a OwnedFd,
    pub inprogress: &'a OwnedFd,
    pub perms: &'a Permissions,
    pub formats: Formats,
    pub metadata: &'a [(String, String)],
}

/// Move a finished file from `.inprogress/tmp` to its partition under a
/// name no other file has (`-N` appended when needed).
pub fn publish_file(
    target: &Target<'_>,
    table: &str,
    tmp: &str,
    name: &FileName,
    ext: &str,
) -> Result<String> {
    let table_dir = at::ensure_dir_with(target.out, table, target.perms)?;
    let date = at::ensure_dir_with(&table_dir, &name.date_dir, target.perms)?;
    let hour = at::ensure_dir_with(&date, &name.hour_dir, target.perms)?;
    for attempt in 0..1_000 {
        let final_name = name.with_ext(ext, attempt);
        if at::exists(&hour, &final_name) {
            continue;
        }
        match at::publish(target.inprogress, tmp, &hour, &final_name) {
            Ok(()) => {
                debug!(file = %format!("{table}/{}/{}/{final_name}", name.date_dir, name.hour_dir), "published");
                return Ok(final_name);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err).with_context(|| format!("cannot publish {final_name}")),
        }
    }
    bail!("no free name for {}", name.stem)
}

struct OpenFile {
    journal: CsvFile,
    journal_name: String,
    parquet: Option<(ParquetFile, String)>,
    name: FileName,
    period: Period,
    last_flush: Instant,
    /// Rows the last successful flush made durable, and the journal's
    /// length then.
    rows_durable: u64,
    durable_len: u64,
}

/// A period given up after a write error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    /// Its journal in `.inprogress/`.
    pub journal: String,
    pub rows_written: u64,
    /// Rows up to the last successful flush: 0 means nothing is recoverable.
    pub rows_durable: u64,
    /// The journal's length after that flush: cut back to it, the journal
    /// holds exactly `rows_durable` rows (unused when every row written is
    /// durable).
    pub durable_len: u64,
}

/// The files of table `T`.
pub struct PeriodWriter<T: Table> {
    current: Option<OpenFile>,
    /// The period a failed publication gave up.
    failed: Option<Abandoned>,
    _table: PhantomData<fn() -> T>,
}

impl<T: Table> Default for PeriodWriter<T> {
    fn default() -> Self {
        PeriodWriter {
            current: None,
            failed: None,
            _table: PhantomData,
        }
    }
}

impl<T: Table> PeriodWriter<T> {
    /// Journal file name of the open period, if any.
    pub fn journal(&self) -> Option<&str> {
        self.current.as_ref().map(|f| f.journal_name.as_str())
    }

    /// Whether the open period (if any) ends before `ts_us`.
    pub fn needs_rotation(&self, ts_us: i64) -> bool {
        self.current
            .as_ref()
            .is_some_and(|f| !f.period.contains(ts_us))
    }

    /// Open a period for a first row at `first_us`, unless one is open.
    pub fn ensure_open(
        &mut self,
        target: &Target<'_>,
        host: &str,
        first_us: i64,
        rotate: Duration,
    ) -> Result<()> {
        if self.current.is_some() {
            return Ok(());
        }
        let mut name = FileName::new(host, first_us);
        let base = name.stem.clone();
        let mut attempt = 0;
        let (journal_name, file) = loop {
            let journal = journal_name(T::NAME, &name.stem);
            match at::create_file_with(target.inprogress, &journal, target.perms) {
                Ok(file) => break (journal, file),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1_000 => {
                    attempt += 1;
                    name.stem = format!("{base}-{attempt}");
                }
                Err(err) => return Err(err).with_context(|| format!("cannot create {journal}")),
            }
        };
        let journal =
            CsvFile::create::<T>(file).with_context(|| format!("cannot start {journal_name}"))?;
        let parquet = if target.formats.parquet {
            let tmp = parquet_tmp_name(T::NAME, &name.stem);
            let file = at::create_file_with(target.inprogress, &tmp, target.perms)
                .with_context(|| format!("cannot create {tmp}"))?;
            Some((
                ParquetFile::create::<T>(file, target.metadata)
                    .with_context(|| format!("cannot start {tmp}"))?,
                tmp,
            ))
        } else {
            None
        };
        self.current = Some(OpenFile {
            journal,
            journal_name,
            parquet,
            name,
            period: Period::containing(first_us, rotate),
            last_flush: Instant::now(),
            rows_durable: 0,
            durable_len: 0,
        });
        Ok(())
    }

    /// Append one row to the open period.
    pub fn write(&mut self, row: &T::Row<'_>) -> Result<()> {
        let file = self.current.as_mut().context("no open file")?;
        file.journal
            .write_row::<T>(row)
            .with_context(|| format!("cannot write {}", file.journal_name))?;
        if let Some((parquet, tmp)) = &mut file.parquet {
            parquet
                .write_row::<T>(row)
                .with_context(|| format!("cannot write {tmp}"))?;
        }
        Ok(())
    }

    /// Whether `interval` has passed since the open period was last made
    /// durable.
    pub fn flush_due(&self, interval: Duration) -> bool {
        self.current
            .as_ref()
            .is_some_and(|f| f.last_flush.elapsed() >= interval)
    }

    /// Make the journal durable if `interval` has passed since the last
    /// time (zero: now). Whether a flush happened.
    pub fn flush_if_due(&mut self, interval: Duration) -> Result<bool> {
        let Some(file) = self.current.as_mut() else {
            return Ok(false);
        };
        if file.last_flush.elapsed() < interval {
            return Ok(false);
        }
        let len = file
            .journal
            .flush_durable()
            .with_context(|| format!("cannot flush {}", file.journal_name))?;
        file.last_flush = Instant::now();
        file.rows_durable = file.journal.rows();
        file.durable_len = len;
        Ok(true)
    }

    /// Rows written to the open period.
    pub fn rows(&self) -> u64 {
        self.current.as_ref().map_or(0, |f| f.journal.rows())
    }

    /// Finish the open period and move its files into their partition;
    /// the rows published (0: no period was open). On failure the journal
    /// stays in `.inprogress/` for recovery ([`PeriodWriter::abandon`] says
    /// how many of its rows it holds).
    pub fn publish(&mut self, target: &Target<'_>) -> Result<u64> {
        let Some(file) = self.current.take() else {
            return Ok(0);
        };
        let OpenFile {
            journal,
            journal_name,
            parquet,
            name,
            rows_durable,
            durable_len,
            ..
        } = file;
        let rows = journal.rows();
        // The journal first: once finished it holds every row, durably,
        // whatever happens to the Parquet file.
        let remove_parquet = |parquet: &Option<(ParquetFile, String)>| {
            if let Some((_, tmp)) = parquet {
                let _ = at::remove_file(target.inprogress, tmp);
            }
        };
        let finished = match journal.finish() {
            Ok(file) => file,
            Err(err) => {
                remove_parquet(&parquet);
                self.failed = Some(Abandoned {
                    journal: journal_name.clone(),
                    rows_written: rows,
                    rows_durable,
                    durable_len,
                });
                return Err(err).with_context(|| format!("cannot finish {journal_name}"));
            }
        };
        drop(finished);
        // If publication fails now, the whole journal is there to recover.
        let complete = Abandoned {
            journal: journal_name.clone(),
            rows_written: rows,
            rows_durable: rows,
            durable_len: 0,
        };
        if let Some((parquet, tmp)) = parquet {
            let published = parquet
                .finish()
                .with_context(|| format!("cannot finish {tmp}"))
                .and_then(|_| publish_file(target, T::NAME, &tmp, &name, PARQUET_EXT));
            if let Err(err) = published {
                let _ = at::remove_file(target.inprogress, &tmp);
                self.failed = Some(complete);
                return Err(err);
            }
        }
        let published = if target.formats.csv {
            publish_file(target, T::NAME, &journal_name, &name, CSV_EXT).map(|_| ())
        } else {
            at::remove_file(target.inprogress, &journal_name)
                .with_context(|| format!("cannot remove {journal_name}"))
        };
        if let Err(err) = published {
            self.failed = Some(complete);
            return Err(err);
        }
        Ok(rows)
    }

    /// Give up the open period after a write error (the Parquet file goes,
    /// the journal stays for recovery), or return the period a failed
    /// publication gave up.
    pub fn abandon(&mut self, target: &Target<'_>) -> Option<Abandoned> {
        if let Some(file) = self.current.take() {
            if let Some((_, tmp)) = &file.parquet {
                let _ = at::remove_file(target.inprogress, tmp);
            }
            return Some(Abandoned {
                journal: file.journal_name,
                rows_written: file.journal.rows(),
                rows_durable: file.rows_durable,
                durable_len: file.durable_len,
            });
        }
        self.failed.take()
    }
}

/// One table's open period, whatever the table: what the writer does to
/// every table at once.
pub trait PeriodFiles {
    fn journal(&self) -> Option<&str>;
    fn needs_rotation(&self, ts_us: i64) -> bool;
    fn ensure_open(
        &mut self,
        target: &Target<'_>,
        host: &str,
        first_us: i64,
        rotate: Duration,
    ) -> Result<()>;
    fn flush_due(&self, interval: Duration) -> bool;
    fn flush_if_due(&mut self, interval: Duration) -> Result<bool>;
    fn publish(&mut self, target: &Target<'_>) -> Result<u64>;
    fn abandon(&mut self, target: &Target<'_>) -> Option<Abandoned>;
}

impl<T: Table> PeriodFiles for PeriodWriter<T> {
    fn journal(&self) -> Option<&str> {
        PeriodWriter::journal(self)
    }
    fn needs_rotation(&self, ts_us: i64) -> bool {
        PeriodWriter::needs_rotation(self, ts_us)
    }
    fn ensure_open(
        &mut self,
        target: &Target<'_>,
        host: &str,
        first_us: i64,
        rotate: Duration,
    ) -> Result<()> {
        PeriodWriter::ensure_open(self, target, host, first_us, rotate)
    }
    fn flush_due(&self, interval: Duration) -> bool {
        PeriodWriter::flush_due(self, interval)
    }
    fn flush_if_due(&mut self, interval: Duration) -> Result<bool> {
        PeriodWriter::flush_if_due(self, interval)
    }
    fn publish(&mut self, target: &Target<'_>) -> Result<u64> {
        PeriodWriter::publish(self, target)
    }
    fn abandon(&mut self, target: &Target<'_>) -> Option<Abandoned> {
        PeriodWriter::abandon(self, target)
    }
}
