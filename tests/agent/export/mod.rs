//! Export and import on real data: a window of a ground-truth run goes into
//! an archive, comes back out on "another machine" (another directory),
//! and DuckDB and sha256sum agree with the manifest. Also: an unprivileged
//! user exports world-readable data, restricted data makes a restricted
//! archive, tampering is caught, the daily naming and --keep-for work
//! (deleting only what this host's export wrote), and import refuses what
//! the manifest does not allow before writing.

mod import;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "taskscope failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn manifest(imported: &Path) -> Value {
    let text = std::fs::read_to_string(imported.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// The stems (`<host>-<stamp>`) of a table's published files, oldest first.
fn stems(data: &Path, table: &str) -> Vec<String> {
    let mut stems: Vec<String> = files_under(&data.join(table))
        .iter()
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .strip_suffix(".csv.zst")
                .map(str::to_string)
        })
        .collect();
    stems.sort_by_key(|stem| stem.rsplit('-').next().map(str::to_string));
    stems.dedup();
    stems
}

/// `YYYYMMDDTHHMMSSZ` → `YYYY-MM-DD HH:MM:SS`.
fn stamp_time(stem: &str) -> String {
    let stamp = stem.rsplit('-').next().expect("stamp");
    format!(
        "{}-{}-{} {}:{}:{}",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    )
}

fn count(dir: &Path, glob: &str) -> u64 {
    let reader = if glob.ends_with(".parquet") {
        "read_parquet"
    } else {
        "read_csv"
    };
    query_number(dir, &format!("SELECT count(*) FROM {reader}('{glob}')")) as u64
}

#[test]
fn exported_window_reads_back_with_duckdb_and_matching_checksums() {
    require_root();
    let _serial = exclusive();
    // Periods of 2 s, both formats: copy mode must pick one per period.
    let (_workload, scratch, data) = sample_workload(&[
        "--all",
        "--frequency",
        "20",
        "--duration",
        "5",
        "--test-rotate-secs",
        "2",
        "--format",
        "csv,parquet",
    ]);
    let samples = stems(&data, "samples");
    assert!(samples.len() >= 3, "expected 3 periods, got {samples:?}");
    let middle = &samples[1];

    // --- A one-second window inside the middle period: exactly that period.
    let archive = scratch.path().join("incident.tar.zst");
    let from = stamp_time(middle);
    let export = taskscope(&[
        "export",
        "--dir",
        data.to_str().unwrap(),
        "--from",
        &from,
        "--to",
        &format!("{from}.999999"),
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(ok(&export).trim(), archive.to_str().unwrap());
    assert!(
        export.stderr.is_empty(),
        "no progress bar without a terminal: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o644,
        "world-readable data makes a world-readable archive"
    );

    let imported = scratch.path().join("elsewhere");
    let import = ok(&taskscope(&[
        "import",
        archive.to_str().unwrap(),
        "--dir",
        imported.to_str().unwrap(),
    ]));
    assert!(import.contains("checksums match the manifest"), "{import}");
    let manifest = manifest(&imported);
    let files = manifest["files"].as_array().expect("files");
    assert_eq!(
        files.len(),
        3,
        "one file per table of the middle period: {files:?}"
    );
    for file in files {
        let path = file["path"].as_str().unwrap();
        assert!(
            path.contains(middle.as_str()),
            "{path} is not of period {middle}"
        );
        assert!(
            path.ends_with(".parquet"),
            "{path}: Parquet is preferred when both exist"
        );
        // Independent checksums: sha256sum of the extracted file and of
        // the agent's own file (copy mode is byte for byte).
        let digest = file["sha256"].as_str().unwrap();
        assert_eq!(sha256sum(&imported.join(path)), digest, "{path}");
        assert_eq!(
            sha256sum(&data.join(path)),
            digest,
            "{path} differs from the agent's file"
        );
    }
    for table in ["samples", "stacks", "ticks"] {
        let rows = manifest["tables"][table]["rows"].as_u64().unwrap();
        assert!(rows > 0, "{table} has no rows");
        let glob = format!("{table}/*/*/*.parquet");
        assert_eq!(
            count(&imported, &glob),
            rows,
            "{table}: DuckDB disagrees with the manifest"
        );
        let original = format!("{table}/*/*/{middle}.csv.zst");
        assert_eq!(
            count(&data, &original),
            rows,
            "{table}: the CSV copy of the period has other rows"
        );
    }
    let window = &manifest["window"];
    assert_eq!(window["from"].as_str().unwrap(), format!("{from}.000000"));
    assert_eq!(manifest["frequency_hz"], serde_json::json!([20]));
    // Self-contained: every stack id the samples use is defined.
    let orphans = query_number(
        &imported,
        "SELECT count(*) FROM read_parquet('samples/*/*/*.parquet') s
         WHERE (s.kstack_id IS NOT NULL AND s.kstack_id NOT IN (SELECT stack_id FROM read_parquet('stacks/*/*/*.parquet')))
            OR (s.ustack_id IS NOT NULL AND s.ustack_id NOT IN (SELECT stack_id FROM read_parquet('stacks/*/*/*.parquet')))",
    );
    assert_eq!(orphans, 0.0, "samples refer to stacks the archive lacks");

    // --- Existing archives are not replaced without --force.
    let again = taskscope(&[
        "export",
        "--dir",
        data.to_str().unwrap(),
        "--since",
        "1h",
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // --- The whole run compacted: one Parquet file per table, same rows.
    let compacted = scratch.path().join("compacted.tar.zst");
    ok(&taskscope(&[
        "export",
        "--dir",
        data.to_str().unwrap(),
        "--since",
        "1h",
        "--format",
        "parquet",
        "-o",
        compacted.to_str().unwrap(),
    ]));
    let unpacked = scratch.path().join("compacted");
    ok(&taskscope(&["import", compacted.to_str().unwrap()]));
    let manifest = self::manifest(&unpacked);
    assert_eq!(manifest["files"].as_array().unwrap().len(), 3);
    for table in ["samples", "stacks", "ticks"] {
        let rows = manifest["tables"][table]["rows"].as_u64().unwrap();
        assert_eq!(count(&unpacked, &format!("{table}/*/*/*.parquet")), rows);
        assert_eq!(
            count(&data, &format!("{table}/*/*/*.csv.zst")),
            rows,
            "{table}: compaction lost or added rows"
        );
    }
    let data_name = data.file_name().unwrap().to_str().unwrap();
    let differing = query_number(
        scratch.path(),
        &format!(
            "SELECT count(*) FROM (
               SELECT ts, tid, state, weight_us, kstack_id, syscall FROM read_csv('{data_name}/samples/*/*/*.csv.zst')
               EXCEPT ALL
               SELECT ts, tid, state, weight_us, kstack_id, syscall FROM read_parquet('compacted/samples/*/*/*.parquet'))"
        ),
    );
    assert_eq!(differing, 0.0, "compacted rows differ from the agent's");

    // --- An unprivileged user exports world-readable data to its own dir.
    let nobody_dir = scratch.path().join("nobody");
    std::fs::create_dir(&nobody_dir).unwrap();
    std::os::unix::fs::chown(&nobody_dir, Some(65534), Some(65534)).unwrap();
    let as_nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            AGENT,
            "export",
        ])
        .args(["--dir", data.to_str().unwrap(), "--since", "1h", "-o"])
        .arg(&nobody_dir)
        .output()
        .expect("run setpriv");
    let written = PathBuf::from(ok(&as_nobody).trim());
    assert!(written.starts_with(&nobody_dir), "{}", written.display());
    let meta = std::fs::metadata(&written).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
    let as_nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            AGENT,
            "import",
        ])
        .arg(&written)
        .output()
        .expect("run setpriv");
    ok(&as_nobody);

    // --- Data readable by its group only makes an archive no more readable.
    let restricted = scratch.path().join("restricted");
    shell(
        scratch.path(),
        &format!("cp -a '{}' restricted", data.display()),
    );
    shell(&restricted, "find . -name '*.zst' -exec chmod 0640 {} + ; find . -name '*.parquet' -exec chmod 0640 {} +");
    let private = scratch.path().join("private.tar.zst");
    ok(&taskscope(&[
        "export",
        "--dir",
        restricted.to_str().unwrap(),
        "--since",
        "1h",
        "-o",
        private.to_str().unwrap(),
    ]));
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    // --- Tampering is caught and nothing is imported.
    shell(
        scratch.path(),
        "mkdir t && tar --zstd -xf incident.tar.zst -C t && \
         f=$(find t -name '*.parquet' | head -1) && printf x >> \"$f\" && \
         tar --zstd -cf tampered.tar.zst -C t . ",
    );
    let tampered = Command::new(AGENT)
        .current_dir(scratch.path())
        .args(["import", "tampered.tar.zst", "--dir", "tampered-out"])
        .output()
        .expect("run import");
    assert_eq!(tampered.status.code(), Some(1));
    let message = String::from_utf8_lossy(&tampered.stderr);
    assert!(
        message.contains("bytes, the manifest says") || message.contains("checksum"),
        "{message}"
    );
    assert!(!scratch.path().join("tampered-out").exists());
}

#[test]
fn daily_export_names_the_day_and_prunes_old_archives() {
    // Timing-sensitive tests elsewhere run under this lock: keep this
    // CPU-heavy one from running beside them.
    let _serial = exclusive();
    // Export reads files, it loads nothing: an empty data directory will do.
    let scratch = scratch();
    let data = scratch.path().join("data");
    let archive_dir = scratch.path().join("archive");
    std::fs::create_dir_all(data.join("samples")).unwrap();
    std::fs::create_dir(&archive_dir).unwrap();
    let unrelated = archive_dir.join("keep-me.tar.zst");
    std::fs::write(&unrelated, b"mine").unwrap();
    // Archives of 2020 that export wrote: one of this host, one of another
    // host exporting into the same directory (its own UTS namespace).
    let old_window = ["--from", "2020-01-01", "--to", "2020-01-02"];
    let mut args = vec![
        "export",
        "--dir",
        data.to_str().unwrap(),
        "-o",
        archive_dir.to_str().unwrap(),
    ];
    args.extend(old_window);
    let old = PathBuf::from(ok(&taskscope(&args)).trim());
    let other_host = Command::new("unshare")
        .args([
            "--uts",
            "sh",
            "-c",
            "hostname other-host && exec \"$0\" \"$@\"",
            AGENT,
        ])
        .args(&args)
        .output()
        .expect("run unshare (util-linux)");
    let theirs = PathBuf::from(ok(&other_host).trim());
    assert!(
        theirs
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("other-host-2020"),
        "{}",
        theirs.display()
    );
    // A user's file named the way export names archives.
    let host_part = old
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches("-20200101T000000Z-20200102T000000Z.tar.zst")
        .to_string();
    let lookalike = archive_dir.join(format!(
        "{host_part}-20200105T000000Z-20200106T000000Z.tar.zst"
    ));
    std::fs::write(&lookalike, b"a user's notes").unwrap();
    let out = taskscope(&[
        "export",
        "--dir",
        data.to_str().unwrap(),
        "--day",
        "yesterday",
        "-o",
        archive_dir.to_str().unwrap(),
        "--keep-for",
        "30d",
    ]);
    let written = PathBuf::from(ok(&out).trim());
    let name = written.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.ends_with("T000000Z.tar.zst") && name.matches("T000000Z").count() == 2,
        "{name}"
    );
    assert!(!old.exists(), "an archive of 2020 is older than 30 days");
    assert!(
        unrelated.exists() && lookalike.exists(),
        "files export did not write are never deleted"
    );
    assert!(theirs.exists(), "another host's archive was deleted");
    let imported = scratch.path().join("day");
    ok(&taskscope(&[
        "import",
        written.to_str().unwrap(),
        "--dir",
        imported.to_str().unwrap(),
    ]));
    let manifest = manifest(&imported);
    assert_eq!(manifest["files"].as_array().unwrap().len(), 0);
    for table in ["samples", "stacks", "ticks"] {
        assert_eq!(manifest["tables"][table]["rows"], 0, "{table}");
    }
    // A bad day is a usage error.
    let bad = taskscope(&[
        "export",
        "--day",
        "someday",
        "-o",
        archive_dir.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn progress_bar_only_on_a_terminal() {
    // Timing-sensitive tests elsewhere run under this lock: keep this
    // CPU-heavy one from running beside them.
    let _serial = exclusive();
    let scratch = scratch();
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let archive = scratch.path().join("x.tar.zst");
    // `script` gives the export a terminal.
    let out = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{AGENT} export --dir {} --since 1h -o {}",
            data.display(),
            archive.display()
        ))
        .arg("/dev/null")
        .output()
        .expect("run script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("reading   [") && text.contains("archiving ["),
        "no progress bar on a terminal: {text:?}"
    );
}
