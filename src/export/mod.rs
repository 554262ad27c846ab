//! `taskscope export`: one self-contained archive of every table for a
//! time window, for post-mortems on another machine; `taskscope import`
//! (in `import`) reads it back.
//!
//! The archive is a zstd-compressed tar with one top directory named like
//! the archive. Below it, the agent's own layout (`samples/date=…/hour=…/
//! <host>-<stamp>.csv.zst`, every table the agent writes, taken from
//! `store::layout::TABLES`) and `manifest.json` (see `manifest`). So the README's
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

mod archive;
mod compact;
mod import;
pub mod ledger;
mod live;
pub mod manifest;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tracing::warn;

use archive::{Archive, Progress};
pub use import::import;
use ledger::Ledger;
use manifest::Contents;

use crate::error::Usage;
use crate::files::destination::{Destination, Kind};
use crate::store::catalog::{Catalog, DataFile, Prefer, Problem, Window};
use crate::store::timefmt::Civil;

/// Archives end in this.
pub const ARCHIVE_EXT: &str = ".tar.zst";

/// What `taskscope export` is asked (made from its flags by `cli::admin`).
#[derive(Debug, Clone)]
pub struct Request {
    /// The data directory (the agent's --output-dir).
    pub dir: PathBuf,
    /// The window, resolved against the clock at `now_us`.
    pub window: Window,
    pub now_us: i64,
    /// The archive, or a directory to name it in, or a device or FIFO.
    pub output: PathBuf,
    pub format: Format,
    /// Replace an existing archive.
    pub force: bool,
    /// Delete this host's older exports in the archive's directory.
    pub keep_for: Option<Duration>,
}

/// What the archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The period files as the agent wrote them, byte for byte.
    Copy,
    /// One Parquet file per table and host, compacted from the periods.
    Parquet,
}

/// `taskscope export`: write the archive, print its path; the files that
/// could not be read and were left out are returned.
pub fn export(args: &Request) -> Result<Vec<Problem>> {
    let (path, problems) = run(args)?;
    println!("{}", path.display());
    Ok(problems)
}

fn run(args: &Request) -> Result<(PathBuf, Vec<Problem>)> {
    let (window, now_us) = (args.window, args.now_us);
    let data_dir = absolute(&args.dir)?;
    match std::fs::metadata(&data_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("{} is not a directory", data_dir.display()),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot read data directory {}", data_dir.display()))
        }
    }
    let (destination, named_here) = archive_destination(&args.output, &window, args.force)?;
    if args.keep_for.is_some() && destination.kind() == Kind::Stream {
        return Err(Usage(format!(
            "--keep-for deletes old archives beside the new one; -o {} is a device or FIFO",
            destination.path().display()
        ))
        .into());
    }
    let target = destination.path().to_path_buf();

    let mut progress = Progress::new();
    let mut staging = live::Staging::new(&target)?;
    let (selected, problems) = select(&data_dir, &window, &mut progress, &mut staging)?;
    if selected.is_empty() {
        warn!(
            "no data files in {} overlap the window; the archive holds only its manifest",
            data_dir.display()
        );
    }
    let mut archive = Archive::create(&destination, progress)?;
    let mut manifest = match args.format {
        Format::Copy => archive.copy_files(&selected, &window)?,
        Format::Parquet => archive.compact_files(&selected, &window)?,
    };
    manifest.skipped = problems
        .iter()
        .map(|p| manifest::SkippedFile {
            path: p.path.display().to_string(),
            reason: p.what.clone(),
        })
        .collect();
    archive.commit(&manifest)?;
    drop(staging);
    if named_here || args.keep_for.is_some() {
        retain(&target, named_here, window.to_us, args.keep_for, now_us)?;
    }
    Ok((target, problems))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}

/// `-o`: a directory to name the archive in (not through a symlink), a
/// new `.tar.zst` file (an existing one with --force), or a device or
/// FIFO to write to as it is.
/// Also whether export named the archive (`-o DIR`).
fn archive_destination(output: &Path, window: &Window, force: bool) -> Result<(Destination, bool)> {
    let output = absolute(output)?;
    let meta = std::fs::symlink_metadata(&output).ok();
    let file_type = meta.as_ref().map(|m| m.file_type());
    if file_type.is_some_and(|t| t.is_dir()) {
        let path = output.join(archive_name(&crate::store::layout::host_name(), window));
        return Ok((Destination::check(&path, force)?, true));
    }
    if file_type.is_some_and(|t| !t.is_file()) {
        // A device or FIFO is written as it is; anything else is refused.
        return Ok((Destination::check(&output, force)?, false));
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
    Ok((Destination::check(&output, force)?, false))
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

/// Files to archive, with what they hold.
type Selected = Vec<(DataFile, Contents)>;

/// The files to archive with what they hold: the catalog's candidates
/// (one format per period, Parquet preferred) of every table, the periods
/// being written as finished copies in `staging`, without the periods
/// whose rows turn out not to reach into the window; and the files that
/// could not be read, left out.
fn select(
    dir: &Path,
    window: &Window,
    progress: &mut Progress,
    staging: &mut live::Staging,
) -> Result<(Selected, Vec<Problem>)> {
    let mut catalog = Catalog::open(dir)?;
    let mut files = Vec::new();
    for table in crate::store::layout::TABLES {
        files.extend(catalog.select(table, window, Prefer::Parquet));
    }
    let mut problems = std::mem::take(&mut catalog.problems);
    progress.start("reading", files.iter().map(|f| f.size).sum(), files.len());
    let mut candidates = Vec::new();
    for file in files {
        let size = file.size;
        let name = file.relative.display().to_string();
        let read = |file: &DataFile| -> Result<Contents> {
            let mut handle = open_data_file(&file.path, &name)?;
            manifest::inspect(&mut handle, file.format, &name)
        };
        let finished = if file.in_progress {
            staging.finish(&file)
        } else {
            Ok(Some(file.clone()))
        };
        match finished.and_then(|f| f.map(|f| read(&f).map(|c| (f, c))).transpose()) {
            Ok(Some(candidate)) => candidates.push(candidate),
            Ok(None) => {}
            Err(err) => problems.push(Problem::new(
                &file.path,
                format!("{err:#}; left out of the archive"),
            )),
        }
        progress.advance(size);
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
    let kept = candidates
        .into_iter()
        .filter(|(file, _)| keep.contains(&file.stem))
        .collect();
    Ok((kept, problems))
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

/// Record an archive export named in its directory's ledger, then with
/// `--keep-for` delete the recorded archives whose window ended longer ago
/// than that (see `ledger`).
fn retain(
    target: &Path,
    record: bool,
    end_us: i64,
    keep_for: Option<Duration>,
    now_us: i64,
) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut ledger = match Ledger::open(dir, &crate::store::layout::host_name()) {
        Ok(ledger) => ledger,
        Err(err) if keep_for.is_none() => {
            warn!("{err:#}; --keep-for will not delete {}", target.display());
            return Ok(());
        }
        Err(err) => return Err(err.context("--keep-for deleted nothing")),
    };
    if record {
        ledger.record(&name, end_us)?;
    }
    if let Some(keep_for) = keep_for {
        ledger.prune(now_us - keep_for.as_micros() as i64, &name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;
    const NOV22: i64 = 1_795_305_600_000_000; // 2026-11-22 00:00 UTC

    #[test]
    fn archive_names() {
        let window = Window {
            from_us: NOV22 - DAY,
            to_us: NOV22,
        };
        let name = archive_name("web-1", &window);
        assert_eq!(name, "web-1-20261121T000000Z-20261122T000000Z.tar.zst");
    }
}
