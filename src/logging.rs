//! Log setup: `tracing` to journald when running under systemd, to stderr
//! otherwise; libbpf's own messages are routed into the same log.
//!
//! The decision rule is systemd's own: `JOURNAL_STREAM` names the device
//! and inode of the journal stream, and matches stderr only when stderr
//! really is connected to the journal.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::sync::Once;

use tracing::Level;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

static INIT: Once = Once::new();

/// Set up logging once; `verbose` counts -v flags (0 = info).
pub fn init(verbose: u8) {
    INIT.call_once(|| {
        let level = match verbose {
            0 => Level::INFO,
            1 => Level::DEBUG,
            _ => Level::TRACE,
        };
        let filter = EnvFilter::builder()
            .with_default_directive(level.into())
            .with_env_var("TASKSCOPE_LOG")
            .from_env_lossy();
        let journald = if stderr_is_journal() {
            tracing_journald::layer().ok()
        } else {
            None
        };
        match journald {
            Some(layer) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .init();
            }
            None => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(
                        fmt::layer()
                            .with_writer(std::io::stderr)
                            .with_ansi(std::io::stderr().is_terminal())
                            .with_target(false)
                            .compact(),
                    )
                    .init();
            }
        }
        route_libbpf(verbose);
    });
}

fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr().as_fd()) {
        Ok(st) => {
            dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
        }
        Err(_) => false,
    }
}

fn route_libbpf(verbose: u8) {
    use libbpf_rs::PrintLevel;
    let level = if verbose >= 2 {
        PrintLevel::Debug
    } else {
        PrintLevel::Info
    };
    libbpf_rs::set_print(Some((level, |level: PrintLevel, msg: String| {
        let msg = msg.trim_end();
        match level {
            PrintLevel::Warn => tracing::warn!(target: "libbpf", "{msg}"),
            PrintLevel::Info => tracing::debug!(target: "libbpf", "{msg}"),
            PrintLevel::Debug => tracing::trace!(target: "libbpf", "{msg}"),
        }
    })));
}
