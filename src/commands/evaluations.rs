//! Evaluations: CREATE, DROP, RUN and BACKFILL EVALUATION (the work is `evaluation`'s).

use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::Expr;

use super::{Run, rows};
use crate::error::Result;
use crate::security::Role;
use crate::session::{Description, Output, Session, batch_output};
use crate::sql::EvaluationSpec;

#[derive(Debug)]
pub struct CreateEvaluation {
    pub spec: EvaluationSpec,
}

#[async_trait]
impl Run for CreateEvaluation {
    fn kind(&self) -> &'static str {
        "evaluation"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "CREATE EVALUATION")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("CREATE EVALUATION")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        crate::evaluation::definition::create(session, self.spec.clone()).await?;
        Ok(Output::Command("CREATE EVALUATION".into()))
    }
}

#[derive(Debug)]
pub struct DropEvaluation {
    pub name: String,
    pub if_exists: bool,
}

#[async_trait]
impl Run for DropEvaluation {
    fn kind(&self) -> &'static str {
        "evaluation"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "DROP EVALUATION")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("DROP EVALUATION")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        crate::evaluation::definition::drop(session, &self.name, self.if_exists).await?;
        Ok(Output::Command("DROP EVALUATION".into()))
    }
}

/// `RUN EVALUATION name [FOR WINDOW start, end]`.
#[derive(Debug)]
pub struct RunEvaluation {
    pub name: String,
    pub window: Option<(Expr, Expr)>,
}

#[async_trait]
impl Run for RunEvaluation {
    fn kind(&self) -> &'static str {
        "evaluation"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "RUN EVALUATION")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("RUN EVALUATION")
    }

    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(crate::evaluation::run::output_schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        batch_output(crate::evaluation::run::run(session, &self.name, self.window.clone()).await?)
    }
}

/// `BACKFILL EVALUATION name FROM a TO b`.
#[derive(Debug)]
pub struct BackfillEvaluation {
    pub name: String,
    pub from: Expr,
    pub to: Expr,
}

#[async_trait]
impl Run for BackfillEvaluation {
    fn kind(&self) -> &'static str {
        "evaluation"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "BACKFILL EVALUATION")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("BACKFILL EVALUATION")
    }

    async fn describe(&self, _session: &Session) -> Result<Description> {
        rows(crate::evaluation::run::output_schema())
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        batch_output(crate::evaluation::run::backfill(session, &self.name, self.from.clone(), self.to.clone()).await?)
    }
}
