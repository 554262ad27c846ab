//! One thread at one tick, as the agent decoded it and the writer
//! receives it: [`Sample`] and its parts.
//!
//! The agent builds samples (`agent::decode`); the writer resolves their
//! names and stacks and turns them into the store's rows (`rows`). So the
//! type lives here, with the lowest layer that needs it.

use crate::store::thread_state::ThreadState;

/// The syscall a sampled thread is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallSample {
    pub nr: i32,
    /// Time in the syscall so far: exact when its entry was seen
    /// (`--syscalls exact`), else a lower bound (`elapsed_lower_bound`).
    pub elapsed_us: Option<u64>,
    /// `elapsed_us` counts from a moment the thread was seen inside the
    /// syscall (a switch-out, an on-CPU sample, the agent's start), not
    /// from its entry: the real time is at least this.
    pub elapsed_lower_bound: bool,
    /// The six arguments, when known for this syscall.
    pub args: Option<[u64; 6]>,
    /// The thread's syscall number (1, 2, ...) of this call, when its entry
    /// was seen: with `tid`, the key of its `syscalls` row (--track).
    pub seq: Option<u64>,
}

/// The block request a sampled thread has in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoSample {
    /// Kernel dev_t: major << 20 | minor.
    pub dev: u32,
    /// REQ_OP_* number.
    pub op: u32,
    /// `ts_io_flags` bits.
    pub flags: u32,
    pub bytes: u32,
    pub sector: u64,
    /// Age of the request (since insert, or issue if it skipped the queue).
    pub age_us: u64,
    /// The thread's request number (1, 2, ...) of this request: with
    /// `tid`, the key of its `iorq` row (--track).
    pub seq: u32,
}

/// The open file a sample's fd syscall's fd named when the thread
/// switched out in that syscall (BPF `ts_fd`): the writer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdSample {
    pub fd: i32,
    /// Address of the struct file: its identity while it is open (a cache
    /// key, never written).
    pub file: u64,
    pub ino: u64,
    pub pos: i64,
}

/// One thread at one tick, before enrichment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub tid: u32,
    pub tgid: u32,
    pub comm: [u8; 16],
    pub state: ThreadState,
    pub state_since_us: Option<u64>,
    /// `state_since_us` or the syscall's `elapsed_us` is a lower bound
    /// (the wait or syscall began before the agent started).
    pub since_lower_bound: bool,
    pub cpu: u32,
    pub syscall: Option<SyscallSample>,
    pub io: Option<IoSample>,
    pub euid: u32,
    pub cgroup_id: u64,
    /// Identity of the process image, for the executable-name cache.
    pub exe_id: u64,
    pub kthread: bool,
    /// For ON_CPU rows: when the thread was switched in (0 if unknown);
    /// decides who holds a CPU that two rows claim.
    pub running_since_ns: u64,
    /// Last switch-in and switch-out (CLOCK_MONOTONIC ns; 0 = not seen).
    pub switch_in_ns: u64,
    pub switch_out_ns: u64,
    /// The last switch-out was involuntary (still runnable) ...
    pub preempted: bool,
    /// ... and the agent's own thread took the CPU.
    pub agent_preempted: bool,
    /// Last voluntary switch-out (0 = not seen, or stacks off).
    pub wait_ns: u64,
    /// Slot of the thread in the table.
    pub slot: u32,
    /// The capture of its stacks that describes this row, if any.
    pub stack: Option<StackRef>,
    /// Who woke it and what lock it waits for (issue 13).
    pub wait: WaitSample,
    /// The file its syscall's fd names, when it is in a fd syscall and
    /// switched out in it.
    pub fd: Option<FdSample>,
    /// When the thread started (`task->start_time`, CLOCK_MONOTONIC ns):
    /// ties a process title to this very process (`titles`).
    pub start_ns: u64,
}

/// The thread that last woke a sampled thread, and the lock it waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitSample {
    /// The thread whose wakeup it runs (or waits for a CPU) after: set on
    /// ON_CPU and RUNQUEUE rows only; 0 when woken from an interrupt or
    /// not known.
    pub waker_tid: u32,
    pub waker_comm: [u8; 16],
    /// The lock it waits for, when recognized.
    pub lock: Option<LockKind>,
    /// The thread holding that lock; 0 when not known.
    pub blocker_tid: u32,
}

/// Kinds of lock a waiting thread is recognized to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Kernel `struct mutex`.
    Mutex,
    /// Kernel `struct rw_semaphore`, taken for writing / reading.
    RwsemWrite,
    RwsemRead,
    /// glibc `pthread_mutex_t` (its futex word and `__owner`).
    PthreadMutex,
    /// A priority-inheritance futex (the word holds the owner's tid).
    PiFutex,
}

impl LockKind {
    /// The name in `samples.blocker_kind`.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Mutex => "mutex",
            LockKind::RwsemWrite => "rwsem_write",
            LockKind::RwsemRead => "rwsem_read",
            LockKind::PthreadMutex => "pthread_mutex",
            LockKind::PiFutex => "pi_futex",
        }
    }

    /// A kernel lock (wait class LOCK whatever the caller).
    pub fn in_kernel(self) -> bool {
        matches!(
            self,
            LockKind::Mutex | LockKind::RwsemWrite | LockKind::RwsemRead
        )
    }
}

/// A kernel name as text: borrowed when it is UTF-8, as nearly all are
/// (checked with the standard library's word-at-a-time validation, which
/// the lossy conversion's chunk iterator is slower than), else with
/// replacement characters.
pub fn name_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// `comm`-style bytes up to their NUL.
pub fn until_nul(bytes: &[u8]) -> &[u8] {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..len]
}

impl Sample {
    /// `comm` up to its NUL.
    pub fn comm_bytes(&self) -> &[u8] {
        let len = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        &self.comm[..len]
    }
}

/// Where a sample's stacks are: a capture in the table, identified by its
/// slot and time; `raw` indexes `Tick::stacks` when the writer has not
/// seen this capture yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackRef {
    pub slot: u32,
    pub captured_ns: u64,
    pub raw: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_stays_small() {
        // A tick of 10,000 rows holds 10,000 of these in the writer's
        // queue (bounded in bytes: `tick::QUEUE_BYTES`).
        let size = std::mem::size_of::<Sample>();
        eprintln!("Sample: {size} bytes");
        assert!(size <= 384, "Sample grew to {size} bytes");
    }

    #[test]
    fn names_are_text_borrowed_or_replaced() {
        assert!(matches!(
            name_text(b"postgres"),
            std::borrow::Cow::Borrowed("postgres")
        ));
        assert_eq!(name_text(b"caf\xc3\xa9"), "café");
        assert_eq!(name_text(b"bad\xff"), "bad\u{fffd}");
        assert_eq!(until_nul(b"sh\0\0junk"), b"sh");
    }
}
