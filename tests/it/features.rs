//! historical_features over the wire against a brute-force reference written here: random
//! spines and feature tables with ties, duplicates, NULL keys, NULL and late CREATED times,
//! several TTLs, a composite-key view and two views in one call, across batch sizes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::harness::TestServer;

/// A value, or (one time in twenty) NULL.
fn maybe(rng: &mut StdRng, range: std::ops::Range<i64>) -> Option<i64> {
    let v = rng.random_range(range);
    (!rng.random_bool(0.05)).then_some(v)
}

#[derive(Debug, Clone)]
struct Spine {
    id: i64,
    k: Option<i64>,
    k2: Option<i64>,
    ts: i64,
}

#[derive(Debug, Clone)]
struct Feature {
    k: Option<i64>,
    k2: Option<i64>,
    ts: i64,
    created: Option<i64>,
    v: Option<i64>,
}

fn opt(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into())
}

fn at(seconds: Option<i64>) -> String {
    seconds.map(|s| format!("TIMESTAMP '2025-01-01 00:00:00' + INTERVAL '{s} seconds'")).unwrap_or_else(|| "NULL".into())
}

async fn insert(c: &Client, table: &str, rows: Vec<String>) {
    for chunk in rows.chunks(500) {
        c.batch_execute(&format!("INSERT INTO {table} VALUES {}", chunk.join(", "))).await.unwrap();
    }
}

/// The feature row a spine row must get: keys equal and not NULL, event time at or before the
/// spine's, created (if any) at or before it too; the latest event time, then the latest
/// created (NULL lowest), then the greatest value (the operator's documented last tie-break,
/// NULL lowest); NULL unless inside the TTL.
fn reference(s: &Spine, features: &[Feature], two_keys: bool, created: bool, ttl: Option<i64>) -> Option<i64> {
    let best = features
        .iter()
        .filter(|f| {
            s.k.is_some() && f.k == s.k && (!two_keys || (s.k2.is_some() && f.k2 == s.k2)) && f.ts <= s.ts
                && (!created || f.created.is_none_or(|c| c <= s.ts))
        })
        .max_by_key(|f| (f.ts, if created { f.created.unwrap_or(i64::MIN) } else { 0 }, f.v.map_or(i64::MIN, |v| v)))?;
    if ttl.is_some_and(|ttl| best.ts <= s.ts - ttl) {
        return None;
    }
    best.v
}

#[tokio::test]
async fn historical_features_match_a_brute_force_reference() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = [3, 30, 300][seed as usize % 3];
        let span = [20, 200, 2000][seed as usize % 3];
        let spine: Vec<Spine> = (0..400)
            .map(|id| Spine { id, k: maybe(&mut rng, 0..keys), k2: Some(rng.random_range(0..2)), ts: rng.random_range(0..span) })
            .collect();
        // Duplicate spine rows stay duplicated.
        let spine: Vec<Spine> = spine.iter().cloned().chain(spine[..20].iter().map(|s| Spine { id: s.id + 1000, ..s.clone() })).collect();
        let feature = |rng: &mut StdRng| {
            let ts = rng.random_range(0..span);
            Feature {
                k: maybe(rng, 0..keys),
                k2: Some(rng.random_range(0..2)),
                ts,
                // Mostly created with the event, some late (backfills), some unknown.
                created: match rng.random_range(0..10) {
                    0 => None,
                    1..=3 => Some(ts + rng.random_range(0..span / 2 + 1)),
                    _ => Some(ts),
                },
                v: maybe(rng, 0..5),
            }
        };
        let f1: Vec<Feature> = (0..600).map(|_| feature(&mut rng)).collect();
        let f2: Vec<Feature> = (0..600).map(|_| feature(&mut rng)).collect();
        let (ttl1, ttl2) = ([None, Some(span / 10 + 1), Some(span / 2)][seed as usize % 3], [Some(span / 3 + 1), None, Some(1)][seed as usize % 3]);

        let (s, a, b) = (format!("spine{seed}"), format!("fa{seed}"), format!("fb{seed}"));
        c.batch_execute(&format!(
            "CREATE TABLE {s} (id BIGINT, k BIGINT, k2 BIGINT, ts TIMESTAMP);
             CREATE TABLE {a} (k BIGINT, ts TIMESTAMP, created TIMESTAMP, v BIGINT);
             CREATE TABLE {b} (k BIGINT, k2 BIGINT, ts TIMESTAMP, v BIGINT)"
        ))
        .await
        .unwrap();
        insert(&c, &s, spine.iter().map(|r| format!("({}, {}, {}, {})", r.id, opt(r.k), opt(r.k2), at(Some(r.ts)))).collect()).await;
        insert(&c, &a, f1.iter().map(|f| format!("({}, {}, {}, {})", opt(f.k), at(Some(f.ts)), at(f.created), opt(f.v))).collect()).await;
        insert(&c, &b, f2.iter().map(|f| format!("({}, {}, {}, {})", opt(f.k), opt(f.k2), at(Some(f.ts)), opt(f.v))).collect()).await;
        let ttl = |t: Option<i64>| t.map(|t| format!(" TTL INTERVAL '{t} seconds'")).unwrap_or_default();
        c.batch_execute(&format!(
            "CREATE FEATURE VIEW va{seed} ON {a} ENTITY (k) TIMESTAMP ts CREATED created{};
             CREATE FEATURE VIEW vb{seed} AS SELECT k, k2, ts, v AS w FROM {b} ENTITY (k, k2) TIMESTAMP ts{}",
            ttl(ttl1),
            ttl(ttl2)
        ))
        .await
        .unwrap();
        c.batch_execute(&format!("SET datafusion.execution.batch_size = {}", [5, 64, 8192][seed as usize % 3])).await.unwrap();

        // Spine order comes from the spine query, here the reverse of id.
        let sql = format!(
            "SELECT id, va{seed}__v, vb{seed}__w FROM historical_features('SELECT * FROM {s} ORDER BY id DESC', 'va{seed}.*', 'vb{seed}.w')"
        );
        let rows = c.query(&sql, &[]).await.unwrap();
        let mut expected = spine.clone();
        expected.sort_by_key(|r| std::cmp::Reverse(r.id));
        assert_eq!(rows.len(), expected.len(), "seed {seed}: each spine row exactly once");
        for (row, s) in rows.iter().zip(&expected) {
            assert_eq!(row.get::<_, i64>(0), s.id, "seed {seed}: spine order");
            assert_eq!(row.get::<_, Option<i64>>(1), reference(s, &f1, false, true, ttl1), "seed {seed}: view a, spine {s:?}");
            assert_eq!(row.get::<_, Option<i64>>(2), reference(s, &f2, true, false, ttl2), "seed {seed}: view b, spine {s:?}");
        }
        c.batch_execute("RESET datafusion.execution.batch_size").await.unwrap();
    }
}

#[tokio::test]
async fn feature_views_are_validated_and_have_history() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE f (k BIGINT, ts TIMESTAMP, v DOUBLE, name TEXT);
         CREATE FEATURE VIEW fv ON f ENTITY (k) TIMESTAMP ts TTL INTERVAL '1 day'",
    )
    .await
    .unwrap();
    let cases = [
        ("CREATE FEATURE VIEW fv ON f ENTITY (k) TIMESTAMP ts", "42710"),
        ("CREATE FEATURE VIEW x ON nope ENTITY (k) TIMESTAMP ts", "42P01"),
        ("CREATE FEATURE VIEW x ON f ENTITY (missing) TIMESTAMP ts", "42703"),
        ("CREATE FEATURE VIEW x ON f ENTITY (k) TIMESTAMP name", "42804"),
        ("CREATE FEATURE VIEW x ON f ENTITY (v) TIMESTAMP ts", "42804"),
        ("CREATE FEATURE VIEW x ON f ENTITY (k) TIMESTAMP ts TTL 'soon'", "22007"),
        ("CREATE FEATURE VIEW x ON f ENTITY (k) TIMESTAMP ts TTL '-1 day'", "22023"),
        ("CREATE FEATURE VIEW x AS SELEC k FROM f ENTITY (k) TIMESTAMP ts", "42601"),
        ("DROP FEATURE VIEW nope", "42704"),
        ("SELECT * FROM historical_features(f, 'nope.*')", "42704"),
        ("SELECT * FROM historical_features(f, 'fv.missing')", "42703"),
        ("SELECT * FROM historical_features('SELECT 1 AS k', 'fv.*')", "42703"),
        ("SELECT * FROM historical_features('SELECT 1 AS k, now() AS t', 'fv.*', timestamp => 'ts')", "42703"),
        ("INSERT INTO hindsight.feature_views (name) VALUES ('x')", "42501"),
    ];
    for (sql, state) in cases {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some(state), "{sql}: {e:?}");
    }
    // The connection survives all of that.
    let n: i64 = c.query_one("SELECT count(*) FROM hindsight.feature_views", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    c.batch_execute("DROP FEATURE VIEW fv; CREATE FEATURE VIEW fv ON f ENTITY (k) TIMESTAMP ts").await.unwrap();
    // Three commits: created, dropped, created again; the first definition is still readable.
    let ttl: Option<String> =
        c.query_one("SELECT ttl FROM hindsight.feature_views VERSION AS OF 1", &[]).await.unwrap().get(0);
    assert_eq!(ttl.as_deref(), Some("1 day"));
    let ttl: Option<String> = c.query_one("SELECT ttl FROM hindsight.feature_views", &[]).await.unwrap().get(0);
    assert_eq!(ttl, None);
}
