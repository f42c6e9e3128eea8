//! BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE and ROLLBACK TO: the session's transaction block.
//! Writes inside a block are staged (`catalog::staging`) and committed together at COMMIT
//! (`catalog::blocks`); the wire reports the state they leave.

use async_trait::async_trait;
use datafusion::common::ScalarValue;

use super::Run;
use crate::error::{Error, Result};
use crate::security::Role;
use crate::session::{Output, Session};
use crate::sql::TransactionKind;

#[derive(Debug)]
pub struct Transaction {
    pub kind: TransactionKind,
    /// The savepoint SAVEPOINT, RELEASE and ROLLBACK TO name.
    pub savepoint: Option<String>,
}

#[async_trait]
impl Run for Transaction {
    fn kind(&self) -> &'static str {
        "transaction"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }

    fn after_failure(&self) -> bool {
        matches!(self.kind, TransactionKind::Commit | TransactionKind::Rollback | TransactionKind::RollbackTo)
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let block = session.block();
        let savepoint = || self.savepoint.as_deref().unwrap_or_default();
        let outside = |what: &str| Error::NoActiveTransaction(format!("{what} can only be used in transaction blocks"));
        match self.kind {
            // PostgreSQL warns and carries on when a block is open already, and so do we.
            TransactionKind::Begin => {
                block.begin();
            }
            TransactionKind::Commit => {
                // COMMIT of a failed block rolls it back, and says so.
                if block.is_failed() {
                    block.end();
                    return Ok(Output::Transaction(TransactionKind::Rollback));
                }
                let staged = block.end();
                session.warehouse().commit_block(staged, &session.user()).await?;
            }
            TransactionKind::Rollback => {
                block.end();
            }
            TransactionKind::Savepoint => {
                if !block.is_open() {
                    return Err(outside("SAVEPOINT"));
                }
                block.savepoint(savepoint()).await?;
            }
            TransactionKind::RollbackTo => {
                if !block.is_open() {
                    return Err(outside("ROLLBACK TO SAVEPOINT"));
                }
                block.rollback_to(session.warehouse(), savepoint()).await?;
            }
            TransactionKind::Release => {
                if !block.is_open() {
                    return Err(outside("RELEASE SAVEPOINT"));
                }
                block.release(savepoint())?;
            }
        }
        Ok(Output::Transaction(self.kind))
    }
}
