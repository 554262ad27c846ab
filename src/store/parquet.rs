//! Parquet files, built from the same column table as CSV.
//!
//! Values are appended to Arrow builders (text columns dictionary-encoded)
//! and handed to the Parquet writer in batches; row groups are cut at
//! 122,880 rows, DuckDB's own row-group size, so a scan parallelises the
//! way DuckDB expects. Columns are zstd-compressed. The file carries
//! key/value metadata (host, kernel, agent version, frequency, boot time).
//!
//! A Parquet file is only readable once its footer is written, so it is
//! never its own crash journal: the CSV journal next to it is (see
//! `output::period`).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int64Builder, StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::store::schema::{arrow_schema, ColumnType, Table, Value};

/// Rows per row group: DuckDB's default row-group size.
pub const ROW_GROUP_ROWS: usize = 122_880;
/// Rows buffered in the Arrow builders before they go to the writer.
const BATCH_ROWS: usize = 8_192;

enum Builder {
    Timestamp(TimestampMicrosecondBuilder),
    Int(Int64Builder),
    Text(StringDictionaryBuilder<Int32Type>),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Builder {
        match ty {
            ColumnType::Timestamp => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS))
            }
            ColumnType::Int64 => Builder::Int(Int64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Text => Builder::Text(StringDictionaryBuilder::new()),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::with_capacity(BATCH_ROWS)),
        }
    }

    fn append(&mut self, value: Value<'_>) -> io::Result<()> {
        match (self, value) {
            (Builder::Timestamp(b), Value::Timestamp(v)) => b.append_value(v),
            (Builder::Timestamp(b), Value::Null) => b.append_null(),
            (Builder::Int(b), Value::Int(v)) => b.append_value(v),
            (Builder::Int(b), Value::Null) => b.append_null(),
            (Builder::Text(b), Value::Text(v)) => {
                b.append(v).map_err(io::Error::other)?;
            }
            (Builder::Text(b), Value::Null) => b.append_null(),
            (Builder::Bool(b), Value::Bool(v)) => b.append_value(v),
            (Builder::Bool(b), Value::Null) => b.append_null(),
            (_, value) => {
                return Err(io::Error::other(format!(
                    "value {value:?} does not fit the column type"
                )))
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// One Parquet file being written.
pub struct ParquetFile {
    writer: ArrowWriter<BufWriter<File>>,
    schema: SchemaRef,
    builders: Vec<Builder>,
    buffered: usize,
    rows: u64,
}

impl ParquetFile {
    /// Start a file for table `T` with `metadata` as key/value pairs.
    pub fn create<T: Table>(file: File, metadata: &[(String, String)]) -> io::Result<ParquetFile> {
        let schema: SchemaRef = Arc::new(arrow_schema::<T>());
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).map_err(io::Error::other)?,
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("taskscope {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                    .collect(),
            ))
            .build();
        // The Arrow schema blob only helps Arrow readers rebuild dictionary
        // types; DuckDB reads the Parquet types, so it is left out.
        let options = ArrowWriterOptions::new()
            .with_properties(props)
            .with_skip_arrow_metadata(true);
        let writer = ArrowWriter::try_new_with_options(
            BufWriter::with_capacity(256 * 1024, file),
            schema.clone(),
            options,
        )
        .map_err(io::Error::other)?;
        let builders = T::columns().iter().map(|c| Builder::new(c.ty)).collect();
        Ok(ParquetFile {
            writer,
            schema,
            builders,
            buffered: 0,
            rows: 0,
        })
    }

    /// Append one row of table `T`.
    pub fn write_row<T: Table>(&mut self, row: &T::Row<'_>) -> io::Result<()> {
        let mut builders = self.builders.iter_mut();
        let mut appended = Ok(());
        T::for_each_value(row, |value| {
            if let (Ok(()), Some(builder)) = (&appended, builders.next()) {
                appended = builder.append(value);
            }
        });
        appended?;
        self.row_done()
    }

    /// Append one row given as values in column order (journal recovery).
    pub fn write_values<'a>(
        &mut self,
        values: impl IntoIterator<Item = Value<'a>>,
    ) -> io::Result<()> {
        let mut count = 0;
        for (builder, value) in self.builders.iter_mut().zip(values) {
            builder.append(value)?;
            count += 1;
        }
        if count != self.builders.len() {
            return Err(io::Error::other(format!(
                "row has {count} values, the table {} columns",
                self.builders.len()
            )));
        }
        self.row_done()
    }

    fn row_done(&mut self) -> io::Result<()> {
        self.buffered += 1;
        self.rows += 1;
        if self.buffered >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> io::Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(io::Error::other)?;
        self.writer.write(&batch).map_err(io::Error::other)?;
        self.buffered = 0;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Write the last row group and the footer, and make the file durable.
    pub fn finish(mut self) -> io::Result<File> {
        self.write_batch()?;
        // Writes the last row group and the footer.
        let mut buffered = self.writer.into_inner().map_err(io::Error::other)?;
        buffered.flush()?;
        let file = buffered.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        Ok(file)
    }
}
