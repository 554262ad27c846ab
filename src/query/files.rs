//! The tables of an engine over data files: the schemas from
//! `store::schema`, published files as a DataFusion scan of the catalog's
//! own file list ([`FileListTable`]), the period being written read into
//! memory through the catalog's tolerant reader ([`read_whole`]), and the
//! window applied to the rows.
//!
//! Why a file list and not DataFusion's `ListingTable`: the catalog picks
//! one format per period and leaves out damaged periods, and a
//! `ListingTable` over explicit files cannot carry partition values (55.2
//! panics on them). The partition columns are `date` (DATE) and `hour`
//! (INTEGER), as the shipped DuckDB views have them.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Date32Array, Int32Array, RecordBatch,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat as DfFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{col, lit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::Engine;
use crate::store::catalog::{self, DataFile, FileFormat, Opened, Window};
use crate::store::schema::{ColumnType, Iorq, Samples, Stacks, Syscalls, Table, Ticks};

/// The Arrow type a column is queried as (strings as views: Parquet's
/// reader yields them without a copy).
fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Text => DataType::Utf8View,
        ColumnType::Bool => DataType::Boolean,
    }
}

fn schema_of<T: Table>() -> Vec<Field> {
    T::columns()
        .iter()
        .map(|c| Field::new(c.name, arrow_type(c.ty), true))
        .collect()
}

/// The columns of `table` in its files (no partition columns); None for a
/// name that is not a table.
pub fn file_schema(table: &str) -> Option<SchemaRef> {
    let fields = match table {
        Samples::NAME => schema_of::<Samples>(),
        Stacks::NAME => schema_of::<Stacks>(),
        Ticks::NAME => schema_of::<Ticks>(),
        Syscalls::NAME => schema_of::<Syscalls>(),
        Iorq::NAME => schema_of::<Iorq>(),
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

fn partition_fields() -> Vec<FieldRef> {
    vec![
        Arc::new(Field::new("date", DataType::Date32, true)),
        Arc::new(Field::new("hour", DataType::Int32, true)),
    ]
}

/// The columns of `table` as queried: its files' columns, then `date` and
/// `hour`.
pub fn table_schema(table: &str) -> Option<SchemaRef> {
    let file = file_schema(table)?;
    let mut fields: Vec<FieldRef> = file.fields().iter().cloned().collect();
    fields.extend(partition_fields());
    Some(Arc::new(Schema::new(fields)))
}

/// The column that times a row of `table` (None: `stacks`).
fn time_column(table: &str) -> Option<&'static str> {
    match table {
        Samples::NAME | Ticks::NAME => Some("ts"),
        Syscalls::NAME => Some("enter_ts"),
        Iorq::NAME => Some("start_ts"),
        _ => None,
    }
}

/// `date` (days since the epoch) and `hour` of a file, from its path below
/// the data directory (`<table>/date=…/hour=…/<name>`).
fn partition_of(file: &DataFile) -> (Option<i32>, Option<i32>) {
    let mut date = None;
    let mut hour = None;
    for part in file.relative.iter() {
        let part = part.to_string_lossy();
        if let Some(day) = part.strip_prefix("date=") {
            date = crate::store::timefmt::parse_timestamp_micros(&format!("{day} 00:00:00"))
                .map(|us| us.div_euclid(86_400_000_000) as i32);
        } else if let Some(h) = part.strip_prefix("hour=") {
            hour = h.parse().ok();
        }
    }
    (date, hour)
}

/// A file read by DataFusion's own scan unless it must be cut at a tick
/// (the period being written, or published since the catalog opened).
pub fn in_memory(file: &DataFile) -> bool {
    file.in_progress || file.until_us.is_some()
}

/// The scan of one format.
fn format_of(format: FileFormat) -> Arc<dyn DfFormat> {
    match format {
        FileFormat::Parquet => Arc::new(ParquetFormat::default()),
        FileFormat::Csv => Arc::new(
            CsvFormat::default()
                .with_has_header(true)
                .with_file_compression_type(FileCompressionType::ZSTD)
                // comm, exe and paths may hold quoted line breaks.
                .with_newlines_in_values(true)
                // Files of older versions lack the newest columns.
                .with_truncated_rows(true),
        ),
    }
}

/// A table over an explicit list of published files of one format, each
/// with its partition values.
#[derive(Debug)]
pub struct FileListTable {
    file_schema: SchemaRef,
    schema: SchemaRef,
    format: Arc<dyn DfFormat>,
    files: Vec<PartitionedFile>,
}

impl FileListTable {
    pub fn new(table: &str, format: FileFormat, files: &[&DataFile]) -> anyhow::Result<Self> {
        let (Some(file_schema), Some(schema)) = (file_schema(table), table_schema(table)) else {
            anyhow::bail!("no table {table}");
        };
        let mut listed = Vec::with_capacity(files.len());
        for file in files {
            let path = std::path::absolute(&file.path)?;
            // Object store paths are below the root, without the first '/'.
            let path = path.to_string_lossy().trim_start_matches('/').to_string();
            let (date, hour) = partition_of(file);
            listed.push(
                PartitionedFile::new(path, file.size).with_partition_values(vec![
                    ScalarValue::Date32(date),
                    ScalarValue::Int32(hour),
                ]),
            );
        }
        Ok(FileListTable {
            file_schema,
            schema,
            format: format_of(format),
            files: listed,
        })
    }
}

#[async_trait]
impl TableProvider for FileListTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(partition_fields())
            .build();
        let source = self.format.file_source(table_schema);
        let groups =
            FileGroup::new(self.files.clone()).split_files(state.config().target_partitions());
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        self.format.create_physical_plan(state, config).await
    }
}

/// Register table `table` of `engine`: the published files (one scan per
/// format), then the rows read into memory, only rows of `window`; for
/// `stacks`, one row per stack_id (each period repeats the stacks its
/// samples use).
pub fn register(
    engine: &Engine,
    table: &str,
    published: &[&DataFile],
    batches: Vec<RecordBatch>,
    window: &Window,
) -> anyhow::Result<()> {
    let ctx = engine.context();
    let schema = table_schema(table).ok_or_else(|| anyhow::anyhow!("no table {table}"))?;
    let time = time_column(table);
    // Files whose every row is inside the window need no row filter (a
    // CSV scan then does not parse their timestamps).
    let (inside, edge): (Vec<&DataFile>, Vec<&DataFile>) =
        published.iter().copied().partition(|f| {
            time.is_some()
                && f.start_us >= window.from_us
                && f.end_us.is_some_and(|end| end <= window.to_us)
        });
    let mut frame = ctx.read_table(Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    frame = with_scans(engine, table, &edge, frame)?;
    if let Some(time) = time {
        let at = |us: i64| lit(ScalarValue::TimestampMicrosecond(Some(us), None));
        frame = frame.filter(
            col(time)
                .gt_eq(at(window.from_us))
                .and(col(time).lt(at(window.to_us))),
        )?;
    }
    frame = with_scans(engine, table, &inside, frame)?;
    if table == Stacks::NAME {
        let columns: Vec<Expr> = crate::store::schema::column_names::<Stacks>()
            .into_iter()
            .map(col)
            .collect();
        frame = frame.distinct_on(vec![col("stack_id")], columns, None)?;
    }
    ctx.deregister_table(table)?;
    ctx.register_table(table, frame.into_view())?;
    Ok(())
}

/// `frame` and the scans of `files` (one per format).
fn with_scans(
    engine: &Engine,
    table: &str,
    files: &[&DataFile],
    mut frame: datafusion::dataframe::DataFrame,
) -> anyhow::Result<datafusion::dataframe::DataFrame> {
    for format in [FileFormat::Parquet, FileFormat::Csv] {
        let chosen: Vec<&DataFile> = files
            .iter()
            .copied()
            .filter(|f| f.format == format)
            .collect();
        if !chosen.is_empty() {
            let scan = FileListTable::new(table, format, &chosen)?;
            frame = engine.context().read_table(Arc::new(scan))?.union(frame)?;
        }
    }
    Ok(frame)
}

/// Whether DataFusion reads `file` whole: every row, every column. The
/// reason when it cannot.
pub fn check(engine: &Engine, table: &str, file: &DataFile) -> Result<(), String> {
    let ctx = engine.context();
    let scan = FileListTable::new(table, file.format, &[file]).map_err(|e| format!("{e:#}"))?;
    let work = async {
        let frame = ctx.read_table(Arc::new(scan))?;
        let mut stream = frame.execute_stream().await?;
        use futures::StreamExt;
        while let Some(batch) = stream.next().await {
            batch?;
        }
        Ok::<(), datafusion::error::DataFusionError>(())
    };
    engine.runtime.block_on(work).map_err(|err| {
        format!(
            "cannot read it whole ({})",
            super::errors::one_line(&err.to_string())
        )
    })
}

/// Every row of `file` (a journal up to its last complete record, or a
/// file published since the catalog opened), cut at its `until_us` and
/// with its partition values; the reason when it cannot be read whole.
pub fn read_whole(table: &str, file: &DataFile) -> Result<Vec<RecordBatch>, String> {
    let schema = table_schema(table).ok_or_else(|| format!("no table {table}"))?;
    let files = file_schema(table).ok_or_else(|| format!("no table {table}"))?;
    let (handle, opened) = catalog::open(file).map_err(|err| format!("cannot read it ({err})"))?;
    let batches = match opened {
        Opened::Journal => {
            let reader = catalog::journal_reader(handle)
                .map_err(|err| format!("cannot decompress it ({err})"))?;
            csv_batches(reader, &files)?
        }
        Opened::Published(FileFormat::Csv) => {
            let reader = zstd::stream::read::Decoder::new(handle)
                .map_err(|err| format!("cannot decompress it ({err})"))?;
            csv_batches(reader, &files)?
        }
        Opened::Published(FileFormat::Parquet) => parquet_batches(handle, &files)?,
    };
    let (date, hour) = partition_of(file);
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let batch = match (file.until_us, batch.column_by_name("ts")) {
            (Some(until), Some(ts)) => {
                let ts = ts
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .ok_or("its ts column is not a timestamp")?;
                let keep: BooleanArray = ts
                    .iter()
                    .map(|t| Some(t.is_some_and(|t| t <= until)))
                    .collect();
                filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?
            }
            _ => batch,
        };
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(Date32Array::from(vec![date; rows])) as ArrayRef);
        columns.push(Arc::new(Int32Array::from(vec![hour; rows])) as ArrayRef);
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn csv_batches(reader: impl Read, schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let reader = datafusion::arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_truncated_rows(true)
        .build(reader)
        .map_err(|err| format!("cannot read it as CSV ({err})"))?;
    let mut batches = Vec::new();
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|err| format!("it is damaged after row {rows} ({err})"))?;
        rows += batch.num_rows();
        batches.push(batch);
    }
    Ok(batches)
}

/// A Parquet file's rows as `schema`: columns by name, cast to the
/// queried types; a column the file lacks (an older version) is NULL.
fn parquet_batches(file: File, schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .map_err(|err| format!("it is not a readable Parquet file ({err})"))?;
    let mut batches = Vec::new();
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|err| format!("it is damaged after row {rows} ({err})"))?;
        rows += batch.num_rows();
        let columns = schema
            .fields()
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(column) => cast(column, field.data_type())
                    .map_err(|err| format!("its column {} cannot be read ({err})", field.name())),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        batches.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?);
    }
    Ok(batches)
}
