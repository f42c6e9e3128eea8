//! A table's commits as rows: `DESCRIBE HISTORY t` and the table function `history('t')`,
//! which has the same columns and, being a relation, can be filtered, joined and aggregated.
//!
//! The function resolves its argument when the query runs (against the session's schema and,
//! under `hindsight.as_of`, only commits up to that instant), so one plan reads the log once.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::memory::MemorySourceConfig;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, TableReference, plan_err};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::schema::AsOf;
use super::versions::Commit;
use super::{TableName, Warehouse};
use crate::error::{Result, to_datafusion};

pub const FUNCTION: &str = "history";

/// The columns of a table's history, newest commit first.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), true),
        Field::new("operation", DataType::Utf8, true),
        Field::new("operation_parameters", DataType::Utf8, true),
        Field::new("rows_added", DataType::Int64, true),
        Field::new("rows_updated", DataType::Int64, true),
        Field::new("rows_removed", DataType::Int64, true),
        Field::new("operation_metrics", DataType::Utf8, true),
    ]))
}

pub fn batch(commits: &[Commit]) -> Result<RecordBatch> {
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    let metric = |names: &[&str]| commits.iter().map(|c| c.metric(names)).collect::<Int64Array>();
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(commits.iter().map(|c| Some(c.version as i64)).collect::<Int64Array>()),
            Arc::new(
                commits
                    .iter()
                    .map(|c| c.timestamp.map(|t| t.timestamp_micros()))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("+00:00"),
            ),
            Arc::new(commits.iter().map(|c| c.operation.clone()).collect::<StringArray>()),
            Arc::new(commits.iter().map(|c| json(&c.parameters)).collect::<StringArray>()),
            Arc::new(commits.iter().map(Commit::rows_added).collect::<Int64Array>()),
            Arc::new(metric(&["num_updated_rows", "num_target_rows_updated"])),
            Arc::new(metric(&["num_deleted_rows", "num_target_rows_deleted"])),
            Arc::new(commits.iter().map(|c| json(&c.metrics)).collect::<StringArray>()),
        ],
    )?)
}

/// `history('t')`, registered per session: it reads the warehouse as that session does.
#[derive(Debug)]
pub struct HistoryFunction {
    warehouse: Arc<Warehouse>,
    as_of: Arc<AsOf>,
}

impl HistoryFunction {
    pub fn new(warehouse: Arc<Warehouse>, as_of: Arc<AsOf>) -> Self {
        Self { warehouse, as_of }
    }
}

impl TableFunctionImpl for HistoryFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let [Expr::Literal(ScalarValue::Utf8(Some(name)) | ScalarValue::LargeUtf8(Some(name)) | ScalarValue::Utf8View(Some(name)), _)] =
            args
        else {
            return plan_err!("usage: {FUNCTION}('table'), with the table's name quoted as a string");
        };
        Ok(Arc::new(HistoryTable {
            warehouse: self.warehouse.clone(),
            until: self.as_of.get(),
            table: TableReference::parse_str(name),
        }))
    }
}

#[derive(Debug)]
struct HistoryTable {
    warehouse: Arc<Warehouse>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    table: TableReference,
}

#[async_trait]
impl TableProvider for HistoryTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let default_schema = &state.config_options().catalog.default_schema;
        let name = TableName::new(self.table.schema().unwrap_or(default_schema), self.table.table());
        let commits = self.warehouse.history(&name, None, self.until).await.map_err(to_datafusion)?;
        let batch = batch(&commits).map_err(to_datafusion)?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], schema(), projection.cloned())?)
    }
}
