//! Reading rows of published files back, CSV or Parquet, only the columns
//! asked for.
//!
//! A file's columns are matched by name (its header, or its Parquet
//! schema), so files written by an older version that lack a newer column
//! read that column as NULL. Rows are handed to a callback as a [`Row`]
//! view over the decoder's buffers: nothing is copied or allocated per row
//! unless the caller keeps a value.

use std::fs::File;
use std::io::BufReader;

use anyhow::{bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, BooleanArray, DictionaryArray, Int64Array, PrimitiveArray, RecordBatch, StringArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::catalog::{DataFile, FileFormat};
use crate::schema::{Column, ColumnType, Table};
use crate::timefmt::parse_timestamp_micros;

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
}

/// The columns to read from table `T`, by name, with their types.
#[derive(Debug, Clone)]
pub struct Projection {
    pub names: Vec<String>,
    pub types: Vec<ColumnType>,
}

impl Projection {
    /// `names` must be columns of `T`; an unknown name is an error listing
    /// the columns there are (`what` names the flag that asked).
    pub fn of<T: Table>(names: &[String], what: &str) -> Result<Projection> {
        let mut types = Vec::with_capacity(names.len());
        for name in names {
            match T::columns().iter().find(|c| c.name == name) {
                Some(column) => types.push(column.ty),
                None => bail!(
                    "{what}: no column '{name}' in table {} (columns: {})",
                    T::NAME,
                    column_list(T::columns())
                ),
            }
        }
        Ok(Projection {
            names: names.to_vec(),
            types,
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
        Ok(self.names.len() - 1)
    }
}

fn column_list<T: Table>(columns: &[Column<T>]) -> String {
    columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Call `each` with every row of `files`, in file order.
pub fn scan(
    files: &[DataFile],
    projection: &Projection,
    mut each: impl FnMut(&dyn Row) -> Result<()>,
) -> Result<()> {
    for file in files {
        let result = match file.format {
            FileFormat::Csv => scan_csv(file, projection, &mut each),
            FileFormat::Parquet => scan_parquet(file, projection, &mut each),
        };
        result.with_context(|| format!("cannot read {}", file.path.display()))?;
    }
    Ok(())
}

/// Like [`scan`], on every CPU: files are taken one at a time by worker
/// threads, each folding rows into its own state from `init`; the states
/// come back for the caller to merge (order of rows is not kept).
pub fn scan_parallel<S: Send>(
    files: &[DataFile],
    projection: &Projection,
    init: impl Fn() -> S + Sync,
    each: impl Fn(&mut S, &dyn Row) -> Result<()> + Sync,
) -> Result<Vec<S>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len())
        .max(1);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<S> {
                    let mut state = init();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = files.get(i) else {
                            return Ok(state);
                        };
                        scan(std::slice::from_ref(file), projection, |row| {
                            each(&mut state, row)
                        })?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a reader thread panicked"))?
            })
            .collect()
    })
}

struct CsvRow<'r> {
    record: &'r csv::ByteRecord,
    /// Field index of each projected column in this file (None: absent).
    fields: &'r [Option<usize>],
    types: &'r [ColumnType],
    /// The last timestamp text parsed and its value (rows of a tick share it).
    ts_cache: &'r std::cell::RefCell<(Vec<u8>, i64)>,
}

impl Row for CsvRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(field) = self.fields[column].and_then(|i| self.record.get(i)) else {
            return Cell::Null;
        };
        if field.is_empty() {
            return Cell::Null;
        }
        match self.types[column] {
            ColumnType::Int64 => parse_int(field).map_or(Cell::Null, Cell::Int),
            ColumnType::Text => std::str::from_utf8(field).map_or(Cell::Null, Cell::Text),
            ColumnType::Bool => Cell::Bool(field == b"true"),
            ColumnType::Timestamp => {
                let mut cache = self.ts_cache.borrow_mut();
                if cache.0 != field {
                    let Some(value) = std::str::from_utf8(field)
                        .ok()
                        .and_then(parse_timestamp_micros)
                    else {
                        return Cell::Null;
                    };
                    cache.0.clear();
                    cache.0.extend_from_slice(field);
                    cache.1 = value;
                }
                Cell::Timestamp(cache.1)
            }
        }
    }
}

fn parse_int(field: &[u8]) -> Option<i64> {
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

fn scan_csv(
    file: &DataFile,
    projection: &Projection,
    each: &mut impl FnMut(&dyn Row) -> Result<()>,
) -> Result<()> {
    let input = File::open(&file.path)?;
    let decoder = zstd::stream::read::Decoder::new(input)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 16, decoder));
    let headers = reader.byte_headers()?.clone();
    let fields: Vec<Option<usize>> = projection
        .names
        .iter()
        .map(|name| headers.iter().position(|h| h == name.as_bytes()))
        .collect();
    let ts_cache = std::cell::RefCell::new((Vec::new(), 0));
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record)? {
        each(&CsvRow {
            record: &record,
            fields: &fields,
            types: &projection.types,
            ts_cache: &ts_cache,
        })?;
    }
    Ok(())
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
    row: usize,
}

impl Row for BatchRow<'_> {
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
    file: &DataFile,
    projection: &Projection,
    each: &mut impl FnMut(&dyn Row) -> Result<()>,
) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&file.path)?)?;
    let schema = builder.schema().clone();
    let present: Vec<usize> = projection
        .names
        .iter()
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), present.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8_192)
        .build()?;
    for batch in reader {
        let batch: RecordBatch = batch?;
        let columns: Vec<Values<'_>> = projection
            .names
            .iter()
            .map(|name| column_values(&batch, name))
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            each(&BatchRow {
                columns: &columns,
                row,
            })?;
        }
    }
    Ok(())
}

fn column_values<'b>(batch: &'b RecordBatch, name: &str) -> Result<Values<'b>> {
    let Some(array) = batch.column_by_name(name) else {
        return Ok(Values::Absent);
    };
    use arrow_schema::DataType;
    Ok(match array.data_type() {
        DataType::Int64 => Values::Int(array.as_primitive::<Int64Type>()),
        DataType::Timestamp(_, _) => {
            Values::Timestamp(array.as_primitive::<TimestampMicrosecondType>())
        }
        DataType::Utf8 => Values::Text(array.as_string::<i32>()),
        DataType::Boolean => Values::Bool(array.as_boolean()),
        DataType::Dictionary(key, value)
            if **key == DataType::Int32 && **value == DataType::Utf8 =>
        {
            let dict = array.as_dictionary::<Int32Type>();
            Values::Dict(dict, dict.values().as_string::<i32>())
        }
        other => bail!("column {name} has unexpected type {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-100"), Some(-100));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"12a"), None);
        assert_eq!(parse_int(b"-"), None);
    }
}
