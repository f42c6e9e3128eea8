//! Evaluation definitions: `CREATE EVALUATION`, `DROP EVALUATION`, `SHOW EVALUATIONS`, and the
//! schedule arithmetic (which windows a cron schedule, WINDOW and LAG give). Definitions live in
//! the Delta table `hindsight.evaluations`, so they have history like feature views.
//!
//! A run scheduled at time t evaluates the window [t - LAG - WINDOW, t - LAG). Without WINDOW the
//! window is the time since the schedule's previous occurrence, so consecutive runs tile time.
//! Schedules are standard 5-field cron (an optional leading seconds field is allowed), in UTC.

use std::sync::Arc;

use chrono::{DateTime, Duration, Months, Utc};
use croner::Cron;
use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, Int64Type};
use datafusion::prelude::{col, lit};

use crate::catalog::metadata;
use crate::error::{Error, Result};
use crate::sql::Planner;
use crate::sql::{self, EvaluationSpec};

/// What `SHOW EVALUATIONS` runs: the definitions and each one's latest run.
pub const SHOW_SQL: &str = "SELECT e.name, e.schedule, e.window_size, e.lag, e.on_commit, e.query, e.created_at, e.created_by, \
     r.last_run_at, r.last_status FROM hindsight.evaluations e LEFT JOIN (SELECT evaluation, max(started_at) AS last_run_at, \
     last_value(status ORDER BY started_at) AS last_status FROM hindsight.evaluation_runs GROUP BY evaluation) r \
     ON r.evaluation = e.name ORDER BY e.name";

/// The columns every row of `eval.<name>` gets besides the query's own.
pub const RESULT_COLUMNS: [&str; 5] = ["window_start", "window_end", "run_id", "run_at", "versions"];

/// An evaluation as stored.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub name: String,
    pub schedule: String,
    pub window: Option<String>,
    pub lag: Option<String>,
    /// `schema.table` whose new versions also trigger a run.
    pub on_commit: Option<String>,
    /// That table's version when the evaluation was created.
    pub on_commit_version: Option<i64>,
    pub query: String,
    pub default_schema: String,
    pub created_at: DateTime<Utc>,
}

/// A half-open interval of time, [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

pub fn parse_cron(schedule: &str) -> Result<Cron> {
    Cron::new(schedule).with_seconds_optional().parse().map_err(|e| {
        Error::InvalidParameter(format!("SCHEDULE '{schedule}' is not a cron expression ({e}); write e.g. '0 6 * * 1' (Mondays at 06:00 UTC)"))
    })
}

fn minus(t: DateTime<Utc>, i: IntervalMonthDayNano) -> Result<DateTime<Utc>> {
    t.checked_sub_months(Months::new(i.months as u32))
        .and_then(|t| t.checked_sub_signed(Duration::days(i.days as i64)))
        .and_then(|t| t.checked_sub_signed(Duration::nanoseconds(i.nanoseconds)))
        .ok_or_else(|| Error::InvalidDatetime(format!("{t} minus an interval is out of range")))
}

impl Evaluation {
    pub fn cron(&self) -> Result<Cron> {
        parse_cron(&self.schedule)
    }

    /// The first scheduled time after `t`, if the schedule has one.
    pub fn next_occurrence(&self, t: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        Ok(self.cron()?.find_next_occurrence(&t, false).ok())
    }

    /// Scheduled times in (after, until], earliest first.
    pub fn occurrences(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>> {
        let cron = self.cron()?;
        let mut out = Vec::new();
        let mut t = after;
        while let Ok(next) = cron.find_next_occurrence(&t, false) {
            if next > until {
                break;
            }
            out.push(next);
            t = next;
        }
        Ok(out)
    }

    /// The latest scheduled time at or before `t`.
    pub fn previous_occurrence(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let cron = self.cron()?;
        // Look back over growing spans, so a minutely schedule costs one step and a yearly one a
        // few, without walking every occurrence of a year.
        for span in [Duration::minutes(2), Duration::hours(2), Duration::days(2), Duration::days(9), Duration::days(33), Duration::days(367), Duration::days(5 * 366 + 2)] {
            let mut found = None;
            let mut cursor = t - span;
            while let Ok(next) = cron.find_next_occurrence(&cursor, false) {
                if next > t {
                    break;
                }
                found = Some(next);
                cursor = next;
            }
            if let Some(f) = found {
                return Ok(f);
            }
        }
        Err(Error::InvalidParameter(format!("SCHEDULE '{}' has no occurrence in the five years before {t}", self.schedule)))
    }

    /// The window a run scheduled at `at` evaluates.
    pub fn window_for(&self, at: DateTime<Utc>) -> Result<Window> {
        let end = match &self.lag {
            Some(lag) => minus(at, sql::parse_interval("LAG", lag)?)?,
            None => at,
        };
        let start = match &self.window {
            Some(w) => minus(end, sql::parse_interval("WINDOW", w)?)?,
            None => end - (at - self.previous_occurrence(at - Duration::seconds(1))?),
        };
        Ok(Window { start, end })
    }

    /// The window of the latest scheduled time at or before `now`.
    pub fn latest_window(&self, now: DateTime<Utc>) -> Result<Window> {
        self.window_for(self.previous_occurrence(now)?)
    }

    pub fn results_table(&self) -> crate::catalog::TableName {
        crate::catalog::TableName::new("eval", &self.name)
    }
}

pub fn undefined(name: &str) -> Error {
    Error::UndefinedObject(format!("evaluation \"{name}\" does not exist; SHOW EVALUATIONS lists them"))
}

pub async fn create(session: &dyn Planner, spec: EvaluationSpec) -> Result<()> {
    if load(session, &spec.name).await?.is_some() {
        return Err(Error::DuplicateObject(format!("evaluation \"{}\" already exists", spec.name)));
    }
    parse_cron(&spec.schedule)?;
    if let Some(w) = &spec.window {
        let i = sql::parse_interval("WINDOW", w)?;
        if (i.months, i.days, i.nanoseconds) == (0, 0, 0) {
            return Err(Error::InvalidParameter(format!("WINDOW '{w}' must be positive")));
        }
    }
    if let Some(l) = &spec.lag {
        sql::parse_interval("LAG", l)?;
    }
    let default_schema = session.default_schema();
    let (on_commit, on_commit_version) = match &spec.on_commit {
        Some(t) => {
            let t = sql::table_name(t, &default_schema)?;
            let v = session.warehouse().latest_version(&t).await.map_err(|_| Error::UndefinedTable(t.to_string()))?;
            (Some(t.to_string()), Some(v as i64))
        }
        None => (None, None),
    };
    let eval = Evaluation {
        name: spec.name.clone(),
        schedule: spec.schedule.clone(),
        window: spec.window.clone(),
        lag: spec.lag.clone(),
        on_commit,
        on_commit_version,
        query: spec.query.clone(),
        default_schema,
        created_at: Utc::now(),
    };
    // Plan it over the latest window: unknown tables, columns and parameters fail now, not at
    // the first scheduled run.
    let window = eval.latest_window(eval.created_at)?;
    let schema = super::run::plan(session, &eval, window).await?.1;
    for c in RESULT_COLUMNS {
        if schema.field_with_name(c).is_ok() {
            return Err(Error::DuplicateColumn(format!(
                "evaluation {}: the query returns a column named {c}, which eval.{} adds itself; rename it",
                eval.name, eval.name
            )));
        }
    }
    append(session, &eval).await
}

pub async fn drop(session: &dyn Planner, name: &str, if_exists: bool) -> Result<()> {
    if load(session, name).await?.is_none() {
        if if_exists {
            return Ok(());
        }
        return Err(undefined(name));
    }
    let table = session.warehouse().load_existing(&metadata::evaluations().0).await?;
    table.delete().with_predicate(col("name").eq(lit(name))).await?;
    Ok(())
}

/// The definition as the session sees `hindsight.evaluations`.
pub async fn load(session: &dyn Planner, name: &str) -> Result<Option<Evaluation>> {
    let Some(b) = session.metadata_row(&metadata::evaluations().0, name, None).await? else { return Ok(None) };
    Ok(from_batch(&b)?.into_iter().next())
}

/// Every definition, as the latest version of `hindsight.evaluations` has them.
pub async fn list(session: &dyn Planner) -> Result<Vec<Evaluation>> {
    let batches = session.context().table("hindsight.hindsight.evaluations").await?.collect().await?;
    let mut out = Vec::new();
    for b in batches {
        out.extend(from_batch(&b)?);
    }
    Ok(out)
}

fn from_batch(b: &RecordBatch) -> Result<Vec<Evaluation>> {
    let column = |c: &str, t: &DataType| -> Result<Arc<dyn Array>> {
        let a = b.column_by_name(c).ok_or_else(|| Error::DataCorrupted(format!("hindsight.evaluations has no column {c}")))?;
        Ok(cast(a, t)?)
    };
    let texts: Vec<Arc<dyn Array>> = ["name", "schedule", "window_size", "lag", "on_commit", "query", "default_schema"]
        .iter()
        .map(|c| column(c, &DataType::Utf8))
        .collect::<Result<_>>()?;
    let version = column("on_commit_version", &DataType::Int64)?;
    let created = column("created_at", &DataType::Int64)?;
    let (version, created) = (version.as_primitive::<Int64Type>(), created.as_primitive::<Int64Type>());
    Ok((0..b.num_rows())
        .map(|i| {
            let text = |k: usize| {
                let a = texts[k].as_string::<i32>();
                a.is_valid(i).then(|| a.value(i).to_string())
            };
            Evaluation {
                name: text(0).unwrap_or_default(),
                schedule: text(1).unwrap_or_default(),
                window: text(2),
                lag: text(3),
                on_commit: text(4),
                on_commit_version: version.is_valid(i).then(|| version.value(i)),
                query: text(5).unwrap_or_default(),
                default_schema: text(6).unwrap_or_default(),
                created_at: DateTime::from_timestamp_micros(created.value(i)).unwrap_or_default(),
            }
        })
        .collect())
}

async fn append(session: &dyn Planner, e: &Evaluation) -> Result<()> {
    let (meta, schema) = metadata::evaluations();
    let s = |v: Option<&str>| Arc::new(StringArray::from(vec![v.map(str::to_string)])) as Arc<dyn Array>;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            s(Some(&e.name)),
            s(Some(&e.schedule)),
            s(e.window.as_deref()),
            s(e.lag.as_deref()),
            s(e.on_commit.as_deref()),
            Arc::new(Int64Array::from(vec![e.on_commit_version])),
            s(Some(&e.query)),
            s(Some(&e.default_schema)),
            Arc::new(TimestampMicrosecondArray::from(vec![e.created_at.timestamp_micros()]).with_timezone("UTC")),
            s(Some(&session.user())),
        ],
    )?;
    let table = session.warehouse().load_existing(&meta).await?;
    table.write(vec![batch]).with_save_mode(deltalake::protocol::SaveMode::Append).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(schedule: &str, window: Option<&str>, lag: Option<&str>) -> Evaluation {
        Evaluation {
            name: "e".into(),
            schedule: schedule.into(),
            window: window.map(Into::into),
            lag: lag.map(Into::into),
            on_commit: None,
            on_commit_version: None,
            query: String::new(),
            default_schema: "public".into(),
            created_at: Utc::now(),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_follow_schedule_window_and_lag() {
        // Mondays 06:00; a week's window ending a week before the run.
        let e = eval("0 6 * * 1", Some("7 days"), Some("7 days"));
        let w = e.latest_window(t("2026-11-22T12:00:00Z")).unwrap();
        assert_eq!((w.start, w.end), (t("2026-11-02T06:00:00Z"), t("2026-11-09T06:00:00Z")));
        // Without WINDOW, the span since the previous occurrence: weekdays at 09:00 make
        // Monday's window three days long.
        let e = eval("0 9 * * 1-5", None, None);
        let w = e.window_for(t("2026-11-23T09:00:00Z")).unwrap();
        assert_eq!((w.start, w.end), (t("2026-11-20T09:00:00Z"), t("2026-11-23T09:00:00Z")));
        assert_eq!(e.occurrences(t("2026-11-20T09:00:00Z"), t("2026-11-24T09:00:00Z")).unwrap(), [t("2026-11-23T09:00:00Z"), t("2026-11-24T09:00:00Z")]);
        assert!(parse_cron("every monday").is_err());
        assert!(sql::parse_interval("LAG", "-1 day").is_err());
    }
}
