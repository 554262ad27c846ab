//! `taskscope report` and `taskscope flamegraph`: answers from the files,
//! for any user who can read them, without writing SQL.
//!
//! The report is Active Session History arithmetic: every sample row stands
//! for `weight_us` of one thread's time, so the sum of `weight_us` in a
//! group divided by the time sampled is the group's *average active
//! threads*. The time sampled is the sum of `weight_us` over the `ticks`
//! table in the window — not the window's length — so gaps (agent stopped,
//! ticks dropped) do not dilute the averages. The files are read directly
//! (CSV through a splitter that stops at the last column needed, Parquet
//! through arrow with column projection, files spread over every CPU):
//! DuckDB's Rust crate would compile DuckDB's whole C++ engine into every
//! build, and a scan of the few columns a report needs is all the engine
//! this takes.

mod aggregate;
mod filter;
pub mod flame;
mod output;
mod read;

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::catalog::{self, DataFile, Prefer, Window};
use crate::cli::{ReportArgs, WindowArgs};
use crate::schema::{Iorq, Samples, Syscalls, Table, Ticks};
use read::Projection;

/// Default `--by` of the report.
pub const DEFAULT_GROUPS: [&str; 4] = ["state", "comm", "syscall", "kfunc"];

/// The window of `args`, resolved against the clock now (`cli::window`,
/// shared with `export`); a window that cannot be read is a [`BadFlag`].
pub fn window_now(args: &WindowArgs) -> Result<Window> {
    args.flags()
        .resolve(crate::timefmt::unix_micros_now())
        .map_err(|err| BadFlag(err.to_string()).into())
}

/// The files of `table` for `window`; an error when the directory itself
/// is missing, so a typo in --dir is not reported as "no data".
fn files(dir: &Path, table: &str, window: &Window) -> Result<Vec<DataFile>> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory (the agent's output directory, --dir)",
            dir.display()
        );
    }
    catalog::select(dir, table, window, Prefer::Parquet)
}

fn no_data(dir: &Path, table: &str, window: &Window) -> anyhow::Error {
    anyhow::anyhow!(
        "no {table} files for {} under {} (see {}/{table}/date=*/hour=*/)",
        output::window_text(window),
        dir.display(),
        dir.display()
    )
}

/// `taskscope report`.
pub fn run(args: &ReportArgs) -> Result<()> {
    let window = window_now(&args.window)?;
    let dir = &args.window.dir;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if let Some(kind) = args.latency {
        let (table, groups, by_default) = match kind {
            crate::cli::LatencyOf::Syscalls => (Syscalls::NAME, &args.by, vec!["syscall"]),
            crate::cli::LatencyOf::Io => (Iorq::NAME, &args.by, vec!["dev", "op"]),
        };
        let groups = chosen(groups, &by_default);
        let data = files(dir, table, &window)?;
        if data.is_empty() {
            return Err(no_data(dir, table, &window).context(format!(
                "--latency reads the {table} table, written by `taskscope run --track {}`",
                if table == Syscalls::NAME {
                    "syscalls"
                } else {
                    "io"
                }
            )));
        }
        let period_us = aggregate::sampling_period(&files(dir, Ticks::NAME, &window)?, &window)?;
        let latency = match kind {
            crate::cli::LatencyOf::Syscalls => aggregate::latency::<Syscalls>(
                &data,
                &window,
                &groups,
                args.filter.as_deref(),
                "enter_ts",
                period_us,
            )?,
            crate::cli::LatencyOf::Io => aggregate::latency::<Iorq>(
                &data,
                &window,
                &groups,
                args.filter.as_deref(),
                "start_ts",
                period_us,
            )?,
        };
        return output::latency(&latency, args.format, args.top, color);
    }

    let samples = files(dir, Samples::NAME, &window)?;
    if samples.is_empty() {
        return Err(no_data(dir, Samples::NAME, &window));
    }
    let ticks = files(dir, Ticks::NAME, &window)?;
    if args.timeline {
        let bucket = args.bucket.unwrap_or_else(|| auto_bucket(&window));
        let timeline =
            aggregate::timeline(&samples, &ticks, &window, bucket, args.filter.as_deref())?;
        return output::timeline(&timeline, args.format, color);
    }
    let groups = chosen(&args.by, &DEFAULT_GROUPS);
    let report = aggregate::active(&samples, &ticks, &window, &groups, args.filter.as_deref())?;
    output::active(&report, args.format, args.top)
}

/// `--by` as given, else the defaults.
fn chosen(by: &[String], defaults: &[&str]) -> Vec<String> {
    if by.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        by.iter().map(|s| s.trim().to_ascii_lowercase()).collect()
    }
}

/// A round bucket width giving at most ~40 lines for `window`.
fn auto_bucket(window: &Window) -> Duration {
    const STEPS: [u64; 14] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 21_600,
    ];
    let secs = (window.len_us() / 1_000_000).max(1) as u64;
    let step = STEPS
        .iter()
        .copied()
        .find(|step| secs / step <= 40)
        .unwrap_or(86_400);
    Duration::from_secs(step)
}

/// A flag of `report` or `flamegraph` that cannot work: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadFlag(String);

fn bad_flag(err: anyhow::Error) -> anyhow::Error {
    BadFlag(format!("{err:#}")).into()
}

/// Check `--by` and `--where` against table `T`.
fn check_table<T: Table>(groups: &[String], predicate: Option<&str>) -> Result<()> {
    let mut projection = Projection::of::<T>(groups, "--by").map_err(bad_flag)?;
    if let Some(text) = predicate {
        filter::parse::<T>(text, &mut projection).map_err(bad_flag)?;
    }
    Ok(())
}

/// Every flag of `report` that can be checked before reading a file.
/// (The window is resolved by `run`, against the clock.)
pub fn check(args: &ReportArgs) -> Result<()> {
    if args.top == 0 {
        return Err(bad_flag(anyhow::anyhow!("--top must be at least 1")));
    }
    if args.bucket.is_some_and(|b| b.as_secs() == 0) {
        return Err(bad_flag(anyhow::anyhow!("--bucket must be at least 1s")));
    }
    let filter = args.filter.as_deref();
    match args.latency {
        Some(crate::cli::LatencyOf::Syscalls) => {
            check_table::<Syscalls>(&chosen(&args.by, &["syscall"]), filter)
        }
        Some(crate::cli::LatencyOf::Io) => {
            check_table::<Iorq>(&chosen(&args.by, &["dev", "op"]), filter)
        }
        None => check_table::<Samples>(&chosen(&args.by, &DEFAULT_GROUPS), filter),
    }
}

/// Every flag of `flamegraph` that can be checked before reading a file.
/// (The window is resolved by `flame::run`, against the clock.)
pub fn check_flamegraph(args: &crate::cli::FlamegraphArgs) -> Result<()> {
    check_table::<Samples>(&[], args.filter.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let w = |secs: i64| Window {
            from_us: 0,
            to_us: secs * 1_000_000,
        };
        assert_eq!(auto_bucket(&w(30)), Duration::from_secs(1));
        assert_eq!(auto_bucket(&w(3_600)), Duration::from_secs(120));
        assert_eq!(auto_bucket(&w(7 * 86_400)), Duration::from_secs(21_600));
    }
}
