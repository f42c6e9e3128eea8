//! COPY: from the client (STDIN) and to it (STDOUT), and from and to files on the server
//! (admins only, inside the configured `file_directories`).

use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::Run;
use crate::copy::CopyOptions;
use crate::error::Result;
use crate::security::Role;
use crate::session::{Output, Session};
use crate::sql::CopyToSource;

/// `COPY t [(cols)] FROM STDIN`: the connection then feeds the decoder.
#[derive(Debug)]
pub struct CopyFrom {
    pub table: ObjectName,
    pub columns: Vec<String>,
    pub options: CopyOptions,
}

#[async_trait]
impl Run for CopyFrom {
    /// Staged inside a transaction block, like INSERT.
    fn in_block(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "copy_in"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Writer, "COPY FROM")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("COPY FROM")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        session.copy_from(&self.table, &self.columns, self.options.clone()).await
    }
}

/// `COPY t | (query) TO STDOUT`.
#[derive(Debug)]
pub struct CopyTo {
    pub source: CopyToSource,
    pub options: CopyOptions,
}

#[async_trait]
impl Run for CopyTo {
    fn kind(&self) -> &'static str {
        "copy_out"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Reader, "reading")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        session.copy_to(self.source.clone(), self.options.clone()).await
    }
}

/// `COPY t FROM '/server/path'`.
#[derive(Debug)]
pub struct CopyFromFile {
    pub table: ObjectName,
    pub columns: Vec<String>,
    pub options: CopyOptions,
    pub path: String,
}

#[async_trait]
impl Run for CopyFromFile {
    /// Staged inside a transaction block, like INSERT.
    fn in_block(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "copy_in"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "COPY FROM a server file")
    }

    fn writes(&self) -> Option<&'static str> {
        Some("COPY FROM")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let path = session.confine(&self.path, true)?;
        session.copy_from_file(&self.table, &self.columns, self.options.clone(), &path).await
    }
}

/// `COPY t | (query) TO '/server/path'`, as CSV.
#[derive(Debug)]
pub struct CopyToFile {
    pub source: CopyToSource,
    pub options: CopyOptions,
    pub path: String,
}

#[async_trait]
impl Run for CopyToFile {
    fn kind(&self) -> &'static str {
        "copy_out"
    }

    fn role(&self) -> (Role, &'static str) {
        (Role::Admin, "COPY TO a server file")
    }

    async fn run(&self, session: &Session, _params: Option<Vec<ScalarValue>>) -> Result<Output> {
        let path = session.confine(&self.path, false)?;
        session.copy_to_file(self.source.clone(), self.options.clone(), path).await
    }
}
