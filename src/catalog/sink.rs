//! Execution-time pieces of writes: the DML sink that runs a delta-rs WRITE/DELETE/UPDATE/MERGE
//! inside DataFusion's `DataSinkExec`, and a one-shot stream that turns a live `RecordBatch` stream
//! (a MERGE source, a COPY upload) into something delta-rs and DataFusion can read as a table.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef};
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::dml::{MergeIntoAction, MergeIntoClause};
use datafusion::logical_expr::{Expr, utils::conjunction};
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;

use super::TableName;
use super::commits::commit_properties;
use super::compaction::AutoCompact;

const TARGET: &str = "__hs_target";
const SOURCE: &str = "__hs_source";

/// What a `DmlSink` will do when it runs.
#[derive(Debug)]
pub(super) enum DmlOp {
    /// INSERT and COPY FROM. Through delta-rs's WriteBuilder rather than its DataFusion sink,
    /// because only the builder's commit writes checkpoints (every 100 versions) and metrics.
    Insert { overwrite: bool },
    Delete { predicate: Vec<Expr> },
    Update { predicate: Vec<Expr>, assignments: Vec<(String, Expr)> },
    Merge { on: Expr, clauses: Vec<MergeIntoClause> },
}

impl DmlOp {
    /// Builds a MERGE with every column qualified as target or source for delta-rs.
    pub(super) fn merge(
        merge_schema: DFSchemaRef,
        target_fields: usize,
        on: Expr,
        clauses: Vec<MergeIntoClause>,
    ) -> DfResult<Self> {
        // DataFusion names the ON condition with an alias; delta-rs must print every expression
        // into its commit, and cannot print aliases.
        let requalify = |e: Expr| -> DfResult<Expr> {
            e.unalias_nested().data.transform(|e| match e {
                Expr::Column(c) => {
                    let idx = merge_schema.index_of_column(&c)?;
                    let side = if idx < target_fields { TARGET } else { SOURCE };
                    Ok(Transformed::yes(Expr::Column(Column::new(Some(side), c.name))))
                }
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
        };
        let on = requalify(on)?;
        let clauses = clauses
            .into_iter()
            .map(|c| {
                let predicate = c.predicate.map(&requalify).transpose()?;
                let action = match c.action {
                    MergeIntoAction::Update(a) => MergeIntoAction::Update(
                        a.into_iter().map(|(k, v)| Ok((k, requalify(v)?))).collect::<DfResult<_>>()?,
                    ),
                    MergeIntoAction::Insert { columns, values } => {
                        let columns = if columns.is_empty() {
                            merge_schema.fields()[..target_fields]
                                .iter()
                                .map(|f| f.name().clone())
                                .collect()
                        } else {
                            columns
                        };
                        let values = values.into_iter().map(&requalify).collect::<DfResult<_>>()?;
                        MergeIntoAction::Insert { columns, values }
                    }
                    MergeIntoAction::Delete => MergeIntoAction::Delete,
                };
                Ok(MergeIntoClause { kind: c.kind, predicate, action })
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(DmlOp::Merge { on, clauses })
    }
}

/// Runs one delta-rs operation when DataFusion executes the plan, and reports rows affected.
pub(super) struct DmlSink {
    name: TableName,
    table: DeltaTable,
    compaction: Arc<AutoCompact>,
    state: Arc<SessionState>,
    op: Mutex<Option<DmlOp>>,
    input_schema: SchemaRef,
    /// Written into a transaction block's staged log: compaction waits for the COMMIT.
    staged: bool,
}

impl fmt::Debug for DmlSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmlSink").field("table", &self.name).finish()
    }
}

impl DmlSink {
    pub(super) fn new(
        name: TableName,
        table: DeltaTable,
        compaction: Arc<AutoCompact>,
        state: Arc<SessionState>,
        op: DmlOp,
    ) -> Self {
        Self { name, table, compaction, state, op: Mutex::new(Some(op)), input_schema: Arc::new(Schema::empty()), staged: false }
    }

    pub(super) fn staged(mut self, staged: bool) -> Self {
        self.staged = staged;
        self
    }

    pub(super) fn with_input_schema(mut self, schema: SchemaRef) -> Self {
        self.input_schema = schema;
        self
    }

    fn kind(&self) -> &'static str {
        match self.op.lock().ok().and_then(|g| g.as_ref().map(|op| match op {
            DmlOp::Insert { .. } => "Write",
            DmlOp::Delete { .. } => "Delete",
            DmlOp::Update { .. } => "Update",
            DmlOp::Merge { .. } => "Merge",
        })) {
            Some(k) => k,
            None => "Done",
        }
    }
}

impl DisplayAs for DmlSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Delta{}: table={}", self.kind(), self.name)
    }
}

fn delta_err(e: deltalake::DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl DataSink for DmlSink {
    fn schema(&self) -> &SchemaRef {
        &self.input_schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let op = self
            .op
            .lock()
            .map_err(|_| DataFusionError::Internal("DML sink lock poisoned".into()))?
            .take()
            .ok_or_else(|| DataFusionError::Internal("DML sink executed twice".into()))?;
        let mut table = self.table.clone();
        let state = self.state.clone();
        let writing = self.compaction.locks().table(&table).await;
        // A rewrite reads the table as it is now, not as it was planned: a writer (or a
        // compaction) of this server that held the lock before us has moved it on, and
        // rewriting files it already replaced would fail with 40001 for nothing.
        if !matches!(op, DmlOp::Insert { overwrite: false }) {
            table.update_incremental(None).await.map_err(delta_err)?;
        }
        let read = table.version();
        let (written, rows) = match op {
            DmlOp::Insert { overwrite } => {
                let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let counted = {
                    let rows = rows.clone();
                    let schema = data.schema();
                    let s = futures::StreamExt::inspect(data, move |b| {
                        if let Ok(b) = b {
                            rows.fetch_add(b.num_rows() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                    });
                    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, s))
                };
                let ctx = SessionContext::new_with_state(state.as_ref().clone());
                let input = ctx.read_table(Arc::new(OneShotStream::table(counted)?))?.into_unoptimized_plan();
                let mode = if overwrite { SaveMode::Overwrite } else { SaveMode::Append };
                let written = table
                    .write(vec![])
                    .with_input_plan(input)
                    .with_session_state(state)
                    .with_save_mode(mode)
                    .with_commit_properties(commit_properties(overwrite.then_some(read).flatten()))
                    .await
                    .map_err(delta_err)?;
                (written, rows.load(std::sync::atomic::Ordering::Relaxed))
            }
            DmlOp::Delete { predicate } => {
                let mut builder = table.delete().with_session_state(state).with_commit_properties(commit_properties(read));
                if let Some(p) = conjunction(predicate) {
                    builder = builder.with_predicate(p);
                }
                let (written, metrics) = builder.await.map_err(delta_err)?;
                (written, metrics.num_deleted_rows.unwrap_or(0) as u64)
            }
            DmlOp::Update { predicate, assignments } => {
                let mut builder = table.update().with_session_state(state).with_commit_properties(commit_properties(read));
                if let Some(p) = conjunction(predicate) {
                    builder = builder.with_predicate(p);
                }
                for (col, value) in assignments {
                    builder = builder.with_update(col, value);
                }
                let (written, metrics) = builder.await.map_err(delta_err)?;
                (written, metrics.num_updated_rows as u64)
            }
            DmlOp::Merge { on, clauses } => {
                // delta-rs scans the MERGE source more than once, so it is held in memory. A MERGE
                // source is the batch of late labels or updates, not the table it lands in.
                let ctx = SessionContext::new_with_state(state.as_ref().clone());
                let schema = data.schema();
                // Counted against the memory pool while it is held: a MERGE source that does not
                // fit fails with 53200 rather than taking the server's memory.
                let reservation = MemoryConsumer::new("MERGE source").register(context.memory_pool());
                let mut batches = Vec::new();
                let mut data = data;
                while let Some(batch) = futures::StreamExt::next(&mut data).await {
                    let batch = batch?;
                    reservation.try_grow(batch.get_array_memory_size())?;
                    batches.push(batch);
                }
                let source = ctx.read_table(Arc::new(MemTable::try_new(schema, vec![batches])?))?;
                let mut builder = table
                    .merge(source, on)
                    .with_session_state(state)
                    .with_source_alias(SOURCE)
                    .with_target_alias(TARGET)
                    .with_commit_properties(commit_properties(read));
                for clause in clauses {
                    builder = add_merge_clause(builder, clause).map_err(delta_err)?;
                }
                let (written, m) = builder.await.map_err(delta_err)?;
                (written, (m.num_target_rows_inserted + m.num_target_rows_updated + m.num_target_rows_deleted) as u64)
            }
        };
        drop(writing);
        if !self.staged {
            self.compaction.after_write(&self.name, &written);
        }
        Ok(rows)
    }
}

fn add_merge_clause(
    builder: deltalake::operations::merge::MergeBuilder,
    clause: MergeIntoClause,
) -> deltalake::DeltaResult<deltalake::operations::merge::MergeBuilder> {
    use datafusion::logical_expr::dml::MergeIntoClauseKind as Kind;
    let MergeIntoClause { kind, predicate, action } = clause;
    match (kind, action) {
        (Kind::Matched, MergeIntoAction::Update(assignments)) => builder.when_matched_update(|mut u| {
            if let Some(p) = predicate {
                u = u.predicate(p);
            }
            for (c, e) in assignments {
                u = u.update(c, e);
            }
            u
        }),
        (Kind::Matched, MergeIntoAction::Delete) => builder.when_matched_delete(|mut d| {
            if let Some(p) = predicate {
                d = d.predicate(p);
            }
            d
        }),
        (Kind::NotMatched | Kind::NotMatchedByTarget, MergeIntoAction::Insert { columns, values }) => {
            builder.when_not_matched_insert(|mut i| {
                if let Some(p) = predicate {
                    i = i.predicate(p);
                }
                for (c, e) in columns.into_iter().zip(values) {
                    i = i.set(c, e);
                }
                i
            })
        }
        (Kind::NotMatchedBySource, MergeIntoAction::Update(assignments)) => {
            builder.when_not_matched_by_source_update(|mut u| {
                if let Some(p) = predicate {
                    u = u.predicate(p);
                }
                for (c, e) in assignments {
                    u = u.update(c, e);
                }
                u
            })
        }
        (Kind::NotMatchedBySource, MergeIntoAction::Delete) => {
            builder.when_not_matched_by_source_delete(|mut d| {
                if let Some(p) = predicate {
                    d = d.predicate(p);
                }
                d
            })
        }
        (kind, action) => Err(deltalake::DeltaTableError::Generic(format!(
            "MERGE clause WHEN {kind:?} THEN {action:?} is not valid"
        ))),
    }
}

/// A stream of batches that can be read once, as a table (the source of a MERGE, a COPY upload).
pub struct OneShotStream {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl fmt::Debug for OneShotStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneShotStream").field("schema", &self.schema).finish()
    }
}

impl OneShotStream {
    pub fn table(stream: SendableRecordBatchStream) -> DfResult<StreamingTable> {
        let schema = stream.schema();
        let part = Arc::new(Self { schema: schema.clone(), stream: Mutex::new(Some(stream)) });
        StreamingTable::try_new(schema, vec![part])
    }
}

impl PartitionStream for OneShotStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut g| g.take());
        match taken {
            Some(s) => s,
            None => {
                let schema = self.schema.clone();
                let err = futures::stream::once(async {
                    Err(DataFusionError::Execution("a one-shot stream was read twice".into()))
                });
                Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, err))
            }
        }
    }
}
