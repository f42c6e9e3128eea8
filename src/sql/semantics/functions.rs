//! Functions whose DataFusion (or datafusion-pg-functions) versions answer differently from
//! PostgreSQL's, registered over them under the same names.
//!
//! - `to_char(timestamp | date, text)` with PostgreSQL's template patterns (`YYYY-MM`, `FMDay`,
//!   `HH24:MI:SS`, `IW`, `Q`, quoted text...). DataFusion's takes chrono's `%Y` patterns and
//!   returned PostgreSQL's patterns as literal text, so a monthly GROUP BY became one group.
//! - `to_timestamp(text, text)` and `to_date(text, text)`, with the same templates.
//! - `format(text, ...)`: datafusion-pg-functions' version reads only constant arguments, and
//!   gave `' ()'` for `format('%s (%s)', a, b)` over columns. Ours runs it row by row.

use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, TimeUnit};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::execution::FunctionRegistry;
use datafusion::functions::utils::make_scalar_function;
use datafusion::prelude::SessionContext;

pub fn install(ctx: &SessionContext) {
    for udaf in super::percentile::udafs() {
        ctx.register_udaf(udaf);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ToChar::default()));
    if let Ok(inner) = ctx.udf("format") {
        ctx.register_udf(ScalarUDF::new_from_impl(RowByRow { signature: inner.signature().clone(), inner }));
    }
    for (name, date) in [("to_timestamp", false), ("to_date", true)] {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(ParseWithTemplate { inner, date }));
        }
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
            return Ok(if self.date { DataType::Date32 } else { DataType::Timestamp(TimeUnit::Nanosecond, None) });
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
            Arc::new(datafusion::arrow::array::TimestampNanosecondArray::from(
                parsed.iter().map(|t| t.and_then(|t| t.and_utc().timestamp_nanos_opt())).collect::<Vec<_>>(),
            ))
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
