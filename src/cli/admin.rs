//! Flags of the administration subcommands: `export`, `import`, `doctor`
//! and the hidden `generate`, as the user typed them, and the commands
//! they run.
//!
//! Like the other flags, these only parse: times are turned into
//! microseconds here (by `cli::parse`, as for every flag) because that
//! needs no I/O, but "yesterday" and "now" are resolved against the clock
//! by `cli::window`, as for `report`. Each flag's parse test sits in this
//! file's tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::agent;
use crate::cli::parse::{self, Day};
use crate::cli::window::WindowFlags;
use crate::cli::{config, settings};
use crate::error::{Outcome, Usage};
use crate::export;
use crate::store::catalog::Window;
use crate::store::timefmt;

/// What `taskscope export` puts in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The period files as the agent wrote them (Parquet when a period has
    /// both formats), byte for byte
    Copy,
    /// One Parquet file per table and host, compacted from the periods
    Parquet,
}

/// Flags of `taskscope export`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("window").required(true).args(["from", "since", "day"])))]
pub struct ExportArgs {
    /// Data directory to export from (the agent's --output-dir)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/taskscope")]
    pub dir: PathBuf,

    /// Start of the window: '2026-11-22 13:00' (UTC), with seconds or a
    /// fraction, an offset ('2026-11-22 14:00+01:00', ...Z) or a date alone
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    pub from: Option<i64>,

    /// End of the window (excluded), same forms as --from [default: now]
    #[arg(long, value_name = "TIME", value_parser = parse::time, requires = "from",
          conflicts_with_all = ["since", "day"])]
    pub to: Option<i64>,

    /// The window is the last DURATION up to now (30m, 1h30m, '2 hours', 1d)
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub since: Option<Duration>,

    /// The window is one whole UTC day: yesterday, today or YYYY-MM-DD
    #[arg(long, value_name = "DAY", value_parser = parse::day)]
    pub day: Option<Day>,

    /// Archive to write (.tar.zst); if this is a directory, the archive is
    /// named <host>-<from>-<to>.tar.zst inside it
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,

    /// copy: the period files as they are; parquet: one Parquet file per
    /// table
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ExportFormat::Copy)]
    pub format: ExportFormat,

    /// Replace the archive if it exists
    #[arg(long)]
    pub force: bool,

    /// After writing, delete the archives in the same directory that this
    /// host's export wrote there (-o DIR) and whose window ended longer ago
    /// than this (the archive directory's own retention, e.g. 30d); nothing
    /// else is deleted
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub keep_for: Option<Duration>,
}

impl ExportArgs {
    /// The window flags, for [`WindowFlags::resolve`].
    pub fn window_flags(&self) -> WindowFlags {
        WindowFlags {
            from: self.from,
            to: self.to,
            since: self.since,
            day: self.day,
        }
    }

    /// The window asked for, `[from, to)` in microseconds, resolved at
    /// `now_us` as for `report` (`cli::window`); a usage error when it
    /// cannot be read.
    pub fn window(&self, now_us: i64) -> Result<Window> {
        self.window_flags()
            .resolve(now_us)
            .map_err(|err| Usage(err.to_string()).into())
    }

    /// What the export is asked, at `now_us`.
    pub fn request(&self, now_us: i64) -> Result<export::Request> {
        Ok(export::Request {
            dir: self.dir.clone(),
            window: self.window(now_us)?,
            now_us,
            output: self.output.clone(),
            format: match self.format {
                ExportFormat::Copy => export::Format::Copy,
                ExportFormat::Parquet => export::Format::Parquet,
            },
            force: self.force,
            keep_for: self.keep_for,
        })
    }
}

/// `taskscope export`: the files that could not be read make the answer
/// incomplete (exit 3).
pub fn export(args: &ExportArgs) -> Result<Outcome> {
    let request = args.request(timefmt::unix_micros_now())?;
    let problems = export::export(&request)?;
    let problems = problems.iter().map(|p| p.to_string()).collect();
    Ok(Outcome::with_problems(problems, None))
}

/// `taskscope import`: into `--dir`, or a directory named like the
/// archive next to it.
pub fn import(args: &ImportArgs) -> Result<Outcome> {
    let destination = match &args.dir {
        Some(dir) => dir.clone(),
        None => default_import_dir(&args.archive)?,
    };
    export::import(&args.archive, &destination)?;
    Ok(Outcome::Done)
}

/// The archive's name without `.tar.zst`.
fn default_import_dir(archive: &Path) -> Result<PathBuf> {
    let name = archive.to_string_lossy();
    match name.strip_suffix(export::ARCHIVE_EXT) {
        Some(stem) if !stem.is_empty() => Ok(PathBuf::from(stem)),
        _ => Err(Usage(format!(
            "{} does not end in {}; say where to extract it with --dir",
            archive.display(),
            export::ARCHIVE_EXT
        ))
        .into()),
    }
}

/// `taskscope doctor [--config FILE]`: `run --check` with the settings of
/// FILE (or the defaults).
pub fn doctor(args: &DoctorArgs) -> Result<Outcome> {
    let run = settings::run_args_from_file(args.config.as_deref())?;
    let config = config::validate(&run).map_err(|err| Usage::from_error(&err))?;
    agent::doctor::check(&config)
}

/// Flags of `taskscope import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Archive written by taskscope export
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,

    /// Directory to extract into (created; must be empty if it exists);
    /// default: the archive's name without .tar.zst, next to it
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Flags of `taskscope doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check with the settings of this file, as `run --config FILE --check`
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What `taskscope generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// man/taskscope.8
    Manpage,
    /// packaging/taskscope.toml
    Config,
}

/// Flags of the hidden `taskscope generate` (files derived from the CLI).
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Which file to print on stdout
    #[arg(value_enum)]
    pub what: Generated,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("taskscope").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    fn export(args: &[&str]) -> ExportArgs {
        let mut all = vec!["export"];
        all.extend_from_slice(args);
        match parse(&all).expect("parses") {
            Command::Export(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    const NOON: i64 = 1_795_352_400_000_000 - 3_600_000_000; // 2026-11-22 12:00 UTC

    #[test]
    fn export_window_flags() {
        let args = export(&[
            "--from",
            "2026-11-22 12:00",
            "--to",
            "2026-11-22 13:00",
            "-o",
            "x",
        ]);
        assert_eq!(
            (args.from, args.to),
            (Some(NOON), Some(NOON + 3_600_000_000))
        );
        assert_eq!(args.dir, PathBuf::from("/var/lib/taskscope"));
        assert_eq!(args.format, ExportFormat::Copy);
        assert!(!args.force);
        let args = export(&["--since", "2h", "-o", "x", "--format", "parquet"]);
        assert_eq!(args.since, Some(Duration::from_secs(7_200)));
        assert_eq!(args.format, ExportFormat::Parquet);
        let args = export(&[
            "--day",
            "yesterday",
            "-o",
            "/a",
            "--keep-for",
            "30d",
            "--force",
        ]);
        assert_eq!(args.day, Some(Day::Yesterday));
        assert_eq!(args.keep_for, Some(Duration::from_secs(30 * 86_400)));
        assert!(args.force);
        // Exactly one window, and --to only with --from.
        assert!(parse(&["export", "-o", "x"]).is_err());
        assert!(parse(&["export", "--since", "1h", "--day", "today", "-o", "x"]).is_err());
        assert!(parse(&["export", "--since", "1h", "--to", "2026-11-22", "-o", "x"]).is_err());
        assert!(
            parse(&["export", "--since", "1h"]).is_err(),
            "-o is required"
        );
        assert!(parse(&["export", "--from", "noon", "-o", "x"]).is_err());
        // Dates that do not exist are refused, not moved to the next month.
        for bad in ["2026-02-30", "2026-13-01", "2026-04-31"] {
            let err = parse(&["export", "--day", bad, "-o", "x"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        let args = export(&["--day", "2026-11-22", "-o", "x"]);
        assert_eq!(args.day, Some(Day::Starting(NOON - 12 * 3_600_000_000)));
    }

    #[test]
    fn import_flags() {
        match parse(&["import", "a.tar.zst", "--dir", "out"]).unwrap() {
            Command::Import(args) => {
                assert_eq!(args.archive, PathBuf::from("a.tar.zst"));
                assert_eq!(args.dir, Some(PathBuf::from("out")));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["import"]).is_err());
    }

    #[test]
    fn doctor_and_generate_flags() {
        match parse(&["doctor", "--config", "/etc/taskscope/taskscope.toml"]).unwrap() {
            Command::Doctor(args) => assert!(args.config.is_some()),
            other => panic!("{other:?}"),
        }
        match parse(&["generate", "manpage"]).unwrap() {
            Command::Generate(args) => assert_eq!(args.what, Generated::Manpage),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["generate", "readme"]).is_err());
    }

    fn args(extra: &[&str]) -> ExportArgs {
        let mut all = vec!["-o", "x.tar.zst"];
        all.extend_from_slice(extra);
        export(&all)
    }

    const DAY: i64 = 86_400_000_000;
    const NOV22: i64 = 1_795_305_600_000_000; // 2026-11-22 00:00 UTC

    #[test]
    fn export_windows() {
        let now = NOV22 + 13 * 3_600_000_000;
        let w = |extra: &[&str]| args(extra).window(now).map(|w| (w.from_us, w.to_us));
        assert_eq!(w(&["--day", "yesterday"]).unwrap(), (NOV22 - DAY, NOV22));
        assert_eq!(w(&["--day", "today"]).unwrap(), (NOV22, NOV22 + DAY));
        assert_eq!(w(&["--day", "2026-11-22"]).unwrap(), (NOV22, NOV22 + DAY));
        assert_eq!(w(&["--since", "1h"]).unwrap(), (now - 3_600_000_000, now));
        assert_eq!(
            w(&["--from", "2026-11-22 12:00"]).unwrap(),
            (now - 3_600_000_000, now)
        );
        let err = w(&["--from", "2026-11-22 14:00"]).unwrap_err();
        assert!(
            err.is::<Usage>() && err.to_string().contains("after now"),
            "{err}"
        );
        let err = w(&["--from", "2026-11-22 12:00", "--to", "2026-11-22 11:00"]).unwrap_err();
        assert!(
            err.is::<Usage>() && err.to_string().contains("window is empty"),
            "{err}"
        );
        assert!(w(&["--day", "2026-11-23"]).unwrap_err().is::<Usage>());
    }
}
