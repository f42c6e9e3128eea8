//! How this server commits to a Delta table: how often a commit that lost a race retries,
//! what it records of the version it read (for `rewrites::check`), and one writer per table at a
//! time. The SQL write path (`sink`), compaction, RESTORE and CREATE DATASET all commit this way.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;

/// How often a commit that lost the race for a version to another writer tries the next one.
/// Only that race is retried (delta-rs fails a real conflict at once), so blind appends from many
/// clients at once all land; delta-rs's default of 15 ran out with 16 clients appending.
const COMMIT_RETRIES: usize = 1000;

/// How every commit is made. A commit that rewrites files records the version it read
/// (`read`), so that `rewrites::check` can refuse it if another commit removed them since.
pub(super) fn commit_properties(read: Option<u64>) -> CommitProperties {
    let properties = CommitProperties::default().with_max_retries(COMMIT_RETRIES);
    match read {
        Some(v) => properties.with_metadata([("readVersion".to_string(), serde_json::json!(v))]),
        None => properties,
    }
}

/// One writer per table at a time within this warehouse's server. Concurrent commits to one
/// table would otherwise race for each version, and every loser re-reads the log and tries
/// again: with 16 clients appending, most of the work was retries. Writers in other servers
/// still race, and retry as above.
#[derive(Debug, Default)]
pub(super) struct WriteLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl WriteLocks {
    pub(super) async fn table(&self, table: &DeltaTable) -> tokio::sync::OwnedMutexGuard<()> {
        self.url(table.table_url().as_str()).await
    }

    /// The lock of the table at `url`, which may not exist yet (see `Warehouse::creation_lock`).
    pub(super) async fn url(&self, url: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(url.trim_end_matches('/').to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}
