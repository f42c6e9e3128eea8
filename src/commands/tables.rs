//! Statements about one Delta table's versions and files: DESCRIBE HISTORY, VACUUM, OPTIMIZE.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Run, rows};
use crate::catalog::OptimizeReport;
use crate::catalog::versions::{Commit, VacuumReport};
use crate::error::Result;
use crate::security::Role;
use crate::session::{Description, Output, Session, batch_output, writable_schema};
use crate::sql;

/// `DESCRIBE HISTORY t [LIMIT n]`: the table's commits, newest first.
#[derive(Debug)]
pub struct DescribeHistory {
    pub table: ObjectName,
    pub limit: Option<u64>,
}

#[async_trait]
impl Run for DescribeHistory {
    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }

    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(history_schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let name = sql::table_name(&self.table, &session.default_schema())?;
        let commits = session.warehouse().history(&name, self.limit, session.as_of()).await?;
        batch_output(history_batch(&commits)?)
    }
}

fn history_schema() -> SchemaRef {
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

fn history_batch(commits: &[Commit]) -> Result<RecordBatch> {
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    let metric = |names: &[&str]| commits.iter().map(|c| c.metric(names)).collect::<Int64Array>();
    Ok(RecordBatch::try_new(
        history_schema(),
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

/// `VACUUM t [RETAIN n HOURS] [DRY RUN]`: deletes files no version inside the retention needs.
#[derive(Debug)]
pub struct Vacuum {
    pub table: ObjectName,
    pub retain_hours: Option<u64>,
    pub dry_run: bool,
}

#[async_trait]
impl Run for Vacuum {
    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "VACUUM")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("VACUUM")
    }

    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(vacuum_schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let name = sql::table_name(&self.table, &session.default_schema())?;
        writable_schema(&name)?;
        let retain = self.retain_hours.map(|h| std::time::Duration::from_secs(h.saturating_mul(3600)));
        let report = session.warehouse().vacuum(&name, retain, self.dry_run).await?;
        batch_output(vacuum_batch(&report)?)
    }
}

fn vacuum_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("files_deleted", DataType::Int64, false),
        Field::new("retain_hours", DataType::Int64, false),
        Field::new("dry_run", DataType::Boolean, false),
    ]))
}

fn vacuum_batch(r: &VacuumReport) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        vacuum_schema(),
        vec![
            Arc::new(Int64Array::from(vec![r.files as i64])),
            Arc::new(Int64Array::from(vec![(r.retain.as_secs() / 3600) as i64])),
            Arc::new(BooleanArray::from(vec![r.dry_run])),
        ],
    )?)
}

/// `OPTIMIZE t [ZORDER BY (c, ...)]`: fewer, larger files; no row changes.
#[derive(Debug)]
pub struct Optimize {
    pub table: ObjectName,
    pub zorder: Vec<String>,
}

#[async_trait]
impl Run for Optimize {
    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "OPTIMIZE")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("OPTIMIZE")
    }

    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(optimize_schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let name = sql::table_name(&self.table, &session.default_schema())?;
        writable_schema(&name)?;
        let report = session.warehouse().optimize(&name, self.zorder.clone(), Arc::new(session.context().state())).await?;
        batch_output(optimize_batch(&report)?)
    }
}

fn optimize_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("files_removed", DataType::Int64, false),
        Field::new("files_added", DataType::Int64, false),
        Field::new("bytes_removed", DataType::Int64, false),
        Field::new("bytes_added", DataType::Int64, false),
    ]))
}

fn optimize_batch(r: &OptimizeReport) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        optimize_schema(),
        vec![
            Arc::new(Int64Array::from(vec![r.files_removed as i64])),
            Arc::new(Int64Array::from(vec![r.files_added as i64])),
            Arc::new(Int64Array::from(vec![r.bytes_removed])),
            Arc::new(Int64Array::from(vec![r.bytes_added])),
        ],
    )?)
}
