//! The memory statements may use: one pool for the whole server, and an optional limit per
//! statement on top of it.
//!
//! DataFusion's operators that hold data (sorts, hash joins and aggregates, the buffers of
//! repartitioning, aggregate states, our ASOF JOIN's spine) reserve it from their runtime's
//! memory pool before they allocate, and spill or fail with 53200 when it says no. A pool per
//! session would let 64 sessions each take the machine; so every session's runtime gets a
//! [`SessionPool`] over the server's one [`FairSpillPool`], sized from the machine (or
//! `memory_pool_mb`). Operators that can spill share what unspillable ones leave, fairly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{FairSpillPool, MemoryLimit, MemoryPool, MemoryReservation};

/// The share of the machine's (or the cgroup's) memory the pool gets unless configured: the
/// rest is for what no pool counts (the process itself, connections, cached snapshots, Parquet
/// footers, online indexes, rows being encoded for the wire).
const DEFAULT_SHARE: f64 = 0.5;

/// Used when the machine's memory cannot be read.
const FALLBACK_BYTES: usize = 2 << 30;

/// The pool size when none is configured: half of the memory this process may use.
pub fn default_pool_bytes() -> usize {
    available_memory().map_or(FALLBACK_BYTES, |bytes| (bytes as f64 * DEFAULT_SHARE) as usize)
}

/// The server-wide pool of `bytes`.
pub fn server_pool(bytes: usize) -> Arc<dyn MemoryPool> {
    Arc::new(FairSpillPool::new(bytes))
}

/// The memory this process may use: the machine's, or less if a cgroup limits it (as
/// containers and systemd units do).
pub fn available_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    [total, cgroup_limit()].into_iter().flatten().min()
}

/// The tightest memory limit of this process's cgroup and its ancestors (v2), or of its v1
/// memory cgroup.
fn cgroup_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut limits = Vec::new();
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.is_empty() {
            // cgroup v2: every level up to the root may set memory.max ("max" reads as none).
            let mut dir = std::path::PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            loop {
                limits.extend(read(&dir.join("memory.max").to_string_lossy()));
                if !dir.pop() || !dir.starts_with("/sys/fs/cgroup") {
                    break;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let dir = format!("/sys/fs/cgroup/memory{path}");
            // v1 reports "no limit" as a number near i64::MAX.
            limits.extend(read(&format!("{dir}/memory.limit_in_bytes")).filter(|b| *b < (1 << 60)));
        }
    }
    limits.into_iter().min()
}

/// One session's view of the server's pool: every reservation also counts against the
/// session's `memory_limit` (one statement runs at a time on a connection, so it is the
/// statement's limit).
#[derive(Debug)]
pub struct SessionPool {
    shared: Arc<dyn MemoryPool>,
    limit: Option<usize>,
    used: AtomicUsize,
}

impl SessionPool {
    pub fn new(shared: Arc<dyn MemoryPool>, limit: Option<usize>) -> Self {
        Self { shared, limit, used: AtomicUsize::new(0) }
    }
}

impl std::fmt::Display for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "session(limit: {:?}, used: {}) over {}", self.limit, self.used.load(Ordering::Relaxed), self.shared)
    }
}

impl MemoryPool for SessionPool {
    fn name(&self) -> &str {
        "hindsight_session"
    }

    fn register(&self, consumer: &datafusion::execution::memory_pool::MemoryConsumer) {
        self.shared.register(consumer)
    }

    fn unregister(&self, consumer: &datafusion::execution::memory_pool::MemoryConsumer) {
        self.shared.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        if let Some(limit) = self.limit {
            let used = self.used.load(Ordering::Relaxed);
            if used + additional > limit {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "out of memory: {} needs {} more, and this statement already holds {} of its memory_limit_mb of {}",
                    reservation.consumer().name(),
                    mib(additional),
                    mib(used),
                    mib(limit)
                )));
            }
        }
        self.shared.try_grow(reservation, additional).map_err(|_| {
            let limit = match self.shared.memory_limit() {
                MemoryLimit::Finite(b) => mib(b),
                _ => "unknown".into(),
            };
            DataFusionError::ResourcesExhausted(format!(
                "out of memory: {} needs {} more, and the server's memory pool of {} is in use ({} reserved by all statements)",
                reservation.consumer().name(),
                mib(additional),
                limit,
                mib(self.shared.reserved())
            ))
        })?;
        self.used.fetch_add(additional, Ordering::Relaxed);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        match (self.limit, self.shared.memory_limit()) {
            (Some(mine), MemoryLimit::Finite(all)) => MemoryLimit::Finite(mine.min(all)),
            (Some(mine), _) => MemoryLimit::Finite(mine),
            (None, shared) => shared,
        }
    }
}

/// Bytes of constants DataFusion may repeat on every row of one batch, per statement.
const REPEATED_CONSTANTS_PER_BATCH: usize = 64 << 20;

/// The bytes of every constant in a plan (literals and bound parameters), subqueries included.
pub fn constant_bytes(plan: &datafusion::logical_expr::LogicalPlan) -> usize {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut total = 0usize;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let datafusion::logical_expr::Expr::Literal(v, _) = e {
                    total = total.saturating_add(v.size());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    total
}

/// The batch size a statement with `constants` bytes of constants runs with.
///
/// A constant is one value in the plan, but every batch repeats it on each of its rows (a
/// projection of `'<a 60 MB string>'` over a table made 8,192 copies of it per batch, outside any
/// pool), and so does any function that combines it with a column. PostgreSQL computes a row at
/// a time; here a statement whose constants are large runs in batches small enough that its
/// repeated constants stay under 64 MiB a batch.
pub fn batch_size_for_constants(constants: usize, batch_size: usize) -> usize {
    if constants.saturating_mul(batch_size) <= REPEATED_CONSTANTS_PER_BATCH {
        batch_size
    } else {
        (REPEATED_CONSTANTS_PER_BATCH / constants.max(1)).clamp(1, batch_size)
    }
}

pub(crate) fn mib(bytes: usize) -> String {
    if bytes >= 1 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{bytes} bytes") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_statement_limit_and_the_server_pool_both_bound_a_session() {
        let shared = server_pool(100);
        let a: Arc<dyn MemoryPool> = Arc::new(SessionPool::new(shared.clone(), Some(60)));
        let b: Arc<dyn MemoryPool> = Arc::new(SessionPool::new(shared.clone(), None));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(50).unwrap();
        assert!(ra.try_grow(20).is_err(), "over the statement's limit");
        rb.try_grow(50).unwrap();
        assert!(rb.try_grow(10).is_err(), "over the server's pool");
        drop(ra);
        assert_eq!(shared.reserved(), 50);
        rb.try_grow(40).unwrap();
    }

    #[test]
    fn large_constants_shrink_batches() {
        assert_eq!(batch_size_for_constants(100, 8192), 8192);
        assert_eq!(batch_size_for_constants(60 << 20, 8192), 1);
        assert_eq!(batch_size_for_constants(1 << 20, 8192), 64);
    }

    #[test]
    fn the_machine_has_memory() {
        assert!(available_memory().is_some_and(|b| b > 64 << 20));
    }
}
