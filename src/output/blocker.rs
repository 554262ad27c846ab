//! The owner of the pthread mutex a sampled thread waits for (issue 13's
//! `blocker_tid`), read from the waiting process's memory by the writer.
//!
//! A thread waiting for a glibc mutex sleeps in `futex(FUTEX_WAIT, 2)` on
//! the mutex's `__lock` word; glibc keeps the owner's tid in `__owner`, 8
//! bytes further (x86_64 and arm64 layouts of `pthread_mutex_t`: `__lock`,
//! `__count`, `__owner`, `__nusers`, `__kind`). A priority-inheritance
//! futex (`FUTEX_LOCK_PI`) holds the owner's tid in the word itself. Only
//! the rows of threads in such a wait cost a read (`process_vm_readv` of
//! 20 bytes, a few microseconds, on the writer thread, never on the tick).
//!
//! It fails to an empty value, never to a wrong thread: the word must still
//! say "locked with waiters", the mutex kind must be one glibc waits this
//! way for, and the owner must be a live thread of the same process
//! (mapped from the process's pid namespace to the agent's). Condition
//! variables and semaphores have no owner and are not mutex-shaped waits
//! (their futex value is not 2, or their neighbours fail the checks).

use std::io::IoSliceMut;
use std::path::Path;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use rustc_hash::FxHashMap;

use crate::output::sample::{LockKind, Sample};
use crate::store::names::FUTEX_NR;
use crate::store::thread_state::ThreadState;

const FUTEX_WAIT: u64 = 0;
const FUTEX_LOCK_PI: u64 = 6;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_LOCK_PI2: u64 = 13;
/// FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME.
const FUTEX_CMD_MASK: u64 = !(128 | 256);
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// glibc's `__kind` bits a futex-waiting (non-PI, non-robust) mutex may
/// have: its type (normal, recursive, error-checking, adaptive), process
/// shared, elision hints.
const GLIBC_KIND_ALLOWED: i32 = 3 | 128 | 256 | 512;
/// Processes whose pid namespace is remembered before the cache is cleared.
const CACHE_LIMIT: usize = 4_096;

/// Looks up futex owners; caches which processes share the agent's pid
/// namespace.
#[derive(Default)]
pub struct FutexOwners {
    /// tgid -> the process's tids are the agent's tids.
    same_pidns: FxHashMap<u32, bool>,
}

impl FutexOwners {
    pub fn new() -> FutexOwners {
        FutexOwners::default()
    }

    /// The lock `sample`'s thread waits for in a futex, and its owner's
    /// tid (0: not known).
    pub fn resolve(&mut self, sample: &Sample) -> Option<(LockKind, u32)> {
        if !matches!(
            sample.state,
            ThreadState::Sleep | ThreadState::Uninterruptible
        ) {
            return None;
        }
        let call = sample.syscall?;
        if call.nr != FUTEX_NR {
            return None;
        }
        let [uaddr, op, val, ..] = call.args?;
        let (kind, owner) = match op & FUTEX_CMD_MASK {
            FUTEX_LOCK_PI | FUTEX_LOCK_PI2 => {
                let word = read_u32s::<1>(sample.tgid, uaddr)?[0];
                (LockKind::PiFutex, word & FUTEX_TID_MASK)
            }
            FUTEX_WAIT | FUTEX_WAIT_BITSET if val as u32 == 2 => {
                // __lock, __count, __owner, __nusers, __kind
                let [lock, _count, owner, nusers, kind] = read_u32s::<5>(sample.tgid, uaddr)?;
                let kind = kind as i32;
                let mutex_shaped = lock == 2 && nusers >= 1 && kind & !GLIBC_KIND_ALLOWED == 0;
                if !mutex_shaped {
                    return None;
                }
                (LockKind::PthreadMutex, owner)
            }
            _ => return None,
        };
        let owner = match owner {
            0 => 0,
            tid => self.live_thread(sample.tgid, tid).unwrap_or(0),
        };
        Some((kind, if owner == sample.tid { 0 } else { owner }))
    }

    /// `tid` of process `tgid`, as the process sees it, in the agent's pid
    /// namespace, if it is a live thread of that process.
    fn live_thread(&mut self, tgid: u32, tid: u32) -> Option<u32> {
        if self.same_pidns.len() > CACHE_LIMIT {
            self.same_pidns.clear();
        }
        let same = match self.same_pidns.get(&tgid) {
            Some(&same) => same,
            None => {
                let same = nspid(Path::new(&format!("/proc/{tgid}/status")))?.len() <= 1;
                self.same_pidns.insert(tgid, same);
                same
            }
        };
        if same {
            return Path::new(&format!("/proc/{tgid}/task/{tid}"))
                .exists()
                .then_some(tid);
        }
        // Another pid namespace: the task whose innermost id is `tid`.
        let tasks = std::fs::read_dir(format!("/proc/{tgid}/task")).ok()?;
        tasks.flatten().find_map(|task| {
            let ids = nspid(&task.path().join("status"))?;
            (ids.last() == Some(&tid)).then(|| ids[0])
        })
    }
}

/// The `NSpid:` ids of a /proc status file (outermost first).
fn nspid(status: &Path) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let ids: Vec<u32> = line
        .split_whitespace()
        .map_while(|id| id.parse().ok())
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// `N` native-endian u32s at `addr` in process `tgid`.
fn read_u32s<const N: usize>(tgid: u32, addr: u64) -> Option<[u32; N]> {
    let mut bytes = [[0u8; 4]; N];
    let len = N * 4;
    let flat = bytes.as_flattened_mut();
    let remote = [RemoteIoVec {
        base: usize::try_from(addr).ok()?,
        len,
    }];
    let pid = Pid::from_raw(i32::try_from(tgid).ok()?);
    let read = process_vm_readv(pid, &mut [IoSliceMut::new(flat)], &remote).ok()?;
    (read == len).then(|| bytes.map(u32::from_ne_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::sample::SyscallSample;
    use crate::store::names::syscall_name;

    /// A glibc mutex in this process, locked by this thread, read the way
    /// the writer reads another process's.
    #[test]
    fn reads_a_locked_mutex_of_this_process() {
        let mut mutex: libc::pthread_mutex_t = libc::PTHREAD_MUTEX_INITIALIZER;
        // SAFETY: a valid, initialised mutex owned by this frame.
        assert_eq!(unsafe { libc::pthread_mutex_lock(&mut mutex) }, 0);
        let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let addr = &raw mut mutex as u64;
        // As a waiter would leave the word: locked, with waiters.
        // SAFETY: the first field of the mutex is its int lock word.
        unsafe { *(addr as *mut i32) = 2 };
        let nr = (0..500)
            .find(|&nr| syscall_name(nr) == Some("futex"))
            .expect("futex nr");
        let sample = Sample {
            tid: 1, // some other thread of the process waits
            tgid: std::process::id(),
            state: ThreadState::Sleep,
            syscall: Some(SyscallSample {
                nr,
                elapsed_us: None,
                elapsed_lower_bound: false,
                args: Some([addr, 128, 2, 0, 0, 0]),
                seq: None,
            }),
            ..Sample::default()
        };
        let mut owners = FutexOwners::new();
        assert_eq!(owners.resolve(&sample), Some((LockKind::PthreadMutex, me)));
        // A condition-variable-like wait (value 0): not a mutex.
        let mut cv = sample;
        cv.syscall = cv.syscall.map(|c| SyscallSample {
            args: Some([addr, 128, 0, 0, 0, 0]),
            ..c
        });
        assert_eq!(owners.resolve(&cv), None);
        // Unlocked since: no owner, no kind.
        // SAFETY: as above.
        unsafe { *(addr as *mut i32) = 1 };
        assert_eq!(owners.resolve(&sample), None);
        // SAFETY: as above; this thread owns it.
        unsafe { libc::pthread_mutex_unlock(&mut mutex) };
        // A tid that is no thread of the process: empty, never wrong.
        assert_eq!(owners.live_thread(std::process::id(), 0x3fff_fff0), None);
    }
}
