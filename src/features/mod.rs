//! Point-in-time features: the ASOF JOIN operator, feature views, `historical_features` and
//! `online_features`.
//!
//! Owns: the DataFusion extensions behind ASOF JOIN (`asof`, `asof_exec`: usable by any
//! DataFusion session), feature view definitions (`views`), the expansion of
//! `historical_features(...)` into ASOF JOINs (`historical`), and the in-memory latest-value index
//! behind `online_features(...)` (`online`). Must not: speak the wire protocol or know sessions:
//! what it plans goes through `sql::Planner`.

pub mod asof;
pub mod asof_exec;
pub mod historical;
pub mod online;
pub mod views;
