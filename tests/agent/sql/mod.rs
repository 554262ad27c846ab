//! The shipped DuckDB script, share/taskscope.sql: every view and named
//! query it defines runs with the real DuckDB CLI on the ground-truth
//! workload's files (CSV, Parquet, both, a mix, without --track) and on an
//! empty directory, and its answers agree with what the workload did.
//!
//! Each check starts one DuckDB process with `-init share/taskscope.sql`
//! and feeds it every query at once; a query's rows come back as one JSON
//! line, so an empty result is still one line and the lines stay in order.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value};

use crate::support::*;

mod answers;
mod older;

use answers::check_answers;
use older::{check_older_files, check_readme_examples, copy_tree};

type Row = Map<String, Value>;

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("share/taskscope.sql")
}

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

/// The README's section on the shipped SQL (between its sql markers).
fn readme_sql_section() -> String {
    let text = std::fs::read_to_string(readme_path()).expect("read README.md");
    let start = text
        .find("<!-- sql:begin -->")
        .expect("sql:begin marker in README.md");
    let end = text
        .find("<!-- sql:end -->")
        .expect("sql:end marker in README.md");
    text[start..end].to_string()
}

/// (kind, name) of every `CREATE OR REPLACE TEMP TABLE|VIEW|MACRO` in the
/// script.
pub(crate) fn shipped_objects() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(script_path()).expect("read share/taskscope.sql");
    let mut objects = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 6 || words[..4] != ["CREATE", "OR", "REPLACE", "TEMP"] {
            continue;
        }
        let name: String = words[5]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        objects.push((words[4].to_string(), name));
    }
    objects
}

/// A query that runs the shipped object `name`; `None` for an object this
/// file has no check for (a new one must get one here).
fn exercise(name: &str) -> Option<&'static str> {
    Some(match name {
        "taskscope_tables" => "FROM taskscope_tables",
        "taskscope_sources" => "FROM taskscope_sources",
        "samples" => "SELECT * FROM samples LIMIT 5",
        "ticks" => "SELECT * FROM ticks LIMIT 5",
        "stacks" => "SELECT * FROM stacks LIMIT 5",
        "syscalls" => "SELECT * FROM syscalls LIMIT 5",
        "iorq" => "SELECT * FROM iorq LIMIT 5",
        "ago" => "SELECT ago('1 hour') AS hour_ago, ago(INTERVAL '1 day') AS day_ago",
        "taskscope_active" => {
            "SELECT taskscope_active('DISK') AS disk, taskscope_active('SLEEP') AS sleep"
        }
        "taskscope_in_window" => {
            "SELECT count(*) AS n FROM ticks WHERE taskscope_in_window(ts, NULL, ago('-1 hour'))"
        }
        "taskscope_sampled_us" => "SELECT taskscope_sampled_us(NULL, NULL) AS sampled_us",
        "taskscope_latencies" => "FROM taskscope_latencies(NULL, NULL, NULL) LIMIT 5",
        "top_activity" => "FROM top_activity()",
        "top_waits" => "FROM top_waits()",
        "top_blockers" => "FROM top_blockers()",
        "active_threads" => "FROM active_threads(INTERVAL '1 second')",
        "top_stacks" => "FROM top_stacks()",
        "taskscope_frames_of_kind" => {
            "SELECT taskscope_frames_of_kind(frames, frame_kinds, 'kernel') AS kernel_frames, \
                    taskscope_frames_of_kind('f;g;h', 'jit;native;jit', 'jit') AS jit_frames \
             FROM stacks LIMIT 5"
        }
        "top_syscalls" => "FROM top_syscalls()",
        "latency_summary" => "FROM latency_summary()",
        "latency_histogram" => "FROM latency_histogram()",
        _ => return None,
    })
}

/// Run `queries` in one DuckDB process initialised with the script on
/// `dir`, reading `format` ("auto", "csv", "parquet"); the rows of each.
pub(crate) fn run_sql(dir: &Path, format: &str, queries: &[&str]) -> Vec<Vec<Row>> {
    let mut input = String::from(".bail on\n.mode list\n.headers off\n");
    for query in queries {
        let query = query.trim().trim_end_matches(';');
        input.push_str(&format!(
            "SELECT ifnull(to_json(list(taskscope_row ORDER BY taskscope_n)), '[]') \
             FROM (SELECT row_number() OVER () AS taskscope_n, q AS taskscope_row FROM ({query}) q);\n"
        ));
    }
    let mut child = Command::new(duckdb())
        .arg("-init")
        .arg(script_path())
        .env("TASKSCOPE_DIR", dir)
        .env("TASKSCOPE_FORMAT", format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start duckdb");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write queries to duckdb");
    let out = child.wait_with_output().expect("duckdb output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    if !out.status.success() || lines.len() != queries.len() {
        let failed = queries.get(lines.len()).copied().unwrap_or("(none)");
        panic!(
            "duckdb -init share/taskscope.sql on {} ({format}) failed ({}) at query {}:\n{failed}\n{stderr}",
            dir.display(),
            out.status,
            lines.len() + 1
        );
    }
    lines
        .iter()
        .zip(queries)
        .map(|(line, query)| {
            let rows: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{query}: duckdb printed {line:?}: {e}"));
            rows.as_array()
                .expect("array of rows")
                .iter()
                .map(|row| row.as_object().expect("row object").clone())
                .collect()
        })
        .collect()
}

/// One query's rows.
fn rows(dir: &Path, format: &str, query: &str) -> Vec<Row> {
    run_sql(dir, format, &[query]).remove(0)
}

fn number(row: &Row, key: &str) -> f64 {
    row.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number {key} in {row:?}"))
}

fn text<'r>(row: &'r Row, key: &str) -> &'r str {
    row.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Every shipped object runs, and prints rows unless `may_be_empty(name)`.
fn exercise_all(dir: &Path, format: &str, may_be_empty: impl Fn(&str) -> bool) {
    let objects = shipped_objects();
    let queries: Vec<&str> = objects
        .iter()
        .map(|(_, name)| exercise(name).unwrap_or_else(|| panic!("no check for {name}")))
        .collect();
    for ((_, name), result) in objects.iter().zip(run_sql(dir, format, &queries)) {
        assert!(
            !result.is_empty() || may_be_empty(name),
            "{name} printed no rows on {} ({format})",
            dir.display()
        );
    }
}

/// `taskscope schema`: table -> [(column, type)].
fn schema_columns() -> Vec<(String, Vec<(String, String)>)> {
    let out = taskscope(&["schema"]);
    assert_success(&out);
    let mut tables: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with("  ") {
            let mut words = line.split_whitespace();
            let (name, ty) = (words.next().unwrap(), words.next().unwrap());
            let table = tables.last_mut().expect("a column before any table");
            table.1.push((name.to_string(), ty.to_string()));
        } else if let Some((table, _)) = line.split_once(':') {
            tables.push((table.to_string(), Vec::new()));
        }
    }
    tables
}

/// The share of `value` among rows where `filter` holds (by the `key`
/// column, summing `measure`).
fn share_of(
    rows: &[Row],
    filter: impl Fn(&Row) -> bool,
    key: &str,
    value: &str,
    measure: &str,
) -> f64 {
    let matching: Vec<&Row> = rows.iter().filter(|r| filter(r)).collect();
    let total: f64 = matching.iter().map(|r| number(r, measure)).sum();
    let part: f64 = matching
        .iter()
        .filter(|r| text(r, key) == value)
        .map(|r| number(r, measure))
        .sum();
    if total > 0.0 {
        part / total
    } else {
        0.0
    }
}

#[test]
fn every_shipped_view_and_macro_has_a_check() {
    let objects = shipped_objects();
    let names: BTreeSet<&str> = objects.iter().map(|(_, name)| name.as_str()).collect();
    for expected in [
        "samples",
        "stacks",
        "syscalls",
        "iorq",
        "ticks",
        "top_waits",
        "top_stacks",
        "latency_histogram",
    ] {
        assert!(
            names.contains(expected),
            "share/taskscope.sql defines no {expected}"
        );
    }
    assert_eq!(
        names.len(),
        objects.len(),
        "a name is defined twice: {objects:?}"
    );
    for (kind, name) in &objects {
        let query = exercise(name).unwrap_or_else(|| {
            panic!("share/taskscope.sql defines {kind} {name}, which tests/agent/sql/mod.rs never runs: add it to exercise()")
        });
        assert!(
            query.contains(name.as_str()),
            "exercise({name}) does not use it: {query}"
        );
    }
}

/// On a directory without any files every view exists, with the columns
/// and types of `taskscope schema`, and every query runs and prints nothing.
#[test]
fn empty_directory_gives_typed_empty_views() {
    // Timing-sensitive tests elsewhere run under this lock: keep this
    // CPU-heavy one from running beside them.
    let _serial = exclusive();
    let scratch = scratch();
    let dir = scratch.path();
    let mut queries: Vec<String> = Vec::new();
    let schema = schema_columns();
    for (table, _) in &schema {
        queries.push(format!(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {table})"
        ));
    }
    let query_refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let described = run_sql(dir, "auto", &query_refs);
    for ((table, columns), described) in schema.iter().zip(described) {
        let mut expected: Vec<(String, String)> = columns.clone();
        if table != "stacks" {
            expected.push(("date".into(), "DATE".into()));
            expected.push(("hour".into(), "INTEGER".into()));
        }
        let got: Vec<(String, String)> = described
            .iter()
            .map(|row| {
                (
                    text(row, "column_name").to_string(),
                    text(row, "column_type").to_string(),
                )
            })
            .collect();
        assert_eq!(
            got, expected,
            "view {table}: columns differ from `taskscope schema` (update taskscope_tables in share/taskscope.sql)"
        );
    }
    let sources = rows(dir, "auto", "SELECT name, reads FROM taskscope_sources");
    assert_eq!(sources.len(), 5, "{sources:?}");
    assert!(
        sources.iter().all(|r| text(r, "reads") == "none"),
        "{sources:?}"
    );
    exercise_all(dir, "auto", |_| true);
    let found = rows(
        dir,
        "auto",
        "SELECT (SELECT count(*) FROM samples) + (SELECT count(*) FROM ticks) \
         + (SELECT count(*) FROM stacks) + (SELECT count(*) FROM syscalls) \
         + (SELECT count(*) FROM iorq) + (SELECT count(*) FROM top_activity()) \
         + (SELECT count(*) FROM latency_histogram()) AS found_rows",
    );
    assert_eq!(number(&found[0], "found_rows"), 0.0);

    // A format other than auto, csv or parquet stops the script.
    let out = Command::new(duckdb())
        .arg("-init")
        .arg(script_path())
        .args(["-c", "SELECT 1"])
        .env("TASKSCOPE_DIR", dir)
        .env("TASKSCOPE_FORMAT", "orc")
        .output()
        .expect("run duckdb");
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("taskscope_format must be"),
        "a bad TASKSCOPE_FORMAT must fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The answers on the ground-truth workload, with --track syscalls,io and
/// both formats; then the same directory with a CSV-only period added, and a
/// system-wide Parquet-only run without --track.
#[test]
fn shipped_queries_answer_the_ground_truth() {
    require_root();
    let _serial = exclusive();
    // Only the workload's processes are sampled (--pid, with --all): then
    // "the sleeper dominates clock_nanosleep" does not depend on what else
    // sleeps on this machine (this very test waits in clock_nanosleep).
    let mut workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let pids: Vec<String> = [
        i64::from(workload.pid()),
        workload.tid("stopped"),
        workload.tid("zombie"),
    ]
    .iter()
    .map(i64::to_string)
    .collect();
    let mut agent = AgentRun::new()
        .args([
            "--all",
            "--frequency",
            "20",
            "--track",
            "syscalls,io",
            "--format",
            "csv,parquet",
        ])
        .duration(5)
        .output(&out);
    for pid in &pids {
        agent = agent.args(["--pid", pid.as_str()]);
    }
    let status = agent.run();
    workload.stop();
    assert_success(&status);
    let device = device_of(&disk_dir());

    // Both formats present for every period: read once, from Parquet; the
    // CSV views give the same answers.
    let sources = rows(
        &out,
        "auto",
        "SELECT name, reads FROM taskscope_sources ORDER BY name",
    );
    assert!(
        sources.iter().all(|r| text(r, "reads") == "parquet"),
        "csv,parquet output must be read from Parquet only: {sources:?}"
    );
    let same_answers = [
        "SELECT (SELECT count(*) FROM samples) AS samples, (SELECT count(*) FROM ticks) AS ticks, \
         (SELECT count(*) FROM stacks) AS stacks, (SELECT count(*) FROM syscalls) AS syscalls, \
         (SELECT count(*) FROM iorq) AS iorq, (SELECT sum(weight_us) FROM samples) AS weight",
        "FROM top_activity()",
        "FROM latency_summary()",
        "SELECT * EXCLUDE (date, hour) FROM iorq ORDER BY ALL",
    ];
    let parquet = run_sql(&out, "parquet", &same_answers);
    assert_eq!(
        run_sql(&out, "auto", &same_answers),
        parquet,
        "auto differs from parquet"
    );
    assert_eq!(
        run_sql(&out, "csv", &same_answers),
        parquet,
        "csv differs from parquet"
    );
    let counts = &parquet[0][0];
    for table in ["samples", "ticks", "stacks", "syscalls", "iorq"] {
        assert!(number(counts, table) > 0.0, "no {table} rows: {counts:?}");
    }

    for format in ["csv", "parquet"] {
        // The ground truth has no thread waiting for another's lock.
        exercise_all(&out, format, |name| name == "top_blockers");
        check_answers(&out, format, &device, workload.pid());
    }
    check_readme_examples(&out);

    // Periods that exist only as CSV (the format changed between runs) are
    // read along with the Parquet ones, and no period twice. Every CSV file
    // of the run is copied: the run may have crossed an hour boundary.
    let mixed = scratch.path().join("mixed");
    copy_tree(&out, &mixed);
    let mut copied = Vec::new();
    for table in ["samples", "ticks", "stacks", "syscalls", "iorq"] {
        let hour = mixed.join(table).join("date=2000-01-01/hour=00");
        std::fs::create_dir_all(&hour).expect("mkdir");
        let csvs: Vec<_> = files_under(&out.join(table))
            .into_iter()
            .filter(|f| f.to_string_lossy().ends_with(".csv.zst"))
            .collect();
        assert!(!csvs.is_empty(), "no {table} CSV file");
        for (i, csv) in csvs.iter().enumerate() {
            std::fs::copy(
                out.join(table).join(csv),
                hour.join(format!("old{i}-20000101T000000Z.csv.zst")),
            )
            .expect("copy");
        }
        copied.push((table, csvs.len() as f64));
    }
    let sources = rows(
        &mixed,
        "auto",
        "SELECT name, reads, csv_only_files FROM taskscope_sources",
    );
    for (table, files) in &copied {
        assert!(
            sources.iter().any(|r| text(r, "name") == *table
                && text(r, "reads") == "parquet+csv"
                && number(r, "csv_only_files") == *files),
            "{table}: {files} CSV-only files expected: {sources:?}"
        );
    }
    let doubled = &rows(&mixed, "auto", same_answers[0])[0];
    for table in ["samples", "ticks", "syscalls", "iorq"] {
        assert_eq!(
            number(doubled, table),
            2.0 * number(counts, table),
            "{table}: the Parquet periods plus the same periods as CSV only"
        );
    }
    assert_eq!(
        number(doubled, "stacks"),
        number(counts, "stacks"),
        "stacks are one row per id"
    );

    check_older_files(&out, scratch.path(), counts);

    // Without --track there are no syscalls or iorq files: those views are
    // empty and every query still runs.
    let (_workload, _scratch2, bare) = sample_workload(&[
        "--all",
        "--frequency",
        "20",
        "--duration",
        "3",
        "--format",
        "parquet",
    ]);
    assert!(!bare.join("syscalls").exists() && !bare.join("iorq").exists());
    let sources = rows(
        &bare,
        "auto",
        "SELECT name, reads FROM taskscope_sources ORDER BY name",
    );
    let reads: Vec<(&str, &str)> = sources
        .iter()
        .map(|r| (text(r, "name"), text(r, "reads")))
        .collect();
    assert_eq!(
        reads,
        [
            ("iorq", "none"),
            ("samples", "parquet"),
            ("stacks", "parquet"),
            ("syscalls", "none"),
            ("ticks", "parquet")
        ]
    );
    exercise_all(&bare, "auto", |name| {
        [
            "syscalls",
            "iorq",
            "taskscope_latencies",
            "latency_summary",
            "latency_histogram",
            "top_blockers",
        ]
        .contains(&name)
    });
    let syscalls = rows(&bare, "auto", "FROM top_syscalls(all_states := true)");
    assert!(
        syscalls
            .iter()
            .any(|r| text(r, "syscall") == "clock_nanosleep")
            && syscalls.iter().all(|r| number(r, "recorded_calls") == 0.0),
        "without --track syscalls are sampled but none recorded: {syscalls:#?}"
    );
}
