//! The engine over hand-made files: a published CSV period, a journal cut
//! mid-block, a damaged file; and the one-line errors.

use std::io::Write;
use std::path::Path;

use super::*;
use crate::store::schema::column_names;

/// CSV text of `T` rows: each row gives some columns, the rest empty.
fn csv_text<T: Table>(rows: &[&[(&str, &str)]]) -> String {
    let names = column_names::<T>();
    let mut text = names.join(",");
    text.push('\n');
    for row in rows {
        let fields: Vec<&str> = names
            .iter()
            .map(|name| row.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v))
            .collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    text
}

fn write_zstd(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, zstd::encode_all(text.as_bytes(), 1).unwrap()).unwrap();
}

const HOUR: &str = "date=2026-11-22/hour=13";

/// One published period (two ticks, three sample rows) of host h.
fn published(dir: &Path) {
    let samples = csv_text::<Samples>(&[
        &[
            ("ts", "2026-11-22 13:00:00.000000"),
            ("tid", "1"),
            ("comm", "a"),
            ("state", "ON_CPU"),
            ("weight_us", "1000000"),
        ],
        &[
            ("ts", "2026-11-22 13:00:00.000000"),
            ("tid", "2"),
            ("comm", "\"b,\nc\""),
            ("state", "DISK"),
            ("weight_us", "1000000"),
        ],
        &[
            ("ts", "2026-11-22 13:00:01.000000"),
            ("tid", "1"),
            ("comm", "a"),
            ("state", "SLEEP"),
            ("weight_us", "1000000"),
        ],
    ]);
    let ticks = csv_text::<Ticks>(&[
        &[
            ("ts", "2026-11-22 13:00:00.000000"),
            ("weight_us", "1000000"),
        ],
        &[
            ("ts", "2026-11-22 13:00:01.000000"),
            ("weight_us", "1000000"),
        ],
    ]);
    write_zstd(
        &dir.join(format!("samples/{HOUR}/h-20261122T130000Z.csv.zst")),
        &samples,
    );
    write_zstd(
        &dir.join(format!("ticks/{HOUR}/h-20261122T130000Z.csv.zst")),
        &ticks,
    );
}

fn window() -> Window {
    Window {
        from_us: crate::store::timefmt::parse_timestamp_micros("2026-11-22 00:00:00").unwrap(),
        to_us: crate::store::timefmt::parse_timestamp_micros("2026-11-23 00:00:00").unwrap(),
    }
}

/// The answer as CSV text (header first).
fn csv_of(answer: &Answer) -> String {
    let mut out = Vec::new();
    print::write(&mut out, &answer.batches, print::Format::Csv).unwrap();
    String::from_utf8(out).unwrap()
}

fn one_value(answer: &Answer) -> String {
    csv_of(answer).lines().nth(1).unwrap_or("").to_string()
}

#[test]
fn published_files_and_the_open_period_are_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    published(d);
    // The open period: a journal whose last block is cut, and its ticks
    // journal with one complete tick.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let rows = csv_text::<Samples>(&[
        &[
            ("ts", "2026-11-22 14:00:00.000000"),
            ("tid", "3"),
            ("comm", "j"),
            ("state", "ON_CPU"),
            ("weight_us", "1000000"),
        ],
        &[
            ("ts", "2026-11-22 14:00:01.000000"),
            ("tid", "3"),
            ("comm", "j"),
            ("state", "ON_CPU"),
            ("weight_us", "1000000"),
        ],
    ]);
    let (first, second) = rows.split_at(rows.find("2026-11-22 14:00:01").unwrap());
    encoder.write_all(first.as_bytes()).unwrap();
    encoder.flush().unwrap();
    let flushed = encoder.get_ref().len();
    encoder.write_all(second.as_bytes()).unwrap();
    encoder.flush().unwrap();
    let mut bytes = encoder.get_ref().clone();
    bytes.truncate(flushed + 3);
    std::fs::create_dir_all(d.join(".inprogress")).unwrap();
    std::fs::write(
        d.join(".inprogress/samples-h-20261122T140000Z.csv.zst.tmp"),
        bytes,
    )
    .unwrap();
    let ticks = csv_text::<Ticks>(&[&[
        ("ts", "2026-11-22 14:00:00.000000"),
        ("weight_us", "1000000"),
    ]]);
    std::fs::write(
        d.join(".inprogress/ticks-h-20261122T140000Z.csv.zst.tmp"),
        zstd::encode_all(ticks.as_bytes(), 1).unwrap(),
    )
    .unwrap();

    let sql = "SELECT count(*) AS n, sum(weight_us) AS w, count(DISTINCT hour) AS hours, \
               max(comm) FILTER (WHERE tid = 2) AS odd FROM samples";
    let answer = run_on_files(d, window(), Limits::default(), sql).unwrap();
    assert!(answer.problems.is_empty(), "{:?}", answer.problems);
    assert_eq!(csv_of(&answer), "n,w,hours,odd\n4,4000000,2,\"b,\nc\"\n");
    // The window drops rows, not only periods.
    let narrow = Window {
        from_us: window().from_us,
        to_us: crate::store::timefmt::parse_timestamp_micros("2026-11-22 13:00:01").unwrap(),
    };
    let answer =
        run_on_files(d, narrow, Limits::default(), "SELECT count(*) FROM samples").unwrap();
    assert_eq!(one_value(&answer), "2");
    // Named queries run as table functions, with named arguments.
    let answer = run_on_files(
        d,
        window(),
        Limits::default(),
        "SELECT state, avg_threads FROM top_activity(all_states := true) WHERE comm = 'a' ORDER BY state",
    )
    .unwrap();
    assert_eq!(
        csv_of(&answer),
        "state,avg_threads\nON_CPU,0.333\nSLEEP,0.333\n"
    );
    // DuckDB's FROM-first form, as the shipped script's examples write it:
    // every column, also in a subquery and a UNION.
    for query in [
        "FROM top_activity(all_states := true) ORDER BY state LIMIT 1",
        "SELECT * FROM (FROM top_activity(all_states := true)) ORDER BY state LIMIT 1",
        "FROM top_activity(all_states := true) UNION ALL FROM top_activity() ORDER BY state LIMIT 1",
    ] {
        let answer = run_on_files(d, window(), Limits::default(), query).unwrap();
        let columns = answer.batches[0].schema().fields().len();
        assert_eq!(columns, 8, "{query}");
        assert_eq!(answer.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1, "{query}");
    }
}

#[test]
fn a_damaged_file_leaves_out_its_period() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    published(d);
    let samples = csv_text::<Samples>(&[&[
        ("ts", "2026-11-22 15:00:00.000000"),
        ("state", "ON_CPU"),
        ("weight_us", "1000000"),
    ]]);
    let ticks = csv_text::<Ticks>(&[&[
        ("ts", "2026-11-22 15:00:00.000000"),
        ("weight_us", "1000000"),
    ]]);
    let bad = d.join("samples/date=2026-11-22/hour=15/h-20261122T150000Z.csv.zst");
    write_zstd(&bad, &samples);
    write_zstd(
        &d.join("ticks/date=2026-11-22/hour=15/h-20261122T150000Z.csv.zst"),
        &ticks,
    );
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(bytes.len() - 4);
    std::fs::write(&bad, bytes).unwrap();
    let answer = run_on_files(
        d,
        window(),
        Limits::default(),
        "SELECT count(*) FROM samples",
    )
    .unwrap();
    assert_eq!(one_value(&answer), "3");
    assert_eq!(answer.problems.len(), 1, "{:?}", answer.problems);
    assert_eq!(answer.problems[0].path, bad);
}

#[test]
fn errors_are_one_line_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    published(dir.path());
    let run = |sql: &str| {
        let err = run_on_files(dir.path(), window(), Limits::default(), sql)
            .err()
            .expect("an error");
        (format!("{err:#}"), crate::error::exit_status(&err))
    };
    let (text, status) = run("SELECT state, count(*)\nFORM samples GROUP BY state");
    assert_eq!(status, 2);
    assert!(
        text.starts_with("SQL syntax error at line 2, column 6: "),
        "{text}"
    );
    assert!(!text.contains('\n'));
    let (text, status) = run("SELECT nosuch FROM samples");
    assert_eq!(status, 2);
    assert!(
        text.contains("line 1, column 8") && text.contains("nosuch"),
        "{text}"
    );
    let (text, status) = run("SELECT * FROM top_activity(bogus := 1)");
    assert_eq!(status, 2);
    assert!(
        text.contains("top_activity has no parameter bogus"),
        "{text}"
    );
    let (text, status) = run("CREATE TABLE x (a INT)");
    assert_eq!(status, 2, "{text}");
    let (text, status) = run("SELECT 1; SELECT 2");
    assert_eq!(status, 2, "{text}");
}

#[test]
fn the_memory_limit_is_an_error_not_a_spill() {
    let engine = Engine::new(Limits {
        memory_bytes: 1 << 20,
        timeout: None,
    })
    .unwrap();
    let err = engine
        .query("SELECT v % 1000000 AS k, count(*) FROM generate_series(1, 3000000) AS t(v) GROUP BY k ORDER BY k")
        .unwrap_err();
    assert!(matches!(err, QueryError::Limit(_)), "{err}");
    assert!(err.to_string().contains("memory limit of 1 MiB"), "{err}");
}

/// The scalar macros and the describing tables of the shipped script, on
/// the published period (2026-11-22, days before any test runs).
#[test]
fn scalar_macros_and_describing_tables_answer() {
    let dir = tempfile::tempdir().unwrap();
    published(dir.path());
    let value = |sql: &str| {
        let answer = run_on_files(dir.path(), window(), Limits::default(), sql)
            .unwrap_or_else(|err| panic!("{sql}: {err:#}"));
        one_value(&answer)
    };
    assert_eq!(
        value("SELECT count(*) FROM samples WHERE taskscope_active(state)"),
        "2"
    );
    assert_eq!(
        value(
            "SELECT count(*) FROM samples WHERE ts < ago('1 hour') AND ts < ago(INTERVAL '1 day')"
        ),
        "3"
    );
    assert_eq!(
        value("SELECT count(*) FROM samples WHERE taskscope_in_window(ts, NULL, TIMESTAMP '2026-11-22 13:00:01')"),
        "2"
    );
    assert_eq!(
        value("SELECT taskscope_sampled_us(NULL, TIMESTAMP '2026-11-22 13:00:01')"),
        "1000000"
    );
    assert_eq!(
        value("SELECT taskscope_frames_of_kind('f;g;h', 'jit;native;jit', 'jit')"),
        "f;h"
    );
    assert_eq!(
        value("SELECT count(*) FROM samples WHERE taskscope_frames_of_kind(comm, 'native', 'native') = comm"),
        "3"
    );
    assert_eq!(
        value("SELECT count(*) FROM taskscope_latencies(NULL, NULL, 7)"),
        "0"
    );
    assert_eq!(
        value("SELECT string_agg(name, '/') FROM taskscope_tables"),
        "samples/stacks/ticks/syscalls/iorq"
    );
    assert_eq!(
        value("SELECT reads || ' ' || csv_files || ' ' || parquet_files FROM taskscope_sources WHERE name = 'samples'"),
        "csv 1 0"
    );
    // An error in a macro's argument says where the user wrote it.
    let err = run_on_files(
        dir.path(),
        window(),
        Limits::default(),
        "SELECT 1,\n  ago(nosuch) FROM samples",
    )
    .err()
    .expect("an error");
    let text = format!("{err:#}");
    assert!(
        text.contains("line 2, column 7") && text.contains("nosuch"),
        "{text}"
    );
    // A macro called wrongly: one line naming it, exit 2.
    for (sql, says) in [
        ("SELECT ago()", "ago needs its argument span"),
        (
            "SELECT taskscope_active(state, 1) FROM samples",
            "taskscope_active takes at most 1 argument",
        ),
        (
            "SELECT * FROM taskscope_latencies(NULL)",
            "taskscope_latencies needs its argument to_ts",
        ),
        (
            "SELECT taskscope_frames_of_kind('a', 'b') ",
            "taskscope_frames_of_kind",
        ),
        (
            "SELECT count(*) FROM samples WHERE ts > ago('soon')",
            "soon",
        ),
    ] {
        let err = run_on_files(dir.path(), window(), Limits::default(), sql)
            .err()
            .expect("an error");
        let text = format!("{err:#}");
        assert_eq!(crate::error::exit_status(&err), 2, "{sql}: {text}");
        assert!(text.contains(says) && !text.contains('\n'), "{sql}: {text}");
    }
}

/// A call without a duration (NULL) is not a value of the percentiles, as
/// DuckDB's quantile_disc skips it (it is counted in `count`, as there).
#[test]
fn latency_percentiles_skip_calls_without_a_duration() {
    use crate::store::schema::Syscalls;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    published(d);
    let mut rows: Vec<Vec<(&str, String)>> = (1..=10)
        .map(|i| {
            vec![
                ("enter_ts", "2026-11-22 13:00:00.000000".to_string()),
                ("syscall", "pwrite64".to_string()),
                ("duration_us", (i * 10).to_string()),
            ]
        })
        .collect();
    rows.push(vec![
        ("enter_ts", "2026-11-22 13:00:00.500000".to_string()),
        ("syscall", "pwrite64".to_string()),
    ]);
    let borrowed: Vec<Vec<(&str, &str)>> = rows
        .iter()
        .map(|r| r.iter().map(|(k, v)| (*k, v.as_str())).collect())
        .collect();
    let refs: Vec<&[(&str, &str)]> = borrowed.iter().map(Vec::as_slice).collect();
    write_zstd(
        &d.join(format!("syscalls/{HOUR}/h-20261122T130000Z.csv.zst")),
        &csv_text::<Syscalls>(&refs),
    );
    let answer = run_on_files(
        d,
        window(),
        Limits::default(),
        "SELECT count, p50_us, p95_us, p99_us, max_us FROM latency_summary()",
    )
    .unwrap();
    assert_eq!(
        csv_of(&answer),
        "count,p50_us,p95_us,p99_us,max_us\n11,50,100,100,100\n"
    );
    // In the histogram it is a bucket of its own, last (as in DuckDB).
    let answer = run_on_files(
        d,
        window(),
        Limits::default(),
        "SELECT low_us, high_us, count FROM latency_histogram()",
    )
    .unwrap();
    let text = csv_of(&answer);
    assert!(text.ends_with("\n,1,1\n"), "{text}");
}
