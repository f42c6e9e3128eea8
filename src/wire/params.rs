//! Bound parameters of the extended protocol: Postgres text or binary values to `ScalarValue`s.
//!
//! The client's declared type wins; otherwise the type DataFusion inferred from the plan. The
//! value is then cast to the inferred type, so `WHERE id = $1` works whether the client sent
//! int4, int8 or text.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use postgres_types::FromSql;
use rust_decimal::Decimal;

use crate::error::{Error, Result};

/// The Arrow type a Postgres parameter type decodes to.
pub fn arrow_type(t: &Type) -> DataType {
    match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 | Type::OID => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        _ => DataType::Utf8,
    }
}

fn bad(t: &Type, e: impl std::fmt::Display) -> Error {
    Error::InvalidText(format!("invalid value for parameter of type {}: {e}", t.name()))
}

/// Decodes one parameter. `declared` is what the client or the plan says it is; `target` the
/// type the plan wants (if known).
pub fn decode(raw: Option<&[u8]>, declared: &Type, binary: bool, target: Option<&DataType>) -> Result<ScalarValue> {
    let natural = arrow_type(declared);
    let want = target.cloned().unwrap_or_else(|| natural.clone());
    let Some(raw) = raw else {
        return Ok(ScalarValue::try_from(&want)?);
    };
    let value = if binary {
        decode_binary(raw, declared)?
    } else {
        let text = std::str::from_utf8(raw).map_err(|e| bad(declared, e))?;
        ScalarValue::Utf8(Some(text.to_string()))
    };
    if value.data_type() == want {
        return Ok(value);
    }
    value.cast_to(&want).map_err(|e| bad(declared, e))
}

fn decode_binary(raw: &[u8], t: &Type) -> Result<ScalarValue> {
    macro_rules! from {
        ($ty:ty) => {
            <$ty as FromSql>::from_sql(t, raw).map_err(|e| bad(t, e))?
        };
    }
    Ok(match *t {
        Type::BOOL => ScalarValue::Boolean(Some(from!(bool))),
        Type::INT2 => ScalarValue::Int16(Some(from!(i16))),
        Type::INT4 => ScalarValue::Int32(Some(from!(i32))),
        Type::OID => ScalarValue::Int32(Some(from!(u32) as i32)),
        Type::INT8 => ScalarValue::Int64(Some(from!(i64))),
        Type::FLOAT4 => ScalarValue::Float32(Some(from!(f32))),
        Type::FLOAT8 => ScalarValue::Float64(Some(from!(f64))),
        Type::BYTEA => ScalarValue::Binary(Some(from!(Vec<u8>))),
        Type::DATE => {
            let d = from!(NaiveDate);
            ScalarValue::Date32(Some((d - NaiveDate::default()).num_days() as i32))
        }
        Type::TIMESTAMP => {
            let ts = from!(NaiveDateTime);
            ScalarValue::TimestampMicrosecond(Some(ts.and_utc().timestamp_micros()), None)
        }
        Type::TIMESTAMPTZ => {
            let ts = from!(DateTime<Utc>);
            ScalarValue::TimestampMicrosecond(Some(ts.timestamp_micros()), Some("+00:00".into()))
        }
        Type::NUMERIC => {
            let d = from!(Decimal);
            ScalarValue::Utf8(Some(d.to_string()))
        }
        _ => ScalarValue::Utf8(Some(from!(String))),
    })
}
