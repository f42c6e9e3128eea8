//! `Planner`: the narrow interface through which `features`, `evaluation` and `datasets` plan
//! and read. A connection's `Session` implements it, and so does the engine's background
//! planner (the online index, the scheduler), so those modules depend on this trait and not on
//! `session`, and stay usable wherever a DataFusion context with hindsight's extensions exists.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::logical_expr::{LogicalPlan, col, lit};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Query, Statement};

use crate::catalog::versions::TableAt;
use crate::catalog::{DATABASE, TableName, Warehouse};
use crate::error::Result;

#[async_trait]
pub trait Planner: Send + Sync {
    /// The DataFusion context plans run in (its settings, functions and memory pool).
    fn context(&self) -> &SessionContext;

    fn warehouse(&self) -> &Arc<Warehouse>;

    /// The schema unqualified names resolve against.
    fn default_schema(&self) -> String;

    /// Who is planning, for what gets recorded (`created_by`).
    fn user(&self) -> String;

    /// The instant `hindsight.as_of` reads the warehouse at, if set.
    fn as_of(&self) -> Option<DateTime<Utc>>;

    /// Plans a query through every rewrite a client's query goes through (table functions,
    /// time travel, ASOF JOIN).
    async fn plan_query(&self, stmt: Statement) -> Result<LogicalPlan>;

    /// The result schema of a query, as Describe would report it.
    async fn query_schema(&self, query: Box<Query>) -> Result<SchemaRef>;

    /// Evaluates a constant expression as an instant (UTC unless it says otherwise).
    async fn fold_timestamp(&self, e: &Expr) -> Result<DateTime<Utc>>;

    /// The row named `name` of a `hindsight.*` metadata table, as this planner sees the table
    /// (so `hindsight.as_of` applies) or as of `at`; `None` if there is none.
    async fn metadata_row(&self, table: &TableName, name: &str, at: Option<DateTime<Utc>>) -> Result<Option<RecordBatch>> {
        let versioned = at.map_or(TableAt::Latest, TableAt::Timestamp).name_for(&table.table);
        let reference = TableReference::full(DATABASE, table.schema.as_str(), versioned.as_str());
        let df = match self.context().table(reference).await {
            Ok(df) => df,
            // Under `hindsight.as_of`, a metadata table younger than that instant is not there.
            Err(e) if crate::error::datafusion_sqlstate(&e) == "42P01" => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let batches: Vec<RecordBatch> = df.filter(col("name").eq(lit(name)))?.collect().await?;
        Ok(batches.into_iter().find(|b| b.num_rows() > 0))
    }
}
