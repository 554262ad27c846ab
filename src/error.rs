//! How a command ends: the one usage-error type, what a command that did
//! its work reports ([`Outcome`]), and the exit statuses `main` picks.
//!
//! The decision a reader must know: nothing below `main` prints an error
//! or picks an exit status. A command returns its outcome or an error;
//! `main` prints the error once (`taskscope: error: ...`, its whole chain
//! on one line), the problems of an incomplete answer one warning line
//! each, and exits with the status that says which it was.

/// Exit status for runtime failures.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for bad command-line input (flags, settings file, window).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a reading command whose answer leaves out data it could
/// not read (each named on stderr).
pub const EXIT_INCOMPLETE: u8 = 3;

/// Bad input from the user: a flag, a setting or a window that cannot
/// work. Exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

impl Usage {
    /// `err` (its whole chain, on one line) as a usage error.
    pub fn from_error(err: &anyhow::Error) -> anyhow::Error {
        Usage(format!("{err:#}")).into()
    }
}

/// How a command that ran ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked: exit 0.
    Done,
    /// A reading command's answer leaves out what `problems` name (one
    /// warning line each); `failure` says why nothing usable was left,
    /// when that is so. Exit 3, or 1 with a failure and no problems.
    Incomplete {
        problems: Vec<String>,
        failure: Option<String>,
    },
    /// It printed its own verdict that the answer is no (`run --check`
    /// found that the agent cannot run): exit 1, nothing more to say.
    Refused,
    /// clap answered (help, the version, usage for a missing subcommand):
    /// exit with this status.
    Exit(u8),
}

impl Outcome {
    /// The outcome of a reading command that left out what `problems`
    /// name.
    pub fn with_problems(problems: Vec<String>, failure: Option<String>) -> Outcome {
        if problems.is_empty() && failure.is_none() {
            Outcome::Done
        } else {
            Outcome::Incomplete { problems, failure }
        }
    }

    /// The exit status.
    pub fn status(&self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Incomplete { problems, .. } if problems.is_empty() => EXIT_FAILURE,
            Outcome::Incomplete { .. } => EXIT_INCOMPLETE,
            Outcome::Refused => EXIT_FAILURE,
            Outcome::Exit(status) => *status,
        }
    }
}

/// The exit status of a command that failed with `err`: 2 for a usage
/// error, else 1.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Usage>().is_some() {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(Outcome::Done.status(), 0);
        assert_eq!(Outcome::with_problems(Vec::new(), None), Outcome::Done);
        let incomplete = Outcome::with_problems(vec!["a".into()], None);
        assert_eq!(incomplete.status(), EXIT_INCOMPLETE);
        let failed = Outcome::with_problems(Vec::new(), Some("none".into()));
        assert_eq!(failed.status(), EXIT_FAILURE);
        assert_eq!(Outcome::Refused.status(), EXIT_FAILURE);
        let usage: anyhow::Error = Usage("bad".into()).into();
        assert_eq!(exit_status(&usage), EXIT_USAGE);
        assert_eq!(exit_status(&usage.context("while reading")), EXIT_USAGE);
        assert_eq!(exit_status(&anyhow::anyhow!("disk full")), EXIT_FAILURE);
    }
}
