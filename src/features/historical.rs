//! `historical_features(spine, 'view.feature' | 'view.*', ... [, timestamp => 'column'])`:
//! expanded before planning into a derived table of ASOF JOINs, one per feature view, so the
//! training path is plain SQL over the same operator as `ASOF JOIN`. Built as a syntax tree
//! (`sql::build`), with the spine and each view's source in place as parsed; as SQL it reads:
//!
//! ```sql
//! (SELECT s.*, CASE WHEN v0.ts > s.ts - INTERVAL '<ttl>' THEN v0.f END AS "view__f", ...
//!  FROM (<spine>) s
//!  ASOF JOIN (<view source>) v0 MATCH_CONDITION (s.ts >= v0.ts)
//!    ON s.k = v0.k AND __hs_asof_created(s.ts >= v0.created)
//!  ...)
//! ```
//!
//! The operator keeps the spine's row order and yields each spine row once; the CREATED marker
//! hides rows created after the spine time and breaks event-time ties by latest creation.

use chrono::{DateTime, Utc};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, FunctionArg, FunctionArgExpr, Query, Statement};

use super::views::{self, FeatureView};
use crate::error::{Error, Result};
use crate::sql::Planner;
use crate::sql::asof::CREATED_MARKER;
use crate::sql::build;
use crate::sql::table_functions::{self, string_arg};

pub const FUNCTION: &str = "historical_features";

/// Expands every `historical_features(...)` in a statement. `views_at` reads the feature view
/// definitions as of that instant (a dataset being reproduced) instead of the session's view.
pub async fn expand(session: &dyn Planner, stmt: &mut Statement, views_at: Option<DateTime<Utc>>) -> Result<()> {
    // A spine may itself call historical_features; each round expands one level.
    for _ in 0..8 {
        let calls = table_functions::calls(stmt, FUNCTION);
        if calls.is_empty() {
            return Ok(());
        }
        let mut derived = Vec::with_capacity(calls.len());
        for args in &calls {
            derived.push(expansion(session, args, views_at).await?);
        }
        table_functions::replace(stmt, FUNCTION, derived);
    }
    Err(Error::FeatureNotSupported("historical_features is nested too deeply".into()))
}

/// Expands the calls of a query (a dataset's).
pub async fn expand_query(session: &dyn Planner, q: &mut Box<Query>, views_at: Option<DateTime<Utc>>) -> Result<()> {
    let mut stmt = Statement::Query(q.clone());
    expand(session, &mut stmt, views_at).await?;
    if let Statement::Query(expanded) = stmt {
        *q = expanded;
    }
    Ok(())
}

fn usage() -> Error {
    Error::Syntax(format!(
        "usage: {FUNCTION}(spine, 'view.feature' | 'view.*', ... [, timestamp => 'column']), where spine is a table \
         name or a quoted query"
    ))
}

/// The spine's alias in an expansion; views are `__hs_v0`, `__hs_v1`, ...
const SPINE: &str = "__hs_s";

async fn expansion(session: &dyn Planner, args: &[FunctionArg], views_at: Option<DateTime<Utc>>) -> Result<Box<Query>> {
    let mut spine = None;
    let mut wanted: Vec<(String, String)> = Vec::new();
    let mut spine_ts = "ts".to_string();
    for a in args {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if spine.is_none() => {
                spine = Some(build::relation_arg(e).ok_or_else(usage)??);
            }
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                let s = string_arg(e).ok_or_else(usage)?;
                let (view, feature) = s.split_once('.').ok_or_else(|| {
                    Error::Syntax(format!("{FUNCTION}: '{s}' names no view; write 'view.feature' or 'view.*'"))
                })?;
                wanted.push((view.to_string(), feature.to_string()));
            }
            FunctionArg::ExprNamed { name: Expr::Identifier(name), arg: FunctionArgExpr::Expr(e), .. }
            | FunctionArg::Named { name, arg: FunctionArgExpr::Expr(e), .. }
                if ["timestamp", "ts"].contains(&name.value.to_ascii_lowercase().as_str()) =>
            {
                spine_ts = string_arg(e).ok_or_else(usage)?.to_string();
            }
            _ => return Err(usage()),
        }
    }
    let spine = spine.ok_or_else(usage)?;
    if wanted.is_empty() {
        return Err(usage());
    }
    let spine_columns: Vec<String> =
        session.query_schema(spine.clone()).await?.fields().iter().map(|f| f.name().clone()).collect();
    let spine_has = |c: &str| spine_columns.iter().any(|s| s == c);
    if !spine_has(&spine_ts) {
        return Err(Error::UndefinedColumn(format!(
            "{FUNCTION}: the spine has no timestamp column \"{spine_ts}\" (its columns: {}); name it with timestamp => 'column'",
            spine_columns.join(", ")
        )));
    }

    // One ASOF JOIN per view, in order of first mention; features in the order asked.
    let mut joins: Vec<(FeatureView, Vec<String>)> = Vec::new();
    let mut select = vec![build::all_of(SPINE)];
    for (view_name, feature) in &wanted {
        let view_name = view_name.to_ascii_lowercase();
        let at = match joins.iter().position(|(v, _)| v.name == view_name) {
            Some(i) => i,
            None => {
                let view = views::load(session, &view_name, views_at).await?.ok_or_else(|| views::undefined(&view_name))?;
                for k in &view.entity {
                    if !spine_has(k) {
                        return Err(Error::UndefinedColumn(format!(
                            "{FUNCTION}: the spine has no column \"{k}\", an entity key of feature view {view_name} (spine columns: {})",
                            spine_columns.join(", ")
                        )));
                    }
                }
                let all = view.features(&views::source_schema(session, &view).await?);
                joins.push((view, all));
                joins.len() - 1
            }
        };
        let (view, all) = &joins[at];
        let chosen: Vec<String> = if feature == "*" {
            all.clone()
        } else if all.contains(feature) {
            vec![feature.clone()]
        } else {
            return Err(Error::UndefinedColumn(format!(
                "feature view {view_name} has no feature \"{feature}\"; its features are {}",
                all.join(", ")
            )));
        };
        let v = view_alias(at);
        for f in chosen {
            let value = build::column(&v, &f);
            // Older than the TTL at the spine's time: no value.
            let value = match &view.ttl {
                Some(ttl) => {
                    let oldest = build::binary(build::column(SPINE, &spine_ts), BinaryOperator::Minus, build::interval(ttl));
                    build::case_when(build::binary(build::column(&v, &view.timestamp), BinaryOperator::Gt, oldest), value)
                }
                None => value,
            };
            select.push(build::aliased(value, &format!("{}__{f}", view.name)));
        }
    }
    let spine_time = build::column(SPINE, &spine_ts);
    let mut from = build::from(build::derived(spine, SPINE));
    for (i, (view, _)) in joins.iter().enumerate() {
        let v = view_alias(i);
        let mut on: Vec<Expr> =
            view.entity.iter().map(|k| build::binary(build::column(SPINE, k), BinaryOperator::Eq, build::column(&v, k))).collect();
        if let Some(c) = &view.created {
            on.push(build::call(CREATED_MARKER, vec![build::binary(spine_time.clone(), BinaryOperator::GtEq, build::column(&v, c))]));
        }
        let matching = build::binary(spine_time.clone(), BinaryOperator::GtEq, build::column(&v, &view.timestamp));
        let on = build::and_all(on).unwrap_or_else(|| build::boolean(true));
        from.joins.push(build::asof_join(build::derived(view.source_query()?, &v), matching, on));
    }
    Ok(build::query(build::select(select, from)))
}

fn view_alias(i: usize) -> String {
    format!("__hs_v{i}")
}
