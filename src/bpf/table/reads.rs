//! Reads through raw pointers into the shared mappings, used by the
//! agent's table (`super::ThreadTable`) and by the live reader
//! (`super::super::live`), which maps the same maps read-only: loads only,
//! never a store. Each copy is checked against the entry's sequence
//! counters and retried when a writer was busy.

use std::ptr;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::super::types::{ts_fd, ts_stack, ts_syscall_args, ts_thread, ts_wait};
use super::{SchedFields, StackHeader, ThreadEntry};

/// Retries of a torn read before giving the entry up for this pass.
const READ_ATTEMPTS: usize = 8;

/// A field of a live shared mapping as an atomic.
///
/// # Safety
/// `field` points into a live shared mapping, is 4-aligned, and is only
/// ever accessed atomically from this side.
unsafe fn atomic_u32<'a>(field: *mut u32) -> &'a AtomicU32 {
    // SAFETY: as the caller promises.
    unsafe { AtomicU32::from_ptr(field) }
}

/// As [`atomic_u32`], 8-aligned.
unsafe fn atomic_u64<'a>(field: *mut u64) -> &'a AtomicU64 {
    // SAFETY: as the caller promises.
    unsafe { AtomicU64::from_ptr(field) }
}

/// The slot state of the entry at `e`.
///
/// # Safety
/// `e` is an entry of a live mapping of `threads`.
pub(in crate::bpf) unsafe fn slot_state_at(e: *mut ts_thread) -> u32 {
    // SAFETY: a field of that entry.
    unsafe { atomic_u32(&raw mut (*e).slot_state) }.load(Ordering::Acquire)
}

/// The scheduler fields of the entry at `e` (its first cache line),
/// without consistency checks.
///
/// # Safety
/// As [`slot_state_at`].
pub(in crate::bpf) unsafe fn peek_at(e: *mut ts_thread) -> SchedFields {
    // SAFETY: fields of that entry.
    unsafe {
        SchedFields {
            flags: atomic_u32(&raw mut (*e).flags).load(Ordering::Relaxed),
            sched_state: atomic_u32(&raw mut (*e).sched_state).load(Ordering::Relaxed),
            exit_state: atomic_u32(&raw mut (*e).exit_state).load(Ordering::Relaxed),
            switch_in_ns: atomic_u64(&raw mut (*e).switch_in_ns).load(Ordering::Relaxed),
            switch_out_ns: atomic_u64(&raw mut (*e).switch_out_ns).load(Ordering::Relaxed),
            wakeup_ns: atomic_u64(&raw mut (*e).wakeup_ns).load(Ordering::Relaxed),
        }
    }
}

/// A consistent copy of the entry at `e` and of its syscall arguments at
/// `a`, or `None` if writers kept it busy.
///
/// # Safety
/// `e` and `a` are the same slot's entries of live mappings of `threads`
/// and `syscall_args`.
pub(in crate::bpf) unsafe fn read_entry_at(
    e: *mut ts_thread,
    a: *mut ts_syscall_args,
) -> Option<ThreadEntry> {
    // SAFETY: fields of that entry.
    let (seq, perf_seq, io_seq) = unsafe {
        (
            atomic_u32(&raw mut (*e).seq),
            atomic_u32(&raw mut (*e).perf_seq),
            atomic_u32(&raw mut (*e).io_seq),
        )
    };
    for _ in 0..READ_ATTEMPTS {
        let before = [
            seq.load(Ordering::Acquire),
            perf_seq.load(Ordering::Acquire),
            io_seq.load(Ordering::Acquire),
        ];
        if before.iter().any(|s| s & 1 != 0) {
            std::hint::spin_loop();
            continue;
        }
        // SAFETY: volatile copies of plain-old-data; the kernel may
        // write concurrently, which the counters detect (the arguments
        // are written under the entry's seq and perf_seq).
        let copy = unsafe {
            ThreadEntry {
                thread: ptr::read_volatile(e),
                args: ptr::read_volatile(a),
            }
        };
        fence(Ordering::Acquire);
        let after = [
            seq.load(Ordering::Relaxed),
            perf_seq.load(Ordering::Relaxed),
            io_seq.load(Ordering::Relaxed),
        ];
        if before == after {
            return Some(copy);
        }
        std::hint::spin_loop();
    }
    None
}

/// What the stack entry at `e` describes, or None while it is being
/// written or when its `slot` is not `owner` (the pool gave it to another
/// thread).
///
/// # Safety
/// `e` points to a `ts_stack` of a live shared mapping.
pub(in crate::bpf) unsafe fn stack_header_at(e: *mut ts_stack, owner: u32) -> Option<StackHeader> {
    // SAFETY: fields of that entry (the caller's promise).
    unsafe {
        let seq = atomic_u32(&raw mut (*e).seq);
        let before = seq.load(Ordering::Acquire);
        if before & 1 != 0 {
            return None;
        }
        let slot = ptr::read_volatile(&raw const (*e).slot);
        let header = StackHeader {
            flags: ptr::read_volatile(&raw const (*e).flags),
            captured_ns: ptr::read_volatile(&raw const (*e).captured_ns),
            switch_out_ns: ptr::read_volatile(&raw const (*e).switch_out_ns),
        };
        fence(Ordering::Acquire);
        (seq.load(Ordering::Relaxed) == before && slot == owner).then_some(header)
    }
}

/// A consistent copy of the stack entry at `e`, checked against its
/// sequence counter as entries are.
///
/// # Safety
/// `e` points to a `ts_stack` of a live shared mapping.
pub(in crate::bpf) unsafe fn read_stack_at(e: *mut ts_stack) -> Option<ts_stack> {
    // SAFETY: the entry and its counter (the caller's promise).
    unsafe { read_counted(e, &raw mut (*e).seq) }
}

/// A consistent copy of the entry at `e`, whose writers keep the sequence
/// counter at `seq` odd while they write: read when it is even and the
/// same after the copy, or None when writers kept it busy.
///
/// # Safety
/// `e` is an entry of a live shared mapping of plain-old-data (any bit
/// pattern valid) and `seq` its 4-aligned counter.
unsafe fn read_counted<T>(e: *mut T, seq: *mut u32) -> Option<T> {
    // SAFETY: the caller's promise.
    let seq = unsafe { atomic_u32(seq) };
    for _ in 0..READ_ATTEMPTS {
        let before = seq.load(Ordering::Acquire);
        if before & 1 != 0 {
            std::hint::spin_loop();
            continue;
        }
        // SAFETY: as above.
        let copy = unsafe { ptr::read_volatile(e) };
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) == before {
            return Some(copy);
        }
    }
    None
}

/// A consistent copy of the `waits` entry at `e` (waker and kernel lock
/// wait), or None when its writers kept it busy.
///
/// # Safety
/// `e` is an entry of a live mapping of `waits`.
pub(in crate::bpf) unsafe fn read_wait_at(e: *mut ts_wait) -> Option<ts_wait> {
    // SAFETY: the two counters of that entry.
    let (seq, lock_seq) = unsafe {
        (
            atomic_u32(&raw mut (*e).seq),
            atomic_u32(&raw mut (*e).lock_seq),
        )
    };
    for _ in 0..READ_ATTEMPTS {
        let before = [
            seq.load(Ordering::Acquire),
            lock_seq.load(Ordering::Acquire),
        ];
        if before.iter().any(|s| s & 1 != 0) {
            std::hint::spin_loop();
            continue;
        }
        // SAFETY: a volatile copy of plain-old-data, checked against
        // its counters as for `read_entry_at`.
        let copy = unsafe { ptr::read_volatile(e) };
        fence(Ordering::Acquire);
        if [
            seq.load(Ordering::Relaxed),
            lock_seq.load(Ordering::Relaxed),
        ] == before
        {
            return Some(copy);
        }
    }
    None
}

/// A consistent copy of the `fds` entry at `e` (the file its last
/// switch-out inside a fd syscall found), or None when it is being
/// written.
///
/// # Safety
/// `e` is an entry of a live mapping of `fds`.
pub(in crate::bpf) unsafe fn read_fd_at(e: *mut ts_fd) -> Option<ts_fd> {
    // SAFETY: the entry and its counter (the caller's promise).
    unsafe { read_counted(e, &raw mut (*e).seq) }
}
