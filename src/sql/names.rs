//! Result column names as PostgreSQL gives them.
//!
//! DataFusion names an unaliased select item after its whole expression (`count(*)`,
//! `sum(orders.amount)`, `CAST(ordered_at AS DATE)`); PostgreSQL names it by `FigureColname`
//! (parser/parse_target.c): a function is named after the function (`count`), a cast after its
//! operand's column (`ordered_at`) or else the type (`int4`), `CASE` after its `ELSE` column or
//! `case`, a scalar subquery after its own column, and anything else `?column?`. Clients read
//! these names (psql's headers, a BI tool's field list, pandas' columns, `SELECT t.count FROM
//! (...) t`), so every select item without an alias gets PostgreSQL's name as an alias here,
//! before planning.
//!
//! PostgreSQL allows two result columns of one name (`SELECT count(*), count(x)` is `count`,
//! `count`); DataFusion requires names unique within a projection. A repeated name is given a
//! hidden suffix after [`HIDDEN`], which [`shown`] removes where names leave the server.
//!
//! Owns: aliases of select items. Must not: change what an expression computes.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, ArrayElemTypeDef, DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement, TimezoneInfo,
    TrimWhereField, Value, VisitMut, VisitorMut,
};

/// Separates a repeated column name from the suffix that keeps it unique inside the engine.
pub const HIDDEN: char = '\u{1f}';

/// The name a client sees for a result column.
pub fn shown(name: &str) -> &str {
    name.split(HIDDEN).next().unwrap_or(name)
}

/// Gives every unaliased select item of `stmt`, at every level, PostgreSQL's name for it.
pub fn name_columns(stmt: &mut Statement) {
    struct Namer;
    impl VisitorMut for Namer {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            name_set_expr(&mut query.body);
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Namer);
}

fn name_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => name_items(&mut select.projection),
        SetExpr::SetOperation { left, right, .. } => {
            name_set_expr(left);
            name_set_expr(right);
        }
        // A parenthesised query is a `Query` of its own, which the visitor reaches.
        _ => {}
    }
}

fn name_items(items: &mut [SelectItem]) {
    let mut taken = HashSet::new();
    for (position, item) in items.iter_mut().enumerate() {
        match item {
            SelectItem::UnnamedExpr(expr) => {
                let name = figure(expr).map_or_else(|| "?column?".to_string(), |(n, _)| n);
                let alias = unique(name, position, &mut taken);
                // A column reference keeps DataFusion's name, which is already the column's (and
                // keeps its qualifier, so `a.id, b.id` stay apart), unless it repeats a name
                // (`SELECT id, id`), which PostgreSQL allows and DataFusion does not.
                if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) && !alias.contains(HIDDEN) {
                    continue;
                }
                let expr = std::mem::replace(expr, Expr::value(Value::Null));
                *item = SelectItem::ExprWithAlias { expr, alias: Ident::with_quote('"', alias) };
            }
            SelectItem::ExprWithAlias { alias, .. } => {
                let name = unique(normalize(alias), position, &mut taken);
                if name != normalize(alias) {
                    *alias = Ident::with_quote('"', name);
                }
            }
            _ => {}
        }
    }
}

fn unique(name: String, position: usize, taken: &mut HashSet<String>) -> String {
    let name = if taken.contains(&name) { format!("{name}{HIDDEN}{position}") } else { name };
    taken.insert(name.clone());
    name
}

fn normalize(i: &Ident) -> String {
    if i.quote_style.is_some() { i.value.clone() } else { i.value.to_lowercase() }
}

/// PostgreSQL's `FigureColnameInternal`: a name and its strength (2 for a column, function or
/// the like; 1 for a type or `case`, which an enclosing cast or `CASE` may override).
fn figure(expr: &Expr) -> Option<(String, u8)> {
    let named = |n: &str| Some((n.to_string(), 2));
    match expr {
        Expr::Identifier(i) => Some((normalize(i), 2)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| (normalize(i), 2)),
        Expr::CompoundFieldAccess { root, access_chain } => {
            let field = access_chain.iter().rev().find_map(|a| match a {
                AccessExpr::Dot(Expr::Identifier(i)) => Some(normalize(i)),
                _ => None,
            });
            field.map(|f| (f, 2)).or_else(|| figure(root))
        }
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(|i| (normalize(i), 2)),
        Expr::Cast { expr, data_type, .. } => match figure(expr) {
            Some((n, 2)) => Some((n, 2)),
            _ => Some((type_name(data_type), 1)),
        },
        Expr::TypedString(t) => Some((type_name(&t.data_type), 1)),
        Expr::Interval(_) => Some(("interval".into(), 1)),
        Expr::Nested(e) | Expr::Collate { expr: e, .. } => figure(e),
        Expr::Case { else_result, .. } => match else_result.as_deref().and_then(figure) {
            Some((n, 2)) => Some((n, 2)),
            _ => Some(("case".into(), 1)),
        },
        Expr::Subquery(q) => first_column(q).map(|n| (n, 2)),
        Expr::Exists { negated: false, .. } => named("exists"),
        Expr::Array(_) => named("array"),
        Expr::Tuple(_) => named("row"),
        Expr::AtTimeZone { .. } => named("timezone"),
        Expr::Extract { .. } => named("extract"),
        Expr::Ceil { .. } => named("ceil"),
        Expr::Floor { .. } => named("floor"),
        Expr::Position { .. } => named("position"),
        Expr::Substring { shorthand: true, .. } => named("substr"),
        Expr::Substring { .. } => named("substring"),
        Expr::Overlay { .. } => named("overlay"),
        Expr::Trim { trim_where, .. } => named(match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }),
        _ => None,
    }
}

/// The name of a subquery's first column, as PostgreSQL names the subquery's own target list.
fn first_column(query: &Query) -> Option<String> {
    result_names(&query.body)?.into_iter().next()
}

/// PostgreSQL's names for a query's result columns (those of its first SELECT); `None` when a
/// wildcard hides some of them.
pub fn result_names(body: &SetExpr) -> Option<Vec<String>> {
    match body {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(normalize(alias)),
                SelectItem::UnnamedExpr(e) => Some(figure(e).map_or_else(|| "?column?".into(), |(n, _)| n)),
                _ => None,
            })
            .collect(),
        SetExpr::SetOperation { left, .. } => result_names(left),
        SetExpr::Query(q) => result_names(&q.body),
        SetExpr::Values(v) => v.rows.first().map(|r| (1..=r.len()).map(|i| format!("column{i}")).collect()),
        _ => None,
    }
}

/// The last part of a type's name as PostgreSQL's grammar records it (`int` is `int4`).
fn type_name(t: &DataType) -> String {
    let name = match t {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4",
        DataType::BigInt(_) | DataType::Int8(_) => "int8",
        DataType::SmallInt(_) | DataType::Int2(_) => "int2",
        DataType::Real | DataType::Float4 => "float4",
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 | DataType::Float(_) => "float8",
        DataType::Bool | DataType::Boolean => "bool",
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => "numeric",
        DataType::Text => "text",
        DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::CharVarying(_) => "varchar",
        DataType::Char(_) | DataType::Character(_) => "bpchar",
        DataType::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => "timestamptz",
        DataType::Timestamp(..) => "timestamp",
        DataType::Time(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => "timetz",
        DataType::Time(..) => "time",
        DataType::Date => "date",
        DataType::Interval { .. } => "interval",
        DataType::JSON => "json",
        DataType::JSONB => "jsonb",
        DataType::Bytea => "bytea",
        DataType::Uuid => "uuid",
        DataType::Regclass => "regclass",
        DataType::Bit(_) => "bit",
        DataType::Array(
            ArrayElemTypeDef::AngleBracket(inner) | ArrayElemTypeDef::SquareBracket(inner, _) | ArrayElemTypeDef::Parenthesis(inner),
        ) => return type_name(inner),
        DataType::Custom(name, _) => {
            return name.0.last().and_then(|p| p.as_ident()).map_or_else(|| name.to_string(), normalize);
        }
        other => {
            let text = other.to_string().to_lowercase();
            return text.split('(').next().unwrap_or(&text).trim().to_string();
        }
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn named(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        name_columns(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn items_get_postgresql_names_and_repeats_stay_unique() {
        assert_eq!(
            named("SELECT count(*), sum(a), a::date, '5'::int, 1 + 1, o.id FROM o"),
            "SELECT count(*) AS \"count\", sum(a) AS \"sum\", a::DATE AS \"a\", '5'::INT AS \"int4\", 1 + 1 AS \"?column?\", o.id FROM o"
        );
        assert_eq!(
            named("SELECT CASE WHEN x THEN 1 END, (SELECT max(b) FROM t), true, count(x) FROM o"),
            "SELECT CASE WHEN x THEN 1 END AS \"case\", (SELECT max(b) AS \"max\" FROM t) AS \"max\", true AS \"?column?\", count(x) AS \"count\" FROM o"
        );
        let twice = named("SELECT count(*), count(x) FROM o");
        assert!(twice.contains(&format!("AS \"count{HIDDEN}1\"")), "{twice}");
        assert_eq!(shown(&format!("count{HIDDEN}1")), "count");
    }
}
