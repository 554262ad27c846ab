//! `--where`: any SQL expression of the query engine over one table's
//! columns (`query::predicate`: DataFusion parses, types and evaluates
//! it), applied to the rows as they are read.
//!
//! The reader hands out rows, but the engine evaluates whole Arrow
//! batches: a Parquet file's batches are evaluated as read (text columns
//! cast to UTF-8 first when the file has them as dictionaries), and with
//! a `--where` a CSV file's rows are gathered into batches of the
//! projected columns ([`CsvBatches`]) — only then, so a report without
//! `--where` reads CSV as fast as before. Each row then says whether it
//! passes ([`Row::passes`](super::read::Row::passes)): true passes, false
//! and NULL do not.
//!
//! The time sampled must be restricted like the rows: [`ticks_filter`]
//! keeps the top-level AND conditions that use `ts` (and only columns
//! `ticks` has too) for the ticks. A `ts` condition tangled with another
//! column (`ts > x OR comm = 'y'`) cannot be applied to the ticks and is
//! refused with advice (`--from`/`--to`).

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use arrow_array::builder::{
    BooleanBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{new_null_array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;

use super::read::{Cell, Projection, Row};
use crate::error::Usage;
use crate::query::predicate;
use crate::store::schema::{ColumnType, Table};

/// Rows gathered per batch (as Parquet's reader gives them).
pub const BATCH_ROWS: usize = 8_192;

/// A parsed `--where`, ready to evaluate on batches.
#[derive(Debug)]
pub struct Filter {
    logical: Expr,
    physical: Arc<dyn PhysicalExpr>,
    /// The columns the predicate reads, with the types it reads them as.
    schema: SchemaRef,
}

/// The Arrow type a column is evaluated as (text as UTF-8: what CSV
/// batches hold and Parquet files mostly have).
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Text => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
    }
}

/// The columns `names` of `T` (all of them when None).
fn schema_of<T: Table>(names: Option<&[String]>) -> Schema {
    Schema::new(
        T::columns()
            .iter()
            .filter(|c| names.is_none_or(|n| n.iter().any(|n| n == c.name)))
            .map(|c| Field::new(c.name, arrow_type(c.ty), true))
            .collect::<Vec<_>>(),
    )
}

/// Names of the columns `expr` uses.
fn columns(expr: &Expr) -> Vec<String> {
    let mut names: Vec<String> = expr
        .column_refs()
        .into_iter()
        .map(|c| c.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Filter {
    fn new<T: Table>(logical: Expr) -> Result<Filter> {
        let schema = Arc::new(schema_of::<T>(Some(&columns(&logical))));
        let physical = predicate::compile(logical.clone(), &schema)
            .map_err(|err| anyhow!("--where: {err}"))?;
        Ok(Filter {
            logical,
            physical,
            schema,
        })
    }

    /// Which rows of `batch` pass (its columns found by name; a column
    /// the file lacks reads as NULL).
    pub fn mask(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let rows = batch.num_rows();
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(a) if a.data_type() == field.data_type() => Ok(a.clone()),
                Some(a) => datafusion::arrow::compute::cast(a, field.data_type()).map_err(|err| {
                    anyhow!(
                        "its column {} cannot be read as {} ({err})",
                        field.name(),
                        field.data_type()
                    )
                }),
                None => Ok(new_null_array(field.data_type(), rows)),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let input = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        predicate::evaluate(&*self.physical, &input)
            .map_err(|err| Usage(format!("--where cannot be evaluated: {err}")).into())
    }
}

/// `text` as a `--where` over table `T`; the columns it reads are added
/// to `projection`. A bad expression is a one-line error with the
/// position.
pub fn parse<T: Table>(text: &str, projection: &mut Projection) -> Result<Filter> {
    let mut fields: Vec<Field> = schema_of::<T>(None)
        .fields()
        .iter()
        .map(|f| (**f).clone())
        .collect();
    fields.push(Field::new(PARTITION_DATE, DataType::Date32, true));
    fields.push(Field::new(PARTITION_HOUR, DataType::Int32, true));
    let logical = predicate::parse(text, &Schema::new(fields))
        .map_err(|err| anyhow!("--where: {}", at_end(&err.to_string(), text)))?;
    let logical = partitions(logical)?;
    let logical = times::<T>(logical)?;
    for name in columns(&logical) {
        projection.require::<T>(&name, "--where")?;
    }
    Filter::new::<T>(logical)
}

/// The parser's "Expected: ..., found: EOF" has no position: the end of
/// the text is where it is.
fn at_end(message: &str, text: &str) -> String {
    match message.strip_prefix("SQL syntax error: ") {
        Some(what) if what.ends_with("found: EOF") => {
            let line = text.lines().count().max(1);
            let column = text.lines().last().unwrap_or("").chars().count() + 1;
            format!("SQL syntax error at line {line}, column {column} (the end): {what}")
        }
        _ => message.to_string(),
    }
}

/// The partition columns of `taskscope sql` (a file's UTC date and hour).
const PARTITION_DATE: &str = "date";
const PARTITION_HOUR: &str = "hour";

/// `date` and `hour`, the partition columns `taskscope sql` has, as what
/// they are for every row: the UTC date and hour of its `ts`.
fn partitions(expr: Expr) -> Result<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::functions::datetime::expr_fn::date_part;
    use datafusion::logical_expr::{cast, col, lit};
    expr.transform_up(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_none() && c.name == PARTITION_DATE => {
                Transformed::yes(cast(col("ts"), DataType::Date32))
            }
            Expr::Column(c) if c.relation.is_none() && c.name == PARTITION_HOUR => {
                Transformed::yes(cast(date_part(lit("hour"), col("ts")), DataType::Int32))
            }
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .map_err(|err| anyhow!("--where: {err}"))
}

/// Text compared with a timestamp column read as a time as `--from`
/// reads it (`'2026-11-22 13:04'`, `'…T13:04:05Z'`, an offset: UTC when
/// none), not by the engine's cast, which wants seconds.
fn times<T: Table>(expr: Expr) -> Result<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::common::{DataFusionError, ScalarValue};
    use datafusion::logical_expr::{Between, BinaryExpr, Operator};
    let is_time = |e: &Expr| match e {
        Expr::Column(c) => T::columns()
            .iter()
            .any(|col| col.name == c.name && col.ty == ColumnType::Timestamp),
        _ => false,
    };
    let retype = |e: Expr, column: &Expr| -> datafusion::error::Result<Expr> {
        let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = &e else {
            return Ok(e);
        };
        match crate::store::user_time::time(text) {
            Ok(us) => Ok(Expr::Literal(
                ScalarValue::TimestampMicrosecond(Some(us), None),
                None,
            )),
            Err(why) => Err(DataFusionError::Plan(format!(
                "not a timestamp for column {column}: {why}"
            ))),
        }
    };
    expr.transform_up(|e| {
        Ok(match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) =>
            {
                let (left, right) = if is_time(&left) {
                    let right = retype(*right, &left)?;
                    (*left, right)
                } else if is_time(&right) {
                    let left = retype(*left, &right)?;
                    (left, *right)
                } else {
                    (*left, *right)
                };
                Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(left),
                    op,
                    Box::new(right),
                )))
            }
            Expr::Between(Between {
                expr,
                negated,
                low,
                high,
            }) if is_time(&expr) => {
                let low = Box::new(retype(*low, &expr)?);
                let high = Box::new(retype(*high, &expr)?);
                Transformed::yes(Expr::Between(Between::new(expr, negated, low, high)))
            }
            Expr::InList(mut list) if is_time(&list.expr) => {
                list.list = std::mem::take(&mut list.list)
                    .into_iter()
                    .map(|item| retype(item, &list.expr))
                    .collect::<datafusion::error::Result<_>>()?;
                Transformed::yes(Expr::InList(list))
            }
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .map_err(|err| {
        anyhow!(
            "--where: {}",
            err.find_root()
                .to_string()
                .trim_start_matches("Error during planning: ")
        )
    })
}

/// The part of a `--where` that restricts *time*, as a predicate over
/// table `T` (`ticks`): the top-level AND conditions that use `ts` and
/// only columns `T` has too (added to `ticks`). A condition that uses
/// `ts` with a column `T` lacks (`ts > x OR comm = 'y'`) cannot restrict
/// the time sampled and is an error. None when no condition uses `ts`.
pub fn ticks_filter<T: Table>(filter: &Filter, ticks: &mut Projection) -> Result<Option<Filter>> {
    let mut kept = Vec::new();
    for condition in split_conjunction(&filter.logical) {
        let names = columns(condition);
        if !names.iter().any(|n| n == "ts") {
            continue;
        }
        if let Some(other) = names
            .iter()
            .find(|name| !T::columns().iter().any(|c| c.name == name.as_str()))
        {
            bail!(
                "--where: a condition joins ts with {other}, so the time sampled cannot be \
                 limited the same way; give the time range with --from/--to, or as its own \
                 condition (ts >= '…' AND …)"
            );
        }
        for name in &names {
            ticks.require::<T>(name, "--where")?;
        }
        kept.push(condition.clone());
    }
    conjunction(kept).map(Filter::new::<T>).transpose()
}

/// Rows of a CSV file gathered into Arrow batches of a projection's
/// columns, so that a `--where` can be evaluated on them.
pub struct CsvBatches {
    names: Vec<String>,
    builders: Vec<Builder>,
    rows: usize,
}

enum Builder {
    Int(Int64Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    Bool(BooleanBuilder),
}

impl CsvBatches {
    pub fn new(projection: &Projection) -> CsvBatches {
        let builders = projection
            .types
            .iter()
            .map(|ty| match ty {
                ColumnType::Int64 => Builder::Int(Int64Builder::with_capacity(BATCH_ROWS)),
                ColumnType::Timestamp => {
                    Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS))
                }
                ColumnType::Text => {
                    Builder::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16))
                }
                ColumnType::Bool => Builder::Bool(BooleanBuilder::with_capacity(BATCH_ROWS)),
            })
            .collect();
        CsvBatches {
            names: projection.names.clone(),
            builders,
            rows: 0,
        }
    }

    /// Add `row`; true when a batch is full.
    pub fn push(&mut self, row: &dyn Row) -> bool {
        for (i, builder) in self.builders.iter_mut().enumerate() {
            match (builder, row.cell(i)) {
                (Builder::Int(b), cell) => b.append_option(cell.as_int()),
                (Builder::Timestamp(b), cell) => b.append_option(cell.as_int()),
                (Builder::Text(b), Cell::Text(text)) => b.append_value(text),
                (Builder::Text(b), _) => b.append_null(),
                (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
                (Builder::Bool(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
        self.rows >= BATCH_ROWS
    }

    /// The rows added since the last batch (None: there are none).
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows == 0 {
            return Ok(None);
        }
        let mut fields = Vec::with_capacity(self.names.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.names.len());
        for (name, builder) in self.names.iter().zip(&mut self.builders) {
            let array: ArrayRef = match builder {
                Builder::Int(b) => Arc::new(b.finish()),
                Builder::Timestamp(b) => Arc::new(b.finish()),
                Builder::Text(b) => Arc::new(b.finish()),
                Builder::Bool(b) => Arc::new(b.finish()),
            };
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        Ok(Some(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &options,
        )?))
    }
}

#[cfg(test)]
mod tests;
