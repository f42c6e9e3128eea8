//! The warehouse: a root URL under which `<schema>/<table>/` is one Delta table.
//!
//! Owns: locating, listing, creating, opening and dropping Delta tables, and exposing them to
//! DataFusion as a catalog (`schema.rs`) of table providers (`table.rs`) that can also be written.
//! Must not: know about the wire protocol, sessions or SQL text.
//!
//! Every statement opens the latest committed version of each table it names, so tables written
//! by another server on the same warehouse are visible at once, and one statement sees one
//! version per table. Across statements we keep only the list of table names and each table's
//! latest snapshot (`snapshots.rs`), which an open brings forward by the commits since.

mod blocks;
mod commits;
mod compaction;
mod corruption;
pub mod history;
mod information_schema;
mod log_engine;
pub mod metadata;
mod pg_types;
mod predicates;
mod rewrites;
mod schema;
mod sink;
mod snapshots;
mod staging;
mod table;
pub mod versions;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use deltalake::DeltaTable;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};

/// The one database (DataFusion catalog) a server has: what clients connect to and
/// `current_database()` says.
pub const DATABASE: &str = "hindsight";

pub use compaction::{AutoCompact, DEFAULT_AUTO_COMPACT_FILES, OptimizeReport};
pub use pg_types::{pg_type, pg_type_name};
pub use schema::{AsOf, WarehouseCatalog, WarehouseSchema};
pub use sink::OneShotStream;
pub use staging::{Block, Ended};
pub use table::HindsightTable;

/// The schemas every warehouse has. `hindsight` holds our own metadata and is read-only to SQL.
pub const SCHEMAS: [&str; 4] = ["public", "hindsight", "datasets", "eval"];
pub const DEFAULT_SCHEMA: &str = "public";
pub const METADATA_SCHEMA: &str = "hindsight";

/// Schemas whose tables hindsight alone writes: `datasets`, by CREATE DATASET (the rows its
/// hash recorded), and `eval`, by evaluation runs (the history of a model's quality). SQL may
/// read them and, as an admin, drop them (logged in `hindsight.drops`); any other write would
/// rewrite what an audit relies on. The writers themselves go through `Warehouse`, not SQL.
pub fn derived_by(schema: &str) -> Option<&'static str> {
    match schema {
        "datasets" => Some("CREATE DATASET"),
        "eval" => Some("evaluation runs"),
        _ => None,
    }
}

/// Refuses any SQL write into a table of a `derived_by` schema (42501).
pub fn refuse_derived(name: &TableName) -> Result<()> {
    match derived_by(&name.schema) {
        Some(writer) => Err(Error::DerivedTable { table: name.to_string(), writer }),
        None => Ok(()),
    }
}

/// Default time-travel retention: seven years, so that an auditor can ask about old decisions.
pub const DEFAULT_RETENTION_DAYS: u64 = 2557;

/// A warehouse of Delta tables under one root URL.
#[derive(Debug)]
pub struct Warehouse {
    root: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    storage_options: HashMap<String, String>,
    /// `delta.logRetentionDuration` and `delta.deletedFileRetentionDuration` of every new table.
    retention: String,
    /// Table names per schema, refreshed from storage before each statement (see `refresh`).
    names: schema::NameCache,
    snapshots: snapshots::Snapshots,
    /// DataFusion's caches of Parquet footers and file statistics, shared by every session
    /// over this warehouse (see `file_caches`).
    file_caches: Arc<CacheManager>,
    /// One writer per table at a time within this server (see `commits::WriteLocks`).
    write_locks: Arc<commits::WriteLocks>,
    /// When writes compact the small files they leave behind (see `compaction`).
    auto_compact: Arc<AutoCompact>,
    /// The memory pool every session's statements over this warehouse share
    /// (`limits::memory`).
    memory_pool: std::sync::RwLock<Arc<dyn datafusion::execution::memory_pool::MemoryPool>>,
}

/// A table's place in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

impl TableName {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self { schema: schema.into(), table: table.into() }
    }

    /// A name as the metadata tables store it, `schema.table`; a bare name is in `default_schema`.
    pub fn from_qualified(text: &str, default_schema: &str) -> Self {
        match text.split_once('.') {
            Some((schema, table)) => Self::new(schema, table),
            None => Self::new(default_schema, text),
        }
    }
}

impl Warehouse {
    /// Opens (and for a local path, creates) the warehouse at `location`: a path or a URL.
    pub async fn open(location: &str) -> Result<Arc<Self>> {
        Self::open_with_retention(location, DEFAULT_RETENTION_DAYS).await
    }

    /// Opens the warehouse; tables it creates keep `retention_days` of history for time travel.
    pub async fn open_with_retention(location: &str, retention_days: u64) -> Result<Arc<Self>> {
        register_object_stores();
        let root = root_url(location)?;
        let storage_options = HashMap::new();
        // delta-rs's own factories, so that listing and table access use the same stores (and
        // the same credentials) for every URL scheme; the store is rooted at the warehouse.
        let store = deltalake::logstore::store_for(&root, storage_options.iter())
            .map_err(|e| Error::Config(format!("warehouse {root}: {e}")))?;
        let write_locks = Arc::new(commits::WriteLocks::default());
        let warehouse = Arc::new(Self {
            root,
            store,
            prefix: Path::default(),
            storage_options,
            retention: format!("interval {retention_days} days"),
            names: Default::default(),
            snapshots: Default::default(),
            file_caches: CacheManager::try_new(&file_cache_config())?,
            auto_compact: Arc::new(AutoCompact::new(DEFAULT_AUTO_COMPACT_FILES, write_locks.clone())),
            write_locks,
            memory_pool: std::sync::RwLock::new(crate::limits::memory::server_pool(
                crate::limits::memory::default_pool_bytes(),
            )),
        });
        warehouse.ensure_metadata_tables().await?;
        warehouse.recover_blocks().await?;
        warehouse.refresh().await?;
        Ok(warehouse)
    }

    /// The cache configuration every session's DataFusion runtime over this warehouse uses.
    pub fn file_caches(&self) -> CacheManagerConfig {
        file_cache_config()
            .with_file_metadata_cache(Some(self.file_caches.get_file_metadata_cache()))
            .with_file_statistics_cache(self.file_caches.get_file_statistic_cache())
    }

    /// The pool sessions opened from now on allocate from.
    pub fn memory_pool(&self) -> Arc<dyn datafusion::execution::memory_pool::MemoryPool> {
        self.memory_pool.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sizes the server's memory pool; sessions already open keep the pool they had.
    pub fn set_memory_pool_bytes(&self, bytes: usize) {
        *self.memory_pool.write().unwrap_or_else(|p| p.into_inner()) = crate::limits::memory::server_pool(bytes);
    }

    /// Background compaction after writes; `set_min_files(0)` turns it off.
    pub fn auto_compact(&self) -> &Arc<AutoCompact> {
        &self.auto_compact
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The retention properties every table the warehouse creates gets.
    pub fn retention_properties(&self) -> [(&'static str, Option<&str>); 2] {
        [
            ("delta.logRetentionDuration", Some(self.retention.as_str())),
            ("delta.deletedFileRetentionDuration", Some(self.retention.as_str())),
        ]
    }

    /// Where a table lives, as the URL delta-rs opens. With `table_prefix`, the only places a
    /// name becomes a storage location, and both go through [`storable`].
    pub fn table_url(&self, name: &TableName) -> Result<Url> {
        storable(name)?;
        self.root
            .join(&format!("{}/{}/", name.schema, name.table))
            .map_err(|e| Error::InvalidName(format!("table {name} has no location in the warehouse: {e}")))
    }

    /// Held by a statement that makes `name` in several steps (CREATE DATASET: the rows, then
    /// the registry row), so that no other statement of this server sees it half made. The
    /// same lock as the table's writers take.
    pub async fn creation_lock(&self, name: &TableName) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        Ok(self.write_locks.url(self.table_url(name)?.as_str()).await)
    }

    /// The location for a new table. delta-rs wants a local folder to exist before it writes.
    pub fn new_table_url(&self, name: &TableName) -> Result<Url> {
        let url = self.table_url(name)?;
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                std::fs::create_dir_all(path)?;
            }
        }
        Ok(url)
    }

    /// Where a table lives, as a path in the warehouse's object store.
    fn table_prefix(&self, name: &TableName) -> Result<Path> {
        storable(name)?;
        // Parsed, not joined: `join` percent-encodes every non-ASCII byte, which the local store
        // then takes literally, so `"名前"` was created in one folder and looked up in another.
        // `storable` leaves nothing in the name that a path would read as structure.
        Path::parse(format!("{}/{}", name.schema, name.table))
            .map(|p| self.prefix.parts().chain(p.parts()).collect())
            .map_err(|e| Error::InvalidName(format!("table {name} has no path in the warehouse: {e}")))
    }

    /// Re-reads the table names of every schema from storage.
    pub async fn refresh(&self) -> Result<()> {
        for schema in SCHEMAS {
            let names = self.list_tables(schema).await?;
            self.names.set(schema, names);
        }
        Ok(())
    }

    /// Table names cached by the last `refresh`, for DataFusion's synchronous catalog calls.
    pub fn cached_table_names(&self, schema: &str) -> Vec<String> {
        self.names.get(schema)
    }

    /// Lists the tables of a schema: the folders under it that hold a `_delta_log`.
    pub async fn list_tables(&self, schema: &str) -> Result<Vec<String>> {
        let dir = self.prefix.clone().join(schema);
        let listing = match self.store.list_with_delimiter(Some(&dir)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        let mut names = Vec::new();
        for folder in listing.common_prefixes {
            let Some(name) = folder.filename() else { continue };
            if matches!(self.has_log(&folder).await, Ok(true)) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    pub async fn exists(&self, name: &TableName) -> Result<bool> {
        match self.table_prefix(name) {
            Ok(prefix) => self.has_log(&prefix).await,
            // A name that cannot be stored names no table.
            Err(Error::InvalidName(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn has_log(&self, table_dir: &Path) -> Result<bool> {
        Ok(!matches!(self.log_state(table_dir).await?, LogState::Missing))
    }

    /// A folder is a Delta table when its `_delta_log` holds at least one entry. The first
    /// commit is looked up by name, because listing a log of thousands of commits on every
    /// statement would cost more than the statement; only a table whose first commit was
    /// cleaned up (log retention) needs the listing.
    async fn log_state(&self, table_dir: &Path) -> Result<LogState> {
        let log = table_dir.clone().join("_delta_log");
        match self.store.head(&log.clone().join("00000000000000000000.json")).await {
            Ok(meta) => {
                return Ok(LogState::FirstCommit(snapshots::Incarnation {
                    modified: meta.last_modified,
                    e_tag: meta.e_tag,
                    size: meta.size,
                }));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match self.store.list_with_delimiter(Some(&log)).await {
            Ok(l) if !l.objects.is_empty() => Ok(LogState::Cleaned),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(LogState::Missing),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the latest version of a table, or `None` if there is no such table.
    pub async fn load(&self, name: &TableName) -> Result<Option<DeltaTable>> {
        if !SCHEMAS.contains(&name.schema.as_str()) {
            return Err(Error::UndefinedSchema(name.schema.clone()));
        }
        let prefix = match self.table_prefix(name) {
            Ok(p) => p,
            Err(Error::InvalidName(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let incarnation = match self.log_state(&prefix).await? {
            LogState::Missing => {
                self.snapshots.forget(name);
                return Ok(None);
            }
            LogState::FirstCommit(i) => Some(i),
            // Without its first commit a table cannot be told from a newer one of that name.
            LogState::Cleaned => None,
        };
        let cached = incarnation.as_ref().and_then(|i| self.snapshots.get(name, i));
        let cached = match cached {
            // Boxed, like the open below: delta-rs's futures are large, and `load` is awaited
            // deep inside statements.
            Some(mut cached) => match Box::pin(cached.table.update_incremental(None)).await {
                Ok(()) => Some(cached),
                // The cached state could not be brought forward (its log was cleaned up under
                // it, say): open the table afresh.
                Err(e) => {
                    tracing::debug!(table = %name, error = %e, "reopening a table from its checkpoint");
                    None
                }
            },
            None => None,
        };
        let cached = match cached {
            Some(cached) => cached,
            None => {
                let url = self.table_url(name)?;
                let table = match Box::pin(deltalake::open_table_with_storage_options(url, self.storage_options.clone())).await {
                    Ok(t) => t,
                    Err(e) => return Err(self.unreadable(name, e).await),
                };
                snapshots::Cached { opened_at: table.version().unwrap_or(0), table }
            }
        };
        let table = cached.table.clone();
        match incarnation {
            Some(i) => self.snapshots.put(name, i, cached),
            None => self.snapshots.forget(name),
        }
        Ok(Some(table))
    }

    /// Opens a table that must exist.
    pub async fn load_existing(&self, name: &TableName) -> Result<DeltaTable> {
        self.load(name).await?.ok_or_else(|| Error::UndefinedTable(name.to_string()))
    }

    /// Creates an empty Delta table. The Arrow schema is normalised to types Delta can store.
    pub async fn create_table(
        &self,
        name: &TableName,
        schema: &Schema,
        partition_columns: &[String],
    ) -> Result<DeltaTable> {
        if self.exists(name).await? {
            return Err(Error::DuplicateTable(name.to_string()));
        }
        let url = self.new_table_url(name)?;
        let table = DeltaTable::try_from_url_with_storage_options(url, self.storage_options.clone()).await?;
        let table = match self.create_empty(table, name, schema, partition_columns).await {
            Ok(t) => t,
            // delta-rs's "table already exists" has no public type; the table being there says it.
            Err(_) if self.exists(name).await.unwrap_or(false) => return Err(Error::DuplicateTable(name.to_string())),
            Err(e) => return Err(e),
        };
        self.names.add(&name.schema, &name.table);
        Ok(table)
    }

    /// Writes the first commit of an empty table into `table`'s log (the table's own, or a
    /// transaction block's staged one).
    pub(super) async fn create_empty(
        &self,
        table: DeltaTable,
        name: &TableName,
        schema: &Schema,
        partition_columns: &[String],
    ) -> Result<DeltaTable> {
        if !SCHEMAS.contains(&name.schema.as_str()) {
            return Err(Error::UndefinedSchema(name.schema.clone()));
        }
        for p in partition_columns {
            if schema.field_with_name(p).is_err() {
                return Err(Error::UndefinedColumn(format!(
                    "partition column \"{p}\" is not a column of {name}"
                )));
            }
        }
        if !partition_columns.is_empty() && partition_columns.len() >= schema.fields().len() {
            return Err(Error::FeatureNotSupported(
                "PARTITIONED BY must leave at least one column that is not a partition column".into(),
            ));
        }
        let schema = delta_compatible_schema(schema);
        let kernel: StructType = schema.as_ref().try_into_kernel().map_err(|e| {
            Error::FeatureNotSupported(format!("a column type of {name} cannot be stored in Delta: {e}"))
        })?;
        table
            .create()
            .with_table_name(name.table.clone())
            .with_columns(kernel.fields().cloned())
            .with_partition_columns(partition_columns.iter().cloned())
            .with_configuration(self.retention_properties())
            .await
            .map_err(|e| match e {
                // Two servers racing to create the same table: the loser sees the first commit.
                deltalake::DeltaTableError::Transaction { .. }
                | deltalake::DeltaTableError::VersionAlreadyExists(_) => {
                    Error::DuplicateTable(name.to_string())
                }
                other => other.into(),
            })
    }

    /// CREATE TABLE ... AS SELECT: the table and its rows appear in one Delta commit.
    pub async fn create_table_as(
        &self,
        state: &datafusion::execution::SessionState,
        name: &TableName,
        input: datafusion::logical_expr::LogicalPlan,
        partition_by: &[String],
    ) -> Result<u64> {
        if self.exists(name).await? {
            return Err(Error::DuplicateTable(name.to_string()));
        }
        let url = self.new_table_url(name)?;
        let table = deltalake::DeltaTable::try_from_url(url).await?;
        self.write_new(table, state, name, input, partition_by).await
    }

    /// Writes a new table's first commit, with the rows of `input`, into `table`'s log.
    pub(super) async fn write_new(
        &self,
        table: DeltaTable,
        state: &datafusion::execution::SessionState,
        name: &TableName,
        input: datafusion::logical_expr::LogicalPlan,
        partition_by: &[String],
    ) -> Result<u64> {
        let input = delta_projection(input)?;
        let state = Arc::new(state.clone());
        let written = table
            .write(vec![])
            .with_input_plan(input)
            .with_session_state(state)
            .with_table_name(name.table.clone())
            .with_partition_columns(partition_by.iter().cloned())
            .with_save_mode(deltalake::protocol::SaveMode::ErrorIfExists)
            .with_configuration(self.retention_properties())
            .await?;
        let rows = written
            .snapshot()
            .ok()
            .and_then(|s| s.log_data().iter().map(|f| f.num_records()).sum::<Option<usize>>())
            .unwrap_or(0);
        Ok(rows as u64)
    }

    /// Drops a table: removes its log first (so it stops being a table at once), then its data.
    pub async fn drop_table(&self, name: &TableName) -> Result<()> {
        self.drop_table_keeping(name, &std::collections::HashSet::new()).await
    }

    /// Drops a table but for the data files in `keep` (paths relative to the table): those of
    /// a table a transaction block creates in its place, written before the drop.
    pub(super) async fn drop_table_keeping(&self, name: &TableName, keep: &std::collections::HashSet<String>) -> Result<()> {
        if !self.exists(name).await? {
            return Err(Error::UndefinedTable(name.to_string()));
        }
        let prefix = self.table_prefix(name)?;
        for sub in [Some("_delta_log"), None] {
            let p = match sub {
                Some(s) => prefix.clone().join(s),
                None => prefix.clone(),
            };
            let table_dir = prefix.clone();
            let keep = keep.clone();
            let locations = self
                .store
                .list(Some(&p))
                .map_ok(|m| m.location)
                .try_filter(move |l| {
                    let relative: Vec<String> = l.prefix_match(&table_dir).map(|parts| parts.map(|p| p.as_ref().to_string()).collect()).unwrap_or_default();
                    let relative = percent_encoding::percent_decode_str(&relative.join("/")).decode_utf8_lossy().into_owned();
                    futures::future::ready(!keep.contains(&relative))
                })
                .boxed();
            self.store.delete_stream(locations).try_collect::<Vec<_>>().await?;
        }
        self.names.remove(&name.schema, &name.table);
        self.snapshots.forget(name);
        Ok(())
    }
}

/// The longest name a table may have: a folder name, in bytes, on common file systems.
const MAX_NAME_BYTES: usize = 255;

/// Refuses a table name that cannot be one folder of its schema's folder (42602), and a schema
/// that is not one of the warehouse's.
///
/// Names become folders and URL path segments as they are, so `"../x"` would have left the
/// warehouse, `"x#y"` would have been cut at the `#` of a URL fragment, and `"a/b"` would have
/// nested one table in another. A name may hold letters and digits of any script, spaces,
/// `_`, `-`, `$` and `@` (the last for time travel's `t@v12`), and may not begin with a dot.
pub fn storable(name: &TableName) -> Result<()> {
    if !SCHEMAS.contains(&name.schema.as_str()) {
        return Err(Error::UndefinedSchema(name.schema.clone()));
    }
    let t = name.table.as_str();
    let why = if t.is_empty() {
        Some("it is empty".to_string())
    } else if t.len() > MAX_NAME_BYTES {
        Some(format!("it is {} bytes long, over {MAX_NAME_BYTES}", t.len()))
    } else if t.starts_with('.') {
        Some("it begins with a dot".to_string())
    } else {
        t.chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | '@' | ' ')))
            .map(|c| format!("it contains {c:?}; a table name may hold letters, digits, spaces, _, -, $ and @"))
    };
    match why {
        Some(why) => Err(Error::InvalidName(format!("invalid table name \"{t}\" in schema {}: {why}", name.schema))),
        None => Ok(()),
    }
}

enum LogState {
    Missing,
    FirstCommit(snapshots::Incarnation),
    /// A table whose first commit log retention has removed.
    Cleaned,
}

/// DataFusion keeps a Parquet footer cache (50 MiB) and a file statistics cache (20 MiB) per
/// runtime. Per session, as DataFusion would have it, a server with 64 connections could hold
/// 64 copies of every footer: its memory grew with every file written and read. One set per
/// warehouse bounds them once and lets a footer read by one connection serve all. Delta's data
/// files never change under a name, and the caches check size and modification time anyway.
/// The listing cache stays off: it never expires, and external tables must see new files.
fn file_cache_config() -> CacheManagerConfig {
    CacheManagerConfig::default().with_list_files_cache_limit(0)
}

/// Maps a path or URL to the warehouse root URL, with a trailing slash so that `join` nests.
fn root_url(location: &str) -> Result<Url> {
    let mut url = match Url::parse(location) {
        Ok(u) if u.scheme().len() > 1 => u,
        _ => {
            let path = std::path::Path::new(location);
            std::fs::create_dir_all(path)
                .map_err(|e| Error::Config(format!("cannot create warehouse folder {location}: {e}")))?;
            let abs = std::fs::canonicalize(path)?;
            Url::from_directory_path(&abs)
                .map_err(|_| Error::Config(format!("warehouse path {location} is not absolute")))?
        }
    };
    if url.scheme() == "file" {
        if let Ok(p) = url.to_file_path() {
            std::fs::create_dir_all(&p)?;
        }
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// Once per process: registering a handler again would replace the log engine's wrapper.
fn register_object_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(feature = "s3")]
        deltalake::aws::register_handlers(None);
        #[cfg(feature = "gcs")]
        deltalake::gcp::register_handlers(None);
        #[cfg(feature = "azure")]
        deltalake::azure::register_handlers(None);
        log_engine::install();
    });
}

/// Projects a plan's columns to the types Delta stores, keeping their names.
pub fn delta_projection(input: datafusion::logical_expr::LogicalPlan) -> Result<datafusion::logical_expr::LogicalPlan> {
    use datafusion::logical_expr::{LogicalPlanBuilder, cast, col};
    let target = delta_compatible_schema(input.schema().as_arrow());
    let exprs = input
        .schema()
        .fields()
        .iter()
        .zip(target.fields())
        .map(|(f, t)| cast(col(datafusion::common::Column::new_unqualified(f.name())), t.data_type().clone()).alias(f.name()))
        .collect::<Vec<_>>();
    Ok(LogicalPlanBuilder::from(input).project(exprs)?.build()?)
}

/// Delta stores fewer types than Arrow: strings are plain UTF-8, timestamps are microseconds,
/// integers are signed, zoned timestamps are UTC. Anything else DataFusion produces is widened to the nearest Delta type.
pub fn delta_compatible_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(delta_type(f.data_type())))
        .collect();
    Arc::new(Schema::new(fields))
}

fn delta_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => DataType::Binary,
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        // Delta's `timestamp` is an instant, which Arrow spells with any zone: Delta wants "UTC".
        DataType::Timestamp(_, Some(_)) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Date64 => DataType::Date32,
        DataType::Dictionary(_, v) => delta_type(v),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::LargeListView(f) => {
            DataType::List(Arc::new(f.as_ref().clone().with_data_type(delta_type(f.data_type()))))
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(delta_type(f.data_type())))
                .collect(),
        ),
        DataType::Null => DataType::Utf8,
        other => other.clone(),
    }
}
