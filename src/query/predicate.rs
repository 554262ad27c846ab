//! A SQL expression over one table's columns, outside a query: the
//! `--where` of `report` and `flamegraph`, parsed and evaluated by the
//! same DataFusion as `taskscope sql`.
//!
//! [`parse`] reads the text with the engine's SQL dialect as an expression
//! against a schema (any function, operator, CASE, LIKE, regexp_like, ...
//! the engine has), so a syntax error or an unknown column is the same one
//! line, with its position, as in `taskscope sql` (`errors`). [`compile`]
//! makes the physical expression (types coerced: `ts >= '2026-11-22
//! 13:04'` compares a timestamp), and [`evaluate`] gives, per Arrow batch,
//! the rows for which it is true: false and NULL (SQL's three-valued
//! logic) leave a row out.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::prep_null_mask_filter;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{DFSchema, ExprSchema};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::errors::{self, QueryError};

/// A session for expressions only: the engine's parser options (spans
/// for positions, identifiers lower-cased as typed), no tables.
fn session() -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(1);
    let options = config.options_mut();
    options.sql_parser.collect_spans = true;
    options.sql_parser.enable_ident_normalization = true;
    SessionContext::new_with_config(config)
}

/// `sql` as a condition over the columns of `schema`: an unknown column, a
/// syntax error or a value that is not true/false is a one-line error
/// (with its position when the parser or planner gives one).
pub fn parse(sql: &str, schema: &Schema) -> Result<Expr, QueryError> {
    let df_schema = DFSchema::try_from(schema.clone()).map_err(errors::planning)?;
    let expr = session()
        .parse_sql_expr(sql, &df_schema)
        .map_err(|err| match err.find_root() {
            datafusion::error::DataFusionError::SQL(..) => {
                QueryError::Syntax(errors::syntax_message(&err))
            }
            _ => errors::planning(err),
        })?;
    let ty = expr.get_type(&df_schema as &dyn ExprSchema);
    match ty {
        Ok(DataType::Boolean | DataType::Null) => Ok(expr),
        Ok(other) => Err(QueryError::Plan(format!(
            "SQL error: the expression gives {other}, not true or false; write a condition (comm LIKE 'gt-%', syscall_us > 1000, ...)"
        ))),
        Err(err) => Err(errors::planning(err)),
    }
}

/// `expr` (from [`parse`]) ready to evaluate on batches of `schema`
/// (which must have every column `expr` uses, by name and type).
pub fn compile(expr: Expr, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>, QueryError> {
    let df_schema = DFSchema::try_from(schema.clone()).map_err(errors::planning)?;
    // Coerced, then simplified as a query's filter would be (the planner
    // of an expression alone only coerces, and some functions, such as
    // coalesce, exist only as their simplified form).
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::new(df_schema.clone()))
            .build(),
    );
    let expr = simplifier
        .coerce(expr, &df_schema)
        .and_then(|expr| simplifier.simplify(expr))
        .map_err(errors::planning)?;
    session()
        .create_physical_expr(expr, &df_schema)
        .map_err(errors::planning)
}

/// Which rows of `batch` (of the schema `expr` was compiled for) pass:
/// true where the expression is true, false where it is false or NULL.
pub fn evaluate(expr: &dyn PhysicalExpr, batch: &RecordBatch) -> Result<BooleanArray, String> {
    let value = expr
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|err| errors::one_line(&err.to_string()))?;
    let Some(mask) = value.as_any().downcast_ref::<BooleanArray>() else {
        return Err(format!("it gives {}, not true or false", value.data_type()));
    };
    Ok(if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    })
}
