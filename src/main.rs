//! `taskscope` binary: parse flags (and the --config file), run, print any
//! error once.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything else: a stop or reload while the agent starts waits
    // for its handlers instead of killing it (see `signals`).
    taskscope::agent::signals::hold();
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
