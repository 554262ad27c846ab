//! The period being written: journals in `<dir>/.inprogress/`, read up to
//! their last complete row.
//!
//! The agent builds each period in `.inprogress/<table>-<stem>.csv.zst.tmp`,
//! one zstd stream made decodable by a zstd *flush* every
//! `--flush-interval`; a reader sees every block up to the last flush (and
//! maybe more), then an unfinished block. [`journal_reader`] decodes up to
//! the first block it cannot decode and ends at the last complete CSV
//! record, so the unfinished tail is never read as a row.
//!
//! The one decision a reader must know: tables are flushed together,
//! stacks first and ticks last, but a busy table's encoder also pushes
//! data to disk between flushes. So the catalog reads each in-progress
//! period's `ticks` journal *first*, before listing anything else, and its
//! newest complete tick becomes the period's `until_us`: rows after it are
//! not used. Then no sample counts without the tick that says how long it
//! was sampled, and every stack a used sample refers to was flushed before
//! that tick. A journal published while a reader works is found again at
//! its published path ([`open`]); one read both ways is never counted
//! twice, because the catalog drops a journal whose period it also found
//! published.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{DataFile, FileFormat, Problem};
use crate::store::layout::{
    parse_journal_name, stamp_of, FileName, CSV_EXT, INPROGRESS_DIR, PARQUET_EXT,
};

/// One journal found in `.inprogress/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub table: String,
    pub stem: String,
    pub path: PathBuf,
    pub size: u64,
}

/// The journals in `<dir>/.inprogress/`, and a problem when the directory
/// exists but cannot be read (the open period is then left out).
pub fn list(dir: &Path) -> (Vec<Journal>, Option<Problem>) {
    let inprogress = dir.join(INPROGRESS_DIR);
    let entries = match std::fs::read_dir(&inprogress) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return (Vec::new(), None),
        Err(err) => {
            return (
                Vec::new(),
                Some(Problem::new(
                    &inprogress,
                    format!("cannot read ({err}): the period being written is left out"),
                )),
            )
        }
    };
    let mut journals = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((table, stem)) = parse_journal_name(&name) else {
            continue;
        };
        if stamp_of(stem).is_none() {
            continue;
        }
        // DirEntry::metadata does not follow a symlink.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        journals.push(Journal {
            table: table.to_string(),
            stem: stem.to_string(),
            path: inprogress.join(&name),
            size: meta.len(),
        });
    }
    journals.sort_by(|a, b| (&a.table, &a.stem).cmp(&(&b.table, &b.stem)));
    (journals, None)
}

/// Where a journal's rows go when its period is published:
/// `<table>/date=…/hour=…/<stem>.csv.zst`, below the data directory.
pub fn published_relative(table: &str, stem: &str) -> Option<PathBuf> {
    let name = FileName::from_stem(stem)?;
    Some(
        Path::new(table)
            .join(&name.date_dir)
            .join(&name.hour_dir)
            .join(name.with_ext(CSV_EXT, 0)),
    )
}

/// Where a journal's period is published, Parquet first (the agent
/// publishes it first): full paths.
pub fn published_paths(file: &DataFile) -> Vec<(PathBuf, FileFormat)> {
    let Some(root) = file.path.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    let csv = root.join(&file.relative);
    let parquet = csv.with_file_name(format!("{}.{PARQUET_EXT}", file.stem));
    vec![(parquet, FileFormat::Parquet), (csv, FileFormat::Csv)]
}

/// How an opened data file must be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A finished file: every byte must decode.
    Published(FileFormat),
    /// A journal: read up to its last complete record.
    Journal,
}

/// Open `file` for reading, never through a symlink. A journal that was
/// published since it was listed is opened at its published path (Parquet
/// first, as the agent publishes it first).
pub fn open(file: &DataFile) -> io::Result<(File, Opened)> {
    let open_path = |path: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    if !file.in_progress {
        return open_path(&file.path).map(|f| (f, Opened::Published(file.format)));
    }
    match open_path(&file.path) {
        Ok(f) => Ok((f, Opened::Journal)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            for (path, format) in published_paths(file) {
                match open_path(&path) {
                    Ok(f) => return Ok((f, Opened::Published(format))),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
            Err(err)
        }
        Err(err) => Err(err),
    }
}

/// The decoded CSV text of a journal, up to its last complete record.
pub fn journal_reader(file: File) -> io::Result<CompleteRecords<TolerantEnd<impl Read>>> {
    Ok(CompleteRecords::new(TolerantEnd::journal(file)?))
}

/// A reader that ends, instead of failing, at the first error of the
/// reader below (a journal's unfinished zstd block), and remembers the
/// last byte it delivered.
pub struct TolerantEnd<R> {
    inner: R,
    last: Option<u8>,
    failed: bool,
}

/// A journal's zstd stream.
pub type JournalDecoder = zstd::stream::read::Decoder<'static, io::BufReader<File>>;

impl TolerantEnd<JournalDecoder> {
    /// The decoded text of journal `file`, up to its unfinished block.
    pub fn journal(file: File) -> io::Result<TolerantEnd<JournalDecoder>> {
        Ok(TolerantEnd {
            inner: zstd::stream::read::Decoder::new(file)?,
            last: None,
            failed: false,
        })
    }
}

impl<R> TolerantEnd<R> {
    /// The last byte delivered, if any.
    pub fn last_byte(&self) -> Option<u8> {
        self.last
    }
}

impl<R: Read> Read for TolerantEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Ok(n) => {
                if n > 0 {
                    self.last = Some(buf[n - 1]);
                }
                Ok(n)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Err(err),
            Err(_) => {
                self.failed = true;
                Ok(0)
            }
        }
    }
}

/// CSV text up to the end of its last complete record: the bytes after
/// the last line break outside quotes are never delivered.
pub struct CompleteRecords<R> {
    inner: R,
    buf: Vec<u8>,
    /// `buf[start..ready]` is complete records not yet delivered.
    start: usize,
    ready: usize,
    /// Bytes of `buf` already scanned for record ends.
    scanned: usize,
    in_quotes: bool,
    done: bool,
}

impl<R: Read> CompleteRecords<R> {
    pub fn new(inner: R) -> CompleteRecords<R> {
        CompleteRecords {
            inner,
            buf: Vec::new(),
            start: 0,
            ready: 0,
            scanned: 0,
            in_quotes: false,
            done: false,
        }
    }
}

impl<R: Read> Read for CompleteRecords<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.start < self.ready {
                let n = out.len().min(self.ready - self.start);
                out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.ready = 0;
            self.start = 0;
            let old = self.buf.len();
            self.buf.resize(old + (256 << 10), 0);
            let n = loop {
                match self.inner.read(&mut self.buf[old..]) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            let n = match n {
                Ok(n) => n,
                Err(err) => {
                    self.buf.truncate(old);
                    return Err(err);
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                // The unfinished tail is dropped.
                self.done = true;
                self.buf.clear();
                return Ok(0);
            }
            let mut at = self.scanned;
            while let Some(offset) = memchr::memchr2(b'"', b'\n', &self.buf[at..]) {
                let i = at + offset;
                if self.buf[i] == b'"' {
                    self.in_quotes = !self.in_quotes;
                } else if !self.in_quotes {
                    self.ready = i + 1;
                }
                at = i + 1;
            }
            self.scanned = self.buf.len();
        }
    }
}

/// The time of the newest complete row of a `ticks` journal (or of the
/// ticks file it was published as meanwhile); None when it has none.
pub fn newest_tick(file: &DataFile) -> Option<i64> {
    let (handle, opened) = open(file).ok()?;
    match opened {
        Opened::Journal => newest_csv_ts(journal_reader(handle).ok()?),
        Opened::Published(FileFormat::Csv) => {
            newest_csv_ts(zstd::stream::read::Decoder::new(handle).ok()?)
        }
        // A published Parquet file is complete: no bound needed.
        Opened::Published(FileFormat::Parquet) => Some(i64::MAX),
    }
}

fn newest_csv_ts(reader: impl Read) -> Option<i64> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let ts = csv.byte_headers().ok()?.iter().position(|h| h == b"ts")?;
    let mut record = csv::ByteRecord::new();
    let mut last: Vec<u8> = Vec::new();
    while let Ok(true) = csv.read_byte_record(&mut record) {
        if let Some(field) = record.get(ts) {
            last.clear();
            last.extend_from_slice(field);
        }
    }
    crate::store::timefmt::parse_timestamp_micros(std::str::from_utf8(&last).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &[u8], chunk: usize) -> Vec<u8> {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        CompleteRecords::new(Chunks(input, chunk))
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn only_complete_records_are_delivered() {
        let text = b"ts,comm\n1,\"a\nb\"\n2,c\n3,\"unfinished\nname";
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(
                complete(text, chunk),
                b"ts,comm\n1,\"a\nb\"\n2,c\n",
                "{chunk}"
            );
        }
        assert_eq!(complete(b"ts,comm\n1,x", 4), b"ts,comm\n");
        assert_eq!(complete(b"ts,co", 4), b"");
        assert_eq!(complete(b"a,\"q\"\"x\"\n", 1), b"a,\"q\"\"x\"\n");
    }

    #[test]
    fn a_journal_cut_mid_block_reads_to_its_last_flush() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        encoder.write_all(b"ts,weight_us\n").unwrap();
        encoder
            .write_all(b"2026-11-22 13:00:00.000000,1000000\n")
            .unwrap();
        encoder.flush().unwrap();
        let flushed = encoder.get_ref().len();
        encoder
            .write_all(b"2026-11-22 13:00:01.000000,1000000\n2026-11-22 13:00:02.0")
            .unwrap();
        encoder.flush().unwrap();
        let mut bytes = encoder.get_ref().clone();
        // Cut inside the second block: only the first flush is readable.
        bytes.truncate(flushed + 5);
        std::fs::write(&path, &bytes).unwrap();
        let mut text = String::new();
        journal_reader(File::open(&path).unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ts,weight_us\n2026-11-22 13:00:00.000000,1000000\n");
        // Whole second block: its complete row, not the cut one.
        std::fs::write(&path, encoder.get_ref()).unwrap();
        let file = DataFile {
            table: "ticks".into(),
            path: path.clone(),
            relative: PathBuf::from("ticks/x.csv.zst"),
            format: FileFormat::Csv,
            stem: "h-20261122T130000Z".into(),
            host: "h".into(),
            start_us: 0,
            end_us: None,
            size: 0,
            in_progress: true,
            until_us: None,
        };
        assert_eq!(
            newest_tick(&file),
            crate::store::timefmt::parse_timestamp_micros("2026-11-22 13:00:01.000000")
        );
    }

    #[test]
    fn a_journal_published_meanwhile_is_read_at_its_new_place() {
        let dir = tempfile::tempdir().unwrap();
        let stem = "h-20261122T130000Z";
        let relative = published_relative("samples", stem).unwrap();
        assert_eq!(
            relative,
            PathBuf::from("samples/date=2026-11-22/hour=13/h-20261122T130000Z.csv.zst")
        );
        std::fs::create_dir_all(dir.path().join(".inprogress")).unwrap();
        let published = dir.path().join(&relative);
        std::fs::create_dir_all(published.parent().unwrap()).unwrap();
        std::fs::write(&published, b"x").unwrap();
        let file = DataFile {
            table: "samples".into(),
            path: dir
                .path()
                .join(".inprogress/samples-h-20261122T130000Z.csv.zst.tmp"),
            relative,
            format: FileFormat::Csv,
            stem: stem.into(),
            host: "h".into(),
            start_us: 0,
            end_us: None,
            size: 0,
            in_progress: true,
            until_us: None,
        };
        let (_, opened) = open(&file).unwrap();
        assert_eq!(opened, Opened::Published(FileFormat::Csv));
        std::fs::remove_file(&published).unwrap();
        assert_eq!(open(&file).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
