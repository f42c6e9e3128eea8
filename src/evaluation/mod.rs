//! Evaluation: model-quality metrics as SQL aggregates (and, next, drift statistics and
//! scheduled evaluations; see DESIGN.md section 3.5).
//!
//! Owns: the metric definitions (`metrics`: ranking and mean losses; `classes`: threshold,
//! class and calibration metrics), usable by any DataFusion session. Must not: speak
//! the wire protocol or know about sessions.

pub mod classes;
pub mod drift;
pub mod metrics;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};

/// The values of each list in a partial-state column, as arrays.
fn lists(state: &ArrayRef) -> impl Iterator<Item = ArrayRef> + '_ {
    let l = state.as_list::<i32>();
    (0..l.len()).filter(move |&i| l.is_valid(i)).map(move |i| l.value(i))
}
