//! Compaction: `OPTIMIZE t`, and the compaction of small files that follows writes.
//!
//! Owns: when and how a table's small data files are rewritten into fewer, larger ones (through
//! delta-rs's optimize builder). Must not: change a row, or commit anything but a rewrite.
//!
//! Every INSERT and COPY adds at least one Parquet file, and every statement plans over all the
//! files of the tables it reads, so without compaction the work and memory of each statement
//! grow with the number of writes since the table was created. After a write leaves a table with
//! `min_files` small files, a background task rewrites them (`auto`); `OPTIMIZE t` does the same
//! at once, up to the table's `delta.targetFileSize`.
//!
//! A compaction commit adds and removes files with `dataChange = false`: the same rows, so time
//! travel, datasets and their hashes see no change, the old files stay until VACUUM, and readers
//! of new rows (`online_features`, `ON COMMIT` evaluations) skip it. It takes the table's write
//! lock, so writers in this server never conflict with it; a writer in another server that
//! deletes or rewrites the same files makes one of the two fail (`rewrites`: never both, which
//! would duplicate the rows), and a failed background compaction is only logged (the next
//! write tries again).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::catalog::Session;
use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use deltalake::table::config::TablePropertiesExt;

use super::commits::{WriteLocks, commit_properties};
use super::{TableName, Warehouse};
use crate::error::{Error, Result};

/// Small files a table may gather before a write compacts them, unless configured otherwise
/// (Databricks' auto compaction starts at the same count).
pub const DEFAULT_AUTO_COMPACT_FILES: usize = 50;

/// The largest file background compaction writes. Files already this large are left alone, so
/// a table of many tiny appends rewrites at most this much per compaction instead of a file
/// growing towards `delta.targetFileSize` (100 MiB) again and again; `OPTIMIZE t` packs further.
const AUTO_TARGET_BYTES: u64 = 16 << 20;

/// What `OPTIMIZE` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizeReport {
    pub files_removed: u64,
    pub files_added: u64,
    pub bytes_removed: i64,
    pub bytes_added: i64,
}

impl From<&deltalake::operations::optimize::Metrics> for OptimizeReport {
    fn from(m: &deltalake::operations::optimize::Metrics) -> Self {
        Self {
            files_removed: m.num_files_removed,
            files_added: m.num_files_added,
            bytes_removed: m.files_removed.total_size,
            bytes_added: m.files_added.total_size,
        }
    }
}

/// The background compaction policy of one warehouse, and which of its tables are being
/// compacted now.
#[derive(Debug)]
pub struct AutoCompact {
    /// The warehouse's write locks, which a compaction takes like any writer.
    locks: Arc<WriteLocks>,
    /// 0: never compact in the background.
    min_files: AtomicUsize,
    /// Per table URL: `true` while a compaction runs, and the version before which a compaction
    /// that found nothing to do should not be tried again.
    tables: Mutex<HashMap<String, (bool, u64)>>,
}

impl AutoCompact {
    pub(super) fn new(min_files: usize, locks: Arc<WriteLocks>) -> Self {
        Self { locks, min_files: AtomicUsize::new(min_files), tables: Mutex::default() }
    }

    pub(super) fn locks(&self) -> &Arc<WriteLocks> {
        &self.locks
    }

    pub fn set_min_files(&self, n: usize) {
        self.min_files.store(n, Ordering::Relaxed);
    }

    /// Called with the table a write committed: starts a compaction in the background if the
    /// table has gathered enough small files and none is running for it.
    pub(super) fn after_write(self: &Arc<Self>, name: &TableName, table: &DeltaTable) {
        let min_files = self.min_files.load(Ordering::Relaxed);
        if min_files == 0 || !self.due(table, min_files) || !self.claim(table) {
            return;
        }
        let this = Arc::clone(self);
        let (name, table) = (name.clone(), table.clone());
        tokio::spawn(async move { this.run(name, table, min_files).await });
    }

    /// Whether the table has `min_files` files below the compaction target.
    fn due(&self, table: &DeltaTable, min_files: usize) -> bool {
        let Ok(state) = table.snapshot() else { return false };
        let target = auto_target(table).get();
        state.log_data().iter().filter(|f| (f.size() as u64) < target).count() >= min_files
    }

    /// Marks a compaction of the table as running, unless one is, or one found nothing to do
    /// few versions ago.
    fn claim(&self, table: &DeltaTable) -> bool {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tables.entry(table.table_url().to_string()).or_insert((false, 0));
        if entry.0 || table.version().unwrap_or_default() < entry.1 {
            return false;
        }
        entry.0 = true;
        true
    }

    fn release(&self, table: &DeltaTable, quiet_until: Option<u64>) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tables.entry(table.table_url().to_string()).or_insert((false, 0));
        entry.0 = false;
        if let Some(v) = quiet_until {
            entry.1 = v;
        }
    }

    /// Compacts until the table no longer has `min_files` small files. Writes that commit
    /// while this runs see it running and leave the compaction to it, so it checks again after
    /// each round, and once more after letting go, for a write that saw it just before.
    async fn run(self: Arc<Self>, name: TableName, mut table: DeltaTable, min_files: usize) {
        let count = |outcome: &'static str| {
            crate::metrics::METRICS.compactions.get_or_create(&crate::metrics::Outcome { outcome }).inc();
        };
        loop {
            let quiet_until = match compact(&self.locks, table.clone()).await {
                Ok((compacted, report)) if report.files_removed == 0 => {
                    // Small files no bin can join (between large ones): wait for more writes.
                    count("nothing_to_do");
                    table = compacted;
                    Some(table.version().unwrap_or_default() + min_files as u64)
                }
                Ok((compacted, report)) => {
                    count("compacted");
                    tracing::info!(table = %name, version = compacted.version(), files_removed = report.files_removed, files_added = report.files_added, "compacted");
                    table = compacted;
                    None
                }
                Err(e) => {
                    count("failed");
                    tracing::warn!(table = %name, error = %e, "background compaction failed; the next write tries again");
                    self.release(&table, None);
                    return;
                }
            };
            self.release(&table, quiet_until);
            if quiet_until.is_some()
                || table.update_incremental(None).await.is_err()
                || !self.due(&table, min_files)
                || !self.claim(&table)
            {
                return;
            }
        }
    }
}

/// One background compaction, up to `AUTO_TARGET_BYTES` per file, one bin at a time so that it
/// takes little from the statements running beside it.
async fn compact(locks: &WriteLocks, mut table: DeltaTable) -> Result<(DeltaTable, OptimizeReport)> {
    let _writing = locks.table(&table).await;
    // Writers that held the lock before us have moved the table on.
    table.update_incremental(None).await?;
    let target = auto_target(&table);
    let read = table.version();
    let (table, metrics) = table
        .optimize()
        .with_target_size(target)
        .with_max_concurrent_tasks(1)
        .with_commit_properties(commit_properties(read))
        .await?;
    let report = OptimizeReport::from(&metrics);
    Ok((table, report))
}

fn auto_target(table: &DeltaTable) -> NonZeroU64 {
    let configured = table.snapshot().map(|s| s.table_config().target_file_size().get()).unwrap_or(AUTO_TARGET_BYTES);
    NonZeroU64::new(configured.min(AUTO_TARGET_BYTES)).unwrap_or(NonZeroU64::MIN)
}

impl Warehouse {
    /// `OPTIMIZE t [ZORDER BY (c, ...)]`: rewrites the latest version's small files into files of
    /// up to `delta.targetFileSize`, or with ZORDER all of them, clustered by those columns.
    pub async fn optimize(&self, name: &TableName, zorder: Vec<String>, session: Arc<dyn Session>) -> Result<OptimizeReport> {
        let mut table = self.load_existing(name).await?;
        let _writing = self.write_locks.table(&table).await;
        table.update_incremental(None).await?;
        let schema = table.snapshot()?.schema();
        if let Some(missing) = zorder.iter().find(|c| schema.field(c.as_str()).is_none()) {
            return Err(Error::UndefinedColumn(format!("OPTIMIZE {name} ZORDER BY: {name} has no column {missing}")));
        }
        let kind = if zorder.is_empty() { OptimizeType::Compact } else { OptimizeType::ZOrder(zorder) };
        let read = table.version();
        let (_, metrics) = table
            .optimize()
            .with_type(kind)
            .with_session_state(session)
            .with_commit_properties(commit_properties(read))
            .await?;
        Ok(OptimizeReport::from(&metrics))
    }
}
