//! Session settings: what `SET`, `SHOW`, `RESET` and `current_setting()` read and write.
//!
//! Clients send many settings on connect (`extra_float_digits`, `DateStyle`, `application_name`,
//! ...). We keep every one per session so that `SHOW` answers what was set, and report the
//! server's fixed values (`server_version`, `standard_conforming_strings`, ...) as Postgres does.
//! Only `search_path` changes how queries run here.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

pub const PG_VERSION: &str = "16.6";
pub const PG_VERSION_NUM: &str = "160006";

/// `version()`: the shape SQLAlchemy and JDBC parse ("PostgreSQL <major>.<minor> ...").
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (hindsight {}) on {}-{}, compiled by rustc",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Values a fresh session starts with, as a PostgreSQL 16 server reports them.
fn defaults() -> BTreeMap<String, String> {
    let pairs: &[(&str, &str)] = &[
        ("server_version", PG_VERSION),
        ("server_version_num", PG_VERSION_NUM),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("datestyle", "ISO, MDY"),
        ("intervalstyle", "postgres"),
        ("timezone", "UTC"),
        ("search_path", "public"),
        ("transaction_isolation", "serializable"),
        ("default_transaction_isolation", "serializable"),
        ("transaction_read_only", "off"),
        ("default_transaction_read_only", "off"),
        ("max_identifier_length", "63"),
        ("statement_timeout", "0"),
        ("lock_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("extra_float_digits", "1"),
        ("application_name", ""),
        ("is_superuser", "on"),
        ("bytea_output", "hex"),
        ("max_connections", "256"),
        // Empty: the session reads the latest versions (see `session::AS_OF`).
        ("hindsight.as_of", ""),
    ];
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Per-session settings, shared with the session's `current_setting` function.
#[derive(Debug)]
pub struct Settings(RwLock<BTreeMap<String, String>>);

impl Default for Settings {
    fn default() -> Self {
        Self(RwLock::new(defaults()))
    }
}

impl Settings {
    /// Setting names are case-insensitive, as in Postgres (`DateStyle` = `datestyle`).
    fn key(name: &str) -> String {
        name.to_ascii_lowercase()
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(&Self::key(name)).cloned()
    }

    pub fn set(&self, name: &str, value: impl Into<String>) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(Self::key(name), value.into());
    }

    /// Back to the server default; a setting without one disappears.
    pub fn reset(&self, name: &str) {
        let key = Self::key(name);
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        match defaults().remove(&key) {
            Some(v) => map.insert(key, v),
            None => map.remove(&key),
        };
    }

    pub fn reset_all(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = defaults();
    }

    pub fn all(&self) -> Vec<(String, String)> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// `current_setting(name)` bound to one session's settings.
pub fn current_setting_udf(settings: Arc<Settings>) -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| -> DfResult<ColumnarValue> {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = as_string_array(&arrays[0])?;
            let out: StringArray = names.iter().map(|n| n.and_then(|n| settings.get(n))).collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

/// `session_user` and `current_user` (clients write either; datafusion-pg-catalog's rewrite turns
/// the bare keyword into a call): the user who connected, not a fixed name.
pub fn session_user_udf(settings: Arc<Settings>) -> ScalarUDF {
    create_udf(
        "session_user",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| -> DfResult<ColumnarValue> {
            Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::Utf8(settings.get("session_user"))))
        }),
    )
}

/// `version()` in the form PostgreSQL clients parse.
pub fn version_udf() -> ScalarUDF {
    let v = version_string();
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_args: &[ColumnarValue]| -> DfResult<ColumnarValue> {
            Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::Utf8(Some(v.clone()))))
        }),
    )
}

/// A PostgreSQL duration setting such as `statement_timeout`: a number of milliseconds, or a
/// number with a unit (`ms`, `s`, `min`, `h`, `d`). Zero means no limit.
pub fn parse_duration_ms(name: &str, value: &str) -> crate::Result<Option<std::time::Duration>> {
    let v = value.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let bad = || crate::Error::InvalidParameter(format!("invalid value for parameter \"{name}\": \"{value}\""));
    let n: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1.0,
        "s" => 1e3,
        "min" => 60e3,
        "h" => 3600e3,
        "d" => 86400e3,
        _ => return Err(bad()),
    };
    let ms = n * scale;
    if !ms.is_finite() || ms < 0.0 || ms > i32::MAX as f64 {
        return Err(bad());
    }
    Ok((ms >= 1.0).then(|| std::time::Duration::from_millis(ms as u64)))
}
