//! `export --format parquet`: one Parquet file per table and host, made
//! from that host's period files (CSV or Parquet) in time order.
//!
//! It reuses the path journal recovery takes (`output::recover`): each CSV
//! field is parsed with its column's `ColumnType` into a `Value`, and
//! values go to the agent's own `ParquetFile`, so a compacted file has
//! exactly the schema, encodings and row groups of the files the agent
//! writes. Parquet inputs are read back into the same values.
//!
//! The one decision a reader must know: `ParquetFile` is generic over the
//! table type, so each table name is matched to its type in [`for_table`].
//! A table added to `store::layout::TABLES` without a line there cannot be
//! compacted (it is still copied by `--format copy`), and a unit test
//! fails until the line exists.

use std::fs::File;

use anyhow::{bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};

use super::manifest::Contents;
use crate::store::catalog::{DataFile, FileFormat};
use crate::store::parquet::ParquetFile;
use crate::store::schema::{ColumnType, Iorq, Samples, Stacks, Syscalls, Table, Ticks, Value};

/// Something to do with a table's static type.
pub trait TableVisitor {
    type Output;
    fn visit<T: Table>(self) -> Self::Output;
}

/// Run `visitor` with the type of table `name`; None for a table this
/// build does not know how to compact.
pub fn for_table<V: TableVisitor>(name: &str, visitor: V) -> Option<V::Output> {
    match name {
        Samples::NAME => Some(visitor.visit::<Samples>()),
        Stacks::NAME => Some(visitor.visit::<Stacks>()),
        Ticks::NAME => Some(visitor.visit::<Ticks>()),
        Syscalls::NAME => Some(visitor.visit::<Syscalls>()),
        Iorq::NAME => Some(visitor.visit::<Iorq>()),
        _ => None,
    }
}

/// Write `sources` (one table, one host, oldest first) into `out` as one
/// Parquet file with `metadata`; what was written, and `out` again.
pub fn compact(
    table: &str,
    sources: &[DataFile],
    out: File,
    metadata: &[(String, String)],
    on_file: &mut dyn FnMut(&DataFile),
) -> Result<(Contents, File)> {
    struct Compact<'a> {
        sources: &'a [DataFile],
        out: File,
        metadata: &'a [(String, String)],
        on_file: &'a mut dyn FnMut(&DataFile),
    }
    impl TableVisitor for Compact<'_> {
        type Output = Result<(Contents, File)>;
        fn visit<T: Table>(self) -> Result<(Contents, File)> {
            compact_table::<T>(self.sources, self.out, self.metadata, self.on_file)
        }
    }
    for_table(
        table,
        Compact {
            sources,
            out,
            metadata,
            on_file,
        },
    )
    .unwrap_or_else(|| {
        bail!("table {table} cannot be compacted by this build of taskscope; export it with --format copy")
    })
}

fn compact_table<T: Table>(
    sources: &[DataFile],
    out: File,
    metadata: &[(String, String)],
    on_file: &mut dyn FnMut(&DataFile),
) -> Result<(Contents, File)> {
    let mut parquet = ParquetFile::create::<T>(out, metadata)
        .with_context(|| format!("cannot start the compacted {} file", T::NAME))?;
    let ts = T::columns().iter().position(|c| c.name == "ts");
    let weight = T::columns().iter().position(|c| c.name == "weight_us");
    let mut contents = Contents::default();
    let note = |values: &[Value<'_>], contents: &mut Contents| {
        contents.rows += 1;
        if let Some(Value::Timestamp(us)) = ts.map(|i| &values[i]) {
            contents.first_us = Some(contents.first_us.map_or(*us, |f| f.min(*us)));
            contents.last_us = contents.last_us.max(Some(*us));
        }
        if let Some(Value::Int(w)) = weight.map(|i| &values[i]) {
            contents.weights.insert(*w);
        }
    };
    for source in sources {
        let name = source.relative.display().to_string();
        let file = File::open(&source.path).with_context(|| format!("cannot open {name}"))?;
        match source.format {
            FileFormat::Csv => {
                let decoder = zstd::stream::read::Decoder::new(file)
                    .with_context(|| format!("cannot decompress {name}"))?;
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(decoder);
                let expected: Vec<&str> = T::columns().iter().map(|c| c.name).collect();
                let headers = reader
                    .headers()
                    .with_context(|| format!("cannot read the header of {name}"))?;
                if !headers.iter().eq(expected.iter().copied()) {
                    bail!(
                        "{name}: its columns are not those of {} in this build",
                        T::NAME
                    );
                }
                let mut record = csv::StringRecord::new();
                let mut line = 1u64;
                while reader
                    .read_record(&mut record)
                    .with_context(|| format!("{name}: unreadable row after line {line}"))?
                {
                    line += 1;
                    let values: Vec<Value<'_>> = record
                        .iter()
                        .zip(T::columns())
                        .map(|(field, column)| column.ty.parse(field))
                        .collect::<std::result::Result<_, String>>()
                        .map_err(|err| anyhow::anyhow!("{name}: row {line}: {err}"))?;
                    if values.len() != T::columns().len() {
                        bail!("{name}: row {line} has {} fields", values.len());
                    }
                    note(&values, &mut contents);
                    parquet
                        .write_values(values)
                        .context("cannot write the compacted file")?;
                }
            }
            FileFormat::Parquet => {
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .and_then(|builder| builder.build())
                        .with_context(|| format!("{name} is not a readable Parquet file"))?;
                for batch in reader {
                    let batch = batch.with_context(|| format!("cannot read {name}"))?;
                    let names: Vec<&str> = batch
                        .schema_ref()
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect();
                    let expected: Vec<&str> = T::columns().iter().map(|c| c.name).collect();
                    if names != expected {
                        bail!(
                            "{name}: its columns are not those of {} in this build",
                            T::NAME
                        );
                    }
                    for row in 0..batch.num_rows() {
                        let values: Vec<Value<'_>> = batch
                            .columns()
                            .iter()
                            .zip(T::columns())
                            .map(|(array, column)| value_at(array, row, column.ty))
                            .collect::<Result<_>>()
                            .with_context(|| format!("{name}: row {}", row + 1))?;
                        note(&values, &mut contents);
                        parquet
                            .write_values(values)
                            .context("cannot write the compacted file")?;
                    }
                }
            }
        }
        on_file(source);
    }
    let out = parquet
        .finish()
        .context("cannot finish the compacted file")?;
    Ok((contents, out))
}

/// The value of `array[row]`, as the column type `ty` holds it.
fn value_at(array: &ArrayRef, row: usize, ty: ColumnType) -> Result<Value<'_>> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match (ty, array.data_type()) {
        (ColumnType::Timestamp, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            Value::Timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        (ColumnType::Int64, DataType::Int64) => {
            Value::Int(array.as_primitive::<Int64Type>().value(row))
        }
        (ColumnType::Bool, DataType::Boolean) => Value::Bool(array.as_boolean().value(row)),
        (ColumnType::Text, DataType::Utf8) => Value::Text(array.as_string::<i32>().value(row)),
        (ColumnType::Text, DataType::Dictionary(key, value))
            if **key == DataType::Int32 && **value == DataType::Utf8 =>
        {
            let dictionary = array.as_dictionary::<Int32Type>();
            let index = dictionary.keys().value(row);
            let values = dictionary.values().as_string::<i32>();
            Value::Text(values.value(usize::try_from(index).context("negative dictionary key")?))
        }
        (ty, found) => bail!("a {ty:?} column stored as {found}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_the_agent_writes_can_be_compacted() {
        struct Name;
        impl TableVisitor for Name {
            type Output = &'static str;
            fn visit<T: Table>(self) -> &'static str {
                T::NAME
            }
        }
        for table in crate::store::layout::TABLES {
            assert_eq!(
                for_table(table, Name),
                Some(table),
                "export::compact::for_table does not know table {table}: add it"
            );
        }
    }
}
