//! CSV compressed with zstd, written row by row.
//!
//! RFC 4180 with a header row, empty field for NULL, quoting only where a
//! field needs it (the csv crate decides). Durability points are zstd
//! *flushes*, not frame ends: a flush makes everything written so far
//! decodable while keeping the compression window, so rows of the next tick
//! still compress against the previous tick. A file is finished (frame end
//! with checksum, fsync) only when it is published.

use std::fs::File;
use std::io::{self, BufWriter};

use crate::schema::{Table, Value};
use crate::timefmt::write_timestamp_micros;

/// zstd level: fast enough for ≤1 µs per row, and rows repeat heavily.
const ZSTD_LEVEL: i32 = 3;
/// 8 MiB window: one tick of 10,000 threads (~1 MiB of CSV) fits several
/// times, so each row finds its previous tick's twin. Readers (zstdcat,
/// DuckDB) accept windows up to 128 MiB without options.
const ZSTD_WINDOW_LOG: u32 = 23;

type Encoder = zstd::stream::write::Encoder<'static, BufWriter<File>>;

/// One CSV file being written.
pub struct CsvFile {
    writer: csv::Writer<Encoder>,
    rows: u64,
    ts_text: String,
    ts_cached: Option<i64>,
    number: itoa::Buffer,
}

impl CsvFile {
    /// Start a file: zstd stream and the header row of table `T`.
    pub fn create<T: Table>(file: File) -> io::Result<CsvFile> {
        let mut encoder = zstd::stream::write::Encoder::new(BufWriter::with_capacity(256 * 1024, file), ZSTD_LEVEL)?;
        encoder.include_checksum(true)?;
        encoder.window_log(ZSTD_WINDOW_LOG)?;
        let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(encoder);
        writer.write_record(T::columns().iter().map(|c| c.name))?;
        Ok(CsvFile { writer, rows: 0, ts_text: String::new(), ts_cached: None, number: itoa::Buffer::new() })
    }

    /// Append one row.
    pub fn write_row<T: Table>(&mut self, row: &T::Row<'_>) -> io::Result<()> {
        for column in T::columns() {
            match (column.value)(row) {
                Value::Null => self.writer.write_field(b"")?,
                Value::Int(v) => self.writer.write_field(self.number.format(v))?,
                Value::Text(s) => self.writer.write_field(s)?,
                Value::Timestamp(us) => {
                    if self.ts_cached != Some(us) {
                        self.ts_text.clear();
                        write_timestamp_micros(&mut self.ts_text, us);
                        self.ts_cached = Some(us);
                    }
                    self.writer.write_field(&self.ts_text)?
                }
            }
        }
        self.writer.write_record(None::<&[u8]>)?;
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Make every row written so far decodable from the file on disk.
    pub fn flush_durable(&mut self) -> io::Result<()> {
        // csv -> zstd (ZSTD_e_flush: ends the block, keeps the window) ->
        // BufWriter -> file.
        self.writer.flush()?;
        self.writer.get_ref().get_ref().get_ref().sync_data()
    }

    /// End the zstd frame and make the whole file durable.
    pub fn finish(self) -> io::Result<File> {
        let encoder = self.writer.into_inner().map_err(|err| err.into_error())?;
        let buffered = encoder.finish()?;
        let file = buffered.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        Ok(file)
    }
}
