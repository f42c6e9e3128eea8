//! CREATE DATASET and REPRODUCE DATASET (the work is `datasets`').

use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Run, rows};
use crate::error::Result;
use crate::security::Role;
use crate::session::{Description, Output, Session, batch_output};

#[derive(Debug)]
pub struct CreateDataset {
    pub name: ObjectName,
    pub query: String,
}

#[async_trait]
impl Run for CreateDataset {
    fn kind(&self) -> &'static str {
        "dataset"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "CREATE DATASET")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("CREATE DATASET")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let rows = crate::datasets::create(session, &self.name, &self.query).await?;
        Ok(Output::Affected { verb: "SELECT", rows })
    }
}

#[derive(Debug)]
pub struct ReproduceDataset {
    pub name: ObjectName,
}

#[async_trait]
impl Run for ReproduceDataset {
    fn kind(&self) -> &'static str {
        "dataset"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }

    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(crate::datasets::reproduce_schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        batch_output(crate::datasets::reproduce(session, &self.name).await?)
    }
}
