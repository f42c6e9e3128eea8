//! A session: one connection's state and DataFusion context (or the CLI's, or background
//! work's).
//!
//! Owns: what is per connection (settings, user and role, `as_of`, the DataFusion context cut
//! from the engine's template), the planning pipeline every statement goes through (table
//! functions, time travel, ASOF JOIN, PostgreSQL rewrites; `sql::Planner` is its face to the
//! domain modules), and the interception of DDL and DML plans that must become Delta operations.
//! Every statement is its own commit; BEGIN/COMMIT/ROLLBACK are accepted so that drivers which
//! wrap statements in transactions work, but they group nothing.
//! Must not: know which statement is which (`commands` does, and runs them against a session),
//! or speak the wire protocol (it returns Arrow streams and tags, `wire` encodes them).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp, cast};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, Statement};

use crate::catalog::versions::{TableAt, show_time};
use crate::catalog::{self, AsOf, Block, DEFAULT_SCHEMA, HindsightTable, METADATA_SCHEMA, TableName, Warehouse, WarehouseCatalog};
use crate::copy::{CopyDecoder, CopyOptions, CopyUpload, count_of};
use crate::config::Limits;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::security::{Role, roles::plan_role};
use crate::sql::settings::{self, Settings};
use crate::sql::time_travel::{self, VersionClause};
use crate::sql::{self, CopyToSource, Planner, TransactionKind};

/// The setting that makes a session read the whole warehouse as of an instant.
pub const AS_OF: &str = "hindsight.as_of";

/// The catalog name clients see (`current_database()`).
pub const CATALOG: &str = catalog::DATABASE;

/// What running one statement produced.
pub enum Output {
    /// A result set, streamed.
    Rows(SendableRecordBatchStream),
    /// A command that reports a row count: INSERT/UPDATE/DELETE/MERGE, and SELECT for CREATE
    /// TABLE AS (as PostgreSQL tags it).
    Affected { verb: &'static str, rows: u64 },
    /// A command without rows (CREATE TABLE, SET, ...): its tag.
    Command(String),
    /// BEGIN, COMMIT and the like: the wire reports the transaction state they leave.
    Transaction(TransactionKind),
    /// COPY FROM STDIN: the connection must now feed the decoder.
    CopyIn(Box<CopyIn>),
    /// COPY TO STDOUT: rows to send as COPY data.
    CopyOut { stream: SendableRecordBatchStream, options: CopyOptions },
    /// COPY TO a server file (already confined): rows to write there, encoded as COPY TO STDOUT.
    CopyOutFile { stream: SendableRecordBatchStream, options: CopyOptions, path: std::path::PathBuf },
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows(_) => write!(f, "Rows"),
            Output::Affected { verb, rows } => write!(f, "{verb} {rows}"),
            Output::Command(t) => write!(f, "{t}"),
            Output::Transaction(k) => write!(f, "{}", k.tag()),
            Output::CopyIn(c) => write!(f, "CopyIn({})", c.table),
            Output::CopyOut { .. } => write!(f, "CopyOut"),
            Output::CopyOutFile { path, .. } => write!(f, "CopyOutFile({})", path.display()),
        }
    }
}

/// A COPY FROM STDIN waiting for its data.
pub struct CopyIn {
    pub table: TableName,
    pub columns: usize,
    pub options: CopyOptions,
    decoder: CopyDecoder,
}

/// Parameter types and result columns of a statement, for the extended protocol's Describe.
#[derive(Debug, Clone, Default)]
pub struct Description {
    pub params: Vec<Option<DataType>>,
    pub result: Option<SchemaRef>,
}

pub struct Session {
    engine: Arc<Engine>,
    ctx: SessionContext,
    settings: Arc<Settings>,
    as_of: Arc<AsOf>,
    /// The open transaction block, if any, and what it staged (`catalog::staging`).
    block: Arc<Block>,
    role: RwLock<Role>,
    /// The server's `statement_timeout`, which RESET goes back to.
    default_timeout: Option<Duration>,
    file_directories: crate::security::paths::FileDirectories,
}

impl Drop for Session {
    /// pg_catalog holds the session's catalog list, which holds our catalog, which holds
    /// pg_catalog: a cycle of `Arc`s that would keep every closed session's catalogs (and their
    /// copy of PostgreSQL's static tables) alive. Unregistering pg_catalog breaks it.
    fn drop(&mut self) {
        for catalog in self.ctx.catalog_names() {
            if let Some(catalog) = self.ctx.catalog(&catalog) {
                let _ = catalog.deregister_schema("pg_catalog", true);
            }
        }
    }
}

impl Session {
    /// An admin session without limits: for the CLI, the scheduler and the demo writer.
    pub fn admin(engine: &Arc<Engine>) -> Result<Self> {
        Self::new(engine, &Limits::default())
    }

    /// The engine's background planner (`engine::BackgroundPlanner`): an admin session.
    pub fn background(engine: &Arc<Engine>) -> Result<Arc<dyn Planner>> {
        Ok(Arc::new(Self::admin(engine)?))
    }

    /// A client's session of `engine`, within `limits`: an admin until `set_identity` says who
    /// connected.
    pub fn new(engine: &Arc<Engine>, limits: &Limits) -> Result<Self> {
        let warehouse = engine.warehouse();
        // Every statement allocates from the server's pool, and within the session's limit if
        // it has one; operators that can spill do so before failing with 53200 (`limits::memory`).
        let pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool> =
            Arc::new(crate::limits::memory::SessionPool::new(warehouse.memory_pool(), limits.memory_limit));
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_cache_manager(warehouse.file_caches())
            .with_memory_pool(pool.clone());
        let ctx = SessionContext::new_with_state(engine.session_state(runtime.build_arc()?));
        let as_of = Arc::new(AsOf::default());
        let block = Arc::new(Block::default());
        ctx.register_catalog(CATALOG, Arc::new(WarehouseCatalog::new(warehouse.clone(), as_of.clone(), block.clone())));
        crate::sql::pg_catalog::install_schema(&ctx, CATALOG)?;
        ctx.register_udtf(catalog::history::FUNCTION, Arc::new(catalog::history::HistoryFunction::new(warehouse.clone(), as_of.clone())));
        let settings = Arc::new(Settings::default());
        ctx.register_udf(settings::current_setting_udf(settings.clone()));
        ctx.register_udf(settings::session_user_udf(settings.clone()));
        // Both wrap functions already registered, with this session's pool.
        crate::limits::functions::install(&ctx, &pool);
        crate::limits::functions::install_aggregates(&ctx, &pool);
        let session = Self {
            engine: engine.clone(),
            ctx,
            settings,
            as_of,
            block,
            role: RwLock::new(Role::Admin),
            default_timeout: limits.statement_timeout,
            file_directories: limits.file_directories.clone(),
        };
        session.reset_timeout();
        Ok(session)
    }

    /// Who connected: what `session_user` reports and what they may do.
    pub fn set_identity(&self, user: &str, role: Role) {
        self.settings.set("session_user", user);
        self.settings.set("is_superuser", if role == Role::Admin { "on" } else { "off" });
        *self.role.write().unwrap_or_else(|p| p.into_inner()) = role;
    }

    pub fn role(&self) -> Role {
        *self.role.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The `statement_timeout` in force (validated when it was SET).
    pub fn statement_timeout(&self) -> Option<Duration> {
        let value = self.settings.get("statement_timeout")?;
        settings::parse_duration_ms("statement_timeout", &value).ok().flatten()
    }

    fn reset_timeout(&self) {
        let ms = self.default_timeout.map_or(0, |d| d.as_millis());
        self.settings.set("statement_timeout", ms.to_string());
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The session's transaction block.
    pub fn block(&self) -> &Arc<Block> {
        &self.block
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn warehouse(&self) -> &Arc<Warehouse> {
        self.engine.warehouse()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn default_schema(&self) -> String {
        self.ctx.state().config().options().catalog.default_schema.clone()
    }

    /// The connected user (the startup message's `user`), for what the session records.
    pub fn user(&self) -> String {
        self.settings.get("session_user").unwrap_or_else(|| catalog::DATABASE.to_string())
    }

    /// The instant `hindsight.as_of` reads the warehouse at, if set.
    pub fn as_of(&self) -> Option<DateTime<Utc>> {
        self.as_of.get()
    }

    /// Refuses a write while the session reads the past.
    pub fn check_writable(&self, what: &str) -> Result<()> {
        match self.as_of.get() {
            None => Ok(()),
            Some(t) => Err(Error::ReadOnly(format!(
                "cannot execute {what} while {AS_OF} is set to {}: the session reads the warehouse as it was then; \
                 RESET {AS_OF} to write",
                show_time(t)
            ))),
        }
    }

    /// What a statement DataFusion plans takes and returns.
    pub(crate) async fn describe_plan(&self, stmt: Statement) -> Result<Description> {
        let (plan, _) = self.plan(stmt).await?;
        let mut params: Vec<(String, Option<DataType>)> = plan.get_parameter_types()?.into_iter().collect();
        params.sort_by_key(|(k, _)| k.trim_start_matches('$').parse::<usize>().unwrap_or(usize::MAX));
        let result = match &plan {
            LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Statement(_) => None,
            p => Some(self.result_schema(p)),
        };
        Ok(Description { params: params.into_iter().map(|(_, t)| t).collect(), result })
    }

    /// `RESET name`, or `RESET ALL` for `None`.
    pub(crate) fn reset(&self, name: Option<&str>) {
        match name {
            Some(n) => {
                self.settings.reset(n);
                if n == "statement_timeout" {
                    self.reset_timeout();
                }
                if n == "search_path" {
                    self.set_default_schema(DEFAULT_SCHEMA);
                }
                if n == AS_OF {
                    self.as_of.set(None);
                }
            }
            None => {
                let user = self.user();
                self.settings.reset_all();
                self.set_identity(&user, self.role());
                self.reset_timeout();
                self.set_default_schema(DEFAULT_SCHEMA);
                self.as_of.set(None);
            }
        }
    }

    /// A server-side file COPY may read (`reading`) or write, inside `file_directories`.
    pub(crate) fn confine(&self, path: &str, reading: bool) -> Result<std::path::PathBuf> {
        self.file_directories.confine(path, reading)
    }

    /// Plans a statement against the latest table list; also returns its PARTITIONED BY columns.
    async fn plan(&self, stmt: Statement) -> Result<(LogicalPlan, Vec<String>)> {
        self.warehouse().refresh().await?;
        let (stmt, partition_by) = take_partitioning(stmt);
        let mut stmt = stmt;
        crate::features::historical::expand(self, &mut stmt, None).await?;
        crate::evaluation::drift::expand(self, &mut stmt).await?;
        crate::features::online::prepare(self, self.engine.online(), &stmt).await?;
        let mut stmt = self.resolve_versions(stmt).await?;
        sql::asof::rewrite(&mut stmt)?;
        sql::names::name_columns(&mut stmt);
        sql::semantics::rewrites::rewrite(&mut stmt)?;
        sql::subqueries::rewrite(&mut stmt);
        let plan = self.ctx.state().statement_to_plan(DFStatement::Statement(Box::new(stmt))).await?;
        if !partition_by.is_empty() && !matches!(plan, LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_))) {
            return Err(Error::FeatureNotSupported("PARTITIONED BY only applies to CREATE TABLE".into()));
        }
        Ok((plan, partition_by))
    }

    /// The schema a plan's rows will have: after the analyzer rules, which may change a
    /// column's type (integer literals are `integer`, not `bigint`; `semantics::literals`).
    /// A client decodes binary rows by the type it was told, so this, not the unanalyzed
    /// plan's schema, is what Describe reports. A plan the analyzer cannot check yet (say, a
    /// parameter without a type) falls back to the planner's schema.
    fn result_schema(&self, plan: &LogicalPlan) -> SchemaRef {
        let state = self.ctx.state();
        match state.analyzer().execute_and_check(plan.clone(), state.config_options(), |_, _| {}) {
            Ok(analyzed) => Arc::new(analyzed.schema().as_arrow().clone()),
            Err(_) => Arc::new(plan.schema().as_arrow().clone()),
        }
    }

    /// Turns `VERSION AS OF` / `TIMESTAMP AS OF` clauses into versioned table names; timestamp
    /// expressions are folded to constants here, once, before planning.
    async fn resolve_versions(&self, mut stmt: Statement) -> Result<Statement> {
        let clauses = time_travel::version_clauses(&stmt)?;
        if clauses.is_empty() {
            return Ok(stmt);
        }
        let mut resolved = Vec::with_capacity(clauses.len());
        for c in clauses {
            resolved.push(match c {
                VersionClause::Version(v) => TableAt::Version(v),
                VersionClause::Timestamp(e) => TableAt::Timestamp(self.fold_timestamp(&e).await?),
            });
        }
        time_travel::apply(&mut stmt, &resolved);
        Ok(stmt)
    }

    pub(crate) async fn execute_plan(&self, stmt: Statement, params: Option<Vec<ScalarValue>>) -> Result<Output> {
        // Refused before planning too: under as_of the target table may not have existed yet,
        // and "read-only" is the answer, not "no such table".
        if let Some(what) = writing_statement(&stmt) {
            self.check_writable(what)?;
        }
        let (mut plan, partition_by) = self.plan(stmt).await?;
        let (needed, what) = plan_role(&plan);
        self.role().check(needed, &what)?;
        if let Some(values) = params {
            plan = plan.with_param_values(values)?;
        }
        if let Some(what) = write_kind(&plan) {
            self.check_writable(&what)?;
        }
        if let LogicalPlan::Ddl(ddl) = &plan {
            if self.block.is_open() {
                return self.ddl_in_block(ddl, &partition_by).await;
            }
        }
        // Until the statement's stream exists (its operators take the batch size then).
        let _batches = self.batch_size_for(crate::limits::memory::constant_bytes(&plan));
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                let name = self.resolve(&create.name)?;
                insertable(&name)?;
                if create.or_replace {
                    return Err(Error::FeatureNotSupported("CREATE OR REPLACE TABLE is not supported; DROP it first".into()));
                }
                if create.if_not_exists && self.warehouse().exists(&name).await? {
                    return Ok(Output::Command("CREATE TABLE".into()));
                }
                let is_ctas = !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(_));
                if is_ctas {
                    let rows = self.warehouse().create_table_as(&self.ctx.state(), &name, (*create.input).clone(), &partition_by).await?;
                    Ok(Output::Affected { verb: "SELECT", rows })
                } else {
                    let schema = create.input.schema().as_arrow().clone();
                    self.warehouse().create_table(&name, &schema, &partition_by).await?;
                    Ok(Output::Command("CREATE TABLE".into()))
                }
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => {
                let name = self.resolve(&drop.name)?;
                writable_schema(&name)?;
                // A record's history goes with its files: say who dropped which version first.
                if catalog::derived_by(&name.schema).is_some() && self.warehouse().exists(&name).await? {
                    self.warehouse().record_drop(&name, &self.user()).await?;
                }
                match self.warehouse().drop_table(&name).await {
                    Err(Error::UndefinedTable(_)) if drop.if_exists => Ok(Output::Command("DROP TABLE".into())),
                    other => other.map(|_| Output::Command("DROP TABLE".into())),
                }
            }
            LogicalPlan::Ddl(other) => Err(Error::FeatureNotSupported(format!(
                "{} is not supported: hindsight keeps only Delta tables",
                other.name()
            ))),
            LogicalPlan::Dml(ref dml) => {
                // The providers refuse the writes they implement; TRUNCATE is refused here, so
                // that a record says 42501 before anything says "not supported".
                let target = self.resolve(&dml.table_name)?;
                if target.schema == METADATA_SCHEMA {
                    return Err(Error::ReadOnlySchema(METADATA_SCHEMA.into()));
                }
                catalog::refuse_derived(&target)?;
                let verb = match dml.op {
                    WriteOp::Insert(_) => "INSERT",
                    WriteOp::Update => "UPDATE",
                    WriteOp::Delete => "DELETE",
                    WriteOp::MergeInto(_) => "MERGE",
                    WriteOp::Truncate => "TRUNCATE",
                    _ => return Err(Error::FeatureNotSupported(format!("{} is not supported", dml.op))),
                };
                let truncate = matches!(dml.op, WriteOp::Truncate);
                let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
                if truncate {
                    // PostgreSQL's tag has no row count.
                    return Ok(Output::Command("TRUNCATE TABLE".into()));
                }
                Ok(Output::Affected { verb, rows: count_of(&batches) })
            }
            plan => {
                let df = self.ctx.execute_logical_plan(plan).await?;
                Ok(Output::Rows(df.execute_stream().await?))
            }
        }
    }

    /// CREATE TABLE [AS] and DROP TABLE inside a transaction block: staged like its writes,
    /// committed with them. Other DDL would take effect at once, and is refused.
    async fn ddl_in_block(&self, ddl: &DdlStatement, partition_by: &[String]) -> Result<Output> {
        match ddl {
            DdlStatement::CreateMemoryTable(create) if !create.or_replace => {
                let name = self.resolve(&create.name)?;
                insertable(&name)?;
                let exists = self.block.exists(self.warehouse(), &name).await?;
                if create.if_not_exists && exists {
                    return Ok(Output::Command("CREATE TABLE".into()));
                }
                if matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(_)) {
                    let schema = create.input.schema().as_arrow().clone();
                    self.block.create_table(self.warehouse(), &name, &schema, partition_by).await?;
                    Ok(Output::Command("CREATE TABLE".into()))
                } else {
                    let state = self.ctx.state();
                    let rows = self.block.create_table_as(self.warehouse(), &state, &name, (*create.input).clone(), partition_by).await?;
                    Ok(Output::Affected { verb: "SELECT", rows })
                }
            }
            DdlStatement::DropTable(drop) => {
                let name = self.resolve(&drop.name)?;
                writable_schema(&name)?;
                if catalog::derived_by(&name.schema).is_some() {
                    return Err(Error::ActiveTransaction(format!("DROP TABLE {name} cannot run inside a transaction block")));
                }
                match self.block.drop_table(self.warehouse(), &name).await {
                    Err(Error::UndefinedTable(_)) if drop.if_exists => Ok(Output::Command("DROP TABLE".into())),
                    other => other.map(|()| Output::Command("DROP TABLE".into())),
                }
            }
            other => Err(Error::ActiveTransaction(format!(
                "{} cannot run inside a transaction block: it would take effect at once; run it outside BEGIN ... COMMIT (autocommit)",
                other.name()
            ))),
        }
    }

    /// Runs the statement being planned in smaller batches if its constants are large
    /// (`limits::memory::batch_size_for_constants`); the session's own batch size is back when
    /// the guard is dropped.
    fn batch_size_for(&self, constants: usize) -> Option<BatchSizeGuard<'_>> {
        let current = self.ctx.state().config().options().execution.batch_size;
        let smaller = crate::limits::memory::batch_size_for_constants(constants, current.get());
        let smaller = datafusion::config::ConfigNonZeroUsize::try_new(smaller).ok().filter(|s| s.get() != current.get())?;
        self.ctx.state_ref().write().config_mut().options_mut().execution.batch_size = smaller;
        Some(BatchSizeGuard { ctx: &self.ctx, restore: current })
    }

    fn resolve(&self, name: &datafusion::common::TableReference) -> Result<TableName> {
        let schema = name.schema().map(str::to_string).unwrap_or_else(|| self.default_schema());
        Ok(TableName::new(schema, name.table()))
    }

    async fn provider(&self, name: &TableName) -> Result<HindsightTable> {
        let staged = if self.block.is_open() { self.block.table(name).await? } else { None };
        let table = match staged {
            Some(t) => t,
            None => self.warehouse().load_existing(name).await?,
        };
        HindsightTable::try_new(self.warehouse(), name.clone(), table).await
    }

    pub(crate) async fn copy_from(&self, table: &ObjectName, columns: &[String], options: CopyOptions) -> Result<Output> {
        let name = sql::table_name(table, &self.default_schema())?;
        insertable(&name)?;
        let provider = self.provider(&name).await?;
        let schema = crate::copy::copy_schema(&datafusion::datasource::TableProvider::schema(&provider));
        let decoder = CopyDecoder::new(&name, schema, columns, options.clone())?;
        let ncols = if columns.is_empty() { decoder.schema().fields().len() } else { columns.len() };
        Ok(Output::CopyIn(Box::new(CopyIn { table: name, columns: ncols, options, decoder })))
    }

    /// COPY FROM a server file: the same decoder and one-commit upload as COPY FROM STDIN.
    pub(crate) async fn copy_from_file(&self, table: &ObjectName, columns: &[String], options: CopyOptions, path: &std::path::Path) -> Result<Output> {
        use tokio::io::AsyncReadExt;
        let Output::CopyIn(copy) = self.copy_from(table, columns, options).await? else {
            return Err(Error::FeatureNotSupported("this COPY does not read data".into()));
        };
        let mut file = tokio::fs::File::open(path).await?;
        let mut upload = self.start_upload(*copy);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => upload.push(&buf[..n]).await,
                Err(e) => {
                    upload.abort().await;
                    return Err(e.into());
                }
            }
        }
        Ok(Output::Affected { verb: "COPY", rows: upload.finish().await? })
    }

    /// COPY TO a server file: the rows, for `wire` to encode exactly as COPY TO STDOUT does.
    pub(crate) async fn copy_to_file(&self, source: CopyToSource, options: CopyOptions, path: std::path::PathBuf) -> Result<Output> {
        if options.format != crate::copy::CopyFormat::Csv {
            return Err(Error::FeatureNotSupported("COPY TO a server file writes CSV only: add WITH (FORMAT csv)".into()));
        }
        let Output::CopyOut { stream, options } = self.copy_to(source, options).await? else {
            return Err(Error::FeatureNotSupported("this COPY does not produce rows".into()));
        };
        Ok(Output::CopyOutFile { stream, options, path })
    }

    /// Starts the one-commit upload for a COPY FROM STDIN that `execute` returned.
    pub fn start_upload(&self, copy: CopyIn) -> CopyUpload {
        CopyUpload::start(&self.ctx, &copy.table, copy.decoder)
    }

    pub(crate) async fn copy_to(&self, source: CopyToSource, options: CopyOptions) -> Result<Output> {
        let stream = match source {
            CopyToSource::Query(q) => match self.execute_plan(Statement::Query(q), None).await? {
                Output::Rows(s) => s,
                _ => return Err(Error::FeatureNotSupported("COPY (query) needs a query that returns rows".into())),
            },
            CopyToSource::Table { table, columns } => {
                let name = sql::table_name(&table, &self.default_schema())?;
                let provider = Arc::new(self.provider(&name).await?);
                let mut df = self.ctx.read_table(provider)?;
                if !columns.is_empty() {
                    let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
                    df = df.select_columns(&cols)?;
                }
                df.execute_stream().await?
            }
        };
        Ok(Output::CopyOut { stream, options })
    }

    pub(crate) async fn set(&self, name: &str, value: &str) -> Result<()> {
        if name == AS_OF {
            return self.set_as_of(value).await;
        }
        if let Some(df_key) = name.strip_prefix("datafusion.") {
            crate::limits::settings::check(&format!("datafusion.{}", df_key.to_ascii_lowercase()), value, self.role())?;
            self.ctx.state_ref().write().config_mut().options_mut().set(&format!("datafusion.{df_key}"), value)?;
            return Ok(());
        }
        match name {
            "search_path" => {
                let first = value.split(',').map(|s| s.trim().trim_matches('"')).find(|s| !s.is_empty() && *s != "$user");
                let schema = first.unwrap_or(DEFAULT_SCHEMA);
                if !catalog::SCHEMAS.contains(&schema) && schema != "pg_catalog" {
                    return Err(Error::UndefinedSchema(schema.to_string()));
                }
                self.set_default_schema(schema);
            }
            "statement_timeout" => {
                settings::parse_duration_ms(name, value)?;
            }
            "server_version" | "server_version_num" | "server_encoding" | "integer_datetimes" | "session_user"
            | "is_superuser" => {
                return Err(Error::InvalidParameter(format!("parameter \"{name}\" cannot be changed")));
            }
            _ => {}
        }
        self.settings.set(name, value);
        Ok(())
    }

    /// `SET hindsight.as_of = '<timestamp>'`; an empty value or DEFAULT goes back to the present.
    async fn set_as_of(&self, value: &str) -> Result<()> {
        let v = value.trim();
        if v.is_empty() || v.eq_ignore_ascii_case("default") {
            self.settings.reset(AS_OF);
            self.as_of.set(None);
            return Ok(());
        }
        let literal = datafusion::sql::sqlparser::ast::Expr::value(
            datafusion::sql::sqlparser::ast::Value::SingleQuotedString(v.to_string()),
        );
        let t = self
            .fold_timestamp(&literal)
            .await
            .map_err(|e| Error::InvalidDatetime(format!("invalid value for {AS_OF}: {}", e.message())))?;
        self.settings.set(AS_OF, show_time(t));
        self.as_of.set(Some(t));
        Ok(())
    }

    fn set_default_schema(&self, schema: &str) {
        self.ctx.state_ref().write().config_mut().options_mut().catalog.default_schema = schema.to_string();
    }
}

#[async_trait::async_trait]
impl Planner for Session {
    fn context(&self) -> &SessionContext {
        &self.ctx
    }

    fn warehouse(&self) -> &Arc<Warehouse> {
        self.engine.warehouse()
    }

    fn default_schema(&self) -> String {
        Session::default_schema(self)
    }

    fn user(&self) -> String {
        Session::user(self)
    }

    fn as_of(&self) -> Option<DateTime<Utc>> {
        self.as_of.get()
    }

    async fn plan_query(&self, stmt: Statement) -> Result<LogicalPlan> {
        Ok(self.plan(stmt).await?.0)
    }

    async fn query_schema(&self, query: Box<datafusion::sql::sqlparser::ast::Query>) -> Result<SchemaRef> {
        let plan = Box::pin(self.plan_query(Statement::Query(query))).await?;
        Ok(self.result_schema(&plan))
    }

    async fn fold_timestamp(&self, e: &datafusion::sql::sqlparser::ast::Expr) -> Result<DateTime<Utc>> {
        let bad = |m: String| {
            let m = m.rsplit(": ").next().unwrap_or(&m).to_string();
            Error::InvalidDatetime(format!("{e} is not a timestamp: {m}"))
        };
        let state = self.ctx.state();
        let expr = state
            .create_logical_expr_from_sql_expr(
                datafusion::sql::sqlparser::ast::ExprWithAlias { expr: e.clone(), alias: None },
                &datafusion::common::DFSchema::empty(),
            )
            .map_err(|d| bad(Error::from(d).message()))?;
        let expr = cast(expr, DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())));
        let batches = self
            .ctx
            .read_empty()?
            .select(vec![expr.alias("t")])?
            .collect()
            .await
            .map_err(|d| bad(Error::from(d).message()))?;
        let micros = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| b.column(0).as_primitive_opt::<datafusion::arrow::datatypes::TimestampMicrosecondType>())
            .filter(|a| !a.is_null(0))
            .map(|a| a.value(0))
            .ok_or_else(|| bad("it is NULL".into()))?;
        Utc.timestamp_micros(micros).single().ok_or_else(|| bad("out of range".into()))
    }
}

/// Puts a session's batch size back (see `Session::batch_size_for`).
struct BatchSizeGuard<'a> {
    ctx: &'a SessionContext,
    restore: datafusion::config::ConfigNonZeroUsize,
}

impl Drop for BatchSizeGuard<'_> {
    fn drop(&mut self) {
        self.ctx.state_ref().write().config_mut().options_mut().execution.batch_size = self.restore;
    }
}

/// A result held in one batch, as a row stream.
pub(crate) fn batch_output(batch: RecordBatch) -> Result<Output> {
    let schema = batch.schema();
    Ok(Output::Rows(Box::pin(MemoryStream::try_new(vec![batch], schema, None)?)))
}

/// What a statement writes, judged from its syntax (the plan is checked again after planning).
fn writing_statement(stmt: &Statement) -> Option<&'static str> {
    Some(match stmt {
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge(_) => "MERGE",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::Drop { .. } => "DROP",
        Statement::CreateView(_) => "CREATE VIEW",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::Truncate(_) => "TRUNCATE",
        _ => return None,
    })
}

/// What a plan writes, if it writes (for the read-only check under `hindsight.as_of`).
fn write_kind(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::Dml(d) => Some(match d.op {
            WriteOp::Insert(_) => "INSERT".into(),
            WriteOp::Update => "UPDATE".into(),
            WriteOp::Delete => "DELETE".into(),
            WriteOp::MergeInto(_) => "MERGE".into(),
            ref other => other.to_string(),
        }),
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_)) => Some("CREATE TABLE".into()),
        LogicalPlan::Ddl(DdlStatement::DropTable(_)) => Some("DROP TABLE".into()),
        LogicalPlan::Ddl(d) => Some(d.name().to_string()),
        LogicalPlan::Copy(_) => Some("COPY".into()),
        LogicalPlan::Analyze(a) => write_kind(&a.input),
        _ => None,
    }
}

/// Whether SQL may put rows into `name` (CREATE TABLE, COPY FROM): not into hindsight's own
/// schemas, which only DROP (by an admin), VACUUM and OPTIMIZE may touch.
fn insertable(name: &TableName) -> Result<()> {
    writable_schema(name)?;
    // A name that cannot be a table is that error (42602) first.
    catalog::storable(name)?;
    catalog::refuse_derived(name)
}

pub(crate) fn writable_schema(name: &TableName) -> Result<()> {
    if TableAt::split(&name.table).1 != TableAt::Latest {
        return Err(Error::InvalidParameter(format!(
            "\"{}\": names ending in @v<n> or @<yyyyMMddHHmmssSSS> read a table's past versions",
            name.table
        )));
    }
    if name.schema == METADATA_SCHEMA {
        return Err(Error::ReadOnlySchema(METADATA_SCHEMA.into()));
    }
    if !catalog::SCHEMAS.contains(&name.schema.as_str()) {
        return Err(Error::UndefinedSchema(name.schema.clone()));
    }
    Ok(())
}

/// `PARTITIONED BY (col, ...)` is Delta's, not DataFusion's: take it out before planning.
fn take_partitioning(stmt: Statement) -> (Statement, Vec<String>) {
    use datafusion::sql::sqlparser::ast::HiveDistributionStyle;
    match stmt {
        Statement::CreateTable(mut ct) => {
            let cols = match std::mem::replace(&mut ct.hive_distribution, HiveDistributionStyle::NONE) {
                HiveDistributionStyle::PARTITIONED { columns } => {
                    columns.iter().map(|c| sql::normalize_ident(&c.name)).collect()
                }
                _ => vec![],
            };
            (Statement::CreateTable(ct), cols)
        }
        other => (other, vec![]),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::engine::Engine;

    /// Under every name a session has the template's function, or one of its own (settings,
    /// limits), never another of the template's (which is what hash order gave).
    fn same<F: ?Sized>(template: &HashMap<String, Arc<F>>, session: &HashMap<String, Arc<F>>, kind: &str) {
        for (name, f) in template {
            let ours = session.get(name).unwrap_or_else(|| panic!("{kind} {name} is missing"));
            let other = template.values().any(|t| Arc::ptr_eq(t, ours));
            assert!(Arc::ptr_eq(f, ours) || !other, "{kind} {name} is another of the template's");
        }
    }

    #[tokio::test]
    async fn a_session_has_exactly_the_templates_functions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let warehouse = Warehouse::open(dir.path().to_str().expect("utf8")).await.expect("warehouse");
        let engine = Engine::new(warehouse, Session::background).expect("engine");
        for _ in 0..3 {
            let session = Session::admin(&engine).expect("session");
            let (template, state) = (engine.template(), session.context().state());
            same(template.scalar_functions(), state.scalar_functions(), "function");
            same(template.aggregate_functions(), state.aggregate_functions(), "aggregate");
            same(template.window_functions(), state.window_functions(), "window function");
        }
    }
}
