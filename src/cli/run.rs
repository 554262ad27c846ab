//! Flags of `taskscope run`, as the user typed them.
//!
//! This only parses: no I/O, no checks that need the system. `config`
//! turns [`RunArgs`] into the agent's validated `Config`; the settings
//! file (`settings`) sets the same flags by their long names. Each flag's
//! parse test sits in this file's tests.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::parse;

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// RFC 4180 CSV with a header row, compressed with zstd (.csv.zst)
    Csv,
    /// Apache Parquet, zstd-compressed, dictionary-encoded strings (.parquet)
    Parquet,
}

/// Which stacks to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StackChoice {
    /// Kernel stacks (kstack_id, kfunc)
    Kernel,
    /// User stacks (ustack_id); frame pointers plus .eh_frame for leaves
    User,
    /// No stacks
    None,
}

/// What `--track` follows to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrackChoice {
    /// Syscalls that samples catch in progress (syscalls table)
    Syscalls,
    /// Block requests that samples see in flight (iorq table)
    Io,
}

/// How syscalls are seen (`--syscalls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyscallChoice {
    /// No per-syscall hook: syscall and arguments from the saved registers
    /// at switch-out and in on-CPU samples; syscall_us a lower bound
    Passive,
    /// A sys_enter hook on every syscall: exact syscall_us, syscall_seq
    Exact,
}

/// Flags of `taskscope run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory the sample files are written under
    ///
    /// Created (mode 0755) if missing. It must be owned by root and not
    /// writable by other users, and must not be a symlink.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/taskscope")]
    pub output_dir: PathBuf,

    /// Samples per second, 1 to 1000
    ///
    /// Every sampled thread produces one row per tick; each row carries
    /// weight_us = 1,000,000 / HZ so sums of weight_us are thread-time.
    #[arg(short = 'F', long, value_name = "HZ", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub frequency: u32,

    /// Include sleeping and idle threads
    ///
    /// By default only threads that are on a CPU, runnable, in
    /// uninterruptible sleep (DISK, UNINTERRUPTIBLE), stopped or traced are
    /// written.
    #[arg(short, long)]
    pub all: bool,

    /// Only sample this process (or thread); repeat for more
    ///
    /// The filter is applied in the kernel: other threads are not tracked
    /// at all. A PID that does not exist when sampling starts is an error.
    #[arg(short, long = "pid", value_name = "PID",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,

    /// Stop after this long: seconds, or 90s, 30m, 1h30m, '2 hours', 1d
    #[arg(short, long, value_name = "DURATION", value_parser = parse::duration)]
    pub duration: Option<Duration>,

    /// Output format: csv, parquet, or both (csv,parquet)
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        value_delimiter = ',',
        default_value = "csv"
    )]
    pub format: Vec<Format>,

    /// Stacks to capture: kernel, user, both (kernel,user) or none
    ///
    /// Samples get kstack_id, ustack_id and kfunc; the stacks table holds
    /// the symbolized frames of every id a period's samples use.
    #[arg(
        long,
        value_enum,
        value_name = "KINDS",
        value_delimiter = ',',
        default_value = "kernel,user"
    )]
    pub stacks: Vec<StackChoice>,

    /// Record how sampled syscalls and block requests end: syscalls, io,
    /// or both (syscalls,io)
    ///
    /// When a sample catches a thread inside a syscall (or with a request
    /// in flight), its exact duration and result go to the syscalls (iorq)
    /// table, joined to samples by (tid, syscall_seq / io_seq). Only sampled
    /// events are followed; tracking syscalls adds a sys_exit hook (about
    /// 50 ns to every syscall of the machine, measured).
    #[arg(long, value_enum, value_name = "KINDS", value_delimiter = ',')]
    pub track: Vec<TrackChoice>,

    /// How syscalls are seen: passive (the default) or exact
    ///
    /// passive adds nothing to a syscall: the syscall and its six arguments
    /// are read from the thread's saved registers when it switches out and
    /// in on-CPU samples, and syscall_us counts from that switch-out or
    /// sample, a lower bound (syscall_us_lower_bound). exact hooks every
    /// syscall's entry (about half a getppid() more per syscall of the
    /// machine, measured) for exact syscall_us and syscall_seq; --track
    /// syscalls implies it.
    #[arg(long, value_enum, value_name = "MODE")]
    pub syscalls: Option<SyscallChoice>,

    /// Start a new file at every multiple of this interval (UTC), 1m to 24h
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse::duration)]
    pub rotate: Duration,

    /// Make the file being written readable after a crash at least this often
    ///
    /// Data in the current file is flushed (compressed block boundary and
    /// fdatasync) at this interval, bounding what a crash can lose.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse::duration)]
    pub flush_interval: Duration,

    /// Delete the oldest periods when the output directory grows beyond this
    /// (1G, 500M, 20GB)
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse::size)]
    pub max_disk: u64,

    /// Delete periods older than this (12h, 7d, 1d12h, '30 days')
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse::duration)]
    pub max_age: Duration,

    /// Mode of the files written (octal); directories get x where files
    /// get r. 0640 with --group gives read access to one group only
    #[arg(long, value_name = "MODE", default_value = "0644", value_parser = parse::mode)]
    pub file_mode: u32,

    /// Group that owns the files and directories written (name or number)
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Size of the in-kernel thread table (default: the machine's pid and
    /// thread limits, at most 65536)
    ///
    /// Threads beyond this many are not tracked; each tick counts them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=4_194_304))]
    pub max_threads: Option<u32>,

    /// Where to pin the thread table for other readers (a bpffs directory)
    ///
    /// Skipped with a warning when no BPF filesystem is mounted there, or
    /// when a running agent owns the directory (its pin is never replaced;
    /// one left by an agent that is gone is).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/sys/fs/bpf/taskscope",
        conflicts_with = "no_pin"
    )]
    pub pin_dir: PathBuf,

    /// Do not pin the thread table
    #[arg(long)]
    pub no_pin: bool,

    /// CPU budget of the agent, in percent of one CPU (default: none)
    ///
    /// Measured every second; while over it, only every 2nd, 4th, ... tick
    /// is taken (logged), and rows carry the larger weight_us.
    #[arg(long, value_name = "PERCENT",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_cpu: Option<u32>,

    /// Copy every published file to S3-compatible object storage:
    /// s3://BUCKET/PREFIX
    ///
    /// Objects are laid out PREFIX/TABLE/date=YYYY-MM-DD/hour=HH/host=HOST/FILE
    /// (both formats if both are written). Credentials and the endpoint
    /// come from the AWS_* environment (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL), then the
    /// profile AWS_PROFILE (default "default") of ~/.aws/credentials and
    /// ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE), then a
    /// web-identity role or the instance metadata; http only to an explicit
    /// endpoint (the environment's or the profile's endpoint_url).
    /// A store that is down never stops recording: files wait in the output
    /// directory (the .shipped ledger says what left) and retention keeps
    /// them until shipped, unless over --max-disk (ticks.unshipped_deleted).
    #[arg(long, value_name = "URL")]
    pub ship_to: Option<String>,

    /// Rotation interval in seconds, below the 1m minimum (for tests)
    #[arg(long, value_name = "SECS", hide = true)]
    pub test_rotate_secs: Option<u64>,

    /// Read settings from this TOML file; flags given here win over it
    ///
    /// Keys are the long names of these flags (frequency = 10, all = true,
    /// pid = [1234]); see /etc/taskscope/taskscope.toml. Unknown keys and
    /// bad values are errors naming the file and line.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Only check that the agent could run with these settings: privileges,
    /// BTF, every hook, the output directory; print what would be degraded
    /// and exit 0 (could run) or 1 (could not), without writing anything
    #[arg(long)]
    pub check: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::{parse, run_args};
    use crate::cli::{Cli, Command};

    #[test]
    fn defaults() {
        let run = run_args(&[]);
        assert_eq!(run.output_dir, PathBuf::from("/var/lib/taskscope"));
        assert_eq!(run.frequency, 1);
        assert!(!run.all);
        assert!(run.pids.is_empty());
        assert_eq!(run.duration, None);
        assert_eq!(run.format, vec![Format::Csv]);
        assert_eq!(run.max_disk, 1 << 30);
        assert_eq!(run.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(run.file_mode, 0o644);
        assert_eq!(run.group, None);
        assert_eq!(run.rotate, Duration::from_secs(3600));
        assert_eq!(run.flush_interval, Duration::from_secs(10));
        assert_eq!(run.max_threads, None);
        assert!(!run.no_pin);
    }

    #[test]
    fn output_dir_flag() {
        assert_eq!(
            run_args(&["--output-dir", "/tmp/x"]).output_dir,
            PathBuf::from("/tmp/x")
        );
    }

    #[test]
    fn frequency_flag_accepts_1_to_1000() {
        assert_eq!(run_args(&["--frequency", "1000"]).frequency, 1000);
        assert_eq!(run_args(&["-F", "20"]).frequency, 20);
        for bad in ["0", "5000", "-1", "ten"] {
            assert!(parse(&["run", "--frequency", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn all_flag() {
        assert!(run_args(&["--all"]).all);
        assert!(run_args(&["-a"]).all);
    }

    #[test]
    fn pid_flag_repeats() {
        assert_eq!(
            run_args(&["--pid", "12", "--pid", "34", "-p", "5"]).pids,
            vec![12, 34, 5]
        );
        assert!(parse(&["run", "--pid", "0"]).is_err());
        assert!(parse(&["run", "--pid", "x"]).is_err());
    }

    #[test]
    fn duration_flag() {
        assert_eq!(
            run_args(&["--duration", "10"]).duration,
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            run_args(&["-d", "2m"]).duration,
            Some(Duration::from_secs(120))
        );
        assert!(parse(&["run", "--duration", "soon"]).is_err());
    }

    #[test]
    fn stacks_flag() {
        assert_eq!(
            run_args(&[]).stacks,
            vec![StackChoice::Kernel, StackChoice::User]
        );
        assert_eq!(
            run_args(&["--stacks", "none"]).stacks,
            vec![StackChoice::None]
        );
        assert_eq!(
            run_args(&["--stacks", "user"]).stacks,
            vec![StackChoice::User]
        );
        assert!(parse(&["run", "--stacks", "python"]).is_err());
    }

    #[test]
    fn track_flag() {
        assert!(run_args(&[]).track.is_empty());
        assert_eq!(
            run_args(&["--track", "syscalls,io"]).track,
            vec![TrackChoice::Syscalls, TrackChoice::Io]
        );
        assert_eq!(run_args(&["--track", "io"]).track, vec![TrackChoice::Io]);
        assert!(parse(&["run", "--track", "futex"]).is_err());
    }

    #[test]
    fn syscalls_flag() {
        assert_eq!(run_args(&[]).syscalls, None);
        assert_eq!(
            run_args(&["--syscalls", "exact"]).syscalls,
            Some(SyscallChoice::Exact)
        );
        assert_eq!(
            run_args(&["--syscalls", "passive"]).syscalls,
            Some(SyscallChoice::Passive)
        );
        assert!(parse(&["run", "--syscalls", "fast"]).is_err());
    }

    #[test]
    fn format_flag() {
        assert_eq!(run_args(&["--format", "csv"]).format, vec![Format::Csv]);
        assert_eq!(
            run_args(&["--format", "parquet"]).format,
            vec![Format::Parquet]
        );
        assert_eq!(
            run_args(&["--format", "csv,parquet"]).format,
            vec![Format::Csv, Format::Parquet]
        );
        assert!(parse(&["run", "--format", "json"]).is_err());
    }

    #[test]
    fn retention_flags() {
        assert_eq!(run_args(&["--max-disk", "500M"]).max_disk, 500 << 20);
        assert_eq!(
            run_args(&["--max-age", "1d"]).max_age,
            Duration::from_secs(86_400)
        );
        assert!(parse(&["run", "--max-disk", "lots"]).is_err());
    }

    #[test]
    fn permission_flags() {
        let run = run_args(&["--file-mode", "0640", "--group", "adm"]);
        assert_eq!((run.file_mode, run.group.as_deref()), (0o640, Some("adm")));
        assert!(parse(&["run", "--file-mode", "rw-r--r--"]).is_err());
    }

    #[test]
    fn rotate_flag() {
        assert_eq!(
            run_args(&["--rotate", "15m"]).rotate,
            Duration::from_secs(900)
        );
        assert!(parse(&["run", "--rotate", "1y"]).is_err());
    }

    #[test]
    fn flush_interval_flag() {
        assert_eq!(
            run_args(&["--flush-interval", "2s"]).flush_interval,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn max_cpu_flag() {
        assert_eq!(run_args(&[]).max_cpu, None);
        assert_eq!(run_args(&["--max-cpu", "5"]).max_cpu, Some(5));
        assert!(parse(&["run", "--max-cpu", "0"]).is_err());
        assert!(parse(&["run", "--max-cpu", "101"]).is_err());
    }

    #[test]
    fn max_threads_flag() {
        assert_eq!(run_args(&["--max-threads", "1024"]).max_threads, Some(1024));
        assert!(parse(&["run", "--max-threads", "1"]).is_err());
    }

    #[test]
    fn pin_flags() {
        assert_eq!(
            run_args(&["--pin-dir", "/sys/fs/bpf/x"]).pin_dir,
            PathBuf::from("/sys/fs/bpf/x")
        );
        assert!(run_args(&["--no-pin"]).no_pin);
        assert!(parse(&["run", "--no-pin", "--pin-dir", "/x"]).is_err());
    }

    #[test]
    fn durations_everywhere() {
        // The same parser behind every duration flag (cases in `parse`).
        assert_eq!(
            run_args(&["--duration", "1h30m"]).duration,
            Some(Duration::from_secs(5_400))
        );
        assert_eq!(
            run_args(&["--max-age", "1d12h"]).max_age,
            Duration::from_secs(129_600)
        );
        assert_eq!(
            run_args(&["--rotate", "2 hours"]).rotate,
            Duration::from_secs(7_200)
        );
        match parse(&[
            "report",
            "--since",
            "90s",
            "--timeline",
            "--bucket",
            "1m30s",
        ])
        .unwrap()
        .command
        {
            Command::Report(r) => assert_eq!(
                (r.window.since, r.bucket),
                (Some(Duration::from_secs(90)), Some(Duration::from_secs(90)))
            ),
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["run", "--duration", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("examples: 90s, 30m, 1h30m"), "{err}");
    }

    #[test]
    fn help_describes_every_flag() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").expect("run subcommand");
        for arg in run.get_arguments() {
            if arg.is_hide_set() {
                continue;
            }
            assert!(
                arg.get_help().is_some(),
                "--{} has no help text",
                arg.get_id()
            );
        }
    }
}
