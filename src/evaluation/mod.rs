//! Evaluation (DESIGN.md section 3.5): model-quality and drift statistics as SQL aggregates,
//! and evaluations, named queries run per time window.
//!
//! Owns: the metric definitions (`metrics`: ranking and mean losses; `classes`: threshold,
//! class and calibration metrics; `drift`: distribution tests and the `drift(...)` table
//! function), usable by any DataFusion session; evaluation definitions and schedule arithmetic
//! (`definition`); running one window and logging it (`run`). Must not: speak the wire
//! protocol, know sessions (it plans through `sql::Planner`), or decide when to run (the
//! `scheduler` does).

pub mod classes;
pub mod definition;
pub mod drift;
pub mod metrics;
pub mod run;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};

/// The values of each list in a partial-state column, as arrays.
fn lists(state: &ArrayRef) -> impl Iterator<Item = ArrayRef> + '_ {
    let l = state.as_list::<i32>();
    (0..l.len()).filter(move |&i| l.is_valid(i)).map(move |i| l.value(i))
}
