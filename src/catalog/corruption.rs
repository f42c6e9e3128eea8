//! A table whose log cannot be read fails alone, and says which table and which log entry.
//!
//! Owns: telling a broken table (XX001, as PostgreSQL reports a corrupt page) from one that is
//! missing or a store that is unreachable, and finding the entry that broke it. Must not:
//! repair anything; an operator decides what to do with a broken entry.
//!
//! delta-rs reports a broken log as a kernel or JSON error that names neither the table nor the
//! file, so on that (rare) path the table's log entries since its last checkpoint are read one
//! by one to find the first that is empty or not JSON.

use deltalake::DeltaTableError;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::{TableName, Warehouse};
use crate::error::Error;

/// Whether a failure to open a table means its log is broken, rather than that the table is
/// not there or its store could not be reached (which keep their own errors).
pub(super) fn is_corruption(e: &DeltaTableError) -> bool {
    !matches!(
        e,
        DeltaTableError::ObjectStore { .. }
            | DeltaTableError::NotATable(_)
            | DeltaTableError::InvalidTableLocation(_)
            | DeltaTableError::InvalidVersion(_)
            | DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction { .. }
            | DeltaTableError::Io { .. }
    )
}

impl Warehouse {
    /// The error for a table that failed to open with `e`: XX001 naming the table and its first
    /// broken log entry when the log is broken, `e` as it is otherwise.
    pub(super) async fn unreadable(&self, name: &TableName, e: DeltaTableError) -> Error {
        if !is_corruption(&e) {
            return e.into();
        }
        let detail = match self.first_broken_entry(name).await {
            Some(found) => found,
            None => format!("its log cannot be read: {}", first_line(&crate::error::delta_message(&e))),
        };
        tracing::error!(table = %name, %detail, "a table's log is corrupt; statements that read it fail until it is repaired");
        Error::DataCorrupted(format!("table {name} is corrupt: {detail}"))
    }

    /// The first log entry after the last checkpoint that is empty or not JSON, described.
    pub(super) async fn first_broken_entry(&self, name: &TableName) -> Option<String> {
        let log = self.table_prefix(name).ok()?.join("_delta_log");
        let listing: Vec<_> = self.store.list(Some(&log)).try_collect().await.ok()?;
        let version = |file: &str| file.split('.').next().and_then(|v| v.parse::<u64>().ok());
        let checkpoint = listing
            .iter()
            .filter_map(|m| m.location.filename().filter(|f| f.contains(".checkpoint")).and_then(version))
            .max();
        let mut commits: Vec<_> = listing
            .iter()
            .filter(|m| m.location.filename().is_some_and(|f| f.ends_with(".json") && !f.starts_with('_')))
            .filter(|m| m.location.filename().and_then(version).is_some_and(|v| checkpoint.is_none_or(|c| v > c)))
            .collect();
        commits.sort_by_key(|m| m.location.filename().and_then(version));
        for meta in commits {
            let file = format!("{}/_delta_log/{}", name.table, meta.location.filename().unwrap_or_default());
            if meta.size == 0 {
                return Some(format!("its log entry {file} is empty (0 bytes)"));
            }
            let bytes = self.store.get(&meta.location).await.ok()?.bytes().await.ok()?;
            for (n, line) in bytes.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
                if let Err(e) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line) {
                    return Some(format!("its log entry {file} is not a Delta commit (line {}: {e})", n + 1));
                }
            }
        }
        None
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
