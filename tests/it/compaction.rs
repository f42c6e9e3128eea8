//! Compaction over the wire: `OPTIMIZE t` and the background compaction after writes change no
//! row of any version (checked against the rows the test wrote), leave time travel and online
//! features as they were, and keep the number of live files bounded under concurrent writers.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::harness::{TestServer, sqlstate};

fn live_files(warehouse: &Path, table: &str) -> usize {
    crate::harness::live_files(warehouse, table).len()
}

async fn rows(c: &Client, sql: &str) -> Vec<(i64, i64, f64)> {
    c.query(sql, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

async fn latest_version(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("DESCRIBE HISTORY {table} LIMIT 1"), &[]).await.unwrap().get("version")
}

fn sorted(mut v: Vec<(i64, i64, f64)>) -> Vec<(i64, i64, f64)> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

#[tokio::test]
async fn optimize_rewrites_files_and_changes_no_row_of_any_version() {
    let server = TestServer::start_with(|s| {
        s.warehouse().auto_compact().set_min_files(0);
        s
    })
    .await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT, k BIGINT, x DOUBLE PRECISION)").await.unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    // The rows each version holds, as the test wrote them: inserts of a few rows, and deletes.
    let mut now: Vec<(i64, i64, f64)> = Vec::new();
    let mut versions = vec![now.clone()];
    for i in 0..24i64 {
        if i % 7 == 6 {
            let k = rng.random_range(0..5i64);
            c.execute("DELETE FROM t WHERE k = $1", &[&k]).await.unwrap();
            now.retain(|r| r.1 != k);
        } else {
            let batch: Vec<(i64, i64, f64)> =
                (0..rng.random_range(1..4)).map(|j| (i * 10 + j, rng.random_range(0..5), rng.random_range(-1e3..1e3))).collect();
            let values: Vec<String> = batch.iter().map(|(id, k, x)| format!("({id}, {k}, {x:?})")).collect();
            c.batch_execute(&format!("INSERT INTO t VALUES {}", values.join(", "))).await.unwrap();
            now.extend(batch);
        }
        versions.push(now.clone());
    }
    let before = latest_version(&c, "t").await;
    assert_eq!(before as usize, versions.len() - 1);
    let files = live_files(&server.warehouse, "t");
    assert!(files > 10, "{files} files");

    let report = c.query_one("OPTIMIZE t", &[]).await.unwrap();
    let (removed, added): (i64, i64) = (report.get("files_removed"), report.get("files_added"));
    assert_eq!((removed, added), (files as i64, 1), "every small file, into one");
    assert!(report.get::<_, i64>("bytes_added") > 0);
    assert_eq!(live_files(&server.warehouse, "t"), 1);
    let h = c.query_one("DESCRIBE HISTORY t LIMIT 1", &[]).await.unwrap();
    assert_eq!((h.get::<_, i64>("version"), h.get::<_, String>("operation")), (before + 1, "OPTIMIZE".to_string()));

    // The latest rows, and every earlier version, are what they were.
    assert_eq!(sorted(rows(&c, "SELECT id, k, x FROM t").await), sorted(now.clone()));
    for (v, want) in versions.iter().enumerate() {
        let got = rows(&c, &format!("SELECT id, k, x FROM t VERSION AS OF {v}")).await;
        assert_eq!(sorted(got), sorted(want.clone()), "version {v}");
    }

    // Nothing left to compact: no commit.
    let again = c.query_one("OPTIMIZE t", &[]).await.unwrap();
    assert_eq!((again.get::<_, i64>("files_removed"), again.get::<_, i64>("files_added")), (0, 0));
    assert_eq!(latest_version(&c, "t").await, before + 1);

    // ZORDER rewrites every file, clustered, with the same rows.
    c.batch_execute("INSERT INTO t VALUES (1000, 1, 0.5)").await.unwrap();
    now.push((1000, 1, 0.5));
    let z = c.query_one("OPTIMIZE t ZORDER BY (k, x)", &[]).await.unwrap();
    assert_eq!(z.get::<_, i64>("files_removed"), 2);
    assert_eq!(sorted(rows(&c, "SELECT id, k, x FROM t").await), sorted(now.clone()));

    for (sql, state) in [
        ("OPTIMIZE missing", "42P01"),
        ("OPTIMIZE t ZORDER BY (nope)", "42703"),
        ("OPTIMIZE t VERSION AS OF 1", "42601"),
        ("OPTIMIZE hindsight.evaluations", "42501"),
    ] {
        assert_eq!(sqlstate(c.batch_execute(sql).await), state, "{sql}");
    }
    assert_eq!(sorted(rows(&c, "SELECT id, k, x FROM t").await), sorted(now), "the connection and the table survive");
}

#[tokio::test]
async fn concurrent_writes_are_compacted_in_the_background() {
    const MIN_FILES: usize = 8;
    let server = TestServer::start_with(|s| {
        s.warehouse().auto_compact().set_min_files(MIN_FILES);
        s
    })
    .await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE ev (id BIGINT, k BIGINT, x DOUBLE PRECISION, ts TIMESTAMP);
         CREATE FEATURE VIEW fv ON ev ENTITY (k) TIMESTAMP ts",
    )
    .await
    .unwrap();
    // The online index is built before the writes, so it follows them through compactions.
    assert_eq!(c.query("SELECT * FROM online_features('fv', 1)", &[]).await.unwrap().len(), 1);

    let writers: Vec<_> = (0..6i64)
        .map(|w| {
            let addr = server.addr;
            tokio::spawn(async move {
                let c = crate::harness::connect(addr).await;
                let mut rng = StdRng::seed_from_u64(w as u64);
                let mut mine = Vec::new();
                for i in 0..15i64 {
                    let row = (w * 1000 + i, rng.random_range(0..10i64), rng.random_range(-1e3..1e3f64));
                    let ts = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap()
                        + chrono::Duration::seconds(row.0);
                    c.execute("INSERT INTO ev VALUES ($1, $2, $3, $4)", &[&row.0, &row.1, &row.2, &ts])
                    .await
                    .unwrap();
                    mine.push(row);
                }
                mine
            })
        })
        .collect();
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }

    // 90 single-row writes: compactions keep the table below MIN_FILES small files, give or
    // take the one in flight when the writes stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_files(&server.warehouse, "ev") >= MIN_FILES {
        assert!(Instant::now() < deadline, "still {} files", live_files(&server.warehouse, "ev"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let compactions: i64 = c
        .query("DESCRIBE HISTORY ev", &[])
        .await
        .unwrap()
        .iter()
        .filter(|r| r.get::<_, String>("operation") == "OPTIMIZE")
        .count() as i64;
    assert!(compactions >= 5, "{compactions} compactions for 90 writes");
    assert!(hindsight::metrics::METRICS.render().contains("hindsight_compactions_total{outcome=\"compacted\"}"));
    assert_eq!(sorted(rows(&c, "SELECT id, k, x FROM ev").await), sorted(written.clone()));

    // Online features: the latest row per key (greatest ts, which is the greatest id here).
    for k in 0..10i64 {
        let want = written.iter().filter(|r| r.1 == k).max_by_key(|r| r.0).map(|r| r.2);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: Option<f64> = c.query_one(&format!("SELECT x FROM online_features('fv', {k})"), &[]).await.unwrap().get(0);
            if got == want {
                break;
            }
            assert!(Instant::now() < deadline, "key {k}: {got:?}, want {want:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
