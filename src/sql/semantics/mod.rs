//! PostgreSQL's meaning where DataFusion's differs: the differential test
//! (`tests/it/postgres.rs`, `sql/postgres/`) found each of these, and each fix names the
//! DataFusion behaviour it corrects.
//!
//! Owns: syntax rewrites before planning (`rewrites`), an analyzer rule for arithmetic and
//! casts (`arithmetic`), one before type coercion for the types PostgreSQL gives literals and
//! date arithmetic (`types`), and functions registered over DataFusion's of the same name
//! (`functions`, `ordered_set`), floating-point aggregates that do not depend on row order
//! (`exact`), and the `json`/`jsonb` types (`json`). Must not: touch storage or session state.

use datafusion::common::{DFSchema, Result};
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan};

pub mod arithmetic;
pub mod exact;
pub mod functions;
pub mod json;
pub mod ordered_set;
pub mod rewrites;
pub mod types;

/// The session's time zone as DataFusion names it (`execution.time_zone`, set in `session`):
/// a timestamptz made here carries it.
pub const SESSION_ZONE: &str = "+00:00";

/// Rewrites a plan's nodes bottom-up, subqueries included. A rewrite may change an
/// expression's type, so once a node has changed, it and every node visited after it (its
/// ancestors among them) recompute their schemas. (A VALUES node keeps the schema it was given;
/// `node` builds it.)
fn rewrite_plan(plan: LogicalPlan, mut node: impl FnMut(LogicalPlan) -> Result<Transformed<LogicalPlan>>) -> Result<LogicalPlan> {
    let mut changed = false;
    plan.transform_up_with_subqueries(|plan| {
        let rewritten = node(plan)?;
        changed |= rewritten.transformed;
        if changed && !matches!(rewritten.data, LogicalPlan::Values(_)) {
            rewritten.map_data(LogicalPlan::recompute_schema)
        } else {
            Ok(rewritten)
        }
    })
    .map(|t| t.data)
}

/// Rewrites each expression of one plan node, keeping the output name of each that changes.
fn rewrite_expressions(plan: LogicalPlan, mut f: impl FnMut(Expr) -> Result<Transformed<Expr>>) -> Result<Transformed<LogicalPlan>> {
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|e| {
        let saved = names.save(&e);
        let rewritten = f(e)?;
        Ok(if rewritten.transformed { Transformed::yes(saved.restore(rewritten.data)) } else { rewritten })
    })
}

/// The columns a plan node's expressions may refer to: its inputs' (a leaf's own).
fn input_schema(plan: &LogicalPlan) -> DFSchema {
    let mut schema = DFSchema::empty();
    for input in plan.inputs() {
        schema.merge(input.schema());
    }
    if plan.inputs().is_empty() {
        schema.merge(plan.schema());
    }
    schema
}
