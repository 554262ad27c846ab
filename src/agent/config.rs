//! What `taskscope run` receives: the validated [`Config`].
//!
//! The command line and the settings file are turned into a `Config` by
//! `cli` (which checks every flag against the others and the machine);
//! the agent only reads it.

use std::path::PathBuf;
use std::time::Duration;

use crate::bpf::{LoadOptions, StackKinds, SyscallMode, TrackKinds};
use crate::files::at::Permissions;
use crate::output::{Formats, Retention};

/// Everything `run` needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute, lexically normalised; not resolved through symlinks.
    pub output_dir: PathBuf,
    pub frequency: u32,
    pub include_all: bool,
    pub pids: Vec<u32>,
    pub duration: Option<Duration>,
    pub formats: Formats,
    pub stacks: StackKinds,
    pub track: TrackKinds,
    /// --syscalls (exact when --track syscalls).
    pub syscalls: SyscallMode,
    pub rotate: Duration,
    pub flush_interval: Duration,
    pub retention: Retention,
    pub perms: Permissions,
    pub max_threads: u32,
    pub pin_dir: Option<PathBuf>,
    pub reconcile_interval: Duration,
    /// Host name as used in file names.
    pub host: String,
    /// --max-cpu: the agent's CPU budget, percent of one CPU.
    pub max_cpu: Option<u32>,
    /// --ship-to, as given (`s3://bucket/prefix`): the shipper (`ship`,
    /// started beside the agent by `cli`) copies published periods there,
    /// and retention keeps what it has not shipped yet.
    pub ship_to: Option<String>,
}

impl Config {
    /// Sampling period.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.frequency))
    }

    /// The weight of one sample row in microseconds of thread time.
    pub fn weight_us(&self) -> u64 {
        1_000_000 / u64::from(self.frequency)
    }

    /// What the BPF loader needs, as `run` loads it (this process is not
    /// sampled; the table is pinned unless --no-pin).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            agent_tgid: std::process::id(),
            pids: self.pids.clone(),
            max_threads: self.max_threads,
            frequency: self.frequency,
            pin_dir: self.pin_dir.clone(),
            pin_permissions: self.perms,
            stacks: self.stacks,
            track: self.track,
            syscalls: self.syscalls,
        }
    }
}
