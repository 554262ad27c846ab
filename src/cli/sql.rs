//! `taskscope sql`: one SQL query over the files, for any user who can
//! read them (the query layer, `query`).
//!
//! The query is the argument, or the text of `-f FILE` (`-f -`: standard
//! input). The window flags are report's (`window`): periods outside the
//! window are not read, and rows outside it are not in the tables.
//! `--live` queries a running agent's thread table instead (`sql_live`).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::parse;
use super::read::{window_of, WindowArgs};
use super::sql_live::{self, LiveArgs};
use crate::error::{Outcome, Usage};
use crate::query::{self, print};

/// Output of `taskscope sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqlFormat {
    /// Aligned columns for a terminal
    Table,
    /// CSV with a header row
    Csv,
    /// JSON lines: one object per row, every column (NULL as null)
    Json,
}

/// Flags of `taskscope sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub window: WindowArgs,

    /// The query, e.g. "SELECT state, count(*) AS n FROM samples GROUP BY
    /// state ORDER BY n DESC"
    #[arg(
        value_name = "QUERY",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub query: Option<String>,

    /// Read the query from this file ('-': standard input)
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    pub format: SqlFormat,

    /// Memory the query may hold for joins, groups and sorts (no spilling:
    /// more is an error)
    #[arg(long, value_name = "SIZE", value_parser = parse::size, default_value = "1GiB")]
    pub memory_limit: u64,

    /// Stop the query after this long [default: no limit]
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub timeout: Option<Duration>,

    #[command(flatten)]
    pub live: LiveArgs,
}

impl SqlArgs {
    /// The query text: the argument, or the file's.
    fn text(&self) -> Result<String> {
        if let Some(query) = &self.query {
            return Ok(query.clone());
        }
        let Some(path) = &self.file else {
            return Err(Usage("give a query, or -f FILE".into()).into());
        };
        let mut text = String::new();
        if path.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the query from standard input")?;
        } else {
            text = std::fs::read_to_string(path).map_err(|err| {
                Usage(format!(
                    "cannot read the query from {} ({err})",
                    path.display()
                ))
            })?;
        }
        Ok(text)
    }
}

/// `taskscope sql`.
pub fn sql(args: &SqlArgs) -> Result<Outcome> {
    let text = args.text()?;
    let limits = query::Limits {
        memory_bytes: usize::try_from(args.memory_limit).unwrap_or(usize::MAX),
        timeout: args.timeout,
    };
    if args.live.live {
        return sql_live::run(&args.live, &text, limits, args.format);
    }
    let window = window_of(&args.window)?;
    let answer = query::run_on_files(&args.window.dir, window, limits, &text)?;
    if answer.failure.is_none() {
        let format = match args.format {
            SqlFormat::Table => print::Format::Table,
            SqlFormat::Csv => print::Format::Csv,
            SqlFormat::Json => print::Format::Json,
        };
        let stdout = std::io::stdout();
        print::write(&mut stdout.lock(), &answer.batches, format)?;
    }
    let problems = answer.problems.iter().map(|p| p.to_string()).collect();
    Ok(Outcome::with_problems(problems, answer.failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::parse;
    use crate::cli::Command;

    #[test]
    fn sql_flags() {
        let sql = |args: &[&str]| {
            let mut all = vec!["sql"];
            all.extend_from_slice(args);
            match parse(&all).expect("parses").command {
                Command::Sql(sql) => sql,
                other => panic!("parsed as {other:?}"),
            }
        };
        let s = sql(&["SELECT 1"]);
        assert_eq!(s.query.as_deref(), Some("SELECT 1"));
        assert_eq!(
            (s.format, s.memory_limit, s.timeout),
            (SqlFormat::Table, 1 << 30, None)
        );
        let s = sql(&[
            "-f",
            "-",
            "--format",
            "json",
            "--since",
            "2h",
            "--timeout",
            "30s",
        ]);
        assert_eq!(s.file, Some(PathBuf::from("-")));
        assert_eq!(s.format, SqlFormat::Json);
        assert_eq!(s.timeout, Some(Duration::from_secs(30)));
        assert!(parse(&["sql"]).is_err(), "a query is needed");
        assert!(parse(&["sql", "SELECT 1", "-f", "q.sql"]).is_err());
        assert!(parse(&["sql", "SELECT 1", "--format", "xml"]).is_err());
    }

    #[test]
    fn live_flags() {
        let sql = |args: &[&str]| {
            let mut all = vec!["sql"];
            all.extend_from_slice(args);
            parse(&all).map(|cli| match cli.command {
                Command::Sql(sql) => sql,
                other => panic!("parsed as {other:?}"),
            })
        };
        let s = sql(&["--live", "SELECT 1"]).expect("parses");
        assert!(s.live.live && !s.live.all);
        assert_eq!(
            (s.live.interval, s.live.window, s.live.count),
            (Duration::from_secs(1), None, None)
        );
        assert_eq!(s.live.pin_dir, PathBuf::from("/sys/fs/bpf/taskscope"));
        let s = sql(&[
            "--live",
            "--interval",
            "500ms",
            "--window",
            "60s",
            "--count",
            "3",
            "--all",
            "--pin-dir",
            "/p",
            "SELECT 1",
        ])
        .expect("parses");
        assert_eq!(s.live.interval, Duration::from_millis(500));
        assert_eq!(s.live.window, Some(Duration::from_secs(60)));
        assert_eq!((s.live.count, s.live.all), (Some(3), true));
        // The files' flags make no sense live; live flags need --live.
        for flags in [
            &["--live", "--dir", "/d"][..],
            &["--live", "--since", "1h"],
            &["--live", "--from", "2026-12-01"],
            &["--live", "--to", "2026-12-01"],
            &["--window", "60s"],
            &["--count", "2"],
            &["--all"],
            &["--interval", "2s"],
            &["--pin-dir", "/p"],
            &["--live", "--count", "0"],
        ] {
            let mut args = flags.to_vec();
            args.push("SELECT 1");
            assert!(sql(&args).is_err(), "{flags:?} should not parse");
        }
    }
}
