//! `taskscope report` and `taskscope flamegraph`: answers from the files,
//! for any user who can read them, without writing SQL.
//!
//! The report is Active Session History arithmetic: every sample row stands
//! for `weight_us` of one thread's time, so the sum of `weight_us` in a
//! group divided by the time sampled is the group's *average active
//! threads*. The time sampled is the sum of `weight_us` over the `ticks`
//! table in the window — not the window's length — so gaps (agent stopped,
//! ticks dropped) do not dilute the averages. Only active threads count
//! (`states`), unless `--all-states`. The files are read directly (CSV
//! through a splitter that stops at the last column needed, Parquet
//! through arrow with column projection, files spread over every CPU):
//! DuckDB's Rust crate would compile DuckDB's whole C++ engine into every
//! build, and a scan of the few columns a report needs is all the engine
//! this takes.
//!
//! Readers never guess: the period being written is read up to its last
//! complete tick, a damaged or missing file leaves its period out and is
//! named on stderr (exit status 3, [`Answer`]), and a window without data
//! says so and where the data is.

pub mod aggregate;
pub mod blockers;
pub mod blockers_scan;
mod csv_read;
pub mod flame;
mod flame_color;
pub mod latency;
mod one_pass;
pub mod output;
mod predicate;
mod read;
pub mod states;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::error::Usage;
use crate::store::catalog::{Catalog, Problem, Window};
use crate::store::schema::{Iorq, Samples, Syscalls, Table, Ticks};
use aggregate::Query;
pub use aggregate::{Active, Group, Timeline};
use read::Projection;

/// Default `--by` of the report: the cause first (`wait_class`), not the
/// scheduler state. State is left out: CPU and RUNQUEUE are its ON_CPU
/// and RUNQUEUE, and what else it adds (own I/O or another's, futex or
/// kernel lock) is mostly visible in syscall and kfunc, for a fifth
/// column on every line; `--by state,...` brings it back.
pub const DEFAULT_GROUPS: [&str; 4] = ["wait_class", "comm", "syscall", "kfunc"];

/// What `taskscope report` is asked (made from its flags by `cli::read`).
#[derive(Debug, Clone)]
pub struct Request {
    /// The agent's output directory, or an imported archive.
    pub dir: PathBuf,
    /// Columns to group by (empty: the defaults).
    pub by: Vec<String>,
    /// A `--where` predicate.
    pub filter: Option<String>,
    /// Groups shown at most.
    pub top: usize,
    pub format: Format,
    /// Durations of tracked syscalls or requests instead of active threads.
    pub latency: Option<LatencyOf>,
    /// Active threads over time.
    pub timeline: bool,
    /// The timeline's bucket width (None: chosen from the data).
    pub bucket: Option<Duration>,
    /// Count sleeping and idle threads too.
    pub all_states: bool,
    /// The threads others wait for most (`blockers`).
    pub blockers: bool,
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns (and charts) for a terminal.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON document.
    Json,
}

/// The table `--latency` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyOf {
    Syscalls,
    Io,
}

/// What a reading command could not use. Problems are printed one line
/// each on stderr and make the exit status 3 (incomplete answer);
/// `failure` is set when nothing usable was left to answer from.
#[derive(Debug, Default)]
pub struct Answer {
    pub problems: Vec<Problem>,
    pub failure: Option<String>,
}

impl Answer {
    fn of(catalog: Catalog) -> Answer {
        Answer {
            problems: catalog.problems,
            failure: None,
        }
    }
}

/// An answer with nothing in it: an error, or when files were left out,
/// the problems and a failure line.
fn nothing(mut catalog: Catalog, table: &str, window: &Window) -> Result<Answer> {
    if catalog.problems.is_empty() {
        return Err(catalog.no_data(table, window));
    }
    let count = catalog.problems.len();
    Ok(Answer {
        problems: catalog.problems,
        failure: Some(format!(
            "no usable {table} rows in {}: {count} problem(s) above left out every period with data",
            window.text()
        )),
    })
}

/// `taskscope report` over `window`.
pub fn run(args: &Request, window: Window) -> Result<Answer> {
    let mut catalog = Catalog::open(&args.dir)?;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let stdout = &mut std::io::stdout().lock();
    if let Some(kind) = args.latency {
        let (table, groups, by_default) = match kind {
            LatencyOf::Syscalls => (Syscalls::NAME, &args.by, vec!["syscall"]),
            LatencyOf::Io => (Iorq::NAME, &args.by, vec!["dev", "op"]),
        };
        let groups = chosen(groups, &by_default);
        if catalog.spans(table).is_empty() && catalog.problems.is_empty() {
            return Err(catalog.no_data(table, &window).context(format!(
                "--latency reads the {table} table, written by `taskscope run --track {}`",
                if table == Syscalls::NAME {
                    "syscalls"
                } else {
                    "io"
                }
            )));
        }
        let period_us = aggregate::sampling_period(&mut catalog, &window)?;
        let latency = match kind {
            LatencyOf::Syscalls => latency::latency::<Syscalls>(
                &mut catalog,
                &window,
                &groups,
                args.filter.as_deref(),
                "enter_ts",
                period_us,
            )?,
            LatencyOf::Io => latency::latency::<Iorq>(
                &mut catalog,
                &window,
                &groups,
                args.filter.as_deref(),
                "start_ts",
                period_us,
            )?,
        };
        if latency.in_window == 0 {
            return nothing(catalog, table, &window);
        }
        output::latency(stdout, &latency, args.format, args.top, color)?;
        return Ok(Answer::of(catalog));
    }

    if args.blockers {
        let (chains, any) =
            blockers_scan::chains(&mut catalog, &window, args.filter.as_deref(), args.top)?;
        if !any {
            return nothing(catalog, Samples::NAME, &window);
        }
        output::blockers(stdout, &chains, args.format)?;
        return Ok(Answer::of(catalog));
    }
    let query = Query {
        window,
        predicate: args.filter.as_deref(),
        all_states: args.all_states,
    };
    if args.timeline {
        let timeline =
            aggregate::timeline(&mut catalog, &query, "state", args.bucket, auto_bucket)?;
        if timeline.buckets.is_empty() {
            return nothing(catalog, Samples::NAME, &window);
        }
        output::timeline(stdout, &timeline, args.format, color)?;
        return Ok(Answer::of(catalog));
    }
    let groups = chosen(&args.by, &DEFAULT_GROUPS);
    let report = aggregate::active(&mut catalog, &query, &groups)?;
    if report.sampled_us == 0 {
        return nothing(catalog, Samples::NAME, &window);
    }
    output::active(stdout, &report, args.format, args.top)?;
    Ok(Answer::of(catalog))
}

/// Average active threads by `by` (empty: the report's defaults) in
/// `window` of `dir`: the numbers `taskscope report` prints for the same
/// flags (`taskscope top`'s history mode), and the files left out.
pub fn active_threads(
    dir: &Path,
    window: Window,
    by: &[String],
    filter: Option<&str>,
    all_states: bool,
) -> Result<(Active, Vec<Problem>)> {
    let groups = chosen(by, &DEFAULT_GROUPS);
    check_table::<Samples>(&groups, filter)?;
    let mut catalog = Catalog::open(dir)?;
    let query = Query {
        window,
        predicate: filter,
        all_states,
    };
    let active = aggregate::active(&mut catalog, &query, &groups)?;
    Ok((active, catalog.problems))
}

/// Average active threads per state in buckets of `bucket` over `window`
/// (`report --timeline`'s numbers).
pub fn timeline_of(
    dir: &Path,
    window: Window,
    bucket: Duration,
    by: &str,
    filter: Option<&str>,
    all_states: bool,
) -> Result<Timeline> {
    let mut catalog = Catalog::open(dir)?;
    let query = Query {
        window,
        predicate: filter,
        all_states,
    };
    aggregate::timeline(&mut catalog, &query, by, Some(bucket), auto_bucket)
}

/// `--by` as given, else the defaults. `blocker` is `blocker_tid`, `peer`
/// is `sock_remote` (the address:port at the other end of a sampled socket).
pub fn chosen(by: &[String], defaults: &[&str]) -> Vec<String> {
    if by.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        by.iter()
            .map(|s| match s.trim().to_ascii_lowercase() {
                name if name == "blocker" => "blocker_tid".to_string(),
                name if name == "peer" => "sock_remote".to_string(),
                name => name,
            })
            .collect()
    }
}

/// A round bucket width giving at most ~40 lines for data spanning
/// `span_us` (from the first tick to the last).
fn auto_bucket(span_us: i64) -> Duration {
    const STEPS: [u64; 14] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 21_600,
    ];
    let secs = (span_us / 1_000_000).max(1) as u64;
    let step = STEPS
        .iter()
        .copied()
        .find(|step| secs / step <= 40)
        .unwrap_or(86_400);
    Duration::from_secs(step)
}

/// A flag of `report` or `flamegraph` that cannot work: exit 2.
fn bad_flag(err: anyhow::Error) -> anyhow::Error {
    Usage::from_error(&err)
}

/// Check `--by` and `--where` against table `T` (for `samples`, also
/// that its time conditions can restrict the ticks).
fn check_table<T: Table>(groups: &[String], predicate: Option<&str>) -> Result<()> {
    let mut projection = Projection::of::<T>(groups, "--by").map_err(bad_flag)?;
    if let Some(text) = predicate {
        let filter = predicate::parse::<T>(text, &mut projection).map_err(bad_flag)?;
        if T::NAME == Samples::NAME {
            let mut ticks = Projection::of::<Ticks>(&[], "report")?;
            predicate::ticks_filter::<Ticks>(&filter, &mut ticks).map_err(bad_flag)?;
        }
    }
    Ok(())
}

/// Check columns `groups` and a `--where` predicate against the `samples`
/// table (for readers other than `report`: a one-line reason).
pub fn check_samples(groups: &[String], predicate: Option<&str>) -> Result<()> {
    check_table::<Samples>(groups, predicate)
}

/// As [`check_samples`], for the table `--latency` of `kind` reads.
pub fn check_latency(kind: LatencyOf, groups: &[String], predicate: Option<&str>) -> Result<()> {
    match kind {
        LatencyOf::Syscalls => check_table::<Syscalls>(groups, predicate),
        LatencyOf::Io => check_table::<Iorq>(groups, predicate),
    }
}

/// Every flag of `report` that can be checked before reading a file.
/// (The window is resolved by `run`, against the clock.)
pub fn check(args: &Request) -> Result<()> {
    if args.top == 0 {
        return Err(bad_flag(anyhow::anyhow!("--top must be at least 1")));
    }
    if args.bucket.is_some_and(|b| b.as_secs() == 0) {
        return Err(bad_flag(anyhow::anyhow!("--bucket must be at least 1s")));
    }
    let filter = args.filter.as_deref();
    match args.latency {
        Some(LatencyOf::Syscalls) => {
            check_table::<Syscalls>(&chosen(&args.by, &["syscall"]), filter)
        }
        Some(LatencyOf::Io) => check_table::<Iorq>(&chosen(&args.by, &["dev", "op"]), filter),
        None => check_table::<Samples>(&chosen(&args.by, &DEFAULT_GROUPS), filter),
    }
}

/// Every flag of `flamegraph` that can be checked before reading a file.
/// (The window is resolved by `flame::run`, against the clock.)
pub fn check_flamegraph(args: &flame::Request) -> Result<()> {
    let to_stdout = args.output.as_ref().is_none_or(|p| p.as_os_str() == "-");
    if to_stdout && !args.folded && std::io::stdout().is_terminal() {
        return Err(bad_flag(anyhow::anyhow!(
            "the SVG would go to the terminal: give -o FILE.svg (or redirect stdout, or --folded for text)"
        )));
    }
    check_table::<Samples>(&[], args.filter.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let w = |secs: i64| secs * 1_000_000;
        assert_eq!(auto_bucket(w(0)), Duration::from_secs(1));
        assert_eq!(auto_bucket(w(15)), Duration::from_secs(1));
        assert_eq!(auto_bucket(w(3_600)), Duration::from_secs(120));
        assert_eq!(auto_bucket(w(7 * 86_400)), Duration::from_secs(21_600));
    }
}
