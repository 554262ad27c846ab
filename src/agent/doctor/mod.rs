//! What this machine and this process allow: `taskscope doctor`,
//! `taskscope run --check` and the feature line of `taskscope --version`.
//!
//! Probes come in two kinds. Unprivileged ones read the kernel's BTF (which
//! tracepoints, map types and iterators exist) and /proc; they are cheap
//! and also feed `--version`. The check then does what `run` would do
//! short of sampling: it checks the output directory without creating it,
//! opens a cpu-clock perf event, and loads and attaches the real BPF
//! programs with the real settings (then detaches them, pinning nothing).
//!
//! The one decision a reader must know: the trial load is the authority.
//! The per-hook lines explain a failure or a degradation, but whether the
//! agent can run is decided by `bpf::Agent::load` itself — the same code,
//! the same optional/required split — so the check cannot drift from the
//! agent.

mod kernel;
mod report;
mod system;

use std::process::ExitCode;

use anyhow::Result;
use rustix::thread::CapabilitySet;

use crate::agent::config::Config;
use crate::cli_admin::DoctorArgs;
pub use kernel::{version_text, KernelFeatures};
use report::finding;
pub use report::{report, Finding, Level};
use system::{output_finding, perf_event_finding, pin_finding, privilege_findings, trial_load};

/// Everything `run --check` looks at, in report order.
pub fn findings(config: &Config) -> Vec<Finding> {
    let effective = rustix::thread::capabilities(None)
        .map(|sets| sets.effective)
        .unwrap_or(CapabilitySet::empty());
    let kernel = KernelFeatures::probe();
    let mut out = kernel.findings();
    out.extend(privilege_findings(config, effective));
    out.push(perf_event_finding());
    out.push(pin_finding(config));
    out.push(output_finding(config));
    let can_load = out.iter().all(|f| f.level != Level::Fails);
    out.push(if can_load {
        trial_load(config)
    } else {
        finding(
            Level::Fails,
            "load and attach",
            "not tried: see the failures above",
        )
    });
    out
}

/// `taskscope run --check`: print the report; exit 0 if the agent could
/// run, 1 if not.
pub fn check(config: &Config) -> Result<ExitCode> {
    let findings = findings(config);
    print!(
        "taskscope {} (commit {}), kernel {}\n\n{}",
        env!("CARGO_PKG_VERSION"),
        env!("TASKSCOPE_GIT_COMMIT"),
        rustix::system::uname().release().to_string_lossy(),
        report(&findings)
    );
    let fails = findings.iter().any(|f| f.level == Level::Fails);
    Ok(if fails {
        ExitCode::from(crate::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// `taskscope doctor [--config FILE]`: `run --check` with those settings.
pub fn doctor(args: &DoctorArgs) -> Result<ExitCode> {
    let mut argv: Vec<std::ffi::OsString> =
        vec!["taskscope".into(), "run".into(), "--check".into()];
    if let Some(path) = &args.config {
        argv.push("--config".into());
        argv.push(path.into());
    }
    let cli = match crate::config_file::parse_command_line(argv) {
        Ok(cli) => cli,
        Err(failure) => return Ok(failure.exit()),
    };
    let crate::cli::Command::Run(run) = cli.command else {
        anyhow::bail!("internal error: `taskscope run --check` did not parse as run");
    };
    match Config::from_args(&run) {
        Ok(config) => check(&config),
        Err(err) => {
            eprintln!("taskscope: error: {err:#}");
            Ok(ExitCode::from(crate::EXIT_USAGE))
        }
    }
}
