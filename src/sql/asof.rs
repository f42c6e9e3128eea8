//! AST rewrite for ASOF JOIN: DataFusion's SQL planner does not plan `JoinOperator::AsOf`, so
//! `l ASOF JOIN r MATCH_CONDITION (c) ON k` becomes `l LEFT JOIN r ON __hs_asof_match(c) AND k`,
//! which the planner resolves like any join and `features::asof::AsofJoinRule` turns into the
//! ASOF operator.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, JoinConstraint, JoinOperator, Select, Statement, TableFactor, TableWithJoins, VisitMut, VisitorMut,
};

use super::build;
use crate::error::{Error, Result};

/// The function that marks an ASOF match condition inside a LEFT JOIN's ON clause.
pub const MARKER: &str = "__hs_asof_match";

/// The function that marks a CREATED visibility condition (`features::asof`'s module doc).
pub const CREATED_MARKER: &str = "__hs_asof_created";

/// Rewrites every ASOF JOIN of a statement.
pub fn rewrite(stmt: &mut Statement) -> Result<()> {
    struct Rewrite(Option<Error>);
    impl VisitorMut for Rewrite {
        type Break = ();
        fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
            for t in &mut select.from {
                if let Err(e) = rewrite_joins(t) {
                    self.0 = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::NestedJoin { table_with_joins, .. } = f {
                if let Err(e) = rewrite_joins(table_with_joins) {
                    self.0 = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut r = Rewrite(None);
    let _ = VisitMut::visit(stmt, &mut r);
    r.0.map_or(Ok(()), Err)
}

fn rewrite_joins(t: &mut TableWithJoins) -> Result<()> {
    for join in &mut t.joins {
        let JoinOperator::AsOf { match_condition, constraint } = &join.join_operator else { continue };
        let marker = build::call(MARKER, vec![match_condition.clone()]);
        let on = match constraint {
            JoinConstraint::On(keys) => build::binary(marker, BinaryOperator::And, keys.clone()),
            JoinConstraint::None => marker,
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "ASOF JOIN takes ON with equalities, not {other:?}; write ON l.k = r.k"
                )));
            }
        };
        join.join_operator = JoinOperator::Left(JoinConstraint::On(on));
    }
    Ok(())
}
