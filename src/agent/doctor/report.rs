//! The doctor's report: one line per finding with its level, and a
//! verdict.

use std::fmt::Write as _;

/// How a finding bears on running the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Runs, with less information.
    Degraded,
    /// The agent cannot run.
    Fails,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Degraded => "degraded",
            Level::Fails => "FAILS",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    pub detail: String,
}

pub fn finding(level: Level, what: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding {
        level,
        what: what.into(),
        detail: detail.into(),
    }
}

/// The report and the verdict line.
pub fn report(findings: &[Finding]) -> String {
    let mut out = String::new();
    let width = findings.iter().map(|f| f.what.len()).max().unwrap_or(0);
    for f in findings {
        let _ = writeln!(
            out,
            "{:<8} {:<width$}  {}",
            f.level.label(),
            f.what,
            f.detail
        );
    }
    let failed: Vec<&str> = findings
        .iter()
        .filter(|f| f.level == Level::Fails)
        .map(|f| f.what.as_str())
        .collect();
    let degraded: Vec<&str> = findings
        .iter()
        .filter(|f| f.level == Level::Degraded)
        .map(|f| f.what.as_str())
        .collect();
    out.push('\n');
    if failed.is_empty() {
        let _ = write!(out, "taskscope can run here");
        if degraded.is_empty() {
            out.push_str(", with every feature.\n");
        } else {
            let _ = writeln!(out, ", degraded: {}.", degraded.join(", "));
        }
    } else {
        let _ = writeln!(out, "taskscope cannot run here: {}.", failed.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_verdicts() {
        let ok = finding(Level::Ok, "a", "");
        let degraded = finding(Level::Degraded, "b", "less");
        let fails = finding(Level::Fails, "c", "no");
        assert!(report(std::slice::from_ref(&ok))
            .ends_with("taskscope can run here, with every feature.\n"));
        assert!(report(&[ok.clone(), degraded.clone()]).ends_with("can run here, degraded: b.\n"));
        let text = report(&[ok, degraded, fails]);
        assert!(text.ends_with("taskscope cannot run here: c.\n"), "{text}");
        assert!(text.contains("FAILS    c  no"), "{text}");
    }
}
