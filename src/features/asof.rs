//! `ASOF JOIN` as a DataFusion extension: the SQL front-end rewrites
//! `l ASOF JOIN r MATCH_CONDITION (l.ts >= r.ts) ON l.k = r.k` into a LEFT JOIN whose condition
//! wraps the match condition in the marker function `__hs_asof_match`; `AsofJoinRule` (an
//! analyzer rule) turns that join into the `AsofJoin` logical node; `AsofPlanner` maps the node
//! to `AsofJoinExec`, a sort-merge per key.
//!
//! Semantics: for each left row, the right row with equal keys whose match value is the greatest
//! `<=` (for `>=`; `<` for `>`) the left's, or the smallest `>=` (for `<=`; `>` for `<`). Left
//! rows without one keep NULLs. NULL keys and NULL match values never match. Ties on the match
//! value go to the right row that is greatest by its other columns, compared in order (NULLs
//! first): deterministic on every run and every partitioning.
//!
//! Memory: both inputs are hash-partitioned by the keys and sorted by (keys, match value) by
//! DataFusion's own operators (which spill); the merge then holds one right batch and the
//! current candidate row per partition.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::compute::kernels::sort::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result as DfResult, plan_err};
use datafusion::error::DataFusionError;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::logical_plan::builder::build_join_schema;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction_owned;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Extension, JoinType, LogicalPlan, Operator, ScalarUDF,
    UserDefinedLogicalNode, UserDefinedLogicalNodeCore, Volatility, create_udf,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::{LexRequirement, OrderingRequirements, PhysicalSortRequirement};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning, PhysicalExpr,
    PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::physical_expr::EquivalenceProperties;
use futures::StreamExt;

/// The function that marks an ASOF match condition inside a LEFT JOIN's ON clause.
pub const MARKER: &str = "__hs_asof_match";

/// `__hs_asof_match(cond)`: only a marker. `AsofJoinRule` removes every call; one that survives
/// (the condition outside an ASOF JOIN) fails instead of filtering silently.
pub fn marker_udf() -> ScalarUDF {
    create_udf(
        MARKER,
        vec![DataType::Boolean],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|_: &[ColumnarValue]| -> DfResult<ColumnarValue> {
            plan_err!("MATCH_CONDITION is only valid in an ASOF JOIN")
        }),
    )
}

/// Which right row a left row takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub struct Direction {
    /// `>=`/`>`: the latest right value at or before the left's; `<=`/`<`: the earliest after.
    pub backward: bool,
    /// `>=`/`<=` accept an equal match value.
    pub inclusive: bool,
}

impl Direction {
    fn from_op(op: Operator) -> Option<Self> {
        Some(match op {
            Operator::GtEq => Direction { backward: true, inclusive: true },
            Operator::Gt => Direction { backward: true, inclusive: false },
            Operator::LtEq => Direction { backward: false, inclusive: true },
            Operator::Lt => Direction { backward: false, inclusive: false },
            _ => return None,
        })
    }

    fn symbol(&self) -> &'static str {
        match (self.backward, self.inclusive) {
            (true, true) => ">=",
            (true, false) => ">",
            (false, true) => "<=",
            (false, false) => "<",
        }
    }
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
        e
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
        write!(f, "AsofJoin: match=({} {} {}), on=[{}]", self.left_match, self.direction.symbol(), self.right_match, on.join(", "))
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let [left, right]: [LogicalPlan; 2] =
            inputs.try_into().map_err(|_| DataFusionError::Internal("AsofJoin takes two inputs".into()))?;
        let n = self.on.len();
        if exprs.len() != 2 * n + 2 {
            return plan_err!("AsofJoin expects {} expressions, got {}", 2 * n + 2, exprs.len());
        }
        let on = exprs[..2 * n].chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        let schema = Arc::new(build_join_schema(left.schema(), right.schema(), &JoinType::Left)?);
        Ok(AsofJoin {
            left,
            right,
            on,
            left_match: exprs[2 * n].clone(),
            right_match: exprs[2 * n + 1].clone(),
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
                let (left_match, right_match) = coerce_pair(left_match, right_match, &ls, &rs)?;
                let node = AsofJoin {
                    left: join.left.as_ref().clone(),
                    right: join.right.as_ref().clone(),
                    on: keys,
                    left_match,
                    right_match,
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
        let left_keys = join.on.iter().map(|(l, _)| phys(l, ls)).collect::<DfResult<Vec<_>>>()?;
        let right_keys = join.on.iter().map(|(_, r)| phys(r, rs)).collect::<DfResult<Vec<_>>>()?;
        let exec = AsofJoinExec::try_new(
            physical_inputs[0].clone(),
            physical_inputs[1].clone(),
            left_keys,
            right_keys,
            phys(&join.left_match, ls)?,
            phys(&join.right_match, rs)?,
            join.direction,
            Arc::new(join.schema.as_arrow().clone()),
        )?;
        Ok(Some(Arc::new(exec)))
    }
}

/// The sort-merge ASOF join, per hash partition of the keys.
#[derive(Debug)]
pub struct AsofJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    left_keys: Vec<Arc<dyn PhysicalExpr>>,
    right_keys: Vec<Arc<dyn PhysicalExpr>>,
    left_match: Arc<dyn PhysicalExpr>,
    right_match: Arc<dyn PhysicalExpr>,
    direction: Direction,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

impl AsofJoinExec {
    #[allow(clippy::too_many_arguments)]
    pub fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        left_keys: Vec<Arc<dyn PhysicalExpr>>,
        right_keys: Vec<Arc<dyn PhysicalExpr>>,
        left_match: Arc<dyn PhysicalExpr>,
        right_match: Arc<dyn PhysicalExpr>,
        direction: Direction,
        schema: SchemaRef,
    ) -> DfResult<Self> {
        // Left columns keep their positions in the output, so the left's hash partitioning holds.
        let partitioning = if left_keys.is_empty() {
            Partitioning::UnknownPartitioning(1)
        } else {
            left.output_partitioning().clone()
        };
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self { left, right, left_keys, right_keys, left_match, right_match, direction, schema, props })
    }

    fn ordering(&self, keys: &[Arc<dyn PhysicalExpr>], m: &Arc<dyn PhysicalExpr>, rest: Option<SortOptions>) -> Option<OrderingRequirements> {
        let asc = SortOptions::default();
        let mut reqs: Vec<PhysicalSortRequirement> =
            keys.iter().chain([m]).map(|e| PhysicalSortRequirement::new(e.clone(), Some(asc))).collect();
        if let Some(opts) = rest {
            // Tie-breaker: the right side's other (sortable) columns.
            let schema = self.right.schema();
            for (i, f) in schema.fields().iter().enumerate() {
                if !f.data_type().is_nested() {
                    let col: Arc<dyn PhysicalExpr> = Arc::new(datafusion::physical_expr::expressions::Column::new(f.name(), i));
                    reqs.push(PhysicalSortRequirement::new(col, Some(opts)));
                }
            }
        }
        LexRequirement::new(reqs).map(OrderingRequirements::new)
    }
}

impl DisplayAs for AsofJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.left_keys.iter().zip(&self.right_keys).map(|(l, r)| format!("({l}, {r})")).collect();
        write!(f, "AsofJoinExec: match=({} {} {}), on=[{}]", self.left_match, self.direction.symbol(), self.right_match, keys.join(", "))
    }
}

impl ExecutionPlan for AsofJoinExec {
    fn name(&self) -> &str {
        "AsofJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.left_keys.is_empty() {
            vec![Distribution::SinglePartition, Distribution::SinglePartition]
        } else {
            vec![Distribution::KeyPartitioned(self.left_keys.clone()), Distribution::KeyPartitioned(self.right_keys.clone())]
        }
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        // Forward searches take the first candidate, so their ties sort descending.
        let ties = SortOptions { descending: !self.direction.backward, nulls_first: self.direction.backward };
        vec![
            self.ordering(&self.left_keys, &self.left_match, None),
            self.ordering(&self.right_keys, &self.right_match, Some(ties)),
        ]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true, false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for e in self.left_keys.iter().chain(&self.right_keys).chain([&self.left_match, &self.right_match]) {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] =
            children.try_into().map_err(|_| DataFusionError::Internal("AsofJoinExec takes two children".into()))?;
        Ok(Arc::new(AsofJoinExec::try_new(
            left,
            right,
            self.left_keys.clone(),
            self.right_keys.clone(),
            self.left_match.clone(),
            self.right_match.clone(),
            self.direction,
            self.schema.clone(),
        )?))
    }

    fn execute(&self, partition: usize, ctx: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let left = self.left.execute(partition, ctx.clone())?;
        let right = self.right.execute(partition, ctx)?;
        let mut key_types = self
            .left_keys
            .iter()
            .map(|e| e.data_type(&self.left.schema()).map(SortField::new))
            .collect::<DfResult<Vec<_>>>()?;
        if key_types.is_empty() {
            key_types.push(SortField::new(DataType::Boolean));
        }
        let match_type = SortField::new(self.left_match.data_type(&self.left.schema())?);
        // The right side's columns may be NOT NULL; its share of the output never is.
        let right_schema = self.right.schema();
        let nullable: Vec<_> = right_schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        let null_row = RecordBatch::try_new(
            Arc::new(datafusion::arrow::datatypes::Schema::new(nullable)),
            right_schema.fields().iter().map(|f| new_null_array(f.data_type(), 1)).collect(),
        )?;
        let merge = Merge {
            right,
            right_keys: self.right_keys.clone(),
            right_match: self.right_match.clone(),
            left_keys: self.left_keys.clone(),
            left_match: self.left_match.clone(),
            keys: RowConverter::new(key_types)?,
            matches: RowConverter::new(vec![match_type])?,
            direction: self.direction,
            current: None,
            seq: 0,
            done: false,
            candidate: None,
            null_row,
            schema: self.schema.clone(),
        };
        let schema = self.schema.clone();
        let stream = futures::stream::try_unfold((left, merge), |(mut left, mut merge)| async move {
            while let Some(batch) = left.next().await {
                let batch = batch?;
                if batch.num_rows() > 0 {
                    let out = merge.join(&batch).await?;
                    return Ok(Some((out, (left, merge))));
                }
            }
            Ok(None)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// One right batch with its keys and match values in comparable row form.
struct RightBatch {
    seq: usize,
    batch: RecordBatch,
    keys: Rows,
    matches: Rows,
    /// A row that can never match: a NULL key or a NULL match value.
    unusable: Vec<bool>,
}

struct Candidate {
    seq: usize,
    batch: RecordBatch,
    row: usize,
    key: OwnedRow,
}

struct Merge {
    right: SendableRecordBatchStream,
    right_keys: Vec<Arc<dyn PhysicalExpr>>,
    right_match: Arc<dyn PhysicalExpr>,
    left_keys: Vec<Arc<dyn PhysicalExpr>>,
    left_match: Arc<dyn PhysicalExpr>,
    keys: RowConverter,
    matches: RowConverter,
    direction: Direction,
    /// The right batch in hand and the position in it.
    current: Option<(RightBatch, usize)>,
    seq: usize,
    done: bool,
    /// Backward searches: the best right row so far for the key being merged.
    candidate: Option<Candidate>,
    null_row: RecordBatch,
    schema: SchemaRef,
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> DfResult<Vec<ArrayRef>> {
    exprs.iter().map(|e| e.evaluate(batch)?.into_array(batch.num_rows())).collect()
}

/// Key columns in row form need at least one column: without ON, every row has the same key.
fn evaluate_keys(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> DfResult<Vec<ArrayRef>> {
    if exprs.is_empty() {
        return Ok(vec![Arc::new(datafusion::arrow::array::BooleanArray::from(vec![true; batch.num_rows()]))]);
    }
    evaluate(exprs, batch)
}

fn unusable(arrays: &[ArrayRef], n: usize) -> Vec<bool> {
    (0..n).map(|i| arrays.iter().any(|a| a.is_null(i))).collect()
}

impl Merge {
    /// Makes sure a right row is in hand (reading the next batch if needed); false at the end.
    async fn ensure_right(&mut self) -> DfResult<bool> {
        loop {
            if let Some((b, pos)) = &self.current {
                if *pos < b.batch.num_rows() {
                    return Ok(true);
                }
            }
            if self.done {
                return Ok(false);
            }
            match self.right.next().await {
                None => {
                    self.done = true;
                    self.current = None;
                }
                Some(batch) => {
                    let batch = batch?;
                    let key_arrays = evaluate_keys(&self.right_keys, &batch)?;
                    let match_array = evaluate(std::slice::from_ref(&self.right_match), &batch)?;
                    let mut all = key_arrays.clone();
                    all.extend(match_array.iter().cloned());
                    self.seq += 1;
                    let rb = RightBatch {
                        seq: self.seq,
                        keys: self.keys.convert_columns(&key_arrays)?,
                        matches: self.matches.convert_columns(&match_array)?,
                        unusable: unusable(&all, batch.num_rows()),
                        batch,
                    };
                    self.current = Some((rb, 0));
                }
            }
        }
    }

    async fn join(&mut self, left: &RecordBatch) -> DfResult<RecordBatch> {
        let n = left.num_rows();
        let key_arrays = evaluate_keys(&self.left_keys, left)?;
        let match_array = evaluate(std::slice::from_ref(&self.left_match), left)?;
        let lkeys = self.keys.convert_columns(&key_arrays)?;
        let lmatches = self.matches.convert_columns(&match_array)?;
        let mut all = key_arrays;
        all.extend(match_array);
        let skip = unusable(&all, n);

        // Output rows are picked from slot 0 (a NULL row) or from the right batches seen.
        let mut slots: Vec<RecordBatch> = vec![self.null_row.clone()];
        let mut slot_of: HashMap<usize, usize> = HashMap::new();
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(n);
        for i in 0..n {
            if skip[i] {
                picks.push((0, 0));
                continue;
            }
            let (key, value) = (lkeys.row(i), lmatches.row(i));
            let found = if self.direction.backward {
                while self.ensure_right().await? {
                    let Some((rb, pos)) = &mut self.current else { break };
                    let j = *pos;
                    match rb.keys.row(j).cmp(&key) {
                        Ordering::Less => *pos += 1,
                        Ordering::Greater => break,
                        Ordering::Equal => {
                            let m = rb.matches.row(j).cmp(&value);
                            let ok = if self.direction.inclusive { m != Ordering::Greater } else { m == Ordering::Less };
                            if !ok {
                                break;
                            }
                            if !rb.unusable[j] {
                                self.candidate = Some(Candidate { seq: rb.seq, batch: rb.batch.clone(), row: j, key: rb.keys.row(j).owned() });
                            }
                            *pos += 1;
                        }
                    }
                }
                self.candidate.as_ref().filter(|c| c.key.row() == key).map(|c| (c.seq, c.batch.clone(), c.row))
            } else {
                let mut found = None;
                while self.ensure_right().await? {
                    let Some((rb, pos)) = &mut self.current else { break };
                    let j = *pos;
                    match rb.keys.row(j).cmp(&key) {
                        Ordering::Less => *pos += 1,
                        Ordering::Greater => break,
                        Ordering::Equal => {
                            let m = rb.matches.row(j).cmp(&value);
                            let before = if self.direction.inclusive { m == Ordering::Less } else { m != Ordering::Greater };
                            if before || rb.unusable[j] {
                                *pos += 1;
                            } else {
                                found = Some((rb.seq, rb.batch.clone(), j));
                                break;
                            }
                        }
                    }
                }
                found
            };
            match found {
                None => picks.push((0, 0)),
                Some((seq, batch, row)) => {
                    let slot = *slot_of.entry(seq).or_insert_with(|| {
                        slots.push(batch);
                        slots.len() - 1
                    });
                    picks.push((slot, row));
                }
            }
        }
        let mut columns: Vec<ArrayRef> = left.columns().to_vec();
        for c in 0..self.null_row.num_columns() {
            let arrays: Vec<&dyn datafusion::arrow::array::Array> = slots.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(interleave(&arrays, &picks)?);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
