//! `taskscope` binary: parse flags (and the --config file), run, print any
//! error once.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match taskscope::config_file::parse_command_line(std::env::args_os()) {
        Ok(cli) => cli,
        Err(failure) => return failure.exit(),
    };
    match taskscope::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("taskscope: error: {err:#}");
            ExitCode::from(taskscope::EXIT_FAILURE)
        }
    }
}
