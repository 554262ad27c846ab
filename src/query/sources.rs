//! The two tables of `share/taskscope.sql` that describe the data rather
//! than hold it: `taskscope_tables` (each table's columns and types, as
//! `taskscope schema` prints them) and `taskscope_sources` (what each
//! table has on disk and what its view reads).
//!
//! Both are made from the code and the catalog, with the script's columns
//! and row order. One difference, which a reader must know:
//! `taskscope_sources.sql` is the SELECT text DuckDB's view runs, which
//! has no meaning here (DataFusion scans the catalog's files itself), so it
//! is NULL. The counts are of the whole directory, as the script's glob
//! counts them, not of the window.

use std::sync::Arc;

use anyhow::Result;
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::Engine;
use crate::store::catalog::{Catalog, DataFile, FileFormat};
use crate::store::schema::{Iorq, Samples, Stacks, Syscalls, Table, Ticks};

/// `name, columns` of one table: `ts TIMESTAMP, tid BIGINT, ...`.
fn columns_of<T: Table>() -> (&'static str, String) {
    let columns = T::columns()
        .iter()
        .map(|c| format!("{} {}", c.name, c.ty.sql()))
        .collect::<Vec<_>>()
        .join(", ");
    (T::NAME, columns)
}

/// Register `taskscope_tables`: one row per table, in the script's order.
pub fn register_tables(engine: &Engine) -> Result<()> {
    let rows = [
        columns_of::<Samples>(),
        columns_of::<Stacks>(),
        columns_of::<Ticks>(),
        columns_of::<Syscalls>(),
        columns_of::<Iorq>(),
    ];
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("columns", DataType::Utf8, true),
    ]));
    let names: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
    let columns: ArrayRef = Arc::new(StringArray::from_iter_values(
        rows.iter().map(|r| r.1.as_str()),
    ));
    let batch = RecordBatch::try_new(schema.clone(), vec![names, columns])?;
    engine.register_batches("taskscope_tables", schema, vec![batch])
}

/// What the files of one table are, as the script counts them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    parquet: i64,
    csv: i64,
    /// CSV files without a Parquet twin (same directory, same stem).
    csv_only: i64,
}

impl Counts {
    fn of(files: &[DataFile]) -> Counts {
        let published: Vec<&DataFile> = files.iter().filter(|f| !f.in_progress).collect();
        let twin = |csv: &DataFile| {
            published.iter().any(|f| {
                f.format == FileFormat::Parquet
                    && f.stem == csv.stem
                    && f.relative.parent() == csv.relative.parent()
            })
        };
        let csv: Vec<&&DataFile> = published
            .iter()
            .filter(|f| f.format == FileFormat::Csv)
            .collect();
        Counts {
            parquet: published
                .iter()
                .filter(|f| f.format == FileFormat::Parquet)
                .count() as i64,
            csv: csv.len() as i64,
            csv_only: csv.iter().filter(|f| !twin(f)).count() as i64,
        }
    }

    /// What the view reads (the script's 'auto' format, which is how
    /// `taskscope sql` chooses too: Parquet where a period has both).
    fn reads(&self) -> &'static str {
        match (self.parquet, self.csv, self.csv_only) {
            (0, 0, _) => "none",
            (0, _, _) => "csv",
            (_, _, 0) => "parquet",
            _ => "parquet+csv",
        }
    }
}

/// Register `taskscope_sources` for the files `catalog` lists (every table,
/// ordered by name; problems found while listing are the catalog's).
pub fn register_sources(engine: &Engine, catalog: &mut Catalog) -> Result<()> {
    let mut names = [
        Samples::NAME,
        Stacks::NAME,
        Ticks::NAME,
        Syscalls::NAME,
        Iorq::NAME,
    ];
    names.sort_unstable();
    let known = catalog.problems.len();
    let counts: Vec<Counts> = names
        .iter()
        .map(|table| Counts::of(&catalog.list(table)))
        .collect();
    // The same directories are listed again for the query: one problem
    // each is enough.
    catalog.problems.truncate(known);
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("reads", DataType::Utf8, true),
        Field::new("parquet_files", DataType::Int64, true),
        Field::new("csv_files", DataType::Int64, true),
        Field::new("csv_only_files", DataType::Int64, true),
        Field::new("sql", DataType::Utf8, true),
    ]));
    let int = |f: fn(&Counts) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(counts.iter().map(f)))
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(names)),
            Arc::new(StringArray::from_iter_values(
                counts.iter().map(Counts::reads),
            )),
            int(|c| c.parquet),
            int(|c| c.csv),
            int(|c| c.csv_only),
            Arc::new(StringArray::new_null(names.len())),
        ],
    )?;
    engine.register_batches("taskscope_sources", schema, vec![batch])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_the_script_chooses() {
        let counts = |parquet, csv, csv_only| Counts {
            parquet,
            csv,
            csv_only,
        };
        assert_eq!(counts(0, 0, 0).reads(), "none");
        assert_eq!(counts(0, 3, 3).reads(), "csv");
        assert_eq!(counts(3, 3, 0).reads(), "parquet");
        assert_eq!(counts(3, 0, 0).reads(), "parquet");
        assert_eq!(counts(3, 5, 2).reads(), "parquet+csv");
    }

    #[test]
    fn tables_list_every_column_with_its_type() {
        let (name, columns) = columns_of::<Ticks>();
        assert_eq!(name, "ticks");
        assert!(
            columns.starts_with("ts TIMESTAMP, weight_us BIGINT, threads BIGINT"),
            "{columns}"
        );
    }
}
