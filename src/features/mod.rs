//! Point-in-time features: the ASOF JOIN operator (and, next, feature views,
//! `historical_features` and `online_features`).
//!
//! Owns: DataFusion extensions (a logical node, an analyzer rule, a physical planner and an
//! operator) usable by any DataFusion session. Must not: know about the wire protocol or sessions.

pub mod asof;
pub mod asof_exec;
