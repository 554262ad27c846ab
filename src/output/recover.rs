//! Publishing what a crash, a kill or a write error left in `.inprogress/`.
//!
//! A journal is read as a stream (an hour of rows does not fit in memory):
//! zstd decodes it up to the end of the last complete block, the CSV reader
//! splits rows, and a row is kept only if it is complete (the data after it
//! was read too, or the stream ended on its line break) and every field has
//! its column's type. The rows are written to new files in the formats
//! configured now and published under the journal's name; then the journal
//! goes. A journal that cannot be read at all is renamed `*.broken` and
//! kept, never deleted.

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::period::{publish_file, Target};
use crate::files::at::{self, Permissions};
use crate::store::catalog::TolerantEnd;
use crate::store::csv::CsvFile;
use crate::store::layout::{parse_journal_name, FileName, CSV_EXT, PARQUET_EXT, TMP_SUFFIX};
use crate::store::parquet::ParquetFile;
use crate::store::schema::{Iorq, Samples, Stacks, Syscalls, Table, Ticks, Value};

/// What a recovery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub files: usize,
    /// Rows published, of every table.
    pub rows: u64,
    /// Of them, rows of the samples table.
    pub sample_rows: u64,
    /// Rows found damaged (a crash cut them) and left out.
    pub dropped_rows: u64,
}

/// Rows recovered from each journal, by name (None: unreadable, set aside).
pub type PerJournal = Vec<(String, Option<u64>)>;

/// Recover every journal in `.inprogress/` except those in `open` (files
/// being written now); remove leftovers of interrupted recoveries and
/// Parquet files whose writing was cut short. Returns the totals and the
/// rows recovered per journal.
pub fn recover_all(target: &Target<'_>, open: &[&str]) -> Result<(Recovered, PerJournal)> {
    let mut total = Recovered::default();
    let mut per_journal = Vec::new();
    for (name, kind) in at::list(target.inprogress).context("cannot list .inprogress")? {
        if kind != rustix::fs::FileType::RegularFile || open.contains(&name.as_str()) {
            continue;
        }
        if name.ends_with(".out") {
            let _ = at::remove_file(target.inprogress, &name);
            continue;
        }
        if let Some(base) = name
            .strip_suffix(TMP_SUFFIX)
            .and_then(|n| n.strip_suffix(&format!(".{PARQUET_EXT}")))
        {
            let journal = format!("{base}.{CSV_EXT}{TMP_SUFFIX}");
            if !open.contains(&journal.as_str()) {
                let _ = at::remove_file(target.inprogress, &name);
            }
            continue;
        }
        let Some((table, stem)) = parse_journal_name(&name) else {
            continue;
        };
        let result = match table {
            Samples::NAME => recover_journal::<Samples>(target, &name, stem),
            Stacks::NAME => recover_journal::<Stacks>(target, &name, stem),
            Ticks::NAME => recover_journal::<Ticks>(target, &name, stem),
            Syscalls::NAME => recover_journal::<Syscalls>(target, &name, stem),
            Iorq::NAME => recover_journal::<Iorq>(target, &name, stem),
            other => {
                warn!("{name}: unknown table {other}; left in place");
                continue;
            }
        };
        match result {
            Ok(one) => {
                if one.rows > 0 {
                    info!(journal = %name, rows = one.rows, dropped = one.dropped_rows, "recovered");
                }
                total.files += usize::from(one.rows > 0);
                total.rows += one.rows;
                total.sample_rows += one.sample_rows;
                total.dropped_rows += one.dropped_rows;
                per_journal.push((name, Some(one.rows)));
            }
            Err(err) if is_io_failure(&err) => {
                // A full disk, say: the journal stays for the next attempt.
                let _ = at::remove_file(
                    target.inprogress,
                    &format!("{}.out", name.trim_end_matches(TMP_SUFFIX)),
                );
                return Err(err.context(format!("cannot recover {name} yet")));
            }
            Err(err) => {
                warn!("cannot recover {name}: {err:#}; keeping it as {name}.broken");
                let _ = rustix::fs::renameat(
                    target.inprogress,
                    name.as_str(),
                    target.inprogress,
                    format!("{name}.broken").as_str(),
                );
                per_journal.push((name, None));
            }
        }
    }
    Ok((total, per_journal))
}

/// A journal whose content cannot be used (as opposed to a failure to
/// write its rows out, which is worth retrying).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadJournal(String);

/// Whether recovery failed for a reason other than the journal's content.
fn is_io_failure(err: &anyhow::Error) -> bool {
    !err.chain().any(|cause| cause.is::<BadJournal>())
}

/// Recover one journal of table `T`.
pub fn recover_journal<T: Table>(
    target: &Target<'_>,
    journal: &str,
    stem: &str,
) -> Result<Recovered> {
    let Some(name) = FileName::from_stem(stem) else {
        return Err(BadJournal(format!("{journal}: no time in its name")).into());
    };
    let file = at::open_file(target.inprogress, journal)
        .with_context(|| format!("cannot open {journal}"))?;
    let mut stream = TolerantEnd::journal(file)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(&mut stream);
    let expected: Vec<&str> = T::columns().iter().map(|c| c.name).collect();
    match reader.headers() {
        Ok(headers) if headers.iter().eq(expected.iter().copied()) => {}
        Ok(headers) if headers.is_empty() => {
            // Nothing durable was written before the crash.
            drop(reader);
            at::remove_file(target.inprogress, journal)?;
            return Ok(Recovered::default());
        }
        Ok(headers) => {
            let columns = headers.iter().collect::<Vec<_>>().join(",");
            return Err(BadJournal(format!(
                "its columns ({columns}) are not those of {}",
                T::NAME
            ))
            .into());
        }
        Err(err) => return Err(BadJournal(format!("unreadable header: {err}")).into()),
    }

    let csv_out = format!("{}-{stem}.{CSV_EXT}.out", T::NAME);
    let parquet_out = format!("{}-{stem}.{PARQUET_EXT}.out", T::NAME);
    let mut outputs = Outputs::create::<T>(target, &csv_out, &parquet_out)?;
    let mut held: Option<csv::ByteRecord> = None;
    let mut record = csv::ByteRecord::new();
    let mut recovered = Recovered::default();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                if let Some(previous) = held.replace(record.clone()) {
                    outputs.write::<T>(&previous, &mut recovered)?;
                }
            }
            Ok(false) => break,
            Err(_) => break,
        }
    }
    drop(reader);
    // The last row counts only if the stream ended on its line break.
    if let Some(last) = held {
        if stream.last_byte() == Some(b'\n') {
            outputs.write::<T>(&last, &mut recovered)?;
        } else {
            recovered.dropped_rows += 1;
        }
    }
    if recovered.rows == 0 {
        outputs.discard(target);
        at::remove_file(target.inprogress, journal)?;
        return Ok(recovered);
    }
    if !outputs.publish::<T>(target, &name)? {
        // An earlier attempt published them all: they are not recovered
        // now (and were counted then).
        recovered.rows = 0;
    }
    at::remove_file(target.inprogress, journal)
        .with_context(|| format!("cannot remove {journal}"))?;
    if T::NAME == Samples::NAME {
        recovered.sample_rows = recovered.rows;
    }
    Ok(recovered)
}

struct Outputs {
    csv: Option<(CsvFile, String)>,
    parquet: Option<(ParquetFile, String)>,
}

impl Outputs {
    fn create<T: Table>(target: &Target<'_>, csv_out: &str, parquet_out: &str) -> Result<Outputs> {
        let open = |name: &str, perms: &Permissions| {
            let _ = at::remove_file(target.inprogress, name);
            at::create_file_with(target.inprogress, name, perms)
                .with_context(|| format!("cannot create {name}"))
        };
        let csv = match target.formats.csv {
            true => Some((
                CsvFile::create::<T>(open(csv_out, target.perms)?)?,
                csv_out.to_string(),
            )),
            false => None,
        };
        let parquet = match target.formats.parquet {
            true => Some((
                ParquetFile::create::<T>(open(parquet_out, target.perms)?, target.metadata)?,
                parquet_out.to_string(),
            )),
            false => None,
        };
        Ok(Outputs { csv, parquet })
    }

    fn write<T: Table>(
        &mut self,
        record: &csv::ByteRecord,
        recovered: &mut Recovered,
    ) -> Result<()> {
        let columns = T::columns();
        let fields: Vec<&str> = record
            .iter()
            .filter_map(|f| std::str::from_utf8(f).ok())
            .collect();
        let values: Option<Vec<Value<'_>>> = (fields.len() == columns.len())
            .then(|| {
                fields
                    .iter()
                    .zip(columns)
                    .map(|(f, c)| c.ty.parse(f).ok())
                    .collect()
            })
            .flatten();
        let Some(values) = values else {
            recovered.dropped_rows += 1;
            return Ok(());
        };
        if let Some((csv, name)) = &mut self.csv {
            csv.write_fields(fields.iter().map(|f| f.as_bytes()))
                .with_context(|| format!("cannot write {name}"))?;
        }
        if let Some((parquet, name)) = &mut self.parquet {
            parquet
                .write_values(values)
                .with_context(|| format!("cannot write {name}"))?;
        }
        recovered.rows += 1;
        Ok(())
    }

    fn discard(self, target: &Target<'_>) {
        for name in [self.csv.map(|(_, n)| n), self.parquet.map(|(_, n)| n)]
            .into_iter()
            .flatten()
        {
            let _ = at::remove_file(target.inprogress, &name);
        }
    }

    /// Publish each output unless a file of that name is already published
    /// (an earlier attempt got that far before failing); whether any was
    /// published now.
    fn publish<T: Table>(self, target: &Target<'_>, name: &FileName) -> Result<bool> {
        let mut any = false;
        let already = |ext: &str| -> bool {
            let Ok(table) = at::open_subdir(target.out, T::NAME) else {
                return false;
            };
            let Ok(date) = at::open_subdir(&table, &name.date_dir) else {
                return false;
            };
            let Ok(hour) = at::open_subdir(&date, &name.hour_dir) else {
                return false;
            };
            at::exists(&hour, &name.with_ext(ext, 0))
        };
        if let Some((parquet, tmp)) = self.parquet {
            parquet
                .finish()
                .with_context(|| format!("cannot finish {tmp}"))?;
            if already(PARQUET_EXT) {
                at::remove_file(target.inprogress, &tmp)?;
            } else {
                publish_file(target, T::NAME, &tmp, name, PARQUET_EXT)?;
                any = true;
            }
        }
        if let Some((csv, tmp)) = self.csv {
            csv.finish()
                .with_context(|| format!("cannot finish {tmp}"))?;
            if already(CSV_EXT) {
                at::remove_file(target.inprogress, &tmp)?;
            } else {
                publish_file(target, T::NAME, &tmp, name, CSV_EXT)?;
                any = true;
            }
        }
        Ok(any)
    }
}
