//! Reading a running agent's thread table from another process: the
//! maps the agent pins (`pin`), opened read-only and mmap-ed.
//!
//! The decision a reader must know: an independent reader never disturbs
//! the agent. It maps the pins `PROT_READ`, so it cannot write an entry,
//! recycle a slot or request a stack; it copies entries under the same
//! sequence-counter protocol as the agent's sampler (`table`), so a scan
//! never uses a half-written entry, and the hooks never wait for it.
//!
//! A map descriptor opened with `BPF_F_RDONLY` cannot be mmap-ed (the
//! kernel turns a shared mapping of a read-only file into a private one,
//! which `bpf_map_mmap` refuses: EINVAL, measured on 6.18), so the pins
//! are opened read-write and mapped read-only. Handing such a descriptor
//! to another user would let them write the table, so the agent pins
//! with mode 0600: live readers are root (the pins' owner); other users
//! read the files (history mode). The threads' last stack captures
//! (`stacks`) are read the same way when the agent pinned them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libbpf_rs::libbpf_sys;

use super::pin::PINNED_MAPS;
use super::probe::is_bpffs;
use super::table::{self, Mapping};
use super::types::{ts_fd, ts_slot_state, ts_stack, ts_syscall_args, ts_thread, ts_wait};
use super::{SchedFields, StackHeader, ThreadEntry};

/// Why the live table cannot be read: what a caller shows, and whether
/// reading the files instead makes sense.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No agent has pinned its table there (not running, `--no-pin`,
    /// another `--pin-dir`, or no BPF filesystem).
    #[error("{0}")]
    NotPinned(String),
    /// The pins exist but this user may not open them.
    #[error("{0}")]
    NotPermitted(String),
    /// Anything else (a table of another taskscope version, mmap failed).
    #[error("{0}")]
    Other(String),
}

/// A running agent's thread table, mapped read-only.
pub struct LiveTable {
    dir: PathBuf,
    entries: Mapping,
    args: Mapping,
    waits: Mapping,
    fds: Mapping,
    /// The `stacks` pool, when the agent captures them (and pinned them:
    /// an agent of an earlier version did not).
    stacks: Option<table::StackPool>,
    capacity: usize,
    // The mappings keep the maps alive; the descriptors are not needed
    // after mapping and are closed here.
}

/// One map's descriptor, size and value size.
struct Opened {
    fd: OwnedFd,
    max_entries: u32,
    value_size: u32,
    flags: u32,
}

fn open_pin(dir: &Path, name: &str) -> Result<Opened, LiveError> {
    let path = dir.join(name);
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| LiveError::Other(format!("{}: a path with a NUL byte", path.display())))?;
    let opts = libbpf_sys::bpf_obj_get_opts {
        sz: size_of::<libbpf_sys::bpf_obj_get_opts>() as _,
        // Read-write: a BPF_F_RDONLY descriptor cannot be mmap-ed.
        file_flags: 0,
        path_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a valid options struct, both alive
    // for the call.
    let fd = unsafe { libbpf_sys::bpf_obj_get_opts(c_path.as_ptr(), &opts) };
    if fd < 0 {
        let err = io::Error::from_raw_os_error(-fd);
        return Err(match err.kind() {
            io::ErrorKind::NotFound => not_pinned(dir),
            io::ErrorKind::PermissionDenied => LiveError::NotPermitted(format!(
                "not permitted to read the live thread table at {}: live mode needs root (the pins are the agent's, mode 0600); other users read the files: taskscope top --dir DIR --since 1h",
                path.display()
            )),
            _ => LiveError::Other(format!("cannot open {}: {err}", path.display())),
        });
    }
    // SAFETY: a descriptor just returned to us, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: bpf_map_info is plain-old-data; all-zero is a valid value.
    let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libbpf_sys::bpf_map_info>() as u32;
    use std::os::fd::AsRawFd;
    // SAFETY: `info` and `len` are valid for writes of `len` bytes.
    let rc = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        let err = io::Error::from_raw_os_error(-rc);
        return Err(LiveError::Other(format!(
            "cannot inspect {}: {err}",
            path.display()
        )));
    }
    Ok(Opened {
        fd,
        max_entries: info.max_entries,
        value_size: info.value_size,
        flags: info.map_flags,
    })
}

fn not_pinned(dir: &Path) -> LiveError {
    let parent = dir.parent().unwrap_or(dir);
    if !is_bpffs(parent) {
        return LiveError::NotPinned(format!(
            "no live thread table: {} is not a BPF filesystem, so no agent pinned one at {} (start `taskscope run`, which mounts {} when it may; or give --pin-dir of the agent's)",
            parent.display(),
            dir.display(),
            super::pin::USUAL_BPFFS
        ));
    }
    LiveError::NotPinned(format!(
        "no live thread table at {}: is the agent running (`taskscope run`, without --no-pin, with this --pin-dir)?",
        dir.display()
    ))
}

/// Check a map is what this version of taskscope reads (`capacity`
/// entries of `T`), and map it.
fn map<T>(opened: &Opened, name: &str, capacity: u32, dir: &Path) -> Result<Mapping, LiveError> {
    if opened.value_size as usize != size_of::<T>()
        || opened.max_entries != capacity
        || opened.flags & libbpf_sys::BPF_F_MMAPABLE == 0
    {
        return Err(LiveError::Other(format!(
            "{}/{name} is not a thread table this taskscope reads ({} entries of {} bytes, expected {capacity} of {}): is the agent another version?",
            dir.display(),
            opened.max_entries,
            opened.value_size,
            size_of::<T>()
        )));
    }
    let len = capacity as usize * size_of::<T>();
    Mapping::with(opened.fd.as_fd(), len, name, rustix::mm::ProtFlags::READ)
        .map_err(|err| LiveError::Other(format!("{}/{name}: {err:#}", dir.display())))
}

impl LiveTable {
    /// Open and map the table the agent pinned in `dir` (its `--pin-dir`).
    pub fn open(dir: &Path) -> Result<LiveTable, LiveError> {
        // `threads` first: the agent pins it last and removes it first.
        let threads = open_pin(dir, "threads")?;
        let capacity = threads.max_entries;
        let [args, waits, fds] = [
            open_pin(dir, "syscall_args")?,
            open_pin(dir, "waits")?,
            open_pin(dir, "fds")?,
        ];
        debug_assert_eq!(PINNED_MAPS.len(), 5, "every pin is opened here");
        // One entry when the agent runs without stacks, else its pool of
        // captures (a power of two, `table::stack_pool_size`); no pin from
        // an agent before stacks were pinned.
        let stacks = match open_pin(dir, "stacks") {
            Ok(opened) if opened.max_entries > 1 && opened.max_entries.is_power_of_two() => {
                let pool = opened.max_entries;
                let mapping = map::<ts_stack>(&opened, "stacks", pool, dir)?;
                Some(table::StackPool::new(mapping, pool as usize))
            }
            Ok(_) | Err(LiveError::NotPinned(_)) => None,
            Err(err) => return Err(err),
        };
        Ok(LiveTable {
            stacks,
            dir: dir.to_path_buf(),
            entries: map::<ts_thread>(&threads, "threads", capacity, dir)?,
            args: map::<ts_syscall_args>(&args, "syscall_args", capacity, dir)?,
            waits: map::<ts_wait>(&waits, "waits", capacity, dir)?,
            fds: map::<ts_fd>(&fds, "fds", capacity, dir)?,
            capacity: capacity as usize,
        })
    }

    /// The pin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of slots in the table.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn entry(&self, slot: usize) -> *mut ts_thread {
        assert!(slot < self.capacity, "slot {slot} out of range");
        // SAFETY: in bounds of the mapping (checked above).
        unsafe { self.entries.base.as_ptr().cast::<ts_thread>().add(slot) }
    }

    /// Whether `slot` holds a live thread.
    pub fn is_live(&self, slot: usize) -> bool {
        // SAFETY: an in-bounds entry of the live mapping.
        unsafe { table::slot_state_at(self.entry(slot)) == ts_slot_state::TS_SLOT_LIVE.0 }
    }

    /// The scheduler fields of `slot`, unchecked (enough to decide
    /// whether to read it).
    pub fn peek(&self, slot: usize) -> SchedFields {
        // SAFETY: an in-bounds entry of the live mapping.
        unsafe { table::peek_at(self.entry(slot)) }
    }

    /// A consistent copy of `slot`'s entry and syscall arguments, or None
    /// when writers kept it busy.
    pub fn read(&self, slot: usize) -> Option<ThreadEntry> {
        let e = self.entry(slot);
        // SAFETY: the same slot of both mappings (same capacity).
        unsafe {
            let a = self.args.base.as_ptr().cast::<ts_syscall_args>().add(slot);
            table::read_entry_at(e, a)
        }
    }

    /// A consistent copy of `slot`'s waker and lock-wait entry.
    pub fn read_wait(&self, slot: usize) -> Option<ts_wait> {
        assert!(slot < self.capacity, "slot {slot} out of range");
        // SAFETY: an in-bounds entry of the mapping.
        unsafe { table::read_wait_at(self.waits.base.as_ptr().cast::<ts_wait>().add(slot)) }
    }

    /// A consistent copy of `slot`'s fd entry.
    pub fn read_fd(&self, slot: usize) -> Option<ts_fd> {
        assert!(slot < self.capacity, "slot {slot} out of range");
        // SAFETY: an in-bounds entry of the mapping.
        unsafe { table::read_fd_at(self.fds.base.as_ptr().cast::<ts_fd>().add(slot)) }
    }

    /// Whether the agent's stack captures are readable here.
    pub fn has_stacks(&self) -> bool {
        self.stacks.is_some()
    }

    /// What `slot`'s last stack capture describes, or None (no stacks,
    /// being written, or its pool entry went to another thread).
    pub fn stack_header(&self, slot: usize) -> Option<StackHeader> {
        let pool = self.stacks.as_ref()?;
        // SAFETY: slot `slot`'s in-bounds entry of the live mapping.
        unsafe { pool.header(self.entry(slot), slot) }
    }

    /// A consistent copy of `slot`'s last stack capture.
    pub fn read_stack(&self, slot: usize) -> Option<ts_stack> {
        let pool = self.stacks.as_ref()?;
        // SAFETY: slot `slot`'s in-bounds entry of the live mapping.
        unsafe { pool.read(self.entry(slot), slot) }
    }
}
