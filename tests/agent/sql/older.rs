//! The README's shipped-SQL examples, and files of an earlier version
//! (without the columns added since) read by today's script.

use std::path::Path;

use super::*;

/// The README's shipped-SQL examples: ```sql blocks run in a
/// session started with the script, ```sh blocks that use the script or
/// zstdcat run with the installed paths pointed at this checkout and `dir`.
pub(super) fn check_readme_examples(dir: &Path) {
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
pub(super) fn copy_tree(from: &Path, to: &Path) {
    for file in files_under(from) {
        let target = to.join(&file);
        std::fs::create_dir_all(target.parent().unwrap()).expect("mkdir");
        std::fs::copy(from.join(&file), &target).expect("copy");
    }
}

/// Files written by an earlier version, without the columns added since
/// (columns are only ever appended), are read with the new ones: their new
/// columns are NULL and no row is lost, in both formats.
pub(super) fn check_older_files(out: &Path, scratch: &Path, counts: &Row) {
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
