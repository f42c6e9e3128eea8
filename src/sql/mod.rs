//! SQL front-end: text to statements, and the rewrites statements go through before planning.
//!
//! Owns: parsing (PostgreSQL dialect, with datafusion-pg-catalog's rewrites so psql's and BI
//! tools' catalog queries plan, plus our statements), names, time travel and the other AST
//! rewrites, building syntax trees (`build`), and the `Planner` trait through which the domain
//! modules plan. Which statement runs how is `commands`'; DDL and DML are intercepted on the
//! logical plan by `session`.
//! Must not: execute anything or touch storage.

pub mod asof;
pub mod build;
pub mod names;
pub mod parser;
pub mod pg_catalog;
mod planner;
pub mod semantics;
pub mod settings;
pub mod subqueries;
pub mod table_functions;
pub mod time_travel;

use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart,
};

use crate::catalog::TableName;
use crate::error::{Error, Result};

pub use planner::Planner;
pub use parser::{EvaluationSpec, FeatureViewSpec, RestoreTo, Statement, ViewSource, parse, parse_query};

/// Parses text that must be exactly one statement (the extended protocol's Parse message).
pub fn parse_one(sql: &str) -> Result<Option<Statement>> {
    let mut stmts = parse(sql)?;
    match stmts.len() {
        0 => Ok(None),
        1 => Ok(stmts.pop()),
        _ => Err(Error::Syntax("cannot insert multiple commands into a prepared statement".into())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, RELEASE [SAVEPOINT], ROLLBACK TO [SAVEPOINT]: drivers issue them inside a
    /// transaction (psycopg's nested `transaction()`, SQLAlchemy's `begin_nested`). They keep the
    /// transaction open and, like it, group nothing.
    Savepoint,
    Release,
    RollbackTo,
}

impl TransactionKind {
    /// The command tag PostgreSQL answers with.
    pub fn tag(self) -> &'static str {
        match self {
            TransactionKind::Begin => "BEGIN",
            TransactionKind::Commit => "COMMIT",
            TransactionKind::Rollback | TransactionKind::RollbackTo => "ROLLBACK",
            TransactionKind::Savepoint => "SAVEPOINT",
            TransactionKind::Release => "RELEASE",
        }
    }
}

#[derive(Debug, Clone)]
pub enum CopyToSource {
    Table { table: ObjectName, columns: Vec<String> },
    Query(Box<datafusion::sql::sqlparser::ast::Query>),
}

/// Unquoted identifiers fold to lower case, as in PostgreSQL.
pub fn normalize_ident(i: &Ident) -> String {
    if i.quote_style.is_some() { i.value.clone() } else { i.value.to_ascii_lowercase() }
}

/// Resolves `t`, `schema.t` or `hindsight.schema.t` against the session's default schema.
pub fn table_name(name: &ObjectName, default_schema: &str) -> Result<TableName> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(normalize_ident(i)),
            other => Err(Error::Syntax(format!("unexpected name part {other}"))),
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [t] => Ok(TableName::new(default_schema, t)),
        [s, t] => Ok(TableName::new(s, t)),
        [_catalog, s, t] => Ok(TableName::new(s, t)),
        _ => Err(Error::Syntax(format!("improper relation name: {name}"))),
    }
}

/// An interval clause's text (`'7 days'`, `'1 hour 30 minutes'`) as Arrow parses interval
/// literals; `what` names the clause in errors (WINDOW, LAG, TTL). Negative parts are refused.
pub fn parse_interval(what: &str, text: &str) -> Result<datafusion::arrow::datatypes::IntervalMonthDayNano> {
    let i = datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(text)
        .map_err(|e| Error::InvalidDatetime(format!("{what} '{text}' is not an interval ({e}); write e.g. INTERVAL '7 days'")))?;
    if i.months < 0 || i.days < 0 || i.nanoseconds < 0 {
        return Err(Error::InvalidParameter(format!("{what} '{text}' must not be negative")));
    }
    Ok(i)
}
