//! The protocol: simple and extended query, parameters, text and binary results, sessions,
//! several servers on one warehouse, restarts.

use chrono::NaiveDateTime;
use futures::{StreamExt, pin_mut};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

use crate::harness::{TestServer, count, sqlstate};

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

#[tokio::test]
async fn extended_protocol_round_trips_types_in_binary() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE t (id BIGINT NOT NULL, name TEXT, score DOUBLE, ok BOOLEAN, at TIMESTAMP, n INT);
         INSERT INTO t VALUES (1, 'a', 0.5, true, '2025-01-02 03:04:05', 7), (2, NULL, NULL, NULL, NULL, NULL)",
    )
    .await
    .unwrap();

    // tokio-postgres asks for binary results and sends binary parameters.
    let rows = c
        .query("SELECT id, name, score, ok, at, n FROM t WHERE id >= $1 ORDER BY id", &[&1i64])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    assert_eq!(rows[0].get::<_, &str>(1), "a");
    assert_eq!(rows[0].get::<_, f64>(2), 0.5);
    assert!(rows[0].get::<_, bool>(3));
    assert_eq!(rows[0].get::<_, NaiveDateTime>(4), ts("2025-01-02 03:04:05"));
    assert_eq!(rows[0].get::<_, i32>(5), 7);
    assert_eq!(rows[1].get::<_, Option<&str>>(1), None);
    assert_eq!(rows[1].get::<_, Option<f64>>(2), None);

    // Parameters of several types in one statement.
    let n = c
        .query_one(
            "SELECT count(*) FROM t WHERE name = $1 AND score < $2 AND ok = $3 AND at < $4",
            &[&"a", &1.0f64, &true, &ts("2026-01-01 00:00:00")],
        )
        .await
        .unwrap();
    assert_eq!(n.get::<_, i64>(0), 1);

    // jsonb in binary is a version byte, then the text; json is the text.
    let json = c.query_one("SELECT '{\"b\": 1, \"a\": 2}'::jsonb, '[1,  2]'::json", &[]).await.unwrap();
    assert_eq!(json.columns()[0].type_(), &postgres_types::Type::JSONB);
    assert_eq!(json.columns()[1].type_(), &postgres_types::Type::JSON);
    assert_eq!(json.get::<_, Raw>(0).0, b"\x01{\"a\": 2, \"b\": 1}");
    assert_eq!(json.get::<_, Raw>(1).0, b"[1,  2]");
}

/// A value's bytes as the server sent them.
struct Raw(Vec<u8>);

impl<'a> postgres_types::FromSql<'a> for Raw {
    fn from_sql(_: &postgres_types::Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &postgres_types::Type) -> bool {
        true
    }
}

#[tokio::test]
async fn parameter_types_come_from_the_plan_and_client_types_win() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT, name TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y')")
        .await
        .unwrap();
    let stmt = c.prepare("SELECT name FROM t WHERE id = $1").await.unwrap();
    assert_eq!(stmt.params(), &[Type::INT8]);
    assert_eq!(stmt.columns()[0].type_(), &Type::TEXT);
    let row = c.query_one(&stmt, &[&2i64]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "y");

    // The client says int4: the value is decoded as int4 and cast to the column's type.
    let typed = c.prepare_typed("SELECT name FROM t WHERE id = $1", &[Type::INT4]).await.unwrap();
    assert_eq!(typed.params(), &[Type::INT4]);
    let row = c.query_one(&typed, &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "x");

    // A prepared statement reads the latest data on every execution.
    c.execute("INSERT INTO t VALUES (3, 'z')", &[]).await.unwrap();
    let row = c.query_one(&stmt, &[&3i64]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "z");
}

#[tokio::test]
async fn simple_protocol_returns_text_and_command_tags() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let msgs = c
        .simple_query(
            "CREATE TABLE t (id BIGINT, v DOUBLE); INSERT INTO t VALUES (1, 1.5), (2, 2.5); \
             UPDATE t SET v = 0 WHERE id = 1; DELETE FROM t WHERE id = 2; SELECT id, v FROM t",
        )
        .await
        .unwrap();
    let counts: Vec<u64> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![0, 2, 1, 1, 1]);
    let row = msgs
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(row.get(0), Some("1"));
    assert_eq!(row.get(1), Some("0"));
}

#[tokio::test]
async fn types_without_a_postgres_twin_go_out_as_text() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let row = c
        .query_one(
            "SELECT map(['a', 'b'], [1, 2]) AS m, CAST('12345678901234567890.5' AS DECIMAL(38, 2)) AS d, \
             named_struct('x', 1) AS s, CAST(3.25 AS DECIMAL(10, 2)) AS small",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.columns()[0].type_(), &Type::TEXT);
    assert_eq!(row.columns()[1].type_(), &Type::TEXT);
    assert_eq!(row.columns()[2].type_(), &Type::TEXT);
    assert_eq!(row.columns()[3].type_(), &Type::NUMERIC);
    assert!(row.get::<_, &str>(0).contains('a'));
    assert_eq!(row.get::<_, &str>(1), "12345678901234567890.50");
}

#[tokio::test]
async fn settings_clients_send_are_kept_per_session() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("SET extra_float_digits = 3; SET application_name = 'pytest'; SET DateStyle = 'ISO'")
        .await
        .unwrap();
    let show = |m: Vec<SimpleQueryMessage>| {
        m.into_iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(show(c.simple_query("SHOW extra_float_digits").await.unwrap()), "3");
    assert_eq!(show(c.simple_query("SHOW application_name").await.unwrap()), "pytest");
    assert_eq!(show(c.simple_query("SHOW server_version_num").await.unwrap()), "160006");
    assert_eq!(show(c.simple_query("SHOW standard_conforming_strings").await.unwrap()), "on");
    let v: String = c.query_one("SELECT current_setting('application_name')", &[]).await.unwrap().get(0);
    assert_eq!(v, "pytest");
    let v: String = c.query_one("SELECT version()", &[]).await.unwrap().get(0);
    assert!(v.starts_with("PostgreSQL 16."), "{v}");
    // Another session does not see this one's settings.
    let other = server.connect().await;
    assert_eq!(show(other.simple_query("SHOW extra_float_digits").await.unwrap()), "1");
    assert_eq!(sqlstate(other.simple_query("SHOW no_such_setting").await), "22023");
}

#[tokio::test]
async fn search_path_picks_the_default_schema() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE DATASET scores AS SELECT CAST(5 AS INT) AS v").await.unwrap();
    assert_eq!(sqlstate(c.query("SELECT * FROM scores", &[]).await), "42P01");
    c.batch_execute("SET search_path = datasets").await.unwrap();
    let v: i32 = c.query_one("SELECT v FROM scores", &[]).await.unwrap().get(0);
    assert_eq!(v, 5);
}

#[tokio::test]
async fn two_servers_on_one_warehouse_see_each_other_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestServer::on(dir.path()).await;
    let b = TestServer::on(dir.path()).await;
    let (ca, cb) = (a.connect().await, b.connect().await);
    ca.batch_execute("CREATE TABLE shared (id BIGINT); INSERT INTO shared VALUES (1)").await.unwrap();
    let n = count(&cb, "shared").await;
    assert_eq!(n, 1);
    cb.execute("INSERT INTO shared VALUES (2)", &[]).await.unwrap();
    let n = count(&ca, "shared").await;
    assert_eq!(n, 2);
    let tables = cb.simple_query("SHOW TABLES").await.unwrap();
    assert!(tables.iter().any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(1) == Some("shared"))));
}

/// Each server keeps a table's latest snapshot between statements and brings it forward; it must
/// still see every commit of the other server, past a checkpoint, and a table dropped and
/// created again under the same name (a new table, not more commits of the old one).
#[tokio::test]
async fn cached_snapshots_follow_commits_checkpoints_and_recreated_tables() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestServer::on(dir.path()).await;
    let b = TestServer::on(dir.path()).await;
    let (ca, cb) = (a.connect().await, b.connect().await);
    ca.batch_execute("CREATE TABLE t (id BIGINT)").await.unwrap();
    // 110 commits: delta-rs writes a checkpoint every 100.
    let mut sum = 0i64;
    for i in 1..=110i64 {
        let writer = if i % 3 == 0 { &cb } else { &ca };
        writer.execute("INSERT INTO t VALUES ($1)", &[&i]).await.unwrap();
        sum += i;
        if i % 10 == 0 || i > 98 {
            for reader in [&ca, &cb] {
                let row = reader.query_one("SELECT count(*), sum(id) FROM t", &[]).await.unwrap();
                assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (i, sum), "after commit {i}");
            }
        }
    }
    let log = std::fs::read_dir(dir.path().join("public/t/_delta_log")).unwrap();
    assert!(log.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".checkpoint.parquet")), "no checkpoint was written");

    // Dropped and created again by the other server, with fewer commits than the old one had.
    cb.batch_execute("DROP TABLE t; CREATE TABLE t (name TEXT, id BIGINT); INSERT INTO t VALUES ('new', 1)").await.unwrap();
    let row = ca.query_one("SELECT name, count(*) OVER () FROM t", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i64>(1)), ("new".to_string(), 1));
    // And by the same server.
    ca.batch_execute("DROP TABLE t; CREATE TABLE t (id BIGINT)").await.unwrap();
    assert_eq!(count(&ca, "t").await, 0);
    assert_eq!(count(&cb, "t").await, 0);
}

#[tokio::test]
async fn a_restarted_server_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::on(dir.path()).await;
    let c = s.connect().await;
    c.batch_execute("CREATE TABLE kept (id BIGINT, day TEXT) PARTITIONED BY (day); INSERT INTO kept VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    drop(c);
    s.stop().await;
    let s = TestServer::on(dir.path()).await;
    let n: i64 = s.connect().await.query_one("SELECT sum(id) FROM kept", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
}

#[tokio::test]
async fn results_stream_without_collecting() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let stream = c
        .query_raw("SELECT value FROM generate_series(1, 300000) AS s(value)", std::iter::empty::<i64>())
        .await
        .unwrap();
    pin_mut!(stream);
    let (mut n, mut sum) = (0u64, 0i64);
    while let Some(row) = stream.next().await {
        n += 1;
        sum += i64::from(row.unwrap().get::<_, i32>(0));
    }
    assert_eq!(n, 300_000);
    assert_eq!(sum, 300_000 * 300_001 / 2);
}

#[tokio::test]
async fn merge_upserts_late_labels() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE labels (request_id BIGINT, label BOOLEAN);
         INSERT INTO labels VALUES (1, false), (2, NULL);
         CREATE TABLE incoming (request_id BIGINT, label BOOLEAN);
         INSERT INTO incoming VALUES (2, true), (3, true)",
    )
    .await
    .unwrap();
    let n = c
        .execute(
            "MERGE INTO labels l USING incoming i ON l.request_id = i.request_id \
             WHEN MATCHED THEN UPDATE SET label = i.label \
             WHEN NOT MATCHED THEN INSERT (request_id, label) VALUES (i.request_id, i.label)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let rows = c.query("SELECT request_id, label FROM labels ORDER BY 1", &[]).await.unwrap();
    let got: Vec<(i64, Option<bool>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, Some(false)), (2, Some(true)), (3, Some(true))]);
}

/// Issue 20: at shutdown a connection waiting for its next statement hears FATAL 57P01 and is
/// closed at once, so shutdown does not wait out the drain time (30 s) for it; a statement
/// already running finishes and returns its rows first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_with_57p01_after_running_statements_finish() {
    let server = TestServer::start().await;
    let url = format!("host=127.0.0.1 port={} user=hindsight dbname=hindsight", server.addr.port());
    let (idle, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let idle_ended = tokio::spawn(connection);
    idle.simple_query("SELECT 1").await.unwrap();
    let (busy, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let busy_ended = tokio::spawn(connection);
    // The client is kept (returned) so that its connection ends by the server's doing.
    let running = tokio::spawn(async move {
        let n = busy.query_one("SELECT sum(value % 7) FROM generate_series(1, 20000000) AS s(value)", &[]).await.map(|r| r.get::<_, i64>(0));
        (n, std::time::Instant::now(), busy)
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let started = std::time::Instant::now();
    server.stop().await;
    let took = started.elapsed();
    let (n, finished, _busy) = running.await.unwrap();
    assert_eq!(n.expect("the running statement finished"), 60_000_003);
    eprintln!("the statement was running for {:?} of the shutdown", finished.saturating_duration_since(started));
    for ended in [idle_ended, busy_ended] {
        let e = ended.await.unwrap().expect_err("the server closed the connection");
        assert_eq!(e.code().map(|c| c.code()), Some("57P01"), "{e:?}");
    }
    assert!(took < std::time::Duration::from_secs(25), "shutdown waited {took:?} for idle connections");
}
