//! Readers never give a silent wrong answer (issue 11): `report`,
//! `flamegraph` and `export` on a real ground-truth run and on
//! hand-damaged copies of its files, and on the period an agent is still
//! writing. Every damaged or missing file is named on stderr and leaves
//! out exactly its period (checked against `zstdcat | awk` sums of that
//! period), the exit status says the answer is incomplete, and an empty
//! window says where the data is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

mod active;
mod damaged;
mod live;

/// `taskscope <args>` as uid 65534 with group `gid` only.
fn taskscope_as(gid: u32, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            &format!("--regid={gid}"),
            "--clear-groups",
            AGENT,
        ])
        .args(args)
        .output()
        .expect("run setpriv")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text:?}\nstderr: {}\nstatus: {}",
            stderr(out),
            out.status
        )
    })
}

/// A JSON report that must succeed completely.
fn report_ok(args: &[&str]) -> Value {
    let out = taskscope(args);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{args:?} ({}):\n{}",
        out.status,
        stderr(&out)
    );
    json_of(&out)
}

/// One line of stderr, exit 2.
fn assert_usage_error(out: &Output, message: &str) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains(message), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "{text}");
}

/// `cp -a from to`.
fn copy(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

/// The one file of `table` and period `stem` with extension `ext`.
fn file_of(dir: &Path, table: &str, stem: &str, ext: &str) -> PathBuf {
    let name = format!("{stem}.{ext}");
    let found: Vec<PathBuf> = files_under(&dir.join(table))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "{table}/{name} in {}", dir.display());
    dir.join(table).join(&found[0])
}

/// Decompress `path`, change its text with `edit`, compress it again.
fn rewrite(path: &Path, edit: impl Fn(String) -> String) {
    let bytes = std::fs::read(path).expect("read");
    let text = String::from_utf8(zstd::decode_all(bytes.as_slice()).expect("zstd")).expect("utf-8");
    let text = edit(text);
    std::fs::write(path, zstd::encode_all(text.as_bytes(), 1).expect("zstd")).expect("write");
}

/// Sum of `weight_us` (field `field`) in the CSV file, in seconds, by awk.
fn weight_seconds(path: &Path, field: usize) -> f64 {
    let out = shell(
        Path::new("/"),
        &format!(
            "zstdcat '{}' | awk -F, 'NR > 1 {{ s += ${field} }} END {{ printf \"%.6f\", s / 1e6 }}'",
            path.display()
        ),
    );
    out.trim().parse().expect("awk sum")
}

/// (time sampled, thread time counted) of a JSON report, in seconds.
fn sums(report: &Value) -> (f64, f64) {
    let sampled = report["sampled_seconds"].as_f64().expect("sampled_seconds");
    let total = report["avg_active_total"]
        .as_f64()
        .expect("avg_active_total");
    (sampled, sampled * total)
}

const ALL_TIME: [&str; 4] = ["--from", "2000-01-01", "--to", "2100-01-01"];
