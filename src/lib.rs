//! hindsight: a SQL-native feature store and model-evaluation engine over Delta Lake, spoken
//! over the PostgreSQL wire protocol.
//!
//! The modules, outermost first:
//! - `server`: accept loop, connection limit, TLS, graceful shutdown. No SQL.
//! - `wire`: the PostgreSQL protocol (startup and SCRAM, pgwire handlers, Postgres types, COPY
//!   framing, cancel and statement timeouts). No planning.
//! - `security`: users and SCRAM verifiers, roles (judged on the logical plan), TLS setup.
//! - `metrics`: Prometheus counters and histograms, and their `/metrics` endpoint.
//! - `engine`: the process-wide state every session is cut from: the warehouse, the online
//!   indexes, and a template of the DataFusion session with every extension registered once.
//! - `session`: one DataFusion context per connection; runs a statement, intercepting the DDL
//!   and DML plans that must become Delta operations.
//! - `commands`: every kind of statement as a command that says its role, whether it writes,
//!   its result columns and how it runs; `classify` routes a parsed statement to one.
//! - `sql`: parsing (PostgreSQL plus time travel and our statements), routing, AST rewrites
//!   (AS OF, dataset pinning); session settings.
//! - `copy`: COPY input formats and the one-commit upload.
//! - `features`: point-in-time features as DataFusion extensions (the ASOF JOIN operator).
//! - `evaluation`: metric and drift aggregates, `drift(...)`, evaluation definitions and runs.
//! - `scheduler`: when evaluations run (cron, catch-up, retries, ON COMMIT), inside `serve`.
//! - `datasets`: CREATE DATASET / REPRODUCE DATASET, pinned versions and the content hash.
//! - `catalog`: the warehouse of Delta tables, their versions and history, the metadata tables,
//!   and the DataFusion catalog and table providers over them.
//! - `demo`: the deterministic credit-scoring demo warehouse.
//! - `limits`: what bounds one statement: thread stacks and expression depth, the server's
//!   memory pool, functions whose output outgrows their input, engine settings sessions may set.
//! - `config`, `error`: settings from flags/env/TOML; one error type with SQLSTATEs.

pub mod catalog;
pub mod commands;
pub mod config;
pub mod copy;
pub mod datasets;
pub mod demo;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod features;
pub mod limits;
mod macros;
pub mod metrics;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod session;
pub mod sql;
pub mod wire;

pub use error::{Error, Result};
