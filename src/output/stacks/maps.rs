//! Process memory maps, read once per process image and kept.
//!
//! A process's `/proc/<pid>/maps` is read the first time one of its stacks
//! is resolved, and every mapped file is opened right then — through
//! `/proc/<pid>/map_files/`, which reaches files in other mount namespaces
//! (containers) and files deleted since (a package upgrade, a memfd) — and
//! kept open. Symbolization and unwinding read the files through those
//! descriptors, so a process that has exited by then, or whose binary was
//! replaced, still resolves.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Files kept open before the least recently opened ones are closed.
const FILE_LIMIT: usize = 256;

/// An opened mapped file, identified by device and inode.
#[derive(Debug)]
pub struct MappedFile {
    /// The path the process mapped it under.
    pub path: PathBuf,
    /// A path to the open descriptor (`/proc/self/fd/N`), valid while this
    /// value lives.
    pub open_path: PathBuf,
    pub key: (u64, u64),
    _file: File,
}

impl MappedFile {
    /// Base name of the file (`libc.so.6`), without ` (deleted)`.
    pub fn name(&self) -> String {
        let name = self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        name.strip_suffix(" (deleted)")
            .map(str::to_string)
            .unwrap_or(name)
    }
}

/// One line of `/proc/<pid>/maps`.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    pub exec: bool,
    /// The mapped file, if it is a file that could be opened.
    pub file: Option<Arc<MappedFile>>,
    /// `[vdso]`, `[heap]`, or the path.
    pub name: Arc<str>,
}

/// A process's executable mappings: the only ones a code address can be
/// in. The others (a thread stack and guard page per thread, heaps, data
/// files) are left out, so a process with thousands of threads costs the
/// cache a few dozen entries, not thousands.
#[derive(Debug, Default)]
pub struct ProcessMaps {
    pub mappings: Vec<Mapping>,
    /// Unique per reading of a maps file (0: none), so that what is built
    /// from one reading (an unwinder) can be cached against it.
    pub reading: u64,
}

impl ProcessMaps {
    /// The mapping that contains `addr`.
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }
}

/// Open mapped files, shared by all processes that map them.
#[derive(Default)]
pub struct FileCache {
    files: FxHashMap<(u64, u64), Arc<MappedFile>>,
    order: std::collections::VecDeque<(u64, u64)>,
}

impl FileCache {
    fn get_or_open(
        &mut self,
        key: (u64, u64),
        tgid: u32,
        range: &str,
        path: &str,
    ) -> Option<Arc<MappedFile>> {
        use std::os::unix::fs::MetadataExt;
        if let Some(file) = self.files.get(&key) {
            return Some(file.clone());
        }
        // The mapping itself first; by path only if it is still the same
        // file (not a binary replaced since).
        let file = File::open(format!("/proc/{tgid}/map_files/{range}"))
            .or_else(|_| File::open(format!("/proc/{tgid}/root{path}")))
            .ok()
            .filter(|f| f.metadata().is_ok_and(|m| (m.dev(), m.ino()) == key))?;
        let mapped = Arc::new(MappedFile {
            path: PathBuf::from(path),
            open_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            key,
            _file: file,
        });
        if self.files.len() >= FILE_LIMIT {
            if let Some(old) = self.order.pop_front() {
                self.files.remove(&old);
            }
        }
        self.files.insert(key, mapped.clone());
        self.order.push_back(key);
        Some(mapped)
    }

    /// Files kept open now.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Read `/proc/<tgid>/maps` and open its mapped files.
pub fn read_maps(tgid: u32, files: &mut FileCache) -> std::io::Result<ProcessMaps> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/maps"))?;
    let mut mappings: Vec<Mapping> = text
        .lines()
        .filter_map(|line| parse_line(line, tgid, files))
        .collect();
    mappings.sort_by_key(|m| m.start);
    static READINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Ok(ProcessMaps {
        mappings,
        reading: READINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    })
}

fn parse_line(line: &str, tgid: u32, files: &mut FileCache) -> Option<Mapping> {
    let mut fields = line.split_ascii_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let dev = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    // The path is the rest of the line (it may contain spaces).
    let path = line
        .splitn(6, |c: char| c.is_ascii_whitespace())
        .nth(5)
        .map(str::trim)
        .unwrap_or("");
    let (start, end) = range.split_once('-')?;
    let (start, end) = (
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    );
    let (major, minor) = dev.split_once(':')?;
    let dev = libc::makedev(
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let exec = perms.as_bytes().get(2) == Some(&b'x');
    if !exec {
        return None;
    }
    let file = (inode != 0 && path.starts_with('/'))
        .then(|| files.get_or_open((dev, inode), tgid, range, path))
        .flatten();
    Some(Mapping {
        start,
        end,
        offset,
        exec,
        file,
        name: Arc::from(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_maps_resolve_own_code() {
        let mut files = FileCache::default();
        let maps = read_maps(std::process::id(), &mut files).unwrap();
        let here = own_maps_resolve_own_code as fn() as usize as u64;
        let m = maps.find(here).expect("own code is mapped");
        assert!(m.exec);
        let file = m.file.as_ref().expect("own binary opened");
        assert_eq!(
            std::fs::canonicalize(&file.path).unwrap(),
            std::env::current_exe().unwrap()
        );
        assert!(std::fs::metadata(&file.open_path).is_ok());
        assert!(maps.find(0).is_none());
        assert!(!files.is_empty());
        // Data is not code: a stack variable's address is in no mapping.
        let local = 0u64;
        assert!(maps.find(&local as *const u64 as u64).is_none());
        assert!(maps.mappings.iter().all(|m| m.exec));
    }

    #[test]
    fn deleted_files_still_open() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.so");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&[7u8; 4096])
            .unwrap();
        let file = File::open(&path).unwrap();
        // SAFETY: a fresh private read-only, executable mapping of a whole
        // file (executable: only code mappings are kept).
        let addr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                4096,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::EXEC,
                rustix::mm::MapFlags::PRIVATE,
                &file,
                0,
            )
        }
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut files = FileCache::default();
        let maps = read_maps(std::process::id(), &mut files).unwrap();
        let m = maps.find(addr as u64).expect("mapped");
        let opened = m
            .file
            .as_ref()
            .expect("a deleted file is opened through map_files");
        assert_eq!(opened.name(), "gone.so");
        assert_eq!(std::fs::read(&opened.open_path).unwrap(), vec![7u8; 4096]);
        // SAFETY: the mapping made above, no longer used.
        unsafe { rustix::mm::munmap(addr, 4096).unwrap() };
    }
}
