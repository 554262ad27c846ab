//! Whether this process may load and attach the BPF programs.
//!
//! Checked before anything else happens, so an unprivileged user gets one
//! clear sentence instead of an EPERM from deep inside libbpf, and nothing
//! is written.

use anyhow::{bail, Result};
use rustix::thread::{capabilities, CapabilitySet};

/// Fail unless the effective capabilities allow loading tracing programs:
/// CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN.
pub fn check_can_trace() -> Result<()> {
    let effective = match capabilities(None) {
        Ok(sets) => sets.effective,
        Err(err) => bail!("cannot read this process's capabilities: {err}"),
    };
    if allows_tracing(effective) {
        return Ok(());
    }
    bail!(
        "taskscope run needs root: loading its BPF programs requires CAP_BPF and CAP_PERFMON \
         (or CAP_SYS_ADMIN); run it as root or with sudo"
    )
}

/// Whether `effective` capabilities may load and attach tracing programs.
pub fn allows_tracing(effective: CapabilitySet) -> bool {
    effective.contains(CapabilitySet::SYS_ADMIN)
        || effective.contains(CapabilitySet::BPF | CapabilitySet::PERFMON)
}

/// Raise the soft limit of open files to the hard limit (at most 65,536):
/// symbolization keeps the binaries of sampled processes open (at most a
/// few hundred) so that files deleted or replaced since still symbolize,
/// and the usual soft limit of 1,024 is shared with the output files.
pub fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let wanted = limit.maximum.unwrap_or(65_536).min(65_536);
    if limit.current.is_some_and(|current| current < wanted) {
        limit.current = Some(wanted);
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(%err, "cannot raise the open-file limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_rules() {
        assert!(allows_tracing(CapabilitySet::SYS_ADMIN));
        assert!(allows_tracing(CapabilitySet::BPF | CapabilitySet::PERFMON));
        assert!(!allows_tracing(CapabilitySet::BPF));
        assert!(!allows_tracing(CapabilitySet::PERFMON));
        assert!(!allows_tracing(CapabilitySet::empty()));
    }
}
