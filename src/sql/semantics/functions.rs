//! Functions whose DataFusion (or datafusion-pg-functions) versions answer differently from
//! PostgreSQL's, registered over them under the same names.
//!
//! - `to_char(timestamp | date, text)` with PostgreSQL's template patterns (`YYYY-MM`, `FMDay`,
//!   `HH24:MI:SS`, `IW`, `Q`, quoted text...). DataFusion's takes chrono's `%Y` patterns and
//!   returned PostgreSQL's patterns as literal text, so a monthly GROUP BY became one group.
//! - `to_timestamp(text, text)` and `to_date(text, text)`, with the same templates.
//! - `format(text, ...)`: datafusion-pg-functions' version reads only constant arguments, and
//!   gave `' ()'` for `format('%s (%s)', a, b)` over columns. Ours runs it row by row.
//! - `ln`, `log`, `log10`, `sqrt`, `power`: PostgreSQL refuses a logarithm of zero or of a
//!   negative number (2201E) and a root or power with no real value (2201F); DataFusion
//!   answered `-Infinity` or `NaN`. Ours check the arguments, then call DataFusion's.
//! - `timezone(zone, ts)`, which `ts AT TIME ZONE zone` is: DataFusion plans AT TIME ZONE as a
//!   cast that relabels the zone, so `timestamptz AT TIME ZONE 'America/New_York'` came back
//!   unchanged instead of as New York's wall-clock time.
//! - `array_remove` removes every copy of the value, as PostgreSQL's does; DataFusion's
//!   removed the first only (`array_remove(ARRAY[1, 2, 1], 1)` was `{2,1}`).
//! - Functions DataFusion lacks: `make_timestamp`, `date(x)`, `isfinite`, `interval_mul` and
//!   `interval_div` (what `interval * n` and `interval / n` are planned as, by an `ExprPlanner`), and the aggregates
//!   `variance` and `every` (DataFusion's `var_samp` and `bool_and`).
//! - `scalar_subquery_value(list)`, which `sql::subqueries` plans lookup subqueries with.
//! - `upper`, `lower`: PostgreSQL (in the C.UTF-8 locale the test cluster uses) maps each
//!   character to one character; Rust's full case mapping made `upper('straße')` `STRASSE`.

use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::common::DFSchema;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::execution::FunctionRegistry;
use datafusion::functions::utils::make_scalar_function;
use datafusion::prelude::SessionContext;

use super::SESSION_ZONE;

pub fn install(ctx: &SessionContext) {
    super::json::install(ctx);
    // Before the aliases below, so that `variance` names the exact `var_samp`.
    super::exact::install(ctx);
    for udaf in super::ordered_set::udafs() {
        ctx.register_udaf(udaf);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ToChar::default()));
    if let Ok(inner) = ctx.udf("format") {
        ctx.register_udf(ScalarUDF::new_from_impl(RowByRow { signature: inner.signature().clone(), inner }));
    }
    for (name, domain) in [
        ("ln", Domain::Log),
        ("log", Domain::Log),
        ("log10", Domain::Log),
        ("sqrt", Domain::Sqrt),
        ("power", Domain::Power),
        ("pow", Domain::Power),
    ] {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(DomainChecked { inner, domain }));
        }
    }
    ctx.register_udf(ScalarUDF::new_from_impl(TimeZoneAt::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(ScalarSubqueryValue::default()));
    let state = ctx.state_ref();
    // Cannot fail: SessionState's registration only appends.
    let _ = state.write().register_expr_planner(Arc::new(IntervalArithmetic));
    // PostgreSQL's names for aggregates DataFusion has under others.
    for (name, alias) in [("var_samp", "variance"), ("bool_and", "every")] {
        if let Ok(f) = ctx.udaf(name) {
            ctx.register_udaf(f.as_ref().clone().with_aliases([alias]));
        }
    }
    // Registered by name too, as PostgreSQL has them.
    for f in [Small::MakeTimestamp, Small::Date, Small::IsFinite, Small::IntervalMul, Small::IntervalDiv] {
        ctx.register_udf(ScalarUDF::new_from_impl(SmallFunction::new(f)));
    }
    if let Ok(all) = ctx.udf("array_remove_all") {
        ctx.register_udf(all.as_ref().clone().with_aliases(["array_remove"]));
    }
    for (name, upper) in [("upper", true), ("lower", false)] {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(CharCase { inner, upper }));
        }
    }
    for (name, date) in [("to_timestamp", false), ("to_date", true)] {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(ParseWithTemplate { inner, date }));
        }
    }
}

/// The value of a scalar subquery from the list of its rows' values (`sql::subqueries` plans a
/// lookup subquery, which DataFusion decorrelates only aggregated, as `array_agg` under this).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ScalarSubqueryValue {
    signature: Signature,
}

impl Default for ScalarSubqueryValue {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for ScalarSubqueryValue {
    fn name(&self) -> &str {
        "scalar_subquery_value"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("return_field_from_args is used")
    }
    fn return_field_from_args(&self, args: datafusion::logical_expr::ReturnFieldArgs) -> Result<datafusion::arrow::datatypes::FieldRef> {
        match args.arg_fields.first().map(|f| f.data_type()) {
            Some(DataType::List(item)) => Ok(Arc::new(item.as_ref().clone().with_nullable(true))),
            Some(DataType::Null) => Ok(Arc::new(datafusion::arrow::datatypes::Field::new(self.name(), DataType::Null, true))),
            other => datafusion::common::plan_err!("scalar_subquery_value takes a list, not {other:?}"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let lists = ColumnarValue::values_to_arrays(&args.args)?;
        let DataType::List(_) = lists[0].data_type() else { return Ok(ColumnarValue::Array(lists[0].clone())) };
        let lists = lists[0].as_list::<i32>();
        let mut take = Vec::with_capacity(lists.len());
        let offsets = lists.value_offsets();
        for row in 0..lists.len() {
            let n = if lists.is_null(row) { 0 } else { offsets[row + 1] - offsets[row] };
            match n {
                0 => take.push(None),
                1 => take.push(Some(offsets[row] as u32)),
                _ => return Err(DataFusionError::External(Box::new(crate::error::Error::CardinalityViolation))),
            }
        }
        let indices = datafusion::arrow::array::UInt32Array::from(take);
        Ok(ColumnarValue::Array(datafusion::arrow::compute::take(lists.values().as_ref(), &indices, None)?))
    }
}

/// PostgreSQL functions DataFusion has no counterpart of, each a line or two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Small {
    /// `make_timestamp(year, month, day, hour, min, sec)`
    MakeTimestamp,
    /// `date(x)`: `x::date`
    Date,
    /// `isfinite(date | timestamp)`: Arrow has no infinite dates, so true for every value.
    IsFinite,
    /// `interval * number`, which DataFusion does not plan (`types` calls it for the operator).
    IntervalMul,
    /// `interval / number`.
    IntervalDiv,
}

/// Plans `interval * number`, `number * interval` and `interval / number`, which DataFusion's
/// SQL planner refused while typing the operator, as `interval_mul` and `interval_div`.
#[derive(Debug)]
struct IntervalArithmetic;

impl ExprPlanner for IntervalArithmetic {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        use datafusion::logical_expr::ExprSchemable;
        use datafusion::sql::sqlparser::ast::BinaryOperator;
        let interval = |e: &Expr| e.get_type(schema).is_ok_and(|t| matches!(t, DataType::Interval(_)));
        let number = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_numeric());
        let (span, factor, divide) = match expr.op {
            BinaryOperator::Multiply if interval(&expr.left) && number(&expr.right) => (&expr.left, &expr.right, false),
            BinaryOperator::Multiply if number(&expr.left) && interval(&expr.right) => (&expr.right, &expr.left, false),
            BinaryOperator::Divide if interval(&expr.left) && number(&expr.right) => (&expr.left, &expr.right, true),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let f = Arc::new(ScalarUDF::new_from_impl(SmallFunction::new(if divide { Small::IntervalDiv } else { Small::IntervalMul })));
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(f, vec![span.clone(), factor.clone()]))))
    }
}

/// PostgreSQL's `interval_mul` and `interval_div` (timestamp.c): months and days scale and
/// truncate, and what they lose cascades down, a month as 30 days and a day as 24 hours.
fn scale_interval(v: IntervalMonthDayNano, factor: f64, divide: bool) -> Result<IntervalMonthDayNano, crate::error::Error> {
    use crate::error::Error;
    if divide && factor == 0.0 {
        return Err(Error::DivisionByZero);
    }
    let by = |x: f64| if divide { x / factor } else { x * factor };
    let round_micros = |x: f64| (x * 1e6).round_ties_even() / 1e6;
    let int32 = |x: f64| if x.is_nan() || x > f64::from(i32::MAX) || x < f64::from(i32::MIN) { Err(Error::IntervalOutOfRange) } else { Ok(x as i32) };
    let months = int32(by(f64::from(v.months)))?;
    let mut days = int32(by(f64::from(v.days)))?;
    let month_remainder_days = round_micros((by(f64::from(v.months)) - f64::from(months)) * 30.0);
    let mut sec_remainder =
        round_micros((by(f64::from(v.days)) - f64::from(days) + month_remainder_days - month_remainder_days.trunc()) * 86_400.0);
    if sec_remainder.abs() >= 86_400.0 {
        let whole = (sec_remainder / 86_400.0).trunc();
        days = days.checked_add(whole as i32).ok_or(Error::IntervalOutOfRange)?;
        sec_remainder -= whole * 86_400.0;
    }
    days = days.checked_add(month_remainder_days as i32).ok_or(Error::IntervalOutOfRange)?;
    let micros = (by(v.nanoseconds as f64 / 1e3) + sec_remainder * 1e6).round_ties_even();
    if !micros.is_finite() || micros.abs() >= 9.2e15 {
        return Err(Error::IntervalOutOfRange);
    }
    Ok(IntervalMonthDayNano::new(months, days, micros as i64 * 1000))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SmallFunction {
    f: Small,
    signature: Signature,
}

impl SmallFunction {
    fn new(f: Small) -> Self {
        let arity = match f {
            Small::MakeTimestamp => 6,
            Small::IntervalMul | Small::IntervalDiv => 2,
            Small::Date | Small::IsFinite => 1,
        };
        Self { f, signature: Signature::any(arity, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for SmallFunction {
    fn name(&self) -> &str {
        match self.f {
            Small::MakeTimestamp => "make_timestamp",
            Small::Date => "date",
            Small::IsFinite => "isfinite",
            Small::IntervalMul => "interval_mul",
            Small::IntervalDiv => "interval_div",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.f {
            Small::MakeTimestamp => DataType::Timestamp(TimeUnit::Nanosecond, None),
            Small::Date => DataType::Date32,
            Small::IsFinite => DataType::Boolean,
            Small::IntervalMul | Small::IntervalDiv => DataType::Interval(IntervalUnit::MonthDayNano),
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::compute::cast;
        make_scalar_function(
            |arrays: &[ArrayRef]| -> Result<ArrayRef> {
                Ok(match self.f {
                    Small::Date => cast(&arrays[0], &DataType::Date32)?,
                    Small::IsFinite => Arc::new(datafusion::arrow::array::BooleanArray::from(
                        (0..arrays[0].len()).map(|i| (!arrays[0].is_null(i)).then_some(true)).collect::<Vec<_>>(),
                    )),
                    Small::IntervalMul | Small::IntervalDiv => {
                        let spans = cast(&arrays[0], &DataType::Interval(IntervalUnit::MonthDayNano))?;
                        let spans = spans.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
                        let factors = cast(&arrays[1], &DataType::Float64)?;
                        let factors = factors.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
                        let scaled = spans
                            .iter()
                            .zip(factors.iter())
                            .map(|(span, factor)| match (span, factor) {
                                (Some(span), Some(factor)) => scale_interval(span, factor, self.f == Small::IntervalDiv).map(Some),
                                _ => Ok(None),
                            })
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| DataFusionError::External(Box::new(e)))?;
                        Arc::new(datafusion::arrow::array::IntervalMonthDayNanoArray::from(scaled))
                    }
                    Small::MakeTimestamp => {
                        let ints = arrays[..5].iter().map(|a| cast(a, &DataType::Int64)).collect::<std::result::Result<Vec<_>, _>>()?;
                        let ints: Vec<_> = ints.iter().map(|a| a.as_primitive::<datafusion::arrow::datatypes::Int64Type>()).collect();
                        let secs = cast(&arrays[5], &DataType::Float64)?;
                        let secs = secs.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
                        let mut out = Vec::with_capacity(secs.len());
                        for i in 0..secs.len() {
                            if secs.is_null(i) || ints.iter().any(|a| a.is_null(i)) {
                                out.push(None);
                                continue;
                            }
                            let [y, mo, d, h, mi] = [0, 1, 2, 3, 4].map(|k| ints[k].value(i));
                            let s = secs.value(i);
                            let t = chrono::NaiveDate::from_ymd_opt(y as i32, mo as u32, d as u32)
                                .and_then(|date| date.and_hms_opt(h as u32, mi as u32, 0))
                                .filter(|_| (0.0..60.0).contains(&s))
                                .and_then(|t| t.checked_add_signed(chrono::Duration::microseconds((s * 1e6).round() as i64)))
                                .ok_or_else(|| {
                                    DataFusionError::External(Box::new(crate::error::Error::InvalidDatetime(format!(
                                        "date field value out of range: {y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s}"
                                    ))))
                                })?;
                            out.push(t.and_utc().timestamp_nanos_opt());
                        }
                        Arc::new(datafusion::arrow::array::TimestampNanosecondArray::from(out))
                    }
                })
            },
            vec![],
        )(&args.args)
    }
}

/// Which arguments a math function refuses, as PostgreSQL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Domain {
    Log,
    Sqrt,
    Power,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DomainChecked {
    inner: Arc<ScalarUDF>,
    domain: Domain,
}

impl DomainChecked {
    fn check(&self, args: &[ColumnarValue]) -> Result<()> {
        let floats = args
            .iter()
            .map(|a| {
                let a = match a {
                    ColumnarValue::Array(a) => a.clone(),
                    ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
                };
                Ok(datafusion::arrow::compute::cast(&a, &DataType::Float64)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let values = |i: usize| floats.get(i).map(|a| a.as_primitive::<datafusion::arrow::datatypes::Float64Type>().clone());
        let fail = |e: crate::error::Error| Err(DataFusionError::External(Box::new(e)));
        match self.domain {
            Domain::Log => {
                for v in floats.iter().flat_map(|a| a.as_primitive::<datafusion::arrow::datatypes::Float64Type>().iter().flatten()) {
                    if v == 0.0 {
                        return fail(crate::error::Error::InvalidLogArgument("cannot take logarithm of zero".into()));
                    }
                    if v < 0.0 {
                        return fail(crate::error::Error::InvalidLogArgument("cannot take logarithm of a negative number".into()));
                    }
                }
                // log(b, x) divides by ln(b).
                if floats.len() == 2 && values(0).is_some_and(|b| b.iter().flatten().any(|b| b == 1.0)) {
                    return Err(DataFusionError::ArrowError(Box::new(datafusion::arrow::error::ArrowError::DivideByZero), None));
                }
            }
            Domain::Sqrt => {
                if values(0).is_some_and(|a| a.iter().flatten().any(|v| v < 0.0)) {
                    return fail(crate::error::Error::InvalidPowerArgument("cannot take square root of a negative number".into()));
                }
            }
            Domain::Power => {
                let (Some(base), Some(exp)) = (values(0), values(1)) else { return Ok(()) };
                let pairs = (0..base.len().max(exp.len())).map(|i| {
                    let at = |a: &datafusion::arrow::array::Float64Array| if a.len() == 1 { a.value(0) } else { a.value(i) };
                    let null = |a: &datafusion::arrow::array::Float64Array| a.is_null(if a.len() == 1 { 0 } else { i });
                    (!null(&base) && !null(&exp)).then(|| (at(&base), at(&exp)))
                });
                for (b, e) in pairs.flatten() {
                    if b == 0.0 && e < 0.0 {
                        return fail(crate::error::Error::InvalidPowerArgument("zero raised to a negative power is undefined".into()));
                    }
                    if b < 0.0 && e.fract() != 0.0 {
                        return fail(crate::error::Error::InvalidPowerArgument(
                            "a negative number raised to a non-integer power yields a complex result".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl ScalarUDFImpl for DomainChecked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args)?;
        self.inner.invoke_with_args(args)
    }
}

/// `upper`/`lower` mapping each character to one: a character whose full mapping is several
/// (`ß` to `SS`) stays as it is in upper case and takes the first in lower case, as the C
/// library's `towupper`/`towlower` do.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CharCase {
    inner: Arc<ScalarUDF>,
    upper: bool,
}

impl CharCase {
    fn map(&self, s: &str) -> String {
        if s.is_ascii() {
            return if self.upper { s.to_ascii_uppercase() } else { s.to_ascii_lowercase() };
        }
        s.chars()
            .map(|c| {
                if self.upper {
                    let mut m = c.to_uppercase();
                    match (m.next(), m.next()) {
                        (Some(u), None) => u,
                        _ => c,
                    }
                } else {
                    c.to_lowercase().next().unwrap_or(c)
                }
            })
            .collect()
    }
}

impl ScalarUDFImpl for CharCase {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let to = args.return_field.data_type().clone();
        make_scalar_function(
            |arrays: &[ArrayRef]| {
                let text = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
                let mapped: StringArray = text.as_string::<i32>().iter().map(|s| s.map(|s| self.map(s))).collect();
                Ok(datafusion::arrow::compute::cast(&mapped, &to)?)
            },
            vec![],
        )(&args.args)
    }
}

/// A function that reads only constant arguments, called once per row when some are not.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RowByRow {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ScalarUDFImpl for RowByRow {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            return self.inner.invoke_with_args(args);
        }
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            // Text as the function expects it, and a NULL argument as an untyped NULL (which
            // format prints as nothing, as PostgreSQL's does).
            let scalars = arrays
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let v = ScalarValue::try_from_array(a, row)?;
                    Ok(ColumnarValue::Scalar(match v {
                        v if v.is_null() && i > 0 => ScalarValue::Null,
                        ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s) => ScalarValue::Utf8(s),
                        v => v,
                    }))
                })
                .collect::<Result<Vec<_>>>()?;
            let one = ScalarFunctionArgs {
                args: scalars,
                arg_fields: args.arg_fields.clone(),
                number_rows: 1,
                return_field: args.return_field.clone(),
                config_options: args.config_options.clone(),
            };
            out.push(match self.inner.invoke_with_args(one)? {
                ColumnarValue::Scalar(s) => s,
                ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0)?,
            });
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    signature: Signature,
}

impl Default for ToChar {
    fn default() -> Self {
        Self { signature: Signature::new(TypeSignature::Any(2), Volatility::Stable) }
    }
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        make_scalar_function(to_char_arrays, vec![])(&args.args)
    }
}

fn to_char_arrays(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let formats = datafusion::arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
    let formats = formats.as_string::<i32>();
    texts(&arrays[0], |i, t| formats.is_valid(i).then(|| to_char(t, formats.value(i))))
}

/// Each date or timestamp of `values` as `text` writes it; NULL where it or the value is NULL.
fn texts(values: &ArrayRef, text: impl Fn(usize, &NaiveDateTime) -> Option<String>) -> Result<ArrayRef> {
    let out: StringArray = instants(values)?.iter().enumerate().map(|(i, t)| t.as_ref().and_then(|t| text(i, t))).collect();
    Ok(Arc::new(out))
}

/// Each value as a wall-clock time (a `timestamptz` in the session's zone, UTC).
fn instants(values: &ArrayRef) -> Result<Vec<Option<NaiveDateTime>>> {
    match values.data_type() {
        DataType::Date32 => Ok(values
            .as_primitive::<Date32Type>()
            .iter()
            .map(|d| d.and_then(|d| Date32Type::to_naive_date_opt(d)).and_then(|d| d.and_hms_opt(0, 0, 0)))
            .collect()),
        DataType::Timestamp(_, _) | DataType::Date64 => {
            let ns = datafusion::arrow::compute::cast(values, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            let ns = ns.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
            Ok(ns.iter().map(|v| v.map(|v| chrono::DateTime::from_timestamp_nanos(v).naive_utc())).collect())
        }
        DataType::Null => Ok(vec![None; values.len()]),
        other => Err(DataFusionError::NotImplemented(format!("to_char of {other}: only dates and timestamps are supported"))),
    }
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// The template patterns, longest first so that `HH24` is not read as `HH` then `24`.
const PATTERNS: [&str; 47] = [
    "HH24", "HH12", "IYYY", "YYYY", "MONTH", "Month", "month", "A.M.", "P.M.", "a.m.", "p.m.", "Y,YYY", "DAY", "Day", "day",
    "YYY", "IYY", "MON", "Mon", "mon", "DDD", "IDDD", "US", "MS", "HH", "MI", "SS", "AM", "PM", "am", "pm", "YY", "IY", "MM",
    "DD", "DY", "Dy", "dy", "ID", "IW", "WW", "CC", "Q", "D", "Y", "I", "J",
];

/// PostgreSQL's `to_char(timestamp, text)` (formatting.c), for the patterns analysts use.
pub fn to_char(t: &NaiveDateTime, format: &str) -> String {
    let mut out = String::new();
    let mut rest = format;
    while !rest.is_empty() {
        let fill = rest.starts_with("FM") || rest.starts_with("fm");
        if fill {
            rest = &rest[2..];
        }
        if let Some(p) = PATTERNS.iter().find(|p| rest.starts_with(**p)) {
            rest = &rest[p.len()..];
            out.push_str(&field(t, p, fill));
            continue;
        }
        let mut chars = rest.chars();
        match chars.next() {
            Some('"') => {
                let quoted: String = chars.by_ref().take_while(|c| *c != '"').collect();
                out.push_str(&quoted);
                rest = &rest[quoted.len() + 1..];
                rest = rest.strip_prefix('"').unwrap_or(rest);
            }
            Some('\\') => match chars.next() {
                Some(c) => {
                    out.push(c);
                    rest = &rest[1 + c.len_utf8()..];
                }
                None => rest = "",
            },
            Some(c) => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
            None => break,
        }
    }
    out
}

fn field(t: &NaiveDateTime, pattern: &str, fill: bool) -> String {
    let num = |v: i64, width: usize| if fill { v.to_string() } else { format!("{v:0width$}") };
    let word = |w: &str, case: fn(&str) -> String, width: usize| {
        let w = case(w);
        if fill { w } else { format!("{w:<width$}") }
    };
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let pm = t.hour() >= 12;
    let month = MONTHS[t.month0() as usize];
    let day = DAYS[t.weekday().num_days_from_sunday() as usize];
    let iso = t.iso_week();
    match pattern {
        "HH24" => num(t.hour().into(), 2),
        "HH12" | "HH" => num(hour12.into(), 2),
        "MI" => num(t.minute().into(), 2),
        "SS" => num(t.second().into(), 2),
        "MS" => num((t.nanosecond() / 1_000_000).into(), 3),
        "US" => num((t.nanosecond() / 1_000).into(), 6),
        "AM" | "PM" => (if pm { "PM" } else { "AM" }).into(),
        "am" | "pm" => (if pm { "pm" } else { "am" }).into(),
        "A.M." | "P.M." => (if pm { "P.M." } else { "A.M." }).into(),
        "a.m." | "p.m." => (if pm { "p.m." } else { "a.m." }).into(),
        "YYYY" => num(t.year().into(), 4),
        "Y,YYY" => format!("{},{:03}", t.year() / 1000, t.year() % 1000),
        "YYY" => num((t.year() % 1000).into(), 3),
        "YY" => num((t.year() % 100).into(), 2),
        "Y" => num((t.year() % 10).into(), 1),
        "IYYY" => num(iso.year().into(), 4),
        "IYY" => num((iso.year() % 1000).into(), 3),
        "IY" => num((iso.year() % 100).into(), 2),
        "I" => num((iso.year() % 10).into(), 1),
        "MONTH" => word(month, |s| s.to_uppercase(), 9),
        "Month" => word(month, |s| s.to_string(), 9),
        "month" => word(month, |s| s.to_lowercase(), 9),
        "MON" => month[..3].to_uppercase(),
        "Mon" => month[..3].to_string(),
        "mon" => month[..3].to_lowercase(),
        "MM" => num(t.month().into(), 2),
        "DAY" => word(day, |s| s.to_uppercase(), 9),
        "Day" => word(day, |s| s.to_string(), 9),
        "day" => word(day, |s| s.to_lowercase(), 9),
        "DY" => day[..3].to_uppercase(),
        "Dy" => day[..3].to_string(),
        "dy" => day[..3].to_lowercase(),
        "DDD" => num(t.ordinal().into(), 3),
        "IDDD" => num((i64::from(iso.week()) - 1) * 7 + i64::from(t.weekday().number_from_monday()), 3),
        "DD" => num(t.day().into(), 2),
        "D" => num(t.weekday().number_from_sunday().into(), 1),
        "ID" => num(t.weekday().number_from_monday().into(), 1),
        "IW" => num(iso.week().into(), 2),
        "WW" => num((t.ordinal0() / 7 + 1).into(), 2),
        "CC" => num(((t.year() - 1) / 100 + 1).into(), 2),
        "Q" => num((t.month0() / 3 + 1).into(), 1),
        "J" => num(i64::from(t.date().num_days_from_ce()) + 1_721_425, 1),
        other => other.to_string(),
    }
}


/// `to_timestamp(text, template)` and `to_date(text, template)` with PostgreSQL's template
/// patterns (Superset sends `TO_TIMESTAMP('2024-01-01 00:00:00.000000', 'YYYY-MM-DD
/// HH24:MI:SS.US')` for every time filter; DataFusion's versions take chrono's `%Y` patterns and
/// failed). Other calls (`to_timestamp(epoch)`) go to DataFusion's function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ParseWithTemplate {
    inner: Arc<ScalarUDF>,
    date: bool,
}

impl ScalarUDFImpl for ParseWithTemplate {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.len() == 2 {
            return Ok(if self.date { DataType::Date32 } else { DataType::Timestamp(TimeUnit::Nanosecond, Some(SESSION_ZONE.into())) });
        }
        self.inner.return_type(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != 2 {
            return self.inner.invoke_with_args(args);
        }
        make_scalar_function(|arrays: &[ArrayRef]| self.parse(arrays), vec![])(&args.args)
    }
}

impl ParseWithTemplate {
    fn parse(&self, arrays: &[ArrayRef]) -> Result<ArrayRef> {
        let text = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let templates = datafusion::arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
        let (text, templates) = (text.as_string::<i32>(), templates.as_string::<i32>());
        let mut parsed = Vec::with_capacity(text.len());
        for i in 0..text.len() {
            if text.is_null(i) || templates.is_null(i) {
                parsed.push(None);
                continue;
            }
            let format = chrono_format(templates.value(i));
            let value = text.value(i).trim();
            let t = NaiveDateTime::parse_from_str(value, &format)
                .or_else(|_| chrono::NaiveDate::parse_from_str(value, &format).map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default()))
                .map_err(|e| {
                    DataFusionError::Execution(format!(
                        "invalid value \"{value}\" for \"{}\": {e}",
                        templates.value(i)
                    ))
                })?;
            parsed.push(Some(t));
        }
        Ok(if self.date {
            Arc::new(datafusion::arrow::array::Date32Array::from(
                parsed.iter().map(|t| t.map(|t| Date32Type::from_naive_date(t.date()))).collect::<Vec<_>>(),
            ))
        } else {
            // PostgreSQL's to_timestamp is a timestamptz; the text is read in the session's zone.
            Arc::new(
                datafusion::arrow::array::TimestampNanosecondArray::from(
                    parsed.iter().map(|t| t.and_then(|t| t.and_utc().timestamp_nanos_opt())).collect::<Vec<_>>(),
                )
                .with_timezone(SESSION_ZONE),
            )
        })
    }
}

/// A PostgreSQL template as a chrono format string.
fn chrono_format(template: &str) -> String {
    const MAP: [(&str, &str); 22] = [
        ("HH24", "%H"), ("HH12", "%I"), ("YYYY", "%Y"), ("MONTH", "%B"), ("Month", "%B"), ("month", "%B"), ("DAY", "%A"),
        ("Day", "%A"), ("day", "%A"), ("MON", "%b"), ("Mon", "%b"), ("mon", "%b"), ("US", "%6f"), ("MS", "%3f"),
        ("HH", "%I"), ("MI", "%M"), ("SS", "%S"), ("AM", "%p"), ("PM", "%p"), ("YY", "%y"), ("MM", "%m"), ("DD", "%d"),
    ];
    let mut out = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        rest = rest.strip_prefix("FM").unwrap_or(rest);
        if let Some((p, f)) = MAP.iter().find(|(p, _)| rest.starts_with(*p)) {
            out.push_str(f);
            rest = &rest[p.len()..];
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        rest = &rest[c.len_utf8()..];
        match c {
            '"' => {
                let quoted: String = rest.chars().take_while(|c| *c != '"').collect();
                out.push_str(&quoted.replace('%', "%%"));
                rest = &rest[quoted.len()..];
                rest = rest.strip_prefix('"').unwrap_or(rest);
            }
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out
}

/// `timezone(zone, ts)`: a timestamptz as the wall-clock time in `zone` (a timestamp), or a
/// timestamp read as wall-clock time in `zone` (a timestamptz), as PostgreSQL's `AT TIME
/// ZONE` does. A numeric offset other than zero is refused: PostgreSQL reads `'+05'` as POSIX
/// does (five hours west), which no user expects and this does not copy.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TimeZoneAt {
    signature: Signature,
}

impl Default for TimeZoneAt {
    fn default() -> Self {
        Self { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for TimeZoneAt {
    fn name(&self) -> &str {
        "timezone"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(match &args[1] {
            DataType::Timestamp(_, Some(_)) | DataType::Date32 | DataType::Date64 => DataType::Timestamp(TimeUnit::Nanosecond, None),
            DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Nanosecond, Some(SESSION_ZONE.into())),
            other => return Err(DataFusionError::Plan(format!("function timezone(text, {other}) does not exist"))),
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        make_scalar_function(time_zone_at, vec![])(&args.args)
    }
}

fn time_zone_at(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    use chrono::{Offset, TimeZone};
    use datafusion::arrow::array::timezone::Tz;
    let zones = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
    let zones = zones.as_string::<i32>();
    let aware = !matches!(arrays[1].data_type(), DataType::Timestamp(_, None));
    let values = datafusion::arrow::compute::cast(&arrays[1], &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
    let values = values.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
    let zone_at = |i: usize| -> Result<Option<Tz>> {
        let i = if zones.len() == 1 { 0 } else { i };
        if zones.is_null(i) {
            return Ok(None);
        }
        let name = zones.value(i).trim();
        let numeric = name.starts_with(['+', '-']) || name.chars().next().is_some_and(|c| c.is_ascii_digit());
        if numeric && name.trim_start_matches(['+', '-']).chars().all(|c| c == '0' || c == ':') {
            return Ok(Some("UTC".parse::<Tz>().map_err(|e| DataFusionError::Internal(e.to_string()))?));
        }
        if numeric {
            return Err(DataFusionError::NotImplemented(format!(
                "AT TIME ZONE with a numeric offset ('{name}'); name the zone, e.g. 'Etc/GMT-5' for five hours east"
            )));
        }
        name.parse::<Tz>().map(Some).map_err(|_| {
            DataFusionError::External(Box::new(crate::error::Error::InvalidParameter(format!("time zone \"{name}\" not recognized"))))
        })
    };
    let seconds = |o: chrono::FixedOffset| chrono::Duration::seconds(i64::from(o.local_minus_utc()));
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        let (Some(zone), false) = (zone_at(i)?, values.is_null(i)) else {
            out.push(None);
            continue;
        };
        let Some(t) = values.value_as_datetime(i) else {
            out.push(None);
            continue;
        };
        let shifted = if aware {
            // The instant's wall-clock time in the zone.
            t + seconds(zone.offset_from_utc_datetime(&t).fix())
        } else {
            // The wall-clock time's instant; in a gap (a spring-forward hour), the offset before it.
            let offset = zone.offset_from_local_datetime(&t).earliest().unwrap_or_else(|| zone.offset_from_utc_datetime(&t)).fix();
            t - seconds(offset)
        };
        out.push(shifted.and_utc().timestamp_nanos_opt());
    }
    let array = datafusion::arrow::array::TimestampNanosecondArray::from(out);
    Ok(Arc::new(if aware { array } else { array.with_timezone(SESSION_ZONE) }))
}

/// A timestamp as PostgreSQL prints it (`2025-01-03 09:15:00`, fractions only when there are
/// some); arrow's cast to text writes ISO 8601 with a `T`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimestampText {
    signature: Signature,
}

impl Default for TimestampText {
    fn default() -> Self {
        Self { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for TimestampText {
    fn name(&self) -> &str {
        "pg_timestamp_text"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        make_scalar_function(timestamp_text, vec![])(&args.args)
    }
}

fn timestamp_text(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    texts(&arrays[0], |_, t| {
        let mut text = t.format("%Y-%m-%d %H:%M:%S").to_string();
        let micros = t.nanosecond() / 1_000;
        if micros > 0 {
            text.push_str(format!(".{micros:06}").trim_end_matches('0'));
        }
        Some(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_format_as_postgresql_does() {
        let t = chrono::NaiveDate::from_ymd_opt(2025, 1, 3).unwrap().and_hms_micro_opt(9, 5, 7, 120).unwrap();
        assert_eq!(to_char(&t, "YYYY-MM-DD HH24:MI:SS"), "2025-01-03 09:05:07");
        assert_eq!(to_char(&t, "YYYY-MM-DD HH24:MI:SS.US"), "2025-01-03 09:05:07.000120");
        assert_eq!(to_char(&t, "Mon DD, YYYY"), "Jan 03, 2025");
        assert_eq!(to_char(&t, "FMDay"), "Friday");
        assert_eq!(to_char(&t, "Month"), "January  ");
        assert_eq!(to_char(&t, "YYYY\"Q\"Q"), "2025Q1");
        assert_eq!(to_char(&t, "HH12:MI AM"), "09:05 AM");
        assert_eq!(to_char(&t, "IYYY-IW"), "2025-01");
    }
}
