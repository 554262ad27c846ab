//! Reading rows of published files back, CSV or Parquet, only the columns
//! asked for.
//!
//! A file's columns are matched by name (its header, or its Parquet
//! schema), so files written by an older version that lack a newer column
//! read that column as NULL. Rows are handed to a callback as a [`Row`]
//! view over the decoder's buffers: nothing is copied or allocated per row
//! unless the caller keeps a value. CSV records are split by a small RFC
//! 4180 splitter that stops after the last column needed (the csv crate
//! splits every field; this is what a report's time goes to).

use std::fs::File;

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

/// Where one field of the current record is: in the input buffer, or (for
/// a quoted field with doubled quotes) in the record's scratch buffer.
#[derive(Debug, Clone, Copy)]
enum Span {
    Input(usize, usize),
    Scratch(usize, usize),
}

struct CsvRow<'r> {
    input: &'r [u8],
    scratch: &'r [u8],
    spans: &'r [Span],
    /// Field index of each projected column in this file (None: absent).
    fields: &'r [Option<usize>],
    types: &'r [ColumnType],
    /// The last timestamp text parsed and its value (rows of a tick share it).
    ts_cache: &'r std::cell::RefCell<(Vec<u8>, i64)>,
}

impl Row for CsvRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(span) = self.fields[column].and_then(|i| self.spans.get(i)) else {
            return Cell::Null;
        };
        let field = match *span {
            Span::Input(start, end) => &self.input[start..end],
            Span::Scratch(start, end) => &self.scratch[start..end],
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

/// Split the RFC 4180 record starting at `input[at..]` into `spans`
/// (quoted fields unescaped into `scratch`). Returns where the next record
/// starts, or None when the record is not complete in `input` (unless
/// `last`: then the input's end ends it). This is the dialect taskscope
/// writes — quotes only around fields that need them — and any other
/// well-formed RFC 4180; the csv crate splits every field of every row,
/// this only scans for delimiters, several times faster.
#[cfg(test)]
fn split_record(
    input: &[u8],
    at: usize,
    last: bool,
    spans: &mut Vec<Span>,
    scratch: &mut Vec<u8>,
) -> Option<usize> {
    split_fields(input, at, last, spans, scratch, usize::MAX)
}

/// As `split_record`, splitting only the first `needed` fields: the rest
/// of the record is skipped (up to its line break when it holds no quote).
fn split_fields(
    input: &[u8],
    at: usize,
    last: bool,
    spans: &mut Vec<Span>,
    scratch: &mut Vec<u8>,
    needed: usize,
) -> Option<usize> {
    spans.clear();
    scratch.clear();
    let mut i = at;
    loop {
        if spans.len() >= needed {
            match memchr::memchr2(b'\n', b'"', &input[i..]) {
                Some(offset) if input[i + offset] == b'\n' => return Some(i + offset + 1),
                // A quoted field ahead may hold a line break: split on.
                Some(_) => return split_fields(input, at, last, spans, scratch, usize::MAX),
                None if last => return Some(input.len()),
                None => return None,
            }
        }
        if input.get(i) == Some(&b'"') {
            // Quoted: up to the quote not followed by another.
            let start = scratch.len();
            i += 1;
            loop {
                let quote = memchr::memchr(b'"', &input[i..])? + i;
                scratch.extend_from_slice(&input[i..quote]);
                if input.get(quote + 1) == Some(&b'"') {
                    scratch.push(b'"');
                    i = quote + 2;
                } else {
                    i = quote + 1;
                    break;
                }
            }
            spans.push(Span::Scratch(start, scratch.len()));
            match input.get(i) {
                Some(b',') => i += 1,
                Some(b'\r') if input.get(i + 1) == Some(&b'\n') => return Some(i + 2),
                Some(b'\n') => return Some(i + 1),
                None if last => return Some(i),
                None => return None,
                Some(_) => i += 1, // stray text after a closing quote: skip a byte
            }
        } else {
            // Fields are short (a few bytes): a plain loop beats memchr.
            let end = input[i..]
                .iter()
                .position(|&b| b == b',' || b == b'\n')
                .map(|offset| i + offset);
            match end {
                Some(end) => {
                    let trimmed = if input[end] == b'\n' && end > i && input[end - 1] == b'\r' {
                        end - 1
                    } else {
                        end
                    };
                    spans.push(Span::Input(i, trimmed));
                    if input[end] == b'\n' {
                        return Some(end + 1);
                    }
                    i = end + 1;
                }
                None if last => {
                    spans.push(Span::Input(i, input.len()));
                    return Some(input.len());
                }
                None => return None,
            }
        }
    }
}

fn scan_csv(
    file: &DataFile,
    projection: &Projection,
    each: &mut impl FnMut(&dyn Row) -> Result<()>,
) -> Result<()> {
    let input = File::open(&file.path)?;
    let mut decoder = zstd::stream::read::Decoder::new(input)?;
    let mut buffer: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut spans = Vec::new();
    let mut scratch = Vec::new();
    let mut fields: Option<Vec<Option<usize>>> = None;
    let ts_cache = std::cell::RefCell::new((Vec::new(), 0));
    let mut eof = false;
    let mut at = 0;
    loop {
        // Records that are complete in the buffer.
        let needed = fields.as_ref().map_or(usize::MAX, |f| {
            f.iter().flatten().max().map_or(0, |&m| m + 1)
        });
        while let Some(next) = split_fields(&buffer, at, eof, &mut spans, &mut scratch, needed) {
            if next == at {
                break;
            }
            let record_at = at;
            at = next;
            let Some(fields) = &fields else {
                // The header: where each projected column is in this file.
                let field = |span: &Span| match *span {
                    Span::Input(s, e) => buffer[s..e].to_vec(),
                    Span::Scratch(s, e) => scratch[s..e].to_vec(),
                };
                let names: Vec<Vec<u8>> = spans.iter().map(field).collect();
                fields = Some(
                    projection
                        .names
                        .iter()
                        .map(|name| names.iter().position(|h| h == name.as_bytes()))
                        .collect(),
                );
                continue;
            };
            if at - record_at <= 1 {
                continue; // an empty line
            }
            each(&CsvRow {
                input: &buffer,
                scratch: &scratch,
                spans: &spans,
                fields,
                types: &projection.types,
                ts_cache: &ts_cache,
            })?;
        }
        if eof {
            return Ok(());
        }
        // Keep the incomplete tail, read more.
        buffer.drain(..at);
        at = 0;
        let old = buffer.len();
        let want = (1 << 20).max(old);
        buffer.resize(old + want, 0);
        let n = read_full(&mut decoder, &mut buffer[old..])?;
        buffer.truncate(old + n);
        if n == 0 {
            eof = true;
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

/// Read until `buf` is full or the stream ends.
fn read_full(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
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

    fn split_all(input: &[u8]) -> Vec<Vec<String>> {
        let (mut spans, mut scratch, mut at, mut rows) = (Vec::new(), Vec::new(), 0, Vec::new());
        while let Some(next) = split_record(input, at, true, &mut spans, &mut scratch) {
            if next == at {
                break;
            }
            rows.push(
                spans
                    .iter()
                    .map(|s| match *s {
                        Span::Input(a, b) => String::from_utf8_lossy(&input[a..b]).into_owned(),
                        Span::Scratch(a, b) => String::from_utf8_lossy(&scratch[a..b]).into_owned(),
                    })
                    .collect(),
            );
            at = next;
        }
        rows
    }

    #[test]
    fn records_split_like_rfc_4180() {
        let input = b"a,b,c\n1,,x\r\n\"q,1\",\"say \"\"hi\"\"\",\"two\nlines\"\nlast,row";
        assert_eq!(
            split_all(input),
            vec![
                vec!["a", "b", "c"],
                vec!["1", "", "x"],
                vec!["q,1", "say \"hi\"", "two\nlines"],
                vec!["last", "row"],
            ]
        );
        // Incomplete records wait for more input.
        let (mut spans, mut scratch) = (Vec::new(), Vec::new());
        assert_eq!(
            split_record(b"1,2", 0, false, &mut spans, &mut scratch),
            None
        );
        assert_eq!(
            split_record(b"\"open,", 0, false, &mut spans, &mut scratch),
            None
        );
        assert_eq!(
            split_record(b"1,2\n3", 0, false, &mut spans, &mut scratch),
            Some(4)
        );
        // Splitting only the first field skips the rest of the record,
        // even when a quoted field there holds a line break.
        let input = b"1,2,3\n4,\"a\nb\",5\n6";
        assert_eq!(
            split_fields(input, 0, true, &mut spans, &mut scratch, 1),
            Some(6)
        );
        assert_eq!(spans.len(), 1);
        assert_eq!(
            split_fields(input, 6, true, &mut spans, &mut scratch, 1),
            Some(16)
        );
        assert_eq!(
            split_fields(input, 16, true, &mut spans, &mut scratch, 1),
            Some(17)
        );
    }

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
