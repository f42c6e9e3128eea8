//! Arrow to PostgreSQL: type mapping and per-value encoding in text or binary format, for query
//! results and for COPY TO. Which Postgres type an Arrow type maps to is `catalog::pg_types`'.
//!
//! Types without a Postgres twin (maps, structs, unions, decimals over 28 digits) go out as
//! `text`, formatted by Arrow, rather than failing the query.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::*;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::ToSqlText;
use postgres_types::ToSql;
use rust_decimal::Decimal;

pub use crate::catalog::{pg_type, pg_type_name};

/// A column's type: its Arrow type's, or `json`/`jsonb` for text its field marks as JSON.
pub fn pg_field_type(f: &datafusion::arrow::datatypes::Field) -> Type {
    match crate::sql::semantics::json::kind_of(f) {
        Some(crate::sql::semantics::json::Kind::Json) => Type::JSON,
        Some(crate::sql::semantics::json::Kind::Jsonb) => Type::JSONB,
        None => pg_type(f.data_type()),
    }
}

/// Row descriptions for a result schema, with each column's format from the portal.
pub fn field_infos(schema: &Schema, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let fmt = format.map(|f| f.format_for(i)).unwrap_or(FieldFormat::Text);
            FieldInfo::new(crate::sql::names::shown(f.name()).to_string(), None, None, pg_field_type(f), fmt)
        })
        .collect()
}

/// Either encoder pgwire offers: the row encoder for results, the COPY encoder for COPY TO.
pub trait FieldSink {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()>;
}

impl FieldSink for DataRowEncoder {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()> {
        self.encode_field(value)
    }
}

impl FieldSink for CopyEncoder {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()> {
        self.encode_field(value)
    }
}

/// One batch, prepared for row-by-row encoding: columns normalised to the types `pg_type` names.
pub struct BatchEncoder {
    columns: Vec<Column>,
    rows: usize,
}

enum Column {
    Bool(ArrayRef),
    I16(ArrayRef),
    I32(ArrayRef),
    I64(ArrayRef),
    F32(ArrayRef),
    F64(ArrayRef),
    Text(ArrayRef),
    Bytes(ArrayRef),
    Date(ArrayRef),
    Time(ArrayRef),
    Timestamp(ArrayRef),
    TimestampTz(ArrayRef),
    Numeric(ArrayRef, u32),
    Interval(ArrayRef),
    List(ArrayRef),
    /// jsonb text: its binary form is a version byte and the text.
    Jsonb(ArrayRef),
    /// Anything else, formatted by Arrow (maps, structs, wide decimals).
    Display(ArrayRef),
}

fn err(e: impl std::fmt::Display) -> PgWireError {
    PgWireError::ApiError(Box::new(std::io::Error::other(e.to_string())))
}

impl BatchEncoder {
    pub fn new(batch: &RecordBatch) -> PgWireResult<Self> {
        let columns = batch
            .columns()
            .iter()
            .zip(batch.schema().fields())
            .map(|(a, f)| match pg_field_type(f) {
                Type::JSONB => Ok(Column::Jsonb(cast(a, &DataType::Utf8).map_err(err)?)),
                _ => Self::column(a.clone()),
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        Ok(Self { columns, rows: batch.num_rows() })
    }

    fn column(a: ArrayRef) -> PgWireResult<Column> {
        let dt = a.data_type().clone();
        let to = |t: &DataType| cast(&a, t).map_err(err);
        Ok(match &dt {
            DataType::Dictionary(_, v) => Self::column(cast(&a, v).map_err(err)?)?,
            DataType::Boolean => Column::Bool(a),
            DataType::Int8 | DataType::UInt8 => Column::I16(to(&DataType::Int16)?),
            DataType::Int16 => Column::I16(a),
            DataType::Int32 => Column::I32(a),
            DataType::UInt16 => Column::I32(to(&DataType::Int32)?),
            DataType::Int64 => Column::I64(a),
            DataType::UInt32 => Column::I64(to(&DataType::Int64)?),
            // A value past i64::MAX is an error, not a NULL.
            DataType::UInt64 => Column::I64(
                datafusion::arrow::compute::cast_with_options(&a, &DataType::Int64, &datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() })
                    .map_err(err)?,
            ),
            DataType::Float16 => Column::F32(to(&DataType::Float32)?),
            DataType::Float32 => Column::F32(a),
            DataType::Float64 => Column::F64(a),
            DataType::Utf8 => Column::Text(a),
            DataType::LargeUtf8 | DataType::Utf8View => Column::Text(to(&DataType::Utf8)?),
            DataType::Binary => Column::Bytes(a),
            DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
                Column::Bytes(to(&DataType::Binary)?)
            }
            DataType::Date32 | DataType::Date64 => Column::Date(to(&DataType::Date32)?),
            DataType::Time32(_) | DataType::Time64(_) => {
                Column::Time(to(&DataType::Time64(TimeUnit::Microsecond))?)
            }
            DataType::Timestamp(_, None) => Column::Timestamp(to(&DataType::Timestamp(TimeUnit::Microsecond, None))?),
            DataType::Timestamp(_, Some(_)) => {
                Column::TimestampTz(to(&DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))?)
            }
            DataType::Decimal128(p, s) if *p <= 28 => Column::Numeric(a, (*s).max(0) as u32),
            DataType::Interval(_) | DataType::Duration(_) => Column::Interval(a),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
                if pg_type(&dt) != Type::TEXT =>
            {
                Column::List(a)
            }
            DataType::Null => Column::Text(to(&DataType::Utf8)?),
            _ => Column::Display(a),
        })
    }

    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// Encodes every column of one row into `sink`.
    pub fn encode_row<S: FieldSink>(&self, row: usize, sink: &mut S) -> PgWireResult<()> {
        for c in &self.columns {
            encode_value(c, row, sink)?;
        }
        Ok(())
    }
}

fn encode_value<S: FieldSink>(c: &Column, i: usize, sink: &mut S) -> PgWireResult<()> {
    macro_rules! prim {
        ($a:expr, $t:ty) => {{
            let arr = $a.as_primitive::<$t>();
            let v = if arr.is_null(i) { None } else { Some(arr.value(i)) };
            sink.put(&v)
        }};
    }
    match c {
        Column::Bool(a) => {
            let arr = a.as_boolean();
            sink.put(&(!arr.is_null(i)).then(|| arr.value(i)))
        }
        Column::I16(a) => prim!(a, Int16Type),
        Column::I32(a) => prim!(a, Int32Type),
        Column::I64(a) => prim!(a, Int64Type),
        Column::F32(a) => {
            let arr = a.as_primitive::<Float32Type>();
            sink.put(&(!arr.is_null(i)).then(|| PgFloat4(arr.value(i))))
        }
        Column::F64(a) => {
            let arr = a.as_primitive::<Float64Type>();
            sink.put(&(!arr.is_null(i)).then(|| PgFloat8(arr.value(i))))
        }
        Column::Text(a) => {
            let arr = a.as_string::<i32>();
            sink.put(&(!arr.is_null(i)).then(|| arr.value(i)))
        }
        Column::Bytes(a) => {
            let arr = a.as_binary::<i32>();
            sink.put(&(!arr.is_null(i)).then(|| arr.value(i)))
        }
        Column::Date(a) => {
            let arr = a.as_primitive::<Date32Type>();
            let v = (!arr.is_null(i)).then(|| arr.value_as_date(i)).flatten();
            sink.put::<Option<NaiveDate>>(&v)
        }
        Column::Time(a) => {
            let arr = a.as_primitive::<Time64MicrosecondType>();
            let v = (!arr.is_null(i)).then(|| arr.value_as_time(i)).flatten().map(PgTime);
            sink.put(&v)
        }
        Column::Timestamp(a) => {
            let arr = a.as_primitive::<TimestampMicrosecondType>();
            let v = (!arr.is_null(i)).then(|| arr.value_as_datetime(i)).flatten().map(PgTimestamp);
            sink.put(&v)
        }
        Column::TimestampTz(a) => {
            let arr = a.as_primitive::<TimestampMicrosecondType>();
            let v = (!arr.is_null(i))
                .then(|| DateTime::from_timestamp_micros(arr.value(i)))
                .flatten()
                .map(PgTimestampTz);
            sink.put(&v)
        }
        Column::Numeric(a, scale) => {
            let arr = a.as_primitive::<Decimal128Type>();
            let v = (!arr.is_null(i)).then(|| Decimal::from_i128_with_scale(arr.value(i), *scale));
            sink.put(&v)
        }
        Column::Interval(a) => sink.put(&pg_interval(a, i)),
        Column::List(a) => encode_list(a, i, sink),
        Column::Jsonb(a) => {
            let arr = a.as_string::<i32>();
            sink.put(&(!arr.is_null(i)).then(|| PgJsonb(arr.value(i))))
        }
        Column::Display(a) => {
            if a.is_null(i) {
                return sink.put(&None::<&str>);
            }
            let opts = FormatOptions::default();
            let f = ArrayFormatter::try_new(a.as_ref(), &opts).map_err(err)?;
            sink.put(&Some(f.value(i).to_string()))
        }
    }
}

/// Value `i` of an interval or duration column as PostgreSQL holds an interval. A duration
/// (what DataFusion makes of `timestamp - timestamp`) carries whole days as days, as
/// PostgreSQL's timestamp subtraction does (`9 days 23:48:51`, not `239:48:51`).
fn pg_interval(a: &ArrayRef, i: usize) -> Option<PgInterval> {
    if a.is_null(i) {
        return None;
    }
    const DAY: i64 = 86_400_000_000;
    let from_micros = |micros: i64| PgInterval { months: 0, days: (micros / DAY) as i32, micros: micros % DAY };
    Some(match a.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
            PgInterval { months: v.months, days: v.days, micros: v.nanoseconds / 1000 }
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = a.as_primitive::<IntervalDayTimeType>().value(i);
            PgInterval { months: 0, days: v.days, micros: i64::from(v.milliseconds) * 1000 }
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            PgInterval { months: a.as_primitive::<IntervalYearMonthType>().value(i), days: 0, micros: 0 }
        }
        DataType::Duration(TimeUnit::Second) => from_micros(a.as_primitive::<DurationSecondType>().value(i).saturating_mul(1_000_000)),
        DataType::Duration(TimeUnit::Millisecond) => from_micros(a.as_primitive::<DurationMillisecondType>().value(i).saturating_mul(1000)),
        DataType::Duration(TimeUnit::Microsecond) => from_micros(a.as_primitive::<DurationMicrosecondType>().value(i)),
        DataType::Duration(TimeUnit::Nanosecond) => from_micros(a.as_primitive::<DurationNanosecondType>().value(i) / 1000),
        _ => return None,
    })
}

/// A PostgreSQL interval: months, days and microseconds, each with its own sign.
#[derive(Debug, Clone, Copy)]
pub struct PgInterval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl std::fmt::Display for PgInterval {
    /// `IntervalStyle = postgres`, as PostgreSQL's `EncodeInterval` writes it: `1 year 2 mons
    /// -3 days +04:05:06.5`. A part follows a negative one with an explicit `+`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (mut zero, mut before) = (true, false);
        let mut part = |f: &mut std::fmt::Formatter<'_>, value: i64, unit: &str| -> std::fmt::Result {
            if value == 0 {
                return Ok(());
            }
            let space = if zero { "" } else { " " };
            let plus = if before && value > 0 { "+" } else { "" };
            let plural = if value != 1 { "s" } else { "" };
            before = value < 0;
            zero = false;
            write!(f, "{space}{plus}{value} {unit}{plural}")
        };
        part(f, i64::from(self.months / 12), "year")?;
        part(f, i64::from(self.months % 12), "mon")?;
        part(f, i64::from(self.days), "day")?;
        if zero || self.micros != 0 {
            let m = self.micros.unsigned_abs();
            let sign = if self.micros < 0 { "-" } else if before { "+" } else { "" };
            let space = if zero { "" } else { " " };
            let (h, mi, sec, frac) = (m / 3_600_000_000, m / 60_000_000 % 60, m / 1_000_000 % 60, m % 1_000_000);
            write!(f, "{space}{sign}{h:02}:{mi:02}:{sec:02}")?;
            if frac > 0 {
                write!(f, ".{}", format!("{frac:06}").trim_end_matches('0'))?;
            }
        }
        Ok(())
    }
}

/// jsonb's text, and in binary its version byte (1) before the text.
#[derive(Debug)]
struct PgJsonb<'a>(&'a str);

impl ToSql for PgJsonb<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut bytes::BytesMut) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(postgres_types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgJsonb<'_> {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
        _format_options: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

impl ToSql for PgInterval {
    fn to_sql(&self, _ty: &Type, out: &mut bytes::BytesMut) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        out.put_i64(self.micros);
        out.put_i32(self.days);
        out.put_i32(self.months);
        Ok(postgres_types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgInterval {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
        _format_options: &pgwire::types::format::FormatOptions,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.to_string().as_bytes());
        Ok(postgres_types::IsNull::No)
    }
}

fn encode_list<S: FieldSink>(a: &ArrayRef, i: usize, sink: &mut S) -> PgWireResult<()> {
    if a.is_null(i) {
        return sink.put(&None::<Vec<Option<i64>>>);
    }
    let values: ArrayRef = match a.data_type() {
        DataType::List(_) => a.as_list::<i32>().value(i),
        DataType::LargeList(_) => a.as_list::<i64>().value(i),
        DataType::FixedSizeList(_, _) => a.as_fixed_size_list().value(i),
        _ => return Err(err("not a list")),
    };
    macro_rules! vec_of {
        ($t:ty, $to:expr) => {{
            let v = cast(&values, &$to).map_err(err)?;
            let arr = v.as_primitive::<$t>();
            let items: Vec<Option<<$t as ArrowPrimitiveType>::Native>> = arr.iter().collect();
            sink.put(&Some(items))
        }};
    }
    match pg_type(a.data_type()) {
        Type::BOOL_ARRAY => {
            let items: Vec<Option<bool>> = values.as_boolean().iter().collect();
            sink.put(&Some(items))
        }
        Type::INT2_ARRAY => vec_of!(Int16Type, DataType::Int16),
        Type::INT4_ARRAY => vec_of!(Int32Type, DataType::Int32),
        Type::INT8_ARRAY => vec_of!(Int64Type, DataType::Int64),
        Type::FLOAT4_ARRAY => vec_of!(Float32Type, DataType::Float32),
        Type::FLOAT8_ARRAY => vec_of!(Float64Type, DataType::Float64),
        _ => {
            let v = cast(&values, &DataType::Utf8).map_err(err)?;
            let items: Vec<Option<String>> = v.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect();
            sink.put(&Some(items))
        }
    }
}

/// A schema with every column as `pg_type` will present it (used when describing results).
pub fn describe(schema: &Schema, format: Option<&Format>) -> Arc<Vec<FieldInfo>> {
    Arc::new(field_infos(schema, format))
}

/// Values whose text form pgwire writes differently from PostgreSQL: floats (`10`, not `10.0`;
/// `Infinity`, not `inf`) and times (fractional seconds only when there are any). Binary
/// encoding is the plain type's.
macro_rules! pg_text_newtype {
    ($name:ident, $inner:ty, $fmt:expr) => {
        #[derive(Debug, Clone, Copy)]
        pub struct $name(pub $inner);

        impl ToSql for $name {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut bytes::BytesMut,
            ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.0.to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <$inner as ToSql>::accepts(ty)
            }

            postgres_types::to_sql_checked!();
        }

        impl ToSqlText for $name {
            fn to_sql_text(
                &self,
                _ty: &Type,
                out: &mut bytes::BytesMut,
                _format_options: &pgwire::types::format::FormatOptions,
            ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                let text: String = $fmt(self.0);
                out.extend_from_slice(text.as_bytes());
                Ok(postgres_types::IsNull::No)
            }
        }
    };
}

pg_text_newtype!(PgFloat8, f64, |v: f64| pg_float(v, 15));
pg_text_newtype!(PgFloat4, f32, |v: f32| pg_float(v, 6));
pg_text_newtype!(PgTimestamp, NaiveDateTime, |v: NaiveDateTime| with_fraction(
    v.format("%Y-%m-%d %H:%M:%S").to_string(),
    v.and_utc().timestamp_subsec_micros()
));
pg_text_newtype!(PgTimestampTz, DateTime<chrono::Utc>, |v: DateTime<chrono::Utc>| format!(
    "{}+00",
    with_fraction(v.format("%Y-%m-%d %H:%M:%S").to_string(), v.timestamp_subsec_micros())
));
pg_text_newtype!(PgTime, NaiveTime, |v: NaiveTime| with_fraction(
    v.format("%H:%M:%S").to_string(),
    chrono::Timelike::nanosecond(&v) / 1000
));

fn with_fraction(mut s: String, micros: u32) -> String {
    if micros > 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

/// PostgreSQL's float output (extra_float_digits >= 1): the shortest text that reads back as
/// the same value, in positional notation for decimal exponents in [-4, `max_exp`), otherwise
/// as `1.5e+20`.
pub fn pg_float<F>(v: F, max_exp: i32) -> String
where
    F: Copy + Into<f64> + std::fmt::Display + std::fmt::LowerExp,
{
    let f: f64 = v.into();
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..max_exp).contains(&exp) {
        format!("{v}")
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// COPY TO in text or CSV format, written as PostgreSQL writes it: NULL is `\N` (text) or an
/// unquoted empty field (CSV), and a CSV empty string is `""`, so the two stay distinct.
pub struct CopyTextWriter {
    types: Vec<Type>,
    csv: bool,
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: Vec<u8>,
    row: bytes::BytesMut,
    value: bytes::BytesMut,
    col: usize,
}

impl CopyTextWriter {
    pub fn new(types: Vec<Type>, csv: bool, delimiter: u8, quote: u8, escape: u8, null: &str) -> Self {
        Self {
            types,
            csv,
            delimiter,
            quote,
            escape,
            null: null.as_bytes().to_vec(),
            row: bytes::BytesMut::new(),
            value: bytes::BytesMut::new(),
            col: 0,
        }
    }

    /// The finished row, with its newline.
    pub fn take_row(&mut self) -> bytes::Bytes {
        self.row.extend_from_slice(b"\n");
        self.col = 0;
        self.row.split().freeze()
    }

    /// A header line naming the columns (CSV `HEADER`).
    pub fn header(&mut self, names: &[String]) -> bytes::Bytes {
        for n in names {
            if self.col > 0 {
                self.row.extend_from_slice(&[self.delimiter]);
            }
            self.value.clear();
            self.value.extend_from_slice(n.as_bytes());
            self.write_value();
            self.col += 1;
        }
        self.take_row()
    }

    fn write_value(&mut self) {
        let v = &self.value[..];
        if self.csv {
            let needs_quotes = v.is_empty() && self.null.is_empty()
                || v == &self.null[..]
                || v.iter().any(|&b| b == self.delimiter || b == self.quote || b == b'\n' || b == b'\r');
            if needs_quotes {
                self.row.extend_from_slice(&[self.quote]);
                for &b in v {
                    if b == self.quote || b == self.escape {
                        self.row.extend_from_slice(&[self.escape]);
                    }
                    self.row.extend_from_slice(&[b]);
                }
                self.row.extend_from_slice(&[self.quote]);
            } else {
                self.row.extend_from_slice(v);
            }
        } else {
            for &b in v {
                match b {
                    b'\\' => self.row.extend_from_slice(b"\\\\"),
                    b'\n' => self.row.extend_from_slice(b"\\n"),
                    b'\r' => self.row.extend_from_slice(b"\\r"),
                    b'\t' if self.delimiter == b'\t' => self.row.extend_from_slice(b"\\t"),
                    d if d == self.delimiter => self.row.extend_from_slice(&[b'\\', d]),
                    other => self.row.extend_from_slice(&[other]),
                }
            }
        }
    }
}

impl FieldSink for CopyTextWriter {
    fn put<T: ToSql + ToSqlText + Sized>(&mut self, value: &T) -> PgWireResult<()> {
        if self.col > 0 {
            self.row.extend_from_slice(&[self.delimiter]);
        }
        self.value.clear();
        let ty = self.types.get(self.col).cloned().unwrap_or(Type::TEXT);
        let is_null = value
            .to_sql_text(&ty, &mut self.value, &pgwire::types::format::FormatOptions::default())
            .map_err(|e| err(e))?;
        match is_null {
            postgres_types::IsNull::Yes => self.row.extend_from_slice(&self.null.clone()),
            postgres_types::IsNull::No => self.write_value(),
        }
        self.col += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_postgres_prints_them() {
        assert_eq!(pg_float(10.0, 15), "10");
        assert_eq!(pg_float(0.1, 15), "0.1");
        assert_eq!(pg_float(1e20, 15), "1e+20");
        assert_eq!(pg_float(1.5e-5, 15), "1.5e-05");
        assert_eq!(pg_float(-2.5, 15), "-2.5");
        assert_eq!(pg_float(f64::INFINITY, 15), "Infinity");
        assert_eq!(pg_float(123456789012345.0, 15), "123456789012345");
        assert_eq!(pg_float(1234567890123456.0, 15), "1.234567890123456e+15");
    }

    #[test]
    fn csv_keeps_null_and_empty_apart() {
        let mut w = CopyTextWriter::new(vec![Type::TEXT, Type::TEXT, Type::TEXT], true, b',', b'"', b'"', "");
        w.put(&None::<&str>).unwrap();
        w.put(&Some("")).unwrap();
        w.put(&Some("a,\"b\"")).unwrap();
        assert_eq!(&w.take_row()[..], b",\"\",\"a,\"\"b\"\"\"\n");
    }
}
