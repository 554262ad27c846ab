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
            panic!("share/taskscope.sql defines {kind} {name}, which tests/agent/sql.rs never runs: add it to exercise()")
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

/// What the ground-truth workload did, as the named queries tell it.
fn check_answers(dir: &Path, format: &str, device: &str, pid: u32) {
    let by_pid = format!("FROM latency_summary(pid := {pid})");
    let results = run_sql(
        dir,
        format,
        &[
            "FROM top_activity(all_states := true)",
            "FROM top_waits()",
            "FROM latency_summary()",
            "FROM latency_histogram() WHERE name = 'clock_nanosleep'",
            "FROM top_stacks(all_states := true) WHERE top_comm IN ('gt-sleeper', 'gt-fsync')",
            "FROM top_syscalls(all_states := true)",
            "SELECT a.bucket_start, sum(a.avg_threads) AS threads, any_value(t.rows) AS rows \
             FROM active_threads(INTERVAL '1 second', all_states := true) a \
             JOIN (SELECT time_bucket(INTERVAL '1 second', ts) AS bucket_start, avg(rows) AS rows FROM ticks GROUP BY 1) t \
             USING (bucket_start) GROUP BY a.bucket_start",
            "FROM active_threads(INTERVAL '1 second') WHERE state = 'STOPPED'",
            "SELECT (SELECT count(*) FROM samples s WHERE kstack_id NOT IN (SELECT stack_id FROM stacks)) AS lost_kernel, \
                    (SELECT count(*) FROM samples s WHERE ustack_id NOT IN (SELECT stack_id FROM stacks)) AS lost_user, \
                    (SELECT count(*) FROM stacks) AS stacks, (SELECT count(DISTINCT stack_id) FROM stacks) AS ids, \
                    (SELECT count(*) FROM syscalls c WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.tid = c.tid AND s.syscall_seq = c.seq)) AS unsampled_syscalls, \
                    (SELECT count(*) FROM iorq r WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.tid = r.tid AND s.io_seq = r.seq)) AS unsampled_requests",
            "SELECT (SELECT count(*) FROM top_activity(from_ts := ago('10 minutes'))) AS recent, \
                    (SELECT count(*) FROM top_activity()) AS all_groups, \
                    (SELECT count(*) FROM top_activity(to_ts := ago('10 minutes'))) AS older, \
                    (SELECT count(*) FROM latency_summary(to_ts := ago('10 minutes'))) AS older_latencies",
            &by_pid,
            "FROM latency_histogram(pid := 1)",
            "FROM top_activity()",
            "FROM top_waits(all_states := true)",
        ],
    );
    let [activity, waits, summary, histogram, stacks, syscalls, timeline, stopped, joins, windows, workload_latencies, init_latencies, active, all_waits] =
        <[Vec<Row>; 14]>::try_from(results).expect("fourteen results");
    let context = |what: &str, rows: &[Row]| format!("{format}: {what}:\n{rows:#?}");

    // The sleeper is the one thread in clock_nanosleep, asleep all the time.
    let nanosleep = share_of(
        &activity,
        |r| text(r, "syscall") == "clock_nanosleep",
        "comm",
        "gt-sleeper",
        "avg_threads",
    );
    assert!(
        nanosleep >= 0.9,
        "{}",
        context("sleeper's share of clock_nanosleep", &activity)
    );
    let asleep: f64 = activity
        .iter()
        .filter(|r| {
            text(r, "comm") == "gt-sleeper"
                && text(r, "state") == "SLEEP"
                && text(r, "syscall") == "clock_nanosleep"
        })
        .map(|r| number(r, "avg_threads"))
        .sum();
    assert!(
        (0.7..=1.05).contains(&asleep),
        "{}",
        context(
            "the sleeper asleep in clock_nanosleep nearly all the time",
            &activity
        )
    );
    // The fsync thread holds most of the time in DISK.
    let disk = share_of(
        &activity,
        |r| text(r, "state") == "DISK",
        "comm",
        "gt-fsync",
        "avg_threads",
    );
    assert!(
        disk >= 0.9,
        "{}",
        context("fsync thread's share of DISK", &activity)
    );
    let disk_wait = waits
        .iter()
        .filter(|r| text(r, "state") == "DISK")
        .max_by(|a, b| number(a, "avg_threads").total_cmp(&number(b, "avg_threads")))
        .unwrap_or_else(|| panic!("{}", context("no DISK wait", &waits)));
    assert!(
        text(disk_wait, "top_comm") == "gt-fsync" && text(disk_wait, "syscall") == "fdatasync",
        "{}",
        context("top DISK wait", &waits)
    );
    assert!(
        waits
            .iter()
            .all(|r| !["ON_CPU", "SLEEP", "IDLE", "PARKED"].contains(&text(r, "state"))),
        "{}",
        context("top_waits lists a non-wait or an inactive state", &waits)
    );
    // Active threads only by default, like `taskscope report`; every state
    // (but ON_CPU, for waits) with all_states := true.
    assert!(
        active
            .iter()
            .all(|r| !["SLEEP", "IDLE"].contains(&text(r, "state")))
            && active.iter().any(|r| text(r, "state") == "ON_CPU"),
        "{}",
        context("top_activity() counts active states", &active)
    );
    assert!(
        all_waits.iter().any(|r| text(r, "state") == "SLEEP")
            && all_waits.iter().all(|r| text(r, "state") != "ON_CPU"),
        "{}",
        context("top_waits(all_states := true)", &all_waits)
    );
    let wait_share: f64 = waits.iter().map(|r| number(r, "share")).sum();
    assert!(
        (0.98..=1.02).contains(&wait_share),
        "{}",
        context("shares", &waits)
    );

    // Recorded latencies: the 200 ms sleeps, and the fsync thread's I/O on
    // its disk.
    let sleeps = summary
        .iter()
        .find(|r| text(r, "kind") == "syscall" && text(r, "name") == "clock_nanosleep")
        .unwrap_or_else(|| panic!("{}", context("no clock_nanosleep latency", &summary)));
    assert!(
        number(sleeps, "count") >= 5.0,
        "{}",
        context("sleeps", &summary)
    );
    assert!(
        (180_000.0..=240_000.0).contains(&number(sleeps, "p50_us")),
        "{}",
        context("clock_nanosleep p50 should be near 200 ms", &summary)
    );
    for (low, high) in [
        ("p50_us", "p95_us"),
        ("p95_us", "p99_us"),
        ("p99_us", "max_us"),
    ] {
        assert!(
            number(sleeps, low) <= number(sleeps, high),
            "{}",
            context("percentiles", &summary)
        );
    }
    assert!(
        summary.iter().any(|r| text(r, "name") == "fdatasync"),
        "{}",
        context("no fdatasync latency", &summary)
    );
    assert!(
        summary
            .iter()
            .any(|r| text(r, "kind") == "io" && text(r, "name").starts_with(&format!("{device} "))),
        "{}",
        context(&format!("no I/O latency on {device}"), &summary)
    );
    let fullest = histogram
        .iter()
        .max_by(|a, b| number(a, "count").total_cmp(&number(b, "count")))
        .unwrap_or_else(|| panic!("{}", context("no clock_nanosleep histogram", &histogram)));
    assert_eq!(
        (number(fullest, "low_us"), number(fullest, "high_us")),
        (131_072.0, 262_144.0),
        "{}",
        context("clock_nanosleep's log2 bucket holding 200 ms", &histogram)
    );
    let counted: f64 = histogram.iter().map(|r| number(r, "count")).sum();
    assert_eq!(
        counted,
        number(sleeps, "count"),
        "{}",
        context("histogram total", &histogram)
    );

    // Stacks: the sleeper's kernel and user stacks are in nanosleep, and
    // every id the samples use resolves to one stacks row.
    // Each frame has its kind: every kernel frame `kernel`, every frame of
    // this C program `native`.
    for (kind, frame_kind) in [("kernel", "kernel"), ("user", "native")] {
        let found = stacks.iter().any(|r| {
            let kinds: Vec<&str> = text(r, "frame_kinds").split(';').collect();
            text(r, "kind") == kind
                && text(r, "top_comm") == "gt-sleeper"
                && text(r, "frames").contains("nanosleep")
                && kinds.len() == text(r, "frames").split(';').count()
                && kinds.iter().all(|k| *k == frame_kind)
        });
        assert!(
            found,
            "{}",
            context(
                &format!("no {kind} nanosleep stack for the sleeper"),
                &stacks
            )
        );
    }
    assert!(
        stacks
            .iter()
            .any(|r| text(r, "top_comm") == "gt-fsync" && text(r, "frames").contains("fdatasync")),
        "{}",
        context("no fdatasync stack for the fsync thread", &stacks)
    );
    let joins = &joins[0];
    assert_eq!(number(joins, "lost_kernel"), 0.0, "{joins:?}");
    assert_eq!(number(joins, "lost_user"), 0.0, "{joins:?}");
    assert_eq!(
        number(joins, "stacks"),
        number(joins, "ids"),
        "stacks view: one row per id: {joins:?}"
    );
    assert_eq!(
        number(joins, "unsampled_syscalls"),
        0.0,
        "every syscalls row joins a sample: {joins:?}"
    );
    assert_eq!(
        number(joins, "unsampled_requests"),
        0.0,
        "every iorq row joins a sample: {joins:?}"
    );

    // Syscalls by time: the sleeper's, with its recorded calls.
    let nanosleep = syscalls
        .iter()
        .find(|r| text(r, "syscall") == "clock_nanosleep")
        .unwrap_or_else(|| panic!("{}", context("no clock_nanosleep", &syscalls)));
    assert_eq!(
        text(nanosleep, "top_comm"),
        "gt-sleeper",
        "{}",
        context("top_syscalls", &syscalls)
    );
    assert!(
        number(nanosleep, "recorded_calls") >= 5.0,
        "{}",
        context("top_syscalls", &syscalls)
    );
    assert!(
        (180_000.0..=240_000.0).contains(&number(nanosleep, "avg_us")),
        "{}",
        context("clock_nanosleep average", &syscalls)
    );

    // The timeline adds up to the rows per tick, and the stopped process is
    // in every bucket.
    assert!(
        timeline.len() >= 3,
        "{}",
        context("timeline buckets", &timeline)
    );
    for bucket in &timeline {
        let (threads, rows) = (number(bucket, "threads"), number(bucket, "rows"));
        assert!(
            (threads - rows).abs() <= 0.01 * rows + 0.01,
            "{}",
            context("active_threads per bucket vs ticks.rows", &timeline)
        );
    }
    assert_eq!(
        stopped.len(),
        timeline.len(),
        "{}",
        context("STOPPED buckets", &stopped)
    );
    assert!(
        stopped.iter().all(|r| number(r, "avg_threads") >= 0.9),
        "{}",
        context("the stopped child in each bucket", &stopped)
    );

    // Time windows: the data is minutes old at most.
    let windows = &windows[0];
    assert_eq!(
        number(windows, "recent"),
        number(windows, "all_groups"),
        "{windows:?}"
    );
    assert_eq!(number(windows, "older"), 0.0, "{windows:?}");
    assert_eq!(number(windows, "older_latencies"), 0.0, "{windows:?}");

    // Only the workload was sampled, so its pid selects every recorded
    // latency, and pid 1 none.
    assert_eq!(workload_latencies, summary, "latency_summary(pid := {pid})");
    assert!(
        init_latencies.is_empty(),
        "{}",
        context("pid 1", &init_latencies)
    );
}

/// The README's shipped-SQL examples: ```sql blocks run in a
/// session started with the script, ```sh blocks that use the script or
/// zstdcat run with the installed paths pointed at this checkout and `dir`.
fn check_readme_examples(dir: &Path) {
    let text = readme_sql_section();
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match current.take() {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    current = Some((lang.to_string(), String::new()));
                }
            }
            Some(block) if trimmed == "```" => blocks.push(block),
            Some((lang, mut body)) => {
                body.push_str(line);
                body.push('\n');
                current = Some((lang, body));
            }
        }
    }
    let sql: Vec<&str> = blocks
        .iter()
        .filter(|(lang, _)| lang == "sql")
        .map(|(_, body)| body.as_str())
        .collect();
    assert!(
        sql.len() >= 6,
        "expected the README's SQL examples, found {}",
        sql.len()
    );
    for (query, result) in sql.iter().zip(run_sql(dir, "auto", &sql)) {
        assert!(
            !result.is_empty(),
            "README example printed no rows:\n{query}"
        );
    }
    let shell: Vec<&str> = blocks
        .iter()
        .filter(|(lang, body)| {
            lang == "sh" && (body.contains("taskscope.sql") || body.starts_with("zstdcat "))
        })
        .map(|(_, body)| body.as_str())
        .collect();
    assert!(
        shell.len() >= 2,
        "expected the README's shell examples, found {}",
        shell.len()
    );
    for example in shell {
        let script = example
            .replace(
                "/usr/share/taskscope/taskscope.sql",
                script_path().to_str().unwrap(),
            )
            .replace("/var/lib/taskscope", dir.to_str().unwrap());
        run_example(example, &script);
    }
}

/// Copy the files under `from` to `to` (directories created as needed).
fn copy_tree(from: &Path, to: &Path) {
    for file in files_under(from) {
        let target = to.join(&file);
        std::fs::create_dir_all(target.parent().unwrap()).expect("mkdir");
        std::fs::copy(from.join(&file), &target).expect("copy");
    }
}

/// Files written by an earlier version, without the columns added since
/// (columns are only ever appended), are read with the new ones: their new
/// columns are NULL and no row is lost, in both formats.
fn check_older_files(out: &Path, scratch: &Path, counts: &Row) {
    let added = [
        (
            "samples",
            "wait_class, since_lower_bound, host, container_id, container_runtime, \
             container_name, pod_name, pod_namespace, pod_uid, waker_tid, waker_comm, \
             blocker_tid, blocker_kind",
        ),
        ("stacks", "frame_kinds"),
        ("syscalls", "comm, exe"),
        ("iorq", "comm, exe"),
    ];
    for (format, ext) in [("csv", ".csv.zst"), ("parquet", ".parquet")] {
        let older = scratch.join(format!("older-{format}"));
        copy_tree(out, &older);
        for (table, columns) in added {
            let hour = older.join(table).join("date=2000-01-01/hour=00");
            std::fs::create_dir_all(&hour).expect("mkdir");
            let files: Vec<_> = files_under(&out.join(table))
                .into_iter()
                .filter(|f| f.to_string_lossy().ends_with(ext))
                .collect();
            let source = out.join(table).join(&files[0]);
            let target = hour.join(format!("old-20000101T000000Z{ext}"));
            let (reader, options) = if format == "csv" {
                (
                    format!(
                        "read_csv('{}', all_varchar = true, hive_partitioning = false)",
                        source.display()
                    ),
                    "FORMAT csv, HEADER, COMPRESSION zstd",
                )
            } else {
                (
                    format!(
                        "read_parquet('{}', hive_partitioning = false)",
                        source.display()
                    ),
                    "FORMAT parquet",
                )
            };
            query(
                scratch,
                &format!(
                    "COPY (SELECT * EXCLUDE ({columns}) FROM {reader}) TO '{}' ({options})",
                    target.display()
                ),
            );
        }
        let read = &rows(
            &older,
            format,
            "SELECT count(*) AS samples, count(*) FILTER (date = DATE '2000-01-01') AS old, \
                    count(host) FILTER (date = DATE '2000-01-01') AS old_host, \
                    count(wait_class) FILTER (date <> DATE '2000-01-01') AS new_class, \
                    (SELECT count(*) FROM syscalls WHERE date = DATE '2000-01-01') AS old_syscalls, \
                    (SELECT count(comm) FROM syscalls WHERE date = DATE '2000-01-01') AS old_comm \
             FROM samples",
        )[0];
        assert!(number(read, "old") > 0.0, "{format}: {read:?}");
        assert_eq!(number(read, "old_host"), 0.0, "{format}: {read:?}");
        assert_eq!(
            number(read, "new_class"),
            number(counts, "samples"),
            "{format}: {read:?}"
        );
        assert!(number(read, "old_syscalls") > 0.0, "{format}: {read:?}");
        assert_eq!(number(read, "old_comm"), 0.0, "{format}: {read:?}");
        assert_eq!(
            number(read, "samples"),
            number(counts, "samples") + number(read, "old"),
            "{format}: {read:?}"
        );
        exercise_all(&older, format, |name| name == "top_blockers");
    }
}
