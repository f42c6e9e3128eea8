//! Writes inside `BEGIN ... COMMIT`: each table a block writes gets a log of its own, in memory,
//! on top of the table's real log; its data files go to storage as usual, unreferenced.
//!
//! Owns: the staged log (an object store that keeps every file under one table's `_delta_log`
//! in memory and hides the real log's commits after the version the block started from), the
//! tables a block has staged, and savepoints over them.
//! Must not: commit anything to a real log (`blocks` does, at COMMIT), or know about sessions.
//!
//! Why an object store and not a list of actions: every delta-rs operation (write, delete,
//! update, merge) runs unchanged against a table opened over the staged log, and so does every
//! read; a statement inside the block reads the block's own writes because its table's log says
//! so. Until COMMIT nothing names the new data files, so a ROLLBACK, a dropped connection or a
//! killed server leaves only files that no version references (VACUUM removes them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use datafusion::arrow::datatypes::Schema;

use super::{TableName, Warehouse};
use crate::error::{Error, Result};

/// One table's log as a block sees it: the real log up to `base`, then the block's own commits.
#[derive(Debug)]
pub struct StagedLog {
    real: Arc<dyn ObjectStore>,
    staged: Arc<InMemory>,
    /// `<table>/_delta_log` as a path of the root store.
    log_dir: Path,
    /// The version the block started from; `None` for a table the block created.
    base: Option<u64>,
}

impl fmt::Display for StagedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StagedLog({}, over {})", self.log_dir, self.real)
    }
}

impl StagedLog {
    fn new(real: Arc<dyn ObjectStore>, log_dir: Path, base: Option<u64>) -> Self {
        Self { real, staged: Arc::new(InMemory::new()), log_dir, base }
    }

    fn in_log(&self, path: &Path) -> bool {
        path.prefix_matches(&self.log_dir)
    }

    /// A real log file the block must not see: a commit or checkpoint after `base` (another
    /// writer's, since the block began), and the `_last_checkpoint` hint, which may point past it.
    fn hidden(&self, path: &Path) -> bool {
        if !self.in_log(path) {
            return false;
        }
        let Some(base) = self.base else { return true };
        let name = path.filename().unwrap_or_default();
        match log_version(name) {
            Some(v) => v > base,
            None => name == "_last_checkpoint",
        }
    }

    /// The block's commits, oldest first, as Delta actions.
    pub async fn commits(&self) -> Result<Vec<Vec<Action>>> {
        let mut files: Vec<(u64, Path)> = self
            .staged
            .list(Some(&self.log_dir))
            .try_filter_map(|m| async move {
                let name = m.location.filename().unwrap_or_default();
                Ok((name.len() == 25 && name.ends_with(".json")).then(|| log_version(name).map(|v| (v, m.location.clone()))).flatten())
            })
            .try_collect()
            .await?;
        files.sort();
        let mut commits = Vec::new();
        for (_, path) in files {
            let bytes = self.staged.get(&path).await?.bytes().await?;
            let mut actions = Vec::new();
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                actions.push(serde_json::from_slice::<Action>(line).map_err(|e| Error::Internal(format!("a staged commit of {path} cannot be read: {e}")))?);
            }
            commits.push(actions);
        }
        Ok(commits)
    }

    pub fn base(&self) -> Option<u64> {
        self.base
    }

    /// Everything staged, to put back on ROLLBACK TO SAVEPOINT.
    async fn save(&self) -> Result<Vec<(Path, bytes::Bytes)>> {
        let metas: Vec<ObjectMeta> = self.staged.list(None).try_collect().await?;
        let mut files = Vec::new();
        for m in metas {
            files.push((m.location.clone(), self.staged.get(&m.location).await?.bytes().await?));
        }
        Ok(files)
    }

    async fn restore(&self, files: &[(Path, bytes::Bytes)]) -> Result<()> {
        let now: Vec<Path> = self.staged.list(None).map_ok(|m| m.location).try_collect().await?;
        for p in now {
            self.staged.delete(&p).await?;
        }
        for (p, b) in files {
            self.staged.put(p, b.clone().into()).await?;
        }
        Ok(())
    }
}

/// The version a log file belongs to: the number its name starts with.
fn log_version(name: &str) -> Option<u64> {
    let digits = name.get(..20)?;
    digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok()).flatten()
}

#[async_trait]
impl ObjectStore for StagedLog {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        if !self.in_log(location) {
            return self.real.put_opts(location, payload, opts).await;
        }
        if matches!(opts.mode, PutMode::Create) && !self.hidden(location) && self.real.head(location).await.is_ok() {
            return Err(object_store::Error::AlreadyExists { path: location.to_string(), source: "in the table's log".into() });
        }
        self.staged.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        if self.in_log(location) {
            self.staged.put_multipart_opts(location, opts).await
        } else {
            self.real.put_multipart_opts(location, opts).await
        }
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if self.in_log(location) {
            match self.staged.get_opts(location, options.clone()).await {
                Err(object_store::Error::NotFound { .. }) => {}
                other => return other,
            }
            if self.hidden(location) {
                return Err(object_store::Error::NotFound { path: location.to_string(), source: "not in this transaction's view of the log".into() });
            }
        }
        self.real.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<Path>>) -> BoxStream<'static, object_store::Result<Path>> {
        // Nothing the block does may delete from the real log (delta-rs cleans up expired log
        // files after a commit); staged files go, and data files are the real store's.
        let (real, staged, log_dir) = (self.real.clone(), self.staged.clone(), self.log_dir.clone());
        locations
            .and_then(move |p| {
                let (real, staged, in_log) = (real.clone(), staged.clone(), p.prefix_matches(&log_dir));
                async move {
                    if in_log {
                        match staged.delete(&p).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    } else {
                        real.delete(&p).await?;
                    }
                    Ok(p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let touches_log = prefix.is_none_or(|p| self.log_dir.prefix_matches(p) || p.prefix_matches(&self.log_dir));
        if !touches_log {
            return self.real.list(prefix);
        }
        let visible = Arc::new(Self { real: self.real.clone(), staged: self.staged.clone(), log_dir: self.log_dir.clone(), base: self.base });
        let real = self.real.list(prefix).try_filter(move |m| futures::future::ready(!visible.hidden(&m.location)));
        let staged = self.staged.list(prefix);
        // Listed in order of name, as a local folder lists them, so that the log reads in order.
        futures::stream::once(async move {
            let mut all: Vec<ObjectMeta> = real.chain(staged).try_collect().await?;
            all.sort_by(|a, b| a.location.cmp(&b.location));
            Ok::<_, object_store::Error>(futures::stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut real = self.real.list_with_delimiter(prefix).await?;
        real.objects.retain(|m| !self.hidden(&m.location));
        let staged = self.staged.list_with_delimiter(prefix).await?;
        real.objects.extend(staged.objects);
        real.objects.sort_by(|a, b| a.location.cmp(&b.location));
        for p in staged.common_prefixes {
            if !real.common_prefixes.contains(&p) {
                real.common_prefixes.push(p);
            }
        }
        Ok(real)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        if !self.in_log(from) && !self.in_log(to) {
            return self.real.copy_opts(from, to, options).await;
        }
        let bytes = self.get_opts(from, GetOptions::default()).await?.bytes().await?;
        let mode = match options.mode {
            object_store::CopyMode::Create => PutMode::Create,
            _ => PutMode::Overwrite,
        };
        self.put_opts(to, bytes.into(), PutOptions { mode, ..Default::default() }).await.map(|_| ())
    }
}

/// A session's transaction block: whether one is open (and failed), the tables it has written,
/// created and dropped, and its savepoints. Shared by the session, which opens and ends it, and
/// its catalog, whose tables read and write through it while it is open.
#[derive(Debug, Default)]
pub struct Block {
    state: Mutex<BlockState>,
}

#[derive(Debug, Default)]
struct BlockState {
    open: bool,
    /// A statement failed: everything but ROLLBACK is refused (25P02).
    failed: bool,
    staged: Staged,
    savepoints: Vec<(String, Saved)>,
}

/// What a block has done to the warehouse so far.
#[derive(Debug, Default, Clone)]
struct Staged {
    tables: BTreeMap<TableName, StagedTable>,
    /// Tables the block dropped (and did not create again).
    dropped: BTreeSet<TableName>,
}

#[derive(Debug, Clone)]
struct StagedTable {
    log: Arc<StagedLog>,
    /// The table over the staged log, as last read or written; `None` until a created table's
    /// first commit.
    table: Option<DeltaTable>,
    /// Created by the block in place of a table of that name it dropped.
    replaces: bool,
}

/// A savepoint: what was staged then, with each staged log's files.
#[derive(Debug, Clone)]
struct Saved {
    staged: Staged,
    files: BTreeMap<TableName, Vec<(Path, bytes::Bytes)>>,
}

/// What a block leaves for COMMIT: each table it wrote or created, and those it dropped.
#[derive(Debug, Default)]
pub struct Ended {
    pub tables: Vec<EndedTable>,
    pub dropped: Vec<TableName>,
}

#[derive(Debug)]
pub struct EndedTable {
    pub name: TableName,
    pub log: Arc<StagedLog>,
    pub replaces: bool,
}

impl Block {
    fn state(&self) -> std::sync::MutexGuard<'_, BlockState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a block; `false` if one is open already.
    pub fn begin(&self) -> bool {
        let mut state = self.state();
        !std::mem::replace(&mut state.open, true)
    }

    pub fn is_open(&self) -> bool {
        self.state().open
    }

    pub fn is_failed(&self) -> bool {
        let state = self.state();
        state.open && state.failed
    }

    /// A statement inside the block failed.
    pub fn fail(&self) {
        let mut state = self.state();
        if state.open {
            state.failed = true;
        }
    }

    /// Ends the block, whether it commits or not: what it staged, for COMMIT to apply.
    pub fn end(&self) -> Ended {
        let staged = std::mem::take(&mut *self.state()).staged;
        Ended {
            tables: staged.tables.into_iter().map(|(name, s)| EndedTable { name, log: s.log, replaces: s.replaces }).collect(),
            dropped: staged.dropped.into_iter().collect(),
        }
    }

    /// Whether the block has the table, as it sees the warehouse: `Some(false)` if it dropped
    /// it, `Some(true)` if it created or wrote it, `None` if it has not touched it.
    pub fn has(&self, name: &TableName) -> Option<bool> {
        let state = self.state();
        if state.staged.dropped.contains(name) {
            return Some(false);
        }
        state.staged.tables.get(name).map(|s| s.table.is_some() || s.log.base.is_some())
    }

    /// Whether the table exists as the block sees the warehouse.
    pub async fn exists(&self, warehouse: &Warehouse, name: &TableName) -> Result<bool> {
        match self.has(name) {
            Some(has) => Ok(has),
            None => warehouse.exists(name).await,
        }
    }

    /// The names of a schema's tables as the block sees them, given the warehouse's.
    pub fn table_names(&self, schema: &str, mut names: Vec<String>) -> Vec<String> {
        let state = self.state();
        names.retain(|n| !state.staged.dropped.contains(&TableName::new(schema, n.as_str())));
        for name in state.staged.tables.keys().filter(|n| n.schema == schema) {
            if !names.contains(&name.table) {
                names.push(name.table.clone());
            }
        }
        names.sort();
        names
    }

    /// The table as the block sees it: the version it started from and its own writes.
    pub async fn table(&self, name: &TableName) -> Result<Option<DeltaTable>> {
        let Some(mut table) = self.state().staged.tables.get(name).and_then(|s| s.table.clone()) else { return Ok(None) };
        table.update_incremental(None).await?;
        if let Some(s) = self.state().staged.tables.get_mut(name) {
            s.table = Some(table.clone());
        }
        Ok(Some(table))
    }

    /// The table to write: from now on over a staged log that starts at `current`'s version.
    pub async fn stage(&self, warehouse: &Warehouse, name: &TableName, current: &DeltaTable) -> Result<DeltaTable> {
        if let Some(t) = self.table(name).await? {
            return Ok(t);
        }
        let log = Arc::new(StagedLog::new(current.log_store().root_object_store(None), log_dir(warehouse, name)?, current.version()));
        let table = warehouse.open_over(name, log.clone()).await?;
        self.state().staged.tables.insert(name.clone(), StagedTable { log, table: Some(table.clone()), replaces: false });
        Ok(table)
    }

    /// CREATE TABLE inside the block: the table's first commit goes to a staged log.
    pub async fn create_table(&self, warehouse: &Warehouse, name: &TableName, schema: &Schema, partition_by: &[String]) -> Result<()> {
        let (table, log) = self.new_table(warehouse, name).await?;
        let table = warehouse.create_empty(table, name, schema, partition_by).await?;
        self.created(name, log, table);
        Ok(())
    }

    /// CREATE TABLE ... AS inside the block: one staged first commit with the rows.
    pub async fn create_table_as(
        &self,
        warehouse: &Warehouse,
        state: &datafusion::execution::SessionState,
        name: &TableName,
        input: datafusion::logical_expr::LogicalPlan,
        partition_by: &[String],
    ) -> Result<u64> {
        let (table, log) = self.new_table(warehouse, name).await?;
        let rows = warehouse.write_new(table.clone(), state, name, input, partition_by).await?;
        let table = warehouse.open_over(name, log.clone()).await?;
        self.created(name, log, table);
        Ok(rows)
    }

    async fn new_table(&self, warehouse: &Warehouse, name: &TableName) -> Result<(DeltaTable, Arc<StagedLog>)> {
        let exists = self.exists(warehouse, name).await?;
        if exists {
            return Err(Error::DuplicateTable(name.to_string()));
        }
        let real = warehouse.unloaded(name)?.log_store().root_object_store(None);
        let log = Arc::new(StagedLog::new(real, log_dir(warehouse, name)?, None));
        warehouse.new_table_url(name)?;
        let url = warehouse.table_url(name)?;
        let table = deltalake::DeltaTableBuilder::from_url(url.clone())?.with_storage_backend(log.clone(), url).build()?;
        Ok((table, log))
    }

    fn created(&self, name: &TableName, log: Arc<StagedLog>, table: DeltaTable) {
        let mut state = self.state();
        let replaces = state.staged.dropped.remove(name);
        state.staged.tables.insert(name.clone(), StagedTable { log, table: Some(table), replaces });
    }

    /// DROP TABLE inside the block: gone for the block now, from storage at COMMIT.
    pub async fn drop_table(&self, warehouse: &Warehouse, name: &TableName) -> Result<()> {
        let exists = self.exists(warehouse, name).await?;
        if !exists {
            return Err(Error::UndefinedTable(name.to_string()));
        }
        let mut state = self.state();
        match state.staged.tables.remove(name) {
            // Created by the block: forgotten, unless it replaced a table, which stays dropped.
            Some(s) if s.log.base.is_none() => {
                if s.replaces {
                    state.staged.dropped.insert(name.clone());
                }
            }
            _ => {
                state.staged.dropped.insert(name.clone());
            }
        }
        Ok(())
    }

    /// `SAVEPOINT name`: a name used again hides the older one until it is released.
    pub async fn savepoint(&self, name: &str) -> Result<()> {
        let staged = self.state().staged.clone();
        let mut files = BTreeMap::new();
        for (table, s) in &staged.tables {
            files.insert(table.clone(), s.log.save().await?);
        }
        self.state().savepoints.push((name.to_string(), Saved { staged, files }));
        Ok(())
    }

    /// `ROLLBACK TO name`: what was staged then, each staged log as it was, and the block
    /// usable again; the savepoint stays, later ones go.
    pub async fn rollback_to(&self, warehouse: &Warehouse, name: &str) -> Result<()> {
        let saved = {
            let mut state = self.state();
            let at = savepoint_index(&state.savepoints, name)?;
            state.savepoints.truncate(at + 1);
            state.savepoints[at].1.clone()
        };
        let mut staged = saved.staged;
        for (table, s) in staged.tables.iter_mut() {
            let log = Arc::new(StagedLog::new(s.log.real.clone(), s.log.log_dir.clone(), s.log.base));
            log.restore(&saved.files[table]).await?;
            s.table = match s.table {
                Some(_) => Some(warehouse.open_over(table, log.clone()).await?),
                None => None,
            };
            s.log = log;
        }
        let mut state = self.state();
        state.staged = staged;
        state.failed = false;
        Ok(())
    }

    /// `RELEASE name`: forgets it and every later one; the writes stay.
    pub fn release(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        let at = savepoint_index(&state.savepoints, name)?;
        state.savepoints.truncate(at);
        Ok(())
    }
}

fn log_dir(warehouse: &Warehouse, name: &TableName) -> Result<Path> {
    let url = warehouse.table_url(name)?;
    Ok(Path::from_url_path(url.path())
        .map_err(|e| Error::InvalidName(format!("table {name} has no path in the warehouse: {e}")))?
        .join("_delta_log"))
}

fn savepoint_index(savepoints: &[(String, Saved)], name: &str) -> Result<usize> {
    savepoints
        .iter()
        .rposition(|(n, _)| n == name)
        .ok_or_else(|| Error::InvalidSavepoint(format!("savepoint \"{name}\" does not exist")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_log_files() {
        assert_eq!(log_version("00000000000000000012.json"), Some(12));
        assert_eq!(log_version("00000000000000000100.checkpoint.parquet"), Some(100));
        assert_eq!(log_version("_last_checkpoint"), None);
        assert_eq!(log_version("_commit_abc.json.tmp"), None);
    }

    #[tokio::test]
    async fn the_block_sees_the_log_up_to_its_base_and_its_own_commits() {
        let real: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let dir = Path::from("s/t/_delta_log");
        for v in 0..3u64 {
            real.put(&dir.clone().join(format!("{v:020}.json")), "{}".into()).await.unwrap();
        }
        let log = StagedLog::new(real.clone(), dir.clone(), Some(1));
        let v2 = dir.clone().join(format!("{:020}.json", 2));
        // Version 2 is another writer's: hidden, and the block may take the number for itself.
        assert!(log.get(&v2).await.is_err());
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        log.put_opts(&v2, "{\"mine\":1}".into(), create.clone()).await.unwrap();
        assert!(log.put_opts(&dir.clone().join(format!("{:020}.json", 1)), "x".into(), create).await.is_err());
        let names: Vec<String> = log.list(Some(&dir)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
        assert_eq!(names.len(), 3);
        assert_eq!(log.get(&v2).await.unwrap().bytes().await.unwrap().as_ref(), b"{\"mine\":1}");
        // The real log is untouched.
        assert_eq!(real.get(&v2).await.unwrap().bytes().await.unwrap().as_ref(), b"{}");
    }
}
