//! The query layer: SQL over the data files, on Apache DataFusion.
//!
//! An [`Engine`] is one DataFusion session with its own limits: every CPU
//! for a query, a memory pool of [`Limits::memory_bytes`] (no spilling to
//! disk: a query that needs more fails with a one-line error naming the
//! limit) and a time limit per query. Its tables are `samples`, `stacks`,
//! `ticks`, `syscalls` and `iorq`, with the columns `store::schema` lists
//! (strings as Utf8View) and the hive partition columns `date` (DATE) and
//! `hour` (INTEGER), and every other object of `share/taskscope.sql` under
//! its name: the table macros as table functions (`named`), the scalar
//! macros rewritten into their expressions or, for
//! `taskscope_frames_of_kind`, a function (`scalars`), and the tables
//! `taskscope_tables` and, over files, `taskscope_sources` (`sources`).
//!
//! [`run_on_files`] answers one query over a data directory: the catalog
//! (`store::catalog`) chooses each period once (Parquet when both formats
//! are there), the window drops the periods outside it before planning
//! and the rows outside it in the plan; published files are scanned by
//! DataFusion (`files::FileListTable`), and the period being written is
//! read through the catalog's tolerant reader up to its last complete tick
//! into memory (`files::read_whole`). As for `report`, nothing unreadable
//! is skipped in silence: a file that fails the query is found, named as a
//! problem (exit 3) and its period left out, and the query runs again.
//!
//! A caller with rows of its own (the live view) registers them with
//! [`Engine::register_batches`] under a table's name and runs the same SQL;
//! `live` makes the tables of `taskscope sql --live` from reads of the
//! pinned thread table.

mod errors;
mod files;
pub mod live;
mod named;
pub mod predicate;
pub mod print;
mod scalars;
mod sources;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;

use crate::store::catalog::{Catalog, DataFile, Prefer, Problem, Window};
use crate::store::layout::TABLES;
use crate::store::schema::{Samples, Table, Ticks};

pub use errors::QueryError;
pub use files::table_schema;

/// What one query may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory the query's operators may hold (hash tables, sorts); more is
    /// an error, not a spill to disk.
    pub memory_bytes: usize,
    /// Wall-clock time a query may take; None: no limit.
    pub timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: 1 << 30,
            timeout: None,
        }
    }
}

/// One DataFusion session and the runtime its queries run on.
pub struct Engine {
    runtime: tokio::runtime::Runtime,
    ctx: SessionContext,
    limits: Limits,
}

impl Engine {
    /// A session with the shipped script's macros and `taskscope_tables`
    /// but no data tables: every CPU, the
    /// memory pool of `limits`, no temporary files, spans on SQL errors.
    pub fn new(limits: Limits) -> Result<Engine> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_time()
            .thread_name("taskscope-query")
            .build()
            .context("cannot start the query engine's threads")?;
        let mut config = SessionConfig::new()
            .with_target_partitions(cpus)
            .with_information_schema(true);
        let options = config.options_mut();
        options.sql_parser.collect_spans = true;
        // The named queries are ordered subqueries: keep their ORDER BY.
        options.sql_parser.enable_subquery_sort_elimination = false;
        // Identifiers as typed would be Postgres' lower-casing; DuckDB's
        // dialect is the shipped one, and both accept this subset.
        options.sql_parser.enable_ident_normalization = true;
        options.execution.parquet.schema_force_view_types = true;
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .context("cannot set up the query engine's memory pool")?;
        let ctx = SessionContext::new_with_config_rt(config, runtime_env);
        ctx.register_udf(scalars::frames_of_kind());
        let engine = Engine {
            runtime,
            ctx,
            limits,
        };
        sources::register_tables(&engine)?;
        Ok(engine)
    }

    /// The DataFusion session (to register more tables or functions).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Register `batches` (rows of `schema`) as table `name`, replacing a
    /// table of that name: the live view's samples of one refresh.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let table = MemTable::try_new(schema, vec![batches])
            .with_context(|| format!("rows for table {name} do not fit its schema"))?;
        self.ctx.deregister_table(name)?;
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// Run one SQL statement (a query: nothing is created or written) and
    /// collect its rows, within the time limit.
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let mut statement = errors::check_syntax(sql)?;
        expand_named(&mut statement).map_err(errors::planning)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let ctx = &self.ctx;
        let work = async move {
            let plan = ctx
                .state()
                .statement_to_plan(statement)
                .await
                .map_err(errors::planning)?;
            options.verify_plan(&plan).map_err(errors::planning)?;
            // Optimized here, before any file is read, so that what fails
            // in folding constants (`ago('soon')`, a bad CAST of a
            // literal) is the user's SQL (exit 2), not a reading error.
            let plan = ctx.state().optimize(&plan).map_err(errors::planning)?;
            let frame = ctx
                .execute_logical_plan(plan)
                .await
                .map_err(errors::planning)?;
            let schema = frame.schema().as_arrow().clone();
            let mut batches = frame
                .collect()
                .await
                .map_err(|err| errors::execution(err, &self.limits))?;
            if batches.is_empty() {
                // An empty answer still has its columns (a CSV header).
                batches.push(RecordBatch::new_empty(Arc::new(schema)));
            }
            Ok(batches)
        };
        self.runtime.block_on(async {
            match self.limits.timeout {
                Some(limit) => match tokio::time::timeout(limit, work).await {
                    Ok(result) => result,
                    Err(_) => Err(QueryError::Limit(format!(
                        "the query took longer than its time limit ({}) and was stopped",
                        crate::store::timefmt::human_duration(limit)
                    ))),
                },
                None => work.await,
            }
        })
    }
}

/// The calls of the shipped macros in `statement` (also under EXPLAIN)
/// replaced by their SQL: table macros first, then the scalar macros, which
/// their templates call too.
fn expand_named(statement: &mut DFStatement) -> datafusion::error::Result<()> {
    match statement {
        DFStatement::Statement(inner) => {
            select_all_from_first(inner);
            named::expand_calls(inner)?;
            scalars::rewrite_calls(inner)
        }
        DFStatement::Explain(explain) => expand_named(&mut explain.statement),
        _ => Ok(()),
    }
}

/// DuckDB's `FROM t` (no SELECT: every column), as the shipped script's
/// examples write it (`FROM top_activity() LIMIT 20`): the parser accepts
/// it with an empty projection, which DataFusion would answer with rows
/// of no columns (an error), so it becomes `SELECT * FROM t`.
fn select_all_from_first(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        Query, SelectFlavor, SelectItem, SetExpr, VisitMut, VisitorMut, WildcardAdditionalOptions,
    };
    use std::ops::ControlFlow;
    fn fix(body: &mut SetExpr) {
        match body {
            SetExpr::Select(select)
                if select.flavor == SelectFlavor::FromFirstNoSelect
                    && select.projection.is_empty() =>
            {
                select.projection =
                    vec![SelectItem::Wildcard(WildcardAdditionalOptions::default())];
                select.flavor = SelectFlavor::FromFirst;
            }
            SetExpr::SetOperation { left, right, .. } => {
                fix(left);
                fix(right);
            }
            _ => {}
        }
    }
    struct Fixer;
    impl VisitorMut for Fixer {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            fix(&mut query.body);
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Fixer);
}

/// The rows of one query over a data directory, and what could not be
/// read for it.
pub struct Answer {
    pub batches: Vec<RecordBatch>,
    pub problems: Vec<Problem>,
    /// Set when the files left out were all there was.
    pub failure: Option<String>,
}

/// Tables an answer's periods must have: without them, its samples have
/// no time sampled (as for `report`).
fn needed(table: &str, _stem: &str) -> bool {
    table == Samples::NAME || table == Ticks::NAME
}

/// Answer `sql` over the files of `dir` in `window` (see the module docs).
/// Errors: a [`QueryError`] (bad SQL is a usage error), or no data in the
/// window.
pub fn run_on_files(dir: &Path, window: Window, limits: Limits, sql: &str) -> Result<Answer> {
    errors::check_syntax(sql).map_err(QueryError::into_anyhow)?;
    let mut catalog = Catalog::open(dir)?;
    let selected = catalog.select_periods(&TABLES, &window, Prefer::Parquet);
    let tables: Vec<(&'static str, Vec<DataFile>)> = TABLES.into_iter().zip(selected).collect();
    if tables.iter().all(|(_, files)| files.is_empty()) {
        return nothing(catalog, &window);
    }
    // The period being written (and one published since the catalog was
    // opened, cut at the same tick) is read into memory first.
    let mut memory = Vec::new();
    for (table, files) in &tables {
        for file in files.iter().filter(|f| files::in_memory(f)) {
            memory.push((*table, file, files::read_whole(table, file)));
        }
    }
    let reads: Vec<_> = tables
        .iter()
        .map(|(table, files)| {
            let with_reasons = files
                .iter()
                .map(|file| {
                    let reason = memory
                        .iter()
                        .find(|(_, f, _)| std::ptr::eq(*f, file))
                        .and_then(|(_, _, read)| read.as_ref().err().cloned());
                    (file, reason)
                })
                .collect();
            (*table, with_reasons)
        })
        .collect();
    let mut left_out: BTreeSet<String> = catalog.leave_out(&reads, needed);
    let engine = Engine::new(limits)?;
    sources::register_sources(&engine, &mut catalog)?;
    let mut checked = false;
    loop {
        let has_samples = tables
            .iter()
            .any(|(t, files)| *t == Samples::NAME && !files.is_empty());
        let usable_samples = tables.iter().any(|(t, files)| {
            *t == Samples::NAME && files.iter().any(|f| !left_out.contains(&f.stem))
        });
        if has_samples && !usable_samples {
            let count = catalog.problems.len();
            return Ok(Answer {
                batches: Vec::new(),
                problems: catalog.problems,
                failure: Some(format!(
                    "no usable samples rows in the window: {count} problem(s) above left out every period with data"
                )),
            });
        }
        for (table, files) in &tables {
            let published: Vec<&DataFile> = files
                .iter()
                .filter(|f| !left_out.contains(&f.stem) && !files::in_memory(f))
                .collect();
            let batches: Vec<RecordBatch> = memory
                .iter()
                .filter(|(t, f, _)| t == table && !left_out.contains(&f.stem))
                .filter_map(|(_, _, read)| read.as_ref().ok())
                .flatten()
                .cloned()
                .collect();
            files::register(&engine, table, &published, batches, &window)?;
        }
        let err = match engine.query(sql) {
            Ok(batches) => {
                return Ok(Answer {
                    batches,
                    problems: catalog.problems,
                    failure: None,
                })
            }
            Err(err @ QueryError::Execution(_)) if !checked => err,
            Err(err) => return Err(err.into_anyhow()),
        };
        // A file failed the query: find the files that fail alone, leave
        // out their periods and run again; if none does, the error is the
        // query's own.
        checked = true;
        let mut bad = Vec::new();
        for (table, files) in &tables {
            for file in files {
                if left_out.contains(&file.stem) || files::in_memory(file) {
                    continue;
                }
                if let Err(reason) = files::check(&engine, table, file) {
                    bad.push((file, reason));
                }
            }
        }
        if bad.is_empty() {
            return Err(err.into_anyhow());
        }
        for (file, reason) in bad {
            left_out.insert(file.stem.clone());
            catalog.problems.push(Problem::new(
                &file.path,
                format!("{reason}; its period is left out of the answer"),
            ));
        }
    }
}

/// No file of any table in `window`: an error saying where the data is,
/// as `report` says it.
fn nothing(mut catalog: Catalog, window: &Window) -> Result<Answer> {
    if !catalog.problems.is_empty() {
        let count = catalog.problems.len();
        return Ok(Answer {
            batches: Vec::new(),
            problems: catalog.problems,
            failure: Some(format!(
                "no usable rows in the window: {count} problem(s) above"
            )),
        });
    }
    Err(catalog.no_data(Samples::NAME, window))
}

#[cfg(test)]
mod tests;
