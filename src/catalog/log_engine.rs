//! How delta-rs reads a table's log: its own kernel engine, with reads bounded in memory.
//!
//! Owns: the log store every table is opened through (a thin wrapper over the one delta-rs
//! picks for the URL scheme) and the kernel engine it hands out; every commit passes
//! `rewrites::check` on its way to storage.
//! Must not: change what is read or written; every other call goes to delta-rs's log store.
//!
//! Why: delta-rs's default engine opens up to 1,000 log files at once, and gives each JSON
//! commit file a decoder sized for 1,000 rows of the full log schema, about 2 MiB, even though a
//! commit written by an INSERT is a few lines. Bringing a snapshot forward or writing a
//! checkpoint thus allocated and freed tens of MiB per statement, and the allocator's arenas kept
//! the high-water mark of every thread that did it: the server's memory rose through a long
//! write-heavy run while its live heap stayed near 25 MiB.

use std::num::NonZero;
use std::sync::Arc;

use async_trait::async_trait;
use buoyant_kernel::{Engine, EvaluationHandler, JsonHandler, ParquetHandler, StorageHandler};
use buoyant_kernel_engine::DefaultEngineBuilder;
use buoyant_kernel_engine::executor::TaskExecutor;
use buoyant_kernel_engine::executor::tokio::{TokioBackgroundExecutor, TokioMultiThreadExecutor};
use bytes::Bytes;
use datafusion::datasource::object_store::ObjectStoreUrl;
use deltalake::kernel::Version;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{
    CommitOrBytes, LogStore, LogStoreConfig, LogStoreFactory, LogStoreRef, StorageConfig, logstore_factories,
};
use deltalake::{DeltaResult, ObjectStore, Path};
use tokio::runtime::{Handle, RuntimeFlavor};
use url::Url;
use uuid::Uuid;

/// Log files read at once. Enough to hide a remote store's latency when a table is opened from
/// its last checkpoint (at most 99 commits after it); each costs one decoder and one file.
const FILES_AT_ONCE: usize = 16;

/// Rows per batch when decoding a JSON commit file. A decoder's buffers are sized for a whole
/// batch of the log schema up front, about 2 KiB a row; commits here are a few rows each.
const JSON_ROWS_PER_BATCH: usize = 64;

/// Routes every table opened from now on, for every URL scheme registered so far, through
/// [`BoundedLogStore`]. Call once, after registering the object store handlers.
pub fn install() {
    let factories = logstore_factories();
    let registered: Vec<_> = factories.iter().map(|entry| (entry.key().clone(), entry.value().clone())).collect();
    for (scheme, inner) in registered {
        factories.insert(scheme, Arc::new(BoundedFactory { inner }));
    }
}

struct BoundedFactory {
    inner: Arc<dyn LogStoreFactory>,
}

impl LogStoreFactory for BoundedFactory {
    fn with_options(
        &self,
        prefixed_store: Arc<dyn ObjectStore>,
        root_store: Arc<dyn ObjectStore>,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        let inner = self.inner.with_options(prefixed_store, root_store, location, options)?;
        Ok(Arc::new(BoundedLogStore { inner }))
    }
}

/// delta-rs's log store for the table, except that [`LogStore::engine`] bounds its reads.
struct BoundedLogStore {
    inner: LogStoreRef,
}

#[async_trait]
impl LogStore for BoundedLogStore {
    fn engine(&self, operation_id: Option<Uuid>) -> Arc<dyn Engine> {
        bounded_engine(self.inner.root_object_store(operation_id))
    }

    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<Bytes>> {
        self.inner.read_commit_entry(version).await
    }

    async fn write_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        super::rewrites::check(self.inner.as_ref(), version, &commit_or_bytes).await?;
        self.inner.write_commit_entry(version, commit_or_bytes, operation_id).await
    }

    async fn abort_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner.abort_commit_entry(version, commit_or_bytes, operation_id).await
    }

    async fn get_latest_version(&self, start_version: Version) -> DeltaResult<Version> {
        self.inner.get_latest_version(start_version).await
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation_id)
    }

    fn root_object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation_id)
    }

    fn to_uri(&self, location: &Path) -> String {
        self.inner.to_uri(location)
    }

    fn root_url(&self) -> &Url {
        self.inner.root_url()
    }

    fn log_path(&self) -> &Path {
        self.inner.log_path()
    }

    fn transaction_url(&self, operation_id: Option<Uuid>) -> DeltaResult<Url> {
        self.inner.transaction_url(operation_id)
    }

    async fn is_delta_table_location(&self) -> DeltaResult<bool> {
        self.inner.is_delta_table_location().await
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }

    fn object_store_url(&self) -> ObjectStoreUrl {
        self.inner.object_store_url()
    }
}

/// delta-rs's default engine with [`FILES_AT_ONCE`], and small batches for JSON only: a
/// checkpoint is one Parquet file of every live file's row, where large batches pay off.
fn bounded_engine(store: Arc<dyn ObjectStore>) -> Arc<dyn Engine> {
    let handle = Handle::current();
    match handle.runtime_flavor() {
        RuntimeFlavor::CurrentThread => engine_on(store, Arc::new(TokioBackgroundExecutor::new())),
        _ => engine_on(store, Arc::new(TokioMultiThreadExecutor::new(handle))),
    }
}

fn engine_on<E: TaskExecutor>(store: Arc<dyn ObjectStore>, executor: Arc<E>) -> Arc<dyn Engine> {
    let files_at_once = NonZero::new(FILES_AT_ONCE).expect("a positive constant");
    let json_rows = NonZero::new(JSON_ROWS_PER_BATCH).expect("a positive constant");
    let default = DefaultEngineBuilder::new(store.clone())
        .with_task_executor(executor.clone())
        .with_buffer_size(files_at_once)
        .build();
    let small_batches = DefaultEngineBuilder::new(store)
        .with_task_executor(executor)
        .with_buffer_size(files_at_once)
        .with_batch_size(json_rows)
        .build();
    let json = Arc::new(NoEmptyCommits { inner: small_batches.json_handler() });
    Arc::new(BoundedEngine { default: Arc::new(default), json })
}

/// The JSON reader, refusing a commit file of 0 bytes. Every Delta commit holds at least one
/// action; an empty file is a torn write (or someone's `touch`), and delta-rs's reader would
/// take it for a commit that changed nothing and go on, as if the table were whole.
struct NoEmptyCommits {
    inner: Arc<dyn JsonHandler>,
}

impl JsonHandler for NoEmptyCommits {
    fn parse_json(
        &self,
        json_strings: Box<dyn buoyant_kernel::EngineData>,
        output_schema: buoyant_kernel::schema::SchemaRef,
    ) -> buoyant_kernel::DeltaResult<Box<dyn buoyant_kernel::EngineData>> {
        self.inner.parse_json(json_strings, output_schema)
    }

    fn read_json_files(
        &self,
        files: &[buoyant_kernel::FileMeta],
        physical_schema: buoyant_kernel::schema::SchemaRef,
        predicate: Option<buoyant_kernel::expressions::PredicateRef>,
    ) -> buoyant_kernel::DeltaResult<buoyant_kernel::FileDataReadResultIterator> {
        if let Some(empty) = files.iter().find(|f| f.size == 0 && f.location.path().contains("/_delta_log/")) {
            return Err(buoyant_kernel::Error::generic(format!("the log entry {} is empty (0 bytes)", empty.location)));
        }
        self.inner.read_json_files(files, physical_schema, predicate)
    }

    fn write_json_file(
        &self,
        path: &Url,
        data: buoyant_kernel::DeltaResultIterator<'_, buoyant_kernel::FilteredEngineData>,
        overwrite: bool,
    ) -> buoyant_kernel::DeltaResult<buoyant_kernel::FileSize> {
        self.inner.write_json_file(path, data, overwrite)
    }
}

struct BoundedEngine {
    default: Arc<dyn Engine>,
    json: Arc<dyn JsonHandler>,
}

impl Engine for BoundedEngine {
    fn evaluation_handler(&self) -> Arc<dyn EvaluationHandler> {
        self.default.evaluation_handler()
    }

    fn storage_handler(&self) -> Arc<dyn StorageHandler> {
        self.default.storage_handler()
    }

    fn json_handler(&self) -> Arc<dyn JsonHandler> {
        self.json.clone()
    }

    fn parquet_handler(&self) -> Arc<dyn ParquetHandler> {
        self.default.parquet_handler()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::BoundedLogStore;
    use crate::catalog::versions::TableAt;
    use crate::catalog::{TableName, Warehouse};

    /// Whether delta-rs opens a table fresh, brings a cached one forward or goes back in time,
    /// it reads the log through the bounded engine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_way_of_opening_a_table_reads_through_the_bounded_engine() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let name = TableName::new("public", "t");
        let schema = Schema::new(vec![Field::new("x", DataType::Int64, true)]);
        let created = warehouse.create_table(&name, &schema, &[]).await.unwrap();
        let fresh = warehouse.load_existing(&name).await.unwrap();
        let cached = warehouse.load_existing(&name).await.unwrap();
        let past = warehouse.load_at(&name, TableAt::Version(0)).await.unwrap().unwrap();
        for table in [created, fresh, cached, past] {
            assert!(table.log_store().as_any().is::<BoundedLogStore>(), "{}", table.log_store().name());
        }
    }
}
