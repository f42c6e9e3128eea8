//! Which PostgreSQL type each Arrow type is presented as: what the wire sends (`wire::encode`)
//! and what the catalogs (`information_schema`, `pg_catalog`) and messages name, so the two
//! never disagree.

use datafusion::arrow::datatypes::DataType;
use pgwire::api::Type;

/// The Postgres type a column of this Arrow type is sent as.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Null => Type::TEXT,
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        // Counts (DataFusion's row_number, rank) are unsigned 64-bit; PostgreSQL's are bigint.
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Decimal128(p, _) if *p <= 28 => Type::NUMERIC,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::Dictionary(_, v) => pg_type(v),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => match pg_type(f.data_type()) {
            Type::BOOL => Type::BOOL_ARRAY,
            Type::INT2 => Type::INT2_ARRAY,
            Type::INT4 => Type::INT4_ARRAY,
            Type::INT8 => Type::INT8_ARRAY,
            Type::FLOAT4 => Type::FLOAT4_ARRAY,
            Type::FLOAT8 => Type::FLOAT8_ARRAY,
            Type::TEXT if is_plain_string(f.data_type()) => Type::TEXT_ARRAY,
            _ => Type::TEXT,
        },
        _ => Type::TEXT,
    }
}

fn is_plain_string(dt: &DataType) -> bool {
    matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The Postgres name of the type an Arrow column is presented as (for catalogs and messages).
pub fn pg_type_name(dt: &DataType) -> String {
    match dt {
        DataType::Decimal128(p, s) if *p <= 28 => format!("numeric({p},{s})"),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".into(),
        DataType::Float32 | DataType::Float16 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Int16 | DataType::Int8 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Interval(_) | DataType::Duration(_) => "interval".into(),
        _ => match pg_type(dt) {
            Type::TEXT_ARRAY => "text[]".into(),
            Type::INT4_ARRAY => "integer[]".into(),
            Type::INT8_ARRAY => "bigint[]".into(),
            Type::FLOAT8_ARRAY => "double precision[]".into(),
            t => t.name().to_string(),
        },
    }
}

