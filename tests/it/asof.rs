//! ASOF JOIN over the wire against a brute-force reference written here, on random data with
//! NULL keys, NULL match values, duplicates and ties, across batch sizes and partitionings.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::harness::TestServer;

#[derive(Debug, Clone)]
struct Row {
    id: i64,
    k1: Option<i64>,
    k2: Option<i64>,
    ts: Option<i64>,
}

fn random_rows(rng: &mut StdRng, n: usize, keys: i64, span: i64) -> Vec<Row> {
    (0..n as i64)
        .map(|id| Row {
            id,
            k1: (!rng.random_bool(0.05)).then(|| rng.random_range(0..keys)),
            k2: (!rng.random_bool(0.05)).then(|| rng.random_range(0..2)),
            ts: (!rng.random_bool(0.05)).then(|| rng.random_range(0..span)),
        })
        .collect()
}

fn sql_value(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into())
}

async fn load(c: &Client, table: &str, rows: &[Row]) {
    c.batch_execute(&format!("CREATE TABLE {table} (id BIGINT, k1 BIGINT, k2 BIGINT, ts BIGINT, d DATE, t TIMESTAMP)"))
        .await
        .unwrap();
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            let ts = sql_value(r.ts);
            let (d, t) = match r.ts {
                Some(x) => (format!("DATE '2025-01-01' + {x}"), format!("TIMESTAMP '2025-01-01 00:00:00' + INTERVAL '{x} seconds'")),
                None => ("NULL".into(), "NULL".into()),
            };
            format!("({}, {}, {}, {ts}, {d}, {t})", r.id, sql_value(r.k1), sql_value(r.k2))
        })
        .collect();
    c.batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(", "))).await.unwrap();
}

/// For each left row, the right id the ASOF JOIN must pick: keys equal (never NULL), match
/// value on the right side of `op`, the nearest one, ties to the greatest id.
fn reference(left: &[Row], right: &[Row], op: &str, two_keys: bool) -> Vec<(i64, Option<i64>)> {
    left.iter()
        .map(|l| {
            let pick = right
                .iter()
                .filter(|r| {
                    let keys = l.k1.is_some() && l.k1 == r.k1 && (!two_keys || (l.k2.is_some() && l.k2 == r.k2));
                    let (Some(lt), Some(rt)) = (l.ts, r.ts) else { return false };
                    keys && match op {
                        ">=" => lt >= rt,
                        ">" => lt > rt,
                        "<=" => lt <= rt,
                        _ => lt < rt,
                    }
                })
                .max_by_key(|r| {
                    let nearness = if op.starts_with('>') { r.ts.unwrap_or(0) } else { -r.ts.unwrap_or(0) };
                    (nearness, r.id)
                })
                .map(|r| r.id);
            (l.id, pick)
        })
        .collect()
}

#[tokio::test]
async fn asof_join_matches_a_brute_force_reference() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = [3, 20, 200][seed as usize % 3];
        let span = [10, 100, 10_000][seed as usize % 3];
        let left = random_rows(&mut rng, 300, keys, span);
        let right = random_rows(&mut rng, 400, keys, span);
        let (l, r) = (format!("l{seed}"), format!("r{seed}"));
        load(&c, &l, &left).await;
        load(&c, &r, &right).await;
        // Small batches cross the merge's batch boundaries; several partitions hash the keys.
        c.batch_execute(&format!(
            "SET datafusion.execution.batch_size = {}; SET datafusion.execution.target_partitions = {}",
            [7, 64, 8192][seed as usize % 3],
            1 + seed % 4
        ))
        .await
        .unwrap();
        for op in [">=", ">", "<=", "<"] {
            for (two_keys, column) in [(false, "ts"), (true, "ts"), (false, "d"), (true, "t")] {
                let on = if two_keys { format!("ON a.k1 = b.k1 AND b.k2 = a.k2") } else { "ON a.k1 = b.k1".to_string() };
                let sql = format!(
                    "SELECT a.id, b.id FROM {l} a ASOF JOIN {r} b MATCH_CONDITION (a.{column} {op} b.{column}) {on} ORDER BY a.id"
                );
                let got: Vec<(i64, Option<i64>)> =
                    c.query(&sql, &[]).await.unwrap().iter().map(|row| (row.get(0), row.get(1))).collect();
                assert_eq!(got, reference(&left, &right, op, two_keys), "seed {seed}: {sql}");
            }
        }
        c.batch_execute("RESET datafusion.execution.batch_size; RESET datafusion.execution.target_partitions").await.unwrap();
    }
}

#[tokio::test]
async fn asof_joins_compose_with_each_other_and_with_ordinary_joins() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let mut rng = StdRng::seed_from_u64(42);
    let (spine, f1, f2) = (random_rows(&mut rng, 200, 10, 50), random_rows(&mut rng, 300, 10, 50), random_rows(&mut rng, 300, 10, 50));
    load(&c, "spine", &spine).await;
    load(&c, "f1", &f1).await;
    load(&c, "f2", &f2).await;
    c.batch_execute("CREATE TABLE names AS SELECT id, 'n' || id AS name FROM spine").await.unwrap();
    let sql = "SELECT s.id, x.id, y.id, n.name
               FROM spine s
               ASOF JOIN f1 x MATCH_CONDITION (s.ts >= x.ts) ON s.k1 = x.k1
               JOIN names n ON n.id = s.id
               ASOF JOIN f2 y MATCH_CONDITION (s.ts < y.ts) ON y.k1 = s.k1
               ORDER BY s.id";
    let rows = c.query(sql, &[]).await.unwrap();
    let (rx, ry) = (reference(&spine, &f1, ">=", false), reference(&spine, &f2, "<", false));
    assert_eq!(rows.len(), spine.len());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, i64>(0), spine[i].id);
        assert_eq!(row.get::<_, Option<i64>>(1), rx[i].1);
        assert_eq!(row.get::<_, Option<i64>>(2), ry[i].1);
        assert_eq!(row.get::<_, String>(3), format!("n{}", spine[i].id));
    }
    // The plan uses the operator, not a range join.
    let plan: Vec<String> = c
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect();
    assert_eq!(plan.join("\n").matches("AsofJoinExec").count(), 2, "{}", plan.join("\n"));
}
