//! `taskscope` binary: parse flags, run, print any error once.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match taskscope::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return taskscope::cli::exit_on_parse_error(err),
    };
    match taskscope::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("taskscope: error: {err:#}");
            ExitCode::from(taskscope::EXIT_FAILURE)
        }
    }
}
