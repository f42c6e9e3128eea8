//! The PostgreSQL wire protocol, through pgwire: startup, simple and extended query, COPY.
//!
//! Owns: protocol state per connection, Postgres types (`encode.rs` out, `params.rs` in), and
//! turning our errors into ErrorResponses with their SQLSTATE.
//! Must not: plan queries or open tables; it hands parsed statements to a `Session`.

mod encode;
mod handler;
mod params;

pub use encode::{pg_type, pg_type_name};
pub use handler::{Connection, Handlers};
