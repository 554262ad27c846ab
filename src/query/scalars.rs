//! The scalar macros of `share/taskscope.sql`: `ago(span)`,
//! `taskscope_active(state)`, `taskscope_in_window(t, from_ts, to_ts)`,
//! `taskscope_sampled_us(from_ts, to_ts)` and
//! `taskscope_frames_of_kind(frames, frame_kinds, kind)`, with DuckDB's
//! names, parameters and results.
//!
//! The decision a reader must know: the first four are macros here too. A
//! call is replaced in the parsed statement, before planning, by its
//! template with each parameter replaced by the argument's expression (in
//! parentheses, keeping its position for error messages), as `named` does
//! for the table macros, so arguments are any SQL expressions and the
//! template is planned with the rest of the query
//! (`taskscope_sampled_us` is a scalar subquery over `ticks`, which a
//! function could not be). `taskscope_active`'s list of states comes from
//! the code (`ThreadState::is_active`). `ago()` is the current time to the
//! microsecond as a TIMESTAMP without time zone, like `ts`, minus the span
//! cast to an INTERVAL, so `ago('2 hours')` and `ago(INTERVAL '1 day')`
//! both compare with `ts`. `taskscope_frames_of_kind` needs DuckDB's list
//! lambdas, which this build of DataFusion lacks: it is a function
//! ([`frames_of_kind`]) that computes what DuckDB's macro gives, NULLs
//! included (a NULL list zips as an empty one; a kind that matches only
//! missing frames gives NULL; no match gives '').

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_datafusion_err, DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{Expr, FunctionArguments, Statement, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::named::{arguments, fill, Macro, Substitute};
use crate::store::thread_state::ThreadState;

/// The scalar macros rewritten before planning. `{active_states}` is the
/// code's list of active states.
const SCALARS: &[Macro] = &[
    Macro {
        name: "ago",
        params: &[("span", None)],
        template: "arrow_cast(now(), 'Timestamp(Microsecond, None)') - CAST({span} AS INTERVAL)",
    },
    Macro {
        name: "taskscope_active",
        params: &[("state", None)],
        template: "{state} IN ({active_states})",
    },
    Macro {
        name: "taskscope_in_window",
        params: &[("t", None), ("from_ts", None), ("to_ts", None)],
        template: "({from_ts} IS NULL OR {t} >= {from_ts}) AND ({to_ts} IS NULL OR {t} < {to_ts})",
    },
    Macro {
        name: "taskscope_sampled_us",
        params: &[("from_ts", None), ("to_ts", None)],
        template:
            "SELECT sum(weight_us) FROM ticks WHERE taskscope_in_window(ts, {from_ts}, {to_ts})",
    },
];

/// The states `taskscope_active` accepts, as SQL strings.
fn active_states() -> String {
    ThreadState::ALL
        .iter()
        .filter(|s| s.is_active())
        .map(|s| format!("'{}'", s.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces each call of a scalar macro by its expression, and the calls
/// in that expression in turn.
struct Rewriter(Option<DataFusionError>);

impl Rewriter {
    /// The expression a call of `called` becomes (in parentheses, so that
    /// it keeps its meaning wherever it is printed again).
    fn expression(&mut self, called: &Macro, args: &FunctionArguments) -> Result<Expr> {
        let args = match args {
            FunctionArguments::List(list) => list.args.as_slice(),
            FunctionArguments::None => &[],
            FunctionArguments::Subquery(_) => {
                return Err(plan_datafusion_err!(
                    "{}: give its arguments in parentheses",
                    called.name
                ))
            }
        };
        let args = arguments(called, args)?;
        let sql = fill(called).replace("{active_states}", &active_states());
        let mut expr = Parser::new(&GenericDialect {})
            .try_with_sql(&format!("({sql})"))
            .and_then(|mut parser| parser.parse_expr())
            .map_err(|err| plan_datafusion_err!("{}: {err}", called.name))?;
        let _ = expr.visit(&mut Substitute::new(called, &args));
        let _ = expr.visit(self);
        match self.0.take() {
            Some(err) => Err(err),
            None => Ok(expr),
        }
    }
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(function) = &*expr else {
            return ControlFlow::Continue(());
        };
        let name = function.name.to_string().to_ascii_lowercase();
        let Some(called) = SCALARS.iter().find(|s| s.name == name) else {
            return ControlFlow::Continue(());
        };
        let args = function.args.clone();
        match self.expression(called, &args) {
            Ok(rewritten) => {
                *expr = rewritten;
                ControlFlow::Continue(())
            }
            Err(err) => {
                self.0 = Some(err);
                ControlFlow::Break(())
            }
        }
    }
}

/// Replace the calls of scalar macros in `statement` by their expressions
/// (after `named::expand_calls`, whose templates call them).
pub fn rewrite_calls(statement: &mut Statement) -> Result<()> {
    let mut rewriter = Rewriter(None);
    let _ = statement.visit(&mut rewriter);
    match rewriter.0 {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// `taskscope_frames_of_kind(frames, frame_kinds, kind)` as a function.
pub fn frames_of_kind() -> ScalarUDF {
    ScalarUDF::new_from_impl(FramesOfKind {
        signature: Signature::string(3, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FramesOfKind {
    signature: Signature,
}

impl ScalarUDFImpl for FramesOfKind {
    fn name(&self) -> &str {
        "taskscope_frames_of_kind"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let mut strings: Vec<ArrayRef> = Vec::with_capacity(3);
        for arg in &args.args {
            strings.push(cast(&arg.to_array(args.number_rows)?, &DataType::Utf8)?);
        }
        let [frames, kinds, kind] = [0, 1, 2].map(|i| strings[i].as_string::<i32>());
        let mut out = StringBuilder::new();
        for row in 0..frames.len() {
            let value = |array: &datafusion::arrow::array::StringArray| {
                array.is_valid(row).then(|| array.value(row).to_string())
            };
            out.append_option(of_kind(
                value(frames).as_deref(),
                value(kinds).as_deref(),
                value(kind).as_deref(),
            ));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// DuckDB's `array_to_string(list_transform(list_filter(list_zip(
/// string_split(frames, ';'), string_split(frame_kinds, ';')), f -> f[2] =
/// kind), f -> f[1]), ';')` for one row.
fn of_kind(frames: Option<&str>, kinds: Option<&str>, kind: Option<&str>) -> Option<String> {
    let frames: Vec<&str> = frames.map_or_else(Vec::new, |f| f.split(';').collect());
    let kinds: Vec<&str> = kinds.map_or_else(Vec::new, |k| k.split(';').collect());
    let chosen: Vec<Option<&str>> = (0..frames.len().max(kinds.len()))
        .filter(|&i| kind.is_some() && kinds.get(i).copied() == kind)
        .map(|i| frames.get(i).copied())
        .collect();
    let present: Vec<&str> = chosen.iter().flatten().copied().collect();
    if !chosen.is_empty() && present.is_empty() {
        return None;
    }
    Some(present.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What DuckDB 1.5 gives for the same arguments (checked by hand with
    /// the shipped macro; the integration test compares real stacks).
    #[test]
    fn frames_of_kind_is_duckdbs() {
        let cases: [[Option<&str>; 4]; 9] = [
            [
                Some("f;g;h"),
                Some("jit;native;jit"),
                Some("jit"),
                Some("f;h"),
            ],
            [None, Some("a"), Some("a"), None],
            [Some("x"), None, Some("a"), Some("")],
            [Some("x;y"), Some("a;b"), None, Some("")],
            [Some("x;y;z"), Some("a"), Some("a"), Some("x")],
            [Some("x"), Some("a;a;a"), Some("a"), Some("x")],
            [Some(""), Some(""), Some(""), Some("")],
            [Some("x;;y"), Some("a;a;a"), Some("a"), Some("x;;y")],
            [None, None, Some("a"), Some("")],
        ];
        for [frames, kinds, kind, want] in cases {
            assert_eq!(
                of_kind(frames, kinds, kind).as_deref(),
                want,
                "{frames:?} {kinds:?} {kind:?}"
            );
        }
    }

    /// The error of rewriting `sql`'s scalar macros.
    fn rewrite_error(sql: &str) -> String {
        let mut statement = Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        rewrite_calls(&mut statement).unwrap_err().to_string()
    }

    #[test]
    fn calls_become_their_expressions() {
        let mut statement = Parser::new(&GenericDialect {})
            .try_with_sql(
                "SELECT count(*) FROM samples WHERE NOT taskscope_in_window(ts, ago('1 hour'), NULL) \
                 AND taskscope_active(state) AND taskscope_sampled_us(NULL, NULL) > 0",
            )
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        rewrite_calls(&mut statement).unwrap();
        let sql = statement.to_string();
        for gone in ["ago(", "taskscope_"] {
            assert!(!sql.contains(gone), "{sql}");
        }
        assert!(sql.contains("NOT (("), "{sql}");
        assert!(sql.contains(&active_states()), "{sql}");
        assert!(active_states().contains("'ON_CPU'") && !active_states().contains("'SLEEP'"));
        // The rewritten text parses back to the same statement.
        let again = Parser::new(&GenericDialect {})
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        assert_eq!(again.to_string(), sql);
    }

    #[test]
    fn calls_with_wrong_arguments_say_which_macro() {
        let err = rewrite_error("SELECT ago()");
        assert!(
            err.contains("ago needs its argument span: its parameters are span"),
            "{err}"
        );
        let err = rewrite_error("SELECT taskscope_active('DISK', 'SLEEP')");
        assert!(
            err.contains("taskscope_active takes at most 1 argument (state), not 2"),
            "{err}"
        );
        let err = rewrite_error("SELECT taskscope_in_window(ts, NULL) FROM ticks");
        assert!(
            err.contains("taskscope_in_window needs its argument to_ts"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}
