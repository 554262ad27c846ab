//! `taskscope sql`, the query layer: on the ground-truth workload's files
//! (CSV, Parquet, both, a mix of periods) it gives the rows the DuckDB CLI
//! gives with the shipped script, for every object the script defines
//! (views, tables, table and scalar macros; a test keeps the list
//! complete) and every `taskscope sql` example of the README; bad SQL, an
//! empty window and a damaged file end as `report` ends (exit 2, 1, 3);
//! the period being written is in the tables.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::sql::{run_sql, shipped_objects};
use crate::support::*;

type Row = Map<String, Value>;

/// `taskscope sql --dir DIR ARGS... QUERY`.
fn sql(dir: &Path, args: &[&str], query: &str) -> Output {
    let mut all = vec!["sql", "--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(query);
    taskscope(&all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The rows of a JSON-lines answer.
fn json_rows(out: &Output) -> Vec<Row> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
                .as_object()
                .expect("one object per line")
                .clone()
        })
        .collect()
}

/// The rows `taskscope sql` gives for `query` over every period since 2000.
pub(crate) fn rows(dir: &Path, query: &str) -> Vec<Row> {
    let out = sql(dir, &["--from", "2000-01-01", "--format", "json"], query);
    assert!(out.status.success(), "{query}: {}", stderr(&out));
    json_rows(&out)
}

/// A value as both engines print it: numbers as f64, timestamps without
/// trailing zeros of their fraction.
fn normal(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) if s.len() > 19 && s.as_bytes().get(19) == Some(&b'.') => {
            Value::from(s.trim_end_matches('0').trim_end_matches('.'))
        }
        other => other.clone(),
    }
}

/// Rows compared: `top_comm` (DuckDB's `mode()`) only where one thread is
/// counted, since with a tie DuckDB's pick depends on its scan order.
fn normal_rows(rows: &[Row]) -> Vec<Vec<(String, Value)>> {
    rows.iter()
        .map(|row| {
            let one_thread = row.get("threads").and_then(Value::as_f64) == Some(1.0);
            row.iter()
                .filter(|(k, _)| k.as_str() != "top_comm" || one_thread)
                .map(|(k, v)| (k.clone(), normal(v)))
                .collect()
        })
        .collect()
}

/// `taskscope sql` on `ours` gives for each query the rows DuckDB gives
/// with the shipped script on `theirs` read as `format`, in the same order.
pub(crate) fn same_rows(ours: &Path, theirs: &Path, format: &str, queries: &[&str]) {
    let duck = run_sql(theirs, format, queries);
    for (query, expected) in queries.iter().zip(duck) {
        let got = rows(ours, query);
        assert_eq!(
            normal_rows(&got),
            normal_rows(&expected),
            "{query} on {} differs from DuckDB's on {} ({format})",
            ours.display(),
            theirs.display()
        );
    }
}

/// The queries both engines run: counts, every object of the shipped
/// script (`directory_queries` has those that describe the directory
/// itself), and the README's `taskscope sql` examples. Those with `ago()`
/// choose windows that hold all of the test's rows, so that both engines'
/// `now()` give the same rows.
fn shared_queries() -> Vec<String> {
    let mut queries: Vec<String> = [
        "SELECT (SELECT count(*) FROM samples) AS samples, (SELECT count(*) FROM ticks) AS ticks, \
         (SELECT count(*) FROM stacks) AS stacks, (SELECT count(*) FROM syscalls) AS syscalls, \
         (SELECT count(*) FROM iorq) AS iorq, (SELECT sum(weight_us) FROM samples) AS weight",
        "SELECT * FROM top_activity()",
        "SELECT * FROM top_activity(all_states := true)",
        "SELECT * FROM top_waits(all_states := true)",
        "SELECT * FROM active_threads(INTERVAL '1 second')",
        "SELECT * FROM active_threads(INTERVAL '2 seconds', all_states := true)",
        "SELECT * FROM top_stacks('kernel', all_states := true)",
        "SELECT * FROM top_stacks()",
        "SELECT * FROM top_syscalls(all_states := true)",
        "SELECT * FROM latency_summary()",
        "SELECT * FROM latency_histogram()",
        "SELECT * FROM top_blockers()",
        "SELECT * FROM top_blockers(ago('1 day'), to_ts := ago('-1 hour'))",
        "SELECT * FROM top_activity(from_ts := ago(INTERVAL '1 day'))",
        "SELECT count(*) AS n, min(ts) >= ago('1 day') AS recent, max(ts) < ago(INTERVAL '-1 hour') AS past \
         FROM samples WHERE ts >= ago('2 hours')",
        "SELECT state, taskscope_active(state) AS active, count(*) AS n FROM samples \
         GROUP BY state ORDER BY state",
        "SELECT count(*) AS n FROM ticks WHERE taskscope_in_window(ts, NULL, ago('-1 hour')) \
         AND NOT taskscope_in_window(ts, ago('-1 hour'), NULL)",
        "SELECT taskscope_sampled_us(NULL, NULL) AS sampled_us, \
         taskscope_sampled_us(ago('1 day'), NULL) AS today_us",
        "SELECT kind, name, count(*) AS n, sum(duration_us) AS us \
         FROM taskscope_latencies(NULL, NULL, NULL) GROUP BY kind, name ORDER BY kind, name",
        "SELECT stack_id, kind, taskscope_frames_of_kind(frames, frame_kinds, 'kernel') AS kernel_frames, \
         taskscope_frames_of_kind(frames, frame_kinds, 'native') AS native_frames, \
         taskscope_frames_of_kind(frames, NULL, kind) AS none_frames FROM stacks ORDER BY stack_id",
        "SELECT taskscope_frames_of_kind('f;g;h', 'jit;native;jit', 'jit') AS jit_frames, \
         taskscope_frames_of_kind(NULL, 'jit', 'jit') AS null_frames",
        "SELECT * FROM taskscope_tables",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    queries.extend(readme_sql_examples());
    queries
}

/// Queries of what the script says of the directory itself, which both
/// engines answer alike only on the same directory (DuckDB's `sql` column,
/// the text its view runs, is NULL in `taskscope sql`).
fn directory_queries() -> Vec<String> {
    vec![
        "SELECT name, reads, parquet_files, csv_files, csv_only_files FROM taskscope_sources"
            .to_string(),
    ]
}

/// Every view, table and macro of share/taskscope.sql is run by a query
/// that both engines answer: a new one cannot be left out of `taskscope
/// sql`.
#[test]
fn every_shipped_object_is_compared_with_duckdb() {
    let queries: Vec<String> = shared_queries()
        .into_iter()
        .chain(directory_queries())
        .collect();
    let objects = shipped_objects();
    assert!(objects.len() >= 20, "{objects:?}");
    for (kind, name) in objects {
        let called = |query: &String| {
            query.match_indices(name.as_str()).any(|(at, _)| {
                let before = query[..at].chars().next_back();
                let after = query[at + name.len()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after)
            })
        };
        assert!(
            queries.iter().any(called),
            "share/taskscope.sql defines {kind} {name}, which no query of shared_queries() \
             or directory_queries() in tests/agent/query.rs runs: add one, and make it work in `taskscope sql`"
        );
    }
}

/// The ```sql blocks of the README's `taskscope sql` section.
fn readme_sql_examples() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = text
        .find("<!-- taskscope-sql:begin -->")
        .expect("taskscope-sql:begin marker");
    let end = text
        .find("<!-- taskscope-sql:end -->")
        .expect("taskscope-sql:end marker");
    let mut examples = Vec::new();
    let mut current: Option<String> = None;
    for line in text[start..end].lines() {
        match current.take() {
            None if line.trim_start() == "```sql" => current = Some(String::new()),
            None => {}
            Some(body) if line.trim_start() == "```" => examples.push(body),
            Some(mut body) => {
                body.push_str(line);
                body.push('\n');
                current = Some(body);
            }
        }
    }
    assert!(
        examples.len() >= 3,
        "expected the README's sql examples: {examples:?}"
    );
    examples
}

fn copy_files(from: &Path, to: &Path, keep: impl Fn(&Path) -> bool) {
    for file in files_under(from) {
        if !keep(&file) {
            continue;
        }
        let target = to.join(&file);
        std::fs::create_dir_all(target.parent().unwrap()).expect("mkdir");
        std::fs::copy(from.join(&file), &target).expect("copy");
    }
}

#[test]
fn sql_answers_as_duckdb_does_on_every_format() {
    require_root();
    let _serial = exclusive();
    let mut workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let status = AgentRun::new()
        .args([
            "--all",
            "--frequency",
            "20",
            "--track",
            "syscalls,io",
            "--format",
            "csv,parquet",
            "--pid",
            &workload.pid().to_string(),
        ])
        .duration(4)
        .output(&out)
        .run();
    workload.stop();
    assert_success(&status);
    let queries = shared_queries();
    let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
    let directory = directory_queries();
    let directory: Vec<&str> = directory.iter().map(String::as_str).collect();

    // Both formats: read from Parquet; as DuckDB reads them.
    same_rows(&out, &out, "parquet", &queries);
    same_rows(&out, &out, "parquet", &directory);
    // CSV only, and Parquet only.
    let csv = scratch.path().join("csv");
    copy_files(&out, &csv, |f| f.to_string_lossy().ends_with(".csv.zst"));
    same_rows(&csv, &out, "csv", &queries);
    let parquet = scratch.path().join("parquet");
    copy_files(&out, &parquet, |f| {
        f.to_string_lossy().ends_with(".parquet")
    });
    same_rows(&parquet, &out, "parquet", &queries);
    // A mix: the Parquet periods and older CSV-only ones.
    let mixed = scratch.path().join("mixed");
    copy_files(&out, &mixed, |_| true);
    for table in ["samples", "ticks", "stacks", "syscalls", "iorq"] {
        let hour = mixed.join(table).join("date=2000-01-01/hour=00");
        std::fs::create_dir_all(&hour).expect("mkdir");
        let csvs: Vec<_> = files_under(&out.join(table))
            .into_iter()
            .filter(|f| f.to_string_lossy().ends_with(".csv.zst"))
            .collect();
        for (i, file) in csvs.iter().enumerate() {
            std::fs::copy(
                out.join(table).join(file),
                hour.join(format!("old{i}-20000101T000000Z.csv.zst")),
            )
            .expect("copy");
        }
    }
    same_rows(&mixed, &mixed, "auto", &queries);
    same_rows(&mixed, &mixed, "auto", &directory);
    let counts = &rows(&mixed, queries[0])[0];
    let single = &rows(&out, queries[0])[0];
    assert_eq!(
        counts["samples"].as_f64().unwrap(),
        2.0 * single["samples"].as_f64().unwrap()
    );

    // Every output format; a query from a file and from standard input.
    let query = "SELECT state, count(*) AS n FROM samples GROUP BY state ORDER BY n DESC, state";
    let table = sql(&out, &["--since", "1d"], query);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("| state") && text.contains("ON_CPU"),
        "{text}"
    );
    let csv_out = sql(&out, &["--since", "1d", "--format", "csv"], query);
    let text = String::from_utf8_lossy(&csv_out.stdout);
    assert!(text.starts_with("state,n\n"), "{text}");
    let file = scratch.path().join("q.sql");
    std::fs::write(&file, query).unwrap();
    let from_file = taskscope(&[
        "sql",
        "--dir",
        out.to_str().unwrap(),
        "--since",
        "1d",
        "--format",
        "csv",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert_eq!(from_file.stdout, csv_out.stdout, "{}", stderr(&from_file));
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} sql --dir {} --since 1d --format csv -f - < {}",
            env!("CARGO_BIN_EXE_taskscope"),
            out.display(),
            file.display()
        ))
        .output()
        .expect("sh");
    assert_eq!(piped.stdout, csv_out.stdout, "{}", stderr(&piped));

    // Bad SQL: one line with the position, exit 2.
    let bad = sql(
        &out,
        &[],
        "SELECT state, count(*)\nFORM samples GROUP BY state",
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let message = stderr(&bad);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("SQL syntax error at line 2, column 6"),
        "{message}"
    );
    let unknown = sql(&out, &[], "SELECT nosuch FROM samples");
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("line 1, column 8"),
        "{}",
        stderr(&unknown)
    );
    // An empty window: exit 1, saying where the data is.
    let empty = sql(
        &out,
        &["--from", "2001-01-01", "--to", "2001-01-02"],
        "SELECT 1",
    );
    assert_eq!(empty.status.code(), Some(1), "{}", stderr(&empty));
    assert!(
        stderr(&empty).contains("holds no samples rows"),
        "{}",
        stderr(&empty)
    );
    // A damaged file: named, its period left out, the rest answered (exit 3).
    let damaged = mixed.join("samples/date=2000-01-01/hour=00/old0-20000101T000000Z.csv.zst");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let answer = sql(
        &mixed,
        &["--from", "2000-01-01", "--format", "json"],
        "SELECT count(*) AS samples FROM samples",
    );
    assert_eq!(answer.status.code(), Some(3), "{}", stderr(&answer));
    assert!(
        stderr(&answer).contains("old0-20000101T000000Z.csv.zst"),
        "{}",
        stderr(&answer)
    );
    let left = json_rows(&answer)[0]["samples"].as_f64().unwrap();
    assert!(left >= single["samples"].as_f64().unwrap(), "{left}");
}

#[test]
fn sql_reads_the_period_being_written() {
    require_root();
    let _serial = exclusive();
    let workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let mut agent = AgentRun::new()
        .args(["--all", "--frequency", "10", "--flush-interval", "1s"])
        .output(&out)
        .spawn();
    wait_for_first_tick(&out, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let query = "SELECT count(*) AS ticks, (SELECT count(*) FROM samples) AS samples, \
                 count(DISTINCT date) AS dates FROM ticks";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answer = sql(&out, &["--since", "5m", "--format", "json"], query);
    while Instant::now() < deadline
        && (!answer.status.success() || json_rows(&answer)[0]["ticks"].as_f64() == Some(0.0))
    {
        std::thread::sleep(Duration::from_millis(500));
        answer = sql(&out, &["--since", "5m", "--format", "json"], query);
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
    drop(workload);
    assert!(answer.status.success(), "{}", stderr(&answer));
    let row = &json_rows(&answer)[0];
    assert!(row["ticks"].as_f64().unwrap() >= 2.0, "{row:?}");
    assert!(row["samples"].as_f64().unwrap() > 0.0, "{row:?}");
    assert_eq!(row["dates"].as_f64(), Some(1.0), "{row:?}");
}
