//! Everything DataFusion plans: queries, DML, DDL, EXPLAIN. The command needs only a reader;
//! the plan is judged again, node by node, once planned (`Session::execute_plan`), since a
//! write can hide in a CTE or behind EXPLAIN ANALYZE.

use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::Statement;

use super::Run;
use crate::error::Result;
use crate::security::Role;
use crate::session::{Description, Output, Session};

#[derive(Debug)]
pub struct Query {
    pub stmt: Statement,
}

#[async_trait]
impl Run for Query {
    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }

    fn kind(&self) -> &'static str {
        use Statement as S;
        match &self.stmt {
            S::Query(_) => "select",
            S::Insert(_) => "insert",
            S::Update(_) => "update",
            S::Delete(_) => "delete",
            S::Merge(_) => "merge",
            S::Explain { .. } => "explain",
            S::CreateTable(_) | S::Drop { .. } | S::CreateView { .. } | S::AlterTable { .. } | S::Truncate { .. } => "ddl",
            _ => "other",
        }
    }

    async fn describe(&self, session: &Session) -> Result<Description> {
        session.describe_plan(self.stmt.clone()).await
    }

    async fn run(&self, session: &Session, params: Option<Vec<ScalarValue>>) -> Result<Output> {
        session.execute_plan(self.stmt.clone(), params).await
    }
}
