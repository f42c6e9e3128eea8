//! PostgreSQL's `json` and `jsonb`: the types, their operators and the functions analysts use.
//!
//! Arrow has no JSON type, so a JSON value is its text in a `Utf8` column whose field carries
//! `hindsight.pg_type = json | jsonb`; the wire layer sends such a column as OID 114 or 3802.
//! `json` keeps the text it was given, as PostgreSQL's does; `jsonb` is normalised as
//! PostgreSQL normalises it: object keys sorted (shorter first), the last of duplicate keys
//! kept, written with `", "` and `": "`. A cast (`x::jsonb`) is planned as the function `jsonb(x)`
//! (`rewrites`), the operators (`->`, `->>`, `#>`, `#>>`, `@>`, `?`, `?|`, `?&`, `||`, `-`) by
//! `JsonOperators` when their left side is JSON, and `json_agg`/`jsonb_agg`/`json_object_agg`
//! as `array_agg` finished by a function here.
//!
//! Not here: JSON columns in tables (Delta has no JSON type; store text and cast), a `json`
//! value's original spacing inside the values `->` extracts (they are written compactly),
//! documents nested deeper than 256 levels (refused with 54001), and jsonpath.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::Error;

/// The field metadata key that marks a `Utf8` column as `json` or `jsonb`.
pub const PG_TYPE: &str = "hindsight.pg_type";

/// Deeper documents are refused with 54001 (PostgreSQL's limit is its stack depth; this one keeps
/// the recursive parser, writer and comparisons well inside any thread's stack).
const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Json,
    Jsonb,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Jsonb => "jsonb",
        }
    }
}

/// Whether a field holds `json` or `jsonb` text.
pub fn kind_of(field: &Field) -> Option<Kind> {
    match field.metadata().get(PG_TYPE).map(String::as_str) {
        Some("json") => Some(Kind::Json),
        Some("jsonb") => Some(Kind::Jsonb),
        _ => None,
    }
}

fn json_field(name: &str, kind: Kind) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(HashMap::from([(PG_TYPE.to_string(), kind.name().to_string())]))
}

// ---------------------------------------------------------------------------------------------
// Values: parsing and writing

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    /// As written (jsonb writes exponents out: `1e3` is `1000`).
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
    /// JSON text embedded as it is (a `json` argument of `json_build_object`, say).
    Raw(String),
}

fn invalid(detail: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(Box::new(Error::InvalidText(format!("invalid input syntax for type json: {detail}"))))
}

fn parse(text: &str) -> Result<Value> {
    let mut p = JsonParser { s: text.as_bytes(), i: 0 };
    let v = p.value(0)?;
    p.space();
    if p.i != p.s.len() {
        return Err(invalid(format!("unexpected text after the value at byte {}", p.i)));
    }
    Ok(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn space(&mut self) {
        while self.s.get(self.i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(DataFusionError::External(Box::new(Error::TooComplex(format!(
                "JSON nested deeper than {MAX_DEPTH} levels"
            )))));
        }
        self.space();
        match self.s.get(self.i) {
            None => Err(invalid("the input ends before a value")),
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.space();
                if self.eat("}") {
                    return Ok(Value::Object(fields));
                }
                loop {
                    self.space();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(invalid(format!("expected a key at byte {}", self.i)));
                    }
                    let key = self.string()?;
                    self.space();
                    if !self.eat(":") {
                        return Err(invalid(format!("expected \":\" at byte {}", self.i)));
                    }
                    fields.push((key, self.value(depth + 1)?));
                    self.space();
                    if self.eat("}") {
                        return Ok(Value::Object(fields));
                    }
                    if !self.eat(",") {
                        return Err(invalid(format!("expected \",\" or \"}}\" at byte {}", self.i)));
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.space();
                if self.eat("]") {
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    if self.eat("]") {
                        return Ok(Value::Array(items));
                    }
                    if !self.eat(",") {
                        return Err(invalid(format!("expected \",\" or \"]\" at byte {}", self.i)));
                    }
                }
            }
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(_) if self.eat("true") => Ok(Value::Bool(true)),
            Some(_) if self.eat("false") => Ok(Value::Bool(false)),
            Some(_) if self.eat("null") => Ok(Value::Null),
            Some(_) => self.number(),
        }
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while p.s.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > from
        };
        self.eat("-");
        if !self.eat("0") && !digits(self) {
            return Err(invalid(format!("unexpected character at byte {start}")));
        }
        if self.eat(".") && !digits(self) {
            return Err(invalid(format!("a number without digits after its point at byte {start}")));
        }
        if self.s.get(self.i).is_some_and(|c| *c == b'e' || *c == b'E') {
            self.i += 1;
            if !self.eat("+") {
                self.eat("-");
            }
            if !digits(self) {
                return Err(invalid(format!("a number without an exponent at byte {start}")));
            }
        }
        Ok(Value::Number(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
    }

    fn string(&mut self) -> Result<String> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else { return Err(invalid("an unterminated string")) };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(invalid),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else { return Err(invalid("an unterminated string")) };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&first) && self.eat("\\u") {
                                let second = self.hex4()?;
                                0x10000 + ((first - 0xD800) << 10) + (second.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                first
                            };
                            char::from_u32(code).ok_or_else(|| invalid("an invalid Unicode escape"))?
                        }
                        _ => return Err(invalid("an invalid escape")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err(invalid("a control character in a string")),
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.s.get(self.i..self.i + 4).ok_or_else(|| invalid("a short Unicode escape"))?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(digits).map_err(invalid)?, 16).map_err(invalid)
    }
}

/// jsonb's canonical form: keys sorted shorter first then bytewise, the last duplicate kept,
/// exponents written out.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(fields) => {
            let mut out: Vec<(String, Value)> = Vec::with_capacity(fields.len());
            for (k, v) in fields {
                let v = normalize(v);
                match out.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
            out.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Number(n) if n.contains(['e', 'E']) => {
            Value::Number(rust_decimal::Decimal::from_scientific(&n).map_or(n, |d| d.normalize().to_string()))
        }
        Value::Raw(text) => parse(&text).map_or(Value::Raw(text), normalize),
        v => v,
    }
}

/// How a writer separates: jsonb's `{"a": 1, "b": 2}`, `json_build_object`'s `{"a" : 1}`,
/// `json_object_agg`'s `{ "a" : 1 }`, or compact.
#[derive(Clone, Copy)]
struct Style {
    colon: &'static str,
    comma: &'static str,
    open: &'static str,
    close: &'static str,
}

const JSONB: Style = Style { colon: ": ", comma: ", ", open: "{", close: "}" };
const COMPACT: Style = Style { colon: ":", comma: ",", open: "{", close: "}" };
const BUILD: Style = Style { colon: " : ", comma: ", ", open: "{", close: "}" };
const OBJECT_AGG: Style = Style { colon: " : ", comma: ", ", open: "{ ", close: " }" };

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write(v: &Value, style: Style, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) | Value::Raw(n) => out.push_str(n),
        Value::String(s) => quote(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.comma);
                }
                write(item, style, out);
            }
            out.push(']');
        }
        Value::Object(fields) if fields.is_empty() => out.push_str("{}"),
        Value::Object(fields) => {
            out.push_str(style.open);
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.comma);
                }
                quote(k, out);
                out.push_str(style.colon);
                write(v, style, out);
            }
            out.push_str(style.close);
        }
    }
}

fn text(v: &Value, style: Style) -> String {
    let mut out = String::new();
    write(v, style, &mut out);
    out
}

fn style_of(kind: Kind) -> Style {
    match kind {
        Kind::Json => COMPACT,
        Kind::Jsonb => JSONB,
    }
}

/// `jsonb_pretty`: four spaces a level, as PostgreSQL indents.
fn pretty(v: &Value, level: usize, out: &mut String) {
    let pad = |n: usize, out: &mut String| out.push_str(&" ".repeat(4 * n));
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                pad(level + 1, out);
                pretty(item, level + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            pad(level, out);
            out.push(']');
        }
        Value::Object(fields) if !fields.is_empty() => {
            out.push_str("{\n");
            for (i, (k, v)) in fields.iter().enumerate() {
                pad(level + 1, out);
                quote(k, out);
                out.push_str(": ");
                pretty(v, level + 1, out);
                out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
            }
            pad(level, out);
            out.push('}');
        }
        v => write(v, JSONB, out),
    }
}

// ---------------------------------------------------------------------------------------------
// Operations on values

enum Step {
    Key(String),
    Index(i64),
}

fn get<'a>(v: &'a Value, step: &Step) -> Option<&'a Value> {
    match (v, step) {
        (Value::Object(fields), Step::Key(k)) => fields.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v),
        (Value::Array(items), Step::Index(i)) => {
            let i = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(i).ok().and_then(|i| items.get(i))
        }
        // A path step is text; over an array it is an index.
        (Value::Array(_), Step::Key(k)) => k.trim().parse().ok().and_then(|i| get(v, &Step::Index(i))),
        _ => None,
    }
}

fn number_eq(a: &str, b: &str) -> bool {
    match (a.parse::<rust_decimal::Decimal>(), b.parse::<rust_decimal::Decimal>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.parse::<f64>().ok() == b.parse::<f64>().ok(),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => number_eq(a, b),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| equal(a, b)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && equal(v, v2)))
        }
        (a, b) => a == b,
    }
}

/// jsonb's `@>`: every key of an object, every element of an array, is found in the container.
fn contains(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            b.iter().all(|(k, vb)| a.iter().any(|(ka, va)| ka == k && contains(va, vb)))
        }
        (Value::Array(a), Value::Array(b)) => b.iter().all(|vb| {
            a.iter().any(|va| match vb {
                Value::Array(_) | Value::Object(_) => contains(va, vb),
                _ => equal(va, vb),
            })
        }),
        // A top-level array contains a scalar that is one of its elements.
        (Value::Array(a), b) if !matches!(b, Value::Object(_)) => a.iter().any(|va| equal(va, b)),
        (a, b) => equal(a, b),
    }
}

fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(fields) => fields.iter().any(|(k, _)| k == key),
        Value::Array(items) => items.iter().any(|i| matches!(i, Value::String(s) if s == key)),
        Value::String(s) => s == key,
        _ => false,
    }
}

fn concat(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, v) in b {
                match a.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => a.push((k, v)),
                }
            }
            normalize(Value::Object(a))
        }
        (Value::Array(mut a), Value::Array(b)) => {
            a.extend(b);
            Value::Array(a)
        }
        (Value::Array(mut a), b) => {
            a.push(b);
            Value::Array(a)
        }
        (a, Value::Array(b)) => Value::Array(std::iter::once(a).chain(b).collect()),
        (a, b) => Value::Array(vec![a, b]),
    }
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(fields) => {
            Value::Object(fields.into_iter().filter(|(_, v)| *v != Value::Null).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

/// `jsonb_set`: the value at `path` replaced, or added as the last key of its object.
fn set(v: &mut Value, path: &[String], new: Value, create: bool) {
    let Some((first, rest)) = path.split_first() else { return };
    match v {
        Value::Object(fields) => match fields.iter_mut().find(|(k, _)| k == first) {
            Some((_, child)) if rest.is_empty() => *child = new,
            Some((_, child)) => set(child, rest, new, create),
            None if rest.is_empty() && create => {
                fields.push((first.clone(), new));
                *v = normalize(std::mem::replace(v, Value::Null));
            }
            None => {}
        },
        Value::Array(items) => {
            let Ok(i) = first.trim().parse::<i64>() else { return };
            let len = items.len() as i64;
            let at = if i < 0 { len + i } else { i };
            match usize::try_from(at).ok().filter(|at| *at < items.len()) {
                Some(at) if rest.is_empty() => items[at] = new,
                Some(at) => set(&mut items[at], rest, new, create),
                None if rest.is_empty() && create => {
                    if at < 0 {
                        items.insert(0, new);
                    } else {
                        items.push(new);
                    }
                }
                None => {}
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Raw(r) => parse(r).map_or("string", |v| type_name(&v)),
    }
}

/// `'{a,b}'`, PostgreSQL's text form of a `text[]` path.
fn text_array(s: &str) -> Vec<String> {
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.trim().is_empty() {
        return vec![];
    }
    inner.split(',').map(|p| p.trim().trim_matches('"').to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// SQL values to JSON

/// One SQL value as JSON, as `to_json` writes it: numbers and booleans as themselves, JSON
/// as it is, dates and times as ISO 8601 strings, arrays as arrays, everything else a string.
fn from_sql(a: &ArrayRef, field: Option<&Field>, row: usize) -> Result<Value> {
    // A NULL literal's array has the Null type, whose values report no null buffer.
    if a.data_type() == &DataType::Null || a.is_null(row) {
        return Ok(Value::Null);
    }
    if let Some(kind) = field.and_then(kind_of) {
        let text = a.as_string_opt::<i32>().map(|s| s.value(row).to_string()).unwrap_or_default();
        return Ok(match kind {
            Kind::Json => Value::Raw(text),
            Kind::Jsonb => parse(&text)?,
        });
    }
    let dt = a.data_type();
    let one = a.slice(row, 1);
    let as_text = |t: &ArrayRef| -> Result<String> {
        let s = datafusion::arrow::compute::cast(t, &DataType::Utf8)?;
        Ok(s.as_string::<i32>().value(0).to_string())
    };
    Ok(match dt {
        DataType::Boolean => Value::Bool(a.as_boolean().value(row)),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let f = datafusion::arrow::compute::cast(&one, &DataType::Float64)?;
            let f = f.as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(0);
            if f.is_finite() { Value::Number(f.to_string()) } else { Value::String(as_text(&one)?) }
        }
        t if t.is_numeric() => Value::Number(as_text(&one)?),
        DataType::List(item) | DataType::LargeList(item) => {
            let values = match dt {
                DataType::List(_) => a.as_list::<i32>().value(row),
                _ => a.as_list::<i64>().value(row),
            };
            Value::Array((0..values.len()).map(|i| from_sql(&values, Some(item), i)).collect::<Result<_>>()?)
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| Ok((f.name().clone(), from_sql(c, Some(f), row)?)))
                    .collect::<Result<_>>()?,
            )
        }
        DataType::Timestamp(_, _) => {
            let t = as_text(&one)?;
            Value::String(t.strip_suffix('Z').map_or(t.clone(), |t| format!("{t}+00:00")))
        }
        _ => Value::String(as_text(&one)?),
    })
}

// ---------------------------------------------------------------------------------------------
// The functions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    /// `x::json`, `x::jsonb`
    Parse(Kind),
    /// `->` (text: `->>`)
    Get { text: bool },
    /// `#>` (text: `#>>`), `json_extract_path[_text]`
    Path { text: bool, variadic: bool },
    Contains,
    /// `?`, `?|` (any), `?&` (all)
    Exists(Quantifier),
    Concat,
    Delete,
    Typeof,
    ArrayLength,
    Set,
    StripNulls,
    Pretty,
    BuildObject(Kind),
    BuildArray(Kind),
    ToJson(Kind),
    /// `json_agg(x)` is `json_agg_finish(array_agg(x))`.
    AggFinish(Kind),
    ObjectAggFinish,
    /// Set-returning in PostgreSQL; a list here, which a select list unnests (`rewrites`).
    Elements { text: bool, kind: Kind },
    ObjectKeys,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Quantifier {
    One,
    Any,
    All,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFunction {
    name: &'static str,
    op: Op,
    signature: Signature,
}

fn udf(name: &'static str, op: Op) -> ScalarUDF {
    let signature = Signature::one_of(vec![TypeSignature::VariadicAny, TypeSignature::Nullary], Volatility::Immutable);
    ScalarUDF::new_from_impl(JsonFunction { name, op, signature })
}

const FUNCTIONS: &[(&str, Op)] = &[
    ("json", Op::Parse(Kind::Json)),
    ("jsonb", Op::Parse(Kind::Jsonb)),
    ("json_get", Op::Get { text: false }),
    ("json_get_text", Op::Get { text: true }),
    ("json_get_path", Op::Path { text: false, variadic: false }),
    ("json_get_path_text", Op::Path { text: true, variadic: false }),
    ("json_extract_path", Op::Path { text: false, variadic: true }),
    ("jsonb_extract_path", Op::Path { text: false, variadic: true }),
    ("json_extract_path_text", Op::Path { text: true, variadic: true }),
    ("jsonb_extract_path_text", Op::Path { text: true, variadic: true }),
    ("jsonb_contains", Op::Contains),
    ("jsonb_exists", Op::Exists(Quantifier::One)),
    ("jsonb_exists_any", Op::Exists(Quantifier::Any)),
    ("jsonb_exists_all", Op::Exists(Quantifier::All)),
    ("jsonb_concat", Op::Concat),
    ("jsonb_delete", Op::Delete),
    ("json_typeof", Op::Typeof),
    ("jsonb_typeof", Op::Typeof),
    ("json_array_length", Op::ArrayLength),
    ("jsonb_array_length", Op::ArrayLength),
    ("jsonb_set", Op::Set),
    ("json_strip_nulls", Op::StripNulls),
    ("jsonb_strip_nulls", Op::StripNulls),
    ("jsonb_pretty", Op::Pretty),
    ("json_build_object", Op::BuildObject(Kind::Json)),
    ("jsonb_build_object", Op::BuildObject(Kind::Jsonb)),
    ("json_build_array", Op::BuildArray(Kind::Json)),
    ("jsonb_build_array", Op::BuildArray(Kind::Jsonb)),
    ("to_json", Op::ToJson(Kind::Json)),
    ("to_jsonb", Op::ToJson(Kind::Jsonb)),
    ("json_agg_finish", Op::AggFinish(Kind::Json)),
    ("jsonb_agg_finish", Op::AggFinish(Kind::Jsonb)),
    ("json_object_agg_finish", Op::ObjectAggFinish),
    ("json_array_elements", Op::Elements { text: false, kind: Kind::Json }),
    ("jsonb_array_elements", Op::Elements { text: false, kind: Kind::Jsonb }),
    ("json_array_elements_text", Op::Elements { text: true, kind: Kind::Json }),
    ("jsonb_array_elements_text", Op::Elements { text: true, kind: Kind::Jsonb }),
    ("json_object_keys", Op::ObjectKeys),
    ("jsonb_object_keys", Op::ObjectKeys),
];

/// The functions whose PostgreSQL versions return a set: unnested in a select list.
pub fn set_returning(name: &str) -> bool {
    FUNCTIONS.iter().any(|(n, op)| n.eq_ignore_ascii_case(name) && matches!(op, Op::Elements { .. } | Op::ObjectKeys))
}

pub fn install(ctx: &SessionContext) {
    for (name, op) in FUNCTIONS {
        ctx.register_udf(udf(name, *op));
    }
    let state = ctx.state_ref();
    // Cannot fail: SessionState's registration only appends.
    let _ = datafusion::execution::FunctionRegistry::register_expr_planner(&mut *state.write(), Arc::new(JsonOperators));
}

fn function(name: &'static str) -> Arc<ScalarUDF> {
    let op = FUNCTIONS.iter().find(|(n, _)| *n == name).map_or(Op::Typeof, |(_, op)| *op);
    Arc::new(udf(name, op))
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("return_field_from_args is used")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let input = args.arg_fields.first().and_then(|f| kind_of(f)).unwrap_or(Kind::Jsonb);
        let field = match self.op {
            Op::Parse(kind) | Op::BuildObject(kind) | Op::BuildArray(kind) | Op::ToJson(kind) | Op::AggFinish(kind) => {
                json_field(self.name, kind)
            }
            Op::ObjectAggFinish => json_field(self.name, Kind::Json),
            Op::Get { text: false } | Op::Path { text: false, .. } | Op::StripNulls => json_field(self.name, input),
            Op::Concat | Op::Delete | Op::Set => json_field(self.name, Kind::Jsonb),
            Op::Get { text: true } | Op::Path { text: true, .. } | Op::Typeof | Op::Pretty => {
                Field::new(self.name, DataType::Utf8, true)
            }
            Op::Contains | Op::Exists(_) => Field::new(self.name, DataType::Boolean, true),
            Op::ArrayLength => Field::new(self.name, DataType::Int32, true),
            Op::Elements { text, kind } => {
                let item = if text { Field::new("item", DataType::Utf8, true) } else { json_field("item", kind) };
                Field::new(self.name, DataType::List(Arc::new(item)), true)
            }
            Op::ObjectKeys => Field::new(self.name, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
        };
        Ok(Arc::new(field))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let fields = &args.arg_fields;
        // Each argument as text once, not a cast per row.
        let texts = arrays.iter().map(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8).ok()).collect::<Vec<_>>();
        let out = Rows { arrays: &arrays, texts: &texts, fields, op: self.op }.run(rows)?;
        Ok(ColumnarValue::Array(out))
    }
}

struct Rows<'a> {
    arrays: &'a [ArrayRef],
    /// `arrays` cast to text, where they cast (lists do not).
    texts: &'a [Option<ArrayRef>],
    fields: &'a [FieldRef],
    op: Op,
}

enum Out {
    Text(Option<String>),
    Bool(Option<bool>),
    Int(Option<i32>),
    List(Option<Vec<Option<String>>>),
}

impl Rows<'_> {
    fn text(&self, i: usize, row: usize) -> Result<Option<String>> {
        let Some(Some(a)) = self.texts.get(i) else { return Ok(None) };
        let a = a.as_string::<i32>();
        Ok((!a.is_null(row)).then(|| a.value(row).to_string()))
    }

    /// Argument `i` as JSON (any text argument is read as JSON, as PostgreSQL reads an untyped
    /// literal).
    fn json(&self, i: usize, row: usize) -> Result<Option<Value>> {
        self.text(i, row)?.map(|t| parse(&t)).transpose()
    }

    fn kind(&self, i: usize) -> Kind {
        self.fields.get(i).and_then(|f| kind_of(f)).unwrap_or(Kind::Jsonb)
    }

    fn path(&self, row: usize, variadic: bool) -> Result<Option<Vec<String>>> {
        if variadic {
            return (1..self.arrays.len()).map(|i| self.text(i, row)).collect();
        }
        let Some(a) = self.arrays.get(1) else { return Ok(None) };
        if a.is_null(row) {
            return Ok(None);
        }
        Ok(Some(match a.data_type() {
            DataType::List(_) => {
                let items = datafusion::arrow::compute::cast(&a.as_list::<i32>().value(row), &DataType::Utf8)?;
                items.as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_string()).collect()
            }
            _ => self.text(1, row)?.map(|t| text_array(&t)).unwrap_or_default(),
        }))
    }

    fn written(&self, v: &Value) -> String {
        text(v, style_of(self.kind(0)))
    }

    fn run(&self, rows: usize) -> Result<ArrayRef> {
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            out.push(self.one(row)?);
        }
        Ok(match self.op {
            Op::Contains | Op::Exists(_) => {
                Arc::new(out.into_iter().map(|o| if let Out::Bool(b) = o { b } else { None }).collect::<BooleanArray>())
            }
            Op::ArrayLength => Arc::new(out.into_iter().map(|o| if let Out::Int(n) = o { n } else { None }).collect::<Int32Array>()),
            Op::Elements { .. } | Op::ObjectKeys => {
                let lists: Vec<Option<Vec<Option<String>>>> = out.into_iter().map(|o| if let Out::List(l) = o { l } else { None }).collect();
                let lengths = lists.iter().map(|l| l.as_ref().map_or(0, Vec::len));
                let offsets = OffsetBuffer::from_lengths(lengths);
                let nulls = datafusion::arrow::buffer::NullBuffer::from(lists.iter().map(Option::is_some).collect::<Vec<_>>());
                let values = StringArray::from(lists.into_iter().flatten().flatten().collect::<Vec<_>>());
                let item = match self.op {
                    Op::Elements { text: false, kind } => json_field("item", kind),
                    _ => Field::new("item", DataType::Utf8, true),
                };
                Arc::new(ListArray::try_new(Arc::new(item), offsets, Arc::new(values), Some(nulls))?)
            }
            _ => Arc::new(out.into_iter().map(|o| if let Out::Text(t) = o { t } else { None }).collect::<StringArray>()),
        })
    }

    fn one(&self, row: usize) -> Result<Out> {
        let jsonb = |v: &Value| text(v, JSONB);
        Ok(match self.op {
            Op::Parse(kind) => Out::Text(match self.text(0, row)? {
                None => None,
                Some(t) => {
                    let v = parse(&t)?;
                    Some(match kind {
                        Kind::Json => t,
                        Kind::Jsonb => jsonb(&normalize(v)),
                    })
                }
            }),
            Op::Get { text: as_text } | Op::Path { text: as_text, .. } => {
                let Some(v) = self.json(0, row)? else { return Ok(Out::Text(None)) };
                let steps = match self.op {
                    Op::Get { .. } => match self.arrays.get(1).map(|a| a.data_type().is_integer()) {
                        Some(true) => self.text(1, row)?.and_then(|t| t.parse().ok()).map(|i| vec![Step::Index(i)]),
                        _ => self.text(1, row)?.map(|k| vec![Step::Key(k)]),
                    },
                    Op::Path { variadic, .. } => self.path(row, variadic)?.map(|p| p.into_iter().map(Step::Key).collect()),
                    _ => None,
                };
                let Some(steps) = steps else { return Ok(Out::Text(None)) };
                let found = steps.iter().try_fold(&v, |v, s| get(v, s));
                Out::Text(match found {
                    None => None,
                    Some(Value::Null) if as_text => None,
                    Some(Value::String(s)) if as_text => Some(s.clone()),
                    Some(v) => Some(self.written(v)),
                })
            }
            Op::Contains => match (self.json(0, row)?, self.json(1, row)?) {
                (Some(a), Some(b)) => Out::Bool(Some(contains(&a, &b))),
                _ => Out::Bool(None),
            },
            Op::Exists(q) => {
                let Some(v) = self.json(0, row)? else { return Ok(Out::Bool(None)) };
                Out::Bool(match q {
                    Quantifier::One => self.text(1, row)?.map(|k| has_key(&v, &k)),
                    Quantifier::Any => self.path(row, false)?.map(|ks| ks.iter().any(|k| has_key(&v, k))),
                    Quantifier::All => self.path(row, false)?.map(|ks| ks.iter().all(|k| has_key(&v, k))),
                })
            }
            Op::Concat => match (self.json(0, row)?, self.json(1, row)?) {
                (Some(a), Some(b)) => Out::Text(Some(jsonb(&concat(a, b)))),
                _ => Out::Text(None),
            },
            Op::Delete => {
                let Some(v) = self.json(0, row)? else { return Ok(Out::Text(None)) };
                let by_index = self.arrays.get(1).is_some_and(|a| a.data_type().is_integer());
                let Some(key) = self.text(1, row)? else { return Ok(Out::Text(None)) };
                let v = match (v, by_index) {
                    (Value::Object(fields), false) => Value::Object(fields.into_iter().filter(|(k, _)| *k != key).collect()),
                    (Value::Array(items), false) => Value::Array(items.into_iter().filter(|i| !matches!(i, Value::String(s) if *s == key)).collect()),
                    (Value::Array(mut items), true) => {
                        let i: i64 = key.parse().unwrap_or(i64::MAX);
                        let at = if i < 0 { items.len() as i64 + i } else { i };
                        if let Some(at) = usize::try_from(at).ok().filter(|at| *at < items.len()) {
                            items.remove(at);
                        }
                        Value::Array(items)
                    }
                    (v, _) => v,
                };
                Out::Text(Some(jsonb(&v)))
            }
            Op::Typeof => Out::Text(self.json(0, row)?.map(|v| type_name(&v).to_string())),
            Op::ArrayLength => match self.json(0, row)? {
                None => Out::Int(None),
                Some(Value::Array(items)) => Out::Int(Some(i32::try_from(items.len()).unwrap_or(i32::MAX))),
                Some(_) => return Err(not_array("get the length of")),
            },
            Op::Set => {
                let (Some(mut v), Some(path), Some(new)) = (self.json(0, row)?, self.path(row, false)?, self.json(2, row)?) else {
                    return Ok(Out::Text(None));
                };
                let create = match self.arrays.get(3) {
                    Some(a) if !a.is_null(row) => a.as_boolean_opt().is_none_or(|b| b.value(row)),
                    _ => true,
                };
                set(&mut v, &path, new, create);
                Out::Text(Some(jsonb(&v)))
            }
            Op::StripNulls => Out::Text(self.json(0, row)?.map(|v| self.written(&strip_nulls(v)))),
            Op::Pretty => Out::Text(self.json(0, row)?.map(|v| {
                let mut out = String::new();
                pretty(&v, 0, &mut out);
                out
            })),
            Op::BuildObject(kind) => {
                if self.arrays.len() % 2 != 0 {
                    return Err(DataFusionError::External(Box::new(Error::InvalidParameter(
                        "argument list must have even number of elements".into(),
                    ))));
                }
                let mut fields = Vec::with_capacity(self.arrays.len() / 2);
                for pair in (0..self.arrays.len()).step_by(2) {
                    let key = self.text(pair, row)?.ok_or_else(|| {
                        DataFusionError::External(Box::new(Error::InvalidParameter("null value not allowed for object key".into())))
                    })?;
                    fields.push((key, from_sql(&self.arrays[pair + 1], self.fields.get(pair + 1).map(AsRef::as_ref), row)?));
                }
                let v = Value::Object(fields);
                Out::Text(Some(match kind {
                    Kind::Json => text(&v, BUILD),
                    Kind::Jsonb => jsonb(&normalize(v)),
                }))
            }
            Op::BuildArray(kind) => {
                let items = (0..self.arrays.len())
                    .map(|i| from_sql(&self.arrays[i], self.fields.get(i).map(AsRef::as_ref), row))
                    .collect::<Result<Vec<_>>>()?;
                let v = Value::Array(items);
                Out::Text(Some(match kind {
                    Kind::Json => text(&v, BUILD),
                    Kind::Jsonb => jsonb(&normalize(v)),
                }))
            }
            Op::ToJson(kind) => {
                let Some(a) = self.arrays.first() else { return Ok(Out::Text(None)) };
                let v = from_sql(a, self.fields.first().map(AsRef::as_ref), row)?;
                if v == Value::Null {
                    return Ok(Out::Text(None));
                }
                Out::Text(Some(match kind {
                    Kind::Json => text(&v, COMPACT),
                    Kind::Jsonb => jsonb(&normalize(v)),
                }))
            }
            Op::AggFinish(kind) => {
                let Some(a) = self.arrays.first() else { return Ok(Out::Text(None)) };
                if a.is_null(row) {
                    return Ok(Out::Text(None));
                }
                let v = from_sql(a, self.fields.first().map(AsRef::as_ref), row)?;
                Out::Text(Some(match kind {
                    Kind::Json => text(&v, BUILD),
                    Kind::Jsonb => jsonb(&normalize(v)),
                }))
            }
            Op::ObjectAggFinish => {
                let (Some(keys), Some(values)) = (self.arrays.first(), self.arrays.get(1)) else { return Ok(Out::Text(None)) };
                if keys.is_null(row) || values.is_null(row) {
                    return Ok(Out::Text(None));
                }
                let (Value::Array(keys), Value::Array(values)) = (from_sql(keys, None, row)?, from_sql(values, self.fields.get(1).map(AsRef::as_ref), row)?) else {
                    return Ok(Out::Text(None));
                };
                let fields = keys
                    .into_iter()
                    .zip(values)
                    .map(|(k, v)| match k {
                        Value::String(k) | Value::Number(k) => Ok((k, v)),
                        _ => Err(DataFusionError::External(Box::new(Error::InvalidParameter("field name must not be null".into())))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Out::Text(Some(text(&Value::Object(fields), OBJECT_AGG)))
            }
            Op::Elements { text: as_text, kind } => match self.json(0, row)? {
                None => Out::List(None),
                Some(Value::Array(items)) => Out::List(Some(
                    items
                        .iter()
                        .map(|v| match v {
                            Value::Null if as_text => None,
                            Value::String(s) if as_text => Some(s.clone()),
                            v => Some(text(v, style_of(kind))),
                        })
                        .collect(),
                )),
                Some(_) => return Err(not_array("extract elements from")),
            },
            Op::ObjectKeys => match self.json(0, row)? {
                None => Out::List(None),
                Some(Value::Object(fields)) => Out::List(Some(fields.into_iter().map(|(k, _)| Some(k)).collect())),
                Some(_) => {
                    return Err(DataFusionError::External(Box::new(Error::InvalidParameter(
                        "cannot call jsonb_object_keys on a non-object".into(),
                    ))));
                }
            },
        })
    }
}

fn not_array(what: &str) -> DataFusionError {
    DataFusionError::External(Box::new(Error::InvalidParameter(format!("cannot {what} a non-array"))))
}

/// The JSON operators, planned when their left side is `json` or `jsonb`.
#[derive(Debug)]
struct JsonOperators;

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        let is_json = |e: &Expr| e.to_field(schema).ok().and_then(|(_, f)| kind_of(&f)).is_some();
        if !is_json(&expr.left) {
            return Ok(PlannerResult::Original(expr));
        }
        let name = match expr.op {
            BinaryOperator::Arrow => "json_get",
            BinaryOperator::LongArrow => "json_get_text",
            BinaryOperator::HashArrow => "json_get_path",
            BinaryOperator::HashLongArrow => "json_get_path_text",
            BinaryOperator::AtArrow => "jsonb_contains",
            BinaryOperator::Question => "jsonb_exists",
            BinaryOperator::QuestionPipe => "jsonb_exists_any",
            BinaryOperator::QuestionAnd => "jsonb_exists_all",
            BinaryOperator::StringConcat if is_json(&expr.right) => "jsonb_concat",
            BinaryOperator::Minus => "jsonb_delete",
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(function(name), vec![expr.left, expr.right]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonb(s: &str) -> String {
        text(&normalize(parse(s).unwrap()), JSONB)
    }

    #[test]
    fn jsonb_is_written_as_postgresql_writes_it() {
        assert_eq!(jsonb(r#"{"b":1,  "a" : 2, "aa": [1,2e2, {"x": null}], "a": 3}"#), r#"{"a": 3, "b": 1, "aa": [1, 200, {"x": null}]}"#);
        assert_eq!(jsonb(r#""t\"\u00e9\n""#), "\"t\\\"é\\n\"");
        assert_eq!(jsonb("1.50"), "1.50");
        assert!(parse("not json").is_err());
        assert!(parse("[1,]").is_err());
        assert!(parse(&"[".repeat(5000)).is_err());
    }

    #[test]
    fn containment_and_paths() {
        let v = parse(r#"{"a": [1, 2], "b": {"c": "d"}}"#).unwrap();
        assert!(contains(&v, &parse(r#"{"a": [1]}"#).unwrap()));
        assert!(!contains(&v, &parse(r#"{"a": [3]}"#).unwrap()));
        assert!(contains(&v, &parse(r#"{"b": {}}"#).unwrap()));
        let path: Vec<Step> = text_array("{a,-1}").into_iter().map(Step::Key).collect();
        assert_eq!(path.iter().try_fold(&v, |v, s| get(v, s)), Some(&Value::Number("2".into())));
        let mut pretty_text = String::new();
        pretty(&v, 0, &mut pretty_text);
        assert_eq!(pretty_text, "{\n    \"a\": [\n        1,\n        2\n    ],\n    \"b\": {\n        \"c\": \"d\"\n    }\n}");
    }
}
