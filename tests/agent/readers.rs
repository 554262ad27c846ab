//! Readers never give a silent wrong answer (issue 11): `report`,
//! `flamegraph` and `export` on a real ground-truth run and on
//! hand-damaged copies of its files, and on the period an agent is still
//! writing. Every damaged or missing file is named on stderr and leaves
//! out exactly its period (checked against `zstdcat | awk` sums of that
//! period), the exit status says the answer is incomplete, and an empty
//! window says where the data is.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

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

#[test]
fn damaged_or_missing_files_are_named_and_leave_out_their_period() {
    require_root();
    let _serial = exclusive();
    // 2-second periods: the middle one is damaged, the others must stay.
    let (workload, scratch, out) = sample_workload(&[
        "--all",
        "--frequency",
        "10",
        "--duration",
        "7",
        "--test-rotate-secs",
        "2",
        "--format",
        "csv,parquet",
    ]);
    let base = scratch.path();
    let csv = base.join("csv");
    copy(&out, &csv);
    shell(&csv, "find . -name '*.parquet' -delete");
    let parquet = base.join("parquet");
    copy(&out, &parquet);
    shell(&parquet, "find . -name '*.csv.zst' -delete");
    let mut stems: Vec<String> = files_under(&csv.join("samples"))
        .iter()
        .filter_map(|p| {
            Some(
                p.file_name()?
                    .to_str()?
                    .strip_suffix(".csv.zst")?
                    .to_string(),
            )
        })
        .collect();
    stems.sort();
    assert!(stems.len() >= 3, "expected 3 periods: {stems:?}");
    let middle = stems[1].clone();
    let host = middle[..middle.len() - 17].to_string();

    let report = |dir: &Path, extra: &[&str]| -> Output {
        let mut args = vec!["report", "--dir", dir.to_str().unwrap(), "--format", "json"];
        args.extend(ALL_TIME);
        args.extend(extra);
        taskscope(&args)
    };
    let whole = json_of(&report(&csv, &["--all-states"]));
    let (sampled, thread) = sums(&whole);
    assert_eq!(
        whole,
        json_of(&report(&parquet, &["--all-states"])),
        "CSV and Parquet agree"
    );
    // The middle period's share, summed by awk from its own files.
    let middle_ticks = weight_seconds(&file_of(&csv, "ticks", &middle, "csv.zst"), 2);
    let middle_thread = weight_seconds(&file_of(&csv, "samples", &middle, "csv.zst"), 21);
    assert!(
        middle_ticks > 0.5 && middle_thread > 0.5,
        "{middle_ticks} {middle_thread}"
    );

    // Each damage: exit 3, one warning naming the file and what is wrong,
    // and the answer of the other periods, exactly.
    type Damage<'a> = Box<dyn Fn(&Path) + 'a>;
    let short_header = format!(
        "row 1 has {} fields, its header 22",
        taskscope::store::schema::column_names::<taskscope::store::schema::Samples>().len()
    );
    let cases: Vec<(&str, PathBuf, Damage, &str)> = vec![
        (
            "missing ticks file",
            csv.clone(),
            Box::new(|d: &Path| {
                std::fs::remove_file(file_of(d, "ticks", &middle, "csv.zst")).unwrap()
            }),
            "missing (the period has files of other tables)",
        ),
        (
            "wrong header",
            csv.clone(),
            Box::new(|d: &Path| {
                rewrite(&file_of(d, "samples", &middle, "csv.zst"), |t| {
                    t.replacen("weight_us", "wieght_us", 1)
                })
            }),
            "its header has 'wieght_us', which is not a column of samples",
        ),
        (
            "short header",
            csv.clone(),
            Box::new(|d: &Path| {
                rewrite(&file_of(d, "samples", &middle, "csv.zst"), |t| {
                    let (header, rest) = t.split_once('\n').unwrap();
                    let short: Vec<&str> = header.split(',').take(22).collect();
                    format!("{}\n{rest}", short.join(","))
                })
            }),
            &short_header,
        ),
        (
            "a value of the wrong type",
            csv.clone(),
            Box::new(|d: &Path| {
                rewrite(&file_of(d, "samples", &middle, "csv.zst"), |t| {
                    let mut lines: Vec<String> = t.lines().map(String::from).collect();
                    let mut reader = csv::ReaderBuilder::new()
                        .has_headers(false)
                        .from_reader(lines[3].as_bytes());
                    let record = reader.records().next().unwrap().unwrap();
                    let mut fields: Vec<String> = record.iter().map(String::from).collect();
                    fields[20] = "lots".into(); // weight_us
                    let mut writer = csv::Writer::from_writer(Vec::new());
                    writer.write_record(&fields).unwrap();
                    let line = String::from_utf8(writer.into_inner().unwrap()).unwrap();
                    lines[3] = line.trim_end().to_string();
                    lines.join("\n") + "\n"
                })
            }),
            "row 3: weight_us 'lots' is not an integer",
        ),
        (
            "truncated zstd",
            csv.clone(),
            Box::new(|d: &Path| {
                let path = file_of(d, "samples", &middle, "csv.zst");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            }),
            "cannot decompress it",
        ),
        (
            "truncated Parquet",
            parquet.clone(),
            Box::new(|d: &Path| {
                let path = file_of(d, "samples", &middle, "parquet");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            }),
            "it is not a readable Parquet file",
        ),
        (
            "garbage Parquet",
            parquet.clone(),
            Box::new(|d: &Path| {
                let path = file_of(d, "ticks", &middle, "parquet");
                let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
                std::fs::write(&path, garbage).unwrap();
            }),
            "it is not a readable Parquet file",
        ),
    ];
    for (i, (what, from, damage, message)) in cases.iter().enumerate() {
        let dir = base.join(format!("case{i}"));
        copy(from, &dir);
        damage(&dir);
        let out = report(&dir, &["--all-states"]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{what}: {text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one warning: {text}");
        assert!(
            lines[0].starts_with("taskscope: warning: ")
                && lines[0].contains(&middle)
                && lines[0].contains(message)
                && lines[0].ends_with("its period is left out of the answer"),
            "{what}: {text}"
        );
        let (s, t) = sums(&json_of(&out));
        assert!(
            (s - (sampled - middle_ticks)).abs() < 1e-6,
            "{what}: time sampled {s}, expected {} - {middle_ticks}",
            sampled
        );
        assert!(
            (t - (thread - middle_thread)).abs() < 1e-3,
            "{what}: thread time {t}, expected {thread} - {middle_thread}"
        );
    }

    // No ticks at all: one line for the table, nothing to answer from.
    let no_ticks = base.join("no-ticks");
    copy(&csv, &no_ticks);
    std::fs::remove_dir_all(no_ticks.join("ticks")).unwrap();
    let out = report(&no_ticks, &[]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        out.stdout.is_empty(),
        "no answer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        text.contains("ticks: missing: no ticks files, so")
            && text.contains("no usable samples rows"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");

    // A file the user may not read: named, its period left out.
    let private = base.join("private");
    copy(&csv, &private);
    let hidden = file_of(&private, "samples", &middle, "csv.zst");
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut args = vec![
        "report",
        "--dir",
        private.to_str().unwrap(),
        "--format",
        "json",
        "--all-states",
    ];
    args.extend(ALL_TIME);
    let out = taskscope_as(65534, &args);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("cannot read it (Permission denied"), "{text}");
    let (s, _) = sums(&json_of(&out));
    assert!((s - (sampled - middle_ticks)).abs() < 1e-6, "{s}");

    // The flame graph needs a period's stacks when its samples refer to them.
    let no_stacks = base.join("no-stacks");
    copy(&csv, &no_stacks);
    std::fs::remove_file(file_of(&no_stacks, "stacks", &middle, "csv.zst")).unwrap();
    let mut args = vec![
        "flamegraph",
        "--dir",
        no_stacks.to_str().unwrap(),
        "--folded",
        "--all-states",
    ];
    args.extend(ALL_TIME);
    let out = taskscope(&args);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("stacks/") && text.contains(&format!("{middle}.*: missing")),
        "{text}"
    );
    assert!(!out.stdout.is_empty());

    // An empty window (the past, the future) says where the data is, for
    // report and flamegraph alike, in one line, exit 1.
    for window in [
        ["--from", "2000-01-01", "--to", "2000-01-02"],
        ["--from", "2099-01-01", "--to", "2099-01-02"],
    ] {
        for command in [
            vec!["report"],
            vec!["report", "--timeline"],
            vec!["flamegraph", "--folded"],
        ] {
            let mut args = command.clone();
            args.extend(["--dir", csv.to_str().unwrap()]);
            args.extend(window);
            let out = taskscope(&args);
            let text = stderr(&out);
            assert!(out.stdout.is_empty(), "{args:?}");
            assert_eq!(text.trim().lines().count(), 1, "{args:?}: {text}");
            if window[1].starts_with("2099") {
                // A window after now is a usage error (cli::window).
                assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
                assert!(text.contains("after now"), "{args:?}: {text}");
                continue;
            }
            assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
            assert!(
                text.contains("holds no samples rows")
                    && text.contains(&format!("{host}: {} period(s)", stems.len()))
                    && !text.contains("ERROR"),
                "{args:?}: {text}"
            );
        }
    }
    drop(workload);
}

#[test]
fn answers_count_active_threads_over_the_time_they_cover() {
    require_root();
    let _serial = exclusive();
    let (workload, scratch, out) = sample_workload(&[
        "--all",
        "--frequency",
        "10",
        "--duration",
        "6",
        "--format",
        "csv",
    ]);
    let dir = out.to_str().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let by_state = |extra: &[&str]| -> Value {
        let mut args = vec![
            "report", "--dir", dir, "--by", "state", "--format", "json", "--top", "100",
        ];
        args.extend(extra);
        report_ok(&args)
    };
    let states = |report: &Value| -> Vec<String> {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap_or("").to_string())
            .collect()
    };

    // Active threads by default: the spinners, the fsync thread, the
    // stopped child; not the sleepers and idle kworkers --all wrote.
    let active = by_state(&[]);
    let all = by_state(&["--all-states"]);
    assert_eq!(active["states"], "active");
    assert!(
        states(&active)
            .iter()
            .all(|s| !["SLEEP", "IDLE", "PARKED"].contains(&s.as_str())),
        "{active}"
    );
    assert!(states(&all).iter().any(|s| s == "SLEEP"), "{all}");
    let (active_total, all_total) = (
        active["avg_active_total"].as_f64().unwrap(),
        all["avg_active_total"].as_f64().unwrap(),
    );
    let not_counted = active["avg_not_counted"].as_f64().unwrap();
    assert!(
        active_total >= cpus,
        "{active_total} active threads, fewer than the {cpus} CPUs the spinners fill: {active}"
    );
    assert!(
        (active_total + not_counted - all_total).abs() < 1e-6,
        "{active} {all}"
    );
    assert!(not_counted >= 1.0, "the sleepers are not counted: {active}");
    let table = String::from_utf8(taskscope(&["report", "--dir", dir]).stdout).unwrap();
    assert!(
        table.lines().nth(1).is_some_and(|l| l
            .starts_with("counted: active threads (ON_CPU, RUNQUEUE, DISK")
            && l.contains("not counted:")),
        "{table}"
    );

    // --where on ts restricts the time sampled too: the spinners still
    // fill the CPUs over the half of the run it keeps.
    let first_tick = query(
        &out,
        "SELECT strftime(min(ts) + INTERVAL 3 SECOND, '%Y-%m-%d %H:%M:%S.%f') AS t FROM read_csv('ticks/*/*/*.csv.zst')",
    )[0]["t"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = query_number(
        &out,
        &format!("SELECT sum(weight_us) / 1e6 FROM read_csv('ticks/*/*/*.csv.zst') WHERE ts >= '{first_tick}'"),
    );
    let spinners = report_ok(&[
        "report",
        "--dir",
        dir,
        "--format",
        "json",
        "--where",
        &format!("ts >= '{first_tick}' AND comm LIKE 'gt-spin%'"),
    ]);
    assert!(
        (spinners["sampled_seconds"].as_f64().unwrap() - kept).abs() < 1e-6,
        "{spinners} vs {kept} s of ticks"
    );
    let spinning = spinners["avg_active_total"].as_f64().unwrap();
    assert!(
        (spinning - (cpus + 1.0)).abs() < 0.3,
        "{spinning}: {spinners}"
    );
    assert_usage_error(
        &taskscope(&[
            "report",
            "--dir",
            dir,
            "--where",
            &format!("ts >= '{first_tick}' OR comm = 'x'"),
        ]),
        "--from/--to",
    );
    let deep = format!("{}tid = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_usage_error(
        &taskscope(&["report", "--dir", dir, "--where", &deep]),
        "nests too deeply",
    );

    // --by ts prints times, as in the files.
    let ticks = report_ok(&[
        "report", "--dir", dir, "--by", "ts", "--format", "json", "--top", "3",
    ]);
    for row in ticks["rows"].as_array().unwrap() {
        let ts = row["ts"].as_str().unwrap();
        assert!(
            ts.len() == 26
                && ts.starts_with("20")
                && ts.as_bytes()[10] == b' '
                && ts.as_bytes()[19] == b'.',
            "{ticks}"
        );
    }

    // The timeline's default bucket follows the 6 s of data, not the hour.
    let timeline = report_ok(&["report", "--dir", dir, "--timeline", "--format", "json"]);
    assert_eq!(timeline["bucket_seconds"], 1.0, "{timeline}");
    let drawn: Vec<&str> = timeline["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert!(
        drawn.contains(&"ON_CPU") && !drawn.contains(&"SLEEP"),
        "{timeline}"
    );

    // Flame graph: state, then thread name, then frames; active by default.
    let folded = |extra: &[&str]| -> String {
        let mut args = vec![
            "flamegraph",
            "--dir",
            dir,
            "--folded",
            "--where",
            "comm LIKE 'gt-%'",
        ];
        args.extend(extra);
        let out = taskscope(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let default = folded(&[]);
    assert!(
        default.lines().any(|l| l.starts_with("ON_CPU;gt-spin")),
        "{default}"
    );
    // Its uninterruptible waits count as active: DISK while its own request
    // is in flight, UNINTERRUPTIBLE otherwise (on a fast disk the waits for
    // writeback and the cache flush can be all of them in 6 s at 10 Hz; the
    // ground-truth test checks DISK itself).
    assert!(
        default
            .lines()
            .any(|l| l.starts_with("DISK;gt-fsync;") || l.starts_with("UNINTERRUPTIBLE;gt-fsync;")),
        "{default}"
    );
    assert!(
        !default.lines().any(|l| l.starts_with("SLEEP;")),
        "{default}"
    );
    let every = folded(&["--all-states"]);
    assert!(
        every.lines().any(|l| l.starts_with("SLEEP;gt-sleeper;")),
        "{every}"
    );
    // Never an SVG on a terminal (script gives the command one).
    let terminal = Command::new("script")
        .args([
            "-qec",
            &format!("{AGENT} flamegraph --dir {dir}"),
            "/dev/null",
        ])
        .output()
        .expect("run script");
    let said = String::from_utf8_lossy(&terminal.stdout);
    assert_eq!(terminal.status.code(), Some(2), "{said}");
    assert!(
        said.contains("would go to the terminal") && !said.contains("<svg"),
        "{said}"
    );

    // An imported archive is reported over its own window, not the last hour.
    let window = query(
        &out,
        "SELECT strftime(min(ts) - INTERVAL 1 MINUTE, '%Y-%m-%d %H:%M:%S') AS f, \
                strftime(max(ts) + INTERVAL 1 MINUTE, '%Y-%m-%d %H:%M:%S') AS t FROM read_csv('ticks/*/*/*.csv.zst')",
    );
    let (from, to) = (
        window[0]["f"].as_str().unwrap(),
        window[0]["t"].as_str().unwrap(),
    );
    let archive = scratch.path().join("incident.tar.zst");
    let export = taskscope(&[
        "export",
        "--dir",
        dir,
        "--from",
        from,
        "--to",
        to,
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", stderr(&export));
    let imported = scratch.path().join("incident");
    let import = taskscope(&[
        "import",
        archive.to_str().unwrap(),
        "--dir",
        imported.to_str().unwrap(),
    ]);
    assert!(import.status.success(), "{}", stderr(&import));
    let report = report_ok(&[
        "report",
        "--dir",
        imported.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        report["from"].as_str(),
        Some(format!("{from}.000000").as_str()),
        "{report}"
    );
    assert_eq!(
        report["to"].as_str(),
        Some(format!("{to}.000000").as_str()),
        "{report}"
    );
    assert_eq!(
        report["avg_active_total"], active["avg_active_total"],
        "{report}"
    );
    drop(workload);
}

#[test]
fn the_period_being_written_is_read_once_by_those_allowed() {
    require_root();
    let _serial = exclusive();
    let workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let dir = out.to_str().unwrap().to_string();
    let started = Instant::now();
    let mut agent = AgentRun::new()
        .args([
            "--all",
            "--frequency",
            "10",
            "--flush-interval",
            "1s",
            "--file-mode",
            "0640",
            "--group",
            "adm",
        ])
        .output(Path::new(&dir))
        .spawn();
    // Two flushes after the first tick (loading takes longer on a busy
    // machine).
    wait_for_first_tick(&out, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let elapsed = || started.elapsed().as_secs_f64() + 0.5;

    // The journals are as private as the published files will be.
    let inprogress = out.join(".inprogress");
    let meta = std::fs::metadata(&inprogress).expect(".inprogress");
    assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o750, 4));
    let journals = files_under(&inprogress);
    assert!(
        journals
            .iter()
            .any(|j| j.to_string_lossy().starts_with("samples-")),
        "{journals:?}"
    );
    for journal in &journals {
        let meta = std::fs::metadata(inprogress.join(journal)).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.gid()),
            (0o640, 4),
            "{}",
            journal.display()
        );
    }

    // A member of the group reads the open period (nothing is published
    // before the hour ends) up to its last flush; others are told what
    // they cannot read.
    let args = [
        "report",
        "--dir",
        dir.as_str(),
        "--since",
        "5m",
        "--all-states",
        "--format",
        "json",
    ];
    // The first flush comes a flush interval after the first tick, which
    // a loaded machine may delay past the sleep above.
    let mut member = taskscope_as(4, &args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !member.status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        member = taskscope_as(4, &args);
    }
    assert!(member.status.success(), "{}", stderr(&member));
    let live = json_of(&member);
    let sampled = live["sampled_seconds"].as_f64().unwrap();
    assert!(sampled >= 2.0 && sampled <= elapsed(), "{live}");
    assert!(live["in_progress_until"].is_string(), "{live}");
    let other = taskscope_as(65534, &args);
    assert_eq!(other.status.code(), Some(3), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("Permission denied"),
        "{}",
        stderr(&other)
    );
    let flame = taskscope(&["flamegraph", "--dir", &dir, "--since", "5m", "--folded"]);
    assert!(
        flame.status.success() && !flame.stdout.is_empty(),
        "{}",
        stderr(&flame)
    );

    // Export takes the open period as a finished copy, marked partial.
    let archive = scratch.path().join("live.tar.zst");
    let export = taskscope(&[
        "export",
        "--dir",
        &dir,
        "--since",
        "5m",
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", stderr(&export));
    let imported = scratch.path().join("live");
    let import = taskscope(&[
        "import",
        archive.to_str().unwrap(),
        "--dir",
        imported.to_str().unwrap(),
    ]);
    assert!(import.status.success(), "{}", stderr(&import));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(imported.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["partial"], true, "{manifest}");
    let files = manifest["files"].as_array().unwrap();
    assert!(
        !files.is_empty() && files.iter().all(|f| f["in_progress"] == true),
        "{manifest}"
    );
    let rows = query_number(
        &imported,
        "SELECT count(*) FROM read_csv('samples/*/*/*.csv.zst')",
    );
    assert_eq!(
        rows as u64,
        manifest["tables"]["samples"]["rows"].as_u64().unwrap()
    );
    let archived = report_ok(&[
        "report",
        "--dir",
        imported.to_str().unwrap(),
        "--all-states",
        "--format",
        "json",
    ]);
    assert!(
        archived["sampled_seconds"].as_f64().unwrap() >= 2.0,
        "{archived}"
    );

    // Periods published (SIGHUP) while reports read: each answer counts
    // every tick once (never more time than the agent has run).
    for round in 0..6 {
        let reader = Command::new(AGENT)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("report");
        std::thread::sleep(Duration::from_millis(10 * round));
        send_signal(&agent, nix::sys::signal::Signal::SIGHUP);
        let out = wait_with_limit(reader, Duration::from_secs(30));
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
        let report = json_of(&out);
        let sampled = report["sampled_seconds"].as_f64().unwrap();
        assert!(
            sampled > 2.0 && sampled <= elapsed(),
            "round {round}: {sampled} s sampled in {} s",
            elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    send_signal(&agent, nix::sys::signal::Signal::SIGTERM);
    let status = agent.wait().expect("agent");
    let mut log = String::new();
    if let Some(mut pipe) = agent.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut log);
    }
    assert!(status.success(), "{log}");
    // All published now: the same ticks, counted once.
    let final_report = report_ok(&[
        "report",
        "--dir",
        &dir,
        "--since",
        "5m",
        "--all-states",
        "--format",
        "json",
    ]);
    let ticks = query_number(
        &out,
        "SELECT sum(weight_us) / 1e6 FROM read_csv('ticks/*/*/*.csv.zst')",
    );
    assert!(
        (final_report["sampled_seconds"].as_f64().unwrap() - ticks).abs() < 1e-6,
        "{final_report} vs {ticks} s of ticks"
    );
    drop(workload);
}
