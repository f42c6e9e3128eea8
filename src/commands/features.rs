//! Feature views: CREATE and DROP FEATURE VIEW, and `SELECT * FROM online_features(...)`
//! answered from the in-memory index without planning (the work is `features`').

use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::FunctionArg;

use super::Run;
use crate::error::Result;
use crate::security::Role;
use crate::session::{Description, Output, Session, batch_output};
use crate::sql::FeatureViewSpec;

#[derive(Debug)]
pub struct CreateFeatureView {
    pub spec: FeatureViewSpec,
}

#[async_trait]
impl Run for CreateFeatureView {
    fn kind(&self) -> &'static str {
        "feature_view"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "CREATE FEATURE VIEW")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("CREATE FEATURE VIEW")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        crate::features::views::create(session, self.spec.clone()).await?;
        Ok(Output::Command("CREATE FEATURE VIEW".into()))
    }
}

#[derive(Debug)]
pub struct DropFeatureView {
    pub name: String,
    pub if_exists: bool,
}

#[async_trait]
impl Run for DropFeatureView {
    fn kind(&self) -> &'static str {
        "feature_view"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "DROP FEATURE VIEW")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("DROP FEATURE VIEW")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        crate::features::views::drop(session, &self.name, self.if_exists).await?;
        Ok(Output::Command("DROP FEATURE VIEW".into()))
    }
}

/// `SELECT * FROM online_features('view', key, ...)`, its keys literals or parameters.
#[derive(Debug)]
pub struct OnlineFeatures {
    pub args: Vec<FunctionArg>,
}

#[async_trait]
impl Run for OnlineFeatures {
    fn kind(&self) -> &'static str {
        "online"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }

    async fn describe(&self, session: &Session) -> Result<Description> {
        let (schema, params) = crate::features::online::describe(session.engine().online(), &self.args).await?;
        Ok(Description { params, result: Some(schema) })
    }

    async fn run(&self, session: &Session, params: Option<Vec<ScalarValue>>) -> Result<Output> {
        batch_output(crate::features::online::lookup(session, session.engine().online(), &self.args, params.as_deref()).await?)
    }
}
