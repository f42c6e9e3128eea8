//! hindsight: a SQL-native feature store and model-evaluation engine over Delta Lake, spoken
//! over the PostgreSQL wire protocol.
//!
//! The modules, outermost first:
//! - `server`: accept loop, connection limit, graceful shutdown. No SQL.
//! - `wire`: the PostgreSQL protocol (pgwire handlers, Postgres types, COPY framing). No planning.
//! - `session`: one DataFusion context per connection; runs a statement, intercepting the DDL
//!   and DML plans that must become Delta operations.
//! - `sql`: parsing and routing of statements; session settings.
//! - `copy`: COPY input formats and the one-commit upload.
//! - `catalog`: the warehouse of Delta tables and its DataFusion catalog and table providers.
//! - `demo`: the deterministic credit-scoring demo warehouse.
//! - `config`, `error`: settings from flags/env/TOML; one error type with SQLSTATEs.

pub mod catalog;
pub mod config;
pub mod copy;
pub mod demo;
pub mod error;
pub mod server;
pub mod session;
pub mod sql;
pub mod wire;

pub use error::{Error, Result};
