//! AST rewrites for time travel: `t VERSION AS OF 12` and `t TIMESTAMP AS OF <expr>` become
//! references to the table names `t@v12` and `t@20250601000000000` (Delta's own spellings), which
//! the catalog opens at that version. DataFusion's planner ignores table versions, so this is how
//! a version reaches it; the alias keeps `t.col` working.
//!
//! Also the pinning behind datasets: every warehouse table a query reads without a version gets
//! `VERSION AS OF <n>` from a `{table: version}` map.
//!
//! Must not: open tables or evaluate expressions (the session folds timestamps and passes the
//! results back in).

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, Statement, TableAlias, TableFactor, TableVersion, Value, ValueWithSpan,
    Visit, VisitMut, Visitor, VisitorMut,
};

use super::{normalize_ident, table_name};
use crate::catalog::versions::{PinnedVersions, TableAt};
use crate::catalog::{SCHEMAS, TableName};
use crate::error::{Error, Result};

/// A table version clause as written, before its expression is evaluated.
#[derive(Debug, Clone)]
pub enum VersionClause {
    Version(u64),
    /// `TIMESTAMP AS OF` / `FOR SYSTEM_TIME AS OF`: an expression that must fold to an instant.
    Timestamp(Expr),
}

/// The version clauses of a statement, in the order `apply` will visit them.
pub fn version_clauses(stmt: &Statement) -> Result<Vec<VersionClause>> {
    struct Collect(Vec<Result<VersionClause>>);
    impl Visitor for Collect {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { version: Some(v), .. } = f {
                self.0.push(clause(v));
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Collect(Vec::new());
    let _ = Visit::visit(stmt, &mut c);
    c.0.into_iter().collect()
}

fn clause(v: &TableVersion) -> Result<VersionClause> {
    match v {
        TableVersion::VersionAsOf(e) => match e {
            Expr::Value(ValueWithSpan { value: Value::Number(n, _), .. }) => n
                .parse::<u64>()
                .map(VersionClause::Version)
                .map_err(|_| Error::NoSuchVersion(format!("VERSION AS OF needs a version number (0, 1, ...), not {n}"))),
            other => Err(Error::Syntax(format!("VERSION AS OF needs a version number, not {other}"))),
        },
        TableVersion::TimestampAsOf(e) | TableVersion::ForSystemTimeAsOf(e) => Ok(VersionClause::Timestamp(e.clone())),
        other => Err(Error::FeatureNotSupported(format!(
            "{other} is not supported; use VERSION AS OF n or TIMESTAMP AS OF '<timestamp>'"
        ))),
    }
}

/// Replaces each version clause, in visiting order, by a reference to the versioned table name.
pub fn apply(stmt: &mut Statement, resolved: &[TableAt]) {
    struct Apply<'a>(std::slice::Iter<'a, TableAt>);
    impl VisitorMut for Apply<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, alias, version, .. } = f {
                if version.take().is_some() {
                    if let (Some(at), Some(ObjectNamePart::Identifier(last))) = (self.0.next(), name.0.last_mut()) {
                        if alias.is_none() {
                            *alias = Some(TableAlias { explicit: true, name: last.clone(), columns: vec![], at: None });
                        }
                        *last = Ident::with_quote('"', at.name_for(&normalize_ident(last)));
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(stmt, &mut Apply(resolved.iter()));
}

/// Names of the CTEs a statement defines: references to them are not tables.
fn cte_names(q: &Query) -> HashSet<String> {
    struct Ctes(HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                self.0.extend(with.cte_tables.iter().map(|c| normalize_ident(&c.alias.name)));
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Ctes(HashSet::new());
    let _ = Visit::visit(q, &mut c);
    c.0
}

/// The warehouse tables a query reads without an explicit version (what a dataset pins).
pub fn unversioned_tables(q: &Query, default_schema: &str) -> Result<Vec<TableName>> {
    let mut out = Vec::new();
    visit_unversioned(&mut q.clone(), default_schema, &mut |name, _, _| {
        if !out.contains(&name) {
            out.push(name);
        }
    })?;
    Ok(out)
}

/// Gives every unversioned warehouse table of a query the version the map pins it to, and
/// qualifies its name, so the query means the same under any search_path.
pub fn pin(q: &mut Query, pinned: &PinnedVersions, default_schema: &str) -> Result<()> {
    let mut missing = None;
    visit_unversioned(q, default_schema, &mut |table, name, version| match pinned.get(&table.to_string()) {
        Some(v) => {
            *version = Some(TableVersion::VersionAsOf(Expr::value(Value::Number(v.to_string(), false))));
            *name = ObjectName::from(vec![Ident::with_quote('"', table.schema), Ident::with_quote('"', table.table)]);
        }
        None => missing = Some(table),
    })?;
    match missing {
        Some(name) => Err(Error::UndefinedObject(format!("no pinned version for {name}"))),
        None => Ok(()),
    }
}

/// Qualifies the name of every unversioned warehouse table of a query.
pub fn qualify(q: &mut Query, default_schema: &str) -> Result<()> {
    visit_unversioned(q, default_schema, &mut |table, name, _| {
        *name = ObjectName::from(vec![Ident::with_quote('"', table.schema), Ident::with_quote('"', table.table)]);
    })
}

fn visit_unversioned(
    q: &mut Query,
    default_schema: &str,
    f: &mut dyn FnMut(TableName, &mut ObjectName, &mut Option<TableVersion>),
) -> Result<()> {
    struct Tables<'a> {
        ctes: HashSet<String>,
        default_schema: &'a str,
        f: &'a mut dyn FnMut(TableName, &mut ObjectName, &mut Option<TableVersion>),
        error: Option<Error>,
    }
    impl VisitorMut for Tables<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, version, args: None, .. } = tf {
                if version.is_some() {
                    return ControlFlow::Continue(());
                }
                if let [ObjectNamePart::Identifier(i)] = name.0.as_slice() {
                    if self.ctes.contains(&normalize_ident(i)) {
                        return ControlFlow::Continue(());
                    }
                }
                match table_name(name, self.default_schema) {
                    Ok(t) if SCHEMAS.contains(&t.schema.as_str()) => (self.f)(t, name, version),
                    Ok(_) => {}
                    Err(e) => {
                        self.error = Some(e);
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let ctes = cte_names(q);
    let mut v = Tables { ctes, default_schema, f, error: None };
    let _ = VisitMut::visit(q, &mut v);
    match v.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement as Hs, parse};

    fn one(sql: &str) -> Statement {
        match parse(sql).unwrap().pop().unwrap() {
            Hs::Sql(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn versions_become_names_with_the_table_as_alias() {
        let mut s = one("SELECT * FROM t VERSION AS OF 3 JOIN public.U VERSION AS OF 4 u2 ON t.a = u2.a");
        let clauses = version_clauses(&s).unwrap();
        assert_eq!(clauses.len(), 2);
        apply(&mut s, &[TableAt::Version(3), TableAt::Version(4)]);
        assert_eq!(s.to_string(), r#"SELECT * FROM "t@v3" AS t JOIN public."u@v4" u2 ON t.a = u2.a"#);
    }

    #[test]
    fn pinning_skips_ctes_and_versioned_tables() {
        let Statement::Query(mut q) = one("WITH c AS (SELECT * FROM a) SELECT * FROM c JOIN datasets.b ON true JOIN a VERSION AS OF 1 x ON true")
        else {
            panic!()
        };
        let names = unversioned_tables(&q, "public").unwrap();
        assert_eq!(names, vec![TableName::new("public", "a"), TableName::new("datasets", "b")]);
        let pinned: PinnedVersions = [("public.a".to_string(), 7), ("datasets.b".to_string(), 2)].into();
        pin(&mut q, &pinned, "public").unwrap();
        assert_eq!(
            q.to_string(),
            r#"WITH c AS (SELECT * FROM "public"."a" VERSION AS OF 7) SELECT * FROM c JOIN "datasets"."b" VERSION AS OF 2 ON true JOIN a x VERSION AS OF 1 ON true"#
        );
    }
}
