//! `taskscope export`: one self-contained archive of every table for a
//! time window, for post-mortems on another machine; `taskscope import`
//! (in `import`) reads it back.
//!
//! The archive is a zstd-compressed tar with one top directory named like
//! the archive. Below it, the agent's own layout (`samples/date=…/hour=…/
//! <host>-<stamp>.csv.zst`, every table the agent writes, taken from
//! `output::TABLES`) and `manifest.json` (see `manifest`). So the README's
//! DuckDB and awk commands work on an imported archive as they do on the
//! agent's directory.
//!
//! The decision a reader must know: an archive holds whole *periods* —
//! every file whose rows reach into the window, found by the catalog and
//! confirmed by reading the file — never a cut of one. A period's stacks
//! file then still defines every stack its samples use, files keep their
//! names, and `--format copy` archives them byte for byte (the manifest's
//! checksums are the agent's files' checksums). Queries filter `ts` for
//! the exact window. Export needs nothing but read access: any user who
//! can read the data can export it, and the archive is made no more
//! readable than the files it holds.

mod compact;
mod import;
pub mod manifest;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tracing::{info, warn};

pub use import::import;
use manifest::{ArchivedFile, Contents, HashingReader, Manifest, TableTotals, TimeRange};

use crate::catalog::{self, DataFile, FileFormat, Prefer, Window};
use crate::cli_admin::{ExportArgs, ExportFormat};
use crate::timefmt::{self, Civil};

/// Archives end in this.
pub const ARCHIVE_EXT: &str = ".tar.zst";
const DAY_US: i64 = 86_400_000_000;

/// A usage error (exit 2) as opposed to a failure (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

/// `taskscope export`.
pub fn export(args: &ExportArgs) -> Result<ExitCode> {
    match run(args) {
        Ok(path) => {
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) if err.is::<Usage>() => {
            eprintln!("taskscope: error: {err:#}");
            Ok(ExitCode::from(crate::EXIT_USAGE))
        }
        Err(err) => Err(err),
    }
}

fn run(args: &ExportArgs) -> Result<PathBuf> {
    let now_us = timefmt::unix_micros_now();
    let window = window(args, now_us)?;
    let data_dir = absolute(&args.dir)?;
    match std::fs::metadata(&data_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("{} is not a directory", data_dir.display()),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot read data directory {}", data_dir.display()))
        }
    }
    let target = archive_path(&args.output, &window)?;
    if !args.force && std::fs::symlink_metadata(&target).is_ok() {
        bail!(
            "{} exists; give another -o or --force to replace it",
            target.display()
        );
    }

    let mut progress = Progress::new();
    let selected = select(&data_dir, &window, &mut progress)?;
    if selected.is_empty() {
        warn!(
            "no data files in {} overlap the window; the archive holds only its manifest",
            data_dir.display()
        );
    }
    let mut archive = Archive::create(&target, args.force, progress)?;
    let manifest = match args.format {
        ExportFormat::Copy => archive.copy_files(&selected, &window)?,
        ExportFormat::Parquet => archive.compact_files(&selected, &window)?,
    };
    archive.commit(&manifest)?;
    if let Some(keep_for) = args.keep_for {
        prune(&target, keep_for, now_us)?;
    }
    Ok(target)
}

/// The window asked for, `[from, to)` in microseconds.
fn window(args: &ExportArgs, now_us: i64) -> Result<Window> {
    let window = if let Some(from_us) = args.from {
        Window {
            from_us,
            to_us: args.to.unwrap_or(now_us),
        }
    } else if let Some(since) = args.since {
        Window {
            from_us: now_us - since.as_micros() as i64,
            to_us: now_us,
        }
    } else if let Some(day) = &args.day {
        let today = now_us.div_euclid(DAY_US) * DAY_US;
        let start = match day.as_str() {
            "today" => today,
            "yesterday" => today - DAY_US,
            date => crate::cli_admin::parse_time(date)
                .ok()
                .filter(|us| us.rem_euclid(DAY_US) == 0 && date.trim().len() == 10)
                .ok_or_else(|| {
                    Usage(format!(
                        "--day {date}: expected yesterday, today or YYYY-MM-DD"
                    ))
                })?,
        };
        Window {
            from_us: start,
            to_us: start + DAY_US,
        }
    } else {
        return Err(Usage("give the window: --from, --since or --day".into()).into());
    };
    if window.from_us >= window.to_us {
        return Err(Usage(format!(
            "the window is empty: --from {} is not before --to {}",
            manifest::timestamp(window.from_us),
            manifest::timestamp(window.to_us)
        ))
        .into());
    }
    Ok(window)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}

/// `-o`: a file, or a directory to name the archive in.
fn archive_path(output: &Path, window: &Window) -> Result<PathBuf> {
    let output = absolute(output)?;
    if output.is_dir() {
        return Ok(output.join(archive_name(&crate::config::host_name(), window)));
    }
    let name = output
        .file_name()
        .ok_or_else(|| Usage(format!("-o {}: not a file name", output.display())))?;
    if !name.to_string_lossy().ends_with(ARCHIVE_EXT) {
        return Err(Usage(format!(
            "-o {}: the archive's name must end in {ARCHIVE_EXT}",
            output.display()
        ))
        .into());
    }
    let parent = output.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        bail!(
            "cannot write {}: {} is not a directory",
            output.display(),
            parent.display()
        );
    }
    Ok(output)
}

/// `<host>-<from>-<to>.tar.zst`, both times `YYYYMMDDTHHMMSSZ`.
pub fn archive_name(host: &str, window: &Window) -> String {
    let stamp = |us: i64| Civil::from_unix(us.div_euclid(1_000_000)).compact();
    format!(
        "{host}-{}-{}{ARCHIVE_EXT}",
        stamp(window.from_us),
        stamp(window.to_us)
    )
}

/// The end of the window an archive named by [`archive_name`] covers.
pub fn archive_end(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(ARCHIVE_EXT)?;
    let (rest, to) = stem.rsplit_once('-')?;
    let (_, from) = rest.rsplit_once('-')?;
    timefmt::parse_compact(from)?;
    timefmt::parse_compact(to).map(|secs| secs * 1_000_000)
}

/// The files to archive with what they hold: the catalog's candidates
/// (one format per period, Parquet preferred) of every table, without the
/// periods whose rows turn out not to reach into the window.
fn select(
    dir: &Path,
    window: &Window,
    progress: &mut Progress,
) -> Result<Vec<(DataFile, Contents)>> {
    let mut files = Vec::new();
    for table in crate::output::TABLES {
        files.extend(catalog::select(dir, table, window, Prefer::Parquet)?);
    }
    progress.start("reading", files.iter().map(|f| f.size).sum(), files.len());
    let mut candidates = Vec::new();
    for file in files {
        let name = file.relative.display().to_string();
        let mut handle = open_data_file(&file.path, &name)?;
        let contents = manifest::inspect(&mut handle, file.format, &name)?;
        progress.advance(file.size);
        candidates.push((file, contents));
    }
    // A period is kept if any of its files has rows in the window, or if
    // none of them has timestamps to tell.
    let mut by_stem: BTreeMap<&str, Option<bool>> = BTreeMap::new();
    for (file, contents) in &candidates {
        let verdict = by_stem.entry(file.stem.as_str()).or_insert(None);
        if let (Some(first), Some(last)) = (contents.first_us, contents.last_us) {
            let inside = first < window.to_us && last >= window.from_us;
            *verdict = Some(verdict.unwrap_or(false) || inside);
        }
    }
    let keep: BTreeSet<String> = by_stem
        .into_iter()
        .filter(|(_, verdict)| verdict.unwrap_or(true))
        .map(|(stem, _)| stem.to_string())
        .collect();
    Ok(candidates
        .into_iter()
        .filter(|(file, _)| keep.contains(&file.stem))
        .collect())
}

fn open_data_file(path: &Path, name: &str) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| {
            format!("cannot open {name} (export needs read access to every file of the window)")
        })
}

/// The archive being written: a temporary file next to the target,
/// renamed into place only when complete.
struct Archive {
    target: PathBuf,
    temp: PathBuf,
    force: bool,
    top: String,
    builder: Option<tar::Builder<zstd::stream::write::Encoder<'static, BufWriter<File>>>>,
    /// Mode the archive gets: 0644, less what a source file withholds.
    mode: u32,
    progress: Progress,
}

impl Archive {
    fn create(target: &Path, force: bool, progress: Progress) -> Result<Archive> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = target.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        // The content is mostly compressed already: the fastest level.
        let encoder = zstd::stream::write::Encoder::new(BufWriter::with_capacity(1 << 20, file), 1)
            .context("cannot start zstd")?;
        let mut builder = tar::Builder::new(encoder);
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(Archive {
            target: target.to_path_buf(),
            temp,
            force,
            top: name.trim_end_matches(ARCHIVE_EXT).to_string(),
            builder: Some(builder),
            mode: 0o644,
            progress,
        })
    }

    fn builder(
        &mut self,
    ) -> &mut tar::Builder<zstd::stream::write::Encoder<'static, BufWriter<File>>> {
        self.builder.as_mut().expect("the archive is open")
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
        self.builder()
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
    fn copy_files(
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
            files.push(archived(
                &name,
                &file.table,
                file.format,
                contents,
                meta.len(),
                sha256,
                Vec::new(),
            ));
            self.progress.advance(file.size);
        }
        self.progress.finish();
        Ok(self.manifest(selected, files, window, "copy"))
    }

    /// `--format parquet`: one Parquet file per table and host.
    fn compact_files(
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
        let scratch_dir = self.temp.parent().unwrap_or(Path::new("/")).to_path_buf();
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
            files.push(archived(
                &name,
                table,
                FileFormat::Parquet,
                &contents,
                size,
                sha256,
                from,
            ));
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
        let mut tables: BTreeMap<String, TableTotals> = crate::output::TABLES
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
            host: crate::config::host_name(),
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
            files,
        }
    }

    /// Add the manifest, finish, and move the archive into place.
    fn commit(mut self, manifest: &Manifest) -> Result<()> {
        let json =
            serde_json::to_string_pretty(manifest).context("cannot write the manifest")? + "\n";
        let mtime = (timefmt::unix_micros_now() / 1_000_000).max(0) as u64;
        self.add(
            manifest::MANIFEST_NAME,
            json.as_bytes(),
            json.len() as u64,
            mtime,
        )?;
        let builder = self.builder.take().expect("the archive is open");
        let encoder = builder.into_inner().context("cannot finish the archive")?;
        let buffered = encoder
            .finish()
            .context("cannot finish the archive's compression")?;
        let file = buffered
            .into_inner()
            .map_err(|err| err.into_error())
            .context("cannot write the archive")?;
        let umask = current_umask();
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
            self.mode & !umask,
        ))
        .context("cannot set the archive's mode")?;
        file.sync_all()
            .context("cannot write the archive to disk")?;
        let cwd = rustix::fs::CWD;
        let flags = if self.force {
            rustix::fs::RenameFlags::empty()
        } else {
            rustix::fs::RenameFlags::NOREPLACE
        };
        rustix::fs::renameat_with(cwd, &self.temp, cwd, &self.target, flags).map_err(|err| {
            if err == rustix::io::Errno::EXIST {
                anyhow!(
                    "{} appeared while exporting; nothing replaced (use --force)",
                    self.target.display()
                )
            } else {
                anyhow!(
                    "cannot move the archive to {}: {err}",
                    self.target.display()
                )
            }
        })?;
        if let Some(parent) = self.target.parent() {
            if let Ok(dir) = File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        // Not committed (an error): leave nothing behind.
        if self.builder.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
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

fn current_umask() -> u32 {
    use rustix::fs::Mode;
    // Export is single-threaded here: read the umask by setting it back.
    let old = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
}

/// `--keep-for`: delete archives in the target's directory, named by
/// export, whose window ended more than `keep_for` before `now_us`.
fn prune(target: &Path, keep_for: Duration, now_us: i64) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("/"));
    let oldest = now_us - keep_for.as_micros() as i64;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path == target || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if archive_end(&name).is_some_and(|end| end < oldest) {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot delete {}", path.display()))?;
            info!(archive = %path.display(), "deleted: older than --keep-for");
        }
    }
    Ok(())
}

/// A one-line progress bar on stderr when it is a terminal; silent
/// otherwise.
struct Progress {
    enabled: bool,
    label: &'static str,
    total_bytes: u64,
    done_bytes: u64,
    total_files: usize,
    done_files: usize,
    drawn: Option<Instant>,
}

impl Progress {
    fn new() -> Progress {
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

    fn start(&mut self, label: &'static str, total_bytes: u64, total_files: usize) {
        self.label = label;
        self.total_bytes = total_bytes;
        self.total_files = total_files;
        self.done_bytes = 0;
        self.done_files = 0;
        self.draw(true);
    }

    fn advance(&mut self, bytes: u64) {
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

    const DAY: i64 = DAY_US;
    const NOV22: i64 = 1_795_305_600_000_000; // 2026-11-22 00:00 UTC

    fn args(extra: &[&str]) -> ExportArgs {
        use clap::Parser;
        let argv = ["taskscope", "export", "-o", "x.tar.zst"]
            .iter()
            .chain(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Export(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn windows() {
        let now = NOV22 + 13 * 3_600_000_000;
        let w = |extra: &[&str]| window(&args(extra), now).map(|w| (w.from_us, w.to_us));
        assert_eq!(w(&["--day", "yesterday"]).unwrap(), (NOV22 - DAY, NOV22));
        assert_eq!(w(&["--day", "today"]).unwrap(), (NOV22, NOV22 + DAY));
        assert_eq!(w(&["--day", "2026-11-22"]).unwrap(), (NOV22, NOV22 + DAY));
        assert_eq!(w(&["--since", "1h"]).unwrap(), (now - 3_600_000_000, now));
        assert_eq!(
            w(&["--from", "2026-11-22 12:00"]).unwrap(),
            (now - 3_600_000_000, now)
        );
        let err = w(&["--from", "2026-11-22 14:00"]).unwrap_err();
        assert!(
            err.is::<Usage>() && err.to_string().contains("window is empty"),
            "{err}"
        );
        assert!(w(&["--day", "2026-11-22 13:00"]).unwrap_err().is::<Usage>());
        assert!(w(&["--day", "monday"]).unwrap_err().is::<Usage>());
    }

    #[test]
    fn archive_names_round_trip() {
        let window = Window {
            from_us: NOV22 - DAY,
            to_us: NOV22,
        };
        let name = archive_name("web-1", &window);
        assert_eq!(name, "web-1-20261121T000000Z-20261122T000000Z.tar.zst");
        assert_eq!(archive_end(&name), Some(NOV22));
        assert_eq!(archive_end("notes.tar.zst"), None);
        assert_eq!(archive_end("web-1-20261121T000000Z.csv.zst"), None);
    }

    #[test]
    fn pruning_deletes_only_old_archives_it_named() {
        let dir = tempfile::tempdir().unwrap();
        let old = archive_name(
            "h",
            &Window {
                from_us: NOV22 - 40 * DAY,
                to_us: NOV22 - 39 * DAY,
            },
        );
        let recent = archive_name(
            "h",
            &Window {
                from_us: NOV22 - 2 * DAY,
                to_us: NOV22 - DAY,
            },
        );
        for name in [old.as_str(), recent.as_str(), "mine.tar.zst", "h-notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let target = dir.path().join(archive_name(
            "h",
            &Window {
                from_us: NOV22 - DAY,
                to_us: NOV22,
            },
        ));
        std::fs::write(&target, b"x").unwrap();
        prune(&target, Duration::from_secs(30 * 86_400), NOV22).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            recent,
            "mine.tar.zst".into(),
            "h-notes.txt".into(),
            target.file_name().unwrap().to_string_lossy().into_owned(),
        ];
        want.sort();
        assert_eq!(left, want);
    }
}
