//! The archive's `manifest.json`, and what export learns about each file
//! to fill it: rows, first and last timestamp, sampling weight, SHA-256.
//!
//! Row counts come from the files themselves — a CSV file is decoded and
//! its records counted, a Parquet file's footer says how many rows it has
//! and its statistics give the time range — so the manifest states what
//! is in the archive, not what the agent meant to write.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::catalog::FileFormat;
use crate::store::timefmt;

/// Version of the manifest's layout.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's name inside the archive's top directory.
pub const MANIFEST_NAME: &str = "manifest.json";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub taskscope_export: u32,
    /// When the archive was made (UTC).
    pub created: String,
    /// The machine that made the archive (the agent's machine when run by
    /// the export timer) and its kernel and taskscope build.
    pub host: String,
    pub kernel: String,
    pub agent_version: String,
    pub agent_commit: String,
    /// The window asked for, `[from, to)`, UTC. The archive holds every
    /// period that overlaps it, whole.
    pub window: TimeRange,
    /// First and last timestamp of the rows archived (None: no rows).
    pub data: Option<TimeRange>,
    /// Hosts whose files are archived.
    pub hosts: Vec<String>,
    /// Sampling frequencies of the rows (from their `weight_us`).
    pub frequency_hz: Vec<u64>,
    /// `copy` or `parquet`.
    pub format: String,
    /// Every table the agent writes, with its totals (0 when it has no
    /// files in the window).
    pub tables: BTreeMap<String, TableTotals>,
    pub files: Vec<ArchivedFile>,
    /// Some files are of a period that was still being written: they hold
    /// its rows up to its last complete tick at export time.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partial: bool,
    /// Files of the window that could not be read, and why: not archived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedFile>,
}

/// A data file export could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub from: String,
    pub to: String,
}

impl TimeRange {
    pub fn of(from_us: i64, to_us: i64) -> TimeRange {
        TimeRange {
            from: timestamp(from_us),
            to: timestamp(to_us),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableTotals {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
}

/// One data file in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedFile {
    /// Path below the archive's top directory (`samples/date=…/hour=…/…`).
    pub path: String,
    pub table: String,
    /// `csv` or `parquet`.
    pub format: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    /// The agent's files this one was compacted from (`--format parquet`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Of a period still being written: its rows up to the last complete
    /// tick at export time (the period's published file will have more).
    #[serde(default, skip_serializing_if = "is_false")]
    pub in_progress: bool,
}

/// `2026-11-22 13:00:00.000000` (UTC), as in the data files.
pub fn timestamp(micros: i64) -> String {
    let mut out = String::new();
    timefmt::write_timestamp_micros(&mut out, micros);
    out
}

/// What reading a data file taught us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub rows: u64,
    pub first_us: Option<i64>,
    pub last_us: Option<i64>,
    /// Distinct `weight_us` values.
    pub weights: BTreeSet<i64>,
    /// Parquet key/value metadata.
    pub metadata: Vec<(String, String)>,
}

impl Contents {
    pub fn merge(&mut self, other: &Contents) {
        self.rows += other.rows;
        self.first_us = min_opt(self.first_us, other.first_us);
        self.last_us = self.last_us.max(other.last_us);
        self.weights.extend(other.weights.iter().copied());
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Read `file` (left at its start again) for its rows, time range and
/// weights. `name` is for messages.
pub fn inspect(file: &mut File, format: FileFormat, name: &str) -> Result<Contents> {
    let contents = match format {
        FileFormat::Csv => inspect_csv(&mut *file, name),
        FileFormat::Parquet => inspect_parquet(file, name),
    }?;
    file.seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot rewind {name}"))?;
    Ok(contents)
}

fn inspect_csv(file: &mut File, name: &str) -> Result<Contents> {
    let decoder = zstd::stream::read::Decoder::new(file)
        .with_context(|| format!("cannot decompress {name}"))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(decoder);
    let headers = reader
        .byte_headers()
        .with_context(|| format!("cannot read the header of {name}"))?
        .clone();
    let column = |wanted: &str| headers.iter().position(|h| h == wanted.as_bytes());
    let (ts, weight) = (column("ts"), column("weight_us"));
    let mut contents = Contents::default();
    let mut record = csv::ByteRecord::new();
    let mut last_ts: Vec<u8> = Vec::new();
    let mut last_weight: Vec<u8> = Vec::new();
    while reader
        .read_byte_record(&mut record)
        .with_context(|| format!("{name}: unreadable row {}", contents.rows + 1))?
    {
        contents.rows += 1;
        if let Some(field) = ts.and_then(|i| record.get(i)) {
            if contents.rows == 1 {
                contents.first_us = parse_ts(field);
            }
            last_ts.clear();
            last_ts.extend_from_slice(field);
        }
        if let Some(field) = weight.and_then(|i| record.get(i)) {
            if field != last_weight.as_slice() {
                last_weight.clear();
                last_weight.extend_from_slice(field);
                if let Some(value) = std::str::from_utf8(field).ok().and_then(|f| f.parse().ok()) {
                    contents.weights.insert(value);
                }
            }
        }
    }
    contents.last_us = parse_ts(&last_ts);
    Ok(contents)
}

fn parse_ts(field: &[u8]) -> Option<i64> {
    timefmt::parse_timestamp_micros(std::str::from_utf8(field).ok()?)
}

fn inspect_parquet(file: &mut File, name: &str) -> Result<Contents> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;
    let handle = file
        .try_clone()
        .with_context(|| format!("cannot read {name}"))?;
    let reader = SerializedFileReader::new(handle)
        .with_context(|| format!("{name} is not a readable Parquet file"))?;
    let meta = reader.metadata();
    let file_meta = meta.file_metadata();
    let mut contents = Contents {
        rows: u64::try_from(file_meta.num_rows()).unwrap_or(0),
        metadata: file_meta
            .key_value_metadata()
            .map(|pairs| {
                pairs
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
        ..Contents::default()
    };
    let schema = file_meta.schema_descr();
    let column =
        |wanted: &str| (0..schema.num_columns()).find(|&i| schema.column(i).name() == wanted);
    let (ts, weight) = (column("ts"), column("weight_us"));
    for group in meta.row_groups() {
        let stats = |index: Option<usize>| match index.map(|i| group.column(i).statistics()) {
            Some(Some(Statistics::Int64(stats))) => {
                Some((stats.min_opt().copied(), stats.max_opt().copied()))
            }
            _ => None,
        };
        if let Some((min, max)) = stats(ts) {
            contents.first_us = min_opt(contents.first_us, min);
            contents.last_us = contents.last_us.max(max);
        }
        if let Some((min, max)) = stats(weight) {
            contents.weights.extend(min);
            contents.weights.extend(max);
        }
    }
    Ok(contents)
}

/// SHA-256 of everything `reader` yields, in hex, and the byte count.
pub fn sha256(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The hex digest of what was read.
    pub fn digest(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Frequencies (Hz) of sampling weights in microseconds.
pub fn frequencies(weights: &BTreeSet<i64>) -> Vec<u64> {
    let set: BTreeSet<u64> = weights
        .iter()
        .filter(|&&w| w > 0)
        .map(|&w| (1_000_000 / w) as u64)
        .collect();
    set.into_iter().collect()
}

/// Check a manifest read back from an archive.
pub fn parse(text: &str) -> Result<Manifest> {
    let manifest: Manifest =
        serde_json::from_str(text).context("manifest.json is not a taskscope export manifest")?;
    if manifest.taskscope_export != MANIFEST_VERSION {
        bail!(
            "manifest.json has layout version {}; this taskscope reads version {MANIFEST_VERSION}",
            manifest.taskscope_export
        );
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        let (digest, bytes) = sha256(&b"abc"[..]).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(bytes, 3);
        let mut reader = HashingReader::new(&b"abc"[..]);
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        assert_eq!(reader.bytes, 3);
        assert_eq!(reader.digest(), digest);
    }

    #[test]
    fn csv_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv.zst");
        let text = "ts,tid,comm,weight_us\n\
                    2026-11-22 13:00:00.000001,1,\"a\nb\",100000\n\
                    2026-11-22 13:00:00.100001,1,b,100000\n\
                    2026-11-22 13:00:01.000001,2,c,1000000\n";
        std::fs::write(&path, zstd::encode_all(text.as_bytes(), 1).unwrap()).unwrap();
        let mut file = File::open(&path).unwrap();
        let contents = inspect(&mut file, FileFormat::Csv, "x").unwrap();
        assert_eq!(contents.rows, 3, "a quoted line break is not a row");
        assert_eq!(
            contents.first_us.map(timestamp).unwrap(),
            "2026-11-22 13:00:00.000001"
        );
        assert_eq!(
            contents.last_us.map(timestamp).unwrap(),
            "2026-11-22 13:00:01.000001"
        );
        assert_eq!(frequencies(&contents.weights), vec![1, 10]);
        // Left at the start for the copy that follows.
        let (_, bytes) = sha256(&mut file).unwrap();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn manifest_round_trip() {
        let manifest = Manifest {
            taskscope_export: MANIFEST_VERSION,
            created: timestamp(0),
            host: "h".into(),
            kernel: "6.18".into(),
            agent_version: "0.1.0".into(),
            agent_commit: "abc".into(),
            window: TimeRange::of(0, 1),
            data: None,
            hosts: vec!["h".into()],
            frequency_hz: vec![1],
            format: "copy".into(),
            tables: BTreeMap::from([("samples".to_string(), TableTotals::default())]),
            files: Vec::new(),
            partial: false,
            skipped: Vec::new(),
        };
        let text = serde_json::to_string_pretty(&manifest).unwrap();
        assert!(!text.contains("partial") && !text.contains("skipped"));
        let mut manifest = manifest;
        manifest.partial = true;
        let text = serde_json::to_string_pretty(&manifest).unwrap();
        assert_eq!(parse(&text).unwrap(), manifest);
        assert!(
            parse(&text.replace("\"taskscope_export\": 1", "\"taskscope_export\": 9")).is_err()
        );
        assert!(parse("{}").is_err());
    }
}
