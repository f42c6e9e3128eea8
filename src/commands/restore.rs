//! `RESTORE [TABLE] t TO VERSION AS OF n | TIMESTAMP AS OF ts`: one commit that makes the
//! latest version of `t` what version n was; the versions in between stay readable, so a
//! restore can itself be undone by another. Records (`datasets.*`, `eval.*`) cannot be restored
//! over, as they cannot be written.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Run, rows};
use crate::catalog::versions::TableAt;
use crate::error::Result;
use crate::security::Role;
use crate::session::{Description, Output, Session, batch_output, writable_schema};
use crate::sql::Planner;
use crate::sql::{self, RestoreTo};

#[derive(Debug)]
pub struct Restore {
    pub table: ObjectName,
    pub to: RestoreTo,
}

#[async_trait]
impl Run for Restore {
    fn kind(&self) -> &'static str {
        "restore"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "RESTORE")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("RESTORE")
    }

    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let name = sql::table_name(&self.table, &session.default_schema())?;
        writable_schema(&name)?;
        crate::catalog::refuse_derived(&name)?;
        let to = match &self.to {
            RestoreTo::Version(v) => TableAt::Version(*v),
            RestoreTo::Timestamp(e) => TableAt::Timestamp(session.fold_timestamp(e).await?),
        };
        let (now, removed, restored) = session.warehouse().restore(&name, to).await?;
        batch_output(RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![now as i64])),
                Arc::new(Int64Array::from(vec![removed as i64])),
                Arc::new(Int64Array::from(vec![restored as i64])),
            ],
        )?)
    }
}

/// The new version, and the files its commit removed and added back.
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("files_removed", DataType::Int64, false),
        Field::new("files_restored", DataType::Int64, false),
    ]))
}
