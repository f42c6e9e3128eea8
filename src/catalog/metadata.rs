//! hindsight's own metadata tables, in the `hindsight` schema: ordinary Delta tables, so that the
//! metadata has history and reads `AS OF` like everything else. SQL can read them, never write
//! them; the features that own them append through delta-rs.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{METADATA_SCHEMA, TableName, Warehouse};
use crate::error::{Error, Result};

/// `hindsight.datasets`: one row per `CREATE DATASET`.
pub fn datasets() -> (TableName, SchemaRef) {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    let schema = Schema::new(vec![
        s("name"),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        s("created_by"),
        s("query"),
        s("default_schema"),
        s("pinned_versions"),
        s("output_schema"),
        Field::new("row_count", DataType::Int64, false),
        s("content_hash"),
    ]);
    (TableName::new(METADATA_SCHEMA, "datasets"), Arc::new(schema))
}

/// `hindsight.feature_views`: one row per live feature view (DROP deletes it; the table's
/// history keeps every definition there ever was).
pub fn feature_views() -> (TableName, SchemaRef) {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let schema = Schema::new(vec![
        s("name", false),
        s("source_kind", false),
        s("source", false),
        s("default_schema", false),
        s("entity", false),
        s("timestamp_column", false),
        s("created_column", true),
        s("ttl", true),
        s("features", false),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        s("created_by", false),
    ]);
    (TableName::new(METADATA_SCHEMA, "feature_views"), Arc::new(schema))
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `hindsight.evaluations`: one row per live evaluation (DROP deletes it).
pub fn evaluations() -> (TableName, SchemaRef) {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let schema = Schema::new(vec![
        s("name", false),
        s("schedule", false),
        s("window_size", true),
        s("lag", true),
        s("on_commit", true),
        Field::new("on_commit_version", DataType::Int64, true),
        s("query", false),
        s("default_schema", false),
        Field::new("created_at", utc(), false),
        s("created_by", false),
    ]);
    (TableName::new(METADATA_SCHEMA, "evaluations"), Arc::new(schema))
}

/// `hindsight.evaluation_runs`: one row per attempt to run an evaluation over a window.
pub fn evaluation_runs() -> (TableName, SchemaRef) {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let schema = Schema::new(vec![
        s("run_id", false),
        s("evaluation", false),
        // schedule, manual, backfill or commit.
        s("trigger", false),
        Field::new("scheduled_for", utc(), true),
        Field::new("trigger_version", DataType::Int64, true),
        Field::new("window_start", utc(), false),
        Field::new("window_end", utc(), false),
        Field::new("attempt", DataType::Int64, false),
        // succeeded or failed.
        s("status", false),
        s("error", true),
        Field::new("rows", DataType::Int64, false),
        Field::new("started_at", utc(), false),
        Field::new("duration_ms", DataType::Int64, false),
        s("versions", false),
        s("server", false),
    ]);
    (TableName::new(METADATA_SCHEMA, "evaluation_runs"), Arc::new(schema))
}

/// `hindsight.drops`: one row per DROP TABLE of a record, a table in `datasets` or `eval`
/// (see `derived_by`), written before its files are deleted: the table's history goes with
/// them, so this row is what is left to say who dropped which version when.
pub fn drops() -> (TableName, SchemaRef) {
    let schema = Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("last_version", DataType::Int64, false),
        Field::new("dropped_at", utc(), false),
        Field::new("dropped_by", DataType::Utf8, false),
    ]);
    (TableName::new(METADATA_SCHEMA, "drops"), Arc::new(schema))
}

impl Warehouse {
    /// Records in `hindsight.drops` that `user` is dropping `name` (see [`drops`]).
    pub async fn record_drop(&self, name: &TableName, user: &str) -> Result<()> {
        use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
        let last_version = self.latest_version(name).await?;
        let (meta, schema) = drops();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![name.to_string()])),
                Arc::new(Int64Array::from(vec![last_version as i64])),
                Arc::new(TimestampMicrosecondArray::from(vec![chrono::Utc::now().timestamp_micros()]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![user.to_string()])),
            ],
        )?;
        let table = self.load_existing(&meta).await?;
        table.write(vec![batch]).with_save_mode(deltalake::protocol::SaveMode::Append).await?;
        Ok(())
    }

    /// Claims a key once in the whole warehouse: true for the first caller, false for every
    /// other, across servers. It is an object written only if absent, the same atomic primitive
    /// a Delta commit uses, under `hindsight/_claims/` (no Delta table, so no catalog entry).
    pub async fn claim(&self, key: &[&str]) -> Result<bool> {
        use object_store::{PutMode, PutOptions};
        let path = key.iter().fold(self.prefix.clone().join(METADATA_SCHEMA).join("_claims"), |p, part| p.join(*part));
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&path, bytes::Bytes::from_static(b"claimed").into(), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the metadata tables a warehouse lacks. Two servers opening a new warehouse at
    /// once race harmlessly: the loser finds the table there.
    pub async fn ensure_metadata_tables(&self) -> Result<()> {
        for (name, schema) in [datasets(), feature_views(), evaluations(), evaluation_runs(), drops()] {
            // create_table checks for the table first, so an existing one costs one lookup.
            match self.create_table(&name, &schema, &[]).await {
                Ok(_) | Err(Error::DuplicateTable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
