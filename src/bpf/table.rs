//! The per-thread state table, read through `mmap` without syscalls.
//!
//! The kernel hooks write entries concurrently with this reader. Each entry
//! has three sequence counters, one per writer class (see `bpf/taskscope.h`);
//! a read copies the entry between two loads of all three and retries when
//! any was odd or changed. So a scan never uses a half-updated entry, and
//! never takes a lock the hooks would wait on.
//!
//! This module is also the single producer of the free-slot ring: slots the
//! kernel marked EXITED are handed back to the hooks from here. The
//! checked copies themselves (`reads`) are shared with the live reader.

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use anyhow::{Context, Result};

use super::types::{
    bss, ts_counters, ts_fd, ts_slot_state, ts_stack, ts_stack_request, ts_syscall_args, ts_thread,
    ts_wait,
};

mod pool;
mod reads;
pub(super) use pool::StackPool;
pub use pool::{stack_pool_size, STACK_POOL_MAX};
pub(super) use reads::{peek_at, read_entry_at, read_fd_at, read_wait_at, slot_state_at};

// The kernel lays out the values of an mmap-able array 8-byte aligned
// (round_up(value_size, 8) apart): every value shared through mmap must
// be a multiple of 8 bytes for index × size to address it.
const _: () = assert!(
    size_of::<ts_thread>().is_multiple_of(8)
        && size_of::<ts_stack>().is_multiple_of(8)
        && size_of::<ts_fd>().is_multiple_of(8)
        && size_of::<ts_syscall_args>().is_multiple_of(8)
);

/// A consistent copy of one thread's entry and of the syscall arguments
/// kept beside it (`syscall_args`), taken in one sequence-counter window.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadEntry {
    pub thread: ts_thread,
    pub args: ts_syscall_args,
}

/// The scheduler fields of an entry that decide its state.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedFields {
    pub flags: u32,
    pub sched_state: u32,
    pub exit_state: u32,
    pub switch_in_ns: u64,
    pub switch_out_ns: u64,
    pub wakeup_ns: u64,
}

impl From<&ts_thread> for SchedFields {
    fn from(e: &ts_thread) -> SchedFields {
        SchedFields {
            flags: e.flags,
            sched_state: e.sched_state,
            exit_state: e.exit_state,
            switch_in_ns: e.switch_in_ns,
            switch_out_ns: e.switch_out_ns,
            wakeup_ns: e.wakeup_ns,
        }
    }
}

/// A mapping of one BPF array map.
pub(super) struct Mapping {
    pub(super) base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, what: &str) -> Result<Mapping> {
        Mapping::with(
            fd,
            len,
            what,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
        )
    }

    pub(super) fn with(
        fd: BorrowedFd<'_>,
        len: usize,
        what: &str,
        prot: rustix::mm::ProtFlags,
    ) -> Result<Mapping> {
        let page = rustix::param::page_size();
        let len = len.div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of a BPF_F_MMAPABLE array map of at
        // least `len` bytes (the kernel checks the length against the map).
        let base = unsafe {
            rustix::mm::mmap(
                ptr::null_mut(),
                len,
                prot,
                rustix::mm::MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(io::Error::from)
        .with_context(|| format!("cannot mmap the {what} map"))?;
        let base = NonNull::new(base.cast::<u8>()).context("mmap returned NULL")?;
        Ok(Mapping { base, len })
    }
}

// SAFETY: a mapping is an address range that stays valid until dropped;
// every holder reads and writes through it with atomic or volatile
// accesses only (the hooks write concurrently anyway).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; no references into it
        // outlive the table (all reads copy).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The part of a stack entry that says what it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StackHeader {
    pub flags: u32,
    pub captured_ns: u64,
    pub switch_out_ns: u64,
}

/// The mmap-ed `threads` map, the free-slot ring and the shared globals.
pub struct ThreadTable {
    entries: std::sync::Arc<Mapping>,
    /// `syscall_args`, one entry per slot.
    args: Mapping,
    capacity: usize,
    ring: Mapping,
    ring_mask: u64,
    /// `waits`: waker and kernel-lock wait, one entry per slot.
    waits: Mapping,
    /// The `stacks` pool and `stack_requests`, when stacks are captured.
    stacks: Option<(StackPool, Mapping)>,
    /// `fds`: per slot, the file a fd syscall's fd named at switch-out.
    fds: Mapping,
    /// The skeleton's mmap-ed .bss; lives as long as the skeleton, which
    /// outlives this table (see `Agent`'s field order).
    globals: NonNull<bss>,
    /// A read-only mapping of `threads` for the writer thread.
    switches: std::sync::Arc<SwitchView>,
    /// `py_chains`, when user stacks are captured.
    py_chains: Option<super::python::PyChains>,
}

/// The writer thread's view of the `threads` map, so it can tell whether
/// a thread has run since a capture (the Python frame read,
/// `output::stacks::python`) without sharing the sampler's table. It
/// shares the table's mapping (a second mapping would count the table
/// twice in the agent's resident memory) and only loads from it; the
/// mapping keeps the map alive after the agent closes it.
pub struct SwitchView {
    entries: std::sync::Arc<Mapping>,
    capacity: usize,
}

/// A slot's thread and its last switches, read in one window of the
/// entry's sequence counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    pub tid: u32,
    pub switch_in_ns: u64,
    pub switch_out_ns: u64,
}

impl SwitchView {
    /// `slot`'s thread and switch times; `None` for a slot out of range or
    /// an entry being written.
    pub fn read(&self, slot: usize) -> Option<Switches> {
        if slot >= self.capacity {
            return None;
        }
        // SAFETY: in bounds of the mapping (checked above); fields are
        // naturally aligned and only loaded atomically from this side.
        unsafe {
            let e = self.entries.base.as_ptr().cast::<ts_thread>().add(slot);
            let seq = AtomicU32::from_ptr(&raw mut (*e).seq);
            let before = seq.load(Ordering::Acquire);
            if before & 1 != 0 {
                return None;
            }
            let found = Switches {
                tid: AtomicU32::from_ptr(&raw mut (*e).tid).load(Ordering::Relaxed),
                switch_in_ns: AtomicU64::from_ptr(&raw mut (*e).switch_in_ns)
                    .load(Ordering::Relaxed),
                switch_out_ns: AtomicU64::from_ptr(&raw mut (*e).switch_out_ns)
                    .load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            (seq.load(Ordering::Relaxed) == before).then_some(found)
        }
    }
}

// SAFETY: the table only holds pointers into shared mappings that stay valid
// for its lifetime; every access is atomic or volatile.
unsafe impl Send for ThreadTable {}

impl ThreadTable {
    /// Map the tables.
    ///
    /// # Safety
    /// `globals` must point to the loaded skeleton's mmap-ed .bss and stay
    /// valid for the lifetime of the returned table.
    // One argument per map mapped: grouping them would only move the list.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn new(
        threads: BorrowedFd<'_>,
        args: BorrowedFd<'_>,
        capacity: usize,
        ring: BorrowedFd<'_>,
        ring_size: usize,
        waits: BorrowedFd<'_>,
        stacks: Option<(BorrowedFd<'_>, usize, BorrowedFd<'_>)>,
        fds: BorrowedFd<'_>,
        globals: NonNull<bss>,
    ) -> Result<ThreadTable> {
        let stacks = match stacks {
            Some((stacks, pool, requests)) => Some((
                StackPool::new(
                    Mapping::new(stacks, StackPool::bytes(pool), "stacks")?,
                    pool,
                ),
                Mapping::new(
                    requests,
                    capacity * size_of::<ts_stack_request>(),
                    "stack_requests",
                )?,
            )),
            None => None,
        };
        let entries = std::sync::Arc::new(Mapping::new(
            threads,
            capacity * size_of::<ts_thread>(),
            "threads",
        )?);
        Ok(ThreadTable {
            entries: std::sync::Arc::clone(&entries),
            args: Mapping::new(
                args,
                capacity * size_of::<ts_syscall_args>(),
                "syscall_args",
            )?,
            capacity,
            ring: Mapping::new(ring, ring_size * size_of::<u64>(), "free_ring")?,
            ring_mask: ring_size as u64 - 1,
            waits: Mapping::new(waits, capacity * size_of::<ts_wait>(), "waits")?,
            stacks,
            fds: Mapping::new(fds, capacity * size_of::<ts_fd>(), "fds")?,
            globals,
            switches: std::sync::Arc::new(SwitchView { entries, capacity }),
            py_chains: None,
        })
    }

    /// Map `py_chains` (user stacks on).
    pub(crate) fn map_py_chains(&mut self, fd: BorrowedFd<'_>) -> Result<()> {
        self.py_chains = Some(super::python::PyChains::new(fd)?);
        Ok(())
    }

    /// The CPython frame chains of on-CPU captures, when user stacks are
    /// captured.
    pub fn py_chains(&self) -> Option<&super::python::PyChains> {
        self.py_chains.as_ref()
    }

    /// The writer's view of thread switches.
    pub fn switch_view(&self) -> std::sync::Arc<SwitchView> {
        std::sync::Arc::clone(&self.switches)
    }

    /// What slot `slot`'s last capture describes, or None (no stacks,
    /// being written, or its pool entry went to another thread).
    pub fn stack_header(&self, slot: usize) -> Option<StackHeader> {
        let (pool, _) = self.stacks.as_ref()?;
        // SAFETY: slot `slot`'s in-bounds entry of the live mapping.
        unsafe { pool.header(self.entry(slot), slot) }
    }

    /// A consistent copy of slot `slot`'s last capture.
    pub fn read_stack(&self, slot: usize) -> Option<ts_stack> {
        let (pool, _) = self.stacks.as_ref()?;
        // SAFETY: slot `slot`'s in-bounds entry of the live mapping.
        unsafe { pool.read(self.entry(slot), slot) }
    }

    /// A consistent copy of slot `slot`'s `waits` entry (waker and kernel
    /// lock wait), or None when its writers kept it busy.
    pub fn read_wait(&self, slot: usize) -> Option<ts_wait> {
        assert!(slot < self.capacity, "slot {slot} out of range");
        // SAFETY: an in-bounds entry of the mapping (one per slot).
        unsafe { read_wait_at(self.waits.base.as_ptr().cast::<ts_wait>().add(slot)) }
    }

    /// A consistent copy of slot `slot`'s `fds` entry (the file its last
    /// switch-out inside a fd syscall found), or None when it is being
    /// written.
    pub fn read_fd(&self, slot: usize) -> Option<ts_fd> {
        assert!(slot < self.capacity, "slot {slot} out of range");
        // SAFETY: an in-bounds entry of the mapping (one per slot).
        unsafe { read_fd_at(self.fds.base.as_ptr().cast::<ts_fd>().add(slot)) }
    }

    /// Ask the next refresh pass to capture slot `slot`'s stacks.
    pub fn request_stack(&self, slot: usize) {
        if let Some((_, requests)) = &self.stacks {
            assert!(slot < self.capacity, "slot {slot} out of range");
            // SAFETY: the `want` of an in-bounds request, written only from
            // here.
            let want = unsafe {
                &raw mut (*requests.base.as_ptr().cast::<ts_stack_request>().add(slot)).want
            };
            self.u32_at(want).fetch_add(1, Ordering::Release);
        }
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

    fn u32_at(&self, field: *mut u32) -> &AtomicU32 {
        // SAFETY: `field` points into a live shared mapping, is 4-aligned,
        // and is only ever accessed atomically from this side.
        unsafe { AtomicU32::from_ptr(field) }
    }

    fn u64_at(&self, field: *mut u64) -> &AtomicU64 {
        // SAFETY: as for `u32_at`, 8-aligned.
        unsafe { AtomicU64::from_ptr(field) }
    }

    /// Slots that have ever been handed out: the scan stops here.
    pub fn high_water(&self) -> usize {
        // SAFETY: field of the live .bss mapping.
        let next = self.u32_at(unsafe { &raw mut (*self.globals.as_ptr()).next_fresh });
        (next.load(Ordering::Acquire) as usize).min(self.capacity)
    }

    /// Hint the CPU to fetch the first cache line of `slot` (no-op past the
    /// end of the table).
    #[inline]
    pub fn prefetch(&self, slot: usize) {
        if slot >= self.capacity {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetching has no side effects; the address is in bounds.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                self.entry(slot).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
    }

    /// The slot state of one entry.
    pub fn slot_state(&self, slot: usize) -> u32 {
        let e = self.entry(slot);
        // SAFETY: field of an in-bounds entry.
        self.u32_at(unsafe { &raw mut (*e).slot_state })
            .load(Ordering::Acquire)
    }

    /// The scheduler fields of one entry (its first cache line: enough to
    /// decide whether to sample it), without consistency checks.
    pub fn peek(&self, slot: usize) -> SchedFields {
        // SAFETY: an in-bounds entry (checked by `entry`).
        unsafe { peek_at(self.entry(slot)) }
    }

    /// A consistent copy of one entry and its syscall arguments, or `None`
    /// if writers kept it busy.
    pub fn read(&self, slot: usize) -> Option<ThreadEntry> {
        let e = self.entry(slot);
        // SAFETY: in bounds of the `syscall_args` mapping (same capacity as
        // `threads`, checked by `entry`).
        let a = unsafe { self.args.base.as_ptr().cast::<ts_syscall_args>().add(slot) };
        // SAFETY: both in bounds of their live mappings.
        unsafe { read_entry_at(e, a) }
    }

    /// Hand an EXITED slot back to the hooks. Only one thread may call this
    /// (the ring has a single producer).
    pub fn recycle(&self, slot: usize) {
        let e = self.entry(slot);
        // SAFETY: fields of an in-bounds entry and of the live .bss/ring
        // mappings; the ring index is masked to its size.
        unsafe {
            self.u32_at(&raw mut (*e).slot_state)
                .store(ts_slot_state::TS_SLOT_FREE.0, Ordering::Release);
            let tail = self.u64_at(&raw mut (*self.globals.as_ptr()).free_tail);
            let at = tail.load(Ordering::Relaxed);
            let cell = self
                .ring
                .base
                .as_ptr()
                .cast::<u64>()
                .add((at & self.ring_mask) as usize);
            self.u64_at(cell).store(slot as u64, Ordering::Relaxed);
            tail.store(at + 1, Ordering::Release);
        }
    }

    /// Capture the stacks of every thread that goes to sleep from
    /// `from_ns` (CLOCK_MONOTONIC) on, until the next call.
    pub fn set_capture_window(&self, from_ns: u64) {
        // SAFETY: a field of the live .bss mapping.
        unsafe { self.u64_at(&raw mut (*self.globals.as_ptr()).capture_from_ns) }
            .store(from_ns, Ordering::SeqCst);
    }

    /// Publish the end of the scan of the tick being taken (--track): the
    /// hooks report the end of every syscall and request that began no
    /// later than it. `u64::MAX` while the tick reads its clock and scans,
    /// so no end before the instant's publication is missed.
    pub fn set_tick_ns(&self, tick_ns: u64) {
        // SAFETY: a field of the live .bss mapping.
        unsafe { self.u64_at(&raw mut (*self.globals.as_ptr()).tick_ns) }
            .store(tick_ns, Ordering::SeqCst);
    }

    /// Mark a LIVE slot whose task no longer exists as EXITED.
    pub fn mark_exited(&self, slot: usize) {
        let e = self.entry(slot);
        // SAFETY: field of an in-bounds entry.
        let state = self.u32_at(unsafe { &raw mut (*e).slot_state });
        let _ = state.compare_exchange(
            ts_slot_state::TS_SLOT_LIVE.0,
            ts_slot_state::TS_SLOT_EXITED.0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// The reconciliation pass the iterator stamps into entries it sees.
    pub fn set_reconcile_gen(&self, generation: u32) {
        // SAFETY: field of the live .bss mapping.
        self.u32_at(unsafe { &raw mut (*self.globals.as_ptr()).reconcile_gen })
            .store(generation, Ordering::Release);
    }

    /// The reconciliation pass that last saw `slot`'s thread.
    pub fn seen_gen(&self, slot: usize) -> u32 {
        let e = self.entry(slot);
        // SAFETY: field of an in-bounds entry.
        self.u32_at(unsafe { &raw mut (*e).seen_gen })
            .load(Ordering::Acquire)
    }

    /// Slots on the free ring that the hooks have not taken yet.
    pub fn free_ring_len(&self) -> u64 {
        // SAFETY: fields of the live .bss mapping.
        unsafe {
            let tail = self
                .u64_at(&raw mut (*self.globals.as_ptr()).free_tail)
                .load(Ordering::Acquire);
            let head = self
                .u64_at(&raw mut (*self.globals.as_ptr()).free_head)
                .load(Ordering::Acquire);
            tail.saturating_sub(head)
        }
    }

    /// Slots owned by threads (or exited and not yet recycled): those
    /// handed out minus those waiting on the free ring.
    pub fn slots_used(&self) -> u64 {
        (self.high_water() as u64).saturating_sub(self.free_ring_len())
    }

    /// The hooks' error counters.
    pub fn counters(&self) -> ts_counters {
        // SAFETY: a volatile copy of plain-old-data in the live .bss mapping.
        unsafe { ptr::read_volatile(&raw const (*self.globals.as_ptr()).counters) }
    }
}
