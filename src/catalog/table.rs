//! A Delta table as a DataFusion `TableProvider` that can be read and written.
//!
//! Reads and INSERT delegate to delta-rs's own provider. DELETE, UPDATE and MERGE come in through
//! DataFusion's DML hooks (`delete_from`, `update`, `merge_into`) and run as delta-rs operations,
//! each one Delta commit, when the plan executes (never while planning, so EXPLAIN changes nothing).

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::dml::{InsertOp, MergeIntoClause};
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;

use super::predicates::{hide_long_lists, pushes_nothing, weaken_long_lists};
use super::sink::{DmlOp, DmlSink};
use super::versions::TableAt;
use super::compaction::AutoCompact;
use super::{Block, METADATA_SCHEMA, TableName, Warehouse};
use crate::error::{Error, Result, to_datafusion};

/// One Delta table at one version, as DataFusion sees it.
#[derive(Debug)]
pub struct HindsightTable {
    name: TableName,
    table: DeltaTable,
    scan: Arc<dyn TableProvider>,
    /// What writes through this provider hand the table to afterwards.
    compaction: Arc<AutoCompact>,
    /// How the version was chosen; anything but `Latest` is read-only.
    at: TableAt,
    /// The session's transaction block: while it is open, writes are staged in it.
    block: Option<(Arc<Block>, Arc<Warehouse>)>,
}

impl HindsightTable {
    pub async fn try_new(warehouse: &Warehouse, name: TableName, table: DeltaTable) -> Result<Self> {
        let scan = table.table_provider().await?;
        Ok(Self { name, table, scan, compaction: warehouse.auto_compact().clone(), at: TableAt::Latest, block: None })
    }

    /// Writes through this provider go into `block` while it is open.
    pub fn in_block(mut self, block: Arc<Block>, warehouse: Arc<Warehouse>) -> Self {
        self.block = Some((block, warehouse));
        self
    }

    /// The table a write goes to: a staged one inside a transaction block, else the table.
    async fn target(&self) -> DfResult<(DeltaTable, bool)> {
        match &self.block {
            Some((block, warehouse)) if block.is_open() => {
                let staged = block.stage(warehouse, &self.name, &self.table).await.map_err(to_datafusion)?;
                Ok((staged, true))
            }
            _ => Ok((self.table.clone(), false)),
        }
    }

    /// Marks the provider as reading a chosen past version, which must not be written.
    pub fn at(mut self, at: TableAt) -> Self {
        self.at = at;
        self
    }

    pub fn name(&self) -> &TableName {
        &self.name
    }

    /// The Delta version this provider reads.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    pub fn delta(&self) -> &DeltaTable {
        &self.table
    }

    fn check_writable(&self) -> DfResult<()> {
        if self.name.schema == METADATA_SCHEMA {
            return Err(to_datafusion(Error::ReadOnlySchema(METADATA_SCHEMA.into())));
        }
        super::refuse_derived(&self.name).map_err(to_datafusion)?;
        if self.at != TableAt::Latest {
            return Err(to_datafusion(Error::ReadOnly(format!(
                "cannot write to {} as of version {}: only the latest version of a table can be written",
                self.name,
                self.version().map(|v| v.to_string()).unwrap_or_default()
            ))));
        }
        Ok(())
    }

    async fn dml_exec(&self, state: &dyn Session, op: DmlOp) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.check_writable()?;
        let state = session_state(state)?;
        let (table, staged) = self.target().await?;
        let sink = DmlSink::new(self.name.clone(), table, self.compaction.clone(), state, op).staged(staged);
        let input = Arc::new(EmptyExec::new(Arc::new(Schema::empty())));
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

pub(super) fn session_state(
    state: &dyn Session,
) -> DfResult<Arc<datafusion::execution::SessionState>> {
    state
        .as_any()
        .downcast_ref::<datafusion::execution::SessionState>()
        .map(|s| Arc::new(s.clone()))
        .ok_or_else(|| DataFusionError::Internal("DML needs a SessionState".into()))
}

/// Delta operations resolve columns against the table alone, without DataFusion's qualifiers.
pub(super) fn unqualify(expr: Expr) -> DfResult<Expr> {
    expr.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => {
            Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name))))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

#[async_trait]
impl TableProvider for HindsightTable {
    fn schema(&self) -> SchemaRef {
        self.scan.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        None
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let filters: Vec<Expr> = filters
            .iter()
            .filter_map(|f| match weaken_long_lists(f) {
                None => Some(f.clone()),
                Some(weaker) if pushes_nothing(&weaker) => None,
                Some(weaker) => Some(weaker),
            })
            .collect();
        self.scan.scan(state, projection, &filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters with long IN lists are judged (and later pushed) in their weaker form: only
        // what delta-rs can skip files with, never the exact filter (see `weaken_long_lists`).
        let weakened: Vec<Option<Expr>> = filters.iter().map(|f| weaken_long_lists(f)).collect();
        let judged: Vec<&Expr> = filters.iter().zip(&weakened).map(|(f, w)| w.as_ref().unwrap_or(f)).collect();
        let verdicts = self.scan.supports_filters_pushdown(&judged)?;
        Ok(verdicts
            .into_iter()
            .zip(&weakened)
            .zip(filters)
            .map(|((v, w), f)| match w {
                // delta-rs calls a filter of no column (`NULL`, as `x NOT IN (1, NULL)` simplifies
                // to) exact, and then does not apply it: every row came back. DataFusion keeps it.
                None if v == TableProviderFilterPushDown::Exact && f.column_refs().is_empty() => {
                    TableProviderFilterPushDown::Inexact
                }
                None => v,
                Some(w) if pushes_nothing(w) => TableProviderFilterPushDown::Unsupported,
                Some(_) if v == TableProviderFilterPushDown::Unsupported => v,
                Some(_) => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let overwrite = match insert_op {
            InsertOp::Append => false,
            InsertOp::Overwrite => true,
            InsertOp::Replace => {
                return Err(to_datafusion(Error::FeatureNotSupported("REPLACE INTO is not supported".into())));
            }
        };
        self.check_writable()?;
        let state_arc = session_state(state)?;
        let (table, staged) = self.target().await?;
        let sink = DmlSink::new(self.name.clone(), table, self.compaction.clone(), state_arc, DmlOp::Insert { overwrite })
            .staged(staged)
            .with_input_schema(input.schema());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let predicate = filters.into_iter().map(|f| hide_long_lists(unqualify(f)?)).collect::<DfResult<Vec<_>>>()?;
        self.dml_exec(state, DmlOp::Delete { predicate }).await
    }

    /// TRUNCATE: one commit that removes every file, without reading them (a Delta delete
    /// without a predicate); earlier versions stay readable.
    async fn truncate(&self, state: &dyn Session) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.dml_exec(state, DmlOp::Delete { predicate: vec![] }).await
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let predicate = filters.into_iter().map(|f| hide_long_lists(unqualify(f)?)).collect::<DfResult<Vec<_>>>()?;
        let assignments = assignments
            .into_iter()
            // DataFusion assigns every column; the unchanged ones are plain references to themselves.
            .filter(|(col, e)| !matches!(e, Expr::Column(c) if &c.name == col))
            .map(|(c, e)| Ok((c, unqualify(e)?)))
            .collect::<DfResult<Vec<_>>>()?;
        self.dml_exec(state, DmlOp::Update { predicate, assignments }).await
    }

    async fn merge_into(
        &self,
        state: &dyn Session,
        source: Arc<dyn ExecutionPlan>,
        merge_schema: DFSchemaRef,
        on: Expr,
        clauses: Vec<MergeIntoClause>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.check_writable()?;
        let state_arc = session_state(state)?;
        let target_fields = self.schema().fields().len();
        let op = DmlOp::merge(merge_schema, target_fields, on, clauses)?;
        let (table, staged) = self.target().await?;
        let sink = DmlSink::new(self.name.clone(), table, self.compaction.clone(), state_arc, op)
            .staged(staged)
            .with_input_schema(source.schema());
        Ok(Arc::new(DataSinkExec::new(source, Arc::new(sink), None)))
    }
}
