//! The README's promises: its schema section is what `taskscope schema`
//! prints, its flag table names every flag, and every DuckDB and awk example
//! runs against real data and prints rows.

use std::path::Path;

use crate::support::*;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// Fenced ```sh blocks that start with `duckdb` or `zstdcat`.
fn query_examples(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                let block = std::mem::take(block);
                let first = block.trim_start();
                if first.starts_with("duckdb ") || first.starts_with("zstdcat ") {
                    blocks.push(block);
                }
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn schema_section_matches_the_binary() {
    let text = readme();
    let start = text
        .find("<!-- schema:begin -->")
        .expect("schema:begin marker")
        + "<!-- schema:begin -->".len();
    let end = text.find("<!-- schema:end -->").expect("schema:end marker");
    let out = taskscope(&["schema", "--format", "markdown"]);
    assert!(out.status.success());
    assert_eq!(
        text[start..end].trim(),
        String::from_utf8_lossy(&out.stdout).trim(),
        "README schema section is stale: regenerate it with `taskscope schema --format markdown`"
    );
}

#[test]
fn flag_table_names_every_flag() {
    let text = readme();
    let out = taskscope(&["run", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in help.split_whitespace() {
        let Some(start) = word.find("--") else {
            continue;
        };
        let flag: String = word[start..]
            .chars()
            .enumerate()
            .take_while(|&(i, c)| i < 2 || c.is_ascii_alphanumeric() || c == '-')
            .map(|(_, c)| c)
            .collect();
        if flag.len() > 2 && !["--help", "--version"].contains(&flag.as_str()) {
            let documented = text.match_indices(flag.as_str()).any(|(at, _)| {
                let next = text[at + flag.len()..].chars().next().unwrap_or(' ');
                !(next.is_ascii_alphanumeric() || next == '-')
            });
            assert!(documented, "README does not document {flag}");
        }
    }
}

#[test]
fn query_examples_run_on_real_data() {
    require_root();
    let _serial = exclusive();
    let (_workload, _scratch, out) = sample_workload(&[
        "--all",
        "--frequency",
        "20",
        "--duration",
        "3",
        "--format",
        "csv,parquet",
        "--track",
        "syscalls,io",
    ]);

    let examples = query_examples(&readme());
    assert!(
        examples.len() >= 6,
        "expected the README's DuckDB and awk examples, found {}",
        examples.len()
    );
    for example in examples {
        let script = example.replace("/var/lib/taskscope", out.to_str().unwrap());
        let stdout = run_example(&example, &script);
        if example.contains("$7") {
            assert!(
                stdout.contains("SLEEP"),
                "state counts lack SLEEP:\n{stdout}"
            );
        }
    }
}
