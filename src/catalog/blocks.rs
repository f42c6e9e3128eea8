//! COMMIT of a transaction block: every table the block wrote, or none of them.
//!
//! Owns: turning a block's staged log (`staging`) into one Delta commit per table, the record
//! that makes a commit to several tables all-or-nothing, and finishing or undoing the records a
//! killed server left behind. Must not: stage writes, or know about sessions.
//!
//! Delta commits one table at a time. A block that wrote (or created, or dropped) one table is
//! one step, atomic by itself. A block of several steps first writes a record, `_hindsight/blocks/<id>.json`
//! under the warehouse root, holding each table's actions and the version the block read; then
//! commits each table in turn, every commit carrying the block's id in its commitInfo
//! (`hindsight.block`); then deletes the record. Whoever finds a record (this server at its
//! next start, or any server opening the warehouse) rolls it forward: a table whose log already
//! holds a commit with the id is done, the others are committed. The check and the commit cannot
//! interleave with another server doing the same, because `rewrites::check` refuses a commit
//! whose id already appears after the version it read, and a commit file is only written if
//! absent. If a table's commit conflicts with another writer (40001), the record turns to
//! "aborting" and the tables already committed get a commit that undoes theirs (removing the
//! files the block added, adding back those it removed), marked `hindsight.block.undo`; a record
//! found aborting is undone the same way. So a killed server, or a conflict halfway, leaves every
//! table with the block's changes or none, as of the latest versions; the versions in between are
//! in each table's history, marked with the block's id.
//!
//! Steps run in this order: writes to existing tables and new tables' first commits (by name),
//! then drops, then tables created in place of ones the block dropped (drop, then the new first
//! commit). Only the first group can meet a conflict; a drop cannot be undone, so drops come
//! after everything that can fail. A new table's first commit is written only if absent; the
//! undoing of one drops it again.

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove};
use deltalake::protocol::{DeltaOperation, SaveMode};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::staging::{Ended, StagedLog};
use super::versions::TableAt;
use super::{TableName, Warehouse};
use crate::error::{Error, Result};

/// The commitInfo key holding the block's id (and, with `.undo`, the id of a block undone).
pub(super) const BLOCK_KEY: &str = "hindsight.block";
const UNDO_KEY: &str = "hindsight.block.undo";

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    user: String,
    state: State,
    tables: Vec<Change>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Committing,
    Aborting,
}

/// One table's share of a block.
#[derive(Debug, Serialize, Deserialize)]
struct Change {
    schema: String,
    table: String,
    step: Step,
    /// What it adds and removes (for a new table, also its protocol and metadata).
    actions: Vec<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Step {
    /// A commit against the version the block read.
    Write { base: u64 },
    /// A new table's first commit.
    Create,
    Drop,
    /// Drop, then a new table's first commit under the same name.
    Replace,
}

impl Step {
    /// Where a commit of this step's can be found in the log: after the version read.
    fn after(self) -> Option<u64> {
        match self {
            Step::Write { base } => Some(base),
            _ => None,
        }
    }

    fn order(self) -> u8 {
        match self {
            Step::Write { .. } | Step::Create => 0,
            Step::Drop => 1,
            Step::Replace => 2,
        }
    }
}

impl Change {
    fn name(&self) -> TableName {
        TableName::new(&self.schema, &self.table)
    }

    /// What history calls a write: an append if it only adds files.
    fn operation(&self) -> DeltaOperation {
        let adds = self.actions.iter().any(|a| matches!(a, Action::Add(_)));
        let removes = self.actions.iter().any(|a| matches!(a, Action::Remove(_)));
        match (adds, removes) {
            (_, false) => DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None },
            (false, true) => DeltaOperation::Delete { predicate: None },
            (true, true) => DeltaOperation::Update { predicate: None },
        }
    }

    /// The actions that put the table back: the files it added go, the files it removed return.
    fn inverse(&self) -> Vec<Action> {
        let now = chrono::Utc::now().timestamp_millis();
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Add(a) => Some(Action::Remove(Remove {
                    path: a.path.clone(),
                    data_change: true,
                    deletion_timestamp: Some(now),
                    extended_file_metadata: Some(true),
                    partition_values: Some(a.partition_values.clone()),
                    size: Some(a.size),
                    tags: a.tags.clone(),
                    deletion_vector: a.deletion_vector.clone(),
                    base_row_id: a.base_row_id,
                    default_row_commit_version: a.default_row_commit_version,
                })),
                Action::Remove(r) => Some(Action::Add(Add {
                    path: r.path.clone(),
                    partition_values: r.partition_values.clone().unwrap_or_default(),
                    size: r.size.unwrap_or_default(),
                    modification_time: now,
                    data_change: true,
                    stats: None,
                    tags: r.tags.clone(),
                    deletion_vector: r.deletion_vector.clone(),
                    base_row_id: r.base_row_id,
                    default_row_commit_version: r.default_row_commit_version,
                    clustering_provider: None,
                })),
                _ => None,
            })
            .collect()
    }
}

/// A table's staged commits as one set of actions: files added and not removed again within
/// the block, and files of the version it read that the block removed; for a new table, its
/// protocol and metadata first.
fn net(commits: Vec<Vec<Action>>, name: &TableName, new_table: bool) -> Result<Vec<Action>> {
    let mut adds: Vec<Add> = Vec::new();
    let mut removes: Vec<Remove> = Vec::new();
    let (mut protocol, mut metadata) = (None, None);
    for action in commits.into_iter().flatten() {
        match action {
            Action::Add(a) => adds.push(a),
            Action::Remove(r) => match adds.iter().position(|a| a.path == r.path) {
                Some(i) => {
                    adds.remove(i);
                }
                None => removes.push(r),
            },
            Action::Protocol(p) if new_table => protocol = Some(p),
            Action::Metadata(m) if new_table => metadata = Some(m),
            Action::Metadata(_) | Action::Protocol(_) => {
                return Err(Error::FeatureNotSupported(format!(
                    "{name}: a change of a table's schema or protocol inside a transaction block cannot be committed"
                )));
            }
            Action::CommitInfo(_) | Action::Txn(_) | Action::Cdc(_) | Action::DomainMetadata(_) => {}
        }
    }
    let head = protocol.map(Action::Protocol).into_iter().chain(metadata.map(Action::Metadata));
    Ok(head.chain(removes.into_iter().map(Action::Remove)).chain(adds.into_iter().map(Action::Add)).collect())
}

/// An add action's path as a file name: Delta stores it percent-encoded.
fn percent_decoded(path: &str) -> String {
    percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned()
}

/// A failed commit as the client sees it: 40001 with the table named, if it lost to another
/// writer.
fn conflict(name: &TableName, e: Error) -> Error {
    if e.sqlstate() != "40001" {
        return e;
    }
    Error::Conflict { table: name.to_string(), message: format!("the transaction block could not be committed: {e}") }
}

fn properties(read: u64, key: &str, id: &str) -> CommitProperties {
    super::commits::commit_properties(None).with_metadata([
        ("readVersion".to_string(), serde_json::json!(read)),
        (key.to_string(), serde_json::json!(id)),
    ])
}

impl Warehouse {
    /// Opens a table over a block's staged log (`staging`).
    pub(super) async fn open_over(&self, name: &TableName, log: Arc<StagedLog>) -> Result<deltalake::DeltaTable> {
        let url = self.table_url(name)?;
        Ok(deltalake::DeltaTableBuilder::from_url(url.clone())?
            .with_storage_options(self.storage_options.clone())
            .with_storage_backend(log, url)
            .load()
            .await?)
    }

    /// Commits what a block staged: nothing, one step, or several under a record.
    pub async fn commit_block(&self, ended: Ended, user: &str) -> Result<()> {
        let mut tables = Vec::new();
        for t in ended.tables {
            let step = match (t.log.base(), t.replaces) {
                (Some(base), _) => Step::Write { base },
                (None, false) => Step::Create,
                (None, true) => Step::Replace,
            };
            let actions = net(t.log.commits().await?, &t.name, t.log.base().is_none())?;
            // A new table always has its first commit, even without rows.
            if !actions.is_empty() {
                tables.push(Change { schema: t.name.schema.clone(), table: t.name.table.clone(), step, actions });
            }
        }
        for name in ended.dropped {
            tables.push(Change { schema: name.schema.clone(), table: name.table.clone(), step: Step::Drop, actions: vec![] });
        }
        tables.sort_by(|a, b| (a.step.order(), &a.schema, &a.table).cmp(&(b.step.order(), &b.schema, &b.table)));
        let record = Record { id: uuid::Uuid::new_v4().to_string(), user: user.to_string(), state: State::Committing, tables };
        match record.tables.as_slice() {
            [] => Ok(()),
            [one] if one.step != Step::Replace => {
                self.apply(&record.id, one).await?;
                self.compact_after(&record).await;
                Ok(())
            }
            _ => {
                self.write_record(&record).await?;
                self.roll_forward(record).await
            }
        }
    }

    /// Writes inside blocks skip compaction as they go; the committed tables get their turn.
    async fn compact_after(&self, record: &Record) {
        for change in record.tables.iter().filter(|c| c.step != Step::Drop) {
            if let Ok(Some(table)) = self.load(&change.name()).await {
                self.auto_compact.after_write(&change.name(), &table);
            }
        }
    }

    /// Commits each table of a record not yet committed; on a conflict, undoes the others.
    async fn roll_forward(&self, mut record: Record) -> Result<()> {
        for change in &record.tables {
            if let Some(ms) = std::env::var("HINDSIGHT_TEST_PAUSE_IN_COMMIT_MS").ok().and_then(|v| v.parse().ok()) {
                // For the kill -9 test: a window before each table's commit.
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            match self.apply(&record.id, change).await {
                Ok(()) => {}
                Err(e) if e.sqlstate() == "40001" => {
                    record.state = State::Aborting;
                    self.write_record(&record).await?;
                    self.undo(&record).await?;
                    self.delete_record(&record.id).await?;
                    return Err(e);
                }
                // The record stays: the next start of a server on this warehouse finishes it.
                Err(e) => return Err(e),
            }
        }
        self.delete_record(&record.id).await?;
        self.compact_after(&record).await;
        Ok(())
    }

    /// Runs one step unless the warehouse already shows it done.
    async fn apply(&self, id: &str, change: &Change) -> Result<()> {
        let name = change.name();
        match change.step {
            Step::Write { base } => self.apply_write(id, change, base).await,
            Step::Create => self.apply_create(id, change).await,
            Step::Drop => match self.drop_table(&name).await {
                Ok(()) | Err(Error::UndefinedTable(_)) => Ok(()),
                Err(e) => Err(e),
            },
            Step::Replace => {
                if !self.carries(&name, None, BLOCK_KEY, id).await? {
                    // The new table's files are already in the folder the drop empties.
                    let keep = change
                        .actions
                        .iter()
                        .filter_map(|a| match a {
                            Action::Add(a) => Some(percent_decoded(&a.path)),
                            _ => None,
                        })
                        .collect();
                    match self.drop_table_keeping(&name, &keep).await {
                        Ok(()) | Err(Error::UndefinedTable(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                self.apply_create(id, change).await
            }
        }
    }

    async fn apply_write(&self, id: &str, change: &Change, base: u64) -> Result<()> {
        let name = change.name();
        let table = self
            .load_at(&name, TableAt::Version(base))
            .await?
            .ok_or_else(|| Error::UndefinedTable(name.to_string()))?;
        let _writing = self.write_locks.table(&table).await;
        if self.carries(&name, Some(base), BLOCK_KEY, id).await? {
            return Ok(());
        }
        let committed = CommitBuilder::from(properties(base, BLOCK_KEY, id))
            .with_actions(change.actions.clone())
            .build(Some(table.snapshot()?), table.log_store(), change.operation())
            .await;
        match committed {
            Ok(_) => Ok(()),
            // Another server finishing the same record got there first.
            Err(_) if self.carries(&name, Some(base), BLOCK_KEY, id).await? => Ok(()),
            Err(e) => Err(conflict(&name, e.into())),
        }
    }

    /// A new table's first commit, written only if the table has none.
    async fn apply_create(&self, id: &str, change: &Change) -> Result<()> {
        let name = change.name();
        let _creating = self.creation_lock(&name).await?;
        if self.carries(&name, None, BLOCK_KEY, id).await? {
            return Ok(());
        }
        let (Some(Action::Protocol(protocol)), Some(Action::Metadata(metadata))) = (change.actions.first(), change.actions.get(1)) else {
            return Err(Error::Internal(format!("the block's commit of new table {name} has no protocol and metadata")));
        };
        self.new_table_url(&name)?;
        let table = self.unloaded(&name)?;
        let operation = DeltaOperation::Create {
            mode: SaveMode::ErrorIfExists,
            location: table.table_url().clone(),
            protocol: protocol.clone(),
            metadata: metadata.clone(),
        };
        let committed = CommitBuilder::from(super::commits::commit_properties(None).with_metadata([(BLOCK_KEY.to_string(), serde_json::json!(id))]))
            .with_actions(change.actions.clone())
            .build(None, table.log_store(), operation)
            .await;
        match committed {
            Ok(_) => {
                self.names.add(&name.schema, &name.table);
                Ok(())
            }
            Err(_) if self.carries(&name, None, BLOCK_KEY, id).await? => Ok(()),
            Err(_) if self.exists(&name).await? => Err(Error::DuplicateTable(name.to_string())),
            Err(e) => Err(conflict(&name, e.into())),
        }
    }

    /// Undoes, in each table of an aborting record, the block's step if it was taken: a write
    /// by its inverse, a new table by dropping it. Drops come after every step that can fail,
    /// so an aborting record has none done.
    async fn undo(&self, record: &Record) -> Result<()> {
        for change in &record.tables {
            let name = change.name();
            let after = change.step.after();
            if !matches!(change.step, Step::Write { .. } | Step::Create) || !self.carries(&name, after, BLOCK_KEY, &record.id).await? {
                continue;
            }
            if change.step == Step::Create {
                self.drop_table(&name).await?;
                continue;
            }
            if self.carries(&name, after, UNDO_KEY, &record.id).await? {
                continue;
            }
            let table = self.load_existing(&name).await?;
            let _writing = self.write_locks.table(&table).await;
            let read = table.version().unwrap_or_default();
            CommitBuilder::from(properties(read, UNDO_KEY, &record.id))
                .with_actions(change.inverse())
                .build(Some(table.snapshot()?), table.log_store(), DeltaOperation::Update { predicate: None })
                .await?;
            tracing::warn!(table = %name, block = %record.id, "undid a transaction block's commit after another table's conflicted");
        }
        Ok(())
    }

    /// Whether a commit after `after` (from the first, if `None`) carries `key: id` in its
    /// commitInfo.
    async fn carries(&self, name: &TableName, after: Option<u64>, key: &str, id: &str) -> Result<bool> {
        let Some(table) = self.load(name).await? else { return Ok(false) };
        let latest = table.version().unwrap_or_default();
        let needle = format!("\"{key}\":\"{id}\"");
        for v in after.map_or(0, |b| b + 1)..=latest {
            if let Some(bytes) = table.log_store().read_commit_entry(v).await? {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// `_hindsight/blocks/` under the warehouse root: beside the schemas, never a table.
    fn records_dir(&self) -> Path {
        self.prefix.clone().join("_hindsight").join("blocks")
    }

    fn record_path(&self, id: &str) -> Path {
        self.records_dir().join(format!("{id}.json"))
    }

    async fn write_record(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Internal(format!("a block record cannot be written: {e}")))?;
        self.store.put(&self.record_path(&record.id), bytes.into()).await?;
        Ok(())
    }

    async fn delete_record(&self, id: &str) -> Result<()> {
        match self.store.delete(&self.record_path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Finishes the blocks whose COMMIT a stopped server left halfway: committing ones are
    /// rolled forward, aborting ones undone.
    pub(super) async fn recover_blocks(&self) -> Result<()> {
        use futures::TryStreamExt;
        let dir = self.records_dir();
        let found: Vec<Path> = match self.store.list(Some(&dir)).map_ok(|m| m.location).try_collect().await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for path in found {
            let bytes = self.store.get(&path).await?.bytes().await?;
            let record: Record = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                // A record torn by the kill itself: written before any table was committed.
                Err(e) => {
                    tracing::warn!(record = %path, error = %e, "removing an unreadable transaction record; no table was committed under it");
                    self.store.delete(&path).await?;
                    continue;
                }
            };
            let id = record.id.clone();
            let outcome = match record.state {
                State::Committing => match self.roll_forward(record).await {
                    Ok(()) => "rolled forward",
                    Err(e) if e.sqlstate() == "40001" => "undone after a conflict",
                    Err(e) => return Err(e),
                },
                State::Aborting => {
                    self.undo(&record).await?;
                    self.delete_record(&id).await?;
                    "undone"
                }
            };
            tracing::info!(block = %id, outcome, "finished a transaction block a stopped server left halfway");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(path: &str) -> Action {
        Action::Add(Add { path: path.into(), size: 10, data_change: true, ..Default::default() })
    }

    fn remove(path: &str) -> Action {
        Action::Remove(Remove { path: path.into(), data_change: true, ..Default::default() })
    }

    #[test]
    fn a_file_added_and_removed_within_the_block_is_not_committed() {
        let name = TableName::new("public", "t");
        let net = net(vec![vec![add("a"), add("b")], vec![remove("a"), remove("base"), add("c")]], &name, false).unwrap();
        let paths: Vec<String> = net
            .iter()
            .map(|a| match a {
                Action::Add(a) => format!("+{}", a.path),
                Action::Remove(r) => format!("-{}", r.path),
                _ => String::new(),
            })
            .collect();
        assert_eq!(paths, ["-base", "+b", "+c"]);
    }

    #[test]
    fn the_inverse_puts_files_back() {
        let change = Change { schema: "public".into(), table: "t".into(), step: Step::Write { base: 3 }, actions: vec![add("new"), remove("old")] };
        let inverse = change.inverse();
        assert!(matches!(&inverse[0], Action::Remove(r) if r.path == "new" && r.data_change));
        assert!(matches!(&inverse[1], Action::Add(a) if a.path == "old" && a.data_change));
    }
}
