//! Statements that compute without pause still stop when asked.
//!
//! A statement's timeout, a cancel request and a client hanging up (`wire::interrupt`) act when
//! the statement's task next returns to the runtime. DataFusion wraps each leaf in a
//! `CooperativeExec` that yields every 128 batches, but an operator that makes many batches
//! from one input batch (a cross join, a join on a skewed key, `unnest`) polls that leaf rarely:
//! under a sort, `generate_series(1, 100000) a, generate_series(1, 100000) b` ran for minutes
//! past a 3 s `statement_timeout` without yielding once. Wrapping those operators' output too
//! bounds the work between two yields to 128 output batches.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec};
use datafusion::physical_plan::unnest::UnnestExec;

/// Runs after DataFusion's own rules, as the last one.
#[derive(Debug, Default)]
pub struct YieldAfterAmplifiers;

fn amplifies(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<CrossJoinExec>()
        || plan.is::<NestedLoopJoinExec>()
        || plan.is::<HashJoinExec>()
        || plan.is::<SortMergeJoinExec>()
        || plan.is::<SymmetricHashJoinExec>()
        || plan.is::<UnnestExec>()
}

impl PhysicalOptimizerRule for YieldAfterAmplifiers {
    fn name(&self) -> &str {
        "yield_after_amplifiers"
    }

    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| {
            Ok(if amplifies(plan.as_ref()) {
                Transformed::yes(Arc::new(CooperativeExec::new(plan)) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(plan)
            })
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}
