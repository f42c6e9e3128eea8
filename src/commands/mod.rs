//! Statements as commands: each kind of statement says, in one file and one place, the role it
//! needs, whether it writes (so that it is refused while the session reads the past), the
//! columns it returns (for the extended protocol's Describe), its kind (for metrics), and how
//! it runs. `classify` turns a parsed statement into its command; `run` applies the role and
//! write checks from the command itself, for every path (simple and extended query, and the
//! wire's prepared fast path alike).
//!
//! Adding a statement: a parser branch (`sql::parser`), an arm in `classify`, and a file here.
//! Owns: routing and the per-statement rules above. Must not: speak the wire protocol; it runs
//! commands against a `Session`, which knows nothing of them.

mod copy;
mod datasets;
mod evaluations;
mod features;
mod query;
mod restore;
mod settings;
mod tables;
mod transactions;

use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{self, CopySource, CopyTarget, Expr, Ident, ObjectName, ObjectNamePart, Reset, Set, Value};

use crate::copy::CopyOptions;
use crate::error::{Error, Result};
use crate::security::Role;
use crate::session::{Description, Output, Session};
use crate::sql::{CopyToSource, Statement, TransactionKind, normalize_ident, parse_one};

/// What a command needs and does.
#[async_trait]
pub trait Run: Send + Sync + std::fmt::Debug {
    /// The role it needs, and what to call it in a refusal. A query is judged again on its
    /// plan (`security::roles::plan_role`) once planned.
    fn role(&self) -> (Role, &'static str);

    /// Its kind, as metrics count it: a few fixed words, never user text.
    fn kind(&self) -> &'static str;

    /// What it writes, named for the refusal while `hindsight.as_of` is set; `None` if it only
    /// reads. (A planned statement is also checked on its plan.)
    fn writes(&self) -> Option<&'static str> {
        None
    }

    /// Whether it may run inside a transaction block. A block stages the writes of INSERT,
    /// UPDATE, DELETE, MERGE, TRUNCATE and COPY FROM until COMMIT; any other command that writes
    /// would commit at once and survive a ROLLBACK, so it is refused there (25001).
    fn in_block(&self) -> bool {
        self.writes().is_none()
    }

    /// Whether it runs in a block that a failed statement aborted: only what ends the block or
    /// goes back to a savepoint does (25P02 for the rest, as PostgreSQL).
    fn after_failure(&self) -> bool {
        false
    }

    /// Its parameters and result columns, without running it.
    async fn describe(&self, _session: &Session) -> Result<Description> {
        Ok(Description::default())
    }

    async fn run(&self, session: &Session, params: Option<Vec<ScalarValue>>) -> Result<Output>;
}

/// A statement, classified.
pub type Command = Box<dyn Run>;

/// Runs every statement of a query string in order (the CLI's `sql -c`, the demo writer).
pub async fn run_sql(session: &Session, sql: &str) -> Result<Vec<Output>> {
    let mut out = Vec::new();
    for stmt in crate::sql::parse(sql)? {
        out.push(execute(session, stmt, None).await?);
    }
    Ok(out)
}

/// Runs one statement, with bound parameter values from the extended protocol.
pub async fn execute(session: &Session, stmt: Statement, params: Option<Vec<ScalarValue>>) -> Result<Output> {
    run(session, classify(stmt)?.as_ref(), params).await
}

/// Runs a classified statement after the checks it asks for: its role, and no writes while
/// the session reads the past. Every path comes through here, the wire's fast paths included.
pub async fn run(session: &Session, command: &dyn Run, params: Option<Vec<ScalarValue>>) -> Result<Output> {
    let block = session.block();
    if block.is_failed() && !command.after_failure() {
        return Err(Error::InFailedTransaction);
    }
    let result = checked(session, command, params).await;
    if result.is_err() {
        // A failed statement aborts the block it ran in, and whatever it staged with it.
        block.fail();
    }
    result
}

async fn checked(session: &Session, command: &dyn Run, params: Option<Vec<ScalarValue>>) -> Result<Output> {
    let (needed, what) = command.role();
    session.role().check(needed, what)?;
    if let Some(what) = command.writes() {
        session.check_writable(what)?;
    }
    if session.block().is_open() && !command.in_block() {
        return Err(Error::ActiveTransaction(format!(
            "{} cannot run inside a transaction block: it would commit at once; run it outside BEGIN ... COMMIT (autocommit)",
            command.writes().unwrap_or("this statement")
        )));
    }
    command.run(session, params).await
}

/// A result without parameters, for `describe`.
fn rows(schema: datafusion::arrow::datatypes::SchemaRef) -> Result<Description> {
    Ok(Description { params: vec![], result: Some(schema) })
}

pub fn classify(stmt: Statement) -> Result<Command> {
    let stmt = match stmt {
        Statement::Sql(s) => *s,
        Statement::CreateDataset { name, query } => return Ok(Box::new(datasets::CreateDataset { name, query })),
        Statement::ReproduceDataset { name } => return Ok(Box::new(datasets::ReproduceDataset { name })),
        Statement::DescribeHistory { table, limit } => return Ok(Box::new(tables::DescribeHistory { table, limit })),
        Statement::Vacuum { table, retain_hours, dry_run } => return Ok(Box::new(tables::Vacuum { table, retain_hours, dry_run })),
        Statement::Optimize { table, zorder } => return Ok(Box::new(tables::Optimize { table, zorder })),
        Statement::Restore { table, to } => return Ok(Box::new(restore::Restore { table, to })),
        Statement::CreateFeatureView(spec) => return Ok(Box::new(features::CreateFeatureView { spec })),
        Statement::DropFeatureView { name, if_exists } => return Ok(Box::new(features::DropFeatureView { name, if_exists })),
        // A query over the definitions, so it reads AS OF like any table.
        Statement::ShowFeatureViews => internal_query(crate::features::views::SHOW_SQL)?,
        Statement::CreateEvaluation(spec) => return Ok(Box::new(evaluations::CreateEvaluation { spec })),
        Statement::DropEvaluation { name, if_exists } => return Ok(Box::new(evaluations::DropEvaluation { name, if_exists })),
        Statement::ShowEvaluations => internal_query(crate::evaluation::definition::SHOW_SQL)?,
        Statement::RunEvaluation { name, window } => return Ok(Box::new(evaluations::RunEvaluation { name, window })),
        Statement::BackfillEvaluation { name, from, to } => return Ok(Box::new(evaluations::BackfillEvaluation { name, from, to })),
    };
    classify_sql(stmt)
}

/// One of our SHOW statements, which are queries over the metadata tables so they read AS OF.
fn internal_query(sql: &str) -> Result<ast::Statement> {
    match parse_one(sql)? {
        Some(Statement::Sql(s)) => Ok(*s),
        _ => Err(Error::Internal(format!("bad internal query: {sql}"))),
    }
}

fn classify_sql(stmt: ast::Statement) -> Result<Command> {
    use ast::Statement as S;
    if let Some(args) = crate::features::online::direct_call(&stmt) {
        return Ok(Box::new(features::OnlineFeatures { args }));
    }
    let command: Command = match stmt {
        S::StartTransaction { .. } => Box::new(transactions::Transaction { kind: TransactionKind::Begin, savepoint: None }),
        S::Commit { .. } => Box::new(transactions::Transaction { kind: TransactionKind::Commit, savepoint: None }),
        S::Rollback { savepoint: None, .. } => Box::new(transactions::Transaction { kind: TransactionKind::Rollback, savepoint: None }),
        S::Rollback { savepoint: Some(name), .. } => {
            Box::new(transactions::Transaction { kind: TransactionKind::RollbackTo, savepoint: Some(normalize_ident(&name)) })
        }
        S::Savepoint { name } => Box::new(transactions::Transaction { kind: TransactionKind::Savepoint, savepoint: Some(normalize_ident(&name)) }),
        S::ReleaseSavepoint { name } => {
            Box::new(transactions::Transaction { kind: TransactionKind::Release, savepoint: Some(normalize_ident(&name)) })
        }
        S::Set(set) => classify_set(set)?,
        S::Reset(r) => match r.reset {
            Reset::ALL => Box::new(settings::Reset { name: None }),
            Reset::ConfigurationParameter(name) => Box::new(settings::Reset { name: Some(normalize_setting(&object_name_text(&name))) }),
        },
        S::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(|i| i.value.clone()).collect();
            // `SHOW TIME ZONE` is words; `SHOW hindsight.as_of` arrives as two identifiers too.
            let spaced = words.join(" ").to_ascii_lowercase();
            let multi_word = ["time zone", "transaction isolation level", "session authorization"];
            let name = if multi_word.contains(&spaced.as_str()) { words.join(" ") } else { words.join(".") };
            if name.eq_ignore_ascii_case("tables") {
                Box::new(settings::ShowTables)
            } else if spaced == "feature views" {
                return classify(Statement::ShowFeatureViews);
            } else if spaced == "evaluations" {
                return classify(Statement::ShowEvaluations);
            } else {
                Box::new(settings::Show { name: normalize_setting(&name) })
            }
        }
        S::ShowTables { .. } => Box::new(settings::ShowTables),
        S::Copy { source, to, target, options, legacy_options, values } => {
            let options = CopyOptions::from_ast(&options, &legacy_options)?;
            match (to, target, source) {
                (false, CopyTarget::Stdin, CopySource::Table { table_name, columns }) => {
                    if !values.is_empty() {
                        return Err(Error::FeatureNotSupported("inline COPY data is not supported; send it as COPY data".into()));
                    }
                    Box::new(copy::CopyFrom { table: table_name, columns: idents(&columns), options })
                }
                (true, CopyTarget::Stdout, CopySource::Table { table_name, columns }) => {
                    Box::new(copy::CopyTo { source: CopyToSource::Table { table: table_name, columns: idents(&columns) }, options })
                }
                (true, CopyTarget::Stdout, CopySource::Query(q)) => Box::new(copy::CopyTo { source: CopyToSource::Query(q), options }),
                (false, CopyTarget::File { filename }, CopySource::Table { table_name, columns }) => {
                    Box::new(copy::CopyFromFile { table: table_name, columns: idents(&columns), options, path: filename })
                }
                (true, CopyTarget::File { filename }, CopySource::Table { table_name, columns }) => Box::new(copy::CopyToFile {
                    source: CopyToSource::Table { table: table_name, columns: idents(&columns) },
                    options,
                    path: filename,
                }),
                (true, CopyTarget::File { filename }, CopySource::Query(q)) => {
                    Box::new(copy::CopyToFile { source: CopyToSource::Query(q), options, path: filename })
                }
                (_, CopyTarget::Program { .. }, _) => {
                    return Err(Error::FeatureNotSupported(
                        "COPY to or from a program is not allowed; use STDIN/STDOUT (psql's \\copy)".into(),
                    ));
                }
                _ => return Err(Error::FeatureNotSupported("this form of COPY is not supported".into())),
            }
        }
        // Plain `VACUUM t` parses as PostgreSQL; it means ours.
        S::Vacuum(v) => match v.table_name {
            Some(table) if !v.full && !v.sort_only && !v.delete_only && !v.reindex && !v.recluster && v.threshold.is_none() => {
                Box::new(tables::Vacuum { table, retain_hours: None, dry_run: false })
            }
            _ => return Err(Error::FeatureNotSupported("VACUUM takes a table: VACUUM t [RETAIN n HOURS] [DRY RUN]".into())),
        },
        S::Discard { .. } => Box::new(settings::NoOp { tag: "DISCARD ALL" }),
        S::Deallocate { .. } => Box::new(settings::NoOp { tag: "DEALLOCATE" }),
        other => Box::new(query::Query { stmt: other }),
    };
    Ok(command)
}

fn classify_set(set: Set) -> Result<Command> {
    let command: Command = match set {
        Set::SingleAssignment { variable, values, .. } => Box::new(settings::Set {
            name: normalize_setting(&object_name_text(&variable)),
            value: values.iter().map(setting_value).collect::<Vec<_>>().join(", "),
        }),
        Set::SetTimeZone { value, .. } => Box::new(settings::Set { name: "timezone".into(), value: setting_value(&value) }),
        Set::SetNames { charset_name, .. } => Box::new(settings::Set { name: "client_encoding".into(), value: charset_name.value }),
        Set::SetNamesDefault { .. } => Box::new(settings::Set { name: "client_encoding".into(), value: "UTF8".into() }),
        Set::SetTransaction { .. } | Set::SetSessionParam(_) | Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
            Box::new(settings::NoOp { tag: "SET" })
        }
        other => return Err(Error::FeatureNotSupported(format!("{other} is not supported"))),
    };
    Ok(command)
}

/// `SET x = 'a'`, `SET x TO a`, `SET x = 3`: the value as text, without quotes.
fn setting_value(e: &Expr) -> String {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            Value::Boolean(b) => if *b { "on".into() } else { "off".into() },
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// Settings are case-insensitive; `TIME ZONE` is the same as `timezone`.
fn normalize_setting(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        _ => lower,
    }
}

fn object_name_text(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn idents(cols: &[Ident]) -> Vec<String> {
    cols.iter().map(normalize_ident).collect()
}

