//! `AsofJoinExec`: the ASOF join as an index of the left side probed by a stream of the right.
//!
//! The left side (a spine: the rows that ask "what was true at my time?") is read in order and
//! indexed: per key, its match values sorted. The right side (feature history, usually far
//! larger) streams through once, in parallel per partition, and is never sorted or held: a right
//! row with value `v` is visible to the left rows of its key whose value is `>= v` (backward
//! search), a suffix of that key's sorted left values, so the row is recorded only at the
//! suffix's first position if it beats the row already there. A prefix sweep afterwards gives
//! every left row the best row visible to it. Forward searches mirror this with prefixes and a
//! suffix sweep.
//!
//! So memory is the left side plus at most one kept right row per left row, whatever the right
//! side's size; output keeps the left's row order (left partitions are read one after another).
//!
//! "Best" is the greatest match value (backward) or the smallest (forward), then, when a
//! CREATED column is given, the latest creation time, then the right row that is greatest by its
//! other columns compared in order, NULLs first. With CREATED, a right row is visible only to
//! left rows whose match value is at or after its creation time.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{cast, interleave, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{HashMap, Result as DfResult};
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning, PhysicalExpr,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

/// Which right row a left row takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub struct Direction {
    /// `>=`/`>`: the latest right value at or before the left's; `<=`/`<`: the earliest after.
    pub backward: bool,
    /// `>=`/`<=` accept an equal match value.
    pub inclusive: bool,
}

impl Direction {
    pub(crate) fn from_op(op: Operator) -> Option<Self> {
        Some(match op {
            Operator::GtEq => Direction { backward: true, inclusive: true },
            Operator::Gt => Direction { backward: true, inclusive: false },
            Operator::LtEq => Direction { backward: false, inclusive: true },
            Operator::Lt => Direction { backward: false, inclusive: false },
            _ => return None,
        })
    }

    pub(crate) fn symbol(&self) -> &'static str {
        match (self.backward, self.inclusive) {
            (true, true) => ">=",
            (true, false) => ">",
            (false, true) => "<=",
            (false, false) => "<",
        }
    }
}


/// The physical ASOF join; see the module doc.
#[derive(Debug)]
pub struct AsofJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Arc<JoinExprs>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

/// What the join evaluates on each side.
#[derive(Debug)]
pub struct JoinExprs {
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub left_match: Arc<dyn PhysicalExpr>,
    pub right_match: Arc<dyn PhysicalExpr>,
    /// The right row's creation time, compared with the left match value (backward only).
    pub right_created: Option<Arc<dyn PhysicalExpr>>,
    pub direction: Direction,
}

impl AsofJoinExec {
    pub fn new(left: Arc<dyn ExecutionPlan>, right: Arc<dyn ExecutionPlan>, on: Arc<JoinExprs>, schema: SchemaRef) -> Self {
        // Left columns keep their positions and rows their order, so a one-partition left's
        // ordering holds for the output.
        let mut eq = EquivalenceProperties::new(schema.clone());
        if left.output_partitioning().partition_count() == 1 {
            if let Some(ordering) = left.output_ordering() {
                eq = EquivalenceProperties::new_with_orderings(schema.clone(), [ordering.clone()]);
            }
        }
        let props =
            Arc::new(PlanProperties::new(eq, Partitioning::UnknownPartitioning(1), EmissionType::Final, Boundedness::Bounded));
        Self { left, right, on, schema, props }
    }
}

impl DisplayAs for AsofJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on = &self.on;
        let keys: Vec<String> = on.left_keys.iter().zip(&on.right_keys).map(|(l, r)| format!("({l}, {r})")).collect();
        write!(f, "AsofJoinExec: match=({} {} {}), on=[{}]", on.left_match, on.direction.symbol(), on.right_match, keys.join(", "))?;
        if let Some(c) = &on.right_created {
            write!(f, ", created={c}")?;
        }
        Ok(())
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
        vec![Distribution::UnspecifiedDistribution, Distribution::UnspecifiedDistribution]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // Left partitions are read in sequence (to keep their order); right ones in parallel.
        vec![false, true]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // Several left partitions are concatenated, which keeps no ordering a sort could use.
        vec![self.left.output_partitioning().partition_count() == 1, false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        let on = &self.on;
        let all = on.left_keys.iter().chain(&on.right_keys).chain([&on.left_match, &on.right_match]).chain(&on.right_created);
        for e in all {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] =
            children.try_into().map_err(|_| DataFusionError::Internal("AsofJoinExec takes two children".into()))?;
        Ok(Arc::new(AsofJoinExec::new(left, right, self.on.clone(), self.schema.clone())))
    }

    fn execute(&self, partition: usize, ctx: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("AsofJoinExec has one partition, not {partition}")));
        }
        let (left, right, on, schema) = (self.left.clone(), self.right.clone(), self.on.clone(), self.schema.clone());
        let batches = futures::stream::once(async move { join(left, right, on, schema, ctx).await })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

async fn join(
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Arc<JoinExprs>,
    schema: SchemaRef,
    ctx: Arc<TaskContext>,
) -> DfResult<Vec<RecordBatch>> {
    let index = Arc::new(LeftIndex::build(&left, &on, ctx.clone()).await?);
    let ties = Arc::new(Ties::new(&right.schema())?);
    let mut tasks = Vec::new();
    for p in 0..right.output_partitioning().partition_count() {
        let stream = right.execute(p, ctx.clone())?;
        let (index, on, ties) = (index.clone(), on.clone(), ties.clone());
        tasks.push(SpawnedTask::spawn(async move { probe(stream, &index, &on, &ties).await }));
    }
    let mut picks = Picks::empty(index.entries(), right.schema());
    for task in tasks {
        let part = task.join_unwind().await.map_err(|e| DataFusionError::External(Box::new(e)))??;
        picks.absorb(part, on.direction, &ties)?;
    }
    picks.sweep(&index, on.direction, &ties)?;
    picks.output(&index, &schema)
}

/// Key columns need at least one column in row form: without ON, every row has the same key.
fn key_rows(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch, conv: &RowConverter) -> DfResult<(datafusion::arrow::row::Rows, Vec<ArrayRef>)> {
    let arrays: Vec<ArrayRef> = if exprs.is_empty() {
        vec![Arc::new(datafusion::arrow::array::BooleanArray::from(vec![true; batch.num_rows()]))]
    } else {
        exprs.iter().map(|e| e.evaluate(batch)?.into_array(batch.num_rows())).collect::<DfResult<_>>()?
    };
    Ok((conv.convert_columns(&arrays)?, arrays))
}

fn key_converter(exprs: &[Arc<dyn PhysicalExpr>], schema: &Schema) -> DfResult<RowConverter> {
    let mut fields = exprs.iter().map(|e| e.data_type(schema).map(SortField::new)).collect::<DfResult<Vec<_>>>()?;
    if fields.is_empty() {
        fields.push(SortField::new(DataType::Boolean));
    }
    Ok(RowConverter::new(fields)?)
}

/// Match values and creation times compare as i64 (timestamps, dates and integers do).
fn as_i64(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> DfResult<ArrayRef> {
    let a = e.evaluate(batch)?.into_array(batch.num_rows())?;
    Ok(cast(&a, &DataType::Int64)?)
}

/// The left side, held in order, with its rows grouped by key and sorted by match value.
struct LeftIndex {
    batches: Vec<RecordBatch>,
    groups: HashMap<Box<[u8]>, u32>,
    /// Entries of group `g` are `start[g]..start[g + 1]`, sorted by `value`.
    start: Vec<usize>,
    value: Vec<i64>,
    /// The left row (numbered across batches) of each entry.
    row: Vec<u32>,
    /// The index's share of the session's memory pool, held as long as the index.
    _reservation: MemoryReservation,
}

impl LeftIndex {
    async fn build(left: &Arc<dyn ExecutionPlan>, on: &JoinExprs, ctx: Arc<TaskContext>) -> DfResult<Self> {
        let conv = key_converter(&on.left_keys, &left.schema())?;
        let mut groups: HashMap<Box<[u8]>, u32> = HashMap::default();
        let mut batches = Vec::new();
        let (mut of_group, mut value, mut row) = (Vec::<u32>::new(), Vec::<i64>::new(), Vec::<u32>::new());
        let mut numbered: usize = 0;
        // The spine is held whole: it is counted against the memory pool as it is read, so a
        // spine too large fails with 53200 instead of taking the server's memory.
        let reservation = MemoryConsumer::new("AsofJoinExec (left side)").register(ctx.memory_pool());
        for p in 0..left.output_partitioning().partition_count() {
            let mut stream = left.execute(p, ctx.clone())?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let (keys, key_arrays) = key_rows(&on.left_keys, &batch, &conv)?;
                // The batch, its key rows, and an entry (value, row, group) per row.
                reservation.try_grow(batch.get_array_memory_size() + keys.size() + batch.num_rows() * 16)?;
                let values = as_i64(&on.left_match, &batch)?;
                let values = values.as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    if values.is_null(i) || key_arrays.iter().any(|a| a.is_null(i)) {
                        continue;
                    }
                    let next = groups.len() as u32;
                    let key = keys.row(i);
                    let g = match groups.get(key.as_ref()) {
                        Some(&g) => g,
                        None => *groups.entry(Box::from(key.as_ref())).or_insert(next),
                    };
                    of_group.push(g);
                    value.push(values.value(i));
                    row.push(u32::try_from(numbered + i).map_err(|_| {
                        DataFusionError::ResourcesExhausted("an ASOF JOIN's left side is limited to 2^32 rows".into())
                    })?);
                }
                numbered += batch.num_rows();
                batches.push(batch);
            }
        }
        // Counting sort by group, then each group by value (and row, for a stable order).
        let mut start = vec![0usize; groups.len() + 1];
        for &g in &of_group {
            start[g as usize + 1] += 1;
        }
        for g in 0..groups.len() {
            start[g + 1] += start[g];
        }
        let mut fill = start.clone();
        let mut entries = vec![(0i64, 0u32); of_group.len()];
        for (i, &g) in of_group.iter().enumerate() {
            entries[fill[g as usize]] = (value[i], row[i]);
            fill[g as usize] += 1;
        }
        for g in 0..groups.len() {
            entries[start[g]..start[g + 1]].sort_unstable();
        }
        let (value, row) = entries.into_iter().unzip();
        Ok(Self { batches, groups, start, value, row, _reservation: reservation })
    }

    fn entries(&self) -> usize {
        self.value.len()
    }

    fn group_range(&self, g: u32) -> std::ops::Range<usize> {
        self.start[g as usize]..self.start[g as usize + 1]
    }
}

/// A kept right row: `batch` indexes the kept batches; `value`/`created` decide who wins.
#[derive(Clone, Copy)]
struct Pick {
    batch: u32,
    row: u32,
    value: i64,
    created: i64,
}

const NONE: u32 = u32::MAX;

/// Breaks exact ties on (match value, created) by the right rows' other columns.
pub(crate) struct Ties {
    conv: RowConverter,
    columns: Vec<usize>,
}

impl Ties {
    pub(crate) fn new(schema: &Schema) -> DfResult<Self> {
        let columns: Vec<usize> =
            (0..schema.fields().len()).filter(|&i| RowConverter::supports_fields(&[SortField::new(schema.field(i).data_type().clone())])).collect();
        let conv = RowConverter::new(columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect())?;
        Ok(Self { conv, columns })
    }

    pub(crate) fn greater(&self, a: (&RecordBatch, usize), b: (&RecordBatch, usize)) -> DfResult<bool> {
        let row = |(batch, i): (&RecordBatch, usize)| -> DfResult<_> {
            let cols: Vec<ArrayRef> = self.columns.iter().map(|&c| batch.column(c).slice(i, 1)).collect();
            Ok(self.conv.convert_columns(&cols)?)
        };
        let (ra, rb) = (row(a)?, row(b)?);
        Ok(ra.row(0) > rb.row(0))
    }
}

/// Whether `a` beats `b` (both set), per the module doc's order.
fn beats(a: &Pick, a_batch: &RecordBatch, b: &Pick, b_batch: &RecordBatch, dir: Direction, ties: &Ties) -> DfResult<bool> {
    if a.value != b.value {
        return Ok((a.value > b.value) == dir.backward);
    }
    if a.created != b.created {
        return Ok(a.created > b.created);
    }
    ties.greater((a_batch, a.row as usize), (b_batch, b.row as usize))
}

/// Per left-index entry, the best right row recorded there, and the batches holding them.
struct Picks {
    slots: Vec<Pick>,
    kept: Vec<RecordBatch>,
    right_schema: SchemaRef,
    /// Slots set, and rows in `kept`: when most kept rows are dead, they are compacted.
    live: usize,
    kept_rows: usize,
}

impl Picks {
    fn empty(entries: usize, right_schema: SchemaRef) -> Self {
        Self { slots: vec![Pick { batch: NONE, row: 0, value: 0, created: 0 }; entries], kept: Vec::new(), right_schema, live: 0, kept_rows: 0 }
    }

    /// Keeps only the rows still picked, in one batch, when most kept rows are dead.
    fn compact(&mut self) -> DfResult<()> {
        if self.kept_rows < 2 * self.live + 65_536 {
            return Ok(());
        }
        let live: Vec<(usize, usize)> =
            self.slots.iter().filter(|p| p.batch != NONE).map(|p| (p.batch as usize, p.row as usize)).collect();
        let batch = gather(&self.kept, &live, &self.right_schema)?;
        let mut n = 0u32;
        for p in self.slots.iter_mut().filter(|p| p.batch != NONE) {
            *p = Pick { batch: 0, row: n, ..*p };
            n += 1;
        }
        self.kept_rows = batch.num_rows();
        self.kept = vec![batch];
        Ok(())
    }

    /// Merges another partition's picks into these.
    fn absorb(&mut self, other: Picks, dir: Direction, ties: &Ties) -> DfResult<()> {
        let base = self.kept.len() as u32;
        self.kept.extend(other.kept);
        for (mine, theirs) in self.slots.iter_mut().zip(other.slots) {
            if theirs.batch == NONE {
                continue;
            }
            let theirs = Pick { batch: theirs.batch + base, ..theirs };
            if mine.batch == NONE
                || beats(&theirs, &self.kept[theirs.batch as usize], mine, &self.kept[mine.batch as usize], dir, ties)?
            {
                *mine = theirs;
            }
        }
        Ok(())
    }

    /// Carries each group's picks forward (backward search) or back (forward search).
    fn sweep(&mut self, index: &LeftIndex, dir: Direction, ties: &Ties) -> DfResult<()> {
        for g in 0..index.groups.len() as u32 {
            let r = index.group_range(g);
            let order: Box<dyn Iterator<Item = (usize, usize)>> = if dir.backward {
                Box::new((r.start + 1..r.end).map(|i| (i - 1, i)))
            } else {
                Box::new((r.start..r.end.saturating_sub(1)).rev().map(|i| (i + 1, i)))
            };
            for (from, to) in order {
                let (a, b) = (self.slots[from], self.slots[to]);
                if a.batch != NONE
                    && (b.batch == NONE || beats(&a, &self.kept[a.batch as usize], &b, &self.kept[b.batch as usize], dir, ties)?)
                {
                    self.slots[to] = a;
                }
            }
        }
        Ok(())
    }

    /// The left batches, in order, each with its picked right row (or NULLs).
    fn output(self, index: &LeftIndex, schema: &SchemaRef) -> DfResult<Vec<RecordBatch>> {
        let total: usize = index.batches.iter().map(|b| b.num_rows()).sum();
        let mut of_row: Vec<(usize, usize)> = vec![(0, 0); total];
        for (e, &row) in index.row.iter().enumerate() {
            let p = self.slots[e];
            if p.batch != NONE {
                of_row[row as usize] = (p.batch as usize + 1, p.row as usize);
            }
        }
        // Source 0 is a NULL row; kept batch i is source i + 1.
        let nulls: Vec<ArrayRef> = self.right_schema.fields().iter().map(|f| new_null_array(f.data_type(), 1)).collect();
        let mut out = Vec::with_capacity(index.batches.len());
        let mut at = 0;
        for batch in &index.batches {
            let picks = &of_row[at..at + batch.num_rows()];
            at += batch.num_rows();
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            for (c, null) in nulls.iter().enumerate() {
                let arrays: Vec<&dyn Array> =
                    std::iter::once(null.as_ref()).chain(self.kept.iter().map(|b| b.column(c).as_ref())).collect();
                columns.push(interleave(&arrays, picks)?);
            }
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(out)
    }
}

/// Rows `(batch, row)` of `batches`, in one batch.
fn gather(batches: &[RecordBatch], rows: &[(usize, usize)], schema: &SchemaRef) -> DfResult<RecordBatch> {
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            interleave(&arrays, rows)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Streams one right partition through the index: each row is recorded at the first (backward)
/// or last (forward) entry of its key that can see it, if it beats what is there.
async fn probe(mut stream: SendableRecordBatchStream, index: &LeftIndex, on: &JoinExprs, ties: &Ties) -> DfResult<Picks> {
    let conv = key_converter(&on.right_keys, &stream.schema())?;
    let mut picks = Picks::empty(index.entries(), stream.schema());
    let dir = on.direction;
    // Entries won by the batch in hand: (entry, row in batch).
    let mut won: Vec<(usize, u32)> = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let (keys, key_arrays) = key_rows(&on.right_keys, &batch, &conv)?;
        let values = as_i64(&on.right_match, &batch)?;
        let values = values.as_primitive::<Int64Type>();
        let created = on.right_created.as_ref().map(|c| as_i64(c, &batch)).transpose()?;
        let created = created.as_ref().map(|c| c.as_primitive::<Int64Type>());
        let current = picks.kept.len() as u32;
        won.clear();
        for i in 0..batch.num_rows() {
            if values.is_null(i) || key_arrays.iter().any(|a| a.is_null(i)) {
                continue;
            }
            let Some(&g) = index.groups.get(keys.row(i).as_ref()) else { continue };
            let r = index.group_range(g);
            let sorted = &index.value[r.clone()];
            let v = values.value(i);
            // NULL CREATED: created with its event.
            let c = created.filter(|c| c.is_valid(i)).map(|c| c.value(i));
            let entry = if dir.backward {
                let mut first = if dir.inclusive { sorted.partition_point(|&t| t < v) } else { sorted.partition_point(|&t| t <= v) };
                if let Some(c) = c {
                    first = first.max(sorted.partition_point(|&t| t < c));
                }
                if first == sorted.len() {
                    continue;
                }
                r.start + first
            } else {
                let end = if dir.inclusive { sorted.partition_point(|&t| t <= v) } else { sorted.partition_point(|&t| t < v) };
                if end == 0 {
                    continue;
                }
                r.start + end - 1
            };
            let cand = Pick { batch: current, row: i as u32, value: v, created: c.unwrap_or(i64::MIN) };
            let held = picks.slots[entry];
            let wins = held.batch == NONE || {
                let held_batch = if held.batch == current { &batch } else { &picks.kept[held.batch as usize] };
                beats(&cand, &batch, &held, held_batch, dir, ties)?
            };
            if wins {
                if held.batch == NONE {
                    picks.live += 1;
                }
                if held.batch != current {
                    won.push((entry, i as u32));
                }
                picks.slots[entry] = cand;
            }
        }
        if won.is_empty() {
            continue;
        }
        // Keep only the winning rows of this batch, renumbered.
        let rows = UInt32Array::from_iter_values(won.iter().map(|&(e, _)| picks.slots[e].row));
        let kept = take_record_batch(&batch, &rows)?;
        for (n, &(e, _)) in won.iter().enumerate() {
            picks.slots[e].row = n as u32;
        }
        picks.kept_rows += kept.num_rows();
        picks.kept.push(kept);
        picks.compact()?;
    }
    Ok(picks)
}
