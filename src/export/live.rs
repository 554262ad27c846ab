//! Periods still being written, archived as finished files.
//!
//! A journal cannot be copied byte for byte: it ends in an unfinished zstd
//! block. So export decodes it up to its last complete record (and, for
//! tables with `ts`, its period's last complete tick: `catalog`), writes
//! those rows as a finished CSV.zst in a private staging directory next to
//! the archive, and archives that under the name the period will be
//! published with. The manifest marks such files `in_progress` and the
//! archive `partial`. A journal published meanwhile is archived from its
//! published file, whole.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::store::catalog::{self, DataFile, Opened};
use crate::store::csv::push_field;

/// A private directory (0700) for the finished copies of journals,
/// removed with everything in it when dropped.
pub struct Staging {
    dir: PathBuf,
    files: usize,
}

impl Staging {
    /// Create it next to `target` (the archive).
    pub fn new(target: &Path) -> Result<Staging> {
        let dir = crate::files::private_dir_next_to(target, "journals")?;
        Ok(Staging { dir, files: 0 })
    }

    /// A finished file with the complete rows of journal `file`: the same
    /// file description (`in_progress` kept), its path in the staging
    /// directory; None when nothing of it is complete yet. If the period
    /// was published meanwhile, its published file instead.
    pub fn finish(&mut self, file: &DataFile) -> Result<Option<DataFile>> {
        let name = file.relative.display().to_string();
        let (handle, opened) =
            catalog::open(file).with_context(|| format!("cannot read {}", file.path.display()))?;
        if let Opened::Published(format) = opened {
            let Some((path, _)) = catalog::published_paths(file)
                .into_iter()
                .find(|(path, f)| *f == format && path.exists())
            else {
                anyhow::bail!("{name} moved while it was exported; export again");
            };
            let relative = file
                .relative
                .with_file_name(path.file_name().unwrap_or_default());
            let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
            return Ok(Some(DataFile {
                path,
                relative,
                format,
                size,
                in_progress: false,
                until_us: None,
                ..file.clone()
            }));
        }
        let mode = handle
            .metadata()
            .map(|m| m.mode() & 0o644)
            .with_context(|| format!("cannot stat {}", file.path.display()))?;
        self.files += 1;
        let path = self
            .dir
            .join(format!("{}-{}.{}", self.files, file.table, "csv.zst"));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let written = write_complete_rows(handle, out, file.until_us)
            .with_context(|| format!("cannot copy the rows of {}", file.path.display()))?;
        if !written {
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        // The archive's mode follows its files': keep the journal's.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        let size = std::fs::metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        Ok(Some(DataFile {
            path,
            size,
            ..file.clone()
        }))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The complete records of `journal` (rows after `until_us` by their `ts`
/// left out) as a finished zstd-compressed CSV in `out`; false when the
/// journal has not even a complete header yet.
fn write_complete_rows(journal: File, out: File, until_us: Option<i64>) -> Result<bool> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(catalog::journal_reader(journal)?);
    let mut encoder = zstd::stream::write::Encoder::new(std::io::BufWriter::new(out), 1)?;
    encoder.include_checksum(true)?;
    let mut line = Vec::new();
    let mut put = |record: &csv::ByteRecord, encoder: &mut dyn Write| -> std::io::Result<()> {
        line.clear();
        for (i, field) in record.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            push_field(&mut line, field);
        }
        line.push(b'\n');
        encoder.write_all(&line)
    };
    let headers = reader.byte_headers()?.clone();
    if headers.is_empty() {
        return Ok(false);
    }
    put(&headers, &mut encoder)?;
    let ts = headers.iter().position(|h| h == b"ts");
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record)? {
        let late = match (until_us, ts.and_then(|i| record.get(i))) {
            (Some(until), Some(field)) => std::str::from_utf8(field)
                .ok()
                .and_then(crate::store::timefmt::parse_timestamp_micros)
                .is_none_or(|t| t > until),
            _ => false,
        };
        if !late {
            put(&record, &mut encoder)?;
        }
    }
    let file = encoder.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(true)
}
