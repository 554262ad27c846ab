//! `taskscope import`: extract an export archive into a directory and
//! check every file against the manifest's size and SHA-256.
//!
//! Extraction goes into a fresh, private sibling directory that is renamed
//! to the destination only when every check passed, so a destination
//! either holds a verified archive or nothing (`destination` decides what
//! `--dir` may be: missing or an empty directory, never a symlink). Only
//! regular files and directories below the archive's one top directory
//! are accepted: no absolute paths, no `..`, no links or devices, no file
//! the manifest does not list.
//!
//! The decision a reader must know: nothing is written before the whole
//! archive has been read once. The manifest is the archive's last entry,
//! so a first pass reads every entry's header (and the manifest) and
//! writes nothing: each file must be in the manifest with the size the
//! manifest gives, and all of them must fit in the free space of the
//! destination's file system. The second pass extracts, never more bytes
//! per entry than the manifest allows. A small archive that unpacks to
//! gigabytes is refused before a byte of it lands on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::manifest::{self, HashingReader, Manifest};
use crate::files::destination::DirDestination;

/// Largest manifest.json read into memory.
const MANIFEST_LIMIT: u64 = 256 << 20;

/// `taskscope import`: extract `archive` into `destination` (missing or
/// empty), verify it and print what it holds.
pub fn import(archive: &Path, destination: &Path) -> Result<()> {
    let manifest = extract_verified(archive, destination)?;
    print!("{}", summary(archive, destination, &manifest));
    Ok(())
}

/// Extract `archive` into `destination` (missing or empty) and verify it.
pub fn extract_verified(archive: &Path, destination: &Path) -> Result<Manifest> {
    let destination = DirDestination::check(destination)?;
    let fail = |err: anyhow::Error| err.context(format!("{} was not imported", archive.display()));
    let mut file =
        File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        bail!(
            "{} is not a regular file: import reads the archive twice (checks, then extracts); save it to a file first",
            archive.display()
        );
    }
    let space = free_space(destination.path())?;
    let plan = survey(&file, archive, space).map_err(fail)?;
    std::io::Seek::rewind(&mut file)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let staging = destination.staging()?;
    let result = extract(&file, archive, &staging, &plan).and_then(|found| {
        verify(&plan.manifest, &found)?;
        destination.commit(&staging, 0o755)
    });
    match result {
        Ok(()) => Ok(plan.manifest),
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(fail(err))
        }
    }
}

/// Room on the file system that will hold `destination`: bytes free to
/// unprivileged users, and the block size files are rounded up to.
#[derive(Debug, Clone, Copy)]
struct Space {
    free: u64,
    block: u64,
}

fn free_space(destination: &Path) -> Result<Space> {
    let parent = destination
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let st = rustix::fs::statvfs(parent)
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot tell the free space of {}", parent.display()))?;
    let block = st.f_frsize.max(512);
    Ok(Space {
        free: st.f_bavail.saturating_mul(block),
        block,
    })
}

impl Space {
    /// Bytes `size` takes on disk, with one block for its inode and
    /// directory entry.
    fn cost(&self, size: u64) -> u64 {
        size.div_ceil(self.block)
            .saturating_add(1)
            .saturating_mul(self.block)
    }

    fn check(&self, needed: u64) -> Result<()> {
        if needed > self.free {
            bail!(
                "extracting it needs {} and the destination's file system has {} free; \
                 nothing was written",
                human_bytes(needed),
                human_bytes(self.free)
            );
        }
        Ok(())
    }
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.0} KiB", b as f64 / 1024.0),
    }
}

/// What the first pass learnt: the manifest (and its text, written as it
/// was), and the top directory every entry is in.
struct Plan {
    manifest: Manifest,
    manifest_text: String,
    /// Bytes each file may have, by path below the top directory.
    allowed: BTreeMap<String, u64>,
    /// Directories the manifest's files need.
    directories: BTreeSet<PathBuf>,
}

/// One entry of the archive, checked: below the top directory, a file or
/// a directory.
enum Item {
    /// The `./` of an archive re-made with `tar -C dir .`.
    Skip,
    Directory(Option<PathBuf>),
    File {
        rest: PathBuf,
        key: String,
        size: u64,
    },
}

/// Reading entries the way both passes do. The tar crate's own handling
/// of GNU long names and PAX headers reads them whole into memory,
/// whatever size their header gives (a small archive could make import
/// allocate gigabytes), so entries are read raw and those headers here,
/// bounded: the name of the next entry is all they may carry.
#[derive(Default)]
struct Reader {
    top: Option<String>,
    /// The name a long-name or PAX header gave the next entry.
    next_name: Option<PathBuf>,
}

/// Largest long-name or PAX header accepted.
const EXTENSION_LIMIT: u64 = 64 << 10;

impl Reader {
    /// The next entry's meaning; `None` for a header of the next entry.
    fn item<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<Option<Item>> {
        let kind = entry.header().entry_type();
        let extension = kind.is_gnu_longname()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if extension {
            let size = entry
                .header()
                .size()
                .context("an entry has no readable size")?;
            if size > EXTENSION_LIMIT {
                bail!("an entry's {kind:?} header is {size} bytes long; refusing it");
            }
            let mut bytes = Vec::new();
            entry
                .take(size)
                .read_to_end(&mut bytes)
                .context("an entry's header is unreadable")?;
            if kind.is_gnu_longname() {
                while bytes.last() == Some(&0) {
                    bytes.pop();
                }
                self.next_name = Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)));
            } else if kind.is_pax_local_extensions() {
                for record in tar::PaxExtensions::new(&bytes) {
                    let record = record.context("an entry's PAX header is damaged")?;
                    match record.key_bytes() {
                        b"path" => {
                            self.next_name = Some(PathBuf::from(std::ffi::OsString::from_vec(
                                record.value_bytes().to_vec(),
                            )))
                        }
                        b"size" | b"linkpath" => bail!(
                            "an entry's PAX header sets {}; refusing it",
                            String::from_utf8_lossy(record.key_bytes())
                        ),
                        _ => {}
                    }
                }
            }
            return Ok(None);
        }
        let path = match self.next_name.take() {
            Some(path) => path,
            None => entry
                .path()
                .context("an entry has an unreadable name")?
                .into_owned(),
        };
        item(&path, entry.header(), &mut self.top).map(Some)
    }
}

fn item(path: &Path, header: &tar::Header, top: &mut Option<String>) -> Result<Item> {
    let kind = header.entry_type();
    let plain = path.components().any(|c| matches!(c, Component::Normal(_)));
    if kind.is_dir() && !plain {
        return Ok(Item::Skip);
    }
    let (first, rest) = split_top(path)?;
    match top {
        None => *top = Some(first),
        Some(top) if *top != first => bail!(
            "entry {} is outside the archive's top directory {top}",
            path.display()
        ),
        Some(_) => {}
    }
    if kind.is_dir() {
        return Ok(Item::Directory(rest));
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
    let size = header
        .size()
        .with_context(|| format!("entry {} has no readable size", path.display()))?;
    let key = rest.to_string_lossy().into_owned();
    Ok(Item::File { rest, key, size })
}

/// The first pass: read every header and the manifest, write nothing.
fn survey(file: &File, archive: &Path, space: Space) -> Result<Plan> {
    let decoder = zstd::stream::read::Decoder::new(file)
        .with_context(|| format!("{} is not zstd-compressed", archive.display()))?;
    let mut tar = tar::Archive::new(decoder);
    let entries = tar
        .entries()
        .with_context(|| format!("{} is not a tar archive", archive.display()))?
        .raw(true);
    let mut reader = Reader::default();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut declared: u64 = 0;
    let mut manifest_text = None;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{} is damaged", archive.display()))?;
        let Some(Item::File { key, size, .. }) = reader.item(&mut entry)? else {
            continue;
        };
        // Stop early: a bomb is refused before all of it is decompressed.
        declared = declared.saturating_add(space.cost(size));
        space.check(declared)?;
        if key == manifest::MANIFEST_NAME {
            if size > MANIFEST_LIMIT {
                bail!(
                    "its manifest.json is {} long; refusing it",
                    human_bytes(size)
                );
            }
            let mut text = String::new();
            (&mut entry)
                .take(MANIFEST_LIMIT)
                .read_to_string(&mut text)
                .context("manifest.json is not text")?;
            manifest_text = Some(text);
            continue;
        }
        if sizes.insert(key.clone(), size).is_some() {
            bail!("{key} is in the archive twice");
        }
    }
    let text = manifest_text.ok_or_else(|| anyhow!("the archive has no manifest.json"))?;
    let manifest = manifest::parse(&text)?;
    let mut allowed = BTreeMap::new();
    let mut directories = BTreeSet::new();
    let mut needed = space.cost(text.len() as u64);
    for file in &manifest.files {
        if file.path == manifest::MANIFEST_NAME || split_top(Path::new(&file.path)).is_err() {
            bail!(
                "the manifest lists {:?}, which is not a data file's path",
                file.path
            );
        }
        if allowed.insert(file.path.clone(), file.bytes).is_some() {
            bail!("the manifest lists {} twice", file.path);
        }
        let mut dir = Path::new(&file.path).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            directories.insert(d.to_path_buf());
            dir = d.parent();
        }
        needed = needed.saturating_add(space.cost(file.bytes));
    }
    needed = needed.saturating_add(space.cost(0).saturating_mul(directories.len() as u64));
    for (key, size) in &sizes {
        match allowed.get(key) {
            None => bail!("{key} is in the archive but not in its manifest"),
            Some(bytes) if bytes != size => bail!(
                "{key}: the archive holds {size} bytes, the manifest says {bytes}; \
                 nothing was written"
            ),
            Some(_) => {}
        }
    }
    if let Some(missing) = allowed.keys().find(|path| !sizes.contains_key(*path)) {
        bail!("{missing} is in the manifest but not in the archive");
    }
    space.check(needed)?;
    Ok(Plan {
        manifest,
        manifest_text: text,
        allowed,
        directories,
    })
}

/// What was extracted: path below the top directory → (bytes, SHA-256).
type Found = BTreeMap<String, (u64, String)>;

/// The second pass: extract what the first pass allowed, and no more.
fn extract(file: &File, archive: &Path, into: &Path, plan: &Plan) -> Result<Found> {
    let decoder = zstd::stream::read::Decoder::new(file)
        .with_context(|| format!("{} is not zstd-compressed", archive.display()))?;
    let mut tar = tar::Archive::new(decoder);
    let mut reader = Reader::default();
    let mut found = Found::new();
    let entries = tar
        .entries()
        .with_context(|| format!("{} is not a tar archive", archive.display()))?
        .raw(true);
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{} is damaged", archive.display()))?;
        let Some(item) = reader.item(&mut entry)? else {
            continue;
        };
        let (rest, key, size) = match item {
            Item::Skip | Item::Directory(None) => continue,
            Item::Directory(Some(rest)) => {
                if !plan.directories.contains(&rest) {
                    bail!("directory {} holds no file of the manifest", rest.display());
                }
                std::fs::create_dir_all(into.join(&rest))
                    .with_context(|| format!("cannot create {}", rest.display()))?;
                continue;
            }
            Item::File { rest, key, size } => (rest, key, size),
        };
        let limit = if key == manifest::MANIFEST_NAME {
            plan.manifest_text.len() as u64
        } else {
            *plan
                .allowed
                .get(&key)
                .ok_or_else(|| anyhow!("{key} changed while it was imported"))?
        };
        if size != limit || found.contains_key(&key) {
            bail!("{} changed while it was imported", archive.display());
        }
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
        let mut hashing = HashingReader::new((&mut entry).take(limit));
        std::io::copy(&mut hashing, &mut out).with_context(|| format!("cannot extract {key}"))?;
        let bytes = hashing.bytes;
        let digest = hashing.digest();
        if key == manifest::MANIFEST_NAME {
            let (expected, _) = manifest::sha256(plan.manifest_text.as_bytes())
                .context("cannot hash the manifest")?;
            if digest != expected {
                bail!("{} changed while it was imported", archive.display());
            }
            continue;
        }
        found.insert(key, (bytes, digest));
    }
    Ok(found)
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
    fn oversized_name_headers_are_refused_unread() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("names.tar.zst");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(16 << 20);
        builder
            .append_data(
                &mut header,
                "././@LongLink",
                std::io::repeat(b'a').take(16 << 20),
            )
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        std::fs::write(&archive, zstd::encode_all(&bytes[..], 3).unwrap()).unwrap();
        let err = extract_verified(&archive, &dir.path().join("out")).unwrap_err();
        assert!(
            format!("{err:#}").contains("header is 16777216 bytes long; refusing it"),
            "{err:#}"
        );
        assert!(!dir.path().join("out").exists());
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
