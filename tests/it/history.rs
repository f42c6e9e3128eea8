//! Time travel over the wire: versions and instants against a table with many commits, the
//! session-wide `hindsight.as_of` while another session writes, DESCRIBE HISTORY, checkpoints.

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::harness::{TestServer, count, sqlstate};

/// (version, commit time) of every commit, oldest first, from DESCRIBE HISTORY.
async fn history(c: &Client, table: &str) -> Vec<(i64, DateTime<Utc>)> {
    let mut h: Vec<(i64, DateTime<Utc>)> = c
        .query(&format!("DESCRIBE HISTORY {table}"), &[])
        .await
        .expect("history")
        .iter()
        .map(|r| (r.get("version"), r.get("timestamp")))
        .collect();
    h.reverse();
    h
}

#[tokio::test]
async fn versions_and_instants_over_many_commits() {
    // Without background compaction, whose commits would sit between the INSERTs' versions.
    let server = TestServer::start_with(|s| {
        s.warehouse().auto_compact().set_min_files(0);
        s
    })
    .await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (i BIGINT, note TEXT)").await.unwrap();
    // Version v holds the rows 1..=v; 130 commits cross delta-rs's checkpoint at version 100.
    let commits = 130;
    for i in 1..=commits {
        c.execute("INSERT INTO t VALUES ($1, 'x')", &[&(i as i64)]).await.unwrap();
    }
    let log = server.warehouse.join("public/t/_delta_log");
    let checkpoints = std::fs::read_dir(&log).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".checkpoint.")).count();
    assert!(checkpoints >= 1, "no checkpoint in {}", log.display());

    let h = history(&c, "t").await;
    assert_eq!(h.len(), commits + 1);
    assert!(h.iter().enumerate().all(|(i, (v, _))| *v == i as i64));

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..25 {
        let v = rng.random_range(0..=commits as i64);
        let row = c.query_one(&format!("SELECT count(*), coalesce(sum(i), 0) FROM t VERSION AS OF {v}"), &[]).await.unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (v, v * (v + 1) / 2), "version {v}");
    }
    // TIMESTAMP AS OF: the last version committed at or before the instant, found here by a
    // linear scan of the history (the server binary-searches the log).
    for _ in 0..25 {
        let (_, base) = h[rng.random_range(0..h.len())];
        let at = base + Duration::microseconds(rng.random_range(-1500..1500));
        let sql = format!("SELECT count(*) FROM t TIMESTAMP AS OF '{}'", at.to_rfc3339());
        let Some(expected) = h.iter().filter(|(_, t)| *t <= at).map(|(v, _)| *v).max() else {
            assert_eq!(sqlstate(c.query_one(&sql, &[]).await), "22023");
            continue;
        };
        let n: i64 = c.query_one(&sql, &[]).await.unwrap().get(0);
        assert_eq!(n, expected, "as of {at}");
    }
    // Every column DESCRIBE HISTORY promises, with its type.
    let rows = c.query("DESCRIBE HISTORY t LIMIT 3", &[]).await.unwrap();
    assert_eq!(rows.len(), 3);
    let names: Vec<(&str, String)> = rows[0].columns().iter().map(|c| (c.name(), c.type_().name().to_string())).collect();
    assert_eq!(
        names,
        [
            ("version", "int8"),
            ("timestamp", "timestamptz"),
            ("operation", "text"),
            ("operation_parameters", "text"),
            ("rows_added", "int8"),
            ("rows_updated", "int8"),
            ("rows_removed", "int8"),
            ("operation_metrics", "text")
        ]
        .map(|(n, t)| (n, t.to_string()))
    );
    assert_eq!(rows[0].get::<_, i64>("version"), commits as i64);
    assert_eq!(rows[0].get::<_, &str>("operation"), "WRITE");
    assert_eq!(rows[0].get::<_, Option<i64>>("rows_added"), Some(1));

    c.batch_execute("UPDATE t SET note = 'y' WHERE i <= 10; DELETE FROM t WHERE i > 120").await.unwrap();
    let rows = c.query("DESCRIBE HISTORY t LIMIT 2", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, &str>("operation"), "DELETE");
    assert_eq!(rows[0].get::<_, Option<i64>>("rows_removed"), Some(10));
    assert_eq!(rows[1].get::<_, &str>("operation"), "UPDATE");
    assert_eq!(rows[1].get::<_, Option<i64>>("rows_updated"), Some(10));
}

#[tokio::test]
async fn session_as_of_holds_still_while_another_session_writes() {
    let server = TestServer::start().await;
    let writer = server.connect().await;
    let auditor = server.connect().await;
    writer.batch_execute("CREATE TABLE events (id BIGINT, kind TEXT); INSERT INTO events VALUES (1, 'a'), (2, 'b')").await.unwrap();
    let (_, then) = *history(&writer, "events").await.last().unwrap();

    // A plain SET through the extended protocol, as a BI tool sends it.
    auditor.execute(&format!("SET hindsight.as_of = '{}'", then.to_rfc3339()), &[]).await.unwrap();
    let shown: String = auditor.query_one("SHOW hindsight.as_of", &[]).await.unwrap().get(0);
    assert!(shown.starts_with(&then.format("%Y-%m-%d %H:%M:%S").to_string()), "{shown}");

    let writes = tokio::spawn(async move {
        for i in 3..23i64 {
            writer.execute("INSERT INTO events VALUES ($1, 'later')", &[&i]).await.unwrap();
        }
        writer
    });
    loop {
        assert_eq!(count(&auditor, "events").await, 2);
        if writes.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let writer = writes.await.unwrap();
    assert_eq!(count(&auditor, "events").await, 2);
    assert_eq!(count(&writer, "events").await, 22);
    // Metadata tables read as of the instant too.
    let datasets: i64 = auditor.query_one("SELECT count(*) FROM hindsight.datasets", &[]).await.unwrap().get(0);
    assert_eq!(datasets, 0);

    for write in [
        "INSERT INTO events VALUES (99, 'no')",
        "UPDATE events SET kind = 'no'",
        "DELETE FROM events",
        "MERGE INTO events USING (SELECT 1 AS id) s ON events.id = s.id WHEN MATCHED THEN DELETE",
        "CREATE TABLE other (x INT)",
        "DROP TABLE events",
        "CREATE DATASET d AS SELECT * FROM events",
        "VACUUM events",
    ] {
        assert_eq!(sqlstate(auditor.execute(write, &[]).await), "25006", "{write}");
    }
    assert_eq!(sqlstate(auditor.simple_query("COPY events FROM STDIN").await), "25006");
    assert_eq!(count(&writer, "events").await, 22, "a refused write changed nothing");

    auditor.batch_execute("RESET hindsight.as_of").await.unwrap();
    assert_eq!(count(&auditor, "events").await, 22);
    auditor.execute("INSERT INTO events VALUES (23, 'now')", &[]).await.unwrap();
}
