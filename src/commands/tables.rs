//! Statements about one Delta table's versions and files: DESCRIBE HISTORY, VACUUM, OPTIMIZE.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Run, rows};
use crate::catalog::OptimizeReport;
use crate::catalog::history;
use crate::catalog::versions::VacuumReport;
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
    fn kind(&self) -> &'static str {
        "history"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }

    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(history::schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let name = sql::table_name(&self.table, &session.default_schema())?;
        let commits = session.warehouse().history(&name, self.limit, session.as_of()).await?;
        batch_output(history::batch(&commits)?)
    }
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
    fn kind(&self) -> &'static str {
        "vacuum"
    }

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
    fn kind(&self) -> &'static str {
        "optimize"
    }

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
