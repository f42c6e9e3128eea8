//! Running an evaluation over one window: put the window's bounds in the query, pin every
//! table it reads at its latest version, run it, replace the window's rows of `eval.<name>` in
//! one Delta commit, and log the attempt in `hindsight.evaluation_runs`. `RUN EVALUATION` and
//! `BACKFILL EVALUATION` are this, on demand; the scheduler is this, on time.
//!
//! Must not: decide when to run (that is `scheduler`).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr as DfExpr, LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::sql::sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, Query, Statement, TableFactor, Value, ValueWithSpan, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::definition::{self, Evaluation, Window};
use crate::catalog::metadata;
use crate::catalog::versions::PinnedVersions;
use crate::error::{Error, Result};
use crate::sql::Planner;
use crate::sql::{parse_query, time_travel};

/// Why a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Backfill,
    Commit,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Backfill => "backfill",
            Trigger::Commit => "commit",
        }
    }
}

/// One attempt, as `hindsight.evaluation_runs` records it.
#[derive(Debug)]
pub struct RunRecord {
    pub run_id: String,
    pub evaluation: String,
    pub trigger: Trigger,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub trigger_version: Option<i64>,
    pub window: Window,
    pub attempt: i64,
    /// None when it succeeded.
    pub error: Option<Error>,
    pub rows: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub versions: PinnedVersions,
}

impl RunRecord {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    pub fn status(&self) -> &'static str {
        if self.succeeded() { "succeeded" } else { "failed" }
    }
}

/// Replaces `$window_start` / `$window_end` with timestamp literals: where they are parameters
/// of the query, and inside the quoted queries given to table functions (the arguments of
/// `drift(...)` and `historical_features(...)`), which are parsed and substituted the same way.
/// Any other string literal is left as written, `'$window_start'` included.
fn substitute(q: &mut Query, window: Window) -> Result<()> {
    struct Bounds {
        window: Window,
        start: String,
        end: String,
        bad: Option<String>,
    }
    impl Bounds {
        fn literal(&self, name: &str) -> Option<&str> {
            match name {
                "$window_start" => Some(&self.start),
                "$window_end" => Some(&self.end),
                _ => None,
            }
        }
    }
    impl VisitorMut for Bounds {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Value(ValueWithSpan { value: Value::Placeholder(p), .. }) = e {
                match self.literal(&p.to_ascii_lowercase()).map(str::to_string) {
                    Some(text) => match Parser::new(&PostgreSqlDialect {}).try_with_sql(&text).and_then(|mut p| p.parse_expr()) {
                        Ok(parsed) => *e = parsed,
                        Err(err) => self.bad = Some(err.to_string()),
                    },
                    None => self.bad = Some(format!("{p}: evaluation queries take only $window_start and $window_end")),
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { args: Some(args), .. } = f else { return ControlFlow::Continue(()) };
            for arg in args.args.iter_mut() {
                let FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(text), .. }))) = arg else {
                    continue;
                };
                if !text.contains("$window_") {
                    continue;
                }
                // A table name stays a name; a query gets its own placeholders replaced.
                let Ok(mut nested) = parse_query(text) else { continue };
                match substitute(&mut nested, self.window) {
                    Ok(()) => *text = nested.to_string(),
                    Err(e) => self.bad = Some(e.message()),
                }
            }
            ControlFlow::Continue(())
        }
    }
    let text = |t: DateTime<Utc>| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"));
    let mut b = Bounds { window, start: text(window.start), end: text(window.end), bad: None };
    let _ = q.visit(&mut b);
    match b.bad {
        Some(m) => Err(Error::Syntax(m)),
        None => Ok(()),
    }
}

fn utc_micros(t: DateTime<Utc>) -> DfExpr {
    lit(ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("UTC".into())))
}

/// The evaluation's query over `window`, pinned at the latest version of every table it reads,
/// in Delta's column types: the plan, its schema, and the pins.
pub async fn plan(session: &dyn Planner, eval: &Evaluation, window: Window) -> Result<(LogicalPlan, SchemaRef, PinnedVersions)> {
    let mut q = parse_query(&eval.query)?;
    substitute(&mut q, window)?;
    // Expanded first, so the tables behind feature views and drift's arguments are pinned too.
    let mut stmt = Statement::Query(q);
    crate::features::historical::expand(session, &mut stmt, None).await?;
    super::drift::expand(session, &mut stmt).await?;
    let Statement::Query(mut q) = stmt else { return Err(Error::Syntax("an evaluation runs a query".into())) };
    let mut pinned = PinnedVersions::new();
    for t in time_travel::unversioned_tables(&q, &eval.default_schema)? {
        pinned.insert(t.to_string(), session.warehouse().latest_version(&t).await?);
    }
    time_travel::pin(&mut q, &pinned, &eval.default_schema)?;
    let plan = crate::catalog::delta_projection(session.plan_query(Statement::Query(q)).await?)?;
    let schema = Arc::new(plan.schema().as_arrow().clone());
    Ok((plan, schema, pinned))
}

fn new_run_id(eval: &str, window: Window) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(eval.as_bytes());
    h.update(&window.start.timestamp_micros().to_le_bytes());
    h.update(&Utc::now().timestamp_nanos_opt().unwrap_or_default().to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.finalize().to_hex()[..16].to_string()
}

/// Runs one window and logs the attempt; the record says whether it worked. Only logging
/// itself failing is an error here.
pub async fn run_window(
    session: &dyn Planner,
    eval: &Evaluation,
    window: Window,
    trigger: Trigger,
    scheduled_for: Option<DateTime<Utc>>,
    trigger_version: Option<i64>,
    attempt: i64,
) -> Result<RunRecord> {
    let (started_at, clock) = (Utc::now(), Instant::now());
    let run_id = new_run_id(&eval.name, window);
    let mut versions = PinnedVersions::new();
    let outcome = crate::error::catch_panic(write_window(session, eval, window, &run_id, started_at, &mut versions)).await;
    let (rows, error) = match outcome {
        Ok(rows) => (rows as i64, None),
        Err(e) => (0, Some(e)),
    };
    let record = RunRecord {
        run_id,
        evaluation: eval.name.clone(),
        trigger,
        scheduled_for,
        trigger_version,
        window,
        attempt,
        error,
        rows,
        started_at,
        duration_ms: clock.elapsed().as_millis() as i64,
        versions,
    };
    match &record.error {
        None => tracing::info!(evaluation = %eval.name, trigger = trigger.as_str(), start = %window.start, end = %window.end, rows, "evaluation run succeeded"),
        Some(e) => tracing::warn!(evaluation = %eval.name, trigger = trigger.as_str(), attempt, error = %e.message(), "evaluation run failed"),
    }
    log(session, &record).await?;
    Ok(record)
}

async fn write_window(
    session: &dyn Planner,
    eval: &Evaluation,
    window: Window,
    run_id: &str,
    run_at: DateTime<Utc>,
    versions: &mut PinnedVersions,
) -> Result<u64> {
    let (plan, schema, pinned) = plan(session, eval, window).await?;
    *versions = pinned;
    let versions_json = serde_json::to_string(&*versions).unwrap_or_default();
    let mut exprs = vec![utc_micros(window.start).alias("window_start"), utc_micros(window.end).alias("window_end")];
    exprs.extend(schema.fields().iter().map(|f| col(datafusion::common::Column::new_unqualified(f.name()))));
    exprs.push(lit(run_id.to_string()).alias("run_id"));
    exprs.push(utc_micros(run_at).alias("run_at"));
    exprs.push(lit(versions_json).alias("versions"));
    let plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
    let batches = session.context().execute_logical_plan(plan).await?.collect().await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let Some(first) = batches.first() else { return Err(Error::Internal("an evaluation query produced no batches".into())) };
    let out_schema = first.schema();
    let table = eval.results_table();
    let warehouse = session.warehouse();
    if !warehouse.exists(&table).await? {
        match warehouse.create_table(&table, &out_schema, &[]).await {
            Ok(_) | Err(Error::DuplicateTable(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // One commit removes the window's old rows and adds the new ones: readers see either.
    let replace = col("window_start").eq(utc_micros(window.start)).and(col("window_end").eq(utc_micros(window.end)));
    warehouse
        .load_existing(&table)
        .await?
        .write(batches)
        .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
        .with_replace_where(replace)
        .await?;
    Ok(rows as u64)
}

async fn log(session: &dyn Planner, r: &RunRecord) -> Result<()> {
    let (meta, schema) = metadata::evaluation_runs();
    let s = |v: Option<String>| Arc::new(StringArray::from(vec![v])) as Arc<dyn Array>;
    let ts = |t: Option<DateTime<Utc>>| Arc::new(TimestampMicrosecondArray::from(vec![t.map(|t| t.timestamp_micros())]).with_timezone("UTC")) as Arc<dyn Array>;
    let int = |v: Option<i64>| Arc::new(Int64Array::from(vec![v])) as Arc<dyn Array>;
    let server = format!("{}:{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()), std::process::id());
    let batch = RecordBatch::try_new(
        schema,
        vec![
            s(Some(r.run_id.clone())),
            s(Some(r.evaluation.clone())),
            s(Some(r.trigger.as_str().into())),
            ts(r.scheduled_for),
            int(r.trigger_version),
            ts(Some(r.window.start)),
            ts(Some(r.window.end)),
            int(Some(r.attempt)),
            s(Some(r.status().into())),
            s(r.error.as_ref().map(|e| format!("{}: {}", e.sqlstate(), e.message()))),
            int(Some(r.rows)),
            ts(Some(r.started_at)),
            int(Some(r.duration_ms)),
            s(Some(serde_json::to_string(&r.versions).unwrap_or_default())),
            s(Some(server)),
        ],
    )?;
    let table = session.warehouse().load_existing(&meta).await?;
    table.write(vec![batch]).with_save_mode(deltalake::protocol::SaveMode::Append).await?;
    Ok(())
}

/// What RUN and BACKFILL answer: one row per window run.
pub fn output_schema() -> SchemaRef {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("window_start", utc.clone(), false),
        Field::new("window_end", utc, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

fn output(records: &[RunRecord]) -> Result<RecordBatch> {
    let ts = |f: &dyn Fn(&RunRecord) -> DateTime<Utc>| {
        Arc::new(TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| f(r).timestamp_micros())).with_timezone("UTC")) as Arc<dyn Array>
    };
    let batch = RecordBatch::try_new(
        output_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.run_id.as_str()))),
            ts(&|r| r.window.start),
            ts(&|r| r.window.end),
            Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.status()))),
            Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.rows))),
            Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.duration_ms))),
            Arc::new(StringArray::from_iter(records.iter().map(|r| r.error.as_ref().map(|e| e.message())))),
        ],
    )?;
    Ok(batch)
}

async fn load(session: &dyn Planner, name: &str) -> Result<Evaluation> {
    definition::load(session, name).await?.ok_or_else(|| definition::undefined(name))
}

/// `RUN EVALUATION name [FOR WINDOW start, end]`: the given window, or the one the schedule
/// last reached. A failed run is logged, then reported as the query's error.
pub async fn run(session: &dyn Planner, name: &str, window: Option<(Expr, Expr)>) -> Result<RecordBatch> {
    let eval = load(session, name).await?;
    let window = match window {
        Some((start, end)) => {
            let w = Window { start: session.fold_timestamp(&start).await?, end: session.fold_timestamp(&end).await? };
            if w.start >= w.end {
                return Err(Error::InvalidParameter(format!("the window's start {} is not before its end {}", w.start, w.end)));
            }
            w
        }
        None => eval.latest_window(Utc::now())?,
    };
    let mut record = run_window(session, &eval, window, Trigger::Manual, None, None, 1).await?;
    match record.error.take() {
        Some(e) => Err(e),
        None => output(&[record]),
    }
}

/// The most windows one BACKFILL runs.
const MAX_BACKFILL: usize = 10_000;

/// `BACKFILL EVALUATION name FROM a TO b`: every scheduled window inside [a, b], oldest first.
/// Failures are logged and reported in their rows; the rest still run.
pub async fn backfill(session: &dyn Planner, name: &str, from: Expr, to: Expr) -> Result<RecordBatch> {
    let eval = load(session, name).await?;
    let (from, to) = (session.fold_timestamp(&from).await?, session.fold_timestamp(&to).await?);
    let mut windows = Vec::new();
    // A window ends LAG before its run; runs are scheduled from just after `from` until a
    // window would end after `to`.
    let mut cursor = from;
    loop {
        let Some(at) = eval.next_occurrence(cursor)? else { break };
        let w = eval.window_for(at)?;
        if w.end > to {
            break;
        }
        if w.start >= from {
            windows.push((at, w));
        }
        if windows.len() > MAX_BACKFILL {
            return Err(Error::InvalidParameter(format!("BACKFILL would run more than {MAX_BACKFILL} windows; backfill a shorter span")));
        }
        cursor = at;
    }
    let mut records = Vec::with_capacity(windows.len());
    for (at, w) in windows {
        records.push(run_window(session, &eval, w, Trigger::Backfill, Some(at), None, 1).await?);
    }
    output(&records)
}
