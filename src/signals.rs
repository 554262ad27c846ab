//! The agent's stop and publish signals (SIGTERM, SIGINT, SIGHUP) from the
//! first instruction of `main`.
//!
//! Their default action kills the process, and the agent's handlers
//! (`sampler::Shutdown`) exist only once it runs: a `systemctl reload`
//! (SIGHUP) or a stop in the first milliseconds, or during the second it
//! takes to load the BPF programs, killed the agent (exit 129) instead of
//! being answered. So `main` blocks them before anything else; a signal
//! that arrives meanwhile stays pending. The agent unblocks them right
//! after installing its handlers, which then see it; every other command
//! unblocks them before it starts, and a pending signal takes its default
//! action then, as it would have at once.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

fn held() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Block the stop and publish signals in the calling thread (and every
/// thread it starts from now on). Call first thing in `main`.
pub fn hold() {
    // Cannot fail with a valid `how` and set; nothing to do if it did.
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&held()), None);
}

/// Unblock them in the calling thread: pending ones are delivered now.
pub fn release() {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&held()), None);
}
