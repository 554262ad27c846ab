//! `/api/stacks`: the top stacks of a window and filter, through the SQL
//! query layer (`query`), as `taskscope sql "FROM top_stacks(...)"`
//! answers them.
//!
//! The decision a reader must know: the page's filter becomes a CTE named
//! `samples` that shadows the table (`WITH samples AS (SELECT * FROM
//! samples WHERE <filter>)`), so the shipped named query `top_stacks` runs
//! unchanged on the filtered rows; the time sampled (its denominator)
//! stays the window's, as report counts it. The filter is checked as
//! report checks `--where` (the same 400 as every other panel), then
//! parsed as one SQL expression and written back from its syntax tree:
//! no text of the request reaches the engine unparsed, so it cannot turn
//! into more than a predicate. The engine is read-only and bounded in
//! memory ([`MEMORY`]) and time ([`super::api::QUERY_TIME`]).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use serde_json::{json, Value};

use super::params::Selection;
use crate::query::{self, print, Limits};

/// Memory one stacks query may hold (its hash tables): beyond it the query
/// fails with a one-line reason, it never grows the server.
const MEMORY: usize = 256 << 20;

/// Frames of one stack sent to the page at most (innermost first).
const MAX_FRAMES: usize = 64;

/// `text` as one SQL expression, written back from its syntax tree; an
/// error when it is not exactly one expression.
pub fn one_expression(text: &str) -> Result<String> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| anyhow!("where: {e}"))?;
    let expr = parser.parse_expr().map_err(|e| anyhow!("where: {e}"))?;
    match parser.peek_token().token {
        Token::EOF => Ok(expr.to_string()),
        other => Err(anyhow!(
            "where: one expression expected, found more after it: {other}"
        )),
    }
}

/// Which stacks: `kind` is `kernel`, `user` or absent (both).
pub fn kind_of(selection: &Selection) -> Result<Option<&'static str>, String> {
    match selection.get("kind") {
        None => Ok(None),
        Some("kernel") => Ok(Some("kernel")),
        Some("user") => Ok(Some("user")),
        Some(other) => Err(format!("kind must be kernel or user, not '{other}'")),
    }
}

/// The SQL of the panel: `top` stacks of `kind` among the rows `predicate`
/// (already one checked expression) keeps.
pub fn sql(predicate: Option<&str>, kind: Option<&str>, all_states: bool, top: usize) -> String {
    let kind = kind.map_or("NULL".to_string(), |k| format!("'{k}'"));
    let from = match predicate {
        Some(predicate) => {
            format!("WITH samples AS (SELECT * FROM samples WHERE {predicate}) ")
        }
        None => String::new(),
    };
    format!(
        "{from}SELECT kind, stack_id, threads, top_comm, states, avg_threads, share, depth, \
         frames, frame_kinds FROM top_stacks(kind := {kind}, all_states := {all_states}) LIMIT {top}"
    )
}

/// The answer as the page's document: one object per stack, its frames
/// as a list (at most [`MAX_FRAMES`], innermost first).
pub fn answer(dir: &std::path::Path, selection: &Selection, time: Duration) -> Result<Value> {
    let predicate = selection
        .predicate
        .as_deref()
        .map(one_expression)
        .transpose()?;
    let kind = kind_of(selection).map_err(|e| anyhow!(e))?;
    let text = sql(
        predicate.as_deref(),
        kind,
        selection.all_states,
        selection.top,
    );
    let limits = Limits {
        memory_bytes: MEMORY,
        timeout: Some(time),
    };
    let answer = query::run_on_files(dir, selection.window, limits, &text)?;
    if let Some(failure) = answer.failure {
        return Err(anyhow!(failure));
    }
    let mut lines = Vec::new();
    print::write(&mut lines, &answer.batches, print::Format::Json)?;
    let mut stacks = Vec::new();
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut row: Value = serde_json::from_slice(line).context("a row of the stacks query")?;
        for field in ["frames", "frame_kinds"] {
            let list: Vec<&str> = row[field]
                .as_str()
                .map(|f| f.split(';').take(MAX_FRAMES).collect())
                .unwrap_or_default();
            row[field] = json!(list);
        }
        stacks.push(row);
    }
    let problems: Vec<String> = answer.problems.iter().map(|p| p.to_string()).collect();
    Ok(json!({ "stacks": stacks, "problems": problems }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_expression_is_written_back_from_its_tree() {
        assert_eq!(
            one_expression("comm = 'a''b' AND tgid=42").unwrap(),
            "comm = 'a''b' AND tgid = 42"
        );
        assert!(one_expression("1 = 1) UNION SELECT * FROM stacks --").is_err());
        assert!(one_expression("comm = 'x'; DROP TABLE samples").is_err());
        assert!(one_expression("").is_err());
    }

    #[test]
    fn sql_shadows_samples_only_with_a_filter() {
        let plain = sql(None, None, false, 10);
        assert!(plain.starts_with("SELECT kind") && plain.contains("kind := NULL"));
        let filtered = sql(Some("tgid = 1"), Some("user"), true, 5);
        assert!(filtered.starts_with("WITH samples AS (SELECT * FROM samples WHERE tgid = 1) "));
        assert!(filtered.contains("kind := 'user', all_states := true) LIMIT 5"));
    }
}
