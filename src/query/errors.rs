//! What went wrong with a query, as one line: a syntax error with its line
//! and column, a planning error with the position DataFusion's diagnostic
//! gives (unknown column, table, function), a limit reached, or an error
//! while reading. Syntax and planning errors are the user's (exit 2).

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;

use super::Limits;
use crate::error::Usage;

/// Why a query gave no rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The text is not one SQL statement.
    #[error("{0}")]
    Syntax(String),
    /// It parses but cannot be planned: unknown names, wrong types,
    /// something not supported, a statement that is not a query.
    #[error("{0}")]
    Plan(String),
    /// Reading or computing failed (a damaged file, ...).
    #[error("{0}")]
    Execution(String),
    /// The memory or time limit was reached.
    #[error("{0}")]
    Limit(String),
}

impl QueryError {
    /// As the command's error: a usage error (exit 2) for the user's SQL.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            QueryError::Syntax(text) | QueryError::Plan(text) => Usage(text).into(),
            other => anyhow::anyhow!(other),
        }
    }
}

/// Text on one line, runs of white space made one space.
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `sql` must be one statement that parses: that statement.
pub fn check_syntax(sql: &str) -> Result<Statement, QueryError> {
    match DFParser::parse_sql_with_dialect(sql, &GenericDialect {}) {
        Ok(mut statements) if statements.len() == 1 => statements
            .pop_front()
            .ok_or_else(|| QueryError::Syntax("the SQL text holds no statement".into())),
        Ok(statements) if statements.is_empty() => {
            Err(QueryError::Syntax("the SQL text holds no statement".into()))
        }
        Ok(statements) => Err(QueryError::Syntax(format!(
            "the SQL text holds {} statements; give one query",
            statements.len()
        ))),
        Err(err) => Err(QueryError::Syntax(syntax_message(&err))),
    }
}

/// "SQL syntax error at line 2, column 6: Expected: end of statement,
/// found: samples" from the parser's "... at Line: 2, Column: 6".
pub(super) fn syntax_message(err: &DataFusionError) -> String {
    let text = match err.find_root() {
        DataFusionError::SQL(parser, _) => match parser.as_ref() {
            ParserError::ParserError(text) | ParserError::TokenizerError(text) => text.clone(),
            ParserError::RecursionLimitExceeded => "the query nests too deeply".to_string(),
        },
        other => other.to_string(),
    };
    let text = one_line(&text);
    if let Some((what, at)) = text.rsplit_once(" at Line: ") {
        if let Some((line, column)) = at.split_once(", Column: ") {
            return format!("SQL syntax error at line {line}, column {column}: {what}");
        }
    }
    format!("SQL syntax error: {text}")
}

/// A planning error, with its position when DataFusion's diagnostic has
/// one.
pub fn planning(err: DataFusionError) -> QueryError {
    let text = one_line(&strip_kind(&err.find_root().to_string()));
    if let Some(diagnostic) = err.diagnostic() {
        if let Some(span) = diagnostic.span {
            return QueryError::Plan(format!(
                "SQL error at line {}, column {}: {} ({text})",
                span.start.line,
                span.start.column,
                one_line(&diagnostic.message)
            ));
        }
    }
    match err.find_root() {
        DataFusionError::ResourcesExhausted(_) | DataFusionError::IoError(_) => {
            QueryError::Execution(text)
        }
        _ => QueryError::Plan(format!("SQL error: {text}")),
    }
}

/// An error while the query ran.
pub fn execution(err: DataFusionError, limits: &Limits) -> QueryError {
    let root = err.find_root();
    match root {
        DataFusionError::ResourcesExhausted(text) => {
            let first = text
                .split(" with top memory consumers")
                .next()
                .unwrap_or(text);
            QueryError::Limit(format!(
                "the query needs more than its memory limit of {} MiB (--memory-limit): {}",
                limits.memory_bytes >> 20,
                one_line(first)
            ))
        }
        DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::SQL(..) => QueryError::Plan(format!(
            "SQL error: {}",
            one_line(&strip_kind(&root.to_string()))
        )),
        _ => QueryError::Execution(one_line(&err.to_string())),
    }
}

/// DataFusion's "Error during planning: " and the like, dropped.
fn strip_kind(text: &str) -> String {
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "SQL error: ",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    text.to_string()
}
