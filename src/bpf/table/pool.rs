//! The pool of stack captures (`stacks`), read by the agent's table and by
//! the live reader alike.
//!
//! The pool is smaller than the thread table: at most [`STACK_POOL_MAX`]
//! entries of about 1 KiB, where one per slot cost 32 MiB at 32,768 slots.
//! A thread captures into the entry its `threads` entry names
//! (`stack_entry`) while that entry's `slot` still names it, and otherwise
//! takes the entry taken longest ago (bpf/capture.bpf.h, `begin_capture`). So
//! a capture read here is checked twice: the entry is not being written
//! (its sequence counter) and it is still this slot's.

use std::ptr;

use super::reads::{read_stack_at, stack_header_at};
use super::{Mapping, StackHeader};
use crate::bpf::types::{ts_stack, ts_thread};

/// Entries of the pool at most: 4 MiB. The switch hook captures a thread
/// at most once per sampling period, and the sampler keeps what it needs
/// of a capture once read, so an entry has to outlive one period only:
/// 4,096 captures in a period is 10,000 threads each capturing every 2.5 s
/// at 1 Hz. Fewer captures survive on busier hosts; the rows then take
/// the refresh pass's captures (`stack_refreshes` in `ticks`).
pub const STACK_POOL_MAX: u32 = 4096;

/// Entries of the pool for a table of `slots` slots: a power of two (the
/// hooks take entries by a mask), no more than the table needs.
pub fn stack_pool_size(slots: u32) -> u32 {
    slots.max(1).next_power_of_two().min(STACK_POOL_MAX)
}

/// A mapping of the `stacks` pool.
pub(in crate::bpf) struct StackPool {
    entries: Mapping,
    len: usize,
}

impl StackPool {
    /// The pool mapped as `entries`, of `len` entries.
    pub(in crate::bpf) fn new(entries: Mapping, len: usize) -> StackPool {
        StackPool { entries, len }
    }

    /// Bytes of the pool's mapping for `len` entries.
    pub(in crate::bpf) fn bytes(len: usize) -> usize {
        len * size_of::<ts_stack>()
    }

    /// The entry `thread` last captured into.
    ///
    /// # Safety
    /// `thread` points to a `ts_thread` of a live shared mapping.
    unsafe fn entry_of(&self, thread: *mut ts_thread) -> Option<*mut ts_stack> {
        // SAFETY: a field of that entry (the caller's promise), written by
        // the hooks with single aligned stores.
        let entry = unsafe { ptr::read_volatile(&raw const (*thread).stack_entry) } as usize;
        // SAFETY: in bounds of the mapping, checked here.
        (entry < self.len)
            .then(|| unsafe { self.entries.base.as_ptr().cast::<ts_stack>().add(entry) })
    }

    /// What the last capture of the thread in slot `slot`, whose `threads`
    /// entry is `thread`, describes; None when it is being written or has
    /// gone to another thread.
    ///
    /// # Safety
    /// `thread` points to slot `slot`'s `ts_thread` of a live mapping.
    pub(in crate::bpf) unsafe fn header(
        &self,
        thread: *mut ts_thread,
        slot: usize,
    ) -> Option<StackHeader> {
        // SAFETY: the caller's promise; the entry is in bounds.
        unsafe {
            self.entry_of(thread)
                .and_then(|e| stack_header_at(e, owner(slot)))
        }
    }

    /// A consistent copy of that capture, if still the slot's.
    ///
    /// # Safety
    /// As [`StackPool::header`].
    pub(in crate::bpf) unsafe fn read(
        &self,
        thread: *mut ts_thread,
        slot: usize,
    ) -> Option<ts_stack> {
        // SAFETY: the caller's promise; the entry is in bounds.
        unsafe { self.entry_of(thread).and_then(|e| read_stack_at(e)) }
            .filter(|copy| copy.slot == owner(slot))
    }
}

/// `ts_stack.slot` of a capture of slot `slot`.
fn owner(slot: usize) -> u32 {
    slot as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_a_power_of_two_no_larger_than_the_table_or_the_cap() {
        assert_eq!(stack_pool_size(0), 1);
        assert_eq!(stack_pool_size(1), 1);
        assert_eq!(stack_pool_size(100), 128);
        assert_eq!(stack_pool_size(4096), 4096);
        assert_eq!(stack_pool_size(4097), STACK_POOL_MAX);
        assert_eq!(stack_pool_size(65_536), STACK_POOL_MAX);
        assert!(STACK_POOL_MAX.is_power_of_two());
    }
}
