//! The command line: flags as the user typed them, the settings file,
//! the man page, and the dispatch of each command to the part of
//! taskscope that does it.
//!
//! The flags only parse: no I/O, no checks that need the system (`run`,
//! `read`, `admin`; what users type for a duration, size, mode, time or
//! day is parsed by `parse`, for every flag and the settings file alike).
//! Then each command's flags become what its part receives: the agent's
//! validated `Config` (`config`), the readers' requests and a window
//! resolved against the clock (`read`, `window`). This is the top layer:
//! it may use every other module, and none uses it.

pub mod admin;
pub mod config;
pub mod manpage;
pub mod parse;
pub mod read;
pub mod run;
pub mod serve;
pub mod settings;
pub mod sql;
pub mod sql_live;
pub mod top;
pub mod window;

use std::ffi::OsString;

use anyhow::Result;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

pub use admin::{DoctorArgs, ExportArgs, GenerateArgs, ImportArgs};
pub use read::{FlamegraphArgs, ReportArgs, WindowArgs};
pub use run::RunArgs;

use crate::agent;
use crate::error::{Outcome, Usage, EXIT_USAGE};
use crate::logging;
use crate::ship;

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
    /// Serve a read-only web view of the files: the Top Activity chart
    /// (average active threads over time by wait class) and, for a window
    /// picked on it, top groups, threads, blockers, latency, a flame graph
    /// and a thread's timeline
    ///
    /// Answers what `report` answers for the same window and filter. Binds
    /// 127.0.0.1:8080 by default; any other address needs a token. Runs
    /// until interrupted.
    Serve(serve::ServeArgs),
    /// Full-screen view of average active threads: live from the running
    /// agent's pinned thread table, or over a window of the files
    ///
    /// Live mode (default) reads the table the agent pins in --pin-dir at
    /// its own --interval, as root or a member of the agent's --group.
    /// History mode (--since/--from/--to; any user who can read the files)
    /// shows the report's numbers for a window it can move and zoom.
    /// Keys: ? help, q quit, Enter drill down, g group, / filter, s sort,
    /// a all states, p pause, [ ] - + move and zoom the window. Without a
    /// live table it says why and offers history mode (falls back to it
    /// when --dir is given). Exit status: 0; 1 history declined or an
    /// error; 2 bad flags or not a terminal.
    Top(top::TopArgs),
    /// Run one SQL query over the files (tables samples, stacks, ticks,
    /// syscalls, iorq; the views and macros of taskscope.sql)
    ///
    /// Any user who can read the files. The tables hold the rows of the
    /// window (--since, --from/--to; default the last hour) with the
    /// partition columns date and hour, the period being written included
    /// up to its last complete tick. The named queries are table
    /// functions: SELECT * FROM top_activity(), top_waits(),
    /// top_blockers(), active_threads(INTERVAL '1 minute'),
    /// top_stacks('user'), top_syscalls(), latency_summary(),
    /// latency_histogram(), taskscope_latencies(from_ts, to_ts, pid). The
    /// scalar macros: ago('1 hour'), taskscope_active(state),
    /// taskscope_in_window(t, from_ts, to_ts), taskscope_sampled_us(from_ts,
    /// to_ts), taskscope_frames_of_kind(frames, frame_kinds, kind). The
    /// tables taskscope_tables and taskscope_sources.
    ///
    /// Exit status: 0 an answer; 1 no data in the window or an error while
    /// reading; 2 bad flags or SQL (the message gives line and column); 3
    /// an answer that leaves out files that could not be read (named on
    /// stderr).
    Sql(sql::SqlArgs),
    // Administration (issue 6): flags in `admin`.
    /// Write one archive of every table for a time window (any user who
    /// can read the data)
    ///
    /// The archive (.tar.zst) holds the files of every period that overlaps
    /// the window and a manifest.json with host, kernel, agent version,
    /// frequency, time range, row counts and SHA-256 checksums.
    Export(admin::ExportArgs),
    /// Extract an export archive into a directory and verify its checksums
    Import(admin::ImportArgs),
    /// Check whether the agent could run here (BTF, privileges, each hook)
    /// and what would be degraded; writes nothing
    ///
    /// The same check as `taskscope run --check`. Exits 0 if the agent
    /// could run, 1 if not.
    Doctor(admin::DoctorArgs),
    /// Print a file generated from this command line: the man page or the
    /// default settings file
    #[command(hide = true)]
    Generate(admin::GenerateArgs),
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

/// `taskscope ARGS...` (program name first): parse the command line (for
/// `run --config FILE`, with the settings of FILE under it) and run the
/// command.
pub fn run_command_line(argv: impl IntoIterator<Item = OsString>) -> Result<Outcome> {
    match parse_command_line(argv) {
        Ok(cli) => run(cli),
        Err(ParseFailure::Clap(err)) => clap_outcome(err),
        Err(ParseFailure::Settings(err)) => Err(Usage(format!("{err:#}")).into()),
    }
}

/// Why the command line could not be turned into a [`Cli`].
#[derive(Debug)]
pub enum ParseFailure {
    /// clap's own error (also --help and --version).
    Clap(clap::Error),
    /// The settings file: one line naming the file (and line).
    Settings(anyhow::Error),
}

/// Parse `argv` (program name first); for `run --config FILE`, merge the
/// settings of FILE under the command line (`settings`).
pub fn parse_command_line(
    argv: impl IntoIterator<Item = OsString>,
) -> std::result::Result<Cli, ParseFailure> {
    let argv: Vec<OsString> = argv.into_iter().collect();
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .map_err(ParseFailure::Clap)?;
    let Some(("run", run)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches).map_err(ParseFailure::Clap);
    };
    let Some(path) = run.get_one::<std::path::PathBuf>("config") else {
        return Cli::from_arg_matches(&matches).map_err(ParseFailure::Clap);
    };
    let loaded = settings::load(path).map_err(ParseFailure::Settings)?;
    let command = settings::with_settings(Cli::command(), &loaded, Some(run));
    let merged = command
        .try_get_matches_from(&argv)
        .map_err(ParseFailure::Clap)?;
    Cli::from_arg_matches(&merged).map_err(ParseFailure::Clap)
}

/// Run the command the user asked for.
pub fn run(cli: Cli) -> Result<Outcome> {
    logging::init(cli.verbose);
    if !matches!(&cli.command, Command::Run(args) if !args.check) {
        // Only the agent answers signals; the others take their default
        // action, as if they had never been held.
        agent::signals::release();
    }
    match cli.command {
        Command::Run(args) => {
            let config = config::validate(&args).map_err(|err| {
                let source = args
                    .config
                    .as_ref()
                    .map(|path| format!(" (settings: the command line and {})", path.display()));
                Usage(format!("{err:#}{}", source.unwrap_or_default()))
            })?;
            let ship_to = config::ship_destination(&args)?;
            if args.check {
                let outcome = agent::doctor::check(&config)?;
                if let Some(destination) = &ship_to {
                    // Not a failure: the agent records while the store is down.
                    match ship::check(destination) {
                        Ok(line) => println!("ship-to: {line}"),
                        Err(err) => println!("ship-to: {} is NOT reachable: {err:#} (the agent records anyway and ships when it is)", destination.url),
                    }
                }
                return Ok(outcome);
            }
            let shipper = ship_to
                .map(|destination| ship::Shipper::start(destination, config.output_dir.clone()))
                .transpose()?;
            let result = agent::run_agent(&config);
            if let Some(shipper) = shipper {
                shipper.finish();
            }
            result?;
            Ok(Outcome::Done)
        }
        Command::Report(args) => read::report(&args),
        Command::Flamegraph(args) => read::flamegraph(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Top(args) => top::top(&args),
        Command::Sql(args) => sql::sql(&args),
        Command::Schema(args) => {
            print!(
                "{}",
                crate::store::schema::describe_all(args.format == SchemaFormat::Markdown)
            );
            Ok(Outcome::Done)
        }
        Command::Export(args) => admin::export(&args),
        Command::Import(args) => admin::import(&args),
        Command::Doctor(args) => admin::doctor(&args),
        Command::Generate(args) => {
            print!(
                "{}",
                match args.what {
                    admin::Generated::Manpage => manpage::render()?,
                    admin::Generated::Config => settings::default_file(),
                }
            );
            Ok(Outcome::Done)
        }
    }
}

/// What clap's error means for the exit: help and the version print
/// normally and exit 0 (the version with the kernel's features, issue 6);
/// a missing subcommand prints the help and exits 2; anything else is a
/// usage error with clap's whole message (what is wrong, the valid values,
/// "did you mean" tips, the usage line).
fn clap_outcome(err: clap::Error) -> Result<Outcome> {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp => {
            let _ = err.print();
            Ok(Outcome::Exit(0))
        }
        ErrorKind::DisplayVersion => {
            print!("{}", agent::doctor::version_text());
            Ok(Outcome::Exit(0))
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            Ok(Outcome::Exit(EXIT_USAGE))
        }
        _ => Err(Usage(usage_message(&err)).into()),
    }
}

/// clap's rendered message, plain text, without its `error: ` (the
/// caller's `taskscope: error: ` replaces it).
fn usage_message(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let text = rendered.trim_start();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    text.strip_suffix('\n').unwrap_or(text).to_string()
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
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    /// `taskscope ARGS`, parsed as clap sees it (no settings file).
    pub fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("taskscope").chain(args.iter().copied()))
    }

    /// `taskscope run ARGS`, which must parse.
    pub fn run_args(args: &[&str]) -> RunArgs {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        match parse(&all).expect("parses").command {
            Command::Run(run) => run,
            other => panic!("parsed as {other:?}"),
        }
    }

    /// What `main` prints for a usage error clap found.
    fn printed(err: &clap::Error) -> String {
        format!("taskscope: error: {}\n", usage_message(err))
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
    fn verbose_flag_counts() {
        assert_eq!(parse(&["-vv", "run"]).unwrap().verbose, 2);
        assert_eq!(parse(&["run", "-v"]).unwrap().verbose, 1);
    }

    #[test]
    fn usage_errors_keep_clap_s_whole_message() {
        // Missing arguments are listed (the first line alone says "were not
        // provided:" and nothing more).
        let err = parse(&["export", "--since", "1h"]).unwrap_err();
        let text = printed(&err);
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
        assert!(printed(&err).contains("[possible values: csv, parquet]"));
        assert_eq!(
            clap_message_line(&err),
            "invalid value 'json' for '--format <FORMAT>' [possible values: csv, parquet]"
        );
        let err = parse(&["report", "--form", "2026-11-30"]).unwrap_err();
        let text = printed(&err);
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
}
