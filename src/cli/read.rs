//! Flags of the reading commands, `taskscope report` and `taskscope
//! flamegraph`, as the user typed them, and what the readers are asked.
//!
//! The readers depend on the store alone: they receive their own requests
//! (`report::Request`, `report::flame::Request`) and a resolved window,
//! made here from the flags. The window is resolved against the clock by
//! `window`, as for `export`; with none of `--since`, `--from` and `--to`
//! on an imported archive, it is the archive's own.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::parse;
use super::window;
use crate::error::{Outcome, Usage};
use crate::report::{self, flame};
use crate::store::catalog::{self, Window};
use crate::store::timefmt;

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

    /// Columns to group by, comma-separated [default: wait_class,comm,syscall,kfunc;
    /// with --latency: syscall, or dev,op]; `peer` is sock_remote (e.g. --by file
    /// or --by comm,peer)
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    pub by: Vec<String>,

    /// Only rows for which this SQL expression is true: any expression of
    /// the query engine (functions, arithmetic, CASE) over the table's
    /// columns and date/hour (the row's UTC date and hour), e.g.
    /// "state = 'DISK' AND lower(comm) LIKE 'postgres%'"
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

    /// The threads others wait for most (blocker_tid): thread time waited
    /// on each, and what each was doing meanwhile, as a chain
    #[arg(long, conflicts_with_all = ["latency", "timeline"])]
    pub blockers: bool,
}

/// Frames `taskscope flamegraph --kind` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FrameChoice {
    /// Kernel frames (kstack_id; marked _[k])
    Kernel,
    /// Every user frame: native, jit and python
    User,
    /// User frames of binaries and libraries
    Native,
    /// User frames named from a perf map (marked _[j])
    Jit,
    /// CPython functions read from the interpreter (marked _[p])
    Python,
}

/// Flags of `taskscope flamegraph`.
#[derive(Debug, Args)]
pub struct FlamegraphArgs {
    #[command(flatten)]
    pub window: WindowArgs,

    /// Only samples for which this SQL expression is true (any expression
    /// of the query engine, as for report)
    #[arg(long = "where", value_name = "PREDICATE")]
    pub filter: Option<String>,

    /// Frames to draw: kernel, user (native and jit), native, jit
    #[arg(
        long,
        value_enum,
        value_name = "KINDS",
        value_delimiter = ',',
        default_value = "kernel,user"
    )]
    pub kind: Vec<FrameChoice>,

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

/// The window of a reading command: its flags resolved against the clock
/// now, or, with none of --since, --from and --to, an imported archive's
/// own window (its manifest.json), else the last hour. A window that
/// cannot be read is a usage error.
pub fn window_of(args: &WindowArgs) -> Result<Window> {
    if args.since.is_none() && args.from.is_none() && args.to.is_none() {
        if let Some(window) = catalog::archive_window(&args.dir)? {
            return Ok(window);
        }
    }
    args.flags()
        .resolve(timefmt::unix_micros_now())
        .map_err(|err| Usage(err.to_string()).into())
}

impl ReportArgs {
    /// What the report is asked.
    pub fn request(&self) -> report::Request {
        report::Request {
            dir: self.window.dir.clone(),
            by: self.by.clone(),
            filter: self.filter.clone(),
            top: self.top,
            format: match self.format {
                ReportFormat::Table => report::Format::Table,
                ReportFormat::Csv => report::Format::Csv,
                ReportFormat::Json => report::Format::Json,
            },
            latency: self.latency.map(|of| match of {
                LatencyOf::Syscalls => report::LatencyOf::Syscalls,
                LatencyOf::Io => report::LatencyOf::Io,
            }),
            timeline: self.timeline,
            bucket: self.bucket,
            all_states: self.all_states,
            blockers: self.blockers,
        }
    }
}

impl FlamegraphArgs {
    /// What the flame graph is asked.
    pub fn request(&self) -> flame::Request {
        flame::Request {
            dir: self.window.dir.clone(),
            filter: self.filter.clone(),
            kinds: flame::Kinds {
                kernel: self.kind.contains(&FrameChoice::Kernel),
                native: self.kind.contains(&FrameChoice::User)
                    || self.kind.contains(&FrameChoice::Native),
                jit: self.kind.contains(&FrameChoice::User)
                    || self.kind.contains(&FrameChoice::Jit),
                python: self.kind.contains(&FrameChoice::User)
                    || self.kind.contains(&FrameChoice::Python),
            },
            output: self.output.clone(),
            force: self.force,
            folded: self.folded,
            title: self.title.clone(),
            all_states: self.all_states,
        }
    }
}

/// `taskscope report`: the flags are checked before the window is
/// resolved and any file is read.
pub fn report(args: &ReportArgs) -> Result<Outcome> {
    let request = args.request();
    report::check(&request)?;
    let window = window_of(&args.window)?;
    answered(report::run(&request, window)?)
}

/// `taskscope flamegraph`, checked as `report` is.
pub fn flamegraph(args: &FlamegraphArgs) -> Result<Outcome> {
    let request = args.request();
    report::check_flamegraph(&request)?;
    let window = window_of(&args.window)?;
    answered(flame::run(&request, window)?)
}

/// A reader's answer as the command's outcome: the files it left out are
/// its problems (exit 3).
fn answered(answer: report::Answer) -> Result<Outcome> {
    let problems = answer.problems.iter().map(|p| p.to_string()).collect();
    Ok(Outcome::with_problems(problems, answer.failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::parse;
    use crate::cli::Command;

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
                assert_eq!(f.kind, vec![FrameChoice::User]);
                let kinds = f.request().kinds;
                assert!(!kinds.kernel && kinds.native && kinds.jit && kinds.python);
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
        match parse(&["flamegraph", "--kind", "kernel,jit"])
            .unwrap()
            .command
        {
            Command::Flamegraph(f) => {
                let kinds = f.request().kinds;
                assert!(kinds.kernel && !kinds.native && kinds.jit && !kinds.python);
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["flamegraph", "--kind", "python"]).unwrap().command {
            Command::Flamegraph(f) => {
                let kinds = f.request().kinds;
                assert!(kinds.python && !kinds.native && !kinds.jit && !kinds.kernel);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["flamegraph", "--kind", "ruby"]).is_err());
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
}
