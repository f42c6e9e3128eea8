//! One error type for the whole server, each variant mapped to a PostgreSQL SQLSTATE.
//!
//! Owns: the classification of failures into SQLSTATEs and human-readable messages.
//! Must not: format wire messages (that is `wire`), or swallow the source chain.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("syntax error: {0}")]
    Syntax(String),

    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),

    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),

    #[error("schema \"{0}\" does not exist")]
    UndefinedSchema(String),

    #[error("{0}")]
    UndefinedColumn(String),

    #[error("{0}")]
    DatatypeMismatch(String),

    #[error("{0}")]
    InvalidParameter(String),

    #[error("{0}")]
    FeatureNotSupported(String),

    /// Malformed input data (a bad COPY row, an unparsable literal).
    #[error("{0}")]
    InvalidText(String),

    #[error("COPY {table}, line {line}: {message}")]
    CopyData { table: String, line: u64, message: String },

    /// Another writer committed first; the statement changed nothing and may be retried.
    #[error("could not serialize access due to a concurrent commit on {table}: {message}")]
    Conflict { table: String, message: String },

    #[error("schema \"{0}\" is read-only: it holds hindsight's own metadata")]
    ReadOnlySchema(String),

    /// A write into `datasets.*` or `eval.*` other than CREATE DATASET's or an evaluation run's.
    #[error("{table} is written only by {writer}: its rows are a record and cannot be changed by SQL")]
    DerivedTable { table: String, writer: &'static str },

    #[error("configuration: {0}")]
    Config(String),

    /// A write while the session reads the past (`SET hindsight.as_of`), or into a pinned version.
    #[error("{0}")]
    ReadOnly(String),

    /// A time-travel target that does not exist (a version past the latest, a time before the
    /// first commit).
    #[error("{0}")]
    NoSuchVersion(String),

    /// A version whose log or files are gone (vacuumed or cleaned up outside hindsight).
    #[error("version {version} of {table} can no longer be read: {detail}")]
    VersionUnavailable { table: String, version: u64, detail: String },

    #[error("{0}")]
    InvalidDatetime(String),

    /// A logarithm of zero or of a negative number.
    #[error("{0}")]
    InvalidLogArgument(String),

    /// A square root of a negative number, or a power with no real value.
    #[error("{0}")]
    InvalidPowerArgument(String),

    /// An interval whose months, days or microseconds leave their range (`interval_mul`).
    #[error("interval out of range")]
    IntervalOutOfRange,

    #[error("division by zero")]
    DivisionByZero,

    #[error("more than one row returned by a subquery used as an expression")]
    CardinalityViolation,

    /// A named object that is not a table (a dataset, ...) already exists.
    #[error("{0}")]
    DuplicateObject(String),

    #[error("{0}")]
    UndefinedObject(String),

    #[error("{0}")]
    DuplicateColumn(String),

    #[error("canceling statement due to user request")]
    Canceled,

    /// The client closed its connection while its statement ran; no one hears this error.
    #[error("terminating statement: the client closed the connection")]
    ClientGone,

    #[error("canceling statement due to statement timeout ({0} ms)")]
    StatementTimeout(u64),

    /// A role too weak for the statement; nothing was changed.
    #[error("{0}")]
    InsufficientPrivilege(String),

    /// Over a configured limit (message size, a value too large, ...).
    #[error("{0}")]
    ProgramLimit(String),

    /// An expression nested too deeply to plan safely (PostgreSQL's "stack depth limit exceeded").
    #[error("{0}")]
    TooComplex(String),

    /// A table or schema name that cannot be stored as a folder of the warehouse.
    #[error("{0}")]
    InvalidName(String),

    /// A table whose log or data cannot be read as Delta: it fails alone, naming what is broken.
    #[error("{0}")]
    DataCorrupted(String),

    /// A setting only the server's configuration may change.
    #[error("{0}")]
    CantChangeNow(String),

    /// The warehouse's storage is full; nothing was committed.
    #[error("{0}")]
    DiskFull(String),

    /// A statement after a failed one in the same transaction block.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,

    /// A statement that cannot run inside a transaction block.
    #[error("{0}")]
    ActiveTransaction(String),

    /// A statement that needs a transaction block, outside one.
    #[error("{0}")]
    NoActiveTransaction(String),

    /// ROLLBACK TO or RELEASE a savepoint the block does not have.
    #[error("{0}")]
    InvalidSavepoint(String),

    /// A bug: a panic inside an operator or in our code, caught before it could end the
    /// connection or the scheduler.
    #[error("internal error: {0}")]
    Internal(String),

    #[error(transparent)]
    DataFusion(#[from] DataFusionError),

    #[error(transparent)]
    Delta(#[from] DeltaTableError),

    #[error(transparent)]
    Arrow(#[from] ArrowError),

    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    #[error("storage: {0}")]
    ObjectStore(#[from] object_store::Error),
}

/// Runs `work`, turning a panic inside it into [`Error::Internal`].
///
/// DataFusion re-raises a panic from any of its spawned operator tasks in the task that polls
/// the plan, which for us is a connection's or the scheduler's: uncaught, a bug in one query
/// would drop that client's connection or stop every scheduled evaluation. Unwinding drops the
/// plan, so its memory reservations and locks are released; our shared mutexes shrug off
/// poisoning.
pub async fn catch_panic<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use futures::FutureExt;
    // Boxed: a statement's future is large in debug builds, and a worker thread's stack is not.
    std::panic::AssertUnwindSafe(Box::pin(work)).catch_unwind().await.unwrap_or_else(|p| Err(Error::from_panic(p)))
}

impl Error {
    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_string());
        tracing::error!(panic = %what, "a statement panicked; it was stopped with an internal error");
        Error::Internal(format!("the statement hit a bug and was stopped ({what}); please report it"))
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for Error {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        if matches!(e, datafusion::sql::sqlparser::parser::ParserError::RecursionLimitExceeded) {
            return Error::TooComplex("statement too complex: it nests parentheses, subqueries or function calls more than 50 levels deep".into());
        }
        let msg = e.to_string();
        Error::Syntax(msg.strip_prefix("sql parser error: ").unwrap_or(&msg).to_string())
    }
}

impl Error {
    /// The PostgreSQL SQLSTATE a client sees for this error.
    pub fn sqlstate(&self) -> &'static str {
        if self.disk_full() {
            return "53100";
        }
        match self {
            Error::Syntax(_) => "42601",
            Error::UndefinedTable(_) => "42P01",
            Error::DuplicateTable(_) => "42P07",
            Error::UndefinedSchema(_) => "3F000",
            Error::UndefinedColumn(_) => "42703",
            Error::DatatypeMismatch(_) => "42804",
            Error::InvalidParameter(_) => "22023",
            Error::FeatureNotSupported(_) => "0A000",
            Error::InvalidText(_) | Error::CopyData { .. } => "22P02",
            Error::Conflict { .. } => "40001",
            Error::ReadOnlySchema(_) | Error::DerivedTable { .. } => "42501",
            Error::Config(_) => "F0000",
            Error::ReadOnly(_) => "25006",
            Error::NoSuchVersion(_) => "22023",
            Error::VersionUnavailable { .. } => "58P01",
            Error::InvalidDatetime(_) => "22007",
            Error::InvalidLogArgument(_) => "2201E",
            Error::InvalidPowerArgument(_) => "2201F",
            Error::IntervalOutOfRange => "22008",
            Error::DivisionByZero => "22012",
            Error::CardinalityViolation => "21000",
            Error::DuplicateObject(_) => "42710",
            Error::UndefinedObject(_) => "42704",
            Error::DuplicateColumn(_) => "42701",
            Error::Canceled | Error::StatementTimeout(_) => "57014",
            Error::ClientGone => "08006",
            Error::InsufficientPrivilege(_) => "42501",
            Error::ProgramLimit(_) => "54000",
            Error::TooComplex(_) => "54001",
            Error::InvalidName(_) => "42602",
            Error::DataCorrupted(_) => "XX001",
            Error::DiskFull(_) => "53100",
            Error::InFailedTransaction => "25P02",
            Error::ActiveTransaction(_) => "25001",
            Error::NoActiveTransaction(_) => "25P01",
            Error::InvalidSavepoint(_) => "3B001",
            Error::CantChangeNow(_) => "55P02",
            Error::Internal(_) => "XX000",
            Error::DataFusion(e) => datafusion_sqlstate(e),
            Error::Delta(e) => delta_sqlstate(e),
            Error::Arrow(e) => arrow_sqlstate(e),
            Error::Io(_) | Error::ObjectStore(_) => "58030",
        }
    }

    /// Whether storage ran out of space somewhere under this error (ENOSPC from a local
    /// warehouse, wrapped by object_store, Parquet, delta-rs and DataFusion in turn).
    fn disk_full(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
                    return true;
                }
            }
            cause = e.source();
        }
        // Some layers keep only the text of what they wrap; this one is the OS's own wording.
        matches!(self, Error::DiskFull(_)) || self.to_string().contains("No space left on device")
    }

    /// The message without the layers of "Error during planning: " that DataFusion adds, and
    /// without the backtraces some libraries append (a client needs what went wrong, not where).
    pub fn message(&self) -> String {
        let full = match self {
            Error::DataFusion(e) => clean_datafusion_message(e),
            Error::Delta(d) => delta_message(d),
            other => other.to_string(),
        };
        without_backtrace(&full)
    }
}

pub(crate) fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    use datafusion::common::SchemaError;
    match e.find_root() {
        DataFusionError::SQL(_, _) => "42601",
        DataFusionError::SchemaError(e, _) if matches!(**e, SchemaError::FieldNotFound { .. }) => "42703",
        DataFusionError::SchemaError(e, _) if matches!(**e, SchemaError::AmbiguousReference { .. }) => "42702",
        DataFusionError::SchemaError(_, _) => "42P10",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::ArrowError(a, _) => arrow_sqlstate(a),
        DataFusionError::External(inner) => {
            if let Some(d) = inner.downcast_ref::<DeltaTableError>() {
                delta_sqlstate(d)
            } else if let Some(ours) = inner.downcast_ref::<Error>() {
                ours.sqlstate()
            } else {
                "XX000"
            }
        }
        DataFusionError::Plan(msg) => plan_sqlstate(msg),
        DataFusionError::Execution(msg) if msg.contains("Cast error") => "22P02",
        DataFusionError::Execution(msg) if msg.contains("Scalar subquery returned more than one row") => "21000",
        DataFusionError::Execution(msg) if msg.contains("Divide by zero") => "22012",
        DataFusionError::Execution(_) => "XX000",
        _ => "XX000",
    }
}

/// DataFusion reports most semantic errors as `Plan(String)`; the text is all there is.
fn plan_sqlstate(msg: &str) -> &'static str {
    if msg.contains("Correlated scalar subquery must be aggregated") {
        "0A000"
    } else if msg.starts_with("table '") && msg.ends_with("not found") {
        "42P01"
    } else if msg.contains("No field named") {
        "42703"
    } else if msg.contains("Invalid function") || msg.contains("function not found") {
        "42883"
    } else if msg.contains("coerce")
        || msg.contains("Cannot infer common")
        || msg.contains("does not support")
        || msg.contains("type mismatch")
        || msg.contains("Inserting query must have the same schema")
        || msg.contains("Expected")
    {
        "42804"
    } else {
        "42000"
    }
}

fn arrow_sqlstate(e: &ArrowError) -> &'static str {
    match e {
        ArrowError::CastError(_) | ArrowError::ParseError(_) | ArrowError::InvalidArgumentError(_) => "22P02",
        ArrowError::ComputeError(m) if m.contains("Overflow") || m.contains("overflow") => "22003",
        ArrowError::ArithmeticOverflow(_) => "22003",
        ArrowError::DivideByZero => "22012",
        _ => "XX000",
    }
}

fn delta_sqlstate(e: &DeltaTableError) -> &'static str {
    use deltalake::kernel::transaction::TransactionError;
    match e {
        DeltaTableError::Transaction { source } => match source {
            TransactionError::VersionAlreadyExists(_)
            | TransactionError::CommitConflict(_)
            | TransactionError::MaxCommitAttempts(_) => "40001",
            _ => "XX000",
        },
        DeltaTableError::CommitValidation { .. } => "40001",
        DeltaTableError::VersionAlreadyExists(_) => "40001",
        DeltaTableError::NotATable(_) => "42P01",
        DeltaTableError::InvalidTableLocation(_) => "42P01",
        DeltaTableError::SchemaMismatch { .. } => "42804",
        DeltaTableError::Arrow { source } => arrow_sqlstate(source),
        DeltaTableError::GenericError { source } => match source.downcast_ref::<DataFusionError>() {
            Some(d) => datafusion_sqlstate(d),
            None => "XX000",
        },
        DeltaTableError::InvalidVersion(_) | DeltaTableError::InvalidDateTimeString { .. } => "22023",
        _ => "XX000",
    }
}

pub(crate) fn delta_message(d: &DeltaTableError) -> String {
    match d {
        DeltaTableError::GenericError { source } => match source.downcast_ref::<DataFusionError>() {
            Some(df) => clean_datafusion_message(df),
            None => source.to_string(),
        },
        DeltaTableError::Transaction { source } => {
            format!("could not serialize access due to a concurrent commit: {source}")
        }
        other => other.to_string(),
    }
}

fn clean_datafusion_message(e: &DataFusionError) -> String {
    let root = e.find_root();
    let msg = match root {
        DataFusionError::Plan(m) if plan_sqlstate(m) == "42P01" => {
            // "table 'hindsight.public.x' not found" -> what Postgres says.
            let name = m.trim_start_matches("table '").trim_end_matches("' not found");
            let name = name.strip_prefix("hindsight.").unwrap_or(name);
            format!("relation \"{name}\" does not exist")
        }
        DataFusionError::NotImplemented(m) if m.starts_with("Physical plan does not support logical expression ScalarSubquery") => {
            // DataFusion prints the whole subquery's plan here; what the user needs is the rule.
            "a correlated scalar subquery is supported when it aggregates (count, max, ...) or takes the first row of \
             ORDER BY ... LIMIT 1; this one does neither (PostgreSQL would fail it too if it returned more than one row): \
             add an aggregate, or ORDER BY ... LIMIT 1"
                .to_string()
        }
        DataFusionError::Plan(m) | DataFusionError::Execution(m) | DataFusionError::NotImplemented(m) => {
            m.clone()
        }
        DataFusionError::SQL(p, _) => {
            let s = p.to_string();
            s.strip_prefix("sql parser error: ").unwrap_or(&s).to_string()
        }
        DataFusionError::External(inner) => {
            if let Some(ours) = inner.downcast_ref::<Error>() {
                ours.message()
            } else if let Some(d) = inner.downcast_ref::<DeltaTableError>() {
                delta_message(d)
            } else {
                inner.to_string()
            }
        }
        other => other.to_string(),
    };
    // DataFusion appends its backtrace hints and "caused by" chains; a person needs the first line.
    msg.trim().to_string()
}

/// A message up to the backtrace a library appended to it: delta-kernel's errors carry one
/// (`   0: buoyant_kernel::error::Error::with_backtrace ...`), DataFusion's may end with
/// `backtrace:` when built with backtraces.
fn without_backtrace(message: &str) -> String {
    let frame = |line: &str| {
        let t = line.trim_start();
        let digits = t.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && t[digits..].starts_with(": ") && line.starts_with(' ')
    };
    let mut kept: Vec<&str> = Vec::new();
    for line in message.lines() {
        let t = line.trim_start();
        if frame(line) || t.starts_with("stack backtrace:") || t.starts_with("Backtrace:") || t.starts_with("backtrace:") {
            break;
        }
        kept.push(line);
    }
    kept.join("\n").trim_end().to_string()
}

/// Wraps our error so it can travel through DataFusion's error type and come back out intact.
pub fn to_datafusion(e: Error) -> DataFusionError {
    match e {
        Error::DataFusion(d) => d,
        other => DataFusionError::External(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtraces_are_cut_from_messages() {
        let kernel = "Kernel error: Json error: unexpected 'h'\n   0: buoyant_kernel::error::Error::with_backtrace\n   1: core::ops";
        assert_eq!(without_backtrace(kernel), "Kernel error: Json error: unexpected 'h'");
        assert_eq!(without_backtrace("a\nb\n\nbacktrace: 0 x"), "a\nb");
        assert_eq!(without_backtrace("line one\n2: not a frame"), "line one\n2: not a frame");
    }
}
