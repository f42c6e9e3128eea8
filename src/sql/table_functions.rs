//! Table functions that hindsight expands into SQL before planning (`historical_features`,
//! `drift`): finding their calls in a statement, reading their arguments, and putting the
//! expanded query in each call's place. An expansion is a syntax tree of plain SQL
//! (`sql::build`), so it plans, pins versions and time-travels like anything a user could have
//! written.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, ObjectNamePart, Query, Statement, TableAlias, TableFactor, Value, ValueWithSpan, Visit,
    VisitMut, Visitor, VisitorMut,
};


/// The arguments of `FROM name(...)` when the table factor calls the function `name`.
pub fn args<'a>(f: &'a TableFactor, name: &str) -> Option<&'a Vec<FunctionArg>> {
    match f {
        TableFactor::Table { name: n, args: Some(args), .. } => match n.0.last() {
            Some(ObjectNamePart::Identifier(i)) if i.value.eq_ignore_ascii_case(name) => Some(&args.args),
            _ => None,
        },
        _ => None,
    }
}

/// The argument lists of every call of `name` in the statement, in visiting order.
pub fn calls(stmt: &Statement, name: &str) -> Vec<Vec<FunctionArg>> {
    struct Calls<'a>(&'a str, Vec<Vec<FunctionArg>>);
    impl Visitor for Calls<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
            if let Some(a) = args(f, self.0) {
                self.1.push(a.clone());
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Calls(name, Vec::new());
    let _ = stmt.visit(&mut c);
    c.1
}

/// Puts the expansions in place of the calls of `name`, in the order `calls` found them; a call
/// without an alias is aliased by the function's name.
pub fn replace(stmt: &mut Statement, name: &str, derived: Vec<Box<Query>>) {
    struct Replace<'a>(&'a str, std::vec::IntoIter<Box<Query>>);
    impl VisitorMut for Replace<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            if args(f, self.0).is_some() {
                let alias = match f {
                    TableFactor::Table { alias, .. } => alias.take(),
                    _ => None,
                };
                if let Some(subquery) = self.1.next() {
                    *f = TableFactor::Derived {
                        lateral: false,
                        subquery,
                        sample: None,
                        alias: Some(alias.unwrap_or_else(|| TableAlias { name: self.0.into(), columns: vec![], explicit: true, at: None })),
                    };
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Replace(name, derived.into_iter()));
}

/// The text of a single-quoted string argument.
pub fn string_arg(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(s), .. }) => Some(s),
        _ => None,
    }
}
