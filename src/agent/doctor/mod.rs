//! What this machine and this process allow: `taskscope doctor`,
//! `taskscope run --check` and the feature line of `taskscope --version`.
//!
//! Probes come in two kinds. Unprivileged ones read the kernel's BTF (which
//! tracepoints, map types and iterators exist) and /proc; they are cheap
//! and also feed `--version`. The check then does what `run` would do
//! short of sampling: it checks the output directory without creating it,
//! opens a cpu-clock perf event, and loads and attaches the real BPF
//! programs with the real settings (then detaches them, pinning nothing).
//!
//! The one decision a reader must know: the trial load is the authority.
//! The per-hook lines explain a failure or a degradation, but whether the
//! agent can run is decided by `bpf::Agent::load` itself — the same code,
//! the same optional/required split — so the check cannot drift from the
//! agent.

mod kernel;
mod report;
mod system;

use anyhow::Result;
use rustix::thread::CapabilitySet;

use crate::agent::config::Config;
use crate::error::Outcome;
pub use kernel::{version_text, KernelFeatures};
use report::finding;
pub use report::{report, Finding, Level};
use system::{output_finding, perf_event_finding, pin_finding, privilege_findings, trial_load};

/// Everything `run --check` looks at, in report order.
pub fn findings(config: &Config) -> Vec<Finding> {
    let effective = rustix::thread::capabilities(None)
        .map(|sets| sets.effective)
        .unwrap_or(CapabilitySet::empty());
    let kernel = KernelFeatures::probe();
    let mut out = kernel.findings();
    out.extend(privilege_findings(config, effective));
    out.push(perf_event_finding());
    out.push(pin_finding(config));
    out.push(output_finding(config));
    let can_load = out.iter().all(|f| f.level != Level::Fails);
    out.push(if can_load {
        trial_load(config)
    } else {
        finding(
            Level::Fails,
            "load and attach",
            "not tried: see the failures above",
        )
    });
    out
}

/// `taskscope run --check` (and `doctor`): print the report; refused
/// (exit 1) if the agent could not run.
pub fn check(config: &Config) -> Result<Outcome> {
    let findings = findings(config);
    print!(
        "taskscope {} (commit {}), kernel {}\n\n{}",
        env!("CARGO_PKG_VERSION"),
        env!("TASKSCOPE_GIT_COMMIT"),
        rustix::system::uname().release().to_string_lossy(),
        report(&findings)
    );
    let fails = findings.iter().any(|f| f.level == Level::Fails);
    Ok(if fails {
        Outcome::Refused
    } else {
        Outcome::Done
    })
}
