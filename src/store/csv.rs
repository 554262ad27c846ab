//! CSV compressed with zstd, written row by row.
//!
//! RFC 4180 with a header row, empty field for NULL, and quotes only around
//! fields that contain a comma, a quote, CR or LF (quotes inside doubled),
//! so `awk -F,` works on every row whose names contain no comma. Rows are
//! encoded into a reused buffer and handed to zstd in large chunks: the csv
//! crate's field-by-field state machine cost 0.7 µs per row here, this
//! encoder a fraction of that (benches/writer.rs); the tests check every
//! row against the csv crate's reader.
//!
//! Durability points are zstd *flushes*, not frame ends: a flush makes
//! everything written so far decodable while keeping the compression
//! window, so rows of the next tick still compress against the previous
//! tick. A file is finished (frame end with checksum, fsync) only when it
//! is published.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::store::schema::{Table, Value};
use crate::store::timefmt::write_timestamp_micros;

/// zstd level 1: on taskscope's rows (which repeat heavily from tick to
/// tick) it is about four times faster than level 3 and compresses as well
/// or better (measured: 12.6 vs 13.5 bytes per row at 10,000 threads).
const ZSTD_LEVEL: i32 = 1;
/// Encoded rows are handed to zstd in chunks of about this size.
const CHUNK: usize = 128 * 1024;

type Encoder = zstd::stream::write::Encoder<'static, BufWriter<File>>;

/// One CSV file being written.
pub struct CsvFile {
    encoder: Encoder,
    buf: Vec<u8>,
    rows: u64,
    ts_text: String,
    ts_cached: Option<i64>,
    number: itoa::Buffer,
}

/// Append `field` to `out`, quoted if it contains a delimiter, quote or
/// line break.
pub fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    if needs_quotes(field) {
        out.push(b'"');
        for &b in field {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        put(out, field);
    }
}

/// Append `bytes` to `out`. Nearly every field is 1 to 32 bytes (numbers,
/// names, short paths): those are copied with two overlapping loads and
/// stores of the widest size that fits rather than a call to `memcpy`,
/// whose call and size dispatch cost more than the copy at these lengths
/// (the encoder's share of the per-row cost, `benches/writer.rs`).
#[inline(always)]
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    /// Copy `N <= n <= 2N` bytes from `src` to `dst`: the first `N` and
    /// the last `N` (they overlap when `n < 2N`).
    ///
    /// # Safety
    /// `src` is readable and `dst` writable for `n` bytes.
    #[inline(always)]
    unsafe fn two<const N: usize>(src: *const u8, dst: *mut u8, n: usize) {
        // SAFETY: both ranges lie within the first `n` bytes (N <= n).
        unsafe {
            let head = src.cast::<[u8; N]>().read_unaligned();
            let tail = src.add(n - N).cast::<[u8; N]>().read_unaligned();
            dst.cast::<[u8; N]>().write_unaligned(head);
            dst.add(n - N).cast::<[u8; N]>().write_unaligned(tail);
        }
    }
    let n = bytes.len();
    if n > 32 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(n);
    let len = out.len();
    let src = bytes.as_ptr();
    // SAFETY: `reserve` made room for `n` more bytes after `len`; each
    // branch reads and writes only within the first `n` bytes, and all
    // `n` are written before the length covers them.
    unsafe {
        let dst = out.as_mut_ptr().add(len);
        match n {
            0 => {}
            1..=3 => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            4..=7 => two::<4>(src, dst, n),
            8..=15 => two::<8>(src, dst, n),
            _ => two::<16>(src, dst, n),
        }
        out.set_len(len + n);
    }
}

/// Whether `field` holds a comma, a quote, CR or LF. Paths and process
/// titles are tens of bytes and almost never do: those are searched with
/// memchr's vector code, names of a few bytes byte by byte.
fn needs_quotes(field: &[u8]) -> bool {
    if field.len() < 16 {
        field
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    } else {
        memchr::memchr3(b',', b'"', b'\n', field).is_some()
            || memchr::memchr(b'\r', field).is_some()
    }
}

impl CsvFile {
    /// Start a file: zstd stream and the header row of table `T`.
    pub fn create<T: Table>(file: File) -> io::Result<CsvFile> {
        let mut encoder = zstd::stream::write::Encoder::new(
            BufWriter::with_capacity(256 * 1024, file),
            ZSTD_LEVEL,
        )?;
        encoder.include_checksum(true)?;
        let mut buf = Vec::with_capacity(CHUNK + 4096);
        for (i, column) in T::columns().iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            push_field(&mut buf, column.name.as_bytes());
        }
        buf.push(b'\n');
        Ok(CsvFile {
            encoder,
            buf,
            rows: 0,
            ts_text: String::new(),
            ts_cached: None,
            number: itoa::Buffer::new(),
        })
    }

    /// Append one row.
    pub fn write_row<T: Table>(&mut self, row: &T::Row<'_>) -> io::Result<()> {
        let (buf, number) = (&mut self.buf, &mut self.number);
        let (ts_text, ts_cached) = (&mut self.ts_text, &mut self.ts_cached);
        // Every field is followed by a comma; the last one becomes the
        // row's line feed.
        T::for_each_value(row, |value| {
            match value {
                Value::Null => {}
                Value::Int(v) => put(buf, number.format(v).as_bytes()),
                Value::Text(s) => push_field(buf, s.as_bytes()),
                Value::Bool(b) => put(buf, if b { b"true" } else { b"false" }),
                Value::Timestamp(us) => {
                    if *ts_cached != Some(us) {
                        ts_text.clear();
                        write_timestamp_micros(ts_text, us);
                        *ts_cached = Some(us);
                    }
                    put(buf, ts_text.as_bytes());
                }
            }
            buf.push(b',');
        });
        self.buf.pop();
        self.end_row()
    }

    /// Append one row given as its fields' text (journal recovery).
    pub fn write_fields<'f>(
        &mut self,
        fields: impl IntoIterator<Item = &'f [u8]>,
    ) -> io::Result<()> {
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            push_field(&mut self.buf, field);
        }
        self.end_row()
    }

    /// Terminate the row and hand full chunks to zstd.
    fn end_row(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        self.rows += 1;
        if self.buf.len() >= CHUNK {
            self.encoder.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Make every row written so far decodable from the file on disk;
    /// returns the file's length, up to which it holds exactly
    /// [`CsvFile::rows`] rows.
    pub fn flush_durable(&mut self) -> io::Result<u64> {
        self.encoder.write_all(&self.buf)?;
        self.buf.clear();
        // ZSTD_e_flush: ends the block, keeps the window; then BufWriter.
        self.encoder.flush()?;
        let file = self.encoder.get_ref().get_ref();
        file.sync_data()?;
        Ok(file.metadata()?.len())
    }

    /// End the zstd frame and make the whole file durable.
    pub fn finish(mut self) -> io::Result<File> {
        self.encoder.write_all(&self.buf)?;
        let buffered = self.encoder.finish()?;
        let file = buffered.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"plain", b"plain"),
            (b"", b""),
            (b"a,b", b"\"a,b\""),
            (b"say \"hi\"", b"\"say \"\"hi\"\"\""),
            (b"two\nlines", b"\"two\nlines\""),
            (b" spaced ", b" spaced "),
        ];
        // The same cases in long fields (the vector search).
        let pad = b"/var/lib/postgresql/15/main/";
        let long: Vec<(Vec<u8>, Vec<u8>)> = cases
            .iter()
            .chain(&[(&b"cr\rhere"[..], &b"\"cr\rhere\""[..])])
            .map(|(field, expected)| {
                let quoted = expected.first() == Some(&b'"');
                let field = [pad, *field].concat();
                let expected = if quoted {
                    [&b"\""[..], pad, &expected[1..]].concat()
                } else {
                    [pad, *expected].concat()
                };
                (field, expected)
            })
            .collect();
        for (field, expected) in cases
            .iter()
            .map(|(f, e)| (f.to_vec(), e.to_vec()))
            .chain(long)
        {
            let (field, expected) = (&field[..], &expected[..]);
            let mut out = Vec::new();
            push_field(&mut out, field);
            assert_eq!(out, expected, "{:?}", String::from_utf8_lossy(field));
        }
    }

    #[test]
    fn short_copies_append_exactly_the_bytes() {
        let source: Vec<u8> = (0u8..48).map(|b| b'a' + b % 26).collect();
        for n in 0..=source.len() {
            // At a full buffer (the copy must grow it) and with room.
            for spare in [0, 64] {
                let mut out = Vec::with_capacity(3 + spare);
                out.extend_from_slice(b"x,y");
                put(&mut out, &source[..n]);
                assert_eq!(&out[..3], b"x,y", "n = {n}");
                assert_eq!(&out[3..], &source[..n], "n = {n}");
            }
        }
    }

    #[test]
    fn rows_parse_back_with_the_csv_crate() {
        // Awkward names survive a round trip through a standard reader.
        let names = [
            "worker",
            "a,b",
            "q\"uote",
            "new\nline",
            "cr\rhere",
            "ünï",
            "",
        ];
        let mut buf = Vec::new();
        for name in names {
            push_field(&mut buf, name.as_bytes());
            buf.push(b',');
            push_field(&mut buf, b"42");
            buf.push(b'\n');
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(buf.as_slice());
        let parsed: Vec<(String, String)> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_string(), r[1].to_string())
            })
            .collect();
        let expected: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.to_string(), "42".to_string()))
            .collect();
        assert_eq!(parsed, expected);
    }
}
