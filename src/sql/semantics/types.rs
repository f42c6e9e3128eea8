//! The types PostgreSQL gives, set before DataFusion's type coercion runs, so that coercion
//! (and the checked arithmetic of `arithmetic`) works with them.
//!
//! - Integer literals: PostgreSQL types one `integer` when it fits in 32 bits (`bigint`
//!   otherwise); DataFusion's SQL planner made every one `Int64`. So `SELECT 1` was `int8` to
//!   a driver, `ARRAY[1, 2]` was `int8[]`, and `2147483647 + 1` was answered instead of failing
//!   with 22003. An `Int64` literal that fits becomes `Int32`, except in the arguments of
//!   aggregate and window functions (`count(*)` is planned as `count(Int64(1))`, which
//!   DataFusion's optimizer recognises), grouping sets, `LIMIT`/`OFFSET`, and `WITH RECURSIVE`
//!   queries (whose work table keeps the types planned for it). A `VALUES` column is narrowed
//!   when each of its rows fits, as PostgreSQL resolves the column's type from all of them (not
//!   in an INSERT, nor when a correlated subquery refers to it).
//! - `date ± interval` is a `timestamp` in PostgreSQL; DataFusion kept a date, dropping the
//!   interval's hours. (`date ± integer` stays a date.)
//! - `date_trunc` of a date truncates the `timestamptz` the date converts to, and is one;
//!   `generate_series` over dates steps through `timestamptz` values.
//!
//! Remove the rule and the differential test (`tests/it/postgres.rs`) fails.


use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::arrow::datatypes::DataType;
use datafusion::config::ConfigOptions;
use datafusion::arrow::datatypes::TimeUnit;
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator, Values};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct PostgresTypes;

impl AnalyzerRule for PostgresTypes {
    fn name(&self) -> &str {
        "postgres_types"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        // A recursive query's work table keeps the types planned for it, which its recursive
        // term reads; narrowing the static term alone would make the two disagree. An INSERT's
        // VALUES take the table's column types, and a subquery's reference to an outer VALUES
        // column carries the type planned for it, which narrowing would contradict.
        let (mut recursive, mut outer_references) = (false, false);
        plan.apply_with_subqueries(|p| {
            recursive |= matches!(p, LogicalPlan::RecursiveQuery(_));
            if !outer_references {
                p.apply_expressions(|e| {
                    e.apply(|e| {
                        outer_references |= matches!(e, Expr::OuterReferenceColumn(..));
                        Ok(if outer_references { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
                    })
                })?;
            }
            Ok(if recursive { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
        })?;
        if recursive {
            return Ok(plan);
        }
        let keep_values = outer_references || matches!(plan, LogicalPlan::Dml(_));
        super::rewrite_plan(plan, |plan| match plan {
            LogicalPlan::Limit(_) => Ok(Transformed::no(plan)),
            LogicalPlan::Values(_) if keep_values => Ok(Transformed::no(plan)),
            LogicalPlan::Values(values) => narrow_values(values),
            plan => {
                let schema = super::input_schema(&plan);
                super::rewrite_expressions(plan, |e| narrow(e)?.transform_data(|e| e.transform_up(|e| dates(e, &schema))))
            }
        })
    }
}

fn int4(v: &ScalarValue) -> Option<i32> {
    match v {
        ScalarValue::Int64(Some(v)) => i32::try_from(*v).ok(),
        _ => None,
    }
}

/// A VALUES column is `integer` when each of its rows is an integer literal that fits (or NULL).
fn narrow_values(values: Values) -> Result<Transformed<LogicalPlan>> {
    let fits = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Int64(None), _)) || matches!(e, Expr::Literal(v, _) if int4(v).is_some());
    let narrowed: Vec<bool> = (0..values.schema.fields().len())
        .map(|i| values.schema.field(i).data_type() == &DataType::Int64 && values.values.iter().all(|row| row.get(i).is_some_and(fits)))
        .collect();
    if !narrowed.contains(&true) {
        return Ok(Transformed::no(LogicalPlan::Values(values)));
    }
    let fields = values
        .schema
        .iter()
        .zip(&narrowed)
        .map(|((qualifier, field), narrow)| {
            let field = if *narrow { Arc::new(field.as_ref().clone().with_data_type(DataType::Int32)) } else { Arc::clone(field) };
            (qualifier.cloned(), field)
        })
        .collect();
    let schema = Arc::new(DFSchema::new_with_metadata(fields, values.schema.metadata().clone())?);
    let rows = values
        .values
        .into_iter()
        .map(|row| {
            row.into_iter()
                .zip(&narrowed)
                .map(|(e, narrow)| match e {
                    Expr::Literal(ScalarValue::Int64(v), meta) if *narrow => {
                        Expr::Literal(ScalarValue::Int32(v.and_then(|v| i32::try_from(v).ok())), meta)
                    }
                    e => e,
                })
                .collect()
        })
        .collect();
    Ok(Transformed::yes(LogicalPlan::Values(Values { schema, values: rows })))
}

fn narrow(e: Expr) -> Result<Transformed<Expr>> {
    e.transform_down(|e| match e {
        // A grouping set's output columns are named by its members, which an alias would hide.
        Expr::AggregateFunction(_) | Expr::WindowFunction(_) | Expr::GroupingSet(_) => {
            Ok(Transformed::new(e, false, TreeNodeRecursion::Jump))
        }
        Expr::Literal(ref v, ref meta) => match int4(v) {
            Some(n) => Ok(Transformed::yes(Expr::Literal(ScalarValue::Int32(Some(n)), meta.clone()))),
            None => Ok(Transformed::no(e)),
        },
        e => Ok(Transformed::no(e)),
    })
}

fn dates(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let is = |e: &Expr, test: fn(&DataType) -> bool| e.get_type(schema).is_ok_and(|t| test(&t));
    let is_date: fn(&DataType) -> bool = |t| matches!(t, DataType::Date32 | DataType::Date64);
    let is_interval: fn(&DataType) -> bool = |t| matches!(t, DataType::Interval(_));
    let timestamp = |expr: Box<Expr>, tz: Option<&str>| {
        Box::new(Expr::Cast(Cast::new(expr, DataType::Timestamp(TimeUnit::Nanosecond, tz.map(Into::into)))))
    };
    Ok(match e {
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Plus | Operator::Minus), right })
            if (is(&left, is_date) && is(&right, is_interval)) || (is(&left, is_interval) && is(&right, is_date)) =>
        {
            let (left, right) = if is(&left, is_date) { (timestamp(left, None), right) } else { (left, timestamp(right, None)) };
            Transformed::yes(Expr::BinaryExpr(BinaryExpr { left, op, right }))
        }
        Expr::ScalarFunction(mut f) if f.func.name() == "date_trunc" && f.args.len() == 2 && is(&f.args[1], is_date) => {
            if let Some(date) = f.args.pop() {
                f.args.push(*timestamp(Box::new(date), Some(super::SESSION_ZONE)));
            }
            Transformed::yes(Expr::ScalarFunction(f))
        }
        // generate_series over dates steps through timestamptz values in PostgreSQL.
        Expr::ScalarFunction(mut f) if f.func.name() == "generate_series" && f.args.len() == 3 && is(&f.args[0], is_date) => {
            for arg in f.args.iter_mut().take(2) {
                let date = std::mem::replace(arg, Expr::Literal(ScalarValue::Null, None));
                *arg = *timestamp(Box::new(date), Some(super::SESSION_ZONE));
            }
            Transformed::yes(Expr::ScalarFunction(f))
        }
        e => Transformed::no(e),
    })
}
