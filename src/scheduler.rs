//! The evaluation scheduler inside `hindsight serve`: decides which windows are due and runs
//! them through `evaluation::run`.
//!
//! Owns: when to run. Each tick (every second by default) it reads the definitions and, per
//! evaluation, runs every scheduled time since the last one it finished, oldest first, once
//! each (so after downtime, missed windows are caught up), and runs the latest window when the
//! `ON COMMIT TO` table has a new version. A failed run is logged and retried with exponential
//! backoff, up to `max_attempts`, before the scheduler moves on; nothing it runs can stop the
//! loop. Its progress is read back from `hindsight.evaluation_runs` when it starts.
//!
//! Several servers on one warehouse: before each attempt at a scheduled time (and each commit
//! trigger) a server claims it with a write-if-absent object (`Warehouse::claim`); whoever
//! loses skips it. A server that dies mid-run leaves its window claimed: `RUN EVALUATION ... FOR
//! WINDOW` runs it by hand.
//!
//! `tick(now)` takes the time as an argument, so tests drive a controllable clock.
//! Must not: know how a window is evaluated (that is `evaluation::run`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use tokio::sync::Mutex;

use crate::catalog::TableName;
use crate::engine::Engine;
use crate::error::Result;
use crate::evaluation::definition::{self, Evaluation};
use crate::evaluation::run::{RunRecord, Trigger, run_window};
use crate::session::Session;

#[derive(Debug, Clone)]
pub struct Options {
    /// How often to look for due work.
    pub interval: Duration,
    /// Attempts per scheduled window before giving up on it.
    pub max_attempts: i64,
    /// Wait before the second attempt; doubled for each one after.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), max_attempts: 3, backoff: Duration::from_secs(30) }
    }
}

/// What the scheduler knows of one evaluation.
#[derive(Debug)]
struct State {
    /// Identifies the definition: a dropped and re-created evaluation starts afresh.
    created_at: DateTime<Utc>,
    /// Every scheduled time up to here is finished (succeeded, or out of attempts).
    done_until: DateTime<Utc>,
    retry: Option<Retry>,
    /// The ON COMMIT table's version last run for.
    commit_version: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    scheduled_for: DateTime<Utc>,
    attempts: i64,
    next_try: DateTime<Utc>,
}

pub struct Scheduler {
    engine: Arc<Engine>,
    options: Options,
    state: Mutex<HashMap<String, State>>,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, options: Options) -> Arc<Self> {
        Arc::new(Self { engine, options, state: Mutex::new(HashMap::new()) })
    }

    /// Ticks until `shutdown` resolves; a tick in progress finishes first, so no run is cut off
    /// between its result commit and its log entry.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.options.interval) => {
                    if let Err(e) = self.tick(Utc::now()).await {
                        tracing::warn!(error = %e.message(), "scheduler tick failed; trying again next tick");
                    }
                }
            }
        }
    }

    /// Runs whatever is due at `now`; returns the attempts made.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Vec<RunRecord>> {
        let session = Session::admin(&self.engine)?;
        self.engine.warehouse().refresh().await?;
        let evaluations = definition::list(&session).await?;
        let mut states = self.state.lock().await;
        states.retain(|name, s| evaluations.iter().any(|e| e.name == *name && e.created_at == s.created_at));
        let mut out = Vec::new();
        for eval in &evaluations {
            if !states.contains_key(&eval.name) {
                let loaded = self.load(&session, eval).await?;
                states.insert(eval.name.clone(), loaded);
            }
            let Some(state) = states.get_mut(&eval.name) else { continue };
            // One evaluation's trouble (a bad schedule, storage hiccups) must not stop the others.
            // Boxed: a run's future (planning and executing a query) is large, and a caller that
            // keeps ticks on its stack (two at once in a test) would overflow it in a debug build.
            if let Err(e) = Box::pin(self.due(&session, eval, state, now, &mut out)).await {
                tracing::warn!(evaluation = %eval.name, error = %e.message(), "evaluation could not be scheduled");
            }
        }
        for record in &out {
            let status = crate::metrics::Status { status: record.status() };
            crate::metrics::METRICS.scheduler_runs.get_or_create(&status).inc();
        }
        Ok(out)
    }

    async fn due(&self, session: &Session, eval: &Evaluation, state: &mut State, now: DateTime<Utc>, out: &mut Vec<RunRecord>) -> Result<()> {
        if let Some(r) = state.retry {
            if now < r.next_try {
                return self.on_commit(session, eval, state, now, out).await;
            }
            state.retry = None;
            self.attempt(session, eval, state, r.scheduled_for, r.attempts + 1, now, out).await?;
        }
        if state.retry.is_none() {
            for at in eval.occurrences(state.done_until, now)? {
                self.attempt(session, eval, state, at, 1, now, out).await?;
                if state.retry.is_some() {
                    break;
                }
            }
        }
        self.on_commit(session, eval, state, now, out).await
    }

    /// One attempt at a scheduled time, if this server wins its claim.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        session: &Session,
        eval: &Evaluation,
        state: &mut State,
        at: DateTime<Utc>,
        attempt: i64,
        now: DateTime<Utc>,
        out: &mut Vec<RunRecord>,
    ) -> Result<()> {
        let claim = [eval.name.as_str(), &eval.created_at.timestamp_micros().to_string(), &format!("{}-{attempt}", at.timestamp_micros())];
        if !self.engine.warehouse().claim(&claim).await? {
            state.done_until = at;
            return Ok(());
        }
        let window = eval.window_for(at)?;
        let record = run_window(session, eval, window, Trigger::Schedule, Some(at), None, attempt).await?;
        if record.succeeded() || attempt >= self.options.max_attempts {
            state.done_until = at;
        } else {
            let wait = self.options.backoff * 2u32.saturating_pow((attempt - 1) as u32);
            let next_try = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
            state.retry = Some(Retry { scheduled_for: at, attempts: attempt, next_try });
        }
        out.push(record);
        Ok(())
    }

    /// Runs the latest window when the ON COMMIT table has moved on.
    async fn on_commit(&self, session: &Session, eval: &Evaluation, state: &mut State, now: DateTime<Utc>, out: &mut Vec<RunRecord>) -> Result<()> {
        let Some(table) = &eval.on_commit else { return Ok(()) };
        let name = TableName::from_qualified(table, &eval.default_schema);
        let version = self.engine.warehouse().latest_version(&name).await? as i64;
        let seen = state.commit_version;
        if seen.is_some_and(|seen| version <= seen) {
            return Ok(());
        }
        state.commit_version = Some(version);
        // A compaction moves the version on without changing a row: nothing to evaluate.
        if let Some(seen) = seen.filter(|s| *s >= 0)
            && !self.engine.warehouse().appended(&name, seen as u64, version as u64).await?.data_changed
        {
            return Ok(());
        }
        let claim = [eval.name.as_str(), &eval.created_at.timestamp_micros().to_string(), &format!("commit-{version}")];
        if !self.engine.warehouse().claim(&claim).await? {
            return Ok(());
        }
        let window = eval.latest_window(now)?;
        out.push(run_window(session, eval, window, Trigger::Commit, None, Some(version), 1).await?);
        Ok(())
    }

    /// Progress from `hindsight.evaluation_runs`: the latest finished scheduled time, an
    /// unfinished one to retry, and the last version an ON COMMIT run saw.
    async fn load(&self, session: &Session, eval: &Evaluation) -> Result<State> {
        let name = eval.name.replace('\'', "''");
        let created = eval.created_at.timestamp_micros();
        let sql = format!(
            "SELECT CAST(scheduled_for AS BIGINT) AS at, max(attempt) AS attempts, bool_or(status = 'succeeded') AS ok \
             FROM hindsight.evaluation_runs WHERE evaluation = '{name}' AND trigger = 'schedule' \
             AND scheduled_for > to_timestamp_micros({created}) GROUP BY scheduled_for ORDER BY scheduled_for DESC LIMIT 2"
        );
        let batches = session.context().sql(&sql).await?.collect().await?;
        let mut recent = Vec::new();
        for b in &batches {
            let at = cast(b.column(0), &DataType::Int64)?;
            let (at, attempts, ok) = (at.as_primitive::<Int64Type>(), b.column(1).as_primitive::<Int64Type>(), b.column(2).as_boolean());
            for i in 0..b.num_rows() {
                let t = DateTime::from_timestamp_micros(at.value(i)).unwrap_or(eval.created_at);
                recent.push((t, attempts.value(i), ok.is_valid(i) && ok.value(i)));
            }
        }
        let finished = |&(_, attempts, ok): &(DateTime<Utc>, i64, bool)| ok || attempts >= self.options.max_attempts;
        let mut state = State { created_at: eval.created_at, done_until: eval.created_at, retry: None, commit_version: eval.on_commit_version };
        match recent.as_slice() {
            [latest, ..] if finished(latest) => state.done_until = latest.0,
            [latest, rest @ ..] => {
                state.done_until = rest.first().map_or(eval.created_at, |r| r.0);
                state.retry = Some(Retry { scheduled_for: latest.0, attempts: latest.1, next_try: DateTime::<Utc>::MIN_UTC });
            }
            [] => {}
        }
        if eval.on_commit.is_some() {
            let sql = format!(
                "SELECT max(trigger_version) FROM hindsight.evaluation_runs WHERE evaluation = '{name}' AND trigger = 'commit' \
                 AND started_at >= to_timestamp_micros({created})"
            );
            let batches = session.context().sql(&sql).await?.collect().await?;
            if let Some(v) = batches.first().map(|b| b.column(0).as_primitive::<Int64Type>()).filter(|v| v.is_valid(0)) {
                state.commit_version = Some(v.value(0));
            }
        }
        Ok(state)
    }
}
