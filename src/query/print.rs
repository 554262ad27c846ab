//! A query's rows as text: an aligned table for a terminal, CSV with a
//! header row, or JSON lines (one object per row, every column present,
//! NULL as null: what `jq` and DuckDB's `read_json` take a row at a time).
//!
//! Timestamps print as in the files (UTC, `YYYY-MM-DD HH:MM:SS.ffffff`),
//! dates as `YYYY-MM-DD`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// `batch` with timestamps as text in the files' form, and string views
/// as plain strings (every writer takes those).
pub fn printable(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let (ty, array): (DataType, ArrayRef) = match field.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, None) => {
                let ts = column
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .context("a timestamp column")?;
                let mut text = String::new();
                let strings: StringArray = ts
                    .iter()
                    .map(|v| {
                        v.map(|us| {
                            text.clear();
                            crate::store::timefmt::write_timestamp_micros(&mut text, us);
                            text.clone()
                        })
                    })
                    .collect();
                (DataType::Utf8, Arc::new(strings))
            }
            DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Utf8View
            | DataType::LargeUtf8
            | DataType::Dictionary(..)
            | DataType::Interval(_)
            | DataType::Duration(_) => (DataType::Utf8, cast(column, &DataType::Utf8)?),
            other => (other.clone(), column.clone()),
        };
        fields.push(Field::new(field.name(), ty, true));
        columns.push(array);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Print `batches` to `out` as `format`.
pub fn write(out: &mut dyn Write, batches: &[RecordBatch], format: Format) -> Result<()> {
    let batches: Vec<RecordBatch> = batches.iter().map(printable).collect::<Result<_>>()?;
    match format {
        Format::Table => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
            writeln!(out, "{table}")?;
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in &batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut *out);
            for batch in &batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    out.flush()?;
    Ok(())
}
