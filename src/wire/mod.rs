//! The PostgreSQL wire protocol, through pgwire: startup and authentication, simple and extended
//! query, COPY, cancel requests and statement timeouts.
//!
//! Owns: protocol state per connection, Postgres types (`encode.rs` out, `params.rs` in), and
//! turning our errors into ErrorResponses with their SQLSTATE.
//! Must not: plan queries or open tables; it hands parsed statements to `commands`, which run
//! them against the connection's `Session`.

mod cancel;
mod encode;
mod handler;
mod interrupt;
mod params;
mod serve;
mod startup;

pub use encode::{pg_type, pg_type_name};
pub use handler::{Connection, Handlers};
pub use interrupt::Peer;
pub use serve::serve;
pub use startup::{Shared, TooManyConnections};
