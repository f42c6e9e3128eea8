//! PostgreSQL's meaning where DataFusion's differs: the differential test
//! (`tests/it/postgres.rs`, `sql/postgres/`) found each of these, and each fix names the
//! DataFusion behaviour it corrects.
//!
//! Owns: syntax rewrites before planning (`rewrites`), an analyzer rule for arithmetic and
//! casts (`arithmetic`), and functions registered over DataFusion's of the same name
//! (`functions`, `percentile`). Must not: touch storage or session state.

pub mod arithmetic;
pub mod functions;
pub mod percentile;
pub mod rewrites;
