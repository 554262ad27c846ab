//! Reading rows of data files back, CSV or Parquet, only the columns
//! asked for, file by file.
//!
//! A file's columns are matched by name (its header, or its Parquet
//! schema), so files written by an older version that lack a newer column
//! read that column as NULL — unless the answer needs it (`ts`,
//! `weight_us`, …: [`Projection::need`]). Rows are handed to a callback as
//! a [`Row`] view over the decoder's buffers: nothing is copied or
//! allocated per row unless the caller keeps a value.
//!
//! The decision a reader must know: every file is read into its own state
//! ([`scan_files`]), and a file that cannot be read whole — unreadable,
//! truncated, a wrong header, a value of the wrong type — gives the reason
//! instead of its rows, so the caller can leave out its period and say so
//! (`catalog::Catalog::leave_out`). Nothing is averaged over a half-read
//! file.

use std::fs::File;

use anyhow::{bail, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, BooleanArray, DictionaryArray, Int64Array, PrimitiveArray, RecordBatch, StringArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::csv_read;
use super::predicate::{CsvBatches, Filter};
use crate::error::Usage;
use crate::store::catalog::{self, DataFile, FileFormat, Opened};
use crate::store::schema::{ColumnType, Table};

/// One value of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    /// Microseconds since the epoch (UTC).
    Timestamp(i64),
    Text(&'a str),
    Bool(bool),
}

impl Cell<'_> {
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Cell::Int(v) | Cell::Timestamp(v) => Some(v),
            _ => None,
        }
    }
}

/// A row of the projected columns, by position in the projection.
pub trait Row {
    fn cell(&self, column: usize) -> Cell<'_>;
    /// Whether the row passes the scan's `--where` (true without one).
    fn passes(&self) -> bool {
        true
    }
    /// The values of `columns` as one number that stands for them within
    /// the batch this row came from, and that batch's number (unique in
    /// the process): rows of one batch with the same code have the same
    /// values. None when the reader has no such code (CSV rows, or
    /// columns that are not dictionary-encoded text).
    fn group_code(&self, _columns: &[usize]) -> Option<(u64, u64)> {
        None
    }
}

/// Numbers batches for [`Row::group_code`].
static BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The columns to read from one table, by name, with their types.
#[derive(Debug, Clone)]
pub struct Projection {
    pub names: Vec<String>,
    pub types: Vec<ColumnType>,
    /// Columns a file must have (the others read as NULL when absent).
    pub required: Vec<bool>,
    /// The table's name and every column it has.
    pub table: &'static str,
    pub known: Vec<&'static str>,
}

impl Projection {
    /// `names` must be columns of `T`; an unknown name is an error listing
    /// the columns there are (`what` names the flag that asked).
    pub fn of<T: Table>(names: &[String], what: &str) -> Result<Projection> {
        let known: Vec<&'static str> = T::columns().iter().map(|c| c.name).collect();
        let mut types = Vec::with_capacity(names.len());
        for name in names {
            match T::columns().iter().find(|c| c.name == name) {
                Some(column) => types.push(column.ty),
                None => bail!(
                    "{what}: no column '{name}' in table {} (columns: {})",
                    T::NAME,
                    known.join(", ")
                ),
            }
        }
        Ok(Projection {
            names: names.to_vec(),
            types,
            required: vec![false; names.len()],
            table: T::NAME,
            known,
        })
    }

    /// Position of `name` in the projection.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Add `name` (a column of `T`) if missing; its position.
    pub fn require<T: Table>(&mut self, name: &str, what: &str) -> Result<usize> {
        if let Some(i) = self.index(name) {
            return Ok(i);
        }
        let extra = Projection::of::<T>(&[name.to_string()], what)?;
        self.names.push(extra.names[0].clone());
        self.types.push(extra.types[0]);
        self.required.push(false);
        Ok(self.names.len() - 1)
    }

    /// As `require`, and a file without the column cannot be used.
    pub fn need<T: Table>(&mut self, name: &str, what: &str) -> Result<usize> {
        let i = self.require::<T>(name, what)?;
        self.required[i] = true;
        Ok(i)
    }
}

/// Read `file` and call `each` with each of its rows, each saying
/// whether it passes `filter` ([`Row::passes`]); an error says why the
/// file cannot be read whole. Rows after the file's `until_us` (a period
/// being written) are not handed on (see `catalog::inprogress`).
pub fn scan_file(
    file: &DataFile,
    projection: &Projection,
    filter: Option<&Filter>,
    mut each: impl FnMut(&dyn Row),
) -> Result<()> {
    let (handle, opened) = match catalog::open(file) {
        Ok(opened) => opened,
        Err(err) => bail!("cannot read it ({err})"),
    };
    let until = file.until_us;
    let ts = projection.index("ts").filter(|_| until.is_some());
    let bounded = |row: &dyn Row| {
        if let (Some(until), Some(ts)) = (until, ts) {
            if row.cell(ts).as_int().is_none_or(|t| t > until) {
                return;
            }
        }
        each(row)
    };
    match opened {
        Opened::Journal => {
            let reader = match catalog::journal_reader(handle) {
                Ok(reader) => reader,
                Err(err) => bail!("cannot decompress it ({err})"),
            };
            scan_csv(reader, true, projection, filter, bounded)
        }
        Opened::Published(FileFormat::Csv) => {
            let decoder = match zstd::stream::read::Decoder::new(handle) {
                Ok(decoder) => decoder,
                Err(err) => bail!("cannot decompress it ({err})"),
            };
            scan_csv(decoder, false, projection, filter, bounded)
        }
        Opened::Published(FileFormat::Parquet) => scan_parquet(handle, projection, filter, bounded),
    }
}

/// Read every file of `files` into its own state from `init`, on every
/// CPU (files are taken one at a time by worker threads). Per file, in
/// the order of `files`: its state, or why it could not be read whole.
/// A `--where` that cannot be evaluated (`tid / 0 = 1`) is the user's
/// error, not the file's: the whole read fails with it (a usage error).
pub fn scan_files<S: Send>(
    files: &[DataFile],
    projection: &Projection,
    filter: Option<&Filter>,
    init: impl Fn(&DataFile) -> S + Sync,
    each: impl Fn(&mut S, &dyn Row) + Sync,
) -> Result<Vec<Result<S, String>>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<S>>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = files.get(i) else {
                    return;
                };
                let mut state = init(file);
                let result = scan_file(file, projection, filter, |row| each(&mut state, row))
                    .map(|()| state);
                if let Ok(mut results) = results.lock() {
                    results[i] = Some(result);
                }
            });
        }
    });
    let mut reads = Vec::with_capacity(files.len());
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    for result in results {
        reads.push(match result {
            Some(Ok(state)) => Ok(state),
            Some(Err(err)) if err.is::<Usage>() => return Err(err),
            Some(Err(err)) => Err(format!("{err:#}")),
            None => Err("a reader thread failed".to_string()),
        });
    }
    Ok(reads)
}

/// Parse a decimal integer (the CSV form of BIGINT).
pub(super) fn parse_int(field: &[u8]) -> Option<i64> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 19 {
        return std::str::from_utf8(field).ok()?.parse().ok();
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
        {
            Some(next) => value = next,
            // Only i64::MIN overflows the positive accumulator.
            None => return std::str::from_utf8(field).ok()?.parse().ok(),
        }
    }
    Some(if negative { -value } else { value })
}

enum Values<'b> {
    Absent,
    Int(&'b Int64Array),
    Timestamp(&'b PrimitiveArray<TimestampMicrosecondType>),
    Dict(&'b DictionaryArray<Int32Type>, &'b StringArray),
    Text(&'b StringArray),
    Bool(&'b BooleanArray),
}

struct BatchRow<'b> {
    columns: &'b [Values<'b>],
    /// Which rows pass the `--where` (None: all).
    mask: Option<&'b BooleanArray>,
    row: usize,
    /// The batch's number (`BATCHES`).
    batch: u64,
}

impl Row for BatchRow<'_> {
    fn passes(&self) -> bool {
        self.mask.is_none_or(|m| m.value(self.row))
    }

    /// Up to four dictionary-encoded (or absent) columns: their keys in
    /// the batch's dictionaries, 16 bits each (0: NULL).
    fn group_code(&self, columns: &[usize]) -> Option<(u64, u64)> {
        if columns.len() > 4 {
            return None;
        }
        let mut code = 0u64;
        for &column in columns {
            let part = match &self.columns[column] {
                Values::Absent => 0,
                Values::Dict(keys, _) if keys.is_null(self.row) => 0,
                Values::Dict(keys, _) => {
                    let key = keys.keys().value(self.row);
                    if !(0..0xffff).contains(&key) {
                        return None;
                    }
                    key as u64 + 1
                }
                _ => return None,
            };
            code = code << 16 | part;
        }
        Some((self.batch, code))
    }

    fn cell(&self, column: usize) -> Cell<'_> {
        let i = self.row;
        match &self.columns[column] {
            Values::Absent => Cell::Null,
            Values::Int(a) => {
                if a.is_null(i) {
                    Cell::Null
                } else {
                    Cell::Int(a.value(i))
                }
            }
            Values::Timestamp(a) => {
                if a.is_null(i) {
                    Cell::Null
                } else {
                    Cell::Timestamp(a.value(i))
                }
            }
            Values::Dict(keys, values) => {
                if keys.is_null(i) {
                    Cell::Null
                } else {
                    let key = keys.keys().value(i) as usize;
                    Cell::Text(values.value(key))
                }
            }
            Values::Text(a) => {
                if a.is_null(i) {
                    Cell::Null
                } else {
                    Cell::Text(a.value(i))
                }
            }
            Values::Bool(a) => {
                if a.is_null(i) {
                    Cell::Null
                } else {
                    Cell::Bool(a.value(i))
                }
            }
        }
    }
}

fn scan_parquet(
    file: File,
    projection: &Projection,
    filter: Option<&Filter>,
    mut each: impl FnMut(&dyn Row),
) -> Result<()> {
    let builder = match ParquetRecordBatchReaderBuilder::try_new(file.try_clone()?) {
        Ok(builder) => builder,
        Err(err) => bail!("it is not a readable Parquet file ({err})"),
    };
    // Text columns as dictionaries, as the writer encodes them: no string
    // is copied out of a page, and a row's text is an index.
    let hinted = dictionary_hint(builder.schema());
    let builder = match ParquetRecordBatchReaderBuilder::try_new_with_options(
        file,
        parquet::arrow::arrow_reader::ArrowReaderOptions::new().with_schema(hinted),
    ) {
        Ok(builder) => builder,
        Err(err) => bail!("it is not a readable Parquet file ({err})"),
    };
    let schema = builder.schema().clone();
    for (i, name) in projection.names.iter().enumerate() {
        if projection.required[i] && schema.index_of(name).is_err() {
            bail!("it lacks the column {name}");
        }
    }
    let present: Vec<usize> = projection
        .names
        .iter()
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), present.iter().copied());
    let reader = match builder.with_projection(mask).with_batch_size(8_192).build() {
        Ok(reader) => reader,
        Err(err) => bail!("it is not a readable Parquet file ({err})"),
    };
    let mut rows = 0u64;
    for batch in reader {
        let batch: RecordBatch = match batch {
            Ok(batch) => batch,
            Err(err) => bail!("it is damaged after row {rows} ({err})"),
        };
        batch_rows(&batch, projection, filter, &mut each)?;
        rows += batch.num_rows() as u64;
    }
    Ok(())
}

/// `schema` with every Utf8 column read as Dictionary(Int32, Utf8).
fn dictionary_hint(schema: &arrow_schema::SchemaRef) -> arrow_schema::SchemaRef {
    use arrow_schema::{DataType, Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(DataType::Utf8),
            )),
            _ => f.as_ref().clone(),
        })
        .collect();
    std::sync::Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Call `each` with every row of `batch`, each saying whether it passes
/// `filter`.
fn batch_rows(
    batch: &RecordBatch,
    projection: &Projection,
    filter: Option<&Filter>,
    each: &mut impl FnMut(&dyn Row),
) -> Result<()> {
    let columns: Vec<Values<'_>> = projection
        .names
        .iter()
        .zip(&projection.types)
        .map(|(name, ty)| column_values(batch, name, *ty))
        .collect::<Result<_>>()?;
    let mask = filter.map(|f| f.mask(batch)).transpose()?;
    let number = BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for row in 0..batch.num_rows() {
        each(&BatchRow {
            columns: &columns,
            mask: mask.as_ref(),
            row,
            batch: number,
        });
    }
    Ok(())
}

/// CSV rows: straight from the splitter without a `--where`; with one,
/// gathered into Arrow batches first so that the engine can evaluate it.
fn scan_csv(
    input: impl std::io::Read,
    journal: bool,
    projection: &Projection,
    filter: Option<&Filter>,
    mut each: impl FnMut(&dyn Row),
) -> Result<()> {
    let Some(filter) = filter else {
        return csv_read::scan(input, journal, projection, each);
    };
    let mut batches = CsvBatches::new(projection);
    let mut failed = None;
    csv_read::scan(input, journal, projection, |row| {
        if failed.is_some() || !batches.push(row) {
            return;
        }
        let done = batches.finish().and_then(|batch| match batch {
            Some(batch) => batch_rows(&batch, projection, Some(filter), &mut each),
            None => Ok(()),
        });
        if let Err(err) = done {
            failed = Some(err);
        }
    })?;
    if let Some(err) = failed {
        return Err(err);
    }
    match batches.finish()? {
        Some(batch) => batch_rows(&batch, projection, Some(filter), &mut each),
        None => Ok(()),
    }
}

fn column_values<'b>(batch: &'b RecordBatch, name: &str, ty: ColumnType) -> Result<Values<'b>> {
    let Some(array) = batch.column_by_name(name) else {
        return Ok(Values::Absent);
    };
    use arrow_schema::{DataType, TimeUnit};
    Ok(match (array.data_type(), ty) {
        (DataType::Int64, ColumnType::Int64) => Values::Int(array.as_primitive::<Int64Type>()),
        (DataType::Timestamp(TimeUnit::Microsecond, _), ColumnType::Timestamp) => {
            Values::Timestamp(array.as_primitive::<TimestampMicrosecondType>())
        }
        (DataType::Utf8, ColumnType::Text) => Values::Text(array.as_string::<i32>()),
        (DataType::Boolean, ColumnType::Bool) => Values::Bool(array.as_boolean()),
        (DataType::Dictionary(key, value), ColumnType::Text)
            if **key == DataType::Int32 && **value == DataType::Utf8 =>
        {
            let dict = array.as_dictionary::<Int32Type>();
            Values::Dict(dict, dict.values().as_string::<i32>())
        }
        (other, _) => bail!("its column {name} holds {other}, not {}", ty.sql()),
    })
}
