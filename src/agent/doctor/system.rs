//! What this process and this machine allow the agent: its capabilities,
//! kernel symbols, a perf event, the pin directory, the output directory,
//! and a trial load of the real programs.

use std::path::Path;

use rustix::thread::CapabilitySet;

use super::report::{finding, Finding, Level};
use crate::agent::config::Config;
use crate::bpf::probe::{is_bpffs, open_cpu_clock};
use crate::bpf::{pin_dir_holder, Agent, LoadOptions};
use crate::files::locks::Holder;

/// Capabilities the agent uses, what each is for, and the level when it
/// is missing. Measured on Linux 6.18 with a bounding set cut down by
/// `setpriv` (see packaging/taskscope.service).
const SYMBOLIZATION_CAPS: &[(CapabilitySet, &str, &str)] = &[
    (
        CapabilitySet::SYS_PTRACE,
        "CAP_SYS_PTRACE",
        "executable paths and user stacks of processes the agent does not own",
    ),
    (
        CapabilitySet::DAC_READ_SEARCH,
        "CAP_DAC_READ_SEARCH",
        "user stacks of binaries in directories the agent cannot search",
    ),
    (
        CapabilitySet::CHECKPOINT_RESTORE,
        "CAP_CHECKPOINT_RESTORE",
        "user stacks of binaries deleted or replaced since they started",
    ),
];

pub fn privilege_findings(config: &Config, effective: CapabilitySet) -> Vec<Finding> {
    let mut out = Vec::new();
    let can_load = crate::agent::privileges::allows_tracing(effective);
    out.push(if can_load {
        finding(
            Level::Ok,
            "privileges",
            "may load and attach BPF programs (CAP_BPF and CAP_PERFMON)",
        )
    } else {
        finding(
            Level::Fails,
            "privileges",
            "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root",
        )
    });
    for (cap, name, purpose) in SYMBOLIZATION_CAPS {
        let held = effective.contains(*cap)
            || (*cap == CapabilitySet::CHECKPOINT_RESTORE
                && effective.contains(CapabilitySet::SYS_ADMIN));
        out.push(if held {
            finding(Level::Ok, *name, *purpose)
        } else {
            finding(Level::Degraded, *name, format!("missing: no {purpose}"))
        });
    }
    out.push(match kernel_symbols_visible() {
        Some(true) => finding(Level::Ok, "kernel symbols", "/proc/kallsyms shows addresses"),
        Some(false) => finding(
            Level::Degraded,
            "kernel symbols",
            "/proc/kallsyms hides addresses (needs CAP_SYSLOG; kptr_restrict=2 hides them from everyone): kernel frames stay as addresses",
        ),
        None => finding(Level::Degraded, "kernel symbols", "cannot read /proc/kallsyms"),
    });
    if config.perms.group.is_some() {
        out.push(if effective.contains(CapabilitySet::CHOWN) {
            finding(Level::Ok, "CAP_CHOWN", "sets the group of files (--group)")
        } else {
            finding(
                Level::Fails,
                "CAP_CHOWN",
                "--group needs CAP_CHOWN to set the group of files",
            )
        });
    }
    out
}

/// Whether /proc/kallsyms shows real addresses to this process.
fn kernel_symbols_visible() -> Option<bool> {
    use std::io::BufRead;
    let file = std::fs::File::open("/proc/kallsyms").ok()?;
    let mut lines = std::io::BufReader::new(file).lines();
    let line = lines.next()?.ok()?;
    let address = line.split_whitespace().next()?;
    Some(address.bytes().any(|b| b != b'0'))
}

/// One cpu-clock perf event on CPU 0, as the on-CPU sampler opens them.
pub fn perf_event_finding() -> Finding {
    match open_cpu_clock(0, 1, false) {
        // Closed right away.
        Ok(_fd) => finding(
            Level::Ok,
            "perf events",
            "cpu-clock events for on-CPU sampling",
        ),
        Err(err) => finding(
            Level::Degraded,
            "perf events",
            format!("cannot open a cpu-clock event ({err}): threads on a CPU report the syscall state they were switched in with"),
        ),
    }
}

pub fn pin_finding(config: &Config) -> Finding {
    let Some(dir) = &config.pin_dir else {
        return finding(Level::Ok, "BPF filesystem", "not pinning (--no-pin)");
    };
    let parent = dir.parent().unwrap_or(dir);
    if !is_bpffs(parent) && parent == Path::new(crate::bpf::USUAL_BPFFS) {
        return finding(
            Level::Ok,
            "BPF filesystem",
            format!(
                "none mounted at {}: the agent mounts one there and pins the thread table in {}",
                parent.display(),
                dir.display()
            ),
        );
    }
    if !is_bpffs(parent) {
        return finding(
            Level::Degraded,
            "BPF filesystem",
            format!(
                "{} is not a mounted bpffs: the thread table is not pinned for other readers ({})",
                parent.display(),
                pin_advice(parent)
            ),
        );
    }
    match pin_dir_holder(dir) {
        Holder::Free => finding(
            Level::Ok,
            "BPF filesystem",
            format!("pins the thread table in {}", dir.display()),
        ),
        holder => finding(
            Level::Degraded,
            "BPF filesystem",
            format!(
                "{} belongs to a running taskscope agent{}: this one would not pin its thread table (give another --pin-dir)",
                dir.display(),
                holder.pid_text()
            ),
        ),
    }
}

/// What to do when the pin directory's parent is not a BPF filesystem.
/// Mounting one is advised only at the usual place: a mount over any other
/// directory would hide what is in it.
fn pin_advice(parent: &Path) -> String {
    const USUAL: &str = "/sys/fs/bpf";
    if parent == Path::new(USUAL) {
        format!("mount -t bpf bpf {USUAL}")
    } else {
        format!(
            "give a --pin-dir inside a mounted bpffs, such as {USUAL}/taskscope (mount -t bpf bpf \
             {USUAL} if it is not mounted)"
        )
    }
}

pub fn output_finding(config: &Config) -> Finding {
    let dir = &config.output_dir;
    match crate::output::dir::check(dir) {
        Ok(_) if dir.exists() => finding(Level::Ok, "output directory", dir.display().to_string()),
        Ok(_) => finding(
            Level::Ok,
            "output directory",
            format!("{} (will be created)", dir.display()),
        ),
        Err(err) => finding(Level::Fails, "output directory", format!("{err:#}")),
    }
}

/// Load and attach the real programs with `config`'s settings, then drop
/// them. Pins nothing, writes nothing.
pub fn trial_load(config: &Config) -> Finding {
    let loaded = Agent::load(&LoadOptions {
        pin_dir: None,
        ..config.load_options()
    });
    match loaded {
        Ok(agent) => {
            let features = agent.features();
            let detail = format!(
                "every program loaded and attached, then detached (block I/O {}, on-CPU sampling on {} CPUs, {} thread slots)",
                if features.block_io { "on" } else { "off" },
                features.oncpu_cpus,
                config.max_threads
            );
            let level = if features.block_io && features.oncpu_cpus > 0 {
                Level::Ok
            } else {
                Level::Degraded
            };
            finding(level, "load and attach", detail)
        }
        Err(err) => finding(Level::Fails, "load and attach", format!("{err:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_advice_never_mounts_over_a_directory_in_use() {
        assert_eq!(
            pin_advice(Path::new("/sys/fs/bpf")),
            "mount -t bpf bpf /sys/fs/bpf"
        );
        let advice = pin_advice(Path::new("/var/lib/pins"));
        assert!(
            !advice.contains("/var/lib/pins") && advice.contains("--pin-dir"),
            "{advice}"
        );
    }
}
