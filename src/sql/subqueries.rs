//! Scalar subqueries DataFusion cannot decorrelate, rewritten into ones it can.
//!
//! DataFusion decorrelates a correlated scalar subquery only when it aggregates; PostgreSQL's
//! everyday "latest row of each" form, `(SELECT x FROM o WHERE o.k = t.k ORDER BY ts DESC
//! LIMIT 1)`, failed to plan. With one selected expression, LIMIT 1 and no OFFSET, grouping,
//! DISTINCT or aggregate, that subquery means `first_value(x ORDER BY ts DESC)` over the same
//! rows: the first row's value, or NULL when no row matches (ties are PostgreSQL's arbitrary
//! pick either way). Without a LIMIT, the same subquery whose one selected expression calls no
//! function (a lookup: `(SELECT c.name FROM c WHERE c.id = o.cid)`) is
//! `scalar_subquery_value(array_agg(x))`: NULL for no row, the value for one, and PostgreSQL's
//! 21000 for more. Anything else is left as written.
//!
//! `JOIN LATERAL (SELECT ... FROM o WHERE o.k = t.k ... ORDER BY ... LIMIT n) x ON true` (also
//! `CROSS JOIN LATERAL`, `LEFT JOIN LATERAL` and `, LATERAL`), the top n rows of each, failed to
//! plan too. When the subquery reads one table, correlates only by equalities of its columns
//! with outer ones, and selects no function, it is the same join over numbered rows:
//! `row_number() OVER (PARTITION BY o.k ORDER BY ...) <= n`, joined on `o.k = t.k`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArgumentClause, GroupByExpr, JoinConstraint, JoinOperator,
    LimitClause, OrderByKind, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
};

use super::build;

/// Rewrites every `ORDER BY ... LIMIT 1` scalar subquery of one expression in `stmt`, every
/// lookup scalar subquery, and every top-n LATERAL join.
pub fn rewrite(stmt: &mut Statement) {
    struct Lateral;
    impl ast::VisitorMut for Lateral {
        type Break = ();
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            lateral_top_n(query);
            ControlFlow::Continue(())
        }
    }
    let _ = ast::VisitMut::visit(stmt, &mut Lateral);
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Subquery(query) = e {
            first_value(query);
        }
        ControlFlow::<()>::Continue(())
    });
}

fn lateral_top_n(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    // The join adds key columns, which a `*` would show.
    if select.projection.iter().any(|i| matches!(i, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..))) {
        return;
    }
    // `FROM t, LATERAL (...) x` is `FROM t CROSS JOIN LATERAL (...) x`.
    if select.from.len() == 2
        && select.from[1].joins.is_empty()
        && matches!(select.from[1].relation, TableFactor::Derived { lateral: true, .. })
    {
        if let Some(lateral) = select.from.pop() {
            select.from[0].joins.push(ast::Join {
                relation: lateral.relation,
                global: false,
                join_operator: JoinOperator::CrossJoin(JoinConstraint::None),
            });
        }
    }
    for from in &mut select.from {
        for join in &mut from.joins {
            let (left, on) = match &join.join_operator {
                JoinOperator::CrossJoin(JoinConstraint::None) => (false, None),
                JoinOperator::Join(JoinConstraint::On(on)) | JoinOperator::Inner(JoinConstraint::On(on)) => (false, Some(on)),
                JoinOperator::Left(JoinConstraint::On(on)) | JoinOperator::LeftOuter(JoinConstraint::On(on)) => (true, Some(on)),
                _ => continue,
            };
            let TableFactor::Derived { lateral: true, subquery, alias: Some(alias), .. } = &join.relation else { continue };
            if !alias.columns.is_empty() {
                continue;
            }
            let Some((numbered, outer)) = top_n(subquery) else { continue };
            let mut condition: Vec<String> =
                outer.iter().enumerate().map(|(i, o)| format!("{}.__lateral_key{i} = {o}", alias.name)).collect();
            if let Some(on) = on.filter(|on| !matches!(on, Expr::Value(v) if v.value == Value::Boolean(true))) {
                condition.push(format!("({on})"));
            }
            use crate::sql::semantics::rewrites::{parse_expr, parse_query};
            let (Ok(subquery), Ok(condition)) = (parse_query(&numbered), parse_expr(&condition.join(" AND "))) else {
                continue;
            };
            let alias = alias.clone();
            join.relation = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None };
            let constraint = JoinConstraint::On(condition);
            join.join_operator = if left { JoinOperator::LeftOuter(constraint) } else { JoinOperator::Inner(constraint) };
        }
    }
}

/// A LATERAL subquery's top-n form over numbered rows, and the outer expressions its keys
/// equal; `None` unless it has that shape.
fn top_n(query: &Query) -> Option<(String, Vec<String>)> {
    let Some(LimitClause::LimitOffset { limit: Some(Expr::Value(n)), offset: None, limit_by }) = &query.limit_clause else { return None };
    let Value::Number(n, _) = &n.value else { return None };
    if !limit_by.is_empty() || query.fetch.is_some() || query.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    if !ungrouped(select) || select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, alias, args: None, .. } = &select.from[0].relation else { return None };
    let inner = match alias {
        Some(a) if a.columns.is_empty() => a.name.value.clone(),
        None => name.0.last()?.as_ident()?.value.clone(),
        Some(_) => return None,
    };
    // Whether an expression reads only the subquery's table (qualified by it, or unqualified).
    let own = |e: &Expr| {
        calls_nothing(e)
            && ast::visit_expressions(e, |e| match e {
                Expr::CompoundIdentifier(parts) if parts.len() != 2 || parts[0].value != inner => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            })
            .is_continue()
    };
    let projection: Vec<String> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } if own(e) => Some(item.to_string()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let mut conjuncts = vec![];
    let mut stack: Vec<&Expr> = select.selection.iter().collect();
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp { left, op: ast::BinaryOperator::And, right } => stack.extend([left.as_ref(), right.as_ref()]),
            Expr::Nested(e) => stack.push(e),
            e => conjuncts.push(e),
        }
    }
    let (mut keys, mut outer, mut rest) = (vec![], vec![], vec![]);
    let column_of = |e: &Expr| matches!(e, Expr::CompoundIdentifier(p) if p.len() == 2 && p[0].value == inner);
    let outer_column = |e: &Expr| matches!(e, Expr::CompoundIdentifier(p) if p.len() >= 2 && p[p.len() - 2].value != inner);
    for c in conjuncts.into_iter().rev() {
        match c {
            Expr::BinaryOp { left, op: ast::BinaryOperator::Eq, right } if column_of(left) && outer_column(right) => {
                keys.push(left.to_string());
                outer.push(right.to_string());
            }
            Expr::BinaryOp { left, op: ast::BinaryOperator::Eq, right } if outer_column(left) && column_of(right) => {
                keys.push(right.to_string());
                outer.push(left.to_string());
            }
            c if own(c) => rest.push(format!("({c})")),
            _ => return None,
        }
    }
    if keys.is_empty() {
        return None;
    }
    let order = match &query.order_by {
        None => String::new(),
        Some(o) => match &o.kind {
            OrderByKind::Expressions(exprs) if exprs.iter().all(|e| own(&e.expr)) => {
                format!(" ORDER BY {}", exprs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
            }
            _ => return None,
        },
    };
    let table = select.from[0].relation.to_string();
    let key_columns: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k} AS __lateral_key{i}")).collect();
    let filter = if rest.is_empty() { String::new() } else { format!(" WHERE {}", rest.join(" AND ")) };
    let sql = format!(
        "SELECT {}, {} FROM (SELECT *, row_number() OVER (PARTITION BY {}{order}) AS __lateral_row FROM {table}{filter}) AS {inner} \
         WHERE __lateral_row <= {n}",
        projection.join(", "),
        key_columns.join(", "),
        keys.join(", "),
    );
    Some((sql, outer))
}

fn first_value(query: &mut Query) {
    let limit_one = matches!(
        &query.limit_clause,
        Some(LimitClause::LimitOffset { limit: Some(Expr::Value(v)), offset: None, limit_by })
            if limit_by.is_empty() && matches!(&v.value, Value::Number(n, _) if n == "1")
    );
    if !limit_one {
        single_value(query);
        return;
    }
    if query.fetch.is_some() || query.with.is_some() {
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    if !ungrouped(select) || select.projection.len() != 1 {
        return;
    }
    let expr = match &mut select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return,
    };
    // An aggregate would already be one row; a window function would change meaning.
    if matches!(expr, Expr::Function(_)) {
        return;
    }
    let order = match query.order_by.take() {
        Some(o) => match o.kind {
            OrderByKind::Expressions(exprs) => exprs,
            OrderByKind::All(_) => return,
        },
        None => vec![],
    };
    let value = std::mem::replace(expr, Expr::value(Value::Null));
    let mut clauses = vec![];
    if !order.is_empty() {
        clauses.push(FunctionArgumentClause::OrderBy(order));
    }
    *expr = build::call_with("first_value", vec![value], clauses);
    query.limit_clause = None;
}

fn single_value(query: &mut Query) {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.with.is_some() || query.order_by.is_some() {
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    if !ungrouped(select) || select.from.is_empty() || select.projection.len() != 1 {
        return;
    }
    let expr = match &mut select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return,
    };
    if !calls_nothing(expr) {
        return;
    }
    let value = std::mem::replace(expr, Expr::value(Value::Null));
    *expr = build::call("scalar_subquery_value", vec![build::call("array_agg", vec![value])]);
}

/// No DISTINCT, grouping (`GROUP BY ALL` included) or named window: one output row per row
/// read.
pub(crate) fn ungrouped(select: &ast::Select) -> bool {
    select.distinct.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty())
        && select.having.is_none()
        && select.named_window.is_empty()
}

/// Whether an expression calls no function (any may be an aggregate or a window) and holds no
/// subquery.
fn calls_nothing(e: &Expr) -> bool {
    ast::visit_expressions(e, |e| match e {
        Expr::Function(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_continue()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn latest_row_subqueries_become_first_value_and_others_stay() {
        assert_eq!(
            rewritten("SELECT (SELECT amt FROM o WHERE o.cid = c.id ORDER BY ts DESC LIMIT 1) FROM c"),
            "SELECT (SELECT first_value(amt ORDER BY ts DESC) FROM o WHERE o.cid = c.id) FROM c"
        );
        assert_eq!(
            rewritten("SELECT (SELECT o.amt * 2 FROM o WHERE o.cid = c.id) FROM c"),
            "SELECT (SELECT scalar_subquery_value(array_agg(o.amt * 2)) FROM o WHERE o.cid = c.id) FROM c"
        );
        for kept in [
            "SELECT (SELECT amt FROM o WHERE o.cid = c.id ORDER BY ts DESC LIMIT 2) FROM c",
            "SELECT (SELECT amt FROM o ORDER BY ts LIMIT 1 OFFSET 1) FROM c",
            "SELECT (SELECT max(amt) FROM o WHERE o.cid = c.id LIMIT 1) FROM c",
            "SELECT (SELECT DISTINCT amt FROM o WHERE o.cid = c.id LIMIT 1) FROM c",
            "SELECT (SELECT amt, ts FROM o LIMIT 1) FROM c",
            "SELECT (SELECT max(amt) + 1 FROM o WHERE o.cid = c.id) FROM c",
            "SELECT (SELECT 1) FROM c",
        ] {
            assert_eq!(rewritten(kept), kept);
        }
    }
}
