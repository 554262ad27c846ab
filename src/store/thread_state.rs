//! Thread states as files name them (`samples.state`), and which of them
//! count as active.
//!
//! The agent decodes a state from the kernel's state word (`agent::decode`);
//! readers count and colour by these names (`report::states`). Both use
//! this one list.

/// What a thread is doing, as the scheduler knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThreadState {
    /// Running on a CPU.
    OnCpu,
    /// Runnable, waiting for a CPU.
    RunQueue,
    /// Interruptible sleep (TASK_INTERRUPTIBLE).
    Sleep,
    /// Uninterruptible sleep (TASK_UNINTERRUPTIBLE) with the thread's own
    /// block request in flight.
    Disk,
    /// Uninterruptible sleep (TASK_UNINTERRUPTIBLE) without a block request
    /// of its own in flight: a journal commit, a kernel lock, a vfork child,
    /// a page fault ... (`wait_class` says which).
    Uninterruptible,
    /// TASK_IDLE: uninterruptible but not counted as load (idle kernel threads).
    Idle,
    Stopped,
    Traced,
    /// Exited, not yet reaped by its parent.
    Zombie,
    Dead,
    /// Parked kernel thread (CPU hotplug).
    Parked,
    /// Created, not yet run.
    New,
    /// Frozen by the cgroup freezer or suspend.
    Frozen,
    /// Waiting for an rt-mutex based lock (PREEMPT_RT).
    RtLockWait,
    #[default]
    Unknown,
}

impl ThreadState {
    /// Every state, in declaration order.
    pub const ALL: [ThreadState; 15] = [
        ThreadState::OnCpu,
        ThreadState::RunQueue,
        ThreadState::Sleep,
        ThreadState::Disk,
        ThreadState::Uninterruptible,
        ThreadState::Idle,
        ThreadState::Stopped,
        ThreadState::Traced,
        ThreadState::Zombie,
        ThreadState::Dead,
        ThreadState::Parked,
        ThreadState::New,
        ThreadState::Frozen,
        ThreadState::RtLockWait,
        ThreadState::Unknown,
    ];

    /// The state a file's `state` value names.
    pub fn from_name(name: &str) -> Option<ThreadState> {
        ThreadState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The name written to files.
    pub fn name(self) -> &'static str {
        match self {
            ThreadState::OnCpu => "ON_CPU",
            ThreadState::RunQueue => "RUNQUEUE",
            ThreadState::Sleep => "SLEEP",
            ThreadState::Disk => "DISK",
            ThreadState::Uninterruptible => "UNINTERRUPTIBLE",
            ThreadState::Idle => "IDLE",
            ThreadState::Stopped => "STOPPED",
            ThreadState::Traced => "TRACED",
            ThreadState::Zombie => "ZOMBIE",
            ThreadState::Dead => "DEAD",
            ThreadState::Parked => "PARKED",
            ThreadState::New => "NEW",
            ThreadState::Frozen => "FROZEN",
            ThreadState::RtLockWait => "RTLOCK_WAIT",
            ThreadState::Unknown => "UNKNOWN",
        }
    }

    /// Sampled without --all: on CPU, runnable, uninterruptible (DISK or
    /// not), stopped or traced (and the rare states that behave like those).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ThreadState::OnCpu
                | ThreadState::RunQueue
                | ThreadState::Disk
                | ThreadState::Uninterruptible
                | ThreadState::Stopped
                | ThreadState::Traced
                | ThreadState::New
                | ThreadState::Frozen
                | ThreadState::RtLockWait
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_filter() {
        let active: Vec<_> = [
            ThreadState::OnCpu,
            ThreadState::RunQueue,
            ThreadState::Sleep,
            ThreadState::Disk,
            ThreadState::Uninterruptible,
            ThreadState::Idle,
            ThreadState::Stopped,
            ThreadState::Traced,
            ThreadState::Zombie,
        ]
        .into_iter()
        .filter(|s| s.is_active())
        .map(ThreadState::name)
        .collect();
        assert_eq!(
            active,
            [
                "ON_CPU",
                "RUNQUEUE",
                "DISK",
                "UNINTERRUPTIBLE",
                "STOPPED",
                "TRACED"
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for state in ThreadState::ALL {
            assert_eq!(ThreadState::from_name(state.name()), Some(state));
        }
    }
}
