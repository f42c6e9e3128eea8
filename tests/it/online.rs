//! online_features over the wire: the latest row per entity against a brute-force reference and
//! against historical_features at now() (serving and training agree); new commits by another
//! server show up without restarting; prepared lookups; errors.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::harness::{TestServer, sqlstate};

/// Polls a lookup until it returns `want` (refreshes run in the background).
async fn eventually(c: &Client, sql: &str, want: Option<f64>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Option<f64> = c.query_one(sql, &[]).await.unwrap().get(0);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: still {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn online_features_serve_the_latest_row_and_agree_with_training() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let mut rng = StdRng::seed_from_u64(7);
    c.batch_execute(
        "CREATE TABLE stats (k BIGINT, ts TIMESTAMP, created TIMESTAMP, v BIGINT);
         CREATE FEATURE VIEW s ON stats ENTITY (k) TIMESTAMP ts CREATED created",
    )
    .await
    .unwrap();
    // Many ties on ts and created, so the tie-break decides often.
    let rows: Vec<(i64, i64, i64, i64)> =
        (0..2000).map(|_| (rng.random_range(0..200), rng.random_range(0..20), rng.random_range(0..3), rng.random_range(0..1000))).collect();
    for chunk in rows.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(k, ts, c, v)| {
                format!("({k}, TIMESTAMP '2025-01-01 00:00:00' + INTERVAL '{ts} hours', TIMESTAMP '2025-01-01 00:00:00' + INTERVAL '{} hours', {v})", ts + c)
            })
            .collect();
        c.batch_execute(&format!("INSERT INTO stats VALUES {}", values.join(", "))).await.unwrap();
    }
    let keys: Vec<String> = (0..210).map(|k| k.to_string()).collect();
    let online = c
        .query(&format!("SELECT k, v FROM online_features('s', ARRAY[{}])", keys.join(", ")), &[])
        .await
        .unwrap();
    assert_eq!(online.len(), 210, "one row per requested key, in order");
    for (i, row) in online.iter().enumerate() {
        let k = i as i64;
        assert_eq!(row.get::<_, i64>(0), k);
        let want = rows.iter().filter(|r| r.0 == k).max_by_key(|r| (r.1, r.1 + r.2, r.3)).map(|r| r.3);
        assert_eq!(row.get::<_, Option<i64>>(1), want, "key {k}");
    }
    // The same rule as training: historical_features at a spine time after everything.
    let training = c
        .query(
            "SELECT k, s__v FROM historical_features('SELECT value AS k, TIMESTAMP ''2030-01-01 00:00:00'' AS ts \
             FROM generate_series(0::BIGINT, 209) AS g(value) ORDER BY k', 's.v')",
            &[],
        )
        .await
        .unwrap();
    for (a, b) in online.iter().zip(&training) {
        assert_eq!((a.get::<_, i64>(0), a.get::<_, Option<i64>>(1)), (b.get::<_, i64>(0), b.get::<_, Option<i64>>(1)));
    }
}

#[tokio::test]
async fn online_features_follow_commits_from_another_server() {
    let server = TestServer::start().await;
    let other = TestServer::on(&server.warehouse).await;
    let (c, w) = (server.connect().await, other.connect().await);
    c.batch_execute(
        "CREATE TABLE rates (driver BIGINT, city TEXT, ts TIMESTAMP, rate DOUBLE);
         INSERT INTO rates VALUES (1, 'oslo', now() - INTERVAL '1 hour', 0.5), (1, 'rome', now() - INTERVAL '1 hour', 0.7);
         CREATE FEATURE VIEW r ON rates ENTITY (driver, city) TIMESTAMP ts TTL INTERVAL '1 day'",
    )
    .await
    .unwrap();
    let lookup = "SELECT rate FROM online_features('r', 1, 'oslo')";
    eventually(&c, lookup, Some(0.5)).await;

    // An append by the other server is folded in.
    w.batch_execute("INSERT INTO rates VALUES (1, 'oslo', now(), 0.6)").await.unwrap();
    eventually(&c, lookup, Some(0.6)).await;
    // An older row changes nothing.
    w.batch_execute("INSERT INTO rates VALUES (1, 'oslo', now() - INTERVAL '2 hours', 0.1)").await.unwrap();
    w.batch_execute("INSERT INTO rates VALUES (2, 'oslo', now(), 0.9)").await.unwrap();
    eventually(&c, "SELECT rate FROM online_features('r', 2, 'oslo')", Some(0.9)).await;
    eventually(&c, lookup, Some(0.6)).await;
    // An UPDATE removes files: the index is rebuilt, and the old value does not come back.
    w.batch_execute("UPDATE rates SET rate = 0.65 WHERE rate = 0.6").await.unwrap();
    eventually(&c, lookup, Some(0.65)).await;
    // Outside the TTL: NULL.
    w.batch_execute("DELETE FROM rates WHERE driver = 2; INSERT INTO rates VALUES (2, 'oslo', now() - INTERVAL '2 days', 0.3)")
        .await
        .unwrap();
    eventually(&c, "SELECT rate FROM online_features('r', 2, 'oslo')", None).await;

    // A prepared statement over the extended protocol, reused with different keys.
    let stmt = c.prepare("SELECT * FROM online_features('r', $1, $2)").await.unwrap();
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::INT8, tokio_postgres::types::Type::TEXT]);
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["driver", "city", "ts", "rate"]);
    for _ in 0..50 {
        let row = c.query_one(&stmt, &[&1i64, &"rome"]).await.unwrap();
        assert_eq!(row.get::<_, Option<f64>>(3), Some(0.7));
        let row = c.query_one(&stmt, &[&7i64, &"rome"]).await.unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, Option<f64>>(3)), (7, None));
    }

    // Errors keep the connection.
    assert_eq!(sqlstate(c.query("SELECT * FROM online_features('nope', 1)", &[]).await), "42704");
    assert_eq!(sqlstate(c.query("SELECT * FROM online_features('r', 1)", &[]).await), "42601");
    c.batch_execute("SET hindsight.as_of = '2025-01-01 00:00:00'").await.unwrap();
    assert_eq!(sqlstate(c.query(lookup, &[]).await), "0A000");
    c.batch_execute("RESET hindsight.as_of").await.unwrap();
    // Dropping the view retires its index.
    c.batch_execute("DROP FEATURE VIEW r").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.query(lookup, &[]).await.is_ok() {
        assert!(Instant::now() < deadline, "dropped view still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sqlstate(c.query(lookup, &[]).await), "42704");
}
