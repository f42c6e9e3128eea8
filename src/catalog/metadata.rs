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

impl Warehouse {
    /// Creates the metadata tables a warehouse lacks. Two servers opening a new warehouse at
    /// once race harmlessly: the loser finds the table there.
    pub async fn ensure_metadata_tables(&self) -> Result<()> {
        for (name, schema) in [datasets(), feature_views()] {
            // create_table checks for the table first, so an existing one costs one lookup.
            match self.create_table(&name, &schema, &[]).await {
                Ok(_) | Err(Error::DuplicateTable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
