//! SQL front-end: text to statements, and statements to what runs them.
//!
//! Owns: parsing (PostgreSQL dialect, with datafusion-pg-catalog's rewrites so psql's and BI
//! tools' catalog queries plan), and routing: the statements we answer ourselves (SET, SHOW,
//! transactions, COPY) versus those DataFusion plans. DDL and DML are intercepted later, on the
//! logical plan, by `session`.
//! Must not: execute anything or touch storage.

pub mod asof;
pub mod names;
pub mod parser;
pub mod pg_catalog;
pub mod semantics;
pub mod settings;
pub mod subqueries;
pub mod table_functions;
pub mod time_travel;

use datafusion::sql::sqlparser::ast::{
    self, CopySource, CopyTarget, Expr, Ident, ObjectName, ObjectNamePart, Reset, Set, Value,
};

use crate::catalog::TableName;
use crate::copy::CopyOptions;
use crate::error::{Error, Result};

pub use parser::{EvaluationSpec, FeatureViewSpec, Statement, ViewSource, parse, parse_query};

/// Parses text that must be exactly one statement (the extended protocol's Parse message).
pub fn parse_one(sql: &str) -> Result<Option<Statement>> {
    let mut stmts = parse(sql)?;
    match stmts.len() {
        0 => Ok(None),
        1 => Ok(stmts.pop()),
        _ => Err(Error::Syntax("cannot insert multiple commands into a prepared statement".into())),
    }
}

/// What a statement is, as far as routing is concerned.
#[derive(Debug, Clone)]
pub enum Command {
    /// BEGIN, COMMIT, ROLLBACK: accepted; every statement commits on its own.
    Transaction(TransactionKind),
    Set { name: String, value: String },
    Reset(Option<String>),
    Show(String),
    ShowTables,
    CopyFrom { table: ObjectName, columns: Vec<String>, options: CopyOptions },
    CopyTo { source: CopyToSource, options: CopyOptions },
    /// `COPY t FROM '/server/path'`: admin only, inside `file_directories`.
    CopyFromFile { table: ObjectName, columns: Vec<String>, options: CopyOptions, path: String },
    /// `COPY t|(query) TO '/server/path'`: admin only, inside `file_directories`; CSV.
    CopyToFile { source: CopyToSource, options: CopyOptions, path: String },
    /// Statements clients send that have nothing to do here (DISCARD ALL, ...).
    NoOp(&'static str),
    DescribeHistory { table: ObjectName, limit: Option<u64> },
    Vacuum { table: ObjectName, retain_hours: Option<u64>, dry_run: bool },
    Optimize { table: ObjectName, zorder: Vec<String> },
    CreateDataset { name: ObjectName, query: String },
    ReproduceDataset(ObjectName),
    CreateFeatureView(FeatureViewSpec),
    DropFeatureView { name: String, if_exists: bool },
    CreateEvaluation(EvaluationSpec),
    DropEvaluation { name: String, if_exists: bool },
    RunEvaluation { name: String, window: Option<(Expr, Expr)> },
    BackfillEvaluation { name: String, from: Expr, to: Expr },
    /// `SELECT * FROM online_features(...)`: answered from the index, without planning.
    OnlineFeatures(Vec<ast::FunctionArg>),
    /// Everything DataFusion plans: queries, DML, DDL, EXPLAIN.
    Plan(Box<ast::Statement>),
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

pub fn classify(stmt: Statement) -> Result<Command> {
    let stmt = match stmt {
        Statement::Sql(s) => *s,
        Statement::CreateDataset { name, query } => return Ok(Command::CreateDataset { name, query }),
        Statement::ReproduceDataset { name } => return Ok(Command::ReproduceDataset(name)),
        Statement::DescribeHistory { table, limit } => return Ok(Command::DescribeHistory { table, limit }),
        Statement::Vacuum { table, retain_hours, dry_run } => return Ok(Command::Vacuum { table, retain_hours, dry_run }),
        Statement::Optimize { table, zorder } => return Ok(Command::Optimize { table, zorder }),
        Statement::CreateFeatureView(spec) => return Ok(Command::CreateFeatureView(spec)),
        Statement::DropFeatureView { name, if_exists } => return Ok(Command::DropFeatureView { name, if_exists }),
        // A query over the definitions, so it reads AS OF like any table.
        Statement::ShowFeatureViews => internal_query(crate::features::views::SHOW_SQL)?,
        Statement::CreateEvaluation(spec) => return Ok(Command::CreateEvaluation(spec)),
        Statement::DropEvaluation { name, if_exists } => return Ok(Command::DropEvaluation { name, if_exists }),
        Statement::ShowEvaluations => internal_query(crate::evaluation::definition::SHOW_SQL)?,
        Statement::RunEvaluation { name, window } => return Ok(Command::RunEvaluation { name, window }),
        Statement::BackfillEvaluation { name, from, to } => return Ok(Command::BackfillEvaluation { name, from, to }),
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
        return Ok(Command::OnlineFeatures(args));
    }
    Ok(match stmt {
        S::StartTransaction { .. } => Command::Transaction(TransactionKind::Begin),
        S::Commit { .. } => Command::Transaction(TransactionKind::Commit),
        S::Rollback { savepoint: None, .. } => Command::Transaction(TransactionKind::Rollback),
        S::Rollback { savepoint: Some(_), .. } => Command::Transaction(TransactionKind::RollbackTo),
        S::Savepoint { .. } => Command::Transaction(TransactionKind::Savepoint),
        S::ReleaseSavepoint { .. } => Command::Transaction(TransactionKind::Release),
        S::Set(set) => classify_set(set)?,
        S::Reset(r) => match r.reset {
            Reset::ALL => Command::Reset(None),
            Reset::ConfigurationParameter(name) => Command::Reset(Some(normalize_setting(&object_name_text(&name)))),
        },
        S::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(|i| i.value.clone()).collect();
            // `SHOW TIME ZONE` is words; `SHOW hindsight.as_of` arrives as two identifiers too.
            let spaced = words.join(" ").to_ascii_lowercase();
            let multi_word = ["time zone", "transaction isolation level", "session authorization"];
            let name = if multi_word.contains(&spaced.as_str()) { words.join(" ") } else { words.join(".") };
            if name.eq_ignore_ascii_case("tables") {
                Command::ShowTables
            } else if spaced == "feature views" {
                return classify(Statement::ShowFeatureViews);
            } else if spaced == "evaluations" {
                return classify(Statement::ShowEvaluations);
            } else {
                Command::Show(normalize_setting(&name))
            }
        }
        S::ShowTables { .. } => Command::ShowTables,
        S::Copy { source, to, target, options, legacy_options, values } => {
            let options = CopyOptions::from_ast(&options, &legacy_options)?;
            match (to, target, source) {
                (false, CopyTarget::Stdin, CopySource::Table { table_name, columns }) => {
                    if !values.is_empty() {
                        return Err(Error::FeatureNotSupported("inline COPY data is not supported; send it as COPY data".into()));
                    }
                    Command::CopyFrom { table: table_name, columns: idents(&columns), options }
                }
                (true, CopyTarget::Stdout, CopySource::Table { table_name, columns }) => {
                    Command::CopyTo { source: CopyToSource::Table { table: table_name, columns: idents(&columns) }, options }
                }
                (true, CopyTarget::Stdout, CopySource::Query(q)) => Command::CopyTo { source: CopyToSource::Query(q), options },
                (false, CopyTarget::File { filename }, CopySource::Table { table_name, columns }) => {
                    Command::CopyFromFile { table: table_name, columns: idents(&columns), options, path: filename }
                }
                (true, CopyTarget::File { filename }, CopySource::Table { table_name, columns }) => Command::CopyToFile {
                    source: CopyToSource::Table { table: table_name, columns: idents(&columns) },
                    options,
                    path: filename,
                },
                (true, CopyTarget::File { filename }, CopySource::Query(q)) => {
                    Command::CopyToFile { source: CopyToSource::Query(q), options, path: filename }
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
                Command::Vacuum { table, retain_hours: None, dry_run: false }
            }
            _ => return Err(Error::FeatureNotSupported("VACUUM takes a table: VACUUM t [RETAIN n HOURS] [DRY RUN]".into())),
        },
        S::Discard { .. } => Command::NoOp("DISCARD ALL"),
        S::Deallocate { .. } => Command::NoOp("DEALLOCATE"),
        other => Command::Plan(Box::new(other)),
    })
}

fn classify_set(set: Set) -> Result<Command> {
    Ok(match set {
        Set::SingleAssignment { variable, values, .. } => Command::Set {
            name: normalize_setting(&object_name_text(&variable)),
            value: values.iter().map(setting_value).collect::<Vec<_>>().join(", "),
        },
        Set::SetTimeZone { value, .. } => Command::Set { name: "timezone".into(), value: setting_value(&value) },
        Set::SetNames { charset_name, .. } => Command::Set { name: "client_encoding".into(), value: charset_name.value },
        Set::SetNamesDefault { .. } => Command::Set { name: "client_encoding".into(), value: "UTF8".into() },
        Set::SetTransaction { .. } | Set::SetSessionParam(_) | Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
            Command::NoOp("SET")
        }
        other => return Err(Error::FeatureNotSupported(format!("{other} is not supported"))),
    })
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

/// A statement's kind, as metrics count it: a few fixed words, never user text.
pub fn kind(stmt: &Statement) -> &'static str {
    use ast::Statement as S;
    match stmt {
        Statement::Sql(s) => match s.as_ref() {
            q @ S::Query(_) if crate::features::online::direct_call(q).is_some() => "online",
            S::Query(_) => "select",
            S::Insert(_) => "insert",
            S::Update(_) => "update",
            S::Delete(_) => "delete",
            S::Merge(_) => "merge",
            S::Copy { to: false, .. } => "copy_in",
            S::Copy { to: true, .. } => "copy_out",
            S::Explain { .. } => "explain",
            S::CreateTable(_) | S::Drop { .. } | S::CreateView { .. } | S::AlterTable { .. } | S::Truncate { .. } => "ddl",
            S::Set(_) | S::Reset(_) | S::ShowVariable { .. } => "setting",
            S::StartTransaction { .. } | S::Commit { .. } | S::Rollback { .. } => "transaction",
            _ => "other",
        },
        Statement::CreateDataset { .. } | Statement::ReproduceDataset { .. } => "dataset",
        Statement::DescribeHistory { .. } => "history",
        Statement::Vacuum { .. } => "vacuum",
        Statement::Optimize { .. } => "optimize",
        Statement::CreateFeatureView(_) | Statement::DropFeatureView { .. } | Statement::ShowFeatureViews => "feature_view",
        Statement::CreateEvaluation(_)
        | Statement::DropEvaluation { .. }
        | Statement::ShowEvaluations
        | Statement::RunEvaluation { .. }
        | Statement::BackfillEvaluation { .. } => "evaluation",
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
