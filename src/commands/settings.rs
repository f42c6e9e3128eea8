//! Session-level statements: transactions (accepted; each statement commits on its own), SET,
//! RESET, SHOW, SHOW TABLES, and the statements clients send that have nothing to do here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;

use super::{Run, rows};
use crate::catalog;
use crate::error::{Error, Result};
use crate::security::Role;
use crate::session::{Description, Output, Session, batch_output};

#[derive(Debug)]
pub struct Set {
    pub name: String,
    pub value: String,
}

#[async_trait]
impl Run for Set {
    fn kind(&self) -> &'static str {
        "setting"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }


    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        session.set(&self.name, &self.value).await?;
        Ok(Output::Command("SET".into()))
    }
}

/// `RESET name`, or `RESET ALL` when `name` is `None`.
#[derive(Debug)]
pub struct Reset {
    pub name: Option<String>,
}

#[async_trait]
impl Run for Reset {
    fn kind(&self) -> &'static str {
        "setting"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }


    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        session.reset(self.name.as_deref());
        Ok(Output::Command("RESET".into()))
    }
}

#[derive(Debug)]
pub struct Show {
    pub name: String,
}

#[async_trait]
impl Run for Show {
    fn kind(&self) -> &'static str {
        "setting"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }


    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(show_schema(&self.name))
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let name = self.name.as_str();
        let value = if name == "all" {
            let all = session.settings().all();
            let schema = Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("setting", DataType::Utf8, false),
            ]));
            let names: StringArray = all.iter().map(|(k, _)| Some(k.as_str())).collect();
            let values: StringArray = all.iter().map(|(_, v)| Some(v.as_str())).collect();
            return batch_output(RecordBatch::try_new(schema, vec![Arc::new(names), Arc::new(values)])?);
        } else if let Some(df_key) = name.strip_prefix("datafusion.") {
            let options = session.context().state().config().options().entries();
            options.into_iter().find(|e| e.key == format!("datafusion.{df_key}")).and_then(|e| e.value).unwrap_or_default()
        } else {
            session
                .settings()
                .get(name)
                .ok_or_else(|| Error::InvalidParameter(format!("unrecognized configuration parameter \"{name}\"")))?
        };
        batch_output(RecordBatch::try_new(show_schema(name), vec![Arc::new(StringArray::from(vec![value]))])?)
    }
}

/// `SHOW`'s one column, named as PostgreSQL spells the setting (`SHOW timezone` is `TimeZone`).
fn show_schema(name: &str) -> SchemaRef {
    let name = match name {
        "timezone" => "TimeZone",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        other => other,
    };
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}

#[derive(Debug)]
pub struct ShowTables;

#[async_trait]
impl Run for ShowTables {
    fn kind(&self) -> &'static str {
        "other"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }


    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(show_tables_schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let warehouse = session.warehouse();
        warehouse.refresh().await?;
        let (mut schemas, mut names) = (Vec::new(), Vec::new());
        for schema in catalog::SCHEMAS {
            for t in warehouse.cached_table_names(schema) {
                schemas.push(schema.to_string());
                names.push(t);
            }
        }
        batch_output(RecordBatch::try_new(
            show_tables_schema(),
            vec![Arc::new(StringArray::from(schemas)), Arc::new(StringArray::from(names))],
        )?)
    }
}

fn show_tables_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
    ]))
}

/// Statements clients send that have nothing to do here (DISCARD ALL, DEALLOCATE, SET ROLE,
/// ...): their tag, nothing else.
#[derive(Debug)]
pub struct NoOp {
    pub tag: &'static str,
}

#[async_trait]
impl Run for NoOp {
    fn kind(&self) -> &'static str {
        "other"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }


    async fn run(&self, _session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        Ok(Output::Command(self.tag.into()))
    }
}
