//! A commit that removes files must find them still there.
//!
//! Owns: the check every commit goes through before it is written (from the log store in
//! `log_engine`): none of the files it removes may have been removed by a commit after the
//! version it read. Must not: write or retry anything itself.
//!
//! Why: delta-rs's conflict checker ignores removals marked `dataChange: false` when it compares
//! a losing commit with the winners (delta-rs #3982 relaxed the delete/delete check along with
//! the read checks). Two compactions of the same files, from two servers, then both committed:
//! each re-added its copy of the rows, and 200 appended rows read back as 423. A DELETE planned
//! before a compaction and committed after it was lost the same way. Delta's protocol (Spark's
//! `ConcurrentDeleteDeleteException`) fails the second commit; so do we, with 40001.
//!
//! Each rewrite records the version it read as the commit's `readVersion` (Delta's own field,
//! see `commits::commit_properties`); commits without one (blind appends, table creation) and
//! commits that remove nothing are not checked.
//!
//! A transaction block's commit (`blocks`) carries the block's id; it is refused in the same way
//! if a commit after the version it read already carries that id, so that two servers finishing
//! the same block's record cannot both commit it. Each attempt is judged against exactly the
//! versions before the one it tries to take, and a commit file is written only if absent, so a
//! commit that passes can no longer be overtaken.

use std::collections::HashSet;

use deltalake::kernel::Version;
use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
use deltalake::logstore::{CommitOrBytes, LogStore};
use object_store::ObjectStoreExt;

/// Refuses to write `version` if a commit after the commit's `readVersion` already removed a
/// file the commit removes.
pub(super) async fn check(store: &dyn LogStore, version: Version, commit: &CommitOrBytes) -> Result<(), TransactionError> {
    let bytes = match commit {
        CommitOrBytes::LogBytes(b) => b.clone(),
        CommitOrBytes::TmpCommit(path) => {
            let store = store.object_store(None);
            store.get(path).await.map_err(|e| TransactionError::ObjectStore { source: e })?.bytes().await.map_err(|e| TransactionError::ObjectStore { source: e })?
        }
    };
    let (removes, read_version) = removes_and_read_version(&bytes);
    let block = block_marker(&bytes);
    let Some(read) = read_version.filter(|_| !removes.is_empty() || block.is_some()) else { return Ok(()) };
    for v in read + 1..version {
        let Some(winner) = store.read_commit_entry(v).await.map_err(|e| TransactionError::LogStoreError {
            msg: format!("reading commit {v} to check a rewrite against it"),
            source: Box::new(e),
        })?
        else {
            // A version between the two that cannot be read: nothing is known about it.
            return Err(TransactionError::CommitConflict(CommitConflictError::ConcurrentDeleteDelete));
        };
        if let Some(marker) = &block {
            if winner.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                tracing::info!(version, winner = v, "a transaction block's commit is already in the log; refusing it again");
                return Err(TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction));
            }
        }
        let (theirs, _) = removes_and_read_version(&winner);
        if let Some(path) = theirs.iter().find(|p| removes.contains(*p)) {
            tracing::info!(version, winner = v, file = %path, "a rewrite lost its files to an earlier commit; refusing it");
            return Err(TransactionError::CommitConflict(CommitConflictError::ConcurrentDeleteDelete));
        }
    }
    Ok(())
}

/// `"hindsight.block":"<id>"` as it appears in the commitInfo of a block's commit, if it is one.
fn block_marker(commit: &[u8]) -> Option<String> {
    let info = commit.split(|b| *b == b'\n').filter(|l| !l.is_empty()).find_map(|l| {
        serde_json::from_slice::<serde_json::Value>(l).ok()?.get("commitInfo").cloned()
    })?;
    let id = info.get(super::blocks::BLOCK_KEY)?.as_str()?.to_string();
    Some(format!("\"{}\":\"{id}\"", super::blocks::BLOCK_KEY))
}

/// The paths a commit removes, and the version it says it read.
fn removes_and_read_version(commit: &[u8]) -> (HashSet<String>, Option<Version>) {
    let mut removes = HashSet::new();
    let mut read_version = None;
    for line in commit.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        if let Some(path) = action.pointer("/remove/path").and_then(|p| p.as_str()) {
            removes.insert(path.to_string());
        }
        if let Some(v) = action.pointer("/commitInfo/readVersion").and_then(|v| v.as_u64()) {
            read_version = Some(v);
        }
    }
    (removes, read_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_removes_and_the_read_version() {
        let commit = br#"{"commitInfo":{"timestamp":1,"operation":"OPTIMIZE","readVersion":7}}
{"remove":{"path":"part-1.parquet","dataChange":false}}
{"add":{"path":"part-2.parquet","dataChange":false}}
{"remove":{"path":"part-3.parquet","dataChange":true}}
"#;
        let (removes, read) = removes_and_read_version(commit);
        assert_eq!(read, Some(7));
        assert_eq!(removes, HashSet::from(["part-1.parquet".to_string(), "part-3.parquet".to_string()]));
        assert_eq!(removes_and_read_version(b"{\"add\":{\"path\":\"x\"}}\n"), (HashSet::new(), None));
    }
}
