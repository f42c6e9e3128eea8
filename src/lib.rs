//! hindsight: a SQL-native feature store and model-evaluation engine over Delta Lake, spoken
//! over the PostgreSQL wire protocol.
//!
//! The modules, outermost first; each names only modules below it (README, Layout;
//! `tests/it/layout.rs` checks it):
//! - `server`, `scheduler`, `demo`: the process: accept loop, connection limit, TLS, graceful
//!   shutdown; when evaluations run (cron, catch-up, retries, ON COMMIT); the demo warehouse.
//! - `wire`: the PostgreSQL protocol (startup and SCRAM, pgwire handlers, Postgres values, COPY
//!   framing, cancel and statement timeouts). No planning.
//! - `commands`: every kind of statement as a command that says its role, its kind, whether it
//!   writes, its result columns and how it runs; `classify` routes a parsed statement to one and
//!   `run` applies the checks.
//! - `session`: one connection's state and DataFusion context; plans statements (implementing
//!   `sql::Planner`) and turns DDL and DML plans into Delta operations.
//! - `engine`: the process-wide state every session is cut from: the warehouse, the online
//!   indexes, and a template of the DataFusion session with every extension registered once.
//! - `evaluation`: metric and drift aggregates, `drift(...)`, evaluation definitions and runs.
//! - `datasets`: CREATE DATASET / REPRODUCE DATASET, pinned versions and the content hash.
//! - `features`: point-in-time features as DataFusion extensions (the ASOF JOIN operator),
//!   feature views, `historical_features`, the online index.
//! - `sql`: parsing (PostgreSQL plus time travel and our statements), AST rewrites and builders,
//!   the `Planner` trait the domain modules plan through; session settings; pg_catalog.
//! - `config`, `copy`: settings from flags/env/TOML; COPY formats and the one-commit upload.
//! - `catalog`: the warehouse of Delta tables, their versions and history, commits, the
//!   metadata tables, and the DataFusion catalog and table providers over them.
//! - `limits`: what bounds one statement: thread stacks and expression depth, the server's
//!   memory pool, functions whose output outgrows their input, engine settings sessions may set.
//! - `security`, `metrics`: users, SCRAM verifiers, roles (judged on the logical plan), TLS;
//!   Prometheus counters and histograms.
//! - `error`: one error type with SQLSTATEs.

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
