//! Reading CSV data files: a small RFC 4180 splitter that stops after the
//! last column needed, and the checks that turn a damaged file into a
//! named problem instead of rows of NULLs.
//!
//! The csv crate splits every field of every row; this splitter only scans
//! for delimiters up to the last column a report needs, several times
//! faster (that is where a report's time goes). A file is refused — with
//! the row and the value — when its header names a column the table does
//! not have or lacks one the answer needs, when a row has fewer fields
//! than needed (or the first row a different count than the header), or
//! when a value read does not parse as its column's type. A journal (the
//! period being written) is read through `catalog::journal_reader`, which
//! ends at its last complete record.

use std::cell::{Cell as Flag, RefCell};
use std::io::Read;

use anyhow::{bail, Result};

use super::read::{parse_int, Cell, Projection, Row};
use crate::store::schema::ColumnType;
use crate::store::timefmt::parse_timestamp_micros;

/// Where one field of the current record is: in the input buffer, or (for
/// a quoted field with doubled quotes) in the record's scratch buffer.
#[derive(Debug, Clone, Copy)]
pub(super) enum Span {
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
    ts_cache: &'r RefCell<(Vec<u8>, i64)>,
    /// The first projected column whose value did not parse.
    bad: &'r Flag<Option<usize>>,
}

impl CsvRow<'_> {
    fn field(&self, column: usize) -> Option<&[u8]> {
        let span = self.fields[column].and_then(|i| self.spans.get(i))?;
        Some(match *span {
            Span::Input(start, end) => &self.input[start..end],
            Span::Scratch(start, end) => &self.scratch[start..end],
        })
    }

    fn invalid(&self, column: usize) -> Cell<'_> {
        if self.bad.get().is_none() {
            self.bad.set(Some(column));
        }
        Cell::Null
    }
}

impl Row for CsvRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(field) = self.field(column) else {
            return Cell::Null;
        };
        if field.is_empty() {
            return Cell::Null;
        }
        match self.types[column] {
            ColumnType::Int64 => match parse_int(field) {
                Some(v) => Cell::Int(v),
                None => self.invalid(column),
            },
            ColumnType::Text => match std::str::from_utf8(field) {
                Ok(text) => Cell::Text(text),
                Err(_) => self.invalid(column),
            },
            ColumnType::Bool => match field {
                b"true" => Cell::Bool(true),
                b"false" => Cell::Bool(false),
                _ => self.invalid(column),
            },
            ColumnType::Timestamp => {
                let mut cache = self.ts_cache.borrow_mut();
                if cache.0 != field {
                    let Some(value) = std::str::from_utf8(field)
                        .ok()
                        .and_then(parse_timestamp_micros)
                    else {
                        return self.invalid(column);
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
/// well-formed RFC 4180.
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
pub(super) fn split_fields(
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

/// Where each projected column is in a file with this header, after
/// checking that the header is one of the projection's table.
fn header_fields(names: &[Vec<u8>], projection: &Projection) -> Result<Vec<Option<usize>>> {
    for name in names {
        if !projection
            .known
            .iter()
            .any(|k| k.as_bytes() == name.as_slice())
        {
            bail!(
                "its header has '{}', which is not a column of {} (is it a {} file?)",
                String::from_utf8_lossy(name),
                projection.table,
                projection.table
            );
        }
    }
    let fields: Vec<Option<usize>> = projection
        .names
        .iter()
        .map(|name| names.iter().position(|h| h == name.as_bytes()))
        .collect();
    for (i, field) in fields.iter().enumerate() {
        if field.is_none() && projection.required[i] {
            bail!("its header lacks the column {}", projection.names[i]);
        }
    }
    Ok(fields)
}

/// What kind of value a column type holds, for messages.
fn type_text(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 => "an integer",
        ColumnType::Text => "UTF-8 text",
        ColumnType::Bool => "true or false",
        ColumnType::Timestamp => "a timestamp (YYYY-MM-DD HH:MM:SS.ffffff)",
    }
}

/// Call `each` with every row of the CSV text `input` (decompressed);
/// an error says what is wrong with the file. `journal`: the text of a
/// period being written (no header yet is no rows, not damage).
pub(super) fn scan(
    mut input: impl Read,
    journal: bool,
    projection: &Projection,
    mut each: impl FnMut(&dyn Row),
) -> Result<()> {
    let mut buffer: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut spans = Vec::new();
    let mut scratch = Vec::new();
    let mut fields: Option<Vec<Option<usize>>> = None;
    let (mut header_len, mut needed) = (0, usize::MAX);
    let ts_cache = RefCell::new((Vec::new(), 0));
    let bad = Flag::new(None);
    let mut rows: u64 = 0;
    let mut eof = false;
    let mut at = 0;
    loop {
        // Records that are complete in the buffer. The header and the first
        // row are split whole (the first row's field count must be the
        // header's); later rows up to the last field needed.
        loop {
            let split = if rows == 0 { usize::MAX } else { needed };
            let Some(next) = split_fields(&buffer, at, eof, &mut spans, &mut scratch, split) else {
                break;
            };
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
                header_len = names.len();
                let found = header_fields(&names, projection)?;
                needed = found.iter().flatten().max().map_or(0, |&m| m + 1);
                fields = Some(found);
                continue;
            };
            if at - record_at <= 1 {
                continue; // an empty line
            }
            rows += 1;
            if rows == 1 && spans.len() != header_len {
                bail!("row 1 has {} fields, its header {header_len}", spans.len());
            }
            if spans.len() < needed {
                bail!("row {rows} has only {} fields", spans.len());
            }
            let row = CsvRow {
                input: &buffer,
                scratch: &scratch,
                spans: &spans,
                fields,
                types: &projection.types,
                ts_cache: &ts_cache,
                bad: &bad,
            };
            each(&row);
            if let Some(column) = bad.get() {
                let value = row.field(column).unwrap_or_default();
                bail!(
                    "row {rows}: {} '{}' is not {}",
                    projection.names[column],
                    String::from_utf8_lossy(value),
                    type_text(projection.types[column])
                );
            }
        }
        if eof {
            if fields.is_none() && !journal {
                bail!("it is empty (no header row)");
            }
            return Ok(());
        }
        // Keep the incomplete tail, read more.
        buffer.drain(..at);
        at = 0;
        let old = buffer.len();
        let want = (1 << 20).max(old);
        buffer.resize(old + want, 0);
        let n = match read_full(&mut input, &mut buffer[old..]) {
            Ok(n) => n,
            Err(err) if rows == 0 => bail!("cannot decompress it ({err})"),
            Err(err) => bail!("cannot decompress it after row {rows} ({err})"),
        };
        buffer.truncate(old + n);
        if n == 0 {
            eof = true;
        }
    }
}

/// Read until `buf` is full or the stream ends.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::csv_read::{split_fields, split_record, Span};

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

    /// Scan `text` as a samples file reading ts, weight_us (needed) and
    /// comm: the (weight, comm) of each row, or the file's problem.
    fn scan_text(text: &str) -> std::result::Result<Vec<(Option<i64>, String)>, String> {
        use crate::store::schema::Samples;
        let mut projection = Projection::of::<Samples>(&["comm".into()], "test").unwrap();
        projection.need::<Samples>("ts", "test").unwrap();
        projection.need::<Samples>("weight_us", "test").unwrap();
        let mut rows = Vec::new();
        scan(text.as_bytes(), false, &projection, |row| {
            let _ = row.cell(1);
            let comm = match row.cell(0) {
                Cell::Text(t) => t.to_string(),
                _ => String::new(),
            };
            rows.push((row.cell(2).as_int(), comm));
        })
        .map(|()| rows)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let good = "ts,comm,weight_us\n2026-11-22 13:00:00.000000,a,100\n2026-11-22 13:00:01.000000,b,100\n";
        assert_eq!(
            scan_text(good).unwrap(),
            [(Some(100), "a".to_string()), (Some(100), "b".to_string())]
        );
        for (text, problem) in [
            ("", "empty (no header row)"),
            ("ts,comm,wieght_us\n", "its header has 'wieght_us', which is not a column of samples"),
            ("ts,comm\n2026-11-22 13:00:00.000000,a\n", "its header lacks the column weight_us"),
            (
                "ts,comm,weight_us\n2026-11-22 13:00:00.000000,a\n",
                "row 1 has 2 fields, its header 3",
            ),
            (
                "ts,comm\n2026-11-22 13:00:00.000000,a,100\n",
                "its header lacks the column weight_us",
            ),
            (
                "ts,comm,weight_us\n2026-11-22 13:00:00.000000,a,100\n2026-11-22 13:00:01.000000,b,lots\n",
                "row 2: weight_us 'lots' is not an integer",
            ),
            (
                "ts,comm,weight_us\n2026-11-22 13:00:00.000000,a,100\nyesterday,b,100\n",
                "row 2: ts 'yesterday' is not a timestamp",
            ),
            (
                "ts,comm,weight_us\n2026-11-22 13:00:00.000000,a,100\n2026-11-22 13:00:01.000000\n",
                "row 2 has only 1 fields",
            ),
        ] {
            let err = scan_text(text).unwrap_err();
            assert!(err.contains(problem), "{text:?}: {err}");
        }
        // A header with a column this file lacks that the answer does not
        // need (an older file): NULL.
        let older = "ts,weight_us\n2026-11-22 13:00:00.000000,100\n";
        assert_eq!(scan_text(older).unwrap(), [(Some(100), String::new())]);
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
