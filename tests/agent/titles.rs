//! Process titles (issue 13, `proc_title`): argv[0] as the process left
//! it, a title it set for itself, never the arguments of its command line.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::support::*;

const SAMPLES: &str = "read_csv('samples/*/*/*.csv.zst')";

/// Every byte the output directory holds, decompressed: the raw files,
/// the CSV files through zstd, the Parquet files through DuckDB as CSV.
fn output_text(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut texts = Vec::new();
    for path in files_under(out) {
        let full = out.join(&path);
        let bytes = std::fs::read(&full).expect("read output file");
        let name = path.display().to_string();
        if path.extension().is_some_and(|e| e == "zst") {
            let plain = zstd::decode_all(&bytes[..]).expect("zstd");
            texts.push((format!("{name} (zstdcat)"), plain));
        }
        if path.extension().is_some_and(|e| e == "parquet") {
            let dump = Command::new(duckdb())
                .args(["-csv", "-c"])
                .arg(format!("SELECT * FROM read_parquet('{}')", full.display()))
                .output()
                .expect("run duckdb");
            assert!(dump.status.success(), "duckdb cannot read {name}");
            texts.push((format!("{name} (duckdb)"), dump.stdout));
        }
        texts.push((name, bytes));
    }
    texts
}

#[test]
fn argv0_shows_and_password_like_arguments_never_reach_a_file() {
    require_root();
    let _guard = exclusive();
    let binary = compile_workload("titles");
    let (mut worker, info) = spawn_workload(
        Command::new(&binary)
            .arg0("tsworker")
            .args(["-pPASSWORD123", "--token=SECRET456"]),
    );
    let pid = info["pid"].as_i64().expect("pid");
    let scratch = scratch();
    let out = scratch.path().join("out");
    let status = AgentRun::new()
        .args(["--all", "--frequency", "20", "--format", "csv,parquet"])
        .args(["--pid", &pid.to_string()])
        .output(&out)
        .duration(3)
        .run();
    let _ = worker.kill();
    let _ = worker.wait();
    assert_success(&status);
    let rows = query(
        &out,
        &format!(
            "SELECT coalesce(proc_title, '') AS title, count(*) AS n FROM {SAMPLES} \
             WHERE tgid = {pid} GROUP BY ALL ORDER BY n DESC"
        ),
    );
    let count = |title: &str| {
        rows.iter()
            .filter(|r| r["title"] == title)
            .map(|r| r["n"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    let total = count("tsworker") + count("");
    assert!(total >= 40.0, "only {total} rows of the worker: {rows:?}");
    assert_eq!(
        rows.len() as f64,
        1.0 + f64::from(u8::from(count("") > 0.0)),
        "titles other than tsworker: {rows:?}"
    );
    assert!(
        count("tsworker") / total >= 0.9,
        "tsworker on {} of {total} rows: {rows:?}",
        count("tsworker")
    );
    let texts = output_text(&out);
    assert!(texts
        .iter()
        .any(|(name, _)| name.ends_with(".parquet (duckdb)")));
    for (name, text) in texts {
        for secret in ["PASSWORD123", "SECRET456"] {
            assert!(
                !text.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {name}"
            );
        }
    }
}

#[test]
fn a_title_the_process_changes_shows_within_two_seconds() {
    require_root();
    let _guard = exclusive();
    let binary = compile_workload("titles");
    let (mut app, info) = spawn_workload(Command::new(&binary).args(["--retitle", "3000"]));
    let pid = info["pid"].as_i64().expect("pid");
    let change_us = info["change_us"].as_i64().expect("change_us");
    let scratch = scratch();
    let out = scratch.path().join("out");
    let status = AgentRun::new()
        .args(["--all", "--frequency", "20", "--pid", &pid.to_string()])
        .output(&out)
        .duration(6)
        .run();
    let _ = app.kill();
    let _ = app.wait();
    assert_success(&status);
    let rows = query(
        &out,
        &format!(
            "SELECT coalesce(proc_title, '') AS title, count(*) AS n, \
             epoch_us(min(ts)) AS first_us, epoch_us(max(ts)) AS last_us \
             FROM {SAMPLES} WHERE tgid = {pid} GROUP BY ALL"
        ),
    );
    let find = |title: &str| {
        rows.iter()
            .find(|r| r["title"] == title)
            .unwrap_or_else(|| panic!("no row titled {title:?}: {rows:?}"))
    };
    let int = |row: &serde_json::Map<String, serde_json::Value>, key: &str| {
        row[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} in {row:?}"))
    };
    let one = find("tsapp: phase one");
    let two = find("tsapp: phase two");
    for row in &rows {
        let title = row["title"].as_str().unwrap_or("");
        assert!(
            ["", "tsapp: phase one", "tsapp: phase two"].contains(&title),
            "unexpected title {title:?}: {rows:?}"
        );
    }
    // In order: no phase-one row after the first phase-two row, and no
    // phase-two row before the change.
    assert!(int(one, "last_us") < int(two, "first_us"), "{rows:?}");
    assert!(int(two, "first_us") >= change_us, "{rows:?}");
    let late_us = int(two, "first_us") - change_us;
    assert!(
        late_us <= 2_000_000,
        "phase two showed {late_us} µs after the change: {rows:?}"
    );
    assert!(int(one, "n") >= 10 && int(two, "n") >= 10, "{rows:?}");
}
