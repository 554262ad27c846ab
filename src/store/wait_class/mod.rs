//! Wait classes (`samples.wait_class`): what a thread's time goes to — the
//! CPU, the run queue, I/O, a lock, the network, another process, a timer,
//! nothing to do, memory — in the spirit of Oracle's wait classes.
//!
//! `state` is what the scheduler knows; `wait_class` is the cause, inferred
//! from the state, the syscall, the kernel function the thread waits in
//! (`kfunc`) and whether its own block request is in flight. The inference
//! is ONE ordered table of rules, [`RULES`]: the first rule that matches a
//! row decides, and the README shows the same table (a test keeps them
//! equal). Kernel functions are the most specific evidence, so their rules
//! come before the syscall rules, which serve rows without a kernel stack
//! (`--stacks user,none`, or a stack not captured yet).
//!
//! The kernel's mutex and rw-semaphore functions live in the scheduler's
//! text, so `kfunc` names their caller; a kernel lock wait is recognized by
//! the lock contention tracepoint instead (`kernel_lock`, Linux 5.19+), and
//! its rule comes before the kernel-function rules. Known limits: futex
//! waits are LOCK whether the futex is a mutex, a condition variable or a
//! semaphore; a mutex taken interruptibly (`mutex_lock_interruptible`) is
//! classified by its caller.

use crate::store::thread_state::ThreadState;

mod memo;
mod rules;
pub use memo::Memo;
pub use rules::RULES;

/// What a thread's time goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitClass {
    Cpu,
    RunQueue,
    Io,
    Lock,
    Net,
    Ipc,
    Timer,
    Idle,
    Paging,
    Other,
}

impl WaitClass {
    /// Every class, in the README's order.
    pub const ALL: [WaitClass; 10] = [
        WaitClass::Cpu,
        WaitClass::RunQueue,
        WaitClass::Io,
        WaitClass::Lock,
        WaitClass::Net,
        WaitClass::Ipc,
        WaitClass::Timer,
        WaitClass::Idle,
        WaitClass::Paging,
        WaitClass::Other,
    ];

    /// The name written to files.
    pub fn name(self) -> &'static str {
        match self {
            WaitClass::Cpu => "CPU",
            WaitClass::RunQueue => "RUNQUEUE",
            WaitClass::Io => "IO",
            WaitClass::Lock => "LOCK",
            WaitClass::Net => "NET",
            WaitClass::Ipc => "IPC",
            WaitClass::Timer => "TIMER",
            WaitClass::Idle => "IDLE",
            WaitClass::Paging => "PAGING",
            WaitClass::Other => "OTHER",
        }
    }

    /// What the class means, for the docs.
    pub fn meaning(self) -> &'static str {
        match self {
            WaitClass::Cpu => "running on a CPU",
            WaitClass::RunQueue => "runnable, waiting for a CPU",
            WaitClass::Io => "block I/O: its own request in flight, or the page-cache read, writeback, buffer or journal-commit path",
            WaitClass::Lock => "a lock: futex (pthread mutexes, condition variables, semaphores), file locks, rt-mutexes",
            WaitClass::Net => "a socket: accept, connect, receive, send",
            WaitClass::Ipc => "another process or thread: pipe, eventfd, signal wait, wait4, a vfork child, System V messages",
            WaitClass::Timer => "a timer: nanosleep, clock_nanosleep, timerfd, msleep",
            WaitClass::Idle => "waiting for work: epoll, poll or select, an idle or parked kernel thread, a sleeping kernel thread",
            WaitClass::Paging => "memory: a page fault waiting for its page, reclaim, compaction, swap",
            WaitClass::Other => "anything no rule names (stopped, traced, zombie, an unknown wait)",
        }
    }
}

/// What a row says about its thread's wait: the facts the rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitFacts<'a> {
    pub state: ThreadState,
    /// Name of the syscall the thread is in.
    pub syscall: Option<&'a str>,
    /// Innermost kernel function outside the scheduler.
    pub kfunc: Option<&'a str>,
    /// Whether the thread's own block request is in flight.
    pub own_io: bool,
    pub kthread: bool,
    /// Whether it sleeps waiting for a kernel mutex or rw-semaphore.
    pub kernel_lock: bool,
}

/// Which states a rule applies to.
#[derive(Debug, Clone, Copy)]
pub enum States {
    Any,
    /// Any state but ON_CPU and RUNQUEUE (those have their own rules).
    Waiting,
    In(&'static [ThreadState]),
}

/// What a rule asks of the syscall.
#[derive(Debug, Clone, Copy)]
pub enum Syscall {
    Any,
    /// Not in a syscall.
    None,
    In(&'static [&'static str]),
}

/// What a rule asks of the kernel function: names, or prefixes ending in
/// `*`. Compiler suffixes (`.isra.0`, `.part.0`, `.constprop.0`) are
/// ignored.
#[derive(Debug, Clone, Copy)]
pub enum Kfunc {
    Any,
    In(&'static [&'static str]),
}

/// Which threads a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    Any,
    User,
    Kernel,
}

/// One rule: when every condition holds, the row is `class`.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub states: States,
    pub thread: Thread,
    pub own_io: Option<bool>,
    /// Whether it must (or must not) wait for a kernel lock.
    pub kernel_lock: Option<bool>,
    pub syscall: Syscall,
    pub kfunc: Kfunc,
    pub class: WaitClass,
    /// Why, for the docs.
    pub note: &'static str,
}

/// Whether `name` (its compiler suffix already removed) matches `pattern`.
fn kfunc_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// `name` without a compiler suffix (`.isra.0`, `.part.0`, `.constprop.0`).
fn base_name(name: &str) -> &str {
    name.split_once('.').map_or(name, |(base, _)| base)
}

impl Rule {
    /// Whether every condition of this rule holds for `facts`.
    pub fn matches(&self, facts: &WaitFacts<'_>) -> bool {
        self.matches_base(facts, facts.kfunc.map(base_name))
    }

    /// `matches`, with the kernel function's base name computed once.
    /// Cheapest conditions first: this runs for every row written.
    fn matches_base(&self, facts: &WaitFacts<'_>, kfunc: Option<&str>) -> bool {
        let state_ok = match self.states {
            States::Any => true,
            States::Waiting => !matches!(facts.state, ThreadState::OnCpu | ThreadState::RunQueue),
            States::In(states) => states.contains(&facts.state),
        };
        let thread_ok = match self.thread {
            Thread::Any => true,
            Thread::User => !facts.kthread,
            Thread::Kernel => facts.kthread,
        };
        if !state_ok
            || !thread_ok
            || self.own_io.is_some_and(|io| io != facts.own_io)
            || self.kernel_lock.is_some_and(|k| k != facts.kernel_lock)
        {
            return false;
        }
        let syscall_ok = match self.syscall {
            Syscall::Any => true,
            Syscall::None => facts.syscall.is_none(),
            Syscall::In(names) => facts.syscall.is_some_and(|s| names.contains(&s)),
        };
        syscall_ok
            && match self.kfunc {
                Kfunc::Any => true,
                Kfunc::In(patterns) => {
                    kfunc.is_some_and(|k| patterns.iter().any(|p| kfunc_matches(p, k)))
                }
            }
    }
}

/// The class of a row: the first rule that matches.
pub fn classify(facts: &WaitFacts<'_>) -> WaitClass {
    let kfunc = facts.kfunc.map(base_name);
    RULES
        .iter()
        .find(|r| r.matches_base(facts, kfunc))
        .map_or(WaitClass::Other, |r| r.class)
}

/// The README's tables of classes and rules (between its
/// `wait-classes:begin`/`end` marks).
pub fn markdown_table() -> String {
    let mut out = String::from("| wait_class | meaning |\n| --- | --- |\n");
    for class in WaitClass::ALL {
        out.push_str(&format!("| `{}` | {} |\n", class.name(), class.meaning()));
    }
    out.push_str(
        "\nRules, first match wins (`*` ends a prefix; `kfunc` compiler suffixes such as `.isra.0` are ignored):\n\n\
         | # | state | thread | own I/O | kernel lock | syscall | kfunc | wait_class | why |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let list = |items: Vec<String>| items.join(", ");
    for (i, r) in RULES.iter().enumerate() {
        let states = match r.states {
            States::Any => "any".to_string(),
            States::Waiting => "waiting (not ON_CPU, RUNQUEUE)".to_string(),
            States::In(states) => list(states.iter().map(|s| format!("`{}`", s.name())).collect()),
        };
        let thread = match r.thread {
            Thread::Any => "any",
            Thread::User => "user",
            Thread::Kernel => "kernel",
        };
        let own_io = match r.own_io {
            None => "any",
            Some(true) => "in flight",
            Some(false) => "none",
        };
        let kernel_lock = match r.kernel_lock {
            None => "any",
            Some(true) => "waits",
            Some(false) => "no",
        };
        let syscall = match r.syscall {
            Syscall::Any => "any".to_string(),
            Syscall::None => "none".to_string(),
            Syscall::In(names) => list(names.iter().map(|n| format!("`{n}`")).collect()),
        };
        let kfunc = match r.kfunc {
            Kfunc::Any => "any".to_string(),
            Kfunc::In(names) => list(names.iter().map(|n| format!("`{n}`")).collect()),
        };
        out.push_str(&format!(
            "| {} | {states} | {thread} | {own_io} | {kernel_lock} | {syscall} | {kfunc} | `{}` | {} |\n",
            i + 1,
            r.class.name(),
            r.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        state: ThreadState,
        syscall: Option<&'static str>,
        kfunc: Option<&'static str>,
    ) -> WaitFacts<'static> {
        WaitFacts {
            state,
            syscall,
            kfunc,
            own_io: false,
            kthread: false,
            kernel_lock: false,
        }
    }

    fn class(
        state: ThreadState,
        syscall: Option<&'static str>,
        kfunc: Option<&'static str>,
    ) -> &'static str {
        classify(&facts(state, syscall, kfunc)).name()
    }

    use ThreadState::*;

    #[test]
    fn running_and_runnable() {
        assert_eq!(class(OnCpu, Some("read"), Some("pipe_read")), "CPU");
        assert_eq!(class(RunQueue, None, None), "RUNQUEUE");
    }

    #[test]
    fn what_the_ground_truth_threads_wait_on() {
        // Kernel functions as this kernel reports them.
        assert_eq!(
            class(Sleep, Some("clock_nanosleep"), Some("hrtimer_nanosleep")),
            "TIMER"
        );
        assert_eq!(class(Sleep, Some("read"), Some("anon_pipe_read")), "IPC");
        assert_eq!(class(Sleep, Some("futex"), Some("futex_do_wait")), "LOCK");
        let own = |state, syscall, kfunc| {
            classify(&WaitFacts {
                own_io: true,
                ..facts(state, syscall, kfunc)
            })
            .name()
        };
        assert_eq!(own(Disk, Some("fdatasync"), Some("submit_bio_wait")), "IO");
        // A kernel mutex or rw-semaphore wait is LOCK whatever its caller.
        let locked = |state, syscall, kfunc| {
            classify(&WaitFacts {
                kernel_lock: true,
                ..facts(state, syscall, kfunc)
            })
            .name()
        };
        assert_eq!(
            locked(Uninterruptible, Some("write"), Some("pipe_write")),
            "LOCK"
        );
        assert_eq!(
            locked(Uninterruptible, Some("fsync"), Some("ext4_sync_file")),
            "LOCK"
        );
        assert_eq!(locked(OnCpu, Some("write"), None), "CPU");
        assert_eq!(own(Disk, Some("futex"), None), "IO");
        assert_eq!(
            class(Uninterruptible, Some("fdatasync"), Some("submit_bio_wait")),
            "IO"
        );
        assert_eq!(
            class(Uninterruptible, Some("pwrite64"), Some("folio_wait_bit")),
            "IO"
        );
        assert_eq!(
            class(
                Uninterruptible,
                Some("fdatasync"),
                Some("__sync_dirty_buffer")
            ),
            "IO"
        );
        assert_eq!(
            class(
                Uninterruptible,
                Some("fdatasync"),
                Some("jbd2_log_wait_commit")
            ),
            "IO"
        );
        // The vfork parent waits for its child: no I/O at all.
        assert_eq!(
            class(Uninterruptible, Some("vfork"), Some("kernel_clone")),
            "IPC"
        );
        assert_eq!(class(Sleep, Some("pause"), Some("__do_sys_pause")), "IPC");
        assert_eq!(class(Stopped, None, Some("do_signal_stop")), "OTHER");
        assert_eq!(class(Zombie, None, None), "OTHER");
    }

    #[test]
    fn without_a_kernel_stack_the_syscall_decides() {
        assert_eq!(class(Uninterruptible, Some("fdatasync"), None), "IO");
        assert_eq!(class(Uninterruptible, Some("vfork"), None), "IPC");
        assert_eq!(class(Uninterruptible, Some("clone3"), None), "IPC");
        assert_eq!(class(Sleep, Some("futex"), None), "LOCK");
        assert_eq!(class(Sleep, Some("recvfrom"), None), "NET");
        assert_eq!(class(Sleep, Some("nanosleep"), None), "TIMER");
        assert_eq!(class(Sleep, Some("epoll_wait"), None), "IDLE");
        assert_eq!(class(Sleep, Some("read"), None), "OTHER");
        assert_eq!(class(Uninterruptible, Some("pwrite64"), None), "OTHER");
    }

    #[test]
    fn kernel_functions_beat_syscalls() {
        // read() on a socket, on a pipe, on a file whose page is being read.
        assert_eq!(class(Sleep, Some("read"), Some("sk_wait_data")), "NET");
        assert_eq!(
            class(Sleep, Some("read"), Some("unix_stream_read_generic")),
            "NET"
        );
        assert_eq!(
            class(Uninterruptible, Some("read"), Some("folio_wait_bit_common")),
            "IO"
        );
        assert_eq!(
            class(Sleep, Some("read"), Some("timerfd_read_iter")),
            "TIMER"
        );
        assert_eq!(
            class(Sleep, Some("epoll_wait"), Some("do_epoll_wait")),
            "IDLE"
        );
        assert_eq!(
            class(Sleep, Some("flock"), Some("locks_lock_inode_wait")),
            "LOCK"
        );
        // Compiler suffixes are ignored.
        assert_eq!(
            class(Sleep, Some("read"), Some("anon_pipe_read.isra.0")),
            "IPC"
        );
        assert!(!kfunc_matches("jbd2_*", "xjbd2_log"));
        assert!(kfunc_matches("do_wait", base_name("do_wait.part.0")));
        assert!(!kfunc_matches("do_wait", "do_wait_for_x"));
    }

    #[test]
    fn memory_waits_are_paging() {
        // A page fault: no syscall, waiting for a page.
        assert_eq!(
            class(Uninterruptible, None, Some("folio_wait_bit_common")),
            "PAGING"
        );
        assert_eq!(
            class(Uninterruptible, None, Some("some_fault_path")),
            "PAGING"
        );
        assert_eq!(
            class(
                Uninterruptible,
                Some("read"),
                Some("__alloc_pages_slowpath")
            ),
            "PAGING"
        );
        assert_eq!(
            class(
                Uninterruptible,
                Some("mmap"),
                Some("throttle_direct_reclaim")
            ),
            "PAGING"
        );
    }

    #[test]
    fn kernel_threads() {
        let kernel = |state, kfunc| {
            classify(&WaitFacts {
                kthread: true,
                ..facts(state, None, kfunc)
            })
            .name()
        };
        assert_eq!(kernel(Idle, Some("worker_thread")), "IDLE");
        assert_eq!(kernel(Sleep, Some("rcu_gp_kthread")), "IDLE");
        assert_eq!(kernel(Parked, Some("smpboot_thread_fn")), "IDLE");
        // What the issue saw as DISK: no I/O, no known cause.
        assert_eq!(
            kernel(Uninterruptible, Some("rcu_barrier_tasks_generic")),
            "OTHER"
        );
        assert_eq!(
            kernel(Uninterruptible, Some("jbd2_journal_commit_transaction")),
            "IO"
        );
        assert_eq!(kernel(Uninterruptible, None), "OTHER");
    }

    #[test]
    fn every_state_has_a_class_and_the_last_rule_catches_all() {
        let last = RULES.last().expect("rules");
        assert!(matches!(
            (last.states, last.thread, last.syscall, last.kfunc),
            (States::Any, Thread::Any, Syscall::Any, Kfunc::Any)
        ));
        for state in ThreadState::ALL {
            classify(&facts(state, None, None));
        }
        for r in RULES {
            assert!(
                !r.note.contains('|'),
                "{} breaks the markdown table",
                r.note
            );
        }
        let names: std::collections::BTreeSet<_> =
            WaitClass::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), WaitClass::ALL.len());
    }

    #[test]
    fn the_readme_shows_the_rules() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("<!-- wait-classes:begin -->")
            .expect("wait-classes:begin in README.md")
            + "<!-- wait-classes:begin -->".len();
        let end = readme
            .find("<!-- wait-classes:end -->")
            .expect("wait-classes:end in README.md");
        assert_eq!(
            readme[start..end].trim(),
            markdown_table().trim(),
            "README's wait class rules are stale: paste store::wait_class::markdown_table()"
        );
    }
}
