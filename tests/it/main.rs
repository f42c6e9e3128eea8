//! Integration tests: one binary (each test binary links all of DataFusion), every test against a
//! real server on a free loopback port over a temporary warehouse, through real clients.

mod harness;

mod asof;
mod clients;
mod compaction;
mod copy;
mod datasets;
mod drift;
mod process;
mod errors;
mod evaluations;
mod features;
mod history;
mod layout;
mod hostile;
mod limits;
mod metrics;
mod observability;
mod online;
mod postgres;
mod psql;
mod reliability;
mod security;
mod slt;
mod transactions;
mod wire;
