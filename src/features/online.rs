//! `online_features('view', key, ...)` and `online_features('view', ARRAY[...])`: the latest row
//! per entity, honouring the view's TTL against now(), from an in-memory index.
//!
//! Each view's index is built once from its source (at pinned versions, recorded with it) and
//! shared by every connection to the warehouse. Lookups never wait on storage: a lookup more
//! than `REFRESH_EVERY` after the last check starts a refresh in the background, which reads
//! only the data files that commits since the indexed version appended (by any writer, any
//! server) and folds them in. Commits that removed rows or changed the schema, and views
//! defined by a query, are rebuilt whole instead: their new rows alone do not say what changed.
//!
//! "Latest" is the rule `historical_features` uses: the greatest event time, then the latest
//! CREATED, then the row greatest by its columns in order, so serving and training agree.
//!
//! `SELECT * FROM online_features(...)` is answered without DataFusion planning (the prepared
//! statement a serving client reuses); any other query over it plans the function as a table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::{Months, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
use datafusion::arrow::compute::{cast, interleave, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, IntervalMonthDayNano, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr as LExpr;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::sql::sqlparser::ast::{self, SelectItem, SetExpr, TableFactor, Value};
use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::asof_exec::Ties;
use super::views::{self, FeatureView};
use crate::catalog::versions::PinnedVersions;
use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::sql::Planner;
use crate::sql::time_travel;

pub const FUNCTION: &str = "online_features";

/// How stale an index may get before a lookup starts a refresh.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// Makes a planner for work no client asked for; see `OnlineStore::attach`.
pub type Background = Box<dyn Fn() -> Result<Arc<dyn Planner>> + Send + Sync>;

/// The in-memory indexes of one engine's feature views.
#[derive(Default)]
pub struct OnlineStore {
    /// Makes the planner the indexes are built and refreshed in (never a client's session,
    /// whose settings and limits are its own): the engine's background planner.
    background: OnceLock<Background>,
    views: Mutex<HashMap<String, Arc<ViewIndex>>>,
}

impl std::fmt::Debug for OnlineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let views: Vec<String> = self.views.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        f.debug_struct("OnlineStore").field("views", &views).finish()
    }
}

#[derive(Default)]
struct ViewIndex {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    build: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    checked: Mutex<Option<Instant>>,
}

impl OnlineStore {
    /// Gives the store its planner source, once, when the engine that owns it is built.
    pub fn attach(&self, background: Background) {
        let _ = self.background.set(background);
    }

    fn planner(&self) -> Result<Arc<dyn Planner>> {
        let background = self.background.get().ok_or_else(|| Error::Internal("online store: no engine attached".into()))?;
        background()
    }

    fn view(&self, name: &str) -> Arc<ViewIndex> {
        self.views.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_default().clone()
    }

    /// The index as built so far, without waiting (for the planned path, after `index`).
    fn cached(&self, name: &str) -> Option<Arc<Snapshot>> {
        let v = self.views.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()?;
        let s = v.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
        s
    }

    /// The view's index: built on first use, then refreshed in the background when stale.
    pub async fn index(self: &Arc<Self>, name: &str) -> Result<Arc<Snapshot>> {
        let v = self.view(name);
        let current = v.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(s) = current {
            self.maybe_refresh(name, &v);
            return Ok(s);
        }
        let _building = v.build.lock().await;
        let built = v.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(s) = built {
            return Ok(s);
        }
        let planner = self.planner()?;
        let view = views::load(&*planner, name, None).await?.ok_or_else(|| views::undefined(name))?;
        let s = Arc::new(Snapshot::build(&*planner, view).await?);
        *v.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
        *v.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(s)
    }

    fn maybe_refresh(self: &Arc<Self>, name: &str, v: &Arc<ViewIndex>) {
        {
            let mut checked = v.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.is_some_and(|t| t.elapsed() < REFRESH_EVERY) || v.refreshing.swap(true, Ordering::AcqRel) {
                return;
            }
            *checked = Some(Instant::now());
        }
        let (store, name, v) = (self.clone(), name.to_string(), v.clone());
        tokio::spawn(async move {
            let result = store.refresh(&name, &v).await;
            if let Err(e) = result {
                tracing::warn!(view = %name, error = %e, "online_features: refresh failed; serving the previous index");
            }
            v.refreshing.store(false, Ordering::Release);
        });
    }

    async fn refresh(&self, name: &str, v: &ViewIndex) -> Result<()> {
        let old = v.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(old) = old else { return Ok(()) };
        let planner = self.planner()?;
        let next = match views::load(&*planner, name, None).await? {
            // Dropped: forget it, so the next lookup fails as the view does not exist.
            None => Some(None),
            Some(view) if !same_definition(&view, &old.view) => Some(Some(Arc::new(Snapshot::build(&*planner, view).await?))),
            Some(_) => old.refreshed(&*planner).await?.map(|s| Some(Arc::new(s))),
        };
        if let Some(next) = next {
            let _building = v.build.lock().await;
            *v.snapshot.write().unwrap_or_else(|p| p.into_inner()) = next;
        }
        Ok(())
    }
}

fn same_definition(a: &FeatureView, b: &FeatureView) -> bool {
    (&a.source_kind, &a.source, &a.default_schema, &a.entity, &a.timestamp, &a.created, &a.ttl)
        == (&b.source_kind, &b.source, &b.default_schema, &b.entity, &b.timestamp, &b.created, &b.ttl)
}

/// Where a kept row is, and what decides whether a newer one replaces it.
#[derive(Clone, Copy)]
struct Slot {
    batch: u32,
    row: u32,
    ts: i64,
    created: i64,
}

/// One immutable version of a view's index; refreshes make a new one.
pub struct Snapshot {
    pub view: FeatureView,
    /// What lookups return: the entity keys, the event timestamp, then the features.
    pub schema: SchemaRef,
    /// The view's source columns, in source order (how kept rows are stored).
    source: SchemaRef,
    keys: Vec<usize>,
    ts: usize,
    created: Option<usize>,
    features: Vec<usize>,
    rows: Vec<RecordBatch>,
    slots: HashMap<Box<[u8]>, Slot>,
    kept_rows: usize,
    conv: RowConverter,
    /// The view's TTL, parsed once (lookups subtract it from now()).
    ttl: Option<IntervalMonthDayNano>,
    /// The source tables and the versions indexed.
    versions: PinnedVersions,
}

impl Snapshot {
    async fn build(session: &dyn Planner, view: FeatureView) -> Result<Self> {
        let mut q = view.source_query()?;
        let mut versions = PinnedVersions::new();
        for t in time_travel::unversioned_tables(&q, &view.default_schema)? {
            versions.insert(t.to_string(), session.warehouse().latest_version(&t).await?);
        }
        time_travel::pin(&mut q, &versions, &view.default_schema)?;
        let plan = Box::pin(session.plan_query(ast::Statement::Query(q))).await?;
        let source: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let index = |c: &str| {
            source.index_of(c).map_err(|_| Error::UndefinedColumn(format!("feature view {}: its source has no column {c}", view.name)))
        };
        let keys = view.entity.iter().map(|k| index(k)).collect::<Result<Vec<_>>>()?;
        let ts = index(&view.timestamp)?;
        let created = view.created.as_deref().map(index).transpose()?;
        let features = view.features(&source).iter().map(|f| index(f)).collect::<Result<Vec<_>>>()?;
        let fields: Vec<Field> = keys
            .iter()
            .chain([&ts])
            .chain(&features)
            .map(|&i| source.field(i).as_ref().clone().with_nullable(true))
            .collect();
        let mut s = Snapshot {
            view,
            schema: Arc::new(Schema::new(fields)),
            source: source.clone(),
            keys,
            ts,
            created,
            features,
            rows: Vec::new(),
            slots: HashMap::new(),
            kept_rows: 0,
            conv: RowConverter::new(vec![])?,
            ttl: None,
            versions,
        };
        s.ttl = s
            .view
            .ttl
            .as_deref()
            .map(|t| parse_interval_month_day_nano(t).map_err(|e| Error::InvalidDatetime(format!("TTL '{t}': {e}"))))
            .transpose()?;
        s.conv = s.key_converter()?;
        let mut stream = session.context().execute_logical_plan(plan).await?.execute_stream().await?;
        let ties = Ties::new(&source)?;
        while let Some(batch) = stream.next().await {
            s.absorb(batch?, &ties)?;
        }
        Ok(s)
    }

    /// A newer snapshot if any source table moved on; `None` if nothing changed.
    async fn refreshed(&self, session: &dyn Planner) -> Result<Option<Snapshot>> {
        let mut latest = PinnedVersions::new();
        for t in self.versions.keys() {
            latest.insert(t.clone(), session.warehouse().latest_version(&TableName::from_qualified(t, crate::catalog::DEFAULT_SCHEMA)).await?);
        }
        if latest == self.versions {
            return Ok(None);
        }
        if self.view.source_kind == "table" {
            if let Some((t, &from)) = self.versions.iter().next() {
                let (name, to) = (TableName::from_qualified(t, crate::catalog::DEFAULT_SCHEMA), latest[t]);
                let appended = session.warehouse().appended(&name, from, to).await?;
                if appended.append_only {
                    let mut next = self.clone_for_update()?;
                    next.versions = latest;
                    let store = session.warehouse().table_store(&name)?;
                    let ties = Ties::new(&self.source)?;
                    // Appended files are one commit's worth each: read whole, decoded here.
                    let failed = |e: &dyn std::fmt::Display| Error::DataCorrupted(format!("online_features: reading {t}: {e}"));
                    for path in appended.files {
                        let bytes = store.get(&path).await?.bytes().await?;
                        let rows = ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| failed(&e))?;
                        for batch in rows {
                            let batch = batch.map_err(|e| failed(&e))?;
                            next.absorb(conform(&batch, &self.source)?, &ties)?;
                        }
                    }
                    return Ok(Some(next));
                }
            }
        }
        Ok(Some(Snapshot::build(session, self.view.clone()).await?))
    }

    fn clone_for_update(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            view: self.view.clone(),
            schema: self.schema.clone(),
            source: self.source.clone(),
            keys: self.keys.clone(),
            ts: self.ts,
            created: self.created,
            features: self.features.clone(),
            rows: self.rows.clone(),
            slots: self.slots.clone(),
            kept_rows: self.kept_rows,
            conv: self.key_converter()?,
            ttl: self.ttl,
            versions: self.versions.clone(),
        })
    }

    fn key_converter(&self) -> Result<RowConverter> {
        Ok(RowConverter::new(self.keys.iter().map(|&i| SortField::new(self.source.field(i).data_type().clone())).collect())?)
    }

    /// Folds rows in: each replaces its entity's kept row if it is later by the module doc's rule.
    fn absorb(&mut self, batch: RecordBatch, ties: &Ties) -> Result<()> {
        let key_arrays: Vec<ArrayRef> = self.keys.iter().map(|&i| batch.column(i).clone()).collect();
        let keys = self.conv.convert_columns(&key_arrays)?;
        let ts = cast(batch.column(self.ts), &DataType::Int64)?;
        let ts = ts.as_primitive::<Int64Type>();
        let created = self.created.map(|c| cast(batch.column(c), &DataType::Int64)).transpose()?;
        let created = created.as_ref().map(|c| c.as_primitive::<Int64Type>());
        let current = self.rows.len() as u32;
        let mut won: Vec<Box<[u8]>> = Vec::new();
        for i in 0..batch.num_rows() {
            if ts.is_null(i) || key_arrays.iter().any(|a| a.is_null(i)) {
                continue;
            }
            let cand = Slot {
                batch: current,
                row: i as u32,
                ts: ts.value(i),
                created: created.filter(|c| c.is_valid(i)).map_or(i64::MIN, |c| c.value(i)),
            };
            let key = keys.row(i);
            let wins = match self.slots.get(key.as_ref()) {
                None => true,
                Some(held) if (cand.ts, cand.created) != (held.ts, held.created) => (cand.ts, cand.created) > (held.ts, held.created),
                Some(held) => {
                    let held_batch = if held.batch == current { &batch } else { &self.rows[held.batch as usize] };
                    ties.greater((&batch, i), (held_batch, held.row as usize))?
                }
            };
            if wins {
                let key: Box<[u8]> = key.as_ref().into();
                if self.slots.insert(key.clone(), cand).is_none_or(|held| held.batch != current) {
                    won.push(key);
                }
            }
        }
        if won.is_empty() {
            return Ok(());
        }
        let rows = UInt32Array::from_iter_values(won.iter().map(|k| self.slots[k].row));
        let kept = take_record_batch(&batch, &rows)?;
        for (n, k) in won.iter().enumerate() {
            if let Some(s) = self.slots.get_mut(k) {
                s.row = n as u32;
            }
        }
        self.kept_rows += kept.num_rows();
        self.rows.push(kept);
        // Replaced rows stay in their batches until they are most of what is kept.
        if self.kept_rows > 2 * self.slots.len() + 65_536 {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        let mut entries: Vec<(&Box<[u8]>, &mut Slot)> = self.slots.iter_mut().collect();
        let picks: Vec<(usize, usize)> = entries.iter().map(|(_, s)| (s.batch as usize, s.row as usize)).collect();
        let columns = (0..self.source.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> = self.rows.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &picks)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(self.source.clone(), columns)?;
        for (n, (_, s)) in entries.iter_mut().enumerate() {
            s.batch = 0;
            s.row = n as u32;
        }
        self.kept_rows = batch.num_rows();
        self.rows = vec![batch];
        Ok(())
    }

    /// The latest row of each requested entity (a row of NULL features where there is none, or
    /// it is older than the TTL), in request order. `keys[i]` holds the i-th key's values.
    pub fn lookup(&self, keys: &[Vec<ScalarValue>]) -> Result<RecordBatch> {
        let n = keys.first().map_or(0, Vec::len);
        let key_arrays: Vec<ArrayRef> = keys
            .iter()
            .zip(&self.keys)
            .map(|(values, &i)| {
                let t = self.source.field(i).data_type();
                let values = values.iter().map(|v| v.cast_to(t)).collect::<datafusion::common::Result<Vec<_>>>()?;
                if values.is_empty() {
                    return Ok(new_null_array(t, 0));
                }
                ScalarValue::iter_to_array(values)
            })
            .collect::<datafusion::common::Result<_>>()?;
        let rows = self.conv.convert_columns(&key_arrays)?;
        let cutoff = self.ttl_cutoff()?;
        let picks: Vec<(usize, usize)> = (0..n)
            .map(|i| match self.slots.get(rows.row(i).as_ref()) {
                Some(s) if key_arrays.iter().all(|a| a.is_valid(i)) && cutoff.is_none_or(|c| s.ts > c) => {
                    (s.batch as usize + 1, s.row as usize)
                }
                _ => (0, 0),
            })
            .collect();
        let mut columns: Vec<ArrayRef> = key_arrays;
        for &c in [&self.ts].into_iter().chain(&self.features) {
            let null = new_null_array(self.source.field(c).data_type(), 1);
            let arrays: Vec<&dyn Array> =
                std::iter::once(null.as_ref()).chain(self.rows.iter().map(|b| b.column(c).as_ref())).collect();
            columns.push(interleave(&arrays, &picks)?);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// now() - TTL in the timestamp column's own units.
    fn ttl_cutoff(&self) -> Result<Option<i64>> {
        let Some(i) = self.ttl else { return Ok(None) };
        let ttl = self.view.ttl.as_deref().unwrap_or_default();
        let t = Utc::now()
            .checked_sub_months(Months::new(i.months.max(0) as u32))
            .and_then(|t| t.checked_sub_signed(chrono::Duration::days(i.days as i64)))
            .and_then(|t| t.checked_sub_signed(chrono::Duration::nanoseconds(i.nanoseconds)))
            .ok_or_else(|| Error::InvalidParameter(format!("TTL '{ttl}' reaches before the calendar")))?;
        let micros = t.timestamp_micros();
        Ok(Some(match self.source.field(self.ts).data_type() {
            DataType::Timestamp(TimeUnit::Second, _) => micros.div_euclid(1_000_000),
            DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Date64 => micros.div_euclid(1_000),
            DataType::Timestamp(TimeUnit::Microsecond, _) => micros,
            DataType::Timestamp(TimeUnit::Nanosecond, _) => micros.saturating_mul(1_000),
            DataType::Date32 => micros.div_euclid(86_400_000_000),
            other => return Err(Error::DatatypeMismatch(format!("TTL on a {other} timestamp"))),
        }))
    }

    /// The key types, for parameter inference.
    pub fn key_types(&self) -> Vec<DataType> {
        self.keys.iter().map(|&i| self.source.field(i).data_type().clone()).collect()
    }
}

/// A data file's rows in the index's column order and types (columns added later are NULL).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => Ok(cast(c, f.data_type())?),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Turns the call's key arguments into one column of values per key: scalars repeat, arrays
/// give one entity per element (all arrays the same length).
fn key_columns(args: Vec<ScalarValue>, keys: usize) -> Result<Vec<Vec<ScalarValue>>> {
    if args.len() != keys {
        return Err(Error::Syntax(format!(
            "{FUNCTION} takes the view name and {keys} key value(s) (or arrays of them), got {} key argument(s)",
            args.len()
        )));
    }
    let len = args
        .iter()
        .filter_map(|a| match a {
            ScalarValue::List(l) => Some(l.value_length(0) as usize),
            _ => None,
        })
        .max();
    args.into_iter()
        .map(|a| match (a, len) {
            (ScalarValue::List(l), Some(n)) => {
                let values = l.value(0);
                if values.len() != n {
                    return Err(Error::Syntax(format!("{FUNCTION}: key arrays must have the same length")));
                }
                (0..n).map(|i| Ok(ScalarValue::try_from_array(&values, i)?)).collect()
            }
            (a, len) => Ok(vec![a; len.unwrap_or(1)]),
        })
        .collect()
}

fn check_latest(session: &dyn Planner) -> Result<()> {
    if session.as_of().is_some() {
        return Err(Error::FeatureNotSupported(format!(
            "{FUNCTION} serves the latest values; while hindsight.as_of is set, use historical_features"
        )));
    }
    Ok(())
}

/// `SELECT * FROM online_features(...)`, the shape served without planning: the call's
/// arguments, if the statement is exactly that.
pub fn direct_call(stmt: &ast::Statement) -> Option<Vec<ast::FunctionArg>> {
    let ast::Statement::Query(q) = stmt else { return None };
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else { return None };
    let plain = s.selection.is_none() && s.having.is_none() && s.distinct.is_none() && s.from.len() == 1;
    if !plain || s.from[0].joins.len() != 0 || !matches!(s.projection.as_slice(), [SelectItem::Wildcard(_)]) {
        return None;
    }
    call_args(&s.from[0].relation)
}

fn call_args(f: &TableFactor) -> Option<Vec<ast::FunctionArg>> {
    crate::sql::table_functions::args(f, FUNCTION).cloned()
}

/// Key values as one list key, in the first non-NULL value's type.
fn list_of(values: Vec<ScalarValue>) -> datafusion::common::Result<ScalarValue> {
    let t = values.iter().map(ScalarValue::data_type).find(|t| *t != DataType::Null).unwrap_or(DataType::Null);
    let values = values.iter().map(|v| v.cast_to(&t)).collect::<datafusion::common::Result<Vec<_>>>()?;
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(&values, &t)))
}

/// A key argument written in the statement: a literal, a `$n` parameter, or ARRAY[...] of those.
fn ast_value(e: &ast::Expr, params: Option<&[ScalarValue]>) -> Result<ScalarValue> {
    use ast::Expr as E;
    Ok(match e {
        E::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse::<i64>()
                .map(|v| ScalarValue::Int64(Some(v)))
                .or_else(|_| n.parse::<f64>().map(|v| ScalarValue::Float64(Some(v))))
                .map_err(|_| Error::Syntax(format!("bad number {n}")))?,
            Value::SingleQuotedString(s) => ScalarValue::Utf8(Some(s.clone())),
            Value::Null => ScalarValue::Null,
            Value::Placeholder(p) => {
                let i: usize = p.trim_start_matches('$').parse().map_err(|_| Error::Syntax(format!("bad parameter {p}")))?;
                params
                    .and_then(|ps| ps.get(i.wrapping_sub(1)))
                    .cloned()
                    .ok_or_else(|| Error::InvalidParameter(format!("no value for parameter {p}")))?
            }
            other => return Err(Error::Syntax(format!("{FUNCTION}: unsupported key {other}"))),
        },
        E::UnaryOp { op: ast::UnaryOperator::Minus, expr } => ScalarValue::Int64(Some(0)).sub(ast_value(expr, params)?)?,
        E::Cast { expr, .. } | E::Nested(expr) => ast_value(expr, params)?,
        E::Array(a) => {
            list_of(a.elem.iter().map(|e| ast_value(e, params)).collect::<Result<Vec<_>>>()?)?
        }
        other => return Err(Error::Syntax(format!("{FUNCTION}: keys must be literals, parameters or ARRAY[...], not {other}"))),
    })
}

fn split_args(args: &[ast::FunctionArg]) -> Result<(String, Vec<&ast::Expr>)> {
    let mut exprs = Vec::new();
    for a in args {
        match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => exprs.push(e),
            _ => return Err(Error::Syntax(format!("usage: {FUNCTION}('view', key, ...) or {FUNCTION}('view', ARRAY[...])"))),
        }
    }
    let view = match exprs.first() {
        Some(ast::Expr::Value(v)) => match &v.value {
            Value::SingleQuotedString(s) => s.to_ascii_lowercase(),
            _ => return Err(Error::Syntax(format!("{FUNCTION}: the first argument is the view's name, quoted"))),
        },
        _ => return Err(Error::Syntax(format!("usage: {FUNCTION}('view', key, ...) or {FUNCTION}('view', ARRAY[...])"))),
    };
    Ok((view, exprs[1..].to_vec()))
}

/// Answers `SELECT * FROM online_features(...)` from the index.
pub async fn lookup(
    session: &dyn Planner,
    store: &Arc<OnlineStore>,
    args: &[ast::FunctionArg],
    params: Option<&[ScalarValue]>,
) -> Result<RecordBatch> {
    check_latest(session)?;
    let (view, keys) = split_args(args)?;
    let index = store.index(&view).await?;
    let values = keys.iter().map(|e| ast_value(e, params)).collect::<Result<Vec<_>>>()?;
    index.lookup(&key_columns(values, index.keys.len())?)
}

/// The result schema and parameter types of `SELECT * FROM online_features(...)`.
pub async fn describe(store: &Arc<OnlineStore>, args: &[ast::FunctionArg]) -> Result<(SchemaRef, Vec<Option<DataType>>)> {
    let (view, keys) = split_args(args)?;
    let index = store.index(&view).await?;
    let key_types = index.key_types();
    let mut params: Vec<Option<DataType>> = Vec::new();
    for (i, e) in keys.iter().enumerate() {
        let mut visit = |e: &ast::Expr, t: DataType| {
            if let ast::Expr::Value(v) = e {
                if let Value::Placeholder(p) = &v.value {
                    if let Ok(n) = p.trim_start_matches('$').parse::<usize>() {
                        if params.len() < n {
                            params.resize(n, None);
                        }
                        params[n - 1] = Some(t);
                    }
                }
            }
        };
        let t = key_types.get(i).cloned().unwrap_or(DataType::Utf8);
        match e {
            ast::Expr::Array(a) => a.elem.iter().for_each(|e| visit(e, t.clone())),
            e => visit(e, t),
        }
    }
    Ok((index.schema.clone(), params))
}

/// Builds the indexes a statement's online_features calls need, so planning (which cannot
/// wait) finds them.
pub async fn prepare(session: &dyn Planner, store: &Arc<OnlineStore>, stmt: &ast::Statement) -> Result<()> {
    use std::ops::ControlFlow;
    struct Calls(Vec<Vec<ast::FunctionArg>>);
    impl ast::Visitor for Calls {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
            self.0.extend(call_args(f));
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls(Vec::new());
    let _ = ast::Visit::visit(stmt, &mut calls);
    for args in calls.0 {
        check_latest(session)?;
        let (view, _) = split_args(&args)?;
        store.index(&view).await?;
    }
    Ok(())
}

/// `online_features` as a DataFusion table function, for queries that do more than select
/// everything from it. Its keys must be constants.
#[derive(Debug)]
pub struct OnlineFunction {
    store: Arc<OnlineStore>,
}

impl OnlineFunction {
    pub fn new(store: Arc<OnlineStore>) -> Self {
        Self { store }
    }
}

impl TableFunctionImpl for OnlineFunction {
    fn call(&self, args: &[LExpr]) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let constant = |e: &LExpr| -> datafusion::common::Result<ScalarValue> {
            match e {
                LExpr::Literal(v, _) => Ok(v.clone()),
                LExpr::Cast(c) => match c.expr.as_ref() {
                    LExpr::Literal(v, _) => v.cast_to(c.field.data_type()),
                    _ => datafusion::common::plan_err!("{FUNCTION}: keys must be constants"),
                },
                LExpr::ScalarFunction(f) if f.name() == "make_array" => {
                    let values = f.args.iter().map(|a| match a {
                        LExpr::Literal(v, _) => Ok(v.clone()),
                        _ => datafusion::common::plan_err!("{FUNCTION}: array keys must be constants"),
                    });
                    list_of(values.collect::<datafusion::common::Result<Vec<_>>>()?)
                }
                _ => datafusion::common::plan_err!("{FUNCTION}: keys must be constants; a prepared statement can pass them as $1 in SELECT * FROM {FUNCTION}(...)"),
            }
        };
        let Some(LExpr::Literal(ScalarValue::Utf8(Some(view)), _)) = args.first() else {
            return datafusion::common::plan_err!("{FUNCTION}: the first argument is the view's name, quoted");
        };
        let view = view.to_ascii_lowercase();
        let index = self.store.cached(&view).ok_or_else(|| crate::error::to_datafusion(views::undefined(&view)))?;
        let values = args[1..].iter().map(constant).collect::<datafusion::common::Result<Vec<_>>>()?;
        let batch = key_columns(values, index.keys.len())
            .and_then(|keys| index.lookup(&keys))
            .map_err(crate::error::to_datafusion)?;
        Ok(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?))
    }
}
