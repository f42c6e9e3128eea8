//! Building statements as syntax trees, for the table functions that expand into SQL
//! (`historical_features`, `drift`): names are `Ident`s and values are literals, so nothing is
//! quoted by hand and nothing is parsed twice. What the user wrote (a spine query, a feature
//! view's source) is parsed once and put in place whole, so an error in it points at it.

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CaseWhen, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, Interval, Join, JoinConstraint, JoinOperator, ObjectName, Query, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, TableAlias, TableFactor, TableWithJoins, Value,
    WildcardAdditionalOptions,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::parse_query;
use crate::error::{Error, Result};

/// A name kept exactly as given (a column or alias we read from a schema or made up).
pub fn ident(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

/// `relation.name`.
pub fn column(relation: &str, name: &str) -> Expr {
    Expr::CompoundIdentifier(vec![ident(relation), ident(name)])
}

pub fn string(text: &str) -> Expr {
    Expr::value(Value::SingleQuotedString(text.to_string()))
}

pub fn boolean(b: bool) -> Expr {
    Expr::value(Value::Boolean(b))
}

/// `INTERVAL 'text'`.
pub fn interval(text: &str) -> Expr {
    Expr::Interval(Interval {
        value: Box::new(string(text)),
        leading_field: None,
        leading_precision: None,
        last_field: None,
        fractional_seconds_precision: None,
    })
}

/// A call of a function by its (unquoted, so case-folded) name.
pub fn call(name: &str, args: Vec<Expr>) -> Expr {
    call_with(name, args, vec![])
}

/// A call with clauses inside its parentheses (an aggregate's `ORDER BY`).
pub fn call_with(name: &str, args: Vec<Expr>, clauses: Vec<FunctionArgumentClause>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

pub fn binary(left: Expr, op: BinaryOperator, right: Expr) -> Expr {
    Expr::BinaryOp { left: Box::new(left), op, right: Box::new(right) }
}

/// The conjunction of `terms` (at least one).
pub fn and_all(terms: Vec<Expr>) -> Option<Expr> {
    terms.into_iter().reduce(|a, b| binary(a, BinaryOperator::And, b))
}

/// `CASE WHEN condition THEN result END`.
pub fn case_when(condition: Expr, result: Expr) -> Expr {
    Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: vec![CaseWhen { condition, result }],
        else_result: None,
    }
}

pub fn aliased(expr: Expr, alias: &str) -> SelectItem {
    SelectItem::ExprWithAlias { expr, alias: ident(alias) }
}

/// `relation.*`.
pub fn all_of(relation: &str) -> SelectItem {
    SelectItem::QualifiedWildcard(
        SelectItemQualifiedWildcardKind::ObjectName(ObjectName::from(vec![ident(relation)])),
        WildcardAdditionalOptions::default(),
    )
}

fn alias(name: &str) -> Option<TableAlias> {
    Some(TableAlias { explicit: true, name: ident(name), columns: vec![], at: None })
}

/// `(query) AS alias`.
pub fn derived(subquery: Box<Query>, name: &str) -> TableFactor {
    TableFactor::Derived { lateral: false, subquery, alias: alias(name), sample: None }
}

/// A table by name, optionally aliased.
pub fn table(name: ObjectName, as_name: Option<&str>) -> TableFactor {
    TableFactor::Table {
        name,
        alias: as_name.and_then(alias),
        args: None,
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_hints: vec![],
    }
}

/// `left ASOF JOIN relation MATCH_CONDITION (match_condition) ON on`.
pub fn asof_join(relation: TableFactor, match_condition: Expr, on: Expr) -> Join {
    Join { relation, global: false, join_operator: JoinOperator::AsOf { match_condition, constraint: JoinConstraint::On(on) } }
}

/// `SELECT projection FROM from`.
pub fn select(projection: Vec<SelectItem>, from: TableWithJoins) -> SetExpr {
    SetExpr::Select(Box::new(Select {
        select_token: AttachedToken::empty(),
        optimizer_hints: vec![],
        distinct: None,
        select_modifiers: None,
        top: None,
        top_before_distinct: false,
        projection,
        exclude: None,
        into: None,
        from: vec![from],
        lateral_views: vec![],
        prewhere: None,
        selection: None,
        connect_by: vec![],
        group_by: GroupByExpr::Expressions(vec![], vec![]),
        cluster_by: vec![],
        distribute_by: vec![],
        sort_by: vec![],
        having: None,
        named_window: vec![],
        qualify: None,
        window_before_qualify: false,
        value_table_mode: None,
        flavor: SelectFlavor::Standard,
    }))
}

/// A relation without joins.
pub fn from(relation: TableFactor) -> TableWithJoins {
    TableWithJoins { relation, joins: vec![] }
}

pub fn union_all(left: SetExpr, right: SetExpr) -> SetExpr {
    SetExpr::SetOperation { left: Box::new(left), op: SetOperator::Union, set_quantifier: SetQuantifier::All, right: Box::new(right) }
}

pub fn query(body: SetExpr) -> Box<Query> {
    Box::new(Query {
        with: None,
        body: Box::new(body),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    })
}

/// `SELECT * FROM relation`.
pub fn select_all(relation: TableFactor) -> Box<Query> {
    query(select(vec![SelectItem::Wildcard(WildcardAdditionalOptions::default())], from(relation)))
}

/// A table function's relation argument (a spine, a baseline): a query in quotes, a table
/// name in quotes, or a table named bare. As a query over it, parsed from what the user wrote.
pub fn relation_arg(e: &Expr) -> Option<Result<Box<Query>>> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(match parse_query(s) {
                Ok(q) => Ok(q),
                Err(_) => object_name(s).map(|name| select_all(table(name, None))),
            }),
            _ => None,
        },
        Expr::Identifier(i) => Some(Ok(select_all(table(ObjectName::from(vec![i.clone()]), None)))),
        Expr::CompoundIdentifier(parts) => Some(Ok(select_all(table(ObjectName::from(parts.clone()), None)))),
        _ => None,
    }
}

/// A table name as written (`t`, `s.t`, `"My T"`).
pub fn object_name(text: &str) -> Result<ObjectName> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text).map_err(|e| Error::Syntax(format!("{text}: {e}")))?;
    let name = parser.parse_object_name(false).map_err(|e| Error::Syntax(format!("\"{text}\" is neither a query nor a table name: {e}")))?;
    match parser.peek_token().token {
        datafusion::sql::sqlparser::tokenizer::Token::EOF => Ok(name),
        _ => Err(Error::Syntax(format!("\"{text}\" is neither a query nor a table name"))),
    }
}
