//! Reproducible datasets: `CREATE DATASET` pins every table its query reads to the version
//! current at the start, runs it, writes the rows to `datasets.<name>` and records the query,
//! the pins and a content hash in `hindsight.datasets`; `REPRODUCE DATASET` re-runs the stored
//! query at the pinned versions (never reading the materialised copy) and compares hashes, then
//! hashes the copy too, if it is still there, to show it was not tampered with.
//!
//! Owns: the dataset lifecycle and its hash (`hash.rs`). Must not: speak the wire protocol or
//! know sessions; it plans through `sql::Planner` like any statement, so time travel and
//! permissions stay in one place.

pub mod hash;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{ObjectName, Query, Statement};
use futures::{StreamExt, TryStreamExt};

use crate::catalog::versions::PinnedVersions;
use crate::catalog::{HindsightTable, OneShotStream, TableName, metadata};
use crate::error::{Error, Result};
use crate::features::historical;
use crate::sql::Planner;
use crate::sql::{parse_query, time_travel};
use hash::ContentHasher;

pub const SCHEMA: &str = "datasets";

/// A dataset as `hindsight.datasets` records it.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    /// When the versions were pinned: `SET hindsight.as_of` to this instant shows the sources
    /// exactly as the dataset read them.
    pub created_at: chrono::DateTime<Utc>,
    pub query: String,
    pub default_schema: String,
    pub pinned: PinnedVersions,
    pub rows: u64,
    pub hash: String,
}

/// `name` or `datasets.name`.
fn dataset_name(name: &ObjectName) -> Result<TableName> {
    let t = crate::sql::table_name(name, SCHEMA)?;
    if t.schema != SCHEMA {
        return Err(Error::InvalidParameter(format!(
            "datasets live in the schema \"{SCHEMA}\"; name it {} or {SCHEMA}.{}",
            t.table, t.table
        )));
    }
    Ok(t)
}

/// Runs a dataset's query (as `parse_query` parsed its stored text) at its pinned versions: the
/// rows, in Delta's column types.
async fn run_pinned(session: &dyn Planner, mut q: Box<Query>, default_schema: &str, pinned: &PinnedVersions) -> Result<SendableRecordBatchStream> {
    time_travel::pin(&mut q, pinned, default_schema)?;
    let plan = session.plan_query(Statement::Query(q)).await?;
    let plan = crate::catalog::delta_projection(plan)?;
    Ok(session.context().execute_logical_plan(plan).await?.execute_stream().await?)
}

/// Passes batches through, hashing each on the way.
fn hashing(stream: SendableRecordBatchStream, hasher: Arc<Mutex<ContentHasher>>) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let hashed = stream.and_then(move |batch| {
        let result = hasher.lock().unwrap_or_else(|p| p.into_inner()).update(&batch).map(|_| batch);
        futures::future::ready(result.map_err(crate::error::to_datafusion))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, hashed))
}

/// `CREATE DATASET`: the rows it wrote.
pub async fn create(session: &dyn Planner, name: &ObjectName, query: &str) -> Result<u64> {
    let table = dataset_name(name)?;
    // The copy and the registry row are two commits; no other CREATE DATASET of this name in
    // this server runs between them.
    let _creating = session.warehouse().creation_lock(&table).await?;
    if lookup(session, &table.table).await?.is_some() {
        return Err(Error::DuplicateObject(format!(
            "dataset \"{}\" already exists; datasets are immutable, so choose a new name",
            table.table
        )));
    }
    // A copy without a registry row is what a crash between the two commits leaves: it never
    // was a dataset (nothing recorded its hash), so it is replaced.
    if session.warehouse().exists(&table).await? {
        tracing::warn!(dataset = %table, "replacing the rows of an interrupted CREATE DATASET, which has no registry row");
        session.warehouse().drop_table(&table).await?;
    }
    let default_schema = session.default_schema();
    // Resolved once, before anything runs: writers committing meanwhile cannot skew the rows.
    let created_at = Utc::now();
    let mut pinned = PinnedVersions::new();
    let mut parsed = parse_query(query)?;
    // Feature views' sources are tables the dataset reads too: expand, then pin them all.
    historical::expand_query(session, &mut parsed, None).await?;
    for t in time_travel::unversioned_tables(&parsed, &default_schema)? {
        let v = session.warehouse().latest_version(&t).await?;
        pinned.insert(t.to_string(), v);
    }
    let stream = run_pinned(session, parsed, &default_schema, &pinned).await?;
    let schema = stream.schema();
    let hasher = Arc::new(Mutex::new(ContentHasher::default()));
    let source = session.context().read_table(Arc::new(OneShotStream::table(hashing(stream, hasher.clone()))?))?;
    let written = session.warehouse().create_table_as(&session.context().state(), &table, source.into_unoptimized_plan(), &[]).await?;
    let hasher = hasher.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if written != hasher.rows() {
        return Err(Error::Internal(format!("dataset {table}: wrote {written} rows but hashed {}", hasher.rows())));
    }
    let record = Record {
        name: table.table.clone(),
        created_at,
        query: query.to_string(),
        default_schema,
        pinned,
        rows: hasher.rows(),
        hash: hasher.finish(&schema),
    };
    append(session, &record, &schema).await?;
    Ok(record.rows)
}

pub async fn reproduce(session: &dyn Planner, name: &ObjectName) -> Result<RecordBatch> {
    let table = dataset_name(name)?;
    let record = lookup(session, &table.table)
        .await?
        .ok_or_else(|| Error::UndefinedObject(format!("dataset \"{}\" does not exist", table.table)))?;
    // Versions pinned long ago may have lost files to a VACUUM outside hindsight: say which,
    // rather than fail halfway through a scan.
    for (table, version) in &record.pinned {
        session.warehouse().check_readable(&TableName::from_qualified(table, &record.default_schema), *version).await?;
    }
    // Feature views as they were defined when the dataset was made.
    let mut q = parse_query(&record.query)?;
    historical::expand_query(session, &mut q, Some(record.created_at)).await?;
    let stream = run_pinned(session, q, &record.default_schema, &record.pinned).await?;
    let schema = stream.schema();
    let mut hasher = ContentHasher::default();
    let mut stream = stream;
    while let Some(batch) = stream.next().await {
        hasher.update(&batch?)?;
    }
    let hash_now = hasher.finish(&schema);
    let copy_identical = match copy_hash(session, &table, &schema).await {
        Ok(copy) => copy.map(|(rows, hash)| rows == record.rows && hash == record.hash),
        Err(e) => {
            tracing::warn!(dataset = %table, error = %e.message(), "REPRODUCE: the materialised copy cannot be read");
            Some(false)
        }
    };
    let out = reproduce_schema();
    let batch = RecordBatch::try_new(
        out.clone(),
        vec![
            Arc::new(StringArray::from(vec![record.name.clone()])),
            Arc::new(Int64Array::from(vec![record.rows as i64])),
            Arc::new(Int64Array::from(vec![hasher.rows() as i64])),
            Arc::new(StringArray::from(vec![record.hash.clone()])),
            Arc::new(StringArray::from(vec![hash_now.clone()])),
            Arc::new(BooleanArray::from(vec![record.hash == hash_now && record.rows == hasher.rows()])),
            Arc::new(BooleanArray::from(vec![copy_identical])),
        ],
    )?;
    Ok(batch)
}

/// The rows and content hash of `datasets.name` as it is now, if it exists, hashed under the
/// column types the query produces (the copy reads back in Delta's, which the hash's encoding
/// treats alike) and the copy's own column names.
async fn copy_hash(session: &dyn Planner, table: &TableName, schema: &Schema) -> Result<Option<(u64, String)>> {
    let warehouse = session.warehouse();
    if !warehouse.exists(table).await? {
        return Ok(None);
    }
    let delta = warehouse.load_existing(table).await?;
    let provider = HindsightTable::try_new(warehouse, table.clone(), delta).await?;
    let mut stream = session.context().read_table(Arc::new(provider))?.execute_stream().await?;
    let copy_schema = stream.schema();
    let mut hasher = ContentHasher::default();
    while let Some(batch) = stream.next().await {
        hasher.update(&batch?)?;
    }
    let header = if copy_schema.fields().len() == schema.fields().len() {
        let fields = copy_schema.fields().iter().zip(schema.fields());
        Schema::new(fields.map(|(c, s)| Field::new(c.name(), s.data_type().clone(), true)).collect::<Vec<_>>())
    } else {
        copy_schema.as_ref().clone()
    };
    Ok(Some((hasher.rows(), hasher.finish(&header))))
}

pub fn reproduce_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("rows_then", DataType::Int64, false),
        Field::new("rows_now", DataType::Int64, false),
        Field::new("hash_then", DataType::Utf8, false),
        Field::new("hash_now", DataType::Utf8, false),
        Field::new("identical", DataType::Boolean, false),
        // NULL when `datasets.name` was dropped.
        Field::new("copy_identical", DataType::Boolean, true),
    ]))
}

/// The dataset's row in `hindsight.datasets`, read through the session (so `hindsight.as_of`
/// applies: a dataset created after that instant does not exist yet).
async fn lookup(session: &dyn Planner, name: &str) -> Result<Option<Record>> {
    let Some(b) = session.metadata_row(&metadata::datasets().0, name, None).await? else { return Ok(None) };
    let column = |c: &str, t: &DataType| -> Result<Arc<dyn Array>> {
        let a = b.column_by_name(c).ok_or_else(|| Error::DataCorrupted(format!("hindsight.datasets has no column {c}")))?;
        Ok(datafusion::arrow::compute::cast(a, t)?)
    };
    let text = |c: &str| -> Result<String> {
        let a = column(c, &DataType::Utf8)?;
        Ok(a.as_string_opt::<i32>().map(|s| s.value(0).to_string()).unwrap_or_default())
    };
    let rows = column("row_count", &DataType::Int64)?
        .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
        .map(|a| a.value(0))
        .unwrap_or(0);
    let pinned: PinnedVersions = serde_json::from_str(&text("pinned_versions")?)
        .map_err(|e| Error::DataCorrupted(format!("hindsight.datasets: pinned_versions of {name}: {e}")))?;
    let created_at = column("created_at", &DataType::Int64)?
        .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
        .and_then(|a| chrono::DateTime::from_timestamp_micros(a.value(0)))
        .unwrap_or_default();
    Ok(Some(Record {
        name: text("name")?,
        created_at,
        query: text("query")?,
        default_schema: text("default_schema")?,
        pinned,
        rows: rows as u64,
        hash: text("content_hash")?,
    }))
}

async fn append(session: &dyn Planner, r: &Record, output: &Schema) -> Result<()> {
    let (meta, schema) = metadata::datasets();
    let columns: Vec<serde_json::Value> = output
        .fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name(),
                "type": crate::catalog::pg_type_name(f.data_type()),
                "arrow_type": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })
        })
        .collect();
    let s = |v: &str| Arc::new(StringArray::from(vec![v.to_string()])) as Arc<dyn Array>;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            s(&r.name),
            Arc::new(TimestampMicrosecondArray::from(vec![r.created_at.timestamp_micros()]).with_timezone("UTC")),
            s(&session.user()),
            s(&r.query),
            s(&r.default_schema),
            s(&serde_json::to_string(&r.pinned).unwrap_or_default()),
            s(&serde_json::Value::Array(columns).to_string()),
            Arc::new(Int64Array::from(vec![r.rows as i64])),
            s(&r.hash),
        ],
    )?;
    let table = session.warehouse().load_existing(&meta).await?;
    table.write(vec![batch]).with_save_mode(deltalake::protocol::SaveMode::Append).await?;
    Ok(())
}
