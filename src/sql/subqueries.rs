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

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArgumentClause, FunctionArgumentList, FunctionArguments, GroupByExpr, LimitClause, OrderByKind,
    Query, SelectItem, SetExpr, Statement, Value,
};

/// Rewrites every `ORDER BY ... LIMIT 1` scalar subquery of one expression in `stmt`.
pub fn rewrite(stmt: &mut Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Subquery(query) = e {
            first_value(query);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
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
    let plain = select.distinct.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && select.having.is_none()
        && select.projection.len() == 1;
    if !plain {
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
    *expr = Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new("first_value")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(value))],
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    });
    query.limit_clause = None;
}

fn single_value(query: &mut Query) {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.with.is_some() || query.order_by.is_some() {
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    let plain = select.distinct.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && select.having.is_none()
        && select.named_window.is_empty()
        && !select.from.is_empty()
        && select.projection.len() == 1;
    if !plain {
        return;
    }
    let expr = match &mut select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return,
    };
    // Any function may be an aggregate (which makes the subquery one row already) or a window.
    let calls = ast::visit_expressions(&*expr, |e| match e {
        Expr::Function(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => std::ops::ControlFlow::Break(()),
        _ => std::ops::ControlFlow::Continue(()),
    });
    if calls.is_break() {
        return;
    }
    let value = std::mem::replace(expr, Expr::value(Value::Null));
    let call = |name: &str, arg: Expr| {
        Expr::Function(ast::Function {
            name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))],
                clauses: vec![],
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: vec![],
        })
    };
    *expr = call("scalar_subquery_value", call("array_agg", value));
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
