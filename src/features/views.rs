//! Feature views: named sources of feature rows with their entity keys, event timestamp, optional
//! creation timestamp and TTL. Definitions live in the Delta table `hindsight.feature_views`, so
//! they have history: reading them under `hindsight.as_of` (or at a dataset's creation time)
//! gives the definitions of that moment.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::prelude::{col, lit};

use crate::catalog::metadata;
use crate::error::{Error, Result};
use crate::sql::Planner;
use crate::sql::{self, FeatureViewSpec, ViewSource, build, parse_query, time_travel};
use datafusion::sql::sqlparser::ast::{ObjectName, Query};

/// What `SHOW FEATURE VIEWS` runs.
pub const SHOW_SQL: &str = "SELECT name, entity, timestamp_column, created_column, ttl, features, source_kind, source, \
                            created_at, created_by FROM hindsight.feature_views ORDER BY name";

/// A feature view as stored.
#[derive(Debug, Clone)]
pub struct FeatureView {
    pub name: String,
    /// `table` (source is `"schema"."table"`) or `query` (source is the query as written).
    pub source_kind: String,
    pub source: String,
    pub default_schema: String,
    pub entity: Vec<String>,
    pub timestamp: String,
    pub created: Option<String>,
    pub ttl: Option<String>,
}

impl FeatureView {
    /// The view's rows as a query whose table names are qualified, so it means the same under
    /// any search_path.
    pub fn source_query(&self) -> Result<Box<Query>> {
        if self.source_kind == "table" {
            return Ok(build::select_all(build::table(build::object_name(&self.source)?, None)));
        }
        let mut q = parse_query(&self.source)?;
        time_travel::qualify(&mut q, &self.default_schema)?;
        Ok(q)
    }

    /// The columns that are features: all but the keys and the timestamps.
    pub fn features(&self, schema: &SchemaRef) -> Vec<String> {
        schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !self.entity.contains(n) && *n != self.timestamp && self.created.as_ref() != Some(n))
            .collect()
    }
}

/// Parses a TTL; it must be a positive interval.
pub fn check_ttl(ttl: &str) -> Result<()> {
    let i = crate::sql::parse_interval("TTL", ttl)?;
    if (i.months, i.days, i.nanoseconds) == (0, 0, 0) {
        return Err(Error::InvalidParameter(format!("TTL '{ttl}' must be a positive interval")));
    }
    Ok(())
}

fn is_time(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64)
}

/// The schema of a view's rows, by planning its source.
pub async fn source_schema(session: &dyn Planner, view: &FeatureView) -> Result<SchemaRef> {
    session.query_schema(view.source_query()?).await
}

pub async fn create(session: &dyn Planner, spec: FeatureViewSpec) -> Result<()> {
    if load(session, &spec.name, None).await?.is_some() {
        return Err(Error::DuplicateObject(format!("feature view \"{}\" already exists", spec.name)));
    }
    let default_schema = session.default_schema();
    let (source_kind, source) = match &spec.source {
        ViewSource::Table(name) => {
            let t = sql::table_name(name, &default_schema)?;
            if !session.warehouse().exists(&t).await? {
                return Err(Error::UndefinedTable(format!("relation \"{t}\" does not exist")));
            }
            ("table", ObjectName::from(vec![build::ident(&t.schema), build::ident(&t.table)]).to_string())
        }
        ViewSource::Query(q) => ("query", q.clone()),
    };
    let view = FeatureView {
        name: spec.name.clone(),
        source_kind: source_kind.into(),
        source,
        default_schema,
        entity: spec.entity.clone(),
        timestamp: spec.timestamp.clone(),
        created: spec.created.clone(),
        ttl: spec.ttl.clone(),
    };
    if let Some(ttl) = &view.ttl {
        check_ttl(ttl)?;
    }
    let schema = source_schema(session, &view).await?;
    let column = |name: &str, role: &str| -> Result<DataType> {
        schema.field_with_name(name).map(|f| f.data_type().clone()).map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            Error::UndefinedColumn(format!(
                "feature view {}: {role} column \"{name}\" does not exist; the source has {}",
                view.name,
                names.join(", ")
            ))
        })
    };
    for (i, k) in view.entity.iter().enumerate() {
        let t = column(k, "entity")?;
        if t.is_nested() || t.is_floating() {
            return Err(Error::DatatypeMismatch(format!("feature view {}: entity key {k} is {t}; keys must be exact types", view.name)));
        }
        if view.entity[..i].contains(k) {
            return Err(Error::Syntax(format!("feature view {}: entity key {k} is listed twice", view.name)));
        }
    }
    for (c, role) in [(Some(&view.timestamp), "TIMESTAMP"), (view.created.as_ref(), "CREATED")] {
        let Some(c) = c else { continue };
        let t = column(c, role)?;
        if !is_time(&t) {
            return Err(Error::DatatypeMismatch(format!("feature view {}: {role} column {c} is {t}, not a timestamp or date", view.name)));
        }
        if view.entity.contains(c) {
            return Err(Error::Syntax(format!("feature view {}: {c} cannot be both an entity key and {role}", view.name)));
        }
    }
    let features = view.features(&schema);
    if features.is_empty() {
        return Err(Error::Syntax(format!("feature view {} has no feature columns besides its keys and timestamps", view.name)));
    }
    append(session, &view, &features).await
}

pub async fn drop(session: &dyn Planner, name: &str, if_exists: bool) -> Result<()> {
    if load(session, name, None).await?.is_none() {
        if if_exists {
            return Ok(());
        }
        return Err(undefined(name));
    }
    let (meta, _) = metadata::feature_views();
    let table = session.warehouse().load_existing(&meta).await?;
    table.delete().with_predicate(col("name").eq(lit(name))).await?;
    Ok(())
}

pub fn undefined(name: &str) -> Error {
    Error::UndefinedObject(format!("feature view \"{name}\" does not exist; SHOW FEATURE VIEWS lists them"))
}

/// The view's definition as the session sees `hindsight.feature_views` (so `hindsight.as_of`
/// applies), or as of `at` if given.
pub async fn load(session: &dyn Planner, name: &str, at: Option<DateTime<Utc>>) -> Result<Option<FeatureView>> {
    let Some(b) = session.metadata_row(&metadata::feature_views().0, name, at).await? else { return Ok(None) };
    let text = |c: &str| -> Result<Option<String>> {
        let a = b.column_by_name(c).ok_or_else(|| Error::DataCorrupted(format!("hindsight.feature_views has no column {c}")))?;
        let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
        let a = a.as_string::<i32>();
        Ok(a.is_valid(0).then(|| a.value(0).to_string()))
    };
    let required = |c: &str| -> Result<String> { text(c)?.ok_or_else(|| Error::DataCorrupted(format!("hindsight.feature_views: {c} is NULL"))) };
    let entity: Vec<String> = serde_json::from_str(&required("entity")?)
        .map_err(|e| Error::DataCorrupted(format!("hindsight.feature_views: entity of {name}: {e}")))?;
    Ok(Some(FeatureView {
        name: required("name")?,
        source_kind: required("source_kind")?,
        source: required("source")?,
        default_schema: required("default_schema")?,
        entity,
        timestamp: required("timestamp_column")?,
        created: text("created_column")?,
        ttl: text("ttl")?,
    }))
}

async fn append(session: &dyn Planner, v: &FeatureView, features: &[String]) -> Result<()> {
    let (meta, schema) = metadata::feature_views();
    let s = |v: Option<&str>| Arc::new(StringArray::from(vec![v.map(str::to_string)])) as Arc<dyn Array>;
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            s(Some(&v.name)),
            s(Some(&v.source_kind)),
            s(Some(&v.source)),
            s(Some(&v.default_schema)),
            s(Some(&json(&v.entity))),
            s(Some(&v.timestamp)),
            s(v.created.as_deref()),
            s(v.ttl.as_deref()),
            s(Some(&json(features))),
            Arc::new(TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros()]).with_timezone("UTC")),
            s(Some(&session.user())),
        ],
    )?;
    let table = session.warehouse().load_existing(&meta).await?;
    table.write(vec![batch]).with_save_mode(deltalake::protocol::SaveMode::Append).await?;
    Ok(())
}
