//! `taskscope` binary: run the command line, then print what went wrong
//! (once) and exit with the status that says what happened
//! (`taskscope::error`).

use std::process::ExitCode;

use taskscope::error::{exit_status, Outcome};

fn main() -> ExitCode {
    // Before anything else: a stop or reload while the agent starts waits
    // for its handlers instead of killing it (see `agent::signals`).
    taskscope::agent::signals::hold();
    match taskscope::cli::run_command_line(std::env::args_os()) {
        Ok(outcome) => {
            if let Outcome::Incomplete { problems, failure } = &outcome {
                for problem in problems {
                    eprintln!("taskscope: warning: {problem}");
                }
                if let Some(failure) = failure {
                    eprintln!("taskscope: error: {failure}");
                }
            }
            ExitCode::from(outcome.status())
        }
        Err(err) => {
            eprintln!("taskscope: error: {err:#}");
            ExitCode::from(exit_status(&err))
        }
    }
}
