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

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use rustix::thread::CapabilitySet;

use crate::agent::config::Config;
use crate::bpf::{self, Agent, LoadOptions};
use crate::cli_admin::DoctorArgs;

/// How a finding bears on running the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Runs, with less information.
    Degraded,
    /// The agent cannot run.
    Fails,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Degraded => "degraded",
            Level::Fails => "FAILS",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    pub detail: String,
}

fn finding(level: Level, what: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding {
        level,
        what: what.into(),
        detail: detail.into(),
    }
}

/// A BPF tracepoint the agent attaches to, and what is lost without it.
struct Hook {
    name: &'static str,
    /// None: required (the agent does not start without it).
    without: Option<&'static str>,
}

/// The tracepoints `bpf::Agent::load` attaches, in its order.
const HOOKS: &[Hook] = &[
    Hook { name: "sched_switch", without: None },
    Hook { name: "sched_wakeup", without: None },
    Hook { name: "sched_wakeup_new", without: None },
    Hook { name: "sched_process_fork", without: None },
    Hook { name: "sched_process_exec", without: None },
    Hook { name: "sched_process_free", without: None },
    Hook { name: "sys_enter", without: None },
    Hook { name: "sys_exit", without: Some("--track syscalls cannot record how sampled syscalls end") },
    Hook { name: "block_rq_insert", without: Some("io_* columns stay empty") },
    Hook { name: "block_rq_issue", without: Some("io_* columns stay empty") },
    Hook { name: "block_rq_complete", without: Some("io_* columns stay empty") },
    Hook { name: "block_rq_merge", without: Some("io_* columns stay empty") },
    Hook {
        name: "block_io_start",
        without: Some("requests are attributed when issued, not when built (Linux < 6.5): waits inside cache flushes lack io_*"),
    },
];

/// What the kernel offers, from its BTF (no privileges needed).
#[derive(Debug, Clone)]
pub struct KernelFeatures {
    pub release: String,
    pub machine: String,
    pub btf: Result<(), String>,
    /// (tracepoint, present)
    pub tracepoints: Vec<(&'static str, bool)>,
    pub task_iterator: bool,
    pub sleepable_iterator: bool,
    pub task_storage: bool,
    pub ring_buffer: bool,
    pub mmapable_arrays: bool,
}

impl KernelFeatures {
    /// Probe the running kernel.
    pub fn probe() -> KernelFeatures {
        let uname = rustix::system::uname();
        let btf_file = bpf::check_btf().map_err(|err| format!("{err:#}"));
        let vmlinux = libbpf_rs::btf::Btf::from_vmlinux().ok();
        let has_struct = |name: &str| {
            vmlinux.as_ref().is_some_and(|btf| {
                btf.type_by_name::<libbpf_rs::btf::types::Struct<'_>>(name)
                    .is_some()
            })
        };
        let map_types: Vec<String> = vmlinux
            .as_ref()
            .and_then(|btf| btf.type_by_name::<libbpf_rs::btf::types::Enum<'_>>("bpf_map_type"))
            .map(|types| {
                types
                    .iter()
                    .filter_map(|m| Some(m.name?.to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let tracepoints = if vmlinux.is_some() {
            HOOKS
                .iter()
                .map(|hook| (hook.name, bpf::kernel_has_tracepoints(&[hook.name])))
                .collect()
        } else {
            HOOKS.iter().map(|hook| (hook.name, false)).collect()
        };
        KernelFeatures {
            release: uname.release().to_string_lossy().into_owned(),
            machine: uname.machine().to_string_lossy().into_owned(),
            btf: btf_file,
            tracepoints,
            task_iterator: has_struct("bpf_iter__task"),
            sleepable_iterator: bpf::kernel_at_least(5, 18),
            task_storage: map_types.iter().any(|t| t == "BPF_MAP_TYPE_TASK_STORAGE"),
            ring_buffer: map_types.iter().any(|t| t == "BPF_MAP_TYPE_RINGBUF"),
            mmapable_arrays: bpf::kernel_at_least(5, 5),
        }
    }

    /// `+btf +sched_switch … -block_io_start`: one word per feature.
    pub fn summary(&self) -> String {
        let mut words = vec![(self.btf.is_ok(), "btf".to_string())];
        for (name, present) in &self.tracepoints {
            words.push((*present, (*name).to_string()));
        }
        words.push((self.task_iterator, "iter/task".into()));
        words.push((self.sleepable_iterator, "iter.s/task".into()));
        words.push((self.task_storage, "task_storage".into()));
        words.push((self.mmapable_arrays, "mmap_array".into()));
        words.push((self.ring_buffer, "ringbuf".into()));
        words
            .iter()
            .map(|(present, name)| format!("{}{name}", if *present { '+' } else { '-' }))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The findings these features make.
    fn findings(&self) -> Vec<Finding> {
        let mut out = vec![match &self.btf {
            Ok(()) => finding(Level::Ok, "kernel BTF", bpf::VMLINUX_BTF),
            Err(err) => finding(Level::Fails, "kernel BTF", err.clone()),
        }];
        for (hook, (name, present)) in HOOKS.iter().zip(&self.tracepoints) {
            let what = format!("tp_btf/{name}");
            out.push(match (present, hook.without) {
                (true, _) => finding(Level::Ok, what, ""),
                (false, None) => finding(Level::Fails, what, "not in the kernel's BTF; required"),
                (false, Some(without)) => finding(Level::Degraded, what, without),
            });
        }
        out.push(if self.task_iterator {
            finding(
                Level::Ok,
                "iter/task",
                "seeds and reconciles the thread table",
            )
        } else {
            finding(
                Level::Fails,
                "iter/task",
                "no task iterator (Linux 5.8+); required",
            )
        });
        out.push(if self.sleepable_iterator {
            finding(
                Level::Ok,
                "iter.s/task",
                "refreshes stacks of threads that wait without switching",
            )
        } else {
            finding(
                Level::Degraded,
                "iter.s/task",
                "Linux < 5.18: stacks of threads that wait without switching are not refreshed",
            )
        });
        out.push(if self.task_storage {
            finding(Level::Ok, "task storage", "")
        } else {
            finding(
                Level::Fails,
                "task storage",
                "BPF_MAP_TYPE_TASK_STORAGE missing (Linux 5.11+); required",
            )
        });
        out.push(if self.mmapable_arrays {
            finding(
                Level::Ok,
                "mmap-able arrays",
                "the sampler reads the thread table without syscalls",
            )
        } else {
            finding(
                Level::Fails,
                "mmap-able arrays",
                "BPF_F_MMAPABLE needs Linux 5.5+; required",
            )
        });
        out.push(finding(
            Level::Ok,
            "ring buffer",
            if self.ring_buffer {
                "available"
            } else {
                "not available (not needed today)"
            },
        ));
        out
    }
}

/// `taskscope --version`: version, commit, kernel and its features.
pub fn version_text() -> String {
    let features = KernelFeatures::probe();
    format!(
        "taskscope {}\ncommit {}\nkernel {} ({})\nfeatures {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("TASKSCOPE_GIT_COMMIT"),
        features.release,
        features.machine,
        features.summary()
    )
}

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

fn privilege_findings(config: &Config, effective: CapabilitySet) -> Vec<Finding> {
    let mut out = Vec::new();
    let can_load = super::privileges::allows_tracing(effective);
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
fn perf_event_finding() -> Finding {
    use libbpf_rs::libbpf_sys::{
        perf_event_attr, PERF_COUNT_SW_CPU_CLOCK, PERF_FLAG_FD_CLOEXEC, PERF_TYPE_SOFTWARE,
    };
    use std::os::fd::FromRawFd;
    // SAFETY: perf_event_attr is plain-old-data; all-zero is its default.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = PERF_TYPE_SOFTWARE;
    attr.size = size_of::<perf_event_attr>() as u32;
    attr.config = u64::from(PERF_COUNT_SW_CPU_CLOCK);
    attr.__bindgen_anon_1.sample_period = 1_000_000_000;
    attr.set_disabled(1);
    // SAFETY: perf_event_open with a valid attr; the fd it returns is
    // owned (and closed) right away.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const perf_event_attr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return finding(
            Level::Degraded,
            "perf events",
            format!("cannot open a cpu-clock event ({err}): threads on a CPU report the syscall state they were switched in with"),
        );
    }
    // SAFETY: a new fd owned by nobody else.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
    finding(
        Level::Ok,
        "perf events",
        "cpu-clock events for on-CPU sampling",
    )
}

fn pin_finding(config: &Config) -> Finding {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Some(dir) = &config.pin_dir else {
        return finding(Level::Ok, "BPF filesystem", "not pinning (--no-pin)");
    };
    let parent = dir.parent().unwrap_or(dir);
    match rustix::fs::statfs(parent) {
        Ok(fs) if fs.f_type == BPF_FS_MAGIC => match pin_dir_holder(dir) {
            crate::files::locks::Holder::Free => {
                finding(Level::Ok, "BPF filesystem", format!("pins the thread table in {}", dir.display()))
            }
            holder => finding(
                Level::Degraded,
                "BPF filesystem",
                format!(
                    "{} belongs to a running taskscope agent{}: this one would not pin its thread table (give another --pin-dir)",
                    dir.display(),
                    holder.pid_text()
                ),
            ),
        },
        _ => finding(
            Level::Degraded,
            "BPF filesystem",
            format!(
                "{} is not a mounted bpffs: the thread table is not pinned for other readers ({})",
                parent.display(),
                pin_advice(parent)
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

/// Who holds the pin directory's lock (free if there is no directory).
fn pin_dir_holder(dir: &std::path::Path) -> crate::files::locks::Holder {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .and_then(|fd| crate::files::locks::flock_holder(&fd).ok())
    .unwrap_or(crate::files::locks::Holder::Free)
}

fn output_finding(config: &Config) -> Finding {
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
fn trial_load(config: &Config) -> Finding {
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

/// The report and the verdict line.
pub fn report(findings: &[Finding]) -> String {
    let mut out = String::new();
    let width = findings.iter().map(|f| f.what.len()).max().unwrap_or(0);
    for f in findings {
        let _ = writeln!(
            out,
            "{:<8} {:<width$}  {}",
            f.level.label(),
            f.what,
            f.detail
        );
    }
    let failed: Vec<&str> = findings
        .iter()
        .filter(|f| f.level == Level::Fails)
        .map(|f| f.what.as_str())
        .collect();
    let degraded: Vec<&str> = findings
        .iter()
        .filter(|f| f.level == Level::Degraded)
        .map(|f| f.what.as_str())
        .collect();
    out.push('\n');
    if failed.is_empty() {
        let _ = write!(out, "taskscope can run here");
        if degraded.is_empty() {
            out.push_str(", with every feature.\n");
        } else {
            let _ = writeln!(out, ", degraded: {}.", degraded.join(", "));
        }
    } else {
        let _ = writeln!(out, "taskscope cannot run here: {}.", failed.join(", "));
    }
    out
}

/// `taskscope run --check`: print the report; exit 0 if the agent could
/// run, 1 if not.
pub fn check(config: &Config) -> Result<ExitCode> {
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
        ExitCode::from(crate::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// `taskscope doctor [--config FILE]`: `run --check` with those settings.
pub fn doctor(args: &DoctorArgs) -> Result<ExitCode> {
    let mut argv: Vec<std::ffi::OsString> =
        vec!["taskscope".into(), "run".into(), "--check".into()];
    if let Some(path) = &args.config {
        argv.push("--config".into());
        argv.push(path.into());
    }
    let cli = match crate::config_file::parse_command_line(argv) {
        Ok(cli) => cli,
        Err(failure) => return Ok(failure.exit()),
    };
    let crate::cli::Command::Run(run) = cli.command else {
        anyhow::bail!("internal error: `taskscope run --check` did not parse as run");
    };
    match Config::from_args(&run) {
        Ok(config) => check(&config),
        Err(err) => {
            eprintln!("taskscope: error: {err:#}");
            Ok(ExitCode::from(crate::EXIT_USAGE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_what_the_agent_needs() {
        // The project's machines run 6.18 with BTF (DESIGN.md).
        let features = KernelFeatures::probe();
        assert!(features.btf.is_ok());
        assert!(
            features.tracepoints.iter().all(|(_, present)| *present),
            "{features:?}"
        );
        assert!(features.task_iterator && features.task_storage && features.ring_buffer);
        let summary = features.summary();
        assert!(summary.starts_with("+btf +sched_switch"), "{summary}");
        assert!(!summary.contains(" -"), "{summary}");
    }

    #[test]
    fn report_verdicts() {
        let ok = finding(Level::Ok, "a", "");
        let degraded = finding(Level::Degraded, "b", "less");
        let fails = finding(Level::Fails, "c", "no");
        assert!(report(std::slice::from_ref(&ok))
            .ends_with("taskscope can run here, with every feature.\n"));
        assert!(report(&[ok.clone(), degraded.clone()]).ends_with("can run here, degraded: b.\n"));
        let text = report(&[ok, degraded, fails]);
        assert!(text.ends_with("taskscope cannot run here: c.\n"), "{text}");
        assert!(text.contains("FAILS    c  no"), "{text}");
    }

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

    #[test]
    fn every_hook_the_agent_attaches_is_listed() {
        // Agent::load names each tracepoint it attaches in its error
        // messages ("cannot attach to tracepoint NAME"); each must have a
        // line here.
        let source = include_str!("../../bpf/mod.rs");
        for attached in source.split("(\"").skip(1) {
            let Some(name) = attached.split('"').next() else {
                continue;
            };
            let is_hook = source.contains(&format!("cannot attach to tracepoint {name}"))
                || source.contains(&format!("(\"{name}\", &progs."));
            if is_hook {
                assert!(
                    HOOKS.iter().any(|h| h.name == name),
                    "doctor does not list {name}"
                );
            }
        }
    }
}
