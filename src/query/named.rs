//! The named queries of `share/taskscope.sql` (top_activity, top_waits,
//! active_threads, top_stacks, top_syscalls, latency_summary,
//! latency_histogram): the same names, parameters, columns and order, in
//! DataFusion's SQL, as table functions.
//!
//! `FROM top_activity(from_ts := TIMESTAMP '2026-11-30 08:00', all_states
//! := true)`: parameters by position or by name (`:=` or `=>`), omitted
//! ones take their defaults. A call is planned as the subquery its
//! template becomes with each parameter replaced by the expression given
//! (the call is replaced in the parsed statement before planning, so
//! arguments are any SQL expressions, as in DuckDB's macros). Where DuckDB has a function DataFusion lacks, the
//! template computes the same: `mode()` is the most frequent value (ties:
//! the one seen first in time, then the smallest), `quantile_disc(x, q)`
//! is the value at rank max(1, n - floor(n (1 - q))) in ascending order
//! (DuckDB's nearest-rank rule), `time_bucket()` is `date_bin()` from
//! DuckDB's origin, Monday 2000-01-03. (The shipped .sql file stays
//! DuckDB's; a test checks that both give the same rows.)

use std::ops::ControlFlow;

use datafusion::common::{plan_datafusion_err, plan_err, DataFusionError, Result};
use datafusion::sql::sqlparser::ast::{
    FunctionArg, FunctionArgExpr, Ident, Statement, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::store::thread_state::ThreadState;

/// One named query: its parameters with their defaults, and its SQL with
/// `{name}` where each goes (and `{in_window:COLUMN}`, `{active}`,
/// `{sampled_us}` for the shared pieces).
struct Named {
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    template: &'static str,
}

const WINDOW: &[(&str, &str)] = &[
    ("from_ts", "NULL"),
    ("to_ts", "NULL"),
    ("all_states", "false"),
];

/// The most frequent comm per group of `$keys` in CTE `base` (which has
/// ts): a CTE named `top_comms` with `$keys`, top_comm.
const NAMED: &[Named] = &[
    Named {
        name: "top_activity",
        params: WINDOW,
        template: "
SELECT wait_class, state, comm, syscall, kfunc,
       count(DISTINCT tid) AS threads,
       round(CAST(sum(weight_us) AS DOUBLE) / {sampled_us}, 3) AS avg_threads,
       round(CAST(sum(weight_us) AS DOUBLE) / CAST(sum(sum(weight_us)) OVER () AS DOUBLE), 4) AS share
FROM samples
WHERE {in_window:ts} AND ({all_states} OR {active})
GROUP BY wait_class, state, comm, syscall, kfunc
ORDER BY avg_threads DESC, wait_class NULLS LAST, state NULLS LAST, comm NULLS LAST,
         syscall NULLS LAST, kfunc NULLS LAST",
    },
    Named {
        name: "top_waits",
        params: WINDOW,
        template: "
WITH base AS (
    SELECT ts, state, syscall, kfunc, tid, comm, weight_us FROM samples
    WHERE state <> 'ON_CPU' AND ({all_states} OR {active}) AND {in_window:ts}
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
       round(CAST(g.us AS DOUBLE) / {sampled_us}, 3) AS avg_threads,
       round(CAST(g.us AS DOUBLE) / CAST(sum(g.us) OVER () AS DOUBLE), 4) AS share
FROM groups g LEFT JOIN top_comms c
  ON (g.state IS NOT DISTINCT FROM c.state) AND (g.syscall IS NOT DISTINCT FROM c.syscall)
 AND (g.kfunc IS NOT DISTINCT FROM c.kfunc)
ORDER BY avg_threads DESC, g.state NULLS LAST, g.syscall NULLS LAST, g.kfunc NULLS LAST",
    },
    Named {
        name: "active_threads",
        params: &[
            ("bucket", "INTERVAL '1 minute'"),
            ("from_ts", "NULL"),
            ("to_ts", "NULL"),
            ("all_states", "false"),
        ],
        template: "
WITH
sampled AS (
    SELECT date_bin(CAST({bucket} AS INTERVAL), ts, TIMESTAMP '2000-01-03 00:00:00') AS bucket_start,
           sum(weight_us) AS sampled_us
    FROM ticks WHERE {in_window:ts}
    GROUP BY 1
),
busy AS (
    SELECT date_bin(CAST({bucket} AS INTERVAL), ts, TIMESTAMP '2000-01-03 00:00:00') AS bucket_start,
           state, sum(weight_us) AS thread_us
    FROM samples
    WHERE {in_window:ts} AND ({all_states} OR {active})
    GROUP BY 1, 2
)
SELECT busy.bucket_start, state, round(CAST(thread_us AS DOUBLE) / CAST(sampled_us AS DOUBLE), 3) AS avg_threads
FROM busy JOIN sampled ON busy.bucket_start = sampled.bucket_start
ORDER BY busy.bucket_start, avg_threads DESC, state NULLS LAST",
    },
    Named {
        name: "top_stacks",
        params: &[
            ("kind", "NULL"),
            ("from_ts", "NULL"),
            ("to_ts", "NULL"),
            ("all_states", "false"),
        ],
        template: "
WITH counted AS (
    SELECT ts, tid, comm, state, weight_us, kstack_id, ustack_id FROM samples
    WHERE {in_window:ts} AND ({all_states} OR {active})
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
       round(CAST(g.us AS DOUBLE) / {sampled_us}, 3) AS avg_threads,
       round(CAST(g.us AS DOUBLE) / CAST(sum(g.us) OVER (PARTITION BY g.stack_kind) AS DOUBLE), 4) AS share,
       k.depth, k.frames, k.frame_kinds
FROM groups g
LEFT JOIN top_comms c ON c.stack_kind = g.stack_kind AND c.stack_id = g.stack_id
LEFT JOIN state_lists l ON l.stack_kind = g.stack_kind AND l.stack_id = g.stack_id
LEFT JOIN stacks k ON k.stack_id = g.stack_id
ORDER BY avg_threads DESC, g.stack_kind, g.stack_id",
    },
    Named {
        name: "top_syscalls",
        params: WINDOW,
        template: "
WITH
base AS (
    SELECT ts, syscall, tid, comm, weight_us FROM samples
    WHERE syscall IS NOT NULL AND {in_window:ts} AND ({all_states} OR {active})
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
           round(CAST(sum(weight_us) AS DOUBLE) / {sampled_us}, 3) AS avg_threads,
           round(CAST(sum(weight_us) AS DOUBLE) / CAST(sum(sum(weight_us)) OVER () AS DOUBLE), 4) AS share
    FROM base GROUP BY syscall
),
recorded AS (
    SELECT syscall, count(*) AS recorded_calls,
           round(avg(duration_us)) AS avg_us, max(duration_us) AS max_us
    FROM syscalls WHERE {in_window:enter_ts}
    GROUP BY syscall
)
SELECT s.syscall, s.threads, c.top_comm, s.avg_threads, s.share,
       coalesce(r.recorded_calls, 0) AS recorded_calls, r.avg_us, r.max_us
FROM sampled s
LEFT JOIN top_comms c ON c.syscall = s.syscall
LEFT JOIN recorded r ON r.syscall = s.syscall
ORDER BY s.avg_threads DESC, s.syscall",
    },
    Named {
        name: "latency_summary",
        params: &[("from_ts", "NULL"), ("to_ts", "NULL"), ("pid", "NULL")],
        template: "
WITH latencies AS ({latencies}),
ranked AS (
    SELECT kind, name, duration_us,
           row_number() OVER (PARTITION BY kind, name ORDER BY duration_us) AS rn,
           count(*) OVER (PARTITION BY kind, name) AS n
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
    Named {
        name: "latency_histogram",
        params: &[("from_ts", "NULL"), ("to_ts", "NULL"), ("pid", "NULL")],
        template: "
WITH latencies AS ({latencies}),
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
];

/// DuckDB's taskscope_latencies(from_ts, to_ts, pid).
const LATENCIES: &str = "
SELECT 'syscall' AS kind, syscall AS name, duration_us
FROM syscalls
WHERE {in_window:enter_ts} AND ({pid} IS NULL OR tgid = {pid})
UNION ALL
SELECT 'io' AS kind, dev || ' ' || op AS name, duration_us
FROM iorq
WHERE {in_window:start_ts} AND ({pid} IS NULL OR tgid = {pid})";

/// The SQL of `named` with `args` (SQL text of each parameter, in order).
fn expand(named: &Named, args: &[String]) -> String {
    let active: Vec<String> = ThreadState::ALL
        .iter()
        .filter(|s| s.is_active())
        .map(|s| format!("'{}'", s.name()))
        .collect();
    let mut sql = named
        .template
        .replace("{latencies}", LATENCIES)
        .replace(
            "{sampled_us}",
            "CAST((SELECT sum(weight_us) FROM ticks WHERE {in_window:ts}) AS DOUBLE)",
        )
        .replace("{active}", &format!("state IN ({})", active.join(", ")));
    while let Some(start) = sql.find("{in_window:") {
        let Some(len) = sql[start..].find('}') else {
            break;
        };
        let column = sql[start + "{in_window:".len()..start + len].to_string();
        let condition =
            format!("({{from_ts}} IS NULL OR {column} >= {{from_ts}}) AND ({{to_ts}} IS NULL OR {column} < {{to_ts}})");
        sql.replace_range(start..start + len + 1, &condition);
    }
    for ((param, _), value) in named.params.iter().zip(args) {
        sql = sql.replace(&format!("{{{param}}}"), &format!("({value})"));
    }
    sql
}

/// The parameters of a call as SQL text, in order, defaults filled in.
fn arguments(named: &Named, args: &[FunctionArg]) -> Result<Vec<String>> {
    let mut values: Vec<Option<String>> = vec![None; named.params.len()];
    let list = || {
        named
            .params
            .iter()
            .map(|(p, d)| format!("{p} := {d}"))
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
                let Some(index) = named.params.iter().position(|(p, _)| *p == wanted) else {
                    return plan_err!(
                        "{} has no parameter {}: its parameters are {}",
                        named.name,
                        name.value,
                        list()
                    );
                };
                (index, expr)
            }
            other => return plan_err!("{}: unsupported argument {other}", named.name),
        };
        let Some(slot) = values.get_mut(index) else {
            return plan_err!(
                "{} takes at most {} arguments: {}",
                named.name,
                named.params.len(),
                list()
            );
        };
        if slot.is_some() {
            return plan_err!(
                "{}: parameter {} given twice",
                named.name,
                named.params[index].0
            );
        }
        *slot = Some(expr.to_string());
    }
    Ok(values
        .into_iter()
        .zip(named.params)
        .map(|(value, (_, default))| value.unwrap_or_else(|| default.to_string()))
        .collect())
}

/// Replaces each call of a named query by its subquery.
struct Expander(Option<DataFusionError>);

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
        let Some(named) = NAMED.iter().find(|n| n.name == called) else {
            return ControlFlow::Continue(());
        };
        let expanded = arguments(named, args).and_then(|args| {
            let sql = expand(named, &args);
            Parser::new(&GenericDialect {})
                .try_with_sql(&sql)
                .and_then(|mut parser| parser.parse_query())
                .map_err(|err| plan_datafusion_err!("{}: {err}", named.name))
        });
        match expanded {
            Ok(query) => {
                *relation = TableFactor::Derived {
                    lateral: false,
                    subquery: query,
                    alias: Some(alias.clone().unwrap_or_else(|| TableAlias {
                        explicit: false,
                        name: Ident::new(named.name),
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

/// Replace the calls of named queries in `statement` by their SQL (before
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
            let args: Vec<String> = named.params.iter().map(|(_, d)| d.to_string()).collect();
            let sql = expand(named, &args);
            assert!(!sql.contains('{'), "{}: {sql}", named.name);
            Parser::new(&GenericDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_query())
                .unwrap_or_else(|e| panic!("{}: {e}\n{sql}", named.name));
        }
    }
}
