//! The maps of the CPython frame chains the on-CPU sample reads
//! (`bpf/python.bpf.h`).
//!
//! The writer publishes each Python thread it found in `py_threads`
//! ([`PyThreadMap`]): its thread state, the offsets of its interpreter's
//! version, and the entry of `py_chains` it owns. The on-CPU sample of a
//! published thread walks its frame chain into that entry, stamped with
//! the capture's time and thread id; the sampler copies the entry with the
//! capture's stacks ([`PyChains::read`]), so the chain is of the very
//! instant of the native stack.

use std::os::fd::BorrowedFd;
use std::ptr;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use anyhow::Result;
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::table::Mapping;
use super::types::{ts_py_chain, ts_py_frame, ts_py_thread};

/// Entries of `py_threads` and `py_chains` (`TS_PY_THREADS`).
pub const PY_THREADS: u32 = 4_096;

// The layouts `bpf/taskscope.h` asserts: 48 frames of code, fingerprint
// and instruction pointer.
const _: () = assert!(size_of::<ts_py_chain>().is_multiple_of(8));
const _: () = assert!(size_of::<ts_py_frame>() == 24);
const _: () = assert!(size_of::<ts_py_chain>() == 24 + 24 * 48);
const _: () = assert!(size_of::<ts_py_thread>() == 64);

/// Retries of a torn read before giving a chain up.
const READ_ATTEMPTS: usize = 4;

/// The mmap-ed `py_chains` array, for the sampler.
pub struct PyChains {
    entries: Mapping,
}

impl PyChains {
    pub(super) fn new(fd: BorrowedFd<'_>) -> Result<PyChains> {
        Ok(PyChains {
            entries: Mapping::with(
                fd,
                PY_THREADS as usize * size_of::<ts_py_chain>(),
                "py_chains",
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            )?,
        })
    }

    /// A consistent copy of entry `index` if it holds the chain of thread
    /// `tid` read at `captured_ns`; `None` otherwise (another capture's,
    /// or being written).
    pub fn read(&self, index: u32, tid: u32, captured_ns: u64) -> Option<ts_py_chain> {
        if index >= PY_THREADS {
            return None;
        }
        // SAFETY: an in-bounds entry of the mapping; the copy is checked
        // against its sequence counter, loaded atomically.
        unsafe {
            let e = self
                .entries
                .base
                .as_ptr()
                .cast::<ts_py_chain>()
                .add(index as usize);
            let seq = AtomicU32::from_ptr(&raw mut (*e).seq);
            for _ in 0..READ_ATTEMPTS {
                let before = seq.load(Ordering::Acquire);
                if before & 1 != 0 {
                    std::hint::spin_loop();
                    continue;
                }
                let copy = ptr::read_volatile(e);
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == before {
                    return (copy.tid == tid && copy.captured_ns == captured_ns).then_some(copy);
                }
            }
        }
        None
    }
}

// SAFETY: a shared mapping valid for the value's lifetime; reads copy
// under the entry's sequence counter.
unsafe impl Send for PyChains {}

/// The `py_threads` hash map, for the writer.
pub struct PyThreadMap(MapHandle);

impl PyThreadMap {
    pub(super) fn new(map: MapHandle) -> PyThreadMap {
        PyThreadMap(map)
    }

    /// Read thread `tid`'s chain at its on-CPU samples.
    pub fn publish(&self, tid: u32, thread: &ts_py_thread) -> Result<()> {
        // SAFETY: plain old data, read as bytes.
        let value = unsafe {
            std::slice::from_raw_parts(
                ptr::from_ref(thread).cast::<u8>(),
                size_of::<ts_py_thread>(),
            )
        };
        self.0.update(&tid.to_ne_bytes(), value, MapFlags::ANY)?;
        Ok(())
    }

    /// Stop reading thread `tid`'s chain.
    pub fn remove(&self, tid: u32) {
        // Missing already: nothing to do.
        let _ = self.0.delete(&tid.to_ne_bytes());
    }
}
