//! The layering of the top-level modules, and the test that keeps it.
//!
//! Layers, top to bottom; a module may use only modules of lower layers,
//! never one of its own layer or above (so no two top-level modules
//! import each other, directly or through others):
//!
//! | layer | modules | what they are |
//! | --- | --- | --- |
//! | binary | `main` | prints errors, picks the exit status |
//! | commands | `cli` | flags, settings file, man page, dispatch |
//! | views | `serve`, `top` | the web view and the terminal UI, over the readers |
//! | engines | `agent`, `report`, `export`, `ship` | `run`; the readers; shipping to S3 |
//! | query | `query` | SQL over the files (DataFusion), for the readers |
//! | writer | `output` | the agent's writer thread and files |
//! | format, kernel | `store`, `bpf` | what is on disk; the BPF programs |
//! | base | `files`, `error`, `logging` | safe files, exit statuses, logs |
//!
//! (This module, a test only, counts as the base layer.)
//!
//! And the readers (`report`, `export`, `ship`, `query`) see the data through
//! the store alone (STYLE.md rule 13): they may use `store`, the base layer
//! and the query layer.
//! The views read the files through `report`; `top` reads the live table
//! through `bpf::live` and `output::live`, never through the agent.
//!
//! The test reads every file of `src/` as text, finds the paths that name
//! a top-level module (`crate::x`, `use crate::{x, y}`, `super::` paths
//! that climb to the crate root, `taskscope::x` in `main.rs`), outside
//! comments and strings, and fails naming the file of every use that goes
//! up or sideways, and the path of any cycle.

/// The layers, top first.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["cli"],
    &["serve", "top"],
    &["agent", "report", "export", "ship"],
    &["query"],
    &["output"],
    &["store", "bpf"],
    &["files", "error", "logging", "layers"],
];

/// The readers, and all they may use.
const READERS: &[&str] = &["report", "export", "ship", "query"];
const READERS_MAY_USE: &[&str] = &["store", "files", "error", "logging", "query"];

/// The views, and what they must not use: a view reads a running agent's
/// table as an independent reader, never through the agent's own code.
const VIEWS: &[&str] = &["serve", "top"];
const VIEWS_MUST_NOT_USE: &[&str] = &["agent", "export", "ship"];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::*;

    /// (from, to) → the files where `from` uses `to`.
    type Graph = BTreeMap<(String, String), BTreeSet<String>>;

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }

    /// The module path of a file below `src/`: `agent/doctor/mod.rs` →
    /// [agent, doctor]; `main.rs` → [main]; `lib.rs` → [].
    fn module_path(relative: &Path) -> Vec<String> {
        let mut parts: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        let last = parts.pop().expect("a file name");
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && !(parts.is_empty() && stem == "lib") {
            parts.push(stem.to_string());
        }
        parts
    }

    /// `text` with comments, string and character literals blanked out
    /// (lifetimes are kept: `'a` has no closing quote).
    fn code_only(text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if c == '/' && next == Some('/') {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && next == Some('*') {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            } else if c == 'r'
                && (next == Some('#') || next == Some('"'))
                && !ident_char(chars.get(i.wrapping_sub(1)))
            {
                // A raw string: r"...", r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    out.push(c);
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                out.push_str("\"\"");
            } else if c == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            } else if c == '\'' {
                // A character literal ('x', '\n', '\''), or a lifetime.
                let close = if next == Some('\\') {
                    (i + 2..chars.len().min(i + 12)).find(|&k| chars[k] == '\'')
                } else {
                    (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
                };
                match close {
                    Some(end) => {
                        i = end + 1;
                        out.push_str("' '");
                    }
                    None => {
                        out.push(c);
                        i += 1;
                    }
                }
            } else {
                out.push(c);
                i += 1;
            }
        }
        out
    }

    fn ident_char(c: Option<&char>) -> bool {
        c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
    }

    fn ident_at(chars: &[char], mut i: usize) -> (String, usize) {
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        let start = i;
        while ident_char(chars.get(i)) {
            i += 1;
        }
        (chars[start..i].iter().collect(), i)
    }

    /// The first names of a use group `{a, b::c, d::{e, f}}` starting at
    /// `chars[i] == '{'`.
    fn group_names(chars: &[char], i: usize) -> Vec<String> {
        let mut names = Vec::new();
        let mut depth = 0;
        let mut expect_name = true;
        let mut j = i;
        while j < chars.len() {
            match chars[j] {
                '{' => {
                    depth += 1;
                    expect_name = depth == 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => expect_name = true,
                c if expect_name && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                    let (name, end) = ident_at(chars, j);
                    names.push(name);
                    expect_name = false;
                    j = end;
                    continue;
                }
                _ => {}
            }
            j += 1;
        }
        names
    }

    /// The top-level modules the code of a file at `module` names. Inline
    /// modules (`mod tests { ... }`) are followed, so `super::` in them
    /// climbs from where it stands.
    fn used_modules(code: &str, module: &[String], root_alias: Option<&str>) -> BTreeSet<String> {
        let chars: Vec<char> = code.chars().collect();
        let mut found = BTreeSet::new();
        let mut path: Vec<String> = module.to_vec();
        // Inline modules open: (brace depth inside them, name).
        let mut inline: Vec<usize> = Vec::new();
        let mut depth = 0usize;
        let mut pending_mod: Option<String> = None;
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '{' => {
                    depth += 1;
                    if let Some(name) = pending_mod.take() {
                        path.push(name);
                        inline.push(depth);
                    }
                    i += 1;
                    continue;
                }
                '}' => {
                    if inline.last() == Some(&depth) {
                        inline.pop();
                        path.pop();
                    }
                    depth = depth.saturating_sub(1);
                    i += 1;
                    continue;
                }
                ';' => pending_mod = None,
                _ => {}
            }
            if ident_char(chars.get(i.wrapping_sub(1))) || !ident_char(chars.get(i)) {
                i += 1;
                continue;
            }
            let (word, end) = ident_at(&chars, i);
            if word == "mod" {
                let (name, name_end) = ident_at(&chars, end);
                pending_mod = Some(name);
                i = name_end;
                continue;
            }
            let path_follows = chars.get(end) == Some(&':') && chars.get(end + 1) == Some(&':');
            let preceded_by_path = i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':';
            if !path_follows || preceded_by_path {
                i = end;
                continue;
            }
            let mut at = end + 2;
            let root = if word == "crate" || Some(word.as_str()) == root_alias {
                true
            } else if word == "super" {
                // Climb `super::super::...` from where this stands.
                let mut level = path.len().saturating_sub(1);
                loop {
                    let (next, next_end) = ident_at(&chars, at);
                    let more =
                        chars.get(next_end) == Some(&':') && chars.get(next_end + 1) == Some(&':');
                    if next == "super" && more {
                        level = level.saturating_sub(1);
                        at = next_end + 2;
                    } else {
                        break;
                    }
                }
                level == 0
            } else {
                false
            };
            if root {
                if chars.get(at) == Some(&'{') {
                    found.extend(group_names(&chars, at));
                } else {
                    let (name, _) = ident_at(&chars, at);
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            }
            i = end;
        }
        found
    }

    fn graph() -> (Graph, BTreeSet<String>) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut edges = Graph::new();
        let mut modules = BTreeSet::new();
        for file in files {
            let relative = file.strip_prefix(&src).expect("below src");
            let module = module_path(relative);
            let Some(top) = module.first().cloned() else {
                continue; // lib.rs: the module list
            };
            modules.insert(top.clone());
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
            let alias = (top == "main").then_some("taskscope");
            for used in used_modules(&code_only(&text), &module, alias) {
                if used != top && !["self", "super", "crate"].contains(&used.as_str()) {
                    edges
                        .entry((top.clone(), used))
                        .or_default()
                        .insert(format!("src/{}", relative.display()));
                }
            }
        }
        (edges, modules)
    }

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    /// A cycle in `edges`, as a path of modules, if there is one.
    fn cycle(edges: &Graph) -> Option<Vec<String>> {
        fn visit(
            node: &str,
            edges: &Graph,
            stack: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = stack.iter().position(|n| n == node) {
                let mut path = stack[at..].to_vec();
                path.push(node.to_string());
                return Some(path);
            }
            if done.contains(node) {
                return None;
            }
            stack.push(node.to_string());
            for (from, to) in edges.keys() {
                if from == node {
                    if let Some(path) = visit(to, edges, stack, done) {
                        return Some(path);
                    }
                }
            }
            stack.pop();
            done.insert(node.to_string());
            None
        }
        let mut done = BTreeSet::new();
        for (from, _) in edges.keys() {
            if let Some(path) = visit(from, edges, &mut Vec::new(), &mut done) {
                return Some(path);
            }
        }
        None
    }

    #[test]
    fn top_level_modules_follow_the_layers() {
        let (edges, modules) = graph();
        let mut failures = Vec::new();
        for module in &modules {
            if layer_of(module).is_none() {
                failures.push(format!(
                    "src/{module}: a top-level module in no layer; add it to LAYERS in src/layers.rs (and to the README's map)"
                ));
            }
        }
        for ((from, to), files) in &edges {
            let files = files.iter().cloned().collect::<Vec<_>>().join(", ");
            match (layer_of(from), layer_of(to)) {
                (Some(a), Some(b)) if a >= b => failures.push(format!(
                    "{from} uses {to} ({files}), but {to} is {} {from}",
                    if a == b { "in the layer of" } else { "above" }
                )),
                (_, None) if !modules.contains(to) => failures.push(format!(
                    "{from} names crate::{to} ({files}), which is not a top-level module"
                )),
                _ => {}
            }
            if READERS.contains(&from.as_str()) && !READERS_MAY_USE.contains(&to.as_str()) {
                failures.push(format!(
                    "the reader {from} uses {to} ({files}); readers see the data through store alone"
                ));
            }
            if VIEWS.contains(&from.as_str()) && VIEWS_MUST_NOT_USE.contains(&to.as_str()) {
                failures.push(format!(
                    "the view {from} uses {to} ({files}); views read the live table (bpf::live) and the files (report), not the agent"
                ));
            }
        }
        if let Some(path) = cycle(&edges) {
            let steps: Vec<String> = path
                .windows(2)
                .map(|pair| {
                    let files = &edges[&(pair[0].clone(), pair[1].clone())];
                    format!(
                        "{} -> {} ({})",
                        pair[0],
                        pair[1],
                        files.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                })
                .collect();
            failures.push(format!("import cycle: {}", steps.join("; ")));
        }
        // What was checked, for `cargo test layers -- --nocapture`.
        for layer in LAYERS {
            let uses: Vec<String> = layer
                .iter()
                .map(|module| {
                    let to: Vec<&str> = edges
                        .keys()
                        .filter(|(from, _)| from == module)
                        .map(|(_, to)| to.as_str())
                        .collect();
                    format!("{module} -> [{}]", to.join(", "))
                })
                .collect();
            println!("{}", uses.join("   "));
        }
        assert!(
            failures.is_empty(),
            "the layering of src/ is broken (see src/layers.rs):\n  {}",
            failures.join("\n  ")
        );
    }

    #[test]
    fn the_parser_sees_what_the_test_relies_on() {
        let code = code_only(
            "use crate::{a, b::{c, d}, e::f};\n\
             // crate::commented\n\
             let s = \"crate::quoted\"; let r = r#\"crate::raw\"#;\n\
             fn f<'a>(x: &'a str) -> char { crate::g::h(x); '\"' }\n\
             use super::super::top;\n\
             use super::sibling;\n\
             mod tests { use super::in_n; use super::super::sibling2; }\n\
             use super::super::after;",
        );
        let module = ["m".to_string(), "n".to_string()];
        let found = used_modules(&code, &module, None);
        let want: BTreeSet<String> = ["a", "after", "b", "e", "g", "top"]
            .map(String::from)
            .into();
        assert_eq!(found, want);
        assert_eq!(
            module_path(Path::new("agent/doctor/mod.rs")),
            ["agent", "doctor"]
        );
        assert_eq!(module_path(Path::new("lib.rs")), Vec::<String>::new());
        let mut edges = Graph::new();
        for (from, to) in [("a", "b"), ("b", "c"), ("c", "a")] {
            edges.insert((from.into(), to.into()), BTreeSet::new());
        }
        assert_eq!(cycle(&edges).map(|p| p.len()), Some(4));
    }
}
