//! Statements DataFusion plans with a different meaning than PostgreSQL's, rewritten (on the
//! syntax tree, before planning) into ones it plans right, or refused.
//!
//! - `x > ALL (SELECT ...)` and the other ordering comparisons with `ANY`/`ALL` and a subquery
//!   returned no rows where PostgreSQL returns some. They become the same three-valued answer
//!   from the subquery's count, count of non-NULLs and minimum or maximum. (`= ANY` and
//!   `<> ALL`, which DataFusion plans as IN and NOT IN, are left to it.)
//! - `INTERSECT ALL` / `EXCEPT ALL` ignored multiplicities (DataFusion keeps every left row with a
//!   match). Numbering the copies of each row makes each copy distinct, so the distinct set
//!   operation keeps min(m, n) or max(m - n, 0) copies, as PostgreSQL does.
//! - `1.5::int` is a numeric literal cast in PostgreSQL, rounded half away from zero (2, and
//!   `2.5::int` is 3); DataFusion reads `2.5` as a float, which rounds half to even. A number
//!   literal cast to an integer type is rounded here, as PostgreSQL rounds it.
//! - `substring(x FROM 'regex')` is the first match (or its first group): `regexp_match`.
//! - `SELECT generate_series(1, 3)` is three rows in PostgreSQL (a set-returning function in
//!   the select list); DataFusion's scalar `generate_series` gave one row holding a list. In a
//!   select list it is unnested.
//! - `SIMILAR TO` was matched as an unanchored regular expression, with `%` and `_` literal. A
//!   literal pattern is translated as PostgreSQL translates it; any other pattern is refused.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SelectItem, SetExpr, SetOperator, SetQuantifier, Statement, Value, VisitMut, VisitorMut,
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
            regex_substring(expr);
            flow(quantified(expr).and_then(|()| similar_to(expr)))
        }
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                set_returning(&mut select.projection);
            }
            flow(set_operations(&mut query.body))
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

fn parse_expr(sql: &str) -> Result<Expr> {
    Ok(Parser::new(&PostgreSqlDialect {}).try_with_sql(sql)?.parse_expr()?)
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
                    if let Ok(unnested) = parse_expr(&format!("unnest({e})")) {
                        *e = unnested;
                    }
                    return ControlFlow::<()>::Break(());
                }
            }
            ControlFlow::Continue(())
        });
    }
}
