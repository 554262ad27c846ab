use super::*;
use crate::store::schema::{Samples, Ticks};

/// Whether a row of `cells` (columns of samples by name) passes `predicate`,
/// evaluated as the CSV reader evaluates it (a batch of the projection).
fn check(predicate: &str, cells: &[(&str, Cell<'static>)]) -> Result<bool> {
    let mut projection = Projection::of::<Samples>(&[], "test")?;
    let filter = parse::<Samples>(predicate, &mut projection)?;
    struct Fixed(Vec<Cell<'static>>);
    impl Row for Fixed {
        fn cell(&self, column: usize) -> Cell<'_> {
            self.0[column]
        }
    }
    let row = Fixed(
        projection
            .names
            .iter()
            .map(|n| {
                cells
                    .iter()
                    .find(|(name, _)| name == n)
                    .map_or(Cell::Null, |(_, c)| *c)
            })
            .collect(),
    );
    let mut batches = CsvBatches::new(&projection);
    batches.push(&row);
    let batch = batches.finish()?.ok_or_else(|| anyhow!("no batch"))?;
    Ok(filter.mask(&batch)?.value(0))
}

#[test]
fn sql_expressions_of_the_engine() {
    let row = [
        ("comm", Cell::Text("gt-sleeper")),
        ("tid", Cell::Int(42)),
        ("state", Cell::Text("SLEEP")),
        ("syscall", Cell::Null),
        ("syscall_us", Cell::Int(7_500)),
        ("ts", Cell::Timestamp(1_795_352_645_000_000)),
    ];
    for (predicate, want) in [
        ("tid = 42", true),
        ("tid <> 42", false),
        ("tid > 40 AND tid <= 42", true),
        ("tid BETWEEN 1 AND 41", false),
        ("tid NOT BETWEEN 1 AND 41", true),
        ("comm LIKE 'gt-%'", true),
        ("comm LIKE 'gt_sleeper'", true),
        ("comm NOT LIKE '%sleep'", true),
        ("comm ILIKE 'GT-%'", true),
        ("state IN ('DISK', 'SLEEP')", true),
        ("state NOT IN ('DISK', 'SLEEP')", false),
        ("syscall IS NULL", true),
        ("syscall IS NOT NULL", false),
        ("syscall = 'read'", false),
        ("NOT syscall = 'read'", false), // NULL stays NULL
        ("syscall = 'read' OR tid = 42", true),
        ("(state = 'DISK' OR state = 'SLEEP') AND NOT tid = 1", true),
        ("ts >= '2026-11-22 13:04'", true),
        ("ts < '2026-11-22T13:04:05Z'", false),
        ("tid = -1", false),
        ("TRUE", true),
        // What the hand-written subset could not say.
        (
            "upper(comm) LIKE 'GT-SLEEP%' AND syscall_us / 1000 > 5",
            true,
        ),
        ("syscall_us / 1000 > 8", false),
        ("regexp_like(comm, '^gt-s')", true),
        (
            "CASE WHEN state = 'SLEEP' THEN tid % 2 = 0 ELSE false END",
            true,
        ),
        ("coalesce(syscall, 'none') = 'none'", true),
        ("length(comm) = 10 AND tid * 2 + 1 = 85", true),
        ("date_part('hour', ts) = 13", true),
    ] {
        assert_eq!(check(predicate, &row).unwrap(), want, "{predicate}");
    }
}

#[test]
fn bad_expressions_are_one_line_with_the_position() {
    let err = |predicate: &str| check(predicate, &[]).unwrap_err().to_string();
    let syntax = err("state = ");
    assert!(
        syntax.starts_with("--where: SQL syntax error at line 1, column") && !syntax.contains('\n'),
        "{syntax}"
    );
    let unknown = err("nosuch = 1");
    assert!(
        unknown.contains("nosuch")
            && unknown.contains("line 1, column 1")
            && !unknown.contains('\n'),
        "{unknown}"
    );
    let not_a_condition = err("tid + 1");
    assert!(
        not_a_condition.contains("not true or false"),
        "{not_a_condition}"
    );
    let deep = format!("{}tid = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(err(&deep).contains("nests too deeply"), "{}", err(&deep));
}

#[test]
fn time_conditions_also_filter_the_ticks() {
    let split = |predicate: &str| -> Result<Option<(String, Vec<String>)>> {
        let mut projection = Projection::of::<Samples>(&[], "test")?;
        let filter = parse::<Samples>(predicate, &mut projection)?;
        let mut ticks = Projection::of::<Ticks>(&[], "test")?;
        Ok(ticks_filter::<Ticks>(&filter, &mut ticks)?
            .map(|f| (f.logical.to_string(), ticks.names.clone())))
    };
    assert!(split("comm = 'x'").unwrap().is_none());
    let (expr, names) = split("ts >= '2026-11-22 13:00' AND comm = 'x'")
        .unwrap()
        .unwrap();
    assert_eq!(names, ["ts"]);
    assert!(
        expr.starts_with("ts >= ") && !expr.contains("comm"),
        "{expr}"
    );
    let (expr, names) = split(
        "ts >= '2026-11-22 13:00' AND (ts < '2026-11-22 14:00' OR weight_us > 5) AND state = 'DISK'",
    )
    .unwrap()
    .unwrap();
    assert_eq!(names, ["ts", "weight_us"]);
    assert!(expr.contains(" AND ") && !expr.contains("state"), "{expr}");
    let err = split("ts > '2026-11-22 13:00' OR comm = 'y'")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("joins ts with comm") && err.contains("--from/--to"),
        "{err}"
    );
}

#[test]
fn times_as_from_reads_them() {
    let row = [("ts", Cell::Timestamp(1_795_352_645_000_000))]; // 2026-11-22 13:04:05
    for (predicate, want) in [
        ("ts BETWEEN '2026-11-22 13:04' AND '2026-11-22 13:05'", true),
        ("ts IN ('2026-11-22 13:04:05')", true),
        ("'2026-11-22 14:04:05+01:00' = ts", true),
        ("ts > '2026-11-22 13:04:05.000001'", false),
    ] {
        assert_eq!(check(predicate, &row).unwrap(), want, "{predicate}");
    }
    let err = check("ts > '2026-02-30'", &row).unwrap_err().to_string();
    assert!(err.contains("not a timestamp for column ts"), "{err}");
}

#[test]
fn partition_columns_are_the_rows_date_and_hour() {
    let row = [("ts", Cell::Timestamp(1_795_352_645_000_000))]; // 2026-11-22 13:04:05
    for (predicate, want) in [
        ("hour = 13", true),
        ("hour BETWEEN 2 AND 4", false),
        ("date = DATE '2026-11-22'", true),
        ("date = '2026-11-22' AND hour + 1 = 14", true),
        ("date > '2026-11-22'", false),
    ] {
        assert_eq!(check(predicate, &row).unwrap(), want, "{predicate}");
    }
    // They restrict the time sampled as ts does.
    let mut projection = Projection::of::<Samples>(&[], "test").unwrap();
    let filter = parse::<Samples>("hour = 13 AND comm = 'x'", &mut projection).unwrap();
    let mut ticks = Projection::of::<Ticks>(&[], "test").unwrap();
    let kept = ticks_filter::<Ticks>(&filter, &mut ticks).unwrap();
    assert!(kept.is_some() && ticks.index("ts").is_some());
}

#[test]
fn an_expression_failing_on_the_rows_is_a_usage_error() {
    let err = check("tid / 0 = 1", &[("tid", Cell::Int(7))]).unwrap_err();
    assert!(err.is::<crate::error::Usage>(), "{err}");
    assert!(
        err.to_string().starts_with("--where cannot be evaluated: "),
        "{err}"
    );
}
