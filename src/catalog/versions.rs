//! Versions of a table: which one a statement reads, the commit log behind them, and VACUUM
//! within the retention.
//!
//! A commit's time is the `timestamp` its writer put in the commit's `commitInfo`, not the log
//! file's modification time: a warehouse copied to another bucket years later keeps its commit
//! times, which is what an audit needs. Servers writing one warehouse should keep their clocks in
//! sync (NTP), as with any Delta writer.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{TableName, Warehouse};
use crate::error::{Error, Result};

/// Which version of a table a statement reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableAt {
    Latest,
    Version(u64),
    /// The last version committed at or before this instant.
    Timestamp(DateTime<Utc>),
}

/// Delta's `yyyyMMddHHmmssSSS`, in UTC.
const NAME_TIME_FORMAT: &str = "%Y%m%d%H%M%S%3f";

impl TableAt {
    /// Splits `t@v12` (a version) or `t@20250601000000000` (an instant, UTC, milliseconds):
    /// Delta's own spellings, which are also how a rewritten `VERSION AS OF` reaches the catalog.
    pub fn split(name: &str) -> (&str, TableAt) {
        let Some((table, suffix)) = name.rsplit_once('@') else { return (name, TableAt::Latest) };
        if let Some(v) = suffix.strip_prefix('v').and_then(|v| v.parse::<u64>().ok()) {
            return (table, TableAt::Version(v));
        }
        if suffix.len() == 17 && suffix.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(t) = NaiveDateTime::parse_from_str(suffix, NAME_TIME_FORMAT) {
                return (table, TableAt::Timestamp(Utc.from_utc_datetime(&t)));
            }
        }
        (name, TableAt::Latest)
    }

    /// The table name that reads this version (the inverse of `split`). Commit times have
    /// millisecond precision, so truncating the instant to milliseconds picks the same version.
    pub fn name_for(&self, table: &str) -> String {
        match self {
            TableAt::Latest => table.to_string(),
            TableAt::Version(v) => format!("{table}@v{v}"),
            TableAt::Timestamp(t) => format!("{table}@{}", t.format(NAME_TIME_FORMAT)),
        }
    }
}

/// One commit of a table, as DESCRIBE HISTORY shows it.
#[derive(Debug, Clone)]
pub struct Commit {
    pub version: u64,
    pub timestamp: Option<DateTime<Utc>>,
    pub operation: Option<String>,
    pub parameters: Option<Value>,
    pub metrics: Option<Value>,
    /// Rows in the files this commit added, from their statistics.
    pub added_records: Option<i64>,
}

impl Commit {
    /// A row-count metric under any of the names delta-rs's operations use for it.
    pub fn metric(&self, names: &[&str]) -> Option<i64> {
        let metrics = self.metrics.as_ref()?.as_object()?;
        let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
        names.iter().find_map(|n| {
            metrics.iter().find(|(k, _)| norm(k) == norm(n)).and_then(|(_, v)| v.as_i64())
        })
    }

    /// New rows: what the operation reports, or for a plain write (INSERT, COPY, which delta-rs
    /// commits without metrics) the rows of the files it added.
    pub fn rows_added(&self) -> Option<i64> {
        self.metric(&["num_added_rows", "num_target_rows_inserted"]).or_else(|| {
            matches!(self.operation.as_deref(), Some("WRITE")).then_some(self.added_records).flatten()
        })
    }
}

/// Postgres-style rendering of an instant in messages.
pub fn show_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string()
}

impl Warehouse {
    pub(super) fn unloaded(&self, name: &TableName) -> Result<DeltaTable> {
        Ok(DeltaTableBuilder::from_url(self.table_url(name)?)?.with_storage_options(self.storage_options.clone()).build()?)
    }

    /// Opens a table at a version or instant. `Ok(None)` when there is no such table at all.
    /// A version that does not exist, or an instant before the first commit, is an error that
    /// says which versions and times exist.
    pub async fn load_at(&self, name: &TableName, at: TableAt) -> Result<Option<DeltaTable>> {
        if at == TableAt::Latest {
            return self.load(name).await;
        }
        if !self.exists(name).await? {
            return Ok(None);
        }
        let handle = self.unloaded(name)?;
        let version = match at {
            TableAt::Latest => return self.load(name).await,
            // Listing the log for the latest version costs as much as loading; only an error
            // message needs it.
            TableAt::Version(v) => match handle.log_store().read_commit_entry(v).await? {
                Some(_) => v,
                None => {
                    let latest = latest_of(&handle).await?;
                    return Err(Error::NoSuchVersion(if v > latest {
                        format!("{name} has no version {v}: its versions are 0 to {latest}")
                    } else {
                        format!("{name} no longer has the log entry of version {v} (its log was cleaned up)")
                    }));
                }
            },
            TableAt::Timestamp(t) => {
                let latest = latest_of(&handle).await?;
                self.version_at(name, &handle, latest, t).await?
            }
        };
        let builder = DeltaTableBuilder::from_url(self.table_url(name)?)?
            .with_storage_options(self.storage_options.clone())
            .with_version(version);
        match builder.load().await {
            Ok(t) => Ok(Some(t)),
            Err(e) => Err(match self.first_broken_entry(name).await {
                Some(detail) => Error::DataCorrupted(format!("table {name} is corrupt: {detail}")),
                None => Error::VersionUnavailable { table: name.to_string(), version, detail: crate::error::delta_message(&e) },
            }),
        }
    }

    /// The latest version of a table, read from the log listing without loading the table.
    pub async fn latest_version(&self, name: &TableName) -> Result<u64> {
        if !self.exists(name).await? {
            return Err(Error::UndefinedTable(name.to_string()));
        }
        latest_of(&self.unloaded(name)?).await
    }

    /// Fails, naming the table and version, if any data file that version reads is gone
    /// (deleted by a VACUUM outside hindsight, or by hand).
    pub async fn check_readable(&self, name: &TableName, version: u64) -> Result<()> {
        let unavailable = |detail: String| Error::VersionUnavailable { table: name.to_string(), version, detail };
        let table = self.load_at(name, TableAt::Version(version)).await?.ok_or_else(|| Error::UndefinedTable(name.to_string()))?;
        let prefix = self.table_prefix(name)?;
        let present: std::collections::HashSet<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location.prefix_match(&prefix).map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/")).unwrap_or_default())
            .try_collect()
            .await?;
        let mut missing = Vec::new();
        for f in table.snapshot()?.log_data().iter() {
            let path = f.path();
            let decoded = object_store::path::Path::from_url_path(path.as_ref()).map(|p| p.to_string()).unwrap_or_else(|_| path.to_string());
            if !present.contains(&decoded) {
                missing.push(decoded);
            }
        }
        match missing.first() {
            None => Ok(()),
            Some(first) => Err(unavailable(format!(
                "{} of its data files are gone, {first} among them (was it vacuumed outside hindsight?)",
                missing.len()
            ))),
        }
    }

    /// The last version committed at or before `t` (a binary search over commit times).
    async fn version_at(&self, name: &TableName, table: &DeltaTable, latest: u64, t: DateTime<Utc>) -> Result<u64> {
        let time = |v: u64| async move {
            let commit = read_commit(table, v).await?;
            commit.and_then(|c| c.timestamp).ok_or_else(|| Error::VersionUnavailable {
                table: name.to_string(),
                version: v,
                detail: "its commit time is not in the log".into(),
            })
        };
        let first = time(0).await?;
        if t < first {
            return Err(Error::NoSuchVersion(format!(
                "{name} did not exist at {}: its first version was committed at {}",
                show_time(t),
                show_time(first)
            )));
        }
        // Invariant: time(lo) <= t; the answer is in lo..=hi.
        let (mut lo, mut hi) = (0u64, latest);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if time(mid).await? <= t { lo = mid } else { hi = mid - 1 }
        }
        Ok(lo)
    }

    /// Commits of a table, newest first: at most `limit`, and none after `until`.
    pub async fn history(&self, name: &TableName, limit: Option<u64>, until: Option<DateTime<Utc>>) -> Result<Vec<Commit>> {
        if !self.exists(name).await? {
            return Err(Error::UndefinedTable(format!("relation \"{name}\" does not exist")));
        }
        let table = self.unloaded(name)?;
        let latest = latest_of(&table).await?;
        let latest = match until {
            Some(t) => match self.version_at(name, &table, latest, t).await {
                Ok(v) => v,
                Err(Error::NoSuchVersion(_)) => return Ok(vec![]),
                Err(e) => return Err(e),
            },
            None => latest,
        };
        let limit = limit.unwrap_or(u64::MAX).min(latest + 1) as usize;
        let table = &table;
        let commits: Vec<Option<Commit>> = futures::stream::iter((0..=latest).rev().take(limit))
            .map(|v| async move { read_commit(table, v).await })
            .buffered(16)
            .try_collect()
            .await?;
        // Log entries older than the log retention may have been cleaned up after a checkpoint.
        Ok(commits.into_iter().map_while(|c| c).collect())
    }

    /// RESTORE: one commit that makes the table's latest version read as the version `to` names
    /// did; every version before it stays readable. Returns the new version and the files the
    /// commit removed and added back.
    pub async fn restore(&self, name: &TableName, to: TableAt) -> Result<(u64, usize, usize)> {
        let mut table = self.load_existing(name).await?;
        let _writing = self.write_locks.table(&table).await;
        table.update_incremental(None).await?;
        let restore = match to {
            TableAt::Version(v) => {
                self.check_readable(name, v).await?;
                table.restore().with_version_to_restore(v)
            }
            TableAt::Timestamp(t) => table.restore().with_datetime_to_restore(t),
            TableAt::Latest => return Err(Error::InvalidParameter(format!("RESTORE {name} needs a version or a timestamp"))),
        };
        let (table, metrics) = restore.await?;
        Ok((table.version().unwrap_or_default() as u64, metrics.num_removed_file, metrics.num_restored_file))
    }

    /// VACUUM: deletes data files that no version inside the retention needs. A shorter
    /// `retain` than the table's `delta.deletedFileRetentionDuration` is refused, because the
    /// versions committed within that window need the files it would delete.
    pub async fn vacuum(&self, name: &TableName, retain: Option<Duration>, dry_run: bool) -> Result<VacuumReport> {
        let table = self.load_existing(name).await?;
        let minimum = table.snapshot()?.table_config().deleted_file_retention_duration();
        let retain = retain.unwrap_or(minimum);
        if retain < minimum {
            return Err(Error::InvalidParameter(format!(
                "VACUUM {name} RETAIN {} HOURS refused: versions committed in the last {} hours (the table's \
                 delta.deletedFileRetentionDuration) still need files it would delete, and time travel must keep \
                 working inside the retention",
                retain.as_secs() / 3600,
                minimum.as_secs() / 3600
            )));
        }
        let period = chrono::Duration::from_std(retain)
            .map_err(|e| Error::InvalidParameter(format!("retention period: {e}")))?;
        let (_, metrics) = table.vacuum().with_retention_period(period).with_dry_run(dry_run).await?;
        Ok(VacuumReport { files: metrics.files_deleted.len() as u64, retain, dry_run })
    }
}

/// What VACUUM did (or, on a dry run, would do).
#[derive(Debug, Clone)]
pub struct VacuumReport {
    pub files: u64,
    pub retain: Duration,
    pub dry_run: bool,
}

/// The latest version of a table, listing its log only from the last checkpoint on: a log of
/// thousands of commits costs one small read, not a listing of all of them.
async fn latest_of(table: &DeltaTable) -> Result<u64> {
    use object_store::ObjectStoreExt;
    let store = table.log_store();
    let hint = store.log_path().clone().join("_last_checkpoint");
    let start = match store.object_store(None).get(&hint).await {
        Ok(got) => got
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v.get("version").and_then(Value::as_u64))
            .unwrap_or(0),
        Err(_) => 0,
    };
    match store.get_latest_version(start).await {
        Ok(v) => Ok(v),
        // A stale hint (the checkpoint's commit cleaned up): list from the start.
        Err(_) if start > 0 => Ok(store.get_latest_version(0).await?),
        Err(e) => Err(e.into()),
    }
}

/// Reads one commit's `commitInfo` from the log; `None` if that log entry is gone.
async fn read_commit(table: &DeltaTable, version: u64) -> Result<Option<Commit>> {
    let Some(bytes) = table.log_store().read_commit_entry(version).await? else { return Ok(None) };
    let mut commit =
        Commit { version, timestamp: None, operation: None, parameters: None, metrics: None, added_records: None };
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(Value::Object(mut action)) = serde_json::from_slice::<Value>(line) else { continue };
        if let Some(add) = action.get("add") {
            let stats = add.get("stats").and_then(Value::as_str).and_then(|s| serde_json::from_str::<Value>(s).ok());
            if let Some(n) = stats.and_then(|s| s.get("numRecords").and_then(Value::as_i64)) {
                commit.added_records = Some(commit.added_records.unwrap_or(0) + n);
            }
            continue;
        }
        let Some(Value::Object(mut info)) = action.remove("commitInfo") else { continue };
        let millis = info.get("inCommitTimestamp").and_then(Value::as_i64).or_else(|| info.get("timestamp").and_then(Value::as_i64));
        commit.timestamp = millis.and_then(|m| Utc.timestamp_millis_opt(m).single());
        commit.operation = info.remove("operation").and_then(|v| v.as_str().map(str::to_string));
        commit.parameters = info.remove("operationParameters");
        commit.metrics = info.remove("operationMetrics");
    }
    Ok(Some(commit))
}

/// What commits after some version did to a table, as far as a reader that only wants new rows
/// cares.
#[derive(Debug, Default)]
pub struct Appended {
    /// Data files added, as paths relative to the table root (URL-decoded). Files a compaction
    /// wrote (`dataChange: false`) hold rows already there, and are left out.
    pub files: Vec<object_store::path::Path>,
    /// False if any commit removed data, changed the schema, or wrote a partitioned file: the
    /// new rows alone do not describe the change.
    pub append_only: bool,
    /// False if every commit only rearranged files (OPTIMIZE) or was cleaned up.
    pub data_changed: bool,
}

impl Warehouse {
    /// The data files commits `from + 1 ..= to` added, and whether they only appended.
    pub async fn appended(&self, name: &TableName, from: u64, to: u64) -> Result<Appended> {
        let table = self.unloaded(name)?;
        let mut out = Appended { files: Vec::new(), append_only: true, data_changed: false };
        let changes_data = |a: &Value| a.get("dataChange").and_then(Value::as_bool) != Some(false);
        for version in from + 1..=to {
            let Some(bytes) = table.log_store().read_commit_entry(version).await? else {
                out.append_only = false;
                out.data_changed = true;
                continue;
            };
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let Ok(Value::Object(action)) = serde_json::from_slice::<Value>(line) else { continue };
                if let Some(add) = action.get("add").filter(|a| changes_data(a)) {
                    out.data_changed = true;
                    let partitioned = add.get("partitionValues").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
                    match add.get("path").and_then(Value::as_str).map(object_store::path::Path::from_url_path) {
                        Some(Ok(path)) if !partitioned => out.files.push(path),
                        _ => out.append_only = false,
                    }
                } else if action.get("remove").is_some_and(changes_data) || action.contains_key("metaData") {
                    out.append_only = false;
                    out.data_changed = true;
                }
            }
        }
        Ok(out)
    }

    /// The object store rooted at a table, to read its data files directly.
    pub fn table_store(&self, name: &TableName) -> Result<deltalake::logstore::ObjectStoreRef> {
        Ok(self.unloaded(name)?.log_store().object_store(None))
    }
}

/// The `{table: version}` map of a dataset, in a stable order.
pub type PinnedVersions = std::collections::BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(TableAt::split("t"), ("t", TableAt::Latest));
        assert_eq!(TableAt::split("t@v12"), ("t", TableAt::Version(12)));
        let t = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap() + chrono::Duration::milliseconds(123);
        let name = TableAt::Timestamp(t).name_for("t");
        assert_eq!(name, "t@20250601000000123");
        assert_eq!(TableAt::split(&name), ("t", TableAt::Timestamp(t)));
        assert_eq!(TableAt::split("a@b"), ("a@b", TableAt::Latest));
    }
}
