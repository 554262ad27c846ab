//! Loading, attaching and owning the BPF programs.
//!
//! [`Agent::load`] (in `load`) probes the kernel (`probe`), opens the
//! skeleton, sizes the tables, sets the tunables, loads and attaches
//! everything, maps the thread table (`table`) and pins it (`pin`).
//! Dropping the `Agent` detaches every program and removes the pin.
//!
//! The decision a reader must know: the kernel side never emits per-event
//! output on the hot path. Hooks overwrite their thread's entry in an
//! mmap-able array ([`ThreadTable`]) that the sampler scans without
//! syscalls; only the ends of syscalls and requests a sample saw
//! (`--track`) go through a ring buffer.

pub mod fd_syscalls;
pub mod floor;
pub mod live;
mod load;
mod pin;
pub mod probe;
pub mod python;
pub mod table;

#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unused_imports,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/taskscope.skel.rs"));
}

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use libbpf_rs::{Iter, Link, MapCore};
use tracing::debug;

use pin::Pin;
pub use pin::{pin_dir_holder, PINNED_MAPS, USUAL_BPFFS};
pub use skel::types;
use skel::TaskscopeSkel;
pub use table::{SchedFields, StackHeader, SwitchView, Switches, ThreadEntry, ThreadTable};

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// This process: its threads are never tracked.
    pub agent_tgid: u32,
    /// Track only these processes/threads (empty: all).
    pub pids: Vec<u32>,
    /// Entries of the thread table.
    pub max_threads: u32,
    /// Sampling frequency, used for the on-CPU perf events.
    pub frequency: u32,
    /// bpffs directory to pin the thread table in.
    pub pin_dir: Option<PathBuf>,
    /// Modes and group of the pins (the files' `--file-mode`, `--group`).
    pub pin_permissions: crate::files::at::Permissions,
    /// Which stacks to capture.
    pub stacks: StackKinds,
    /// Which ends of sampled syscalls and requests to report (--track).
    pub track: TrackKinds,
    /// How syscalls are seen (--syscalls).
    pub syscalls: SyscallMode,
}

/// How syscalls are seen (`--syscalls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyscallMode {
    /// No per-syscall hook: the syscall and its arguments come from the
    /// saved registers at switch-out and in on-CPU samples, and its entry
    /// time is bounded by them (a lower bound of the time in it).
    #[default]
    Passive,
    /// A sys_enter hook records every syscall's entry: exact times, and
    /// the sequence numbers `--track syscalls` follows.
    Exact,
}

/// What `--track` follows to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackKinds {
    pub syscalls: bool,
    pub io: bool,
}

impl TrackKinds {
    pub fn any(self) -> bool {
        self.syscalls || self.io
    }
}

/// Which stacks to capture (`--stacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StackKinds {
    pub kernel: bool,
    pub user: bool,
}

impl StackKinds {
    pub fn any(self) -> bool {
        self.kernel || self.user
    }
}

/// Which optional parts are running.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub block_io: bool,
    /// Requests are attributed when built (block_io_start, Linux 6.5+).
    pub block_io_start: bool,
    /// CPUs with an on-CPU perf event attached.
    pub oncpu_cpus: usize,
    pub pinned: Option<PathBuf>,
    /// What --track follows (I/O only when the block hooks run).
    pub track: TrackKinds,
    /// How syscalls are seen.
    pub syscalls: SyscallMode,
}

/// The loaded and attached programs and their maps.
pub struct Agent {
    // Drop order is declaration order: detach everything before the
    // skeleton (and the .bss the table points into) goes away.
    links: Vec<Link>,
    perf_events: Vec<OwnedFd>,
    iter_link: Link,
    refresh_link: Option<Link>,
    completions: Option<Completions>,
    table: ThreadTable,
    pinned: Option<Pin>,
    features: Features,
    /// Live threads the seeding pass could not give a slot.
    seed_left_out: u64,
    skel: TaskscopeSkel<'static>,
}

/// The completions ring buffer (--track) and the records it delivered.
type Completions = (
    libbpf_rs::RingBuffer<'static>,
    Arc<Mutex<Vec<types::ts_completion>>>,
);

impl Agent {
    /// Live threads the seeding pass at load could not give a slot
    /// because the table was full.
    pub fn seed_left_out(&self) -> u64 {
        self.seed_left_out
    }

    /// The thread table.
    pub fn table(&self) -> &ThreadTable {
        &self.table
    }

    /// The `py_threads` map, for the writer to publish Python threads
    /// (user stacks on); `None` otherwise.
    pub fn python_threads(&self) -> Result<Option<python::PyThreadMap>> {
        if self.table.py_chains().is_none() {
            return Ok(None);
        }
        let handle = libbpf_rs::MapHandle::try_from(&self.skel.maps.py_threads)
            .context("cannot duplicate the py_threads map")?;
        Ok(Some(python::PyThreadMap::new(handle)))
    }

    /// Which optional parts are running.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Run the stack refresh pass (serves `ThreadTable::request_stack`);
    /// false when the kernel cannot.
    pub fn refresh_stacks(&self) -> Result<bool> {
        let Some(link) = &self.refresh_link else {
            return Ok(false);
        };
        let mut iter = Iter::new(link).context("cannot start the stack refresh iterator")?;
        let mut sink = Vec::new();
        iter.read_to_end(&mut sink)
            .context("stack refresh iterator failed")?;
        Ok(true)
    }

    /// Append the completions the hooks reported since the last call
    /// (--track) to `out`; no syscall, the ring buffer is mmap-ed.
    pub fn drain_completions(&self, out: &mut Vec<types::ts_completion>) -> Result<()> {
        let Some((ring, received)) = &self.completions else {
            return Ok(());
        };
        ring.consume()
            .context("cannot read the completions ring buffer")?;
        let mut received = received.lock().unwrap_or_else(|p| p.into_inner());
        out.append(&mut received);
        Ok(())
    }

    /// Block requests the kernel side currently tracks as in flight.
    pub fn requests_in_flight(&self) -> usize {
        self.skel.maps.requests.keys().count()
    }

    /// Walk every task in the kernel once (task iterator): track threads
    /// that are missing, stamp the ones present with `generation`. Returns
    /// how many live threads the pass could not give a slot (table full).
    pub fn reconcile(&mut self, generation: u32) -> Result<u64> {
        self.table.set_reconcile_gen(generation);
        let before = self.table.counters().seed_no_slot;
        let mut iter = Iter::new(&self.iter_link).context("cannot start the task iterator")?;
        let mut sink = Vec::new();
        iter.read_to_end(&mut sink)
            .context("task iterator failed")?;
        // Only the iterator adds to seed_no_slot, and only one pass runs at
        // a time (this one), so the difference is this pass's count.
        Ok(self.table.counters().seed_no_slot.saturating_sub(before))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Unpinned first (`Pin::drop`), then the programs are detached.
        drop(self.pinned.take());
        debug!(
            links = self.links.len(),
            perf_events = self.perf_events.len(),
            "detaching BPF programs"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_four_cache_lines() {
        // The C side asserts the same with _Static_assert.
        assert_eq!(size_of::<types::ts_thread>(), 256);
        assert_eq!(std::mem::offset_of!(types::ts_thread, comm), 64);
        assert_eq!(std::mem::offset_of!(types::ts_thread, start_ns), 128);
        assert_eq!(std::mem::offset_of!(types::ts_thread, io_seq), 192);
        assert_eq!(size_of::<types::ts_slot_ref>(), 8);
        assert_eq!(size_of::<types::ts_completion>(), 80);
    }
}
