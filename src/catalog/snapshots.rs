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
//!
//! A snapshot brought forward is not compacted: delta-rs keeps each commit's files as a batch of
//! its own, with its own copy of the log schema, and every scan of the table walks all of them.
//! So after [`REOPEN_AFTER_COMMITS`] the table is opened afresh, from the checkpoint delta-rs
//! writes every 100 commits, which holds up to 1,000 files per batch. Without that the server's
//! memory and each scan's cost grew with every commit since the table was first opened.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::Version;

use super::TableName;

/// Which table a name stands for: the stamp of its first commit. A table dropped and created
/// again under the same name has a new first commit, so its cached snapshot is not reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Incarnation {
    pub(super) modified: DateTime<Utc>,
    pub(super) e_tag: Option<String>,
    pub(super) size: u64,
}

/// How many commits a snapshot is brought forward by before the table is opened afresh.
const REOPEN_AFTER_COMMITS: Version = 100;

/// A kept table, and the version it was last opened afresh at.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub(super) table: DeltaTable,
    pub(super) opened_at: Version,
}

#[derive(Debug, Default)]
pub(super) struct Snapshots(Mutex<HashMap<TableName, (Incarnation, Cached)>>);

impl Snapshots {
    /// A copy of the kept table (cheap: its state is shared) if it is this incarnation and has
    /// not been brought forward by [`REOPEN_AFTER_COMMITS`] yet.
    pub(super) fn get(&self, name: &TableName, incarnation: &Incarnation) -> Option<Cached> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (kept_incarnation, cached) = map.get(name)?;
        let brought_forward = cached.table.version().unwrap_or(0).saturating_sub(cached.opened_at);
        (kept_incarnation == incarnation && brought_forward < REOPEN_AFTER_COMMITS).then(|| cached.clone())
    }

    /// Keeps `cached` unless a newer version of the same incarnation is already kept.
    pub(super) fn put(&self, name: &TableName, incarnation: Incarnation, cached: Cached) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let newer_kept = map
            .get(name)
            .is_some_and(|(i, kept)| *i == incarnation && kept.table.version() > cached.table.version());
        if !newer_kept {
            map.insert(name.clone(), (incarnation, cached));
        }
    }

    pub(super) fn forget(&self, name: &TableName) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }
}
