//! What the kernel offers the agent, from its BTF (no privileges
//! needed): the tracepoints `bpf::Agent::load` attaches, the iterators
//! and map types it uses. Also the feature line of `taskscope --version`.

use super::report::{finding, Finding, Level};
use crate::bpf::probe::{check_btf, kernel_at_least, kernel_has_tracepoints, VMLINUX_BTF};

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
        name: "contention_begin",
        without: Some("kernel lock waits are classified by their caller, without blocker_tid (Linux < 5.19)"),
    },
    Hook {
        name: "contention_end",
        without: Some("kernel lock waits are classified by their caller, without blocker_tid (Linux < 5.19)"),
    },
    Hook {
        name: "csd_queue_cpu",
        without: Some("wakeups handed over to the wakee's CPU by IPI have no waker_tid (Linux < 6.6)"),
    },
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
        let btf_file = check_btf().map_err(|err| format!("{err:#}"));
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
                .map(|hook| (hook.name, kernel_has_tracepoints(&[hook.name])))
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
            sleepable_iterator: kernel_at_least(5, 18),
            task_storage: map_types.iter().any(|t| t == "BPF_MAP_TYPE_TASK_STORAGE"),
            ring_buffer: map_types.iter().any(|t| t == "BPF_MAP_TYPE_RINGBUF"),
            mmapable_arrays: kernel_at_least(5, 5),
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
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = vec![match &self.btf {
            Ok(()) => finding(Level::Ok, "kernel BTF", VMLINUX_BTF),
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
    fn every_hook_the_agent_attaches_is_listed() {
        // Agent::load names each tracepoint it attaches in its error
        // messages ("cannot attach to tracepoint NAME"); each must have a
        // line here.
        let source = include_str!("../../bpf/load.rs");
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
