//! The table macros of `share/taskscope.sql` (top_activity, top_waits,
//! top_blockers, active_threads, top_stacks, top_syscalls,
//! latency_summary, latency_histogram and their helper
//! taskscope_latencies): the same names, parameters, columns and order, in
//! DataFusion's SQL, as table functions.
//!
//! `FROM top_activity(from_ts := TIMESTAMP '2026-11-30 08:00', all_states
//! := true)`: parameters by position or by name (`:=` or `=>`), omitted
//! ones take their defaults (taskscope_latencies has none: all three are
//! required, as in DuckDB). A call is planned as the subquery its template
//! becomes with each parameter replaced by the expression given (the call
//! is replaced in the parsed statement before planning, so arguments are
//! any SQL expressions, as in DuckDB's macros, and keep their positions
//! for error messages); calls of table macros in a
//! template are expanded in turn, and the scalar macros the templates call
//! (`taskscope_in_window`, `taskscope_active`, `taskscope_sampled_us`) are
//! rewritten afterwards by `scalars`, as in any query. Where DuckDB has a
//! function or clause DataFusion lacks, the template computes the same:
//! `mode()` is the most frequent value (ties: the one seen first in time,
//! then the smallest), `quantile_disc(x, q)` is the value at rank
//! max(1, n - floor(n (1 - q))) in ascending order (DuckDB's nearest-rank
//! rule), `time_bucket()` is `date_bin()` from DuckDB's origin, Monday
//! 2000-01-03, `QUALIFY` is a filter on a window subquery, and `/` on
//! integers is a division of doubles. (The shipped .sql file stays
//! DuckDB's; a test checks that both give the same rows.)

use std::ops::ControlFlow;

use datafusion::common::{plan_datafusion_err, plan_err, DataFusionError, Result};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, Query, Statement, TableAlias, TableFactor, VisitMut,
    VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// One macro of the shipped script: its parameters with their defaults
/// (`None`: the argument is required) and its SQL with `{name}` where each
/// goes. Templates call the scalar macros as DuckDB's do (`scalars`
/// rewrites those calls after this module has expanded the table macros).
pub(super) struct Macro {
    pub name: &'static str,
    pub params: &'static [(&'static str, Option<&'static str>)],
    pub template: &'static str,
}

const WINDOW: &[(&str, Option<&str>)] = &[
    ("from_ts", Some("NULL")),
    ("to_ts", Some("NULL")),
    ("all_states", Some("false")),
];

const LATENCY_WINDOW: &[(&str, Option<&str>)] = &[
    ("from_ts", Some("NULL")),
    ("to_ts", Some("NULL")),
    ("pid", Some("NULL")),
];

const NAMED: &[Macro] = &[
    Macro {
        name: "top_activity",
        params: WINDOW,
        template: "
SELECT wait_class, state, comm, syscall, kfunc,
       count(DISTINCT tid) AS threads,
       round(CAST(sum(weight_us) AS DOUBLE) / CAST(taskscope_sampled_us({from_ts}, {to_ts}) AS DOUBLE), 3) AS avg_threads,
       round(CAST(sum(weight_us) AS DOUBLE) / CAST(sum(sum(weight_us)) OVER () AS DOUBLE), 4) AS share
FROM samples
WHERE taskscope_in_window(ts, {from_ts}, {to_ts}) AND ({all_states} OR taskscope_active(state))
GROUP BY wait_class, state, comm, syscall, kfunc
ORDER BY avg_threads DESC, wait_class NULLS LAST, state NULLS LAST, comm NULLS LAST,
         syscall NULLS LAST, kfunc NULLS LAST",
    },
    Macro {
        name: "top_waits",
        params: WINDOW,
        template: "
WITH base AS (
    SELECT ts, state, syscall, kfunc, tid, comm, weight_us FROM samples
    WHERE state <> 'ON_CPU' AND ({all_states} OR taskscope_active(state)) AND taskscope_in_window(ts, {from_ts}, {to_ts})
),
comms AS (
    SELECT state, syscall, kfunc, comm, count(*) AS n, min(ts) AS first_ts
    FROM base WHERE comm IS NOT NULL GROUP BY state, syscall, kfunc, comm
),
top_comms AS (
    SELECT state, syscall, kfunc, comm AS top_comm FROM (
        SELECT *, row_number() OVER (PARTITION BY state, syscall, kfunc
                                     ORDER BY n DESC, first_ts, comm) AS r
        FROM comms) WHERE r = 1
),
groups AS (
    SELECT state, syscall, kfunc, count(DISTINCT tid) AS threads, sum(weight_us) AS us
    FROM base GROUP BY state, syscall, kfunc
)
SELECT g.state, g.syscall, g.kfunc, g.threads, c.top_comm,
       round(CAST(g.us AS DOUBLE) / CAST(taskscope_sampled_us({from_ts}, {to_ts}) AS DOUBLE), 3) AS avg_threads,
       round(CAST(g.us AS DOUBLE) / CAST(sum(g.us) OVER () AS DOUBLE), 4) AS share
FROM groups g LEFT JOIN top_comms c
  ON (g.state IS NOT DISTINCT FROM c.state) AND (g.syscall IS NOT DISTINCT FROM c.syscall)
 AND (g.kfunc IS NOT DISTINCT FROM c.kfunc)
ORDER BY avg_threads DESC, g.state NULLS LAST, g.syscall NULLS LAST, g.kfunc NULLS LAST",
    },
    Macro {
        name: "active_threads",
        params: &[
            ("bucket", Some("INTERVAL '1 minute'")),
            ("from_ts", Some("NULL")),
            ("to_ts", Some("NULL")),
            ("all_states", Some("false")),
        ],
        template: "
WITH
sampled AS (
    SELECT date_bin(CAST({bucket} AS INTERVAL), ts, TIMESTAMP '2000-01-03 00:00:00') AS bucket_start,
           sum(weight_us) AS sampled_us
    FROM ticks WHERE taskscope_in_window(ts, {from_ts}, {to_ts})
    GROUP BY 1
),
busy AS (
    SELECT date_bin(CAST({bucket} AS INTERVAL), ts, TIMESTAMP '2000-01-03 00:00:00') AS bucket_start,
           state, sum(weight_us) AS thread_us
    FROM samples
    WHERE taskscope_in_window(ts, {from_ts}, {to_ts}) AND ({all_states} OR taskscope_active(state))
    GROUP BY 1, 2
)
SELECT busy.bucket_start, state, round(CAST(thread_us AS DOUBLE) / CAST(sampled_us AS DOUBLE), 3) AS avg_threads
FROM busy JOIN sampled ON busy.bucket_start = sampled.bucket_start
ORDER BY busy.bucket_start, avg_threads DESC, state NULLS LAST",
    },
    Macro {
        name: "top_stacks",
        params: &[
            ("kind", Some("NULL")),
            ("from_ts", Some("NULL")),
            ("to_ts", Some("NULL")),
            ("all_states", Some("false")),
        ],
        template: "
WITH counted AS (
    SELECT ts, tid, comm, state, weight_us, kstack_id, ustack_id FROM samples
    WHERE taskscope_in_window(ts, {from_ts}, {to_ts}) AND ({all_states} OR taskscope_active(state))
),
sampled_stacks AS (
    SELECT 'kernel' AS stack_kind, kstack_id AS stack_id, ts, tid, comm, state, weight_us
    FROM counted WHERE kstack_id IS NOT NULL
    UNION ALL
    SELECT 'user' AS stack_kind, ustack_id AS stack_id, ts, tid, comm, state, weight_us
    FROM counted WHERE ustack_id IS NOT NULL
),
chosen AS (
    SELECT * FROM sampled_stacks WHERE {kind} IS NULL OR stack_kind = {kind}
),
comms AS (
    SELECT stack_kind, stack_id, comm, count(*) AS n, min(ts) AS first_ts
    FROM chosen WHERE comm IS NOT NULL GROUP BY stack_kind, stack_id, comm
),
top_comms AS (
    SELECT stack_kind, stack_id, comm AS top_comm FROM (
        SELECT *, row_number() OVER (PARTITION BY stack_kind, stack_id
                                     ORDER BY n DESC, first_ts, comm) AS r
        FROM comms) WHERE r = 1
),
state_lists AS (
    SELECT stack_kind, stack_id, string_agg(state, ',' ORDER BY state) AS states
    FROM (SELECT DISTINCT stack_kind, stack_id, state FROM chosen WHERE state IS NOT NULL)
    GROUP BY stack_kind, stack_id
),
groups AS (
    SELECT stack_kind, stack_id, count(DISTINCT tid) AS threads, sum(weight_us) AS us
    FROM chosen GROUP BY stack_kind, stack_id
)
SELECT g.stack_kind AS kind, g.stack_id, g.threads, c.top_comm, l.states,
       round(CAST(g.us AS DOUBLE) / CAST(taskscope_sampled_us({from_ts}, {to_ts}) AS DOUBLE), 3) AS avg_threads,
       round(CAST(g.us AS DOUBLE) / CAST(sum(g.us) OVER (PARTITION BY g.stack_kind) AS DOUBLE), 4) AS share,
       k.depth, k.frames, k.frame_kinds
FROM groups g
LEFT JOIN top_comms c ON c.stack_kind = g.stack_kind AND c.stack_id = g.stack_id
LEFT JOIN state_lists l ON l.stack_kind = g.stack_kind AND l.stack_id = g.stack_id
LEFT JOIN stacks k ON k.stack_id = g.stack_id
ORDER BY avg_threads DESC, g.stack_kind, g.stack_id",
    },
    Macro {
        name: "top_syscalls",
        params: WINDOW,
        template: "
WITH
base AS (
    SELECT ts, syscall, tid, comm, weight_us FROM samples
    WHERE syscall IS NOT NULL AND taskscope_in_window(ts, {from_ts}, {to_ts}) AND ({all_states} OR taskscope_active(state))
),
comms AS (
    SELECT syscall, comm, count(*) AS n, min(ts) AS first_ts
    FROM base WHERE comm IS NOT NULL GROUP BY syscall, comm
),
top_comms AS (
    SELECT syscall, comm AS top_comm FROM (
        SELECT *, row_number() OVER (PARTITION BY syscall ORDER BY n DESC, first_ts, comm) AS r
        FROM comms) WHERE r = 1
),
sampled AS (
    SELECT syscall, count(DISTINCT tid) AS threads,
           round(CAST(sum(weight_us) AS DOUBLE) / CAST(taskscope_sampled_us({from_ts}, {to_ts}) AS DOUBLE), 3) AS avg_threads,
           round(CAST(sum(weight_us) AS DOUBLE) / CAST(sum(sum(weight_us)) OVER () AS DOUBLE), 4) AS share
    FROM base GROUP BY syscall
),
recorded AS (
    SELECT syscall, count(*) AS recorded_calls,
           round(avg(duration_us)) AS avg_us, max(duration_us) AS max_us
    FROM syscalls WHERE taskscope_in_window(enter_ts, {from_ts}, {to_ts})
    GROUP BY syscall
)
SELECT s.syscall, s.threads, c.top_comm, s.avg_threads, s.share,
       coalesce(r.recorded_calls, 0) AS recorded_calls, r.avg_us, r.max_us
FROM sampled s
LEFT JOIN top_comms c ON c.syscall = s.syscall
LEFT JOIN recorded r ON r.syscall = s.syscall
ORDER BY s.avg_threads DESC, s.syscall",
    },
    Macro {
        name: "latency_summary",
        params: LATENCY_WINDOW,
        template: "
WITH latencies AS (SELECT * FROM taskscope_latencies({from_ts}, {to_ts}, {pid})),
ranked AS (
    SELECT kind, name, duration_us,
           row_number() OVER (PARTITION BY kind, name ORDER BY duration_us) AS rn,
           count(duration_us) OVER (PARTITION BY kind, name) AS n
    FROM latencies
),
summary AS (
    SELECT kind, name, count(*) AS count,
           round(avg(duration_us)) AS avg_us,
           min(CASE WHEN rn = greatest(1, n - (n * 50) / 100) THEN duration_us END) AS p50_us,
           min(CASE WHEN rn = greatest(1, n - (n * 5) / 100) THEN duration_us END) AS p95_us,
           min(CASE WHEN rn = greatest(1, n - (n * 1) / 100) THEN duration_us END) AS p99_us,
           max(duration_us) AS max_us,
           round(CAST(sum(duration_us) AS DOUBLE) / 1e6, 3) AS total_s,
           sum(duration_us) AS sum_us
    FROM ranked
    GROUP BY kind, name
)
SELECT kind, name, count, avg_us, p50_us, p95_us, p99_us, max_us, total_s
FROM summary
ORDER BY sum_us DESC, kind, name NULLS LAST",
    },
    Macro {
        name: "latency_histogram",
        params: LATENCY_WINDOW,
        template: "
WITH latencies AS (SELECT * FROM taskscope_latencies({from_ts}, {to_ts}, {pid})),
buckets AS (
    SELECT kind, name,
           CASE WHEN duration_us < 1 THEN 0
                ELSE CAST(pow(2, floor(log2(CAST(duration_us AS DOUBLE)))) AS BIGINT) END AS low_us,
           count(*) AS count
    FROM latencies
    GROUP BY 1, 2, 3
)
SELECT kind, name, low_us, greatest(2 * low_us, 1) AS high_us, count,
       repeat('#', CAST(ceil(40.0 * CAST(count AS DOUBLE) / CAST(max(count) OVER (PARTITION BY kind, name) AS DOUBLE)) AS INTEGER)) AS bar
FROM buckets
ORDER BY kind, name NULLS LAST, low_us",
    },
    Macro {
        name: "top_blockers",
        params: &[("from_ts", Some("NULL")), ("to_ts", Some("NULL"))],
        template: "
WITH
waits AS (
    SELECT ts, tid AS waiter, blocker_tid, weight_us
    FROM samples
    WHERE blocker_tid IS NOT NULL AND taskscope_in_window(ts, {from_ts}, {to_ts})
),
totals AS (
    SELECT blocker_tid, count(DISTINCT waiter) AS waiters, CAST(sum(weight_us) AS BIGINT) AS waited_us
    FROM waits GROUP BY blocker_tid
),
doing AS (
    SELECT w.blocker_tid, b.comm, b.state, b.wait_class, b.syscall, b.blocker_tid AS blocked_by,
           sum(w.weight_us) AS us
    FROM waits w LEFT JOIN samples b ON b.ts = w.ts AND b.tid = w.blocker_tid
    GROUP BY w.blocker_tid, b.comm, b.state, b.wait_class, b.syscall, b.blocker_tid
),
chosen AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY blocker_tid ORDER BY us DESC, state NULLS LAST) AS r
        FROM doing) WHERE r = 1
)
SELECT t.blocker_tid, d.comm AS blocker_comm, t.waiters,
       round(CAST(t.waited_us AS DOUBLE) / CAST(taskscope_sampled_us({from_ts}, {to_ts}) AS DOUBLE), 3) AS avg_waiting,
       t.waited_us, d.state, d.wait_class, d.syscall, d.blocked_by,
       round(CAST(d.us AS DOUBLE) / CAST(t.waited_us AS DOUBLE), 4) AS share
FROM totals t LEFT JOIN chosen d ON d.blocker_tid = t.blocker_tid
ORDER BY t.waited_us DESC, t.blocker_tid",
    },
    Macro {
        name: "taskscope_latencies",
        params: &[("from_ts", None), ("to_ts", None), ("pid", None)],
        template: "
SELECT 'syscall' AS kind, syscall AS name, duration_us
FROM syscalls
WHERE taskscope_in_window(enter_ts, {from_ts}, {to_ts}) AND ({pid} IS NULL OR tgid = {pid})
UNION ALL
SELECT 'io' AS kind, dev || ' ' || op AS name, duration_us
FROM iorq
WHERE taskscope_in_window(start_ts, {from_ts}, {to_ts}) AND ({pid} IS NULL OR tgid = {pid})",
    },
];

/// The name that stands for parameter `param` in a template's parsed text.
fn placeholder(param: &str) -> String {
    format!("__taskscope_{param}")
}

/// The SQL text of `called`'s template with a placeholder name for each
/// `{param}` (see [`Substitute`]).
pub(super) fn fill(called: &Macro) -> String {
    let mut sql = called.template.to_string();
    for (param, _) in called.params {
        sql = sql.replace(&format!("{{{param}}}"), &placeholder(param));
    }
    sql
}

/// Replaces each placeholder of a parsed template by its argument, in
/// parentheses. The argument keeps the position it has in the user's SQL,
/// so an error in it (an unknown column) says where the user wrote it.
pub(super) struct Substitute<'a> {
    names: Vec<String>,
    args: &'a [Expr],
}

impl<'a> Substitute<'a> {
    pub(super) fn new(called: &Macro, args: &'a [Expr]) -> Substitute<'a> {
        let names = called.params.iter().map(|(p, _)| placeholder(p)).collect();
        Substitute { names, args }
    }
}

impl VisitorMut for Substitute<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = &*expr {
            if let Some(index) = self.names.iter().position(|n| *n == ident.value) {
                *expr = Expr::Nested(Box::new(self.args[index].clone()));
            }
        }
        ControlFlow::Continue(())
    }
}

/// `text` parsed as an expression (a parameter's default).
fn parse_expr(called: &Macro, text: &str) -> Result<Expr> {
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|err| plan_datafusion_err!("{}: {err}", called.name))
}

/// The arguments of a call of `called`, in parameter order,
/// defaults filled in; by position or by name (`:=`, `=>`). An error names
/// the macro and its parameters: an unknown name, one given twice, too
/// many, or a required one missing.
pub(super) fn arguments(called: &Macro, args: &[FunctionArg]) -> Result<Vec<Expr>> {
    let mut values: Vec<Option<Expr>> = vec![None; called.params.len()];
    let list = || {
        called
            .params
            .iter()
            .map(|(p, default)| match default {
                Some(d) => format!("{p} := {d}"),
                None => p.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (position, arg) in args.iter().enumerate() {
        let (index, expr) = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => (position, expr),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(expr),
                ..
            } => {
                let wanted = name.value.to_ascii_lowercase();
                let Some(index) = called.params.iter().position(|(p, _)| *p == wanted) else {
                    return plan_err!(
                        "{} has no parameter {}: its parameters are {}",
                        called.name,
                        name.value,
                        list()
                    );
                };
                (index, expr)
            }
            other => return plan_err!("{}: unsupported argument {other}", called.name),
        };
        let Some(slot) = values.get_mut(index) else {
            let count = match called.params.len() {
                1 => "1 argument".to_string(),
                n => format!("{n} arguments"),
            };
            return plan_err!(
                "{} takes at most {count} ({}), not {}",
                called.name,
                list(),
                args.len()
            );
        };
        if slot.is_some() {
            return plan_err!(
                "{}: parameter {} given twice",
                called.name,
                called.params[index].0
            );
        }
        *slot = Some(expr.clone());
    }
    values
        .into_iter()
        .zip(called.params)
        .map(|(value, (param, default))| match (value, default) {
            (Some(value), _) => Ok(value),
            (None, Some(default)) => parse_expr(called, default),
            (None, None) => plan_err!(
                "{} needs its argument {param}: its parameters are {}",
                called.name,
                list()
            ),
        })
        .collect()
}

/// Replaces each call of a table macro by its subquery, and the calls in
/// that subquery in turn.
struct Expander(Option<DataFusionError>);

impl Expander {
    /// The subquery of a call of `called`.
    fn subquery(&mut self, called: &Macro, args: &[FunctionArg]) -> Result<Box<Query>> {
        let args = arguments(called, args)?;
        let mut query = Parser::new(&GenericDialect {})
            .try_with_sql(&fill(called))
            .and_then(|mut parser| parser.parse_query())
            .map_err(|err| plan_datafusion_err!("{}: {err}", called.name))?;
        let _ = query.visit(&mut Substitute::new(called, &args));
        let _ = query.visit(self);
        match self.0.take() {
            Some(err) => Err(err),
            None => Ok(query),
        }
    }
}

impl VisitorMut for Expander {
    type Break = ();

    fn post_visit_table_factor(&mut self, relation: &mut TableFactor) -> ControlFlow<()> {
        let (name, args, alias) = match &*relation {
            TableFactor::Table {
                name,
                args: Some(args),
                alias,
                ..
            } => (name, &args.args, alias),
            TableFactor::Function {
                name, args, alias, ..
            } => (name, args, alias),
            _ => return ControlFlow::Continue(()),
        };
        let called = name.to_string().to_ascii_lowercase();
        let Some(called) = NAMED.iter().find(|n| n.name == called) else {
            return ControlFlow::Continue(());
        };
        let alias = alias.clone();
        let args = args.clone();
        match self.subquery(called, &args) {
            Ok(query) => {
                *relation = TableFactor::Derived {
                    lateral: false,
                    subquery: query,
                    alias: Some(alias.unwrap_or_else(|| TableAlias {
                        explicit: false,
                        name: Ident::new(called.name),
                        columns: Vec::new(),
                        at: None,
                    })),
                    sample: None,
                };
                ControlFlow::Continue(())
            }
            Err(err) => {
                self.0 = Some(err);
                ControlFlow::Break(())
            }
        }
    }
}

/// Replace the calls of table macros in `statement` by their SQL (before
/// planning, so that the tables they read are resolved with the others).
pub fn expand_calls(statement: &mut Statement) -> Result<()> {
    let mut expander = Expander(None);
    let _ = statement.visit(&mut expander);
    match expander.0 {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_placeholder() {
        for named in NAMED {
            let sql = fill(named);
            assert!(!sql.contains('{'), "{}: {sql}", named.name);
            Parser::new(&GenericDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_query())
                .unwrap_or_else(|e| panic!("{}: {e}\n{sql}", named.name));
        }
    }

    /// The error of expanding `sql`'s table macros.
    fn expand_error(sql: &str) -> String {
        let mut statement = Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        expand_calls(&mut statement).unwrap_err().to_string()
    }

    #[test]
    fn calls_with_wrong_arguments_say_which_macro() {
        let err = expand_error("SELECT * FROM taskscope_latencies(NULL, NULL)");
        assert!(
            err.contains("taskscope_latencies needs its argument pid: its parameters are from_ts, to_ts, pid"),
            "{err}"
        );
        let err = expand_error("SELECT * FROM top_blockers(NULL, NULL, NULL)");
        assert!(
            err.contains(
                "top_blockers takes at most 2 arguments (from_ts := NULL, to_ts := NULL), not 3"
            ),
            "{err}"
        );
        let err = expand_error("SELECT * FROM top_blockers(to_ts := NULL, to_ts := NULL)");
        assert!(
            err.contains("top_blockers: parameter to_ts given twice"),
            "{err}"
        );
        // A macro inside a macro's template is expanded too.
        let mut statement = Parser::new(&GenericDialect {})
            .try_with_sql("SELECT * FROM latency_summary(pid := 7)")
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        expand_calls(&mut statement).unwrap();
        let sql = statement.to_string();
        assert!(!sql.contains("FROM taskscope_latencies("), "{sql}");
        assert!(sql.contains("FROM syscalls"), "{sql}");
    }
}
