//! `--where`: a SQL predicate over one table's columns, evaluated on each
//! row without a database.
//!
//! The subset is what a WHERE clause on these tables needs: comparisons
//! (`= != <> < <= > >=`) between columns and literals, `AND`, `OR`, `NOT`,
//! parentheses, `IS [NOT] NULL`, `[NOT] LIKE` / `ILIKE` with `%` and `_`,
//! `[NOT] IN (…)` and `[NOT] BETWEEN … AND …`. Literals are numbers,
//! 'quoted text' (timestamps as text: `ts >= '2026-11-22 03:12'`), TRUE,
//! FALSE and NULL. NULL follows SQL's three-valued logic: a row passes only
//! when the predicate is true. Anything else is a one-line error that
//! points at the offending text; nesting (parentheses, NOT) is bounded at
//! [`MAX_DEPTH`] levels, so no input can exhaust the stack.
//!
//! The time sampled must be restricted like the rows: `ticks_filter`
//! makes the ticks' part of a predicate.

mod parser;

use std::cmp::Ordering;

use super::read::{Cell, Row};
pub use super::ticks_filter::ticks_filter;
pub use parser::parse;

/// Deepest nesting of parentheses and NOT accepted.
pub const MAX_DEPTH: usize = 64;

/// A parsed predicate, its columns resolved against a projection.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every operand (chains are flat: `a AND b AND c` is one node).
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare(Operand, CompareOp, Operand),
    IsNull(Operand, bool),
    Like {
        operand: Operand,
        pattern: String,
        negated: bool,
        case_insensitive: bool,
    },
    In {
        operand: Operand,
        list: Vec<Operand>,
        negated: bool,
    },
    Constant(Option<bool>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Position in the projection.
    Column(usize),
    Literal(Literal),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Timestamp(i64),
}
/// Whether `row` passes (the predicate is true, not false or NULL).
pub fn passes(expr: &Expr, row: &dyn Row) -> bool {
    eval(expr, row) == Some(true)
}

fn eval(expr: &Expr, row: &dyn Row) -> Option<bool> {
    match expr {
        Expr::And(all) => {
            let mut unknown = false;
            for e in all {
                match eval(e, row) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            (!unknown).then_some(true)
        }
        Expr::Or(any) => {
            let mut unknown = false;
            for e in any {
                match eval(e, row) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            (!unknown).then_some(false)
        }
        Expr::Not(a) => eval(a, row).map(|v| !v),
        Expr::Compare(a, op, b) => {
            let ordering = compare(&value(a, row), &value(b, row))?;
            Some(match op {
                CompareOp::Eq => ordering == Ordering::Equal,
                CompareOp::Ne => ordering != Ordering::Equal,
                CompareOp::Lt => ordering == Ordering::Less,
                CompareOp::Le => ordering != Ordering::Greater,
                CompareOp::Gt => ordering == Ordering::Greater,
                CompareOp::Ge => ordering != Ordering::Less,
            })
        }
        Expr::IsNull(a, negated) => Some(matches!(value(a, row), Value::Null) != *negated),
        Expr::Like {
            operand,
            pattern,
            negated,
            case_insensitive,
        } => match value(operand, row) {
            Value::Text(text) => {
                let hit = if *case_insensitive {
                    like(&text.to_lowercase(), &pattern.to_lowercase())
                } else {
                    like(text, pattern)
                };
                Some(hit != *negated)
            }
            Value::Null => None,
            other => Some(like(&other.to_string(), pattern) != *negated),
        },
        Expr::In {
            operand,
            list,
            negated,
        } => {
            let left = value(operand, row);
            if matches!(left, Value::Null) {
                return None;
            }
            let mut unknown = false;
            for item in list {
                match compare(&left, &value(item, row)) {
                    Some(Ordering::Equal) => return Some(!negated),
                    Some(_) => {}
                    None => unknown = true,
                }
            }
            if unknown {
                None
            } else {
                Some(*negated)
            }
        }
        Expr::Constant(v) => *v,
    }
}

enum Value<'a> {
    Null,
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bool(bool),
}

impl std::fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Text(v) => f.write_str(v),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

fn value<'a>(operand: &'a Operand, row: &'a dyn Row) -> Value<'a> {
    match operand {
        Operand::Column(i) => match row.cell(*i) {
            Cell::Null => Value::Null,
            Cell::Int(v) | Cell::Timestamp(v) => Value::Int(v),
            Cell::Text(v) => Value::Text(v),
            Cell::Bool(v) => Value::Bool(v),
        },
        Operand::Literal(Literal::Null) => Value::Null,
        Operand::Literal(Literal::Int(v) | Literal::Timestamp(v)) => Value::Int(*v),
        Operand::Literal(Literal::Float(v)) => Value::Float(*v),
        Operand::Literal(Literal::Text(v)) => Value::Text(v),
        Operand::Literal(Literal::Bool(v)) => Value::Bool(*v),
    }
}

fn compare(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// SQL LIKE: `%` any run, `_` one character.
fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '_' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '%' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '%')
}

#[cfg(test)]
pub(crate) mod tests {
    use anyhow::Result;

    use super::*;
    use crate::report::read::Projection;
    use crate::store::schema::Samples;

    struct Fixed(Vec<Cell<'static>>);
    impl Row for Fixed {
        fn cell(&self, column: usize) -> Cell<'_> {
            self.0[column]
        }
    }

    pub fn check(predicate: &str, row: &[(&str, Cell<'static>)]) -> Result<bool> {
        let mut projection = Projection::of::<Samples>(&[], "test").unwrap();
        let expr = parse::<Samples>(predicate, &mut projection)?;
        let cells = projection
            .names
            .iter()
            .map(|n| {
                row.iter()
                    .find(|(name, _)| name == n)
                    .map_or(Cell::Null, |(_, c)| *c)
            })
            .collect();
        Ok(passes(&expr, &Fixed(cells)))
    }

    #[test]
    fn comparisons_and_logic() {
        let row = [
            ("comm", Cell::Text("gt-sleeper")),
            ("tid", Cell::Int(42)),
            ("state", Cell::Text("SLEEP")),
            ("syscall", Cell::Null),
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
        ] {
            assert_eq!(check(predicate, &row).unwrap(), want, "{predicate}");
        }
    }

    #[test]
    fn like_patterns() {
        assert!(like("abc", "a%c"));
        assert!(like("abc", "%"));
        assert!(like("", "%"));
        assert!(!like("abc", "a_"));
        assert!(like("a%c", "a%%c"));
        assert!(like("xxabcabc", "%abc"));
    }
}
