//! The role a planned statement needs. Our own statements say what they need themselves
//! (`commands::Run::role`); everything DataFusion plans is judged by its logical plan, every node and subquery of it, so no spelling
//! of a write (a CTE, EXPLAIN ANALYZE, a prepared statement) gets past as a read.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};

use super::Role;

/// The role a logical plan needs: the highest any of its nodes needs.
pub fn plan_role(plan: &LogicalPlan) -> (Role, String) {
    let mut needed = (Role::Reader, String::from("reading"));
    // apply_with_subqueries visits scalar subqueries and EXISTS too, not only the main tree.
    let _ = plan.apply_with_subqueries(|node| {
        let here = node_role(node);
        if here.0 > needed.0 {
            needed = here;
        }
        Ok(if needed.0 == Role::Admin { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    needed
}

fn node_role(node: &LogicalPlan) -> (Role, String) {
    match node {
        LogicalPlan::Dml(d) => {
            let verb = match d.op {
                WriteOp::Insert(_) => "INSERT",
                WriteOp::Update => "UPDATE",
                WriteOp::Delete => "DELETE",
                WriteOp::MergeInto(_) => "MERGE",
                WriteOp::Truncate => "TRUNCATE",
                // CREATE TABLE AS: a table is made.
                WriteOp::Ctas => return (Role::Admin, "CREATE TABLE AS".into()),
                // A write DataFusion adds later: the most privileged role, until reviewed.
                _ => return (Role::Admin, d.op.name().to_string()),
            };
            (Role::Writer, verb.into())
        }
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_)) => (Role::Admin, "CREATE TABLE".into()),
        LogicalPlan::Ddl(d) => (Role::Admin, d.name().to_string()),
        // DataFusion's COPY TO writes server-side files.
        LogicalPlan::Copy(_) => (Role::Admin, "COPY TO a file".into()),
        _ => (Role::Reader, "reading".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn role_of(sql: &str) -> Role {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT)").await.unwrap();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        plan_role(&plan).0
    }

    #[tokio::test]
    async fn plans_are_judged_by_every_node() {
        assert_eq!(role_of("SELECT * FROM t WHERE a IN (SELECT a FROM t)").await, Role::Reader);
        assert_eq!(role_of("INSERT INTO t SELECT a FROM t").await, Role::Writer);
        assert_eq!(role_of("EXPLAIN ANALYZE INSERT INTO t VALUES (1)").await, Role::Writer);
        assert_eq!(role_of("DELETE FROM t WHERE a = 1").await, Role::Writer);
        assert_eq!(role_of("CREATE TABLE u AS SELECT 1").await, Role::Admin);
        assert_eq!(role_of("DROP TABLE t").await, Role::Admin);
    }
}
