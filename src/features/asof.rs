//! `ASOF JOIN` as a DataFusion extension: the SQL front-end rewrites
//! `l ASOF JOIN r MATCH_CONDITION (l.ts >= r.ts) ON l.k = r.k` into a LEFT JOIN whose condition
//! wraps the match condition in the marker function `__hs_asof_match`; `AsofJoinRule` (an
//! analyzer rule) turns that join into the `AsofJoin` logical node; `AsofPlanner` maps the node
//! to `AsofJoinExec` (in `asof_exec`).
//!
//! Semantics: for each left row, the right row with equal keys whose match value is the greatest
//! `<=` (for `>=`; `<` for `>`) the left's, or the smallest `>=` (for `<=`; `>` for `<`). Left
//! rows without one keep NULLs. NULL keys and NULL match values never match. Ties on the match
//! value go to the right row that is greatest by its other columns, compared in order (NULLs
//! first): deterministic on every run and every partitioning. Output keeps the left's row order.
//!
//! `historical_features` adds a second marker, `__hs_asof_created(l.ts >= r.created)`: a right
//! row is then visible only from its creation time on, and ties on the match value go to the
//! latest created first.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchemaRef, Result as DfResult, plan_err};
use datafusion::error::DataFusionError;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::logical_plan::builder::build_join_schema;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction_owned;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Extension, JoinType, LogicalPlan, Operator, ScalarUDF,
    UserDefinedLogicalNode, UserDefinedLogicalNodeCore, Volatility, create_udf,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::asof_exec::{AsofJoinExec, Direction, JoinExprs};

pub use crate::sql::asof::{CREATED_MARKER, MARKER};

/// `__hs_asof_match(cond)` and `__hs_asof_created(cond)`: only markers. `AsofJoinRule` removes
/// every call; one that survives (outside an ASOF JOIN) fails instead of filtering silently.
pub fn marker_udfs() -> [ScalarUDF; 2] {
    [marker(MARKER), marker(CREATED_MARKER)]
}

fn marker(name: &str) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Boolean],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|_: &[ColumnarValue]| -> DfResult<ColumnarValue> {
            plan_err!("MATCH_CONDITION is only valid in an ASOF JOIN")
        }),
    )
}

/// The logical ASOF JOIN: a LEFT JOIN's schema, one row out per left row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsofJoin {
    pub left: LogicalPlan,
    pub right: LogicalPlan,
    /// Equality keys, (left expression, right expression).
    pub on: Vec<(Expr, Expr)>,
    pub left_match: Expr,
    pub right_match: Expr,
    /// The right row's creation time (backward searches only): see the module doc.
    pub right_created: Option<Expr>,
    pub direction: Direction,
    pub schema: DFSchemaRef,
}

impl PartialOrd for AsofJoin {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.on, &self.left_match, &self.right_match).partial_cmp(&(&other.on, &other.left_match, &other.right_match))
    }
}

impl UserDefinedLogicalNodeCore for AsofJoin {
    fn name(&self) -> &str {
        "AsofJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let mut e: Vec<Expr> = self.on.iter().flat_map(|(l, r)| [l.clone(), r.clone()]).collect();
        e.push(self.left_match.clone());
        e.push(self.right_match.clone());
        e.extend(self.right_created.clone());
        e
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
        write!(f, "AsofJoin: match=({} {} {}), on=[{}]", self.left_match, self.direction.symbol(), self.right_match, on.join(", "))?;
        if let Some(c) = &self.right_created {
            write!(f, ", created={c}")?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let [left, right]: [LogicalPlan; 2] =
            inputs.try_into().map_err(|_| DataFusionError::Internal("AsofJoin takes two inputs".into()))?;
        let n = self.on.len();
        let expected = 2 * n + 2 + usize::from(self.right_created.is_some());
        if exprs.len() != expected {
            return plan_err!("AsofJoin expects {expected} expressions, got {}", exprs.len());
        }
        let on = exprs[..2 * n].chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        let schema = Arc::new(build_join_schema(left.schema(), right.schema(), &JoinType::Left)?);
        Ok(AsofJoin {
            left,
            right,
            on,
            left_match: exprs[2 * n].clone(),
            right_match: exprs[2 * n + 1].clone(),
            right_created: exprs.get(2 * n + 2).cloned(),
            direction: self.direction,
            schema,
        })
    }
}

/// Turns a LEFT JOIN carrying the ASOF marker into an `AsofJoin`.
#[derive(Debug, Default)]
pub struct AsofJoinRule;

impl AnalyzerRule for AsofJoinRule {
    fn name(&self) -> &str {
        "asof_join"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| match plan {
            LogicalPlan::Join(join) if join.filter.as_ref().is_some_and(has_marker) => {
                if join.join_type != JoinType::Left {
                    return plan_err!("internal: an ASOF JOIN must arrive as a LEFT JOIN");
                }
                let mut on = join.on.clone();
                let mut matched = None;
                let mut created = None;
                let (ls, rs) = (join.left.schema().clone(), join.right.schema().clone());
                for term in split_conjunction_owned(join.filter.clone().unwrap_or(Expr::Literal(true.into(), None))) {
                    match term {
                        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == MARKER => {
                            if matched.is_some() {
                                return plan_err!("an ASOF JOIN takes one MATCH_CONDITION");
                            }
                            let [cond]: [Expr; 1] = args.try_into().map_err(|_| DataFusionError::Plan("bad MATCH_CONDITION".into()))?;
                            matched = Some(match_condition(cond, &ls, &rs)?);
                        }
                        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == CREATED_MARKER => {
                            let [cond]: [Expr; 1] = args.try_into().map_err(|_| DataFusionError::Plan("bad CREATED condition".into()))?;
                            created = Some(match_condition(cond, &ls, &rs)?);
                        }
                        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
                            on.push(sides(*left, *right, &ls, &rs).ok_or_else(|| {
                                DataFusionError::Plan("each ON condition of an ASOF JOIN must compare a left column with a right column".into())
                            })?);
                        }
                        Expr::Literal(..) => {}
                        other => {
                            return Err(DataFusionError::NotImplemented(format!(
                                "an ASOF JOIN's ON clause takes equalities joined by AND, not {other}"
                            )));
                        }
                    }
                }
                let Some((left_match, right_match, direction)) = matched else {
                    return plan_err!("an ASOF JOIN needs a MATCH_CONDITION");
                };
                let mut keys = Vec::with_capacity(on.len());
                for (l, r) in on {
                    keys.push(coerce_pair(l, r, &ls, &rs)?);
                }
                match_type(&left_match.get_type(&ls)?)?;
                let right_created = match created {
                    None => None,
                    Some((l, r, d)) if d == direction && direction.backward && l == left_match => {
                        Some(coerce_pair(l, r, &ls, &rs)?.1)
                    }
                    Some(_) => return plan_err!("internal: a CREATED condition must compare the match column the same way"),
                };
                let (left_match, right_match) = coerce_pair(left_match, right_match, &ls, &rs)?;
                let node = AsofJoin {
                    left: join.left.as_ref().clone(),
                    right: join.right.as_ref().clone(),
                    on: keys,
                    left_match,
                    right_match,
                    right_created,
                    direction,
                    schema: join.schema.clone(),
                };
                Ok(Transformed::yes(LogicalPlan::Extension(Extension { node: Arc::new(node) })))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}

fn has_marker(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::ScalarFunction(f) if f.func.name() == MARKER))).unwrap_or(false)
}

/// The operator compares match values as 64-bit integers.
fn match_type(t: &DataType) -> DfResult<()> {
    if t.is_integer() || t.is_temporal() && !matches!(t, DataType::Interval(_) | DataType::Duration(_)) {
        Ok(())
    } else {
        Err(DataFusionError::Plan(format!("MATCH_CONDITION compares timestamps, dates or integers, not {t}")))
    }
}

/// Orders a comparison's operands as (left input, right input), or `None` if it does not
/// compare one side with the other.
fn sides(a: Expr, b: Expr, ls: &DFSchemaRef, rs: &DFSchemaRef) -> Option<(Expr, Expr)> {
    let of = |e: &Expr, s: &DFSchemaRef| e.column_refs().iter().all(|c| s.has_column(c)) && !e.column_refs().is_empty();
    if of(&a, ls) && of(&b, rs) {
        Some((a, b))
    } else if of(&b, ls) && of(&a, rs) {
        Some((b, a))
    } else {
        None
    }
}

fn match_condition(cond: Expr, ls: &DFSchemaRef, rs: &DFSchemaRef) -> DfResult<(Expr, Expr, Direction)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = cond else {
        return plan_err!("MATCH_CONDITION must compare a left and a right column with >=, >, <= or <");
    };
    let flipped = sides(*left.clone(), *right.clone(), ls, rs)
        .map(|(l, r)| (l == *left, l, r))
        .ok_or_else(|| DataFusionError::Plan("MATCH_CONDITION must compare a left column with a right column".into()))?;
    let (in_order, l, r) = flipped;
    let op = if in_order { op } else { op.swap().unwrap_or(op) };
    let direction = Direction::from_op(op)
        .ok_or_else(|| DataFusionError::Plan(format!("MATCH_CONDITION takes >=, >, <= or <, not {op}")))?;
    Ok((l, r, direction))
}

/// Both sides of a key or match comparison in one type, so their sort orders agree.
fn coerce_pair(l: Expr, r: Expr, ls: &DFSchemaRef, rs: &DFSchemaRef) -> DfResult<(Expr, Expr)> {
    let (lt, rt) = (l.get_type(ls)?, r.get_type(rs)?);
    if lt == rt {
        return Ok((l, r));
    }
    if !datafusion::arrow::compute::can_cast_types(&rt, &lt) {
        return plan_err!("ASOF JOIN cannot compare {lt} with {rt}");
    }
    Ok((l, r.cast_to(&lt, rs.as_ref())?))
}

/// Our query planner: delta-rs's extension planners (its operations plan their own nodes in
/// our sessions) and ours.
#[derive(Debug)]
pub struct HindsightPlanner;

#[async_trait]
impl QueryPlanner for HindsightPlanner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, session: &dyn Session) -> DfResult<Arc<dyn ExecutionPlan>> {
        let planners: Vec<Arc<dyn ExtensionPlanner + Send + Sync>> =
            vec![deltalake::delta_datafusion::planner::DeltaExtensionPlanner::new(), Arc::new(AsofPlanner)];
        DefaultPhysicalPlanner::with_extension_planners(planners).create_physical_plan(plan, session).await
    }
}

#[derive(Debug)]
pub struct AsofPlanner;

#[async_trait]
impl ExtensionPlanner for AsofPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        ctx: &PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(join) = node.as_any().downcast_ref::<AsofJoin>() else { return Ok(None) };
        let (ls, rs) = (logical_inputs[0].schema(), logical_inputs[1].schema());
        let phys = |e: &Expr, s: &DFSchemaRef| planner.create_physical_expr(e, s, session, ctx);
        let on = JoinExprs {
            left_keys: join.on.iter().map(|(l, _)| phys(l, ls)).collect::<DfResult<Vec<_>>>()?,
            right_keys: join.on.iter().map(|(_, r)| phys(r, rs)).collect::<DfResult<Vec<_>>>()?,
            left_match: phys(&join.left_match, ls)?,
            right_match: phys(&join.right_match, rs)?,
            right_created: join.right_created.as_ref().map(|c| phys(c, rs)).transpose()?,
            direction: join.direction,
        };
        let schema = Arc::new(join.schema.as_arrow().clone());
        Ok(Some(Arc::new(AsofJoinExec::new(physical_inputs[0].clone(), physical_inputs[1].clone(), Arc::new(on), schema))))
    }
}

