//! Evaluation: model-quality metrics as SQL aggregates (and, next, drift statistics and
//! scheduled evaluations; see DESIGN.md section 3.5).
//!
//! Owns: the metric definitions (`metrics`: ranking and mean losses; `classes`: threshold,
//! class and calibration metrics), usable by any DataFusion session. Must not: speak
//! the wire protocol or know about sessions.

pub mod classes;
pub mod metrics;
