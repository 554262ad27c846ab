//! Command-line flags as the user typed them.
//!
//! This module only parses: no I/O, no checks that need the system. The
//! `config` module turns [`RunArgs`] into a validated `Config`. Every flag's
//! parse test sits in this file's tests, next to the others of its kind.
//! What users type for a duration, size, mode, time or day is parsed by
//! [`parse`], for every flag and the settings file alike; [`window`] turns
//! the time flags of the reading commands into a window.

pub mod parse;
pub mod window;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str =
    "Always-on thread-state sampling for Linux (Active Session History for threads)";

const LONG_ABOUT: &str = "\
taskscope samples the state of every thread on the machine at a fixed rate \
(on CPU, waiting for a CPU, sleeping, waiting for disk, stopped, ...) together \
with the syscall it is in and the block I/O it waits for, and writes the samples \
to rotating, compressed files that DuckDB and awk read directly.

eBPF hooks keep each thread's state current in the kernel; the sampler only \
reads that table, so sampling costs the same on an idle and a busy machine.";

/// taskscope command line.
#[derive(Debug, Parser)]
#[command(name = "taskscope", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// More log output: -v for debug, -vv for trace
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sample thread states into the output directory until stopped
    ///
    /// Runs until SIGINT or SIGTERM (or --duration), then publishes the
    /// current files and exits 0. Needs root (CAP_BPF and CAP_PERFMON).
    Run(RunArgs),
    /// Print the columns of every output table, with types and descriptions
    Schema(SchemaArgs),
    /// Summarise the files: average active threads by state, syscall, ...
    ///
    /// The Active-Session-History view: sample rows weighted by weight_us
    /// and divided by the time sampled give the average number of threads
    /// in each group. Active threads only (on CPU, runnable, in disk or
    /// other uninterruptible waits, stopped, traced) unless --all-states.
    /// Reads only the files (any user who can read them), including the
    /// period being written up to its last flush; on an imported archive
    /// the default window is the archive's. --latency shows the durations
    /// recorded by `run --track`; --timeline draws active threads over
    /// time.
    ///
    /// Exit status: 0 a complete answer; 1 no data in the window (the
    /// message says where the data is) or another error; 2 bad flags; 3 an
    /// incomplete answer: files that could not be read are named on stderr,
    /// one line each, and their periods left out.
    Report(ReportArgs),
    /// Draw an SVG flame graph of the sampled stacks (on- and off-CPU)
    ///
    /// Each sample counts its weight_us; the root frames are thread states,
    /// then thread names, and every frame is coloured by the state at its
    /// root. Active threads only unless --all-states. Refuses to write the
    /// SVG to a terminal: give -o FILE. Exit status as for report.
    Flamegraph(FlamegraphArgs),
    // Administration (issue 6): flags in `cli_admin`.
    /// Write one archive of every table for a time window (any user who
    /// can read the data)
    ///
    /// The archive (.tar.zst) holds the files of every period that overlaps
    /// the window and a manifest.json with host, kernel, agent version,
    /// frequency, time range, row counts and SHA-256 checksums.
    Export(crate::cli_admin::ExportArgs),
    /// Extract an export archive into a directory and verify its checksums
    Import(crate::cli_admin::ImportArgs),
    /// Check whether the agent could run here (BTF, privileges, each hook)
    /// and what would be degraded; writes nothing
    ///
    /// The same check as `taskscope run --check`. Exits 0 if the agent
    /// could run, 1 if not.
    Doctor(crate::cli_admin::DoctorArgs),
    /// Print a file generated from this command line: the man page or the
    /// default settings file
    #[command(hide = true)]
    Generate(crate::cli_admin::GenerateArgs),
}

/// Which files and rows a reading command looks at.
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// The agent's output directory
    #[arg(long, value_name = "DIR", default_value = "/var/lib/taskscope")]
    pub dir: PathBuf,

    /// Window ending now (or at --to): 30m, 1h30m, '2 hours', 1d12h
    /// [default: 1h, or an imported archive's own window]
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, conflicts_with = "from")]
    pub since: Option<Duration>,

    /// Start of the window: '2026-11-22 03:00' (UTC), with seconds or a
    /// fraction, an offset ('2026-11-22 04:00+01:00', ...Z) or a date alone
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    pub from: Option<i64>,

    /// End of the window (excluded), same forms as --from [default: now]
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    pub to: Option<i64>,
}

impl WindowArgs {
    /// The window flags, for [`window::WindowFlags::resolve`].
    pub fn flags(&self) -> window::WindowFlags {
        window::WindowFlags {
            from: self.from,
            to: self.to,
            since: self.since,
            day: None,
        }
    }
}

/// Output of `taskscope report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns (and charts) for a terminal
    Table,
    /// CSV with a header row
    Csv,
    /// One JSON document
    Json,
}

/// The table `report --latency` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LatencyOf {
    /// Syscalls (table syscalls; `run --track syscalls`)
    Syscalls,
    /// Block requests (table iorq; `run --track io`)
    Io,
}

/// Flags of `taskscope report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub window: WindowArgs,

    /// Columns to group by, comma-separated [default: state,comm,syscall,kfunc;
    /// with --latency: syscall, or dev,op]
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    pub by: Vec<String>,

    /// Only rows for which this SQL predicate is true, e.g.
    /// "state = 'DISK' AND comm LIKE 'postgres%'"
    #[arg(long = "where", value_name = "PREDICATE")]
    pub filter: Option<String>,

    /// Show at most this many groups
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Output format
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,

    /// Durations of tracked syscalls (default) or block requests: count,
    /// avg, p50/p95/p99/max and a log2 histogram per group
    #[arg(long, value_enum, value_name = "OF", num_args = 0..=1,
          default_missing_value = "syscalls", conflicts_with = "timeline")]
    pub latency: Option<LatencyOf>,

    /// Average active threads per time bucket, by state, as a chart
    #[arg(long)]
    pub timeline: bool,

    /// Bucket width of --timeline [default: about 40 buckets over the data
    /// found]
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, requires = "timeline")]
    pub bucket: Option<Duration>,

    /// Count threads in every state, sleeping and idle ones too (default:
    /// only active threads)
    #[arg(long)]
    pub all_states: bool,
}

/// Flags of `taskscope flamegraph`.
#[derive(Debug, Args)]
pub struct FlamegraphArgs {
    #[command(flatten)]
    pub window: WindowArgs,

    /// Only samples for which this SQL predicate is true
    #[arg(long = "where", value_name = "PREDICATE")]
    pub filter: Option<String>,

    /// Stacks to draw: kernel, user or both
    #[arg(
        long,
        value_enum,
        value_name = "KINDS",
        value_delimiter = ',',
        default_value = "kernel,user"
    )]
    pub kind: Vec<StackChoice>,

    /// Write here instead of standard output (a new file, a device or a
    /// FIFO; never through a symlink)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace the -o file if it exists (only a regular file is replaced)
    #[arg(long, requires = "output")]
    pub force: bool,

    /// Write folded stacks (`frame;frame weight` lines) instead of SVG
    #[arg(long)]
    pub folded: bool,

    /// Title of the graph
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,

    /// Draw threads in every state, sleeping and idle ones too (default:
    /// only active threads)
    #[arg(long)]
    pub all_states: bool,
}

/// How `taskscope schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// Aligned plain text
    Text,
    /// Markdown tables (as in the README)
    Markdown,
}

/// Flags of `taskscope schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = SchemaFormat::Text)]
    pub format: SchemaFormat,
}

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
    /// uninterruptible sleep (DISK), stopped or traced are written.
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

/// Print a clap error and exit 2: clap's whole message (what is wrong,
/// the valid values, "did you mean" tips, the usage line), behind the
/// `taskscope: ` that starts every error. Help and version requests print
/// normally and exit 0.
pub fn exit_on_parse_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayVersion => {
            // Version, commit and the kernel's features (issue 6).
            print!("{}", crate::agent::doctor::version_text());
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(crate::EXIT_USAGE)
        }
        _ => {
            eprint!("{}", usage_error(&err));
            ExitCode::from(crate::EXIT_USAGE)
        }
    }
}

/// clap's rendered message, plain text, prefixed with `taskscope: `.
fn usage_error(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut text = format!("taskscope: {}", rendered.trim_start());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// clap's message folded into one line, without the usage and the pointer
/// to --help ("invalid value 'json' for '--format <FORMAT>' [possible
/// values: csv, parquet]"): for messages that name a file and line, such
/// as the settings file's.
pub fn clap_message_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line);
        }
    }
    let first = parts.first().copied().unwrap_or("error: invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let mut line = first.trim_end_matches(':').to_string();
    let mut rest = parts.iter().skip(1);
    if first.ends_with(':') {
        if let Some(next) = rest.next() {
            line = format!("{first} {next}");
        }
    }
    for part in rest {
        if part.starts_with('[') {
            line = format!("{line} {part}");
        } else {
            line = format!("{line} ({part})");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("taskscope").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        match parse(&all).expect("parses").command {
            Command::Run(run) => run,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn schema_format_flag() {
        for (args, want) in [
            (vec!["schema"], SchemaFormat::Text),
            (
                vec!["schema", "--format", "markdown"],
                SchemaFormat::Markdown,
            ),
        ] {
            match parse(&args).unwrap().command {
                Command::Schema(schema) => assert_eq!(schema.format, want),
                other => panic!("parsed as {other:?}"),
            }
        }
        assert!(parse(&["schema", "--format", "html"]).is_err());
    }

    #[test]
    fn report_flags() {
        let report = |args: &[&str]| {
            let mut all = vec!["report"];
            all.extend_from_slice(args);
            match parse(&all).expect("parses").command {
                Command::Report(report) => report,
                other => panic!("parsed as {other:?}"),
            }
        };
        let r = report(&[]);
        assert_eq!(r.window.dir, PathBuf::from("/var/lib/taskscope"));
        assert_eq!(
            (r.top, r.format, r.latency, r.timeline),
            (20, ReportFormat::Table, None, false)
        );
        let r = report(&[
            "--since",
            "2h",
            "--by",
            "state,comm",
            "--where",
            "tid = 1",
            "--format",
            "json",
        ]);
        assert_eq!(r.window.since, Some(Duration::from_secs(7_200)));
        assert_eq!(r.by, vec!["state", "comm"]);
        assert_eq!(r.filter.as_deref(), Some("tid = 1"));
        assert_eq!(report(&["--latency"]).latency, Some(LatencyOf::Syscalls));
        assert_eq!(report(&["--latency", "io"]).latency, Some(LatencyOf::Io));
        assert!(report(&["--timeline", "--bucket", "5m"]).bucket.is_some());
        assert!(parse(&["report", "--since", "1h", "--from", "2026-11-22 03:00"]).is_err());
        assert!(parse(&["report", "--latency", "--timeline"]).is_err());
        assert!(parse(&["report", "--bucket", "5m"]).is_err());
        assert!(parse(&["report", "--format", "xml"]).is_err());
    }

    #[test]
    fn flamegraph_flags() {
        match parse(&["flamegraph", "--kind", "user", "-o", "x.svg", "--folded"])
            .unwrap()
            .command
        {
            Command::Flamegraph(f) => {
                assert_eq!(f.kind, vec![StackChoice::User]);
                assert_eq!(f.output, Some(PathBuf::from("x.svg")));
                assert!(f.folded);
                assert!(!f.force);
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["flamegraph", "-o", "x.svg", "--force"])
            .unwrap()
            .command
        {
            Command::Flamegraph(f) => assert!(f.force),
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            parse(&["flamegraph", "--force"]).is_err(),
            "--force needs -o"
        );
    }

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
    fn verbose_flag_counts() {
        assert_eq!(parse(&["-vv", "run"]).unwrap().verbose, 2);
        assert_eq!(parse(&["run", "-v"]).unwrap().verbose, 1);
    }

    #[test]
    fn usage_errors_keep_clap_s_whole_message() {
        // Missing arguments are listed (the first line alone says "were not
        // provided:" and nothing more).
        let err = parse(&["export", "--since", "1h"]).unwrap_err();
        let text = usage_error(&err);
        assert!(
            text.starts_with("taskscope: error: the following required arguments were not provided:\n  --output <PATH>"),
            "{text}"
        );
        assert!(text.contains("Usage: taskscope export"), "{text}");
        assert_eq!(
            clap_message_line(&err),
            "the following required arguments were not provided: --output <PATH>"
        );
        // Valid values and tips stay.
        let err = parse(&["run", "--format", "json"]).unwrap_err();
        assert!(usage_error(&err).contains("[possible values: csv, parquet]"));
        assert_eq!(
            clap_message_line(&err),
            "invalid value 'json' for '--format <FORMAT>' [possible values: csv, parquet]"
        );
        let err = parse(&["report", "--form", "2026-11-30"]).unwrap_err();
        let text = usage_error(&err);
        assert!(
            text.starts_with("taskscope: error: unexpected argument '--form'")
                && text.contains("tip: a similar argument exists: '--from'"),
            "{text}"
        );
        let err = parse(&["run", "--bogus"]).unwrap_err();
        assert_eq!(
            clap_message_line(&err),
            "unexpected argument '--bogus' found"
        );
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
    fn window_times() {
        let window = |args: &[&str]| {
            let mut all = vec!["report"];
            all.extend_from_slice(args);
            match parse(&all).expect("parses").command {
                Command::Report(r) => r.window,
                other => panic!("parsed as {other:?}"),
            }
        };
        // 2026-11-30 08:00 UTC
        let at8 = 1_796_025_600_000_000;
        assert_eq!(window(&["--from", "2026-11-30 08:00"]).from, Some(at8));
        assert_eq!(
            window(&["--from", "2026-11-30T09:00:00+01:00"]).from,
            Some(at8)
        );
        assert_eq!(window(&["--to", "2026-11-30 08:00 UTC"]).to, Some(at8));
        for bad in ["2026-02-30", "2026-11-30 24:00", "08:00", "noon"] {
            let err = parse(&["report", "--from", bad]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
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
