//! The latest snapshot of every table this server has opened, brought forward on each open.
//!
//! Owns: keeping one `DeltaTable` (log segment and materialised file list) per table between
//! statements, and telling a cached table from a newer table of the same name.
//! Must not: decide which version a statement reads (that is `Warehouse::load` and `versions`).
//!
//! Opening a table from scratch replays its log from the last checkpoint: with delta-rs's
//! default of a checkpoint every 100 commits, a busy table costs up to 99 JSON files per
//! statement, read again by every statement. Bringing a cached snapshot forward reads only the
//! commits since it was cached, usually none or one. Each statement still lists the log, so a
//! commit by another server is seen by the next statement, as before.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;

use super::TableName;

/// Which table a name stands for: the stamp of its first commit. A table dropped and created
/// again under the same name has a new first commit, so its cached snapshot is not reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Incarnation {
    pub(super) modified: DateTime<Utc>,
    pub(super) e_tag: Option<String>,
    pub(super) size: u64,
}

#[derive(Debug, Default)]
pub(super) struct Snapshots(Mutex<HashMap<TableName, (Incarnation, DeltaTable)>>);

impl Snapshots {
    /// A copy of the cached table (cheap: its state is shared) if it is this incarnation.
    pub(super) fn get(&self, name: &TableName, incarnation: &Incarnation) -> Option<DeltaTable> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).filter(|(i, _)| i == incarnation).map(|(_, t)| t.clone())
    }

    /// Keeps `table` unless a newer version of the same incarnation is already kept.
    pub(super) fn put(&self, name: &TableName, incarnation: Incarnation, table: &DeltaTable) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let newer_kept = map.get(name).is_some_and(|(i, kept)| *i == incarnation && kept.version() > table.version());
        if !newer_kept {
            map.insert(name.clone(), (incarnation, table.clone()));
        }
    }

    pub(super) fn forget(&self, name: &TableName) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }
}
