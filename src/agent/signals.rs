//! The agent's stop and publish signals (SIGTERM, SIGINT, SIGHUP), from the
//! first instruction of `main` to the handlers that answer them.
//!
//! Their default action kills the process, and the agent's handlers
//! ([`Shutdown`]) exist only once it runs: a `systemctl reload`
//! (SIGHUP) or a stop in the first milliseconds, or during the second it
//! takes to load the BPF programs, killed the agent (exit 129) instead of
//! being answered. So `main` blocks them before anything else; a signal
//! that arrives meanwhile stays pending. The agent unblocks them right
//! after installing its handlers, which then see it; every other command
//! unblocks them before it starts, and a pending signal takes its default
//! action then, as it would have at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use tracing::info;

use super::clock::monotonic_ns;

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

/// Requests from signals: stop (SIGTERM, SIGINT) and publish now (SIGHUP).
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    publish: Arc<AtomicBool>,
    sampler: thread::Thread,
}

impl Shutdown {
    /// Stop on SIGTERM or SIGINT (set the flag, wake the calling thread);
    /// ask for publication on SIGHUP.
    pub fn install() -> Result<Shutdown> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let shutdown = Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            publish: Arc::new(AtomicBool::new(false)),
            sampler: thread::current(),
        };
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .context("cannot install signal handlers")?;
        let notify = shutdown.clone();
        thread::Builder::new()
            .name("taskscope-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        notify.publish.store(true, Ordering::SeqCst);
                        continue;
                    }
                    info!(signal, "stopping");
                    notify.request();
                    break;
                }
            })
            .context("cannot start the signal thread")?;
        Ok(shutdown)
    }

    /// Whether a publication was asked for since the last call.
    pub fn take_publish_request(&self) -> bool {
        self.publish.swap(false, Ordering::SeqCst)
    }

    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.sampler.unpark();
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleep until `deadline_ns` (CLOCK_MONOTONIC); false if asked to stop.
    pub fn sleep_until(&self, deadline_ns: u64) -> bool {
        loop {
            if self.requested() {
                return false;
            }
            let now = monotonic_ns();
            if now >= deadline_ns {
                return true;
            }
            thread::park_timeout(Duration::from_nanos(deadline_ns - now));
        }
    }
}
