//! taskscope: an always-on thread-state sampling agent for Linux.
//!
//! CO-RE eBPF hooks keep one entry per thread up to date in an mmap-able
//! array map (`bpf`); a sampler thread scans that table at a fixed rate
//! without a syscall per thread (`sampler`, `record`); a writer thread
//! enriches the rows (`enrich`) and writes rotating, compressed files
//! (`output`) whose columns all come from one table (`schema`).
//!
//! The one decision a reader must know: the kernel side never emits
//! per-event output. Hooks only overwrite the thread's entry, so the cost of
//! sampling depends on the number of threads and the frequency, never on how
//! busy the machine is.

pub mod agent;
pub mod bpf;
pub mod cli;
pub mod cli_admin;
pub mod config;
pub mod config_file;
pub mod export;
pub mod files;
pub mod logging;
pub mod manpage;
pub mod output;
pub mod report;
pub mod store;

use std::process::ExitCode;

/// Exit status for runtime failures (usage errors exit with 2).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for bad command-line input.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a reading command whose answer leaves out data it could
/// not read (each named on stderr).
pub const EXIT_INCOMPLETE: u8 = 3;

/// A reading command's answer: problems are one warning line each and
/// exit 3; bad flags exit 2 with their one-line message; other failures
/// are returned.
fn report_outcome(result: anyhow::Result<report::Answer>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(answer) => {
            for problem in &answer.problems {
                eprintln!("taskscope: warning: {problem}");
            }
            if let Some(failure) = &answer.failure {
                eprintln!("taskscope: error: {failure}");
            }
            Ok(if answer.problems.is_empty() && answer.failure.is_none() {
                ExitCode::SUCCESS
            } else if answer.problems.is_empty() {
                ExitCode::from(EXIT_FAILURE)
            } else {
                ExitCode::from(EXIT_INCOMPLETE)
            })
        }
        Err(err) if err.is::<report::BadFlag>() => {
            eprintln!("taskscope: error: {err:#}");
            Ok(ExitCode::from(EXIT_USAGE))
        }
        Err(err) => Err(err),
    }
}

/// Run the command the user asked for.
pub fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    logging::init(cli.verbose);
    if !matches!(&cli.command, cli::Command::Run(args) if !args.check) {
        // Only the agent answers signals; the others take their default
        // action, as if they had never been held.
        agent::signals::release();
    }
    match cli.command {
        cli::Command::Run(args) => {
            let config = match agent::Config::from_args(&args) {
                Ok(config) => config,
                Err(err) => {
                    let source = args.config.as_ref().map(|path| {
                        format!(" (settings: the command line and {})", path.display())
                    });
                    eprintln!("taskscope: error: {err:#}{}", source.unwrap_or_default());
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            if args.check {
                return agent::doctor::check(&config);
            }
            agent::run_agent(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Report(args) => {
            report_outcome(report::check(&args).and_then(|()| report::run(&args)))
        }
        cli::Command::Flamegraph(args) => {
            report_outcome(report::check_flamegraph(&args).and_then(|()| report::flame::run(&args)))
        }
        cli::Command::Schema(args) => {
            print!(
                "{}",
                store::schema::describe_all(args.format == cli::SchemaFormat::Markdown)
            );
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Export(args) => export::export(&args),
        cli::Command::Import(args) => export::import(&args),
        cli::Command::Doctor(args) => agent::doctor::doctor(&args),
        cli::Command::Generate(args) => {
            print!(
                "{}",
                match args.what {
                    cli_admin::Generated::Manpage => manpage::render()?,
                    cli_admin::Generated::Config => config_file::default_file(),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
