//! Flags of `taskscope top`, and what the view is asked.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::parse;
use super::read::{window_of, WindowArgs};
use crate::error::{Outcome, Usage};
use crate::store::timefmt;
use crate::top;

/// Flags of `taskscope top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The running agent's --pin-dir (live mode)
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/taskscope")]
    pub pin_dir: PathBuf,

    /// How often live mode reads the thread table: 1s, 500ms, 2s
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse::duration)]
    pub interval: Duration,

    /// Group by these columns (comma-separated)
    /// [default: wait_class,comm,syscall,kfunc]
    #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
    pub by: Vec<String>,

    /// Count sleeping and idle threads too (key a toggles)
    #[arg(long)]
    pub all_states: bool,

    /// History mode: the agent's output directory (also where live mode
    /// falls back to when there is no live table) [default: /var/lib/taskscope]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// History mode over the window ending now (or at --to): 30m, 1h
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, conflicts_with = "from")]
    pub since: Option<Duration>,

    /// History mode from this time ('2026-11-22 03:00', UTC unless an offset)
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    pub from: Option<i64>,

    /// End of the history window (excluded) [default: now]
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    pub to: Option<i64>,
}

const DEFAULT_DIR: &str = "/var/lib/taskscope";

impl TopArgs {
    fn window_args(&self) -> WindowArgs {
        WindowArgs {
            dir: self
                .dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
            since: self.since,
            from: self.from,
            to: self.to,
        }
    }

    /// What `top` is asked; the window is resolved against the clock.
    pub fn request(&self) -> Result<top::Request> {
        let window_args = self.window_args();
        let history = self.since.is_some() || self.from.is_some() || self.to.is_some();
        let window = if history {
            Some(window_of(&window_args)?)
        } else {
            None
        };
        let fallback_window = match window {
            Some(w) => w,
            None => super::window::WindowFlags::default()
                .resolve(timefmt::unix_micros_now())
                .map_err(|err| Usage(err.to_string()))?,
        };
        Ok(top::Request {
            pin_dir: self.pin_dir.clone(),
            interval: self.interval,
            by: self.by.clone(),
            all_states: self.all_states,
            dir: window_args.dir,
            window,
            dir_given: self.dir.is_some(),
            fallback_window,
        })
    }
}

/// `taskscope top`.
pub fn top(args: &TopArgs) -> Result<Outcome> {
    let request = args.request()?;
    top::check(&request)?;
    if top::run(&request)? {
        Ok(Outcome::Done)
    } else {
        Ok(Outcome::Refused)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn top_flags() {
        let cli = Cli::try_parse_from(["taskscope", "top"]).unwrap();
        let Command::Top(args) = cli.command else {
            panic!("not top")
        };
        let request = args.request().unwrap();
        assert_eq!(request.interval, std::time::Duration::from_secs(1));
        assert!(request.window.is_none() && !request.dir_given);
        let cli = Cli::try_parse_from([
            "taskscope",
            "top",
            "--dir",
            "/d",
            "--since",
            "10m",
            "--by",
            "state,comm",
        ])
        .unwrap();
        let Command::Top(args) = cli.command else {
            panic!("not top")
        };
        let request = args.request().unwrap();
        let window = request.window.expect("history mode");
        assert_eq!(window.len_us(), 600_000_000);
        assert_eq!(request.by, vec!["state", "comm"]);
        assert!(request.dir_given);
    }
}
