//! Statements DataFusion plans with a different meaning than PostgreSQL's, rewritten (on the
//! syntax tree, before planning) into ones it plans right, or refused.
//!
//! - `x > ALL (SELECT ...)` and the other ordering comparisons with `ANY`/`ALL` and a subquery
//!   returned no rows where PostgreSQL returns some. They become the same three-valued answer
//!   from the subquery's count, count of non-NULLs and minimum or maximum. `= ANY` and
//!   `<> ALL` over a subquery are `IN` and `NOT IN` (`subquery_membership`, which runs before
//!   datafusion-pg-catalog's rewrites would make them `array_has` over a subquery).
//! - `INTERSECT ALL` / `EXCEPT ALL` ignored multiplicities (DataFusion keeps every left row with a
//!   match). Numbering the copies of each row makes each copy distinct, so the distinct set
//!   operation keeps min(m, n) or max(m - n, 0) copies, as PostgreSQL does.
//! - `1.5::int` is a numeric literal cast in PostgreSQL, rounded half away from zero (2, and
//!   `2.5::int` is 3); DataFusion reads `2.5` as a float, which rounds half to even. A number
//!   literal cast to an integer type is rounded here, as PostgreSQL rounds it.
//! - `round(2.5)` rounds a numeric literal in PostgreSQL, half away from zero (3); DataFusion
//!   read a float and rounded half to even (2). A round of a number literal is computed here.
//! - `2.50::text` is `'2.50'` in PostgreSQL (a numeric keeps its scale); DataFusion read a float
//!   and wrote `2.5`. A number literal cast to text is the number as PostgreSQL prints it.
//! - `'abc'::varchar(2)` is `'ab'` in PostgreSQL (an explicit cast truncates); DataFusion kept
//!   the whole string.
//! - `ts AT TIME ZONE z` is `timezone(z, ts)` (`functions`), as in PostgreSQL.
//! - `substring(x FROM 'regex')` is the first match (or its first group): `regexp_match`.
//! - `SELECT generate_series(1, 3)` is three rows in PostgreSQL (a set-returning function in
//!   the select list); DataFusion's scalar `generate_series` gave one row holding a list. In a
//!   select list it is unnested.
//! - `FROM generate_series(1, 3)` names its column `generate_series` in PostgreSQL, or after the
//!   table alias when there is one (`generate_series(1, 3) AS g` has column `g`); DataFusion
//!   named it `value`. The alias is made explicit here. Over integer literals that fit in 32
//!   bits, in either place, its values are `integer`, as PostgreSQL resolves them.
//! - `SIMILAR TO` was matched as an unanchored regular expression, with `%` and `_` literal. A
//!   literal pattern is translated as PostgreSQL translates it; any other pattern is refused.
//!
//! And syntax PostgreSQL accepts that DataFusion refused, in the form DataFusion plans:
//! `EXISTS (...)` in a select list (a count), `(a, b) IN (SELECT ...)` in a WHERE clause,
//! `FETCH FIRST n ROWS ONLY` (`LIMIT`),
//! `LOCALTIMESTAMP`, `TIMESTAMP '2025-03-01 06:00'` without seconds, intervals with a
//! `hh:mm:ss` part, `unnest(a) AS x` naming its column `x`, and `unnest(ARRAY[...]) WITH
//! ORDINALITY` over a constant array.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, SelectItem, SetExpr, SetOperator,
    SetQuantifier, Statement, TableAlias, TableAliasColumnDef, TableFactor, UnaryOperator, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{Error, Result};

pub fn rewrite(stmt: &mut Statement) -> Result<()> {
    struct Rewriter;
    impl VisitorMut for Rewriter {
        type Break = Error;
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
            literal_casts(expr);
            round_literal(expr);
            number_text(expr);
            varchar_cast(expr);
            at_time_zone(expr);
            regex_substring(expr);
            temporal_text(expr);
            local_time(expr);
            json(expr);
            flow(quantified(expr).and_then(|()| similar_to(expr)))
        }
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                set_returning(&mut select.projection);
                exists_values(&mut select.projection);
                if let Some(selection) = &mut select.selection {
                    row_membership(selection);
                }
            }
            fetch_first(query);
            flow(set_operations(&mut query.body))
        }
        fn post_visit_table_factor(&mut self, table: &mut TableFactor) -> ControlFlow<Error> {
            series_column(table);
            unnest_column(table);
            flow(unnest_ordinality(table))
        }
    }
    fn flow(r: Result<()>) -> ControlFlow<Error> {
        r.err().map_or(ControlFlow::Continue(()), ControlFlow::Break)
    }
    match stmt.visit(&mut Rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn series_column(table: &mut TableFactor) {
    let TableFactor::Table { name, args: Some(args), alias, .. } = table else { return };
    let is_series = name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("generate_series"));
    if !is_series {
        return;
    }
    let mut alias = alias.take().unwrap_or_else(|| TableAlias {
        explicit: true,
        name: Ident::new("generate_series"),
        columns: vec![],
        at: None,
    });
    if alias.columns.is_empty() {
        alias.columns.push(TableAliasColumnDef { name: alias.name.clone(), data_type: None });
    }
    let integers = integer_arguments(args.args.iter().map(unnamed));
    let args = args.args.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let series = integers.then(|| parse_query(&format!("SELECT CAST(value AS INTEGER) AS value FROM {name}({args})")).ok()).flatten();
    match series {
        Some(subquery) => *table = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None },
        None => {
            if let TableFactor::Table { alias: slot, .. } = table {
                *slot = Some(alias);
            }
        }
    }
}

/// Whether every argument is an integer literal that fits in 32 bits: PostgreSQL then resolves
/// `generate_series(integer, integer)`, whose values are `integer` (DataFusion's are `bigint`).
fn integer_arguments<'a>(mut args: impl Iterator<Item = Option<&'a Expr>>) -> bool {
    fn literal(e: &Expr) -> Option<i64> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n.parse().ok(),
                _ => None,
            },
            Expr::UnaryOp { op: UnaryOperator::Minus, expr } => literal(expr).map(|n| -n),
            Expr::Nested(e) => literal(e),
            _ => None,
        }
    }
    args.all(|a| a.and_then(literal).is_some_and(|n| i32::try_from(n).is_ok()))
}

/// `x = ANY (SELECT ...)` is `x IN (SELECT ...)` and `x <> ALL (SELECT ...)` is `x NOT IN (...)`,
/// NULLs included.
pub fn subquery_membership(stmt: &mut Statement) {
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        let (all, left, op, right) = match e {
            Expr::AllOp { left, compare_op, right } => (true, left, compare_op, right),
            Expr::AnyOp { left, compare_op, right, .. } => (false, left, compare_op, right),
            _ => return ControlFlow::<()>::Continue(()),
        };
        if let (Expr::Subquery(sub), (false, BinaryOperator::Eq) | (true, BinaryOperator::NotEq)) = (right.as_ref(), (all, &*op)) {
            *e = Expr::InSubquery { expr: left.clone(), subquery: sub.clone(), negated: all };
        }
        ControlFlow::Continue(())
    });
}

/// An expression these rewrites write as text, parsed as PostgreSQL.
pub(crate) fn parse_expr(sql: &str) -> Result<Expr> {
    Ok(Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)?.parse_expr()?)
}

/// A query these rewrites write as text, parsed as PostgreSQL.
pub(crate) fn parse_query(sql: &str) -> Result<Box<Query>> {
    Ok(Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)?.parse_query()?)
}

/// A positional argument's expression (`None` for a named or `*` argument).
fn unnamed(a: &FunctionArg) -> Option<&Expr> {
    match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        _ => None,
    }
}

fn quantified(expr: &mut Expr) -> Result<()> {
    let (all, left, op, right) = match expr {
        Expr::AllOp { left, compare_op, right } => (true, left, compare_op, right),
        Expr::AnyOp { left, compare_op, right, .. } => (false, left, compare_op, right),
        _ => return Ok(()),
    };
    let Expr::Subquery(sub) = right.as_ref() else { return Ok(()) };
    // What a single row of the subquery, `y`, must satisfy for ALL to fail or ANY to hold,
    // stated over the subquery's least (`mn`) or greatest (`mx`) non-NULL value.
    let witness = match (all, &*op) {
        (true, BinaryOperator::Gt) => "NOT ({X} > {MX})",
        (true, BinaryOperator::GtEq) => "NOT ({X} >= {MX})",
        (true, BinaryOperator::Lt) => "NOT ({X} < {MN})",
        (true, BinaryOperator::LtEq) => "NOT ({X} <= {MN})",
        (true, BinaryOperator::Eq) => "NOT ({X} = {MN} AND {X} = {MX})",
        (false, BinaryOperator::Gt) => "{X} > {MN}",
        (false, BinaryOperator::GtEq) => "{X} >= {MN}",
        (false, BinaryOperator::Lt) => "{X} < {MX}",
        (false, BinaryOperator::LtEq) => "{X} <= {MX}",
        (false, BinaryOperator::NotEq) => "({X} <> {MN} OR {X} <> {MX})",
        _ => return Ok(()),
    };
    let one_column = matches!(sub.body.as_ref(), SetExpr::Select(s) if s.projection.len() == 1
        && !matches!(s.projection[0], SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)));
    if !one_column {
        return Err(Error::FeatureNotSupported("ANY or ALL over a subquery of other than one named column".into()));
    }
    let x = format!("({left})");
    let of = |agg: &str| format!("(SELECT {agg} FROM ({sub}) AS __quantified(v))");
    let witness = witness.replace("{MX}", &of("max(v)")).replace("{MN}", &of("min(v)")).replace("{X}", &x);
    let (count, non_null) = (of("count(*)"), of("count(v)"));
    let (empty, decided, otherwise) = if all { ("TRUE", "FALSE", "TRUE") } else { ("FALSE", "TRUE", "FALSE") };
    *expr = parse_expr(&format!(
        "CASE WHEN {count} = 0 THEN {empty} WHEN {x} IS NULL THEN NULL \
         WHEN {non_null} > 0 AND {witness} THEN {decided} WHEN {non_null} < {count} THEN NULL ELSE {otherwise} END"
    ))?;
    Ok(())
}

fn similar_to(expr: &mut Expr) -> Result<()> {
    let Expr::SimilarTo { negated, expr: subject, pattern, escape_char } = expr else { return Ok(()) };
    let Expr::Value(v) = pattern.as_ref() else {
        return Err(Error::FeatureNotSupported("SIMILAR TO with a pattern that is not a literal".into()));
    };
    let Value::SingleQuotedString(text) = &v.value else {
        return Err(Error::FeatureNotSupported("SIMILAR TO with a pattern that is not a literal".into()));
    };
    let escape = match escape_char.as_ref().map(|e| &e.value) {
        None => Some('\\'),
        Some(Value::SingleQuotedString(e)) => e.chars().next(),
        Some(_) => return Err(Error::FeatureNotSupported("SIMILAR TO with this ESCAPE".into())),
    };
    let mut regex = String::from("^(?:");
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if Some(c) == escape => match chars.next() {
                Some(next) => regex.push_str(&regex_literal(next)),
                None => return Err(Error::InvalidParameter("SIMILAR TO pattern must not end with the escape character".into())),
            },
            '%' => regex.push_str(".*"),
            '_' => regex.push('.'),
            '.' | '^' | '$' | '\\' => regex.push_str(&regex_literal(c)),
            c => regex.push(c),
        }
    }
    regex.push_str(")$");
    let op = if *negated { "!~" } else { "~" };
    *expr = parse_expr(&format!("({subject}) {op} '{}'", regex.replace('\'', "''")))?;
    Ok(())
}

fn regex_literal(c: char) -> String {
    if c.is_alphanumeric() || c == ' ' { c.to_string() } else { format!("\\{c}") }
}

fn set_operations(body: &mut SetExpr) -> Result<()> {
    let SetExpr::SetOperation { left, op, set_quantifier: SetQuantifier::All, right } = body else { return Ok(()) };
    if !matches!(op, SetOperator::Intersect | SetOperator::Except) {
        return Ok(());
    }
    let names = crate::sql::names::result_names(left).ok_or_else(|| {
        Error::FeatureNotSupported(format!("{op} ALL over SELECT *: name the columns of its first query"))
    })?;
    let cols: Vec<String> = (1..=names.len()).map(|i| format!("__c{i}")).collect();
    let cols = cols.join(", ");
    let side = |q: &SetExpr, alias: &str| {
        format!("SELECT {cols}, row_number() OVER (PARTITION BY {cols}) AS __copy FROM ({q}) AS {alias}({cols})")
    };
    let outer: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("__c{} AS \"{}\"", i + 1, n.replace('"', "\"\"")))
        .collect();
    let sql = format!("SELECT {} FROM ({} {op} {}) AS __copies", outer.join(", "), side(left, "__l"), side(right, "__r"));
    let query = Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql)?.parse_query()?;
    *body = SetExpr::Query(query);
    Ok(())
}

fn literal_casts(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::{DataType, UnaryOperator};
    let Expr::Cast { expr: inner, data_type, .. } = expr else { return };
    if !matches!(
        data_type,
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) | DataType::BigInt(_) | DataType::Int8(_)
            | DataType::SmallInt(_) | DataType::Int2(_)
    ) {
        return;
    }
    let mut target = inner.as_mut();
    while let Expr::Nested(e) | Expr::UnaryOp { op: UnaryOperator::Minus, expr: e } = target {
        target = e;
    }
    let Expr::Value(v) = target else { return };
    let Value::Number(n, _) = &mut v.value else { return };
    if !n.contains('.') || n.contains(['e', 'E']) {
        return;
    }
    let Ok(d) = n.parse::<rust_decimal::Decimal>() else { return };
    // Half away from zero on the magnitude; a minus sign outside keeps the symmetry.
    *n = d.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero).trunc().to_string();
}

/// A number literal under any parentheses and minus signs: its decimal value.
fn number_literal(expr: &Expr) -> Option<rust_decimal::Decimal> {
    use datafusion::sql::sqlparser::ast::UnaryOperator;
    match expr {
        Expr::Nested(e) => number_literal(e),
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => number_literal(expr).map(|d| -d),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) if !n.contains(['e', 'E']) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn round_literal(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let Expr::Function(f) = expr else { return };
    if !f.name.to_string().eq_ignore_ascii_case("round") {
        return;
    }
    let FunctionArguments::List(list) = &f.args else { return };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    if args.len() != list.args.len() || args.is_empty() || args.len() > 2 {
        return;
    }
    let Some(value) = number_literal(args[0]) else { return };
    let places = match args.get(1) {
        None => 0,
        Some(p) => match number_literal(p).and_then(|d| i32::try_from(d.mantissa()).ok().filter(|_| d.scale() == 0)) {
            Some(p) if (0..=28).contains(&p) => p as u32,
            _ => return,
        },
    };
    let rounded = value.round_dp_with_strategy(places, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    if let Ok(e) = parse_expr(&format!("({rounded})")) {
        *expr = e;
    }
}

fn number_text(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::DataType;
    let Expr::Cast { expr: inner, data_type, .. } = expr else { return };
    if !matches!(data_type, DataType::Text | DataType::Varchar(None) | DataType::String(None)) {
        return;
    }
    if let Some(n) = number_literal(inner) {
        **inner = Expr::value(Value::SingleQuotedString(n.to_string()));
    }
}

fn varchar_cast(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::{CharacterLength, DataType};
    let Expr::Cast { expr: inner, data_type, .. } = expr else { return };
    let (DataType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
    | DataType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. }))
    | DataType::CharVarying(Some(CharacterLength::IntegerLength { length, .. }))) = data_type
    else {
        return;
    };
    if let Ok(e) = parse_expr(&format!("left(CAST({inner} AS TEXT), {length})")) {
        **inner = e;
    }
}

fn at_time_zone(expr: &mut Expr) {
    let Expr::AtTimeZone { timestamp, time_zone } = expr else { return };
    if let Ok(e) = parse_expr(&format!("timezone({time_zone}, {timestamp})")) {
        *expr = e;
    }
}

fn regex_substring(expr: &mut Expr) {
    let Expr::Substring { expr: subject, substring_from: Some(from), substring_for: None, .. } = expr else { return };
    let Expr::Value(v) = from.as_ref() else { return };
    let Value::SingleQuotedString(pattern) = &v.value else { return };
    if let Ok(e) = parse_expr(&format!("(regexp_match({subject}, '{}'))[1]", pattern.replace('\'', "''"))) {
        *expr = e;
    }
}

fn set_returning(items: &mut [SelectItem]) {
    for item in items {
        let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else { continue };
        let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(e, |e| {
            if let Expr::Function(f) = e {
                if f.name.to_string().eq_ignore_ascii_case("generate_series") {
                    let integers = match &f.args {
                        FunctionArguments::List(list) => integer_arguments(list.args.iter().map(unnamed)),
                        _ => false,
                    };
                    let sql = if integers { format!("CAST(unnest({e}) AS INTEGER)") } else { format!("unnest({e})") };
                    if let Ok(unnested) = parse_expr(&sql) {
                        *e = unnested;
                    }
                    return ControlFlow::<()>::Break(());
                }
                let name = f.name.to_string().to_ascii_lowercase();
                if super::json::set_returning(&name) {
                    // Unnesting drops the elements' JSON type, which reading them again restores.
                    let sql = match name.as_str() {
                        "jsonb_array_elements" => format!("jsonb(unnest({e}))"),
                        "json_array_elements" => format!("json(unnest({e}))"),
                        _ => format!("unnest({e})"),
                    };
                    if let Ok(unnested) = parse_expr(&sql) {
                        *e = unnested;
                    }
                    return ControlFlow::<()>::Break(());
                }
            }
            ControlFlow::Continue(())
        });
    }
}

/// `x::json` and `x::jsonb` are the functions `json(x)` and `jsonb(x)` (`json`), which
/// DataFusion has no type for; `json_agg(x ORDER BY y)` and `jsonb_agg` are `array_agg`
/// finished as JSON, and `json_object_agg(k, v)` two of them.
fn json(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::{DataType, ObjectName};
    let sql = match expr {
        Expr::Cast { expr: inner, data_type: DataType::JSON, .. } => format!("json({inner})"),
        Expr::Cast { expr: inner, data_type: DataType::JSONB, .. } => format!("jsonb({inner})"),
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let finish = match name.as_str() {
                "json_agg" | "jsonb_agg" => format!("{name}_finish"),
                "json_object_agg" | "jsonb_object_agg" => "json_object_agg_finish".to_string(),
                _ => return,
            };
            let FunctionArguments::List(list) = &f.args else { return };
            let mut inner = f.clone();
            inner.name = ObjectName::from(vec![Ident::new("array_agg")]);
            if finish == "json_object_agg_finish" {
                let [key, value] = list.args.as_slice() else { return };
                format!("{finish}(array_agg({key}), array_agg({value}))")
            } else {
                format!("{finish}({inner})")
            }
        }
        _ => return,
    };
    if let Ok(e) = parse_expr(&sql) {
        *expr = e;
    }
}

/// `TIMESTAMP '2025-03-01 06:00'` (no seconds) and intervals with a `[-]hh:mm[:ss]` part
/// (`'3 days 04:05:06'`), which PostgreSQL reads and Arrow's parsers do not, written as they do.
fn temporal_text(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::DataType;
    let (text, data_type) = match expr {
        Expr::TypedString(t) => (&mut t.value.value, Some(&t.data_type)),
        Expr::Cast { expr: inner, data_type, .. } => match inner.as_mut() {
            Expr::Value(v) => (&mut v.value, Some(&*data_type)),
            _ => return,
        },
        Expr::Interval(i) if i.leading_field.is_none() => match i.value.as_mut() {
            Expr::Value(v) => (&mut v.value, None),
            _ => return,
        },
        _ => return,
    };
    let Value::SingleQuotedString(text) = text else { return };
    match data_type {
        Some(DataType::Timestamp(..) | DataType::TimestampNtz(_)) => {
            let Some((date, time)) = text.split_once([' ', 'T']) else { return };
            if time.matches(':').count() == 1 && time.chars().all(|c| c.is_ascii_digit() || c == ':') {
                *text = format!("{date} {time}:00");
            }
        }
        None | Some(DataType::Interval { .. }) => {
            if text.contains(':') {
                let words: Vec<String> = text.split_whitespace().map(clock_words).collect();
                *text = words.join(" ");
            }
        }
        _ => {}
    }
}

/// `-04:05:06` as `-4 hours -5 minutes -6 seconds`; any other word as it is.
fn clock_words(word: &str) -> String {
    let (sign, clock) = match word.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", word.strip_prefix('+').unwrap_or(word)),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let number = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(number) || parts[..parts.len() - 1].iter().any(|p| p.contains('.')) {
        return word.to_string();
    }
    ["hours", "minutes", "seconds"].iter().zip(&parts).map(|(unit, n)| format!("{sign}{n} {unit}")).collect::<Vec<_>>().join(" ")
}

/// `LOCALTIMESTAMP` and `LOCALTIME`: the session's time without its zone (DataFusion has no
/// such functions).
fn local_time(expr: &mut Expr) {
    let Expr::Function(f) = expr else { return };
    if !matches!(f.args, FunctionArguments::None) {
        return;
    }
    let sql = match f.name.to_string().to_ascii_lowercase().as_str() {
        "localtimestamp" => "CAST(now() AS TIMESTAMP)",
        "localtime" => "CAST(now() AS TIME)",
        _ => return,
    };
    if let Ok(e) = parse_expr(sql) {
        *expr = e;
    }
}

/// `EXISTS (SELECT ... FROM ... WHERE ...)` as a value in a select list, which DataFusion plans
/// only in a WHERE clause: the count of the subquery's rows is positive. The count keeps
/// a correlated subquery decorrelated as DataFusion decorrelates `(SELECT count(*) ...)`.
fn exists_values(items: &mut [SelectItem]) {
    for item in items {
        let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else { continue };
        let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(e, |e| {
            let Expr::Exists { subquery, negated } = e else { return ControlFlow::<()>::Continue(()) };
            let mut counted = subquery.as_ref().clone();
            let SetExpr::Select(select) = counted.body.as_mut() else { return ControlFlow::Continue(()) };
            let plain = crate::sql::subqueries::ungrouped(select)
                && counted.limit_clause.is_none()
                && counted.fetch.is_none()
                && counted.with.is_none();
            if !plain {
                return ControlFlow::Continue(());
            }
            let Ok(count) = parse_expr("count(*)") else { return ControlFlow::Continue(()) };
            select.projection = vec![SelectItem::UnnamedExpr(count)];
            counted.order_by = None;
            let not = if *negated { "NOT " } else { "" };
            if let Ok(value) = parse_expr(&format!("{not}(({counted}) > 0)")) {
                *e = value;
            }
            ControlFlow::Continue(())
        });
    }
}

/// `FETCH FIRST n ROWS ONLY` (the standard's LIMIT, which Looker and Tableau write) as `LIMIT n`.
fn fetch_first(query: &mut Query) {
    use datafusion::sql::sqlparser::ast::LimitClause;
    let Some(fetch) = query.fetch.take() else { return };
    let rows = fetch.quantity.clone().unwrap_or_else(|| Expr::value(Value::Number("1".into(), false)));
    match &mut query.limit_clause {
        _ if fetch.with_ties || fetch.percent => query.fetch = Some(fetch),
        None => query.limit_clause = Some(LimitClause::LimitOffset { limit: Some(rows), offset: None, limit_by: vec![] }),
        Some(LimitClause::LimitOffset { limit: limit @ None, .. }) => *limit = Some(rows),
        Some(_) => query.fetch = Some(fetch),
    }
}

/// `unnest(a) AS x` names its column `x`, as a function in FROM is named after its alias.
fn unnest_column(table: &mut TableFactor) {
    let TableFactor::UNNEST { alias: Some(alias), array_exprs, with_ordinality: false, .. } = table else { return };
    if alias.columns.is_empty() && array_exprs.len() == 1 {
        alias.columns.push(TableAliasColumnDef { name: alias.name.clone(), data_type: None });
    }
}

/// `unnest(ARRAY[...]) WITH ORDINALITY AS t(x, n)` numbers the elements from 1, in order. Only
/// over an array that refers to no column: a LATERAL reference is not planned here.
fn unnest_ordinality(table: &mut TableFactor) -> Result<()> {
    let TableFactor::UNNEST { alias, array_exprs, with_ordinality: true, with_offset: false, .. } = table else { return Ok(()) };
    let [array] = array_exprs.as_slice() else { return Ok(()) };
    let mut refers = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(array, |e| {
        refers |= matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Subquery(_));
        ControlFlow::<()>::Continue(())
    });
    if refers {
        return Ok(());
    }
    let alias = alias.take().unwrap_or_else(|| TableAlias { explicit: true, name: Ident::new("unnest"), columns: vec![], at: None });
    let sql = format!("SELECT __element, row_number() OVER () AS __ordinality FROM unnest({array}) AS __unnest(__element)");
    let subquery = parse_query(&sql)?;
    let mut alias = alias;
    if alias.columns.is_empty() {
        alias.columns = vec![
            TableAliasColumnDef { name: alias.name.clone(), data_type: None },
            TableAliasColumnDef { name: Ident::new("ordinality"), data_type: None },
        ];
    }
    *table = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None };
    Ok(())
}

/// `(a, b) IN (SELECT x, y ...)` in a WHERE clause, which DataFusion refused ("the subquery
/// should only return one column"), as `EXISTS (... WHERE x = a AND y = b)`. Only where the
/// IN is one of the WHERE clause's ANDed conditions: there its NULL (no match among rows with
/// NULLs) and false both drop the row, so EXISTS answers the same. `NOT IN` is left alone.
fn row_membership(selection: &mut Expr) {
    match selection {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            row_membership(left);
            row_membership(right);
        }
        Expr::Nested(e) => row_membership(e),
        Expr::InSubquery { expr, subquery, negated: false } => {
            let Expr::Tuple(items) = expr.as_ref() else { return };
            let Some(names) = crate::sql::names::result_names(&subquery.body) else { return };
            if names.len() != items.len() {
                return;
            }
            let columns: Vec<String> = (0..items.len()).map(|i| format!("__in_{i}")).collect();
            let matches: Vec<String> = items.iter().zip(&columns).map(|(item, c)| format!("__in.{c} = ({item})")).collect();
            let sql = format!(
                "EXISTS (SELECT 1 FROM ({subquery}) AS __in({}) WHERE {})",
                columns.join(", "),
                matches.join(" AND ")
            );
            if let Ok(e) = parse_expr(&sql) {
                *selection = e;
            }
        }
        _ => {}
    }
}
