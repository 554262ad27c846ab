//! `--where` is any SQL expression of the query engine (issue 15): on a
//! real ground-truth run, `report` with functions, arithmetic, CASE and
//! regular expressions in its `--where` gives the thread time DuckDB's CLI
//! sums for the same predicate over the same files, from Parquet and from
//! CSV; a bad expression or an unknown column is one line with the
//! position, exit 2, as is an expression that fails on the rows.

use std::collections::BTreeMap;

use crate::support::*;

/// Thread seconds per comm: (taskscope's `--where`, DuckDB's WHERE), for
/// predicates the hand-written subset could not say. DuckDB names the
/// regular-expression test `regexp_matches` and divides integers into
/// doubles; the thresholds are far from where that could matter.
const CASES: [(&str, &str); 5] = [
    (
        "lower(comm) LIKE 'gt-spin%' AND weight_us / 1000 > 5",
        "lower(comm) LIKE 'gt-spin%' AND weight_us / 1000 > 5",
    ),
    (
        "regexp_like(comm, '^gt-(sleep|fsync)') OR coalesce(syscall, '') = 'clock_nanosleep'",
        "regexp_matches(comm, '^gt-(sleep|fsync)') OR coalesce(syscall, '') = 'clock_nanosleep'",
    ),
    (
        "CASE WHEN state = 'DISK' THEN true WHEN comm LIKE 'gt-%' THEN tid % 2 = 0 ELSE false END",
        "CASE WHEN state = 'DISK' THEN true WHEN comm LIKE 'gt-%' THEN tid % 2 = 0 ELSE false END",
    ),
    (
        "length(comm) > 8 AND upper(substr(comm, 1, 3)) = 'GT-' AND weight_us * 2 >= 2",
        "length(comm) > 8 AND upper(substr(comm, 1, 3)) = 'GT-' AND weight_us * 2 >= 2",
    ),
    // The partition columns: DuckDB takes them from the files' paths,
    // the report from each row's ts.
    (
        "hour BETWEEN 0 AND 23 AND date > DATE '2000-01-01' AND comm LIKE 'gt-s%'",
        "hour BETWEEN 0 AND 23 AND date > DATE '2000-01-01' AND comm LIKE 'gt-s%'",
    ),
];

fn report_by_comm(dir: &str, predicate: &str) -> BTreeMap<String, f64> {
    let out = taskscope(&[
        "report",
        "--dir",
        dir,
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--all-states",
        "--by",
        "comm",
        "--top",
        "100000",
        "--format",
        "json",
        "--where",
        predicate,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "--where {predicate}: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row["comm"].as_str().unwrap_or("").to_string(),
                row["thread_seconds"].as_f64().expect("thread_seconds"),
            )
        })
        .collect()
}

fn duckdb_by_comm(dir: &std::path::Path, files: &str, predicate: &str) -> BTreeMap<String, f64> {
    query(
        dir,
        &format!(
            "SELECT coalesce(comm, '') AS comm, sum(weight_us) / 1e6 AS s FROM {files} \
             WHERE {predicate} GROUP BY ALL"
        ),
    )
    .iter()
    .map(|row| {
        (
            row["comm"].as_str().unwrap_or("").to_string(),
            row["s"].as_f64().expect("seconds"),
        )
    })
    .collect()
}

fn assert_same(what: &str, ours: &BTreeMap<String, f64>, duckdb: &BTreeMap<String, f64>) {
    assert!(!duckdb.is_empty(), "{what}: DuckDB found no rows");
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        duckdb.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (comm, seconds) in duckdb {
        assert!(
            (ours[comm] - seconds).abs() < 1e-6,
            "{what}: {comm} {} s, DuckDB {seconds} s",
            ours[comm]
        );
    }
}

#[test]
fn where_is_any_sql_expression_and_agrees_with_duckdb() {
    require_root();
    let _serial = exclusive();
    let (workload, _scratch, out) = sample_workload(&[
        "--all",
        "--frequency",
        "10",
        "--duration",
        "4",
        "--format",
        "csv,parquet",
    ]);
    drop(workload);
    let dir = out.to_str().unwrap();
    for (ours, theirs) in CASES {
        // The partitions typed as the shipped views type them: DuckDB's
        // own guess reads `hour=00`…`hour=09` as text (this test failed
        // between 00:00 and 01:00 UTC without it).
        let want = duckdb_by_comm(
            &out,
            "read_parquet('samples/*/*/*.parquet', hive_partitioning = true, \
             hive_types = {'date': DATE, 'hour': INTEGER})",
            theirs,
        );
        assert_same(
            &format!("Parquet: {ours}"),
            &report_by_comm(dir, ours),
            &want,
        );
    }

    // Bad input: one line with the position, exit 2.
    for (predicate, message) in [
        (
            "comm LIKE",
            "--where: SQL syntax error at line 1, column 10",
        ),
        (
            "comm = 'x' AND (tid > 1",
            "--where: SQL syntax error at line 1, column",
        ),
        (
            "nosuch = 1",
            "--where: SQL error at line 1, column 1: column 'nosuch' not found",
        ),
        (
            "upper(nosuch) = 'X'",
            "line 1, column 7: column 'nosuch' not found",
        ),
        ("tid + 1", "not true or false"),
        // Evaluation fails on the rows: the user's error, not the file's.
        ("tid / 0 = 1", "--where cannot be evaluated: "),
    ] {
        let out = taskscope(&["report", "--dir", dir, "--where", predicate]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{predicate}: {stderr}");
        assert!(stderr.contains(message), "{predicate}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }

    // The same from the CSV files (read into batches for the engine).
    let status = std::process::Command::new("find")
        .args([dir, "-name", "*.parquet", "-delete"])
        .status()
        .expect("find");
    assert!(status.success());
    for (ours, theirs) in CASES {
        let want = duckdb_by_comm(
            &out,
            "read_csv('samples/*/*/*.csv.zst', hive_partitioning = true, \
             hive_types = {'date': DATE, 'hour': INTEGER})",
            theirs,
        );
        assert_same(&format!("CSV: {ours}"), &report_by_comm(dir, ours), &want);
    }
    let out = taskscope(&["report", "--dir", dir, "--where", "tid / 0 = 1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--where cannot be evaluated: "), "{stderr}");
}
