//! Writing the archive: a zstd-compressed tar built under a temporary
//! name next to the target and renamed into place only when complete
//! (`destination`: a device or FIFO is written in place, nothing else is
//! replaced without `--force`),
//! with every entry hashed as it is added, and the progress bar.
//!
//! The decision a reader must know: the archive's mode is computed from
//! the files it holds (0644, less the group or other read bit any source
//! withholds), so exporting never widens who can read the data.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::manifest::{
    self, ArchivedFile, Contents, HashingReader, Manifest, TableTotals, TimeRange,
};
use super::{compact, open_data_file, ARCHIVE_EXT};
use crate::files::destination::{Destination, Kind, Pending};
use crate::store::catalog::{DataFile, FileFormat, Window};
use crate::store::timefmt;

/// The archive being written: a temporary file next to the target,
/// renamed into place only when complete (or the device or FIFO named).
pub struct Archive {
    pending: Pending,
    /// Where compaction keeps its temporary files.
    scratch_dir: PathBuf,
    top: String,
    builder: tar::Builder<zstd::stream::write::Encoder<'static, BufWriter<File>>>,
    /// Mode the archive gets: 0644, less what a source file withholds.
    mode: u32,
    progress: Progress,
}

impl Archive {
    pub fn create(destination: &Destination, progress: Progress) -> Result<Archive> {
        let target = destination.path();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (file, pending) = destination.open()?;
        let scratch_dir = match destination.kind() {
            Kind::Stream => std::env::temp_dir(),
            Kind::New | Kind::Replace => target.parent().unwrap_or(Path::new("/")).to_path_buf(),
        };
        // The content is mostly compressed already: the fastest level.
        let encoder = zstd::stream::write::Encoder::new(BufWriter::with_capacity(1 << 20, file), 1)
            .context("cannot start zstd")?;
        let mut builder = tar::Builder::new(encoder);
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(Archive {
            pending,
            scratch_dir,
            top: name.trim_end_matches(ARCHIVE_EXT).to_string(),
            builder,
            mode: 0o644,
            progress,
        })
    }

    /// Add `size` bytes of `reader` as `path` (below the top directory);
    /// returns the SHA-256 of what was added.
    fn add(&mut self, path: &str, reader: impl Read, size: u64, mtime: u64) -> Result<String> {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        let mut hashing = HashingReader::new(reader.take(size));
        let full = format!("{}/{path}", self.top);
        self.builder
            .append_data(&mut header, &full, &mut hashing)
            .with_context(|| format!("cannot write {path} into the archive"))?;
        if hashing.bytes != size {
            bail!("{path} changed size while it was archived");
        }
        Ok(hashing.digest())
    }

    /// Narrow the archive's mode to what `meta` allows others.
    fn restrict_to(&mut self, meta: &std::fs::Metadata) {
        for bit in [0o040, 0o004] {
            if meta.mode() & bit == 0 {
                self.mode &= !bit;
            }
        }
    }

    /// `--format copy`: every selected file, byte for byte.
    pub fn copy_files(
        &mut self,
        selected: &[(DataFile, Contents)],
        window: &Window,
    ) -> Result<Manifest> {
        self.progress.start(
            "archiving",
            selected.iter().map(|(f, _)| f.size).sum(),
            selected.len(),
        );
        let mut files = Vec::new();
        for (file, contents) in selected {
            let name = file.relative.display().to_string();
            let handle = open_data_file(&file.path, &name)?;
            let meta = handle
                .metadata()
                .with_context(|| format!("cannot stat {name}"))?;
            if meta.len() != file.size {
                bail!("{name} changed while it was exported");
            }
            self.restrict_to(&meta);
            let sha256 = self.add(&name, handle, meta.len(), meta.mtime().max(0) as u64)?;
            let mut entry = archived(
                &name,
                &file.table,
                file.format,
                contents,
                meta.len(),
                sha256,
                Vec::new(),
            );
            entry.in_progress = file.in_progress;
            files.push(entry);
            self.progress.advance(file.size);
        }
        self.progress.finish();
        Ok(self.manifest(selected, files, window, "copy"))
    }

    /// `--format parquet`: one Parquet file per table and host.
    pub fn compact_files(
        &mut self,
        selected: &[(DataFile, Contents)],
        window: &Window,
    ) -> Result<Manifest> {
        self.progress.start(
            "archiving",
            selected.iter().map(|(f, _)| f.size).sum(),
            selected.len(),
        );
        let mut groups: BTreeMap<(&str, &str), Vec<&(DataFile, Contents)>> = BTreeMap::new();
        for entry in selected {
            groups
                .entry((entry.0.table.as_str(), entry.0.host.as_str()))
                .or_default()
                .push(entry);
        }
        let scratch_dir = self.scratch_dir.clone();
        let mut files = Vec::new();
        for ((table, host), group) in groups {
            let sources: Vec<DataFile> = group.iter().map(|(f, _)| f.clone()).collect();
            for (file, _) in &group {
                let meta = std::fs::metadata(&file.path)
                    .with_context(|| format!("cannot stat {}", file.relative.display()))?;
                self.restrict_to(&meta);
            }
            // Name and partition of the first period, so the agent's globs
            // (samples/*/*/*.parquet) find it.
            let first = &sources[0];
            let partition = first.relative.parent().unwrap_or(Path::new(table));
            let name = format!("{}/{}.parquet", partition.display(), first.stem);
            let out = anonymous_file(&scratch_dir)?;
            let metadata = compacted_metadata(host, &group);
            let progress = &mut self.progress;
            let (contents, mut out) =
                compact::compact(table, &sources, out, &metadata, &mut |f| {
                    progress.advance(f.size)
                })?;
            let size = out
                .seek(SeekFrom::End(0))
                .context("cannot size the compacted file")?;
            out.seek(SeekFrom::Start(0))
                .context("cannot rewind the compacted file")?;
            let mtime = (timefmt::unix_micros_now() / 1_000_000).max(0) as u64;
            let sha256 = self.add(&name, out, size, mtime)?;
            let from: Vec<String> = sources
                .iter()
                .map(|f| f.relative.display().to_string())
                .collect();
            let mut entry = archived(
                &name,
                table,
                FileFormat::Parquet,
                &contents,
                size,
                sha256,
                from,
            );
            entry.in_progress = sources.iter().any(|f| f.in_progress);
            files.push(entry);
        }
        self.progress.finish();
        Ok(self.manifest(selected, files, window, "parquet"))
    }

    fn manifest(
        &self,
        selected: &[(DataFile, Contents)],
        files: Vec<ArchivedFile>,
        window: &Window,
        format: &str,
    ) -> Manifest {
        let mut all = Contents::default();
        for (_, contents) in selected {
            all.merge(contents);
        }
        let mut tables: BTreeMap<String, TableTotals> = crate::store::layout::TABLES
            .iter()
            .map(|t| (t.to_string(), TableTotals::default()))
            .collect();
        for file in &files {
            let totals = tables.entry(file.table.clone()).or_default();
            totals.rows += file.rows;
            totals.files += 1;
            totals.bytes += file.bytes;
        }
        let hosts: BTreeSet<String> = selected.iter().map(|(f, _)| f.host.clone()).collect();
        let uname = rustix::system::uname();
        Manifest {
            taskscope_export: manifest::MANIFEST_VERSION,
            created: manifest::timestamp(timefmt::unix_micros_now()),
            host: crate::store::layout::host_name(),
            kernel: uname.release().to_string_lossy().into_owned(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            agent_commit: env!("TASKSCOPE_GIT_COMMIT").to_string(),
            window: TimeRange::of(window.from_us, window.to_us),
            data: all
                .first_us
                .zip(all.last_us)
                .map(|(f, l)| TimeRange::of(f, l)),
            hosts: hosts.into_iter().collect(),
            frequency_hz: manifest::frequencies(&all.weights),
            format: format.to_string(),
            tables,
            partial: files.iter().any(|f| f.in_progress),
            files,
            skipped: Vec::new(),
        }
    }

    /// Add the manifest, finish, and move the archive into place.
    pub fn commit(mut self, manifest: &Manifest) -> Result<()> {
        let json =
            serde_json::to_string_pretty(manifest).context("cannot write the manifest")? + "\n";
        let mtime = (timefmt::unix_micros_now() / 1_000_000).max(0) as u64;
        self.add(
            manifest::MANIFEST_NAME,
            json.as_bytes(),
            json.len() as u64,
            mtime,
        )?;
        let Archive {
            pending,
            builder,
            mode,
            ..
        } = self;
        let encoder = builder.into_inner().context("cannot finish the archive")?;
        let buffered = encoder
            .finish()
            .context("cannot finish the archive's compression")?;
        let file = buffered
            .into_inner()
            .map_err(|err| err.into_error())
            .context("cannot write the archive")?;
        pending.commit(file, mode)
    }
}

fn archived(
    path: &str,
    table: &str,
    format: FileFormat,
    contents: &Contents,
    bytes: u64,
    sha256: String,
    sources: Vec<String>,
) -> ArchivedFile {
    ArchivedFile {
        path: path.to_string(),
        table: table.to_string(),
        format: match format {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
        .to_string(),
        rows: contents.rows,
        bytes,
        sha256,
        first_ts: contents.first_us.map(manifest::timestamp),
        last_ts: contents.last_us.map(manifest::timestamp),
        sources,
        in_progress: false,
    }
}

/// Parquet key/value metadata of a compacted file: the sources' own
/// metadata when they have it, else what export knows.
fn compacted_metadata(host: &str, group: &[&(DataFile, Contents)]) -> Vec<(String, String)> {
    let mut metadata: BTreeMap<String, String> = group
        .iter()
        .find(|(_, c)| !c.metadata.is_empty())
        .map(|(_, c)| c.metadata.iter().cloned().collect())
        .unwrap_or_default();
    metadata.insert("host".into(), host.to_string());
    let mut weights = BTreeSet::new();
    for (_, contents) in group {
        weights.extend(contents.weights.iter().copied());
    }
    if weights.len() == 1 {
        let weight = weights.into_iter().next().unwrap_or(0);
        metadata.insert("weight_us".into(), weight.to_string());
        if weight > 0 {
            metadata.insert("frequency_hz".into(), (1_000_000 / weight).to_string());
        }
    }
    metadata.insert("compacted_from_files".into(), group.len().to_string());
    metadata
        .entry("taskscope_version".into())
        .or_insert_with(|| env!("CARGO_PKG_VERSION").to_string());
    metadata.into_iter().collect()
}

/// An unnamed file in `dir` (O_TMPFILE): gone when closed, whatever happens.
fn anonymous_file(dir: &Path) -> Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    Ok(File::from(fd))
}

/// A one-line progress bar on stderr when it is a terminal; silent
/// otherwise.
pub struct Progress {
    enabled: bool,
    label: &'static str,
    total_bytes: u64,
    done_bytes: u64,
    total_files: usize,
    done_files: usize,
    drawn: Option<Instant>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            label: "",
            total_bytes: 0,
            done_bytes: 0,
            total_files: 0,
            done_files: 0,
            drawn: None,
        }
    }

    pub fn start(&mut self, label: &'static str, total_bytes: u64, total_files: usize) {
        self.label = label;
        self.total_bytes = total_bytes;
        self.total_files = total_files;
        self.done_bytes = 0;
        self.done_files = 0;
        self.draw(true);
    }

    pub fn advance(&mut self, bytes: u64) {
        self.done_bytes += bytes;
        self.done_files += 1;
        self.draw(false);
    }

    fn draw(&mut self, force: bool) {
        if !self.enabled {
            return;
        }
        if !force
            && self
                .drawn
                .is_some_and(|at| at.elapsed() < Duration::from_millis(100))
            && self.done_files < self.total_files
        {
            return;
        }
        let size = |bytes: u64| {
            if bytes < 1 << 20 {
                format!("{:.0} KiB", bytes as f64 / 1024.0)
            } else {
                format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
            }
        };
        let width = 30usize;
        let filled = (self.done_bytes * width as u64)
            .checked_div(self.total_bytes)
            .unwrap_or(width as u64) as usize;
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[K{:<9} [{}{}] {}/{} files, {} of {}",
            self.label,
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            self.done_files,
            self.total_files,
            size(self.done_bytes),
            size(self.total_bytes)
        );
        self.drawn = Some(Instant::now());
    }

    fn finish(&mut self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_that_is_not_committed_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.tar.zst");
        let destination = Destination::check(&target, false).unwrap();
        let mut archive = Archive::create(&destination, Progress::new()).unwrap();
        archive.add("a.txt", &b"abc"[..], 3, 0).unwrap();
        drop(archive);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(!target.exists());
    }
}
