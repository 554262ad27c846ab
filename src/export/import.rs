//! `taskscope import`: extract an export archive into a directory and
//! check every file against the manifest's size and SHA-256.
//!
//! Extraction goes into a fresh sibling directory that is renamed to the
//! destination only when every check passed, so a destination either
//! holds a verified archive or nothing. Only regular files and
//! directories below the archive's one top directory are accepted: no
//! absolute paths, no `..`, no links or devices, no file the manifest does
//! not list.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};

use super::manifest::{self, HashingReader, Manifest};
use super::ARCHIVE_EXT;
use crate::cli_admin::ImportArgs;

/// Largest manifest.json read into memory.
const MANIFEST_LIMIT: u64 = 256 << 20;

/// `taskscope import`.
pub fn import(args: &ImportArgs) -> Result<ExitCode> {
    let archive = &args.archive;
    let destination = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            let name = archive.to_string_lossy();
            match name.strip_suffix(ARCHIVE_EXT) {
                Some(stem) if !stem.is_empty() => PathBuf::from(stem),
                _ => {
                    eprintln!(
                        "taskscope: error: {} does not end in {ARCHIVE_EXT}; say where to extract it with --dir",
                        archive.display()
                    );
                    return Ok(ExitCode::from(crate::EXIT_USAGE));
                }
            }
        }
    };
    let manifest = extract_verified(archive, &destination)?;
    print!("{}", summary(archive, &destination, &manifest));
    Ok(ExitCode::SUCCESS)
}

/// Extract `archive` into `destination` (missing or empty) and verify it.
pub fn extract_verified(archive: &Path, destination: &Path) -> Result<Manifest> {
    match std::fs::read_dir(destination) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; import into a new directory",
                    destination.display()
                );
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("cannot use {}", destination.display()))
        }
    }
    let name = destination
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a directory name", destination.display()))?;
    let staging = destination.with_file_name(format!(
        ".{}.import-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::create_dir(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let result = extract(archive, &staging).and_then(|(manifest, found)| {
        verify(&manifest, &found)?;
        Ok(manifest)
    });
    match result {
        Ok(manifest) => {
            std::fs::rename(&staging, destination).with_context(|| {
                format!(
                    "cannot move {} to {}",
                    staging.display(),
                    destination.display()
                )
            })?;
            Ok(manifest)
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(err.context(format!("{} was not imported", archive.display())))
        }
    }
}

/// What was extracted: path below the top directory → (bytes, SHA-256).
type Found = BTreeMap<String, (u64, String)>;

fn extract(archive: &Path, into: &Path) -> Result<(Manifest, Found)> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let decoder = zstd::stream::read::Decoder::new(file)
        .with_context(|| format!("{} is not zstd-compressed", archive.display()))?;
    let mut tar = tar::Archive::new(decoder);
    let mut top: Option<String> = None;
    let mut found = Found::new();
    let mut manifest_text = None;
    let entries = tar
        .entries()
        .with_context(|| format!("{} is not a tar archive", archive.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{} is damaged", archive.display()))?;
        let path = entry
            .path()
            .context("an entry has an unreadable name")?
            .into_owned();
        let kind = entry.header().entry_type();
        let plain = path.components().any(|c| matches!(c, Component::Normal(_)));
        if kind.is_dir() && !plain {
            // "./" of an archive re-made with `tar -C dir .`.
            continue;
        }
        let (first, rest) = split_top(&path)?;
        match &top {
            None => top = Some(first.clone()),
            Some(top) if *top != first => {
                bail!(
                    "entry {} is outside the archive's top directory {top}",
                    path.display()
                )
            }
            Some(_) => {}
        }
        if kind.is_dir() {
            if let Some(rest) = rest {
                std::fs::create_dir_all(into.join(rest))
                    .with_context(|| format!("cannot create {}", path.display()))?;
            }
            continue;
        }
        if !kind.is_file() {
            bail!(
                "entry {} is a {kind:?}, not a file; refusing it",
                path.display()
            );
        }
        let Some(rest) = rest else {
            bail!(
                "entry {} is a file where the top directory should be",
                path.display()
            );
        };
        let target = into.join(&rest);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        let key = rest.to_string_lossy().into_owned();
        if key == manifest::MANIFEST_NAME {
            let mut text = String::new();
            (&mut entry)
                .take(MANIFEST_LIMIT)
                .read_to_string(&mut text)
                .context("manifest.json is not text")?;
            std::io::Write::write_all(&mut out, text.as_bytes())
                .with_context(|| format!("cannot write {}", target.display()))?;
            manifest_text = Some(text);
            continue;
        }
        let mut hashing = HashingReader::new(&mut entry);
        std::io::copy(&mut hashing, &mut out)
            .with_context(|| format!("cannot extract {}", path.display()))?;
        let bytes = hashing.bytes;
        found.insert(key, (bytes, hashing.digest()));
    }
    let text = manifest_text.ok_or_else(|| anyhow!("the archive has no manifest.json"))?;
    Ok((manifest::parse(&text)?, found))
}

/// `top/rest…` of an archive path: only plain components are accepted.
fn split_top(path: &Path) -> Result<(String, Option<PathBuf>)> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_owned()),
            Component::CurDir => {}
            _ => bail!(
                "entry {} escapes the archive's directory; refusing it",
                path.display()
            ),
        }
    }
    let Some((first, rest)) = parts.split_first() else {
        bail!("an entry has an empty name");
    };
    let rest: PathBuf = rest.iter().collect();
    Ok((
        first.to_string_lossy().into_owned(),
        (!rest.as_os_str().is_empty()).then_some(rest),
    ))
}

/// Every file of the manifest, and nothing else, with its size and hash.
fn verify(manifest: &Manifest, found: &Found) -> Result<()> {
    for file in &manifest.files {
        let Some((bytes, sha256)) = found.get(&file.path) else {
            bail!("{} is in the manifest but not in the archive", file.path);
        };
        if *bytes != file.bytes {
            bail!(
                "{}: {bytes} bytes, the manifest says {}",
                file.path,
                file.bytes
            );
        }
        if *sha256 != file.sha256 {
            bail!(
                "{}: checksum {sha256} does not match the manifest's {}",
                file.path,
                file.sha256
            );
        }
    }
    if let Some(extra) = found
        .keys()
        .find(|path| !manifest.files.iter().any(|f| &f.path == *path))
    {
        bail!("{extra} is in the archive but not in its manifest");
    }
    Ok(())
}

fn summary(archive: &Path, destination: &Path, manifest: &Manifest) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "imported {} into {}: {} files, sizes and SHA-256 checksums match the manifest\n",
        archive.display(),
        destination.display(),
        manifest.files.len()
    );
    for (table, totals) in &manifest.tables {
        let _ = writeln!(
            out,
            "  {table:<10} {:>12} rows in {} files",
            totals.rows, totals.files
        );
    }
    let _ = writeln!(
        out,
        "window {} to {} (UTC), hosts {}, {} Hz",
        manifest.window.from,
        manifest.window.to,
        manifest.hosts.join(", "),
        manifest
            .frequency_hz
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("/")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_stay_inside() {
        let (top, rest) = split_top(Path::new("a/samples/x.csv.zst")).unwrap();
        assert_eq!(
            (top.as_str(), rest),
            ("a", Some(PathBuf::from("samples/x.csv.zst")))
        );
        assert_eq!(split_top(Path::new("a/")).unwrap().1, None);
        assert!(split_top(Path::new("/etc/passwd")).is_err());
        assert!(split_top(Path::new("a/../../x")).is_err());
    }

    #[test]
    fn links_and_strays_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("bad.tar.zst");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "bad/samples", "/etc")
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        std::fs::write(&archive, zstd::encode_all(&bytes[..], 1).unwrap()).unwrap();
        let err = extract_verified(&archive, &dir.path().join("out")).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a file; refusing it"),
            "{err:#}"
        );
        assert!(!dir.path().join("out").exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the staging directory is removed");
    }
}
