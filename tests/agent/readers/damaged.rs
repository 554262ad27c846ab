//! Damaged, missing and foreign files: each is named on stderr and leaves
//! out exactly its period (checked against `zstdcat | awk` sums).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::*;

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
