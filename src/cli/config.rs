//! Validated configuration of `taskscope run`.
//!
//! [`validate`] turns `run`'s flags into the agent's [`Config`]: it checks
//! every flag against the others and against
//! the machine (pid limits, host name, whether a --pid exists) and resolves
//! paths. It writes nothing: a bad flag is reported before any file or
//! kernel object exists.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::agent::config::Config;
use crate::bpf::{StackKinds, SyscallMode, TrackKinds};
use crate::cli::run::{Format, RunArgs, StackChoice, SyscallChoice, TrackChoice};
use crate::files::at::Permissions;
use crate::output::{Formats, Retention};

/// Largest default thread table; more needs --max-threads.
const DEFAULT_MAX_THREADS_CAP: u32 = 65_536;
/// How often the task iterator reconciles the table with the kernel.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

/// The kinds `--stacks` asks for; `none` cannot be combined.
fn stack_kinds(choices: &[StackChoice]) -> Result<StackKinds> {
    if choices.contains(&StackChoice::None) {
        if choices.len() > 1 {
            bail!("--stacks none cannot be combined with other kinds");
        }
        return Ok(StackKinds::default());
    }
    Ok(StackKinds {
        kernel: choices.contains(&StackChoice::Kernel),
        user: choices.contains(&StackChoice::User),
    })
}

/// How syscalls are seen: passive unless asked, exact for --track
/// syscalls (it follows syscalls by the entry hook's sequence numbers).
fn syscall_mode(choice: Option<SyscallChoice>, track: &[TrackChoice]) -> Result<SyscallMode> {
    let tracked = track.contains(&TrackChoice::Syscalls);
    Ok(match choice {
        Some(SyscallChoice::Passive) if tracked => bail!(
            "--track syscalls needs the syscall entry hook: use --syscalls exact (or leave --syscalls out)"
        ),
        Some(SyscallChoice::Exact) => SyscallMode::Exact,
        _ if tracked => SyscallMode::Exact,
        _ => SyscallMode::Passive,
    })
}

/// The agent's configuration from `run`'s flags: every flag checked
/// against the others and against the machine.
pub fn validate(args: &RunArgs) -> Result<Config> {
    let formats = Formats {
        csv: args.format.contains(&Format::Csv),
        parquet: args.format.contains(&Format::Parquet),
    };
    let stacks = stack_kinds(&args.stacks)?;
    let syscalls = syscall_mode(args.syscalls, &args.track)?;
    let group = args.group.as_deref().map(resolve_group).transpose()?;
    let perms = Permissions::new(args.file_mode, group)?;
    let rotate = match args.test_rotate_secs {
        Some(0) => bail!("--test-rotate-secs must be at least 1"),
        Some(secs) => Duration::from_secs(secs),
        None => {
            check_range(
                "--rotate",
                args.rotate,
                Duration::from_secs(60),
                Duration::from_secs(86_400),
            )?;
            if args.rotate.subsec_nanos() != 0 {
                bail!("--rotate must be a whole number of seconds");
            }
            args.rotate
        }
    };
    if args.max_age < rotate {
        bail!(
                "--max-age {} is shorter than --rotate {}: every file would be deleted as it is published",
                crate::store::timefmt::human_duration(args.max_age),
                crate::store::timefmt::human_duration(rotate)
            );
    }
    if args.max_disk < 64 << 10 {
        bail!("--max-disk must be at least 64KiB");
    }
    check_range(
        "--flush-interval",
        args.flush_interval,
        Duration::from_secs(1),
        Duration::from_secs(3_600),
    )?;
    if let Some(duration) = args.duration {
        if duration.is_zero() {
            bail!("--duration must be longer than 0");
        }
    }
    for pid in &args.pids {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("--pid {pid}: no such process");
        }
    }
    let max_threads = match args.max_threads {
        Some(n) => n,
        None => default_max_threads(),
    };
    Ok(Config {
        output_dir: absolute_path(&args.output_dir)?,
        frequency: args.frequency,
        include_all: args.all,
        pids: args.pids.clone(),
        duration: args.duration,
        formats,
        stacks,
        track: TrackKinds {
            syscalls: args.track.contains(&TrackChoice::Syscalls),
            io: args.track.contains(&TrackChoice::Io),
        },
        syscalls,
        rotate,
        flush_interval: args.flush_interval,
        retention: Retention {
            max_bytes: args.max_disk,
            max_age: args.max_age,
        },
        perms,
        max_threads,
        pin_dir: (!args.no_pin).then(|| args.pin_dir.clone()),
        reconcile_interval: RECONCILE_INTERVAL,
        max_cpu: args.max_cpu,
        host: crate::store::layout::host_name(),
        ship_to: ship_destination(args)?.map(|d| d.url),
    })
}

/// `--ship-to`, checked, with the AWS profile it will use (a missing,
/// unreadable or unsupported profile is a bad setting: `run` refuses to
/// start).
pub fn ship_destination(args: &RunArgs) -> Result<Option<crate::ship::Destination>> {
    let Some(url) = args.ship_to.as_deref() else {
        return Ok(None);
    };
    let destination = crate::ship::Destination::parse(url)?;
    crate::ship::profile_settings()?;
    Ok(Some(destination))
}

fn check_range(flag: &str, value: Duration, min: Duration, max: Duration) -> Result<()> {
    if value < min || value > max {
        bail!(
            "{flag} {} is out of range ({} to {})",
            crate::store::timefmt::human_duration(value),
            crate::store::timefmt::human_duration(min),
            crate::store::timefmt::human_duration(max)
        );
    }
    Ok(())
}

/// A group by name or number.
fn resolve_group(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => bail!("--group {group}: no such group"),
        Err(err) => bail!("--group {group}: cannot look it up: {err}"),
    }
}

/// The machine's own limits: no more threads can exist than pids or
/// threads-max allow.
fn default_max_threads() -> u32 {
    let read =
        |path: &str| -> Option<u32> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let pid_max = read("/proc/sys/kernel/pid_max").unwrap_or(32_768);
    let threads_max = read("/proc/sys/kernel/threads-max").unwrap_or(u32::MAX);
    pid_max.min(threads_max).clamp(16, DEFAULT_MAX_THREADS_CAP)
}

/// Make `path` absolute against the current directory and drop `.` and
/// `..` lexically. The current directory is already free of symlinks, so
/// a leading `..` is resolved the way the kernel would.
pub fn absolute_path(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        bail!("--output-dir must not be empty");
    }
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path)
    };
    let mut out = PathBuf::from("/");
    let mut seen_normal = false;
    for component in joined.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Prefix(_) => bail!("unsupported path {}", path.display()),
            Component::ParentDir => {
                if seen_normal && path.is_absolute() {
                    bail!(
                        "--output-dir {} contains '..'; give the directory's real path",
                        path.display()
                    );
                }
                out.pop();
            }
            Component::Normal(part) => {
                seen_normal = true;
                out.push(part);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config> {
        let cli =
            Cli::try_parse_from(["taskscope", "run"].iter().chain(args.iter())).expect("parses");
        match cli.command {
            Command::Run(run) => validate(&run),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn stacks() {
        assert_eq!(
            config(&[]).unwrap().stacks,
            StackKinds {
                kernel: true,
                user: true
            }
        );
        assert_eq!(
            config(&["--stacks", "kernel"]).unwrap().stacks,
            StackKinds {
                kernel: true,
                user: false
            }
        );
        assert_eq!(
            config(&["--stacks", "none"]).unwrap().stacks,
            StackKinds::default()
        );
        let err = config(&["--stacks", "none,user"]).unwrap_err().to_string();
        assert!(err.contains("--stacks none"), "{err}");
    }

    #[test]
    fn syscalls() {
        let mode = |args: &[&str]| config(args).map(|c| c.syscalls);
        assert_eq!(mode(&[]).unwrap(), SyscallMode::Passive);
        assert_eq!(mode(&["--syscalls", "exact"]).unwrap(), SyscallMode::Exact);
        // --track syscalls follows the entry hook's sequence numbers.
        assert_eq!(mode(&["--track", "syscalls"]).unwrap(), SyscallMode::Exact);
        assert_eq!(mode(&["--track", "io"]).unwrap(), SyscallMode::Passive);
        let err = mode(&["--track", "syscalls", "--syscalls", "passive"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--syscalls exact"), "{err}");
    }

    #[test]
    fn track() {
        assert_eq!(config(&[]).unwrap().track, TrackKinds::default());
        assert_eq!(
            config(&["--track", "io,syscalls"]).unwrap().track,
            TrackKinds {
                syscalls: true,
                io: true
            }
        );
    }

    #[test]
    fn formats() {
        assert_eq!(
            config(&[]).unwrap().formats,
            Formats {
                csv: true,
                parquet: false
            }
        );
        assert_eq!(
            config(&["--format", "parquet"]).unwrap().formats,
            Formats {
                csv: false,
                parquet: true
            }
        );
        assert_eq!(
            config(&["--format", "parquet,csv"]).unwrap().formats,
            Formats {
                csv: true,
                parquet: true
            }
        );
    }

    #[test]
    fn retention_and_permissions() {
        let cfg = config(&[
            "--max-disk",
            "2G",
            "--max-age",
            "2d",
            "--file-mode",
            "0640",
            "--group",
            "0",
        ])
        .unwrap();
        assert_eq!(
            cfg.retention,
            Retention {
                max_bytes: 2 << 30,
                max_age: Duration::from_secs(2 * 86_400)
            }
        );
        assert_eq!(
            cfg.perms,
            Permissions {
                file_mode: 0o640,
                dir_mode: 0o750,
                group: Some(0)
            }
        );
        assert_eq!(config(&["--group", "root"]).unwrap().perms.group, Some(0));
        assert!(config(&["--group", "no-such-group-here"])
            .unwrap_err()
            .to_string()
            .contains("no such group"));
        assert!(config(&["--file-mode", "0666"]).is_err());
        assert!(
            config(&["--max-age", "30m"]).is_err(),
            "max-age shorter than the 1h rotation"
        );
        assert!(config(&["--max-disk", "1000"]).is_err());
        assert!(config(&["--max-disk", "64K"]).is_ok());
    }

    #[test]
    fn rotate_limits() {
        assert!(config(&["--rotate", "59s"]).is_err());
        assert!(config(&["--rotate", "25h"]).is_err());
        assert!(config(&["--rotate", "1500ms"]).is_err());
        assert_eq!(
            config(&["--rotate", "1m"]).unwrap().rotate,
            Duration::from_secs(60)
        );
        assert_eq!(
            config(&["--test-rotate-secs", "2"]).unwrap().rotate,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn weight_and_period() {
        let cfg = config(&["--frequency", "50"]).unwrap();
        assert_eq!(cfg.weight_us(), 20_000);
        assert_eq!(cfg.period(), Duration::from_millis(20));
    }

    #[test]
    fn missing_pid_is_an_error() {
        let err = config(&["--pid", "4194304"]).unwrap_err().to_string();
        assert_eq!(err, "--pid 4194304: no such process");
        assert_eq!(config(&["--pid", "1"]).unwrap().pids, vec![1]);
    }

    #[test]
    fn zero_duration_is_an_error() {
        assert!(config(&["--duration", "0"]).is_err());
    }

    #[test]
    fn default_table_size_follows_the_machine() {
        let n = config(&[]).unwrap().max_threads;
        assert!((16..=DEFAULT_MAX_THREADS_CAP).contains(&n), "{n}");
        assert_eq!(config(&["--max-threads", "100"]).unwrap().max_threads, 100);
    }

    #[test]
    fn pinning_can_be_turned_off() {
        assert_eq!(
            config(&[]).unwrap().pin_dir,
            Some(PathBuf::from("/sys/fs/bpf/taskscope"))
        );
        assert_eq!(config(&["--no-pin"]).unwrap().pin_dir, None);
    }

    #[test]
    fn paths_are_made_absolute_lexically() {
        assert_eq!(
            absolute_path(Path::new("/a/./b/")).unwrap(),
            PathBuf::from("/a/b")
        );
        assert!(absolute_path(Path::new("/a/../b")).is_err());
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute_path(Path::new("data")).unwrap(), cwd.join("data"));
        assert_eq!(
            absolute_path(Path::new("../data")).unwrap(),
            cwd.parent().unwrap().join("data")
        );
        assert!(absolute_path(Path::new("")).is_err());
    }
}
