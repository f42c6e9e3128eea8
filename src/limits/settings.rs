//! Which of DataFusion's settings a session may change with `SET datafusion.<key> = ...`, and
//! within what bounds.
//!
//! Engine settings reach straight into how a statement runs: `batch_size = 1000000000` made the
//! next query allocate a billion-row batch. Readers and writers may change only the settings
//! listed here; admins may change any other setting too (not the `runtime` ones, which belong to
//! the server's configuration), but everyone stays within the bounds below.

use crate::error::{Error, Result};
use crate::security::Role;

/// What a setting's value may be.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// An integer in this range (inclusive).
    Int(u64, u64),
    /// `true` or `false`.
    Bool,
    /// Any value DataFusion accepts.
    Any,
}

/// The settings any session may change, with their bounds; `*` ends a prefix.
const ANY_ROLE: &[(&str, Bound)] = &[
    // Rows per batch: every operator sizes its buffers by it. DataFusion's default is 8,192.
    ("datafusion.execution.batch_size", Bound::Int(1, 1 << 20)),
    // Parallelism per statement; more partitions than this buys nothing and costs buffers each.
    ("datafusion.execution.target_partitions", Bound::Int(1, 256)),
    ("datafusion.execution.collect_statistics", Bound::Bool),
    ("datafusion.execution.coalesce_batches", Bound::Bool),
    ("datafusion.execution.parquet.pushdown_filters", Bound::Bool),
    ("datafusion.execution.parquet.reorder_filters", Bound::Bool),
    ("datafusion.explain.*", Bound::Any),
    ("datafusion.optimizer.prefer_hash_join", Bound::Bool),
    ("datafusion.optimizer.repartition_joins", Bound::Bool),
    ("datafusion.optimizer.repartition_aggregations", Bound::Bool),
    ("datafusion.optimizer.repartition_sorts", Bound::Bool),
    ("datafusion.optimizer.repartition_windows", Bound::Bool),
];

/// Settings bounded for admins too, beyond the ones above.
const ADMIN_BOUNDS: &[(&str, Bound)] = &[
    ("datafusion.execution.batch_size", Bound::Int(1, 1 << 20)),
    ("datafusion.execution.target_partitions", Bound::Int(1, 256)),
    ("datafusion.execution.planning_concurrency", Bound::Int(1, 256)),
    ("datafusion.execution.meta_fetch_concurrency", Bound::Int(1, 256)),
    ("datafusion.execution.sort_spill_reservation_bytes", Bound::Int(0, 1 << 30)),
    ("datafusion.execution.sort_in_place_threshold_bytes", Bound::Int(0, 1 << 30)),
    ("datafusion.optimizer.max_passes", Bound::Int(1, 100)),
    ("datafusion.sql_parser.recursion_limit", Bound::Int(1, 50)),
];

fn lookup<'a>(table: &'a [(&str, Bound)], key: &str) -> Option<&'a Bound> {
    table.iter().find_map(|(k, b)| match k.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix).then_some(b),
        None => (*k == key).then_some(b),
    })
}

/// Refuses `SET <key> = <value>` for an engine setting the role may not change, or a value out
/// of bounds. `key` is lowercase and starts with `datafusion.`.
pub fn check(key: &str, value: &str, role: Role) -> Result<()> {
    if key.starts_with("datafusion.runtime.") || key.starts_with("datafusion.catalog.") {
        return Err(Error::CantChangeNow(format!(
            "parameter \"{key}\" cannot be changed by a session: it is part of the server's configuration"
        )));
    }
    let bound = match (lookup(ANY_ROLE, key), role) {
        (Some(b), _) => *b,
        (None, Role::Admin) => lookup(ADMIN_BOUNDS, key).copied().unwrap_or(Bound::Any),
        (None, _) => {
            return Err(Error::InsufficientPrivilege(format!(
                "permission denied to set parameter \"{key}\": readers and writers may set only {}",
                ANY_ROLE.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let bad = |why: String| Error::InvalidParameter(format!("invalid value for parameter \"{key}\": \"{value}\": {why}"));
    match bound {
        Bound::Int(min, max) => {
            let n: u64 = value.trim().parse().map_err(|_| bad(format!("an integer from {min} to {max} is expected")))?;
            if n < min || n > max {
                return Err(bad(format!("it must be from {min} to {max}")));
            }
        }
        Bound::Bool => {
            if !matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "false" | "on" | "off") {
                return Err(bad("true or false is expected".into()));
            }
        }
        Bound::Any => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_roles() {
        assert!(check("datafusion.execution.batch_size", "4096", Role::Reader).is_ok());
        assert_eq!(check("datafusion.execution.batch_size", "1000000000", Role::Admin).unwrap_err().sqlstate(), "22023");
        assert_eq!(check("datafusion.execution.batch_size", "0", Role::Reader).unwrap_err().sqlstate(), "22023");
        assert_eq!(check("datafusion.optimizer.max_passes", "3", Role::Writer).unwrap_err().sqlstate(), "42501");
        assert!(check("datafusion.optimizer.max_passes", "3", Role::Admin).is_ok());
        assert!(check("datafusion.explain.format", "tree", Role::Reader).is_ok());
        assert_eq!(check("datafusion.runtime.memory_limit", "1T", Role::Admin).unwrap_err().sqlstate(), "55P02");
    }
}
