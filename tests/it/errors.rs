//! Bad input: the right SQLSTATE, a message a person understands, and a connection (and server)
//! that carry on.

use crate::harness::{TestServer, count, message, sqlstate};

#[tokio::test]
async fn each_error_has_its_sqlstate_and_the_connection_survives() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT, name TEXT)").await.unwrap();
    assert_eq!(sqlstate(c.simple_query("SELEC 1").await), "42601");
    assert_eq!(sqlstate(c.query("SELECT * FROM missing", &[]).await), "42P01");
    assert_eq!(message(c.query("SELECT * FROM missing", &[]).await), "relation \"public.missing\" does not exist");
    assert_eq!(sqlstate(c.query("SELECT nope FROM t", &[]).await), "42703");
    assert_eq!(sqlstate(c.query("SELECT 'a' + 1", &[]).await), "42804");
    assert_eq!(sqlstate(c.simple_query("CREATE TABLE t (x INT)").await), "42P07");
    assert_eq!(sqlstate(c.simple_query("INSERT INTO hindsight.anything VALUES (1)").await), "42P01");
    assert_eq!(sqlstate(c.simple_query("CREATE TABLE hindsight.mine (x INT)").await), "42501");
    assert_eq!(sqlstate(c.simple_query("CREATE TABLE nowhere.t (x INT)").await), "3F000");
    // Server files are off unless file_directories lists some (see security.rs).
    assert_eq!(sqlstate(c.simple_query("COPY t FROM '/etc/passwd'").await), "42501");
    assert_eq!(sqlstate(c.simple_query("COPY t TO PROGRAM 'cat'").await), "0A000");
    assert_eq!(sqlstate(c.simple_query("CREATE VIEW v AS SELECT 1").await), "0A000");
    assert_eq!(sqlstate(c.simple_query("SELECT CAST('x' AS INT)").await), "22P02");
    // After all that, the same connection still answers.
    let n = count(&c, "t").await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn an_error_in_a_multi_statement_query_stops_there() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT)").await.unwrap();
    let r = c.batch_execute("INSERT INTO t VALUES (1); SELECT * FROM missing; INSERT INTO t VALUES (2)").await;
    assert_eq!(sqlstate(r), "42P01");
    let n = count(&c, "t").await;
    assert_eq!(n, 1, "statements before the error commit, those after it do not run");
}

#[tokio::test]
async fn a_failed_insert_leaves_no_partial_commit() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT NOT NULL); INSERT INTO t VALUES (1)").await.unwrap();
    // The second row violates NOT NULL: the whole statement fails.
    assert!(c.simple_query("INSERT INTO t VALUES (2), (NULL)").await.is_err());
    let n = count(&c, "t").await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn concurrent_updates_conflict_with_40001_and_never_corrupt() {
    let server = TestServer::start().await;
    let setup = server.connect().await;
    setup.batch_execute("CREATE TABLE acct (id BIGINT, balance BIGINT); INSERT INTO acct VALUES (1, 0)").await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = server.connect().await;
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut conflicts) = (0u64, 0u64);
            for _ in 0..5 {
                match c.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1", &[]).await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        let code = e.code().map(|c| c.code().to_string());
                        assert_eq!(code.as_deref(), Some("40001"), "{e}");
                        conflicts += 1;
                    }
                }
            }
            (ok, conflicts)
        }));
    }
    let mut committed = 0;
    for t in tasks {
        committed += t.await.unwrap().0;
    }
    // Every acknowledged update is in the balance, exactly once; there is still one row.
    let row = setup.query_one("SELECT count(*), max(balance) FROM acct", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, i64>(1) as u64, committed);
}

/// A COPY that fails before any data flows (no such table) leaves the connection usable.
/// (Through the simple protocol: tokio-postgres's `copy_in` sends CopyFail and Sync after such
/// an error, and then takes the second ReadyForQuery for an unexpected message, with any server.)
#[tokio::test]
async fn a_refused_copy_in_leaves_the_connection_usable() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    assert_eq!(sqlstate(c.simple_query("COPY missing FROM STDIN").await), "42P01");
    assert_eq!(c.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get::<_, i64>(0), 1);
}

/// A bug in an operator, stood in for by the debug-build-only `hindsight_debug_panic`, costs the
/// statement an XX000 error: not the connection, not another client, not committed data.
#[tokio::test]
async fn a_panic_costs_the_statement_not_the_connection() {
    use futures::StreamExt;
    let server = TestServer::start().await;
    let c = server.connect().await;
    let bystander = server.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT); INSERT INTO t SELECT i FROM generate_series(1, 10) g(i)").await.unwrap();

    // Before the first row, in both protocols.
    assert_eq!(sqlstate(c.simple_query("SELECT hindsight_debug_panic(true)").await), "XX000");
    let m = message(c.query("SELECT hindsight_debug_panic(id = 3) FROM t", &[]).await);
    assert!(m.contains("hindsight_debug_panic was asked to panic") && m.contains("report"), "{m}");

    // After rows started to stream: the rows already sent stand, then the error.
    let sql = "SELECT i FROM generate_series(1, 100000) g(i) WHERE NOT hindsight_debug_panic(i = 90000)";
    let rows = c.query_raw(sql, std::iter::empty::<i64>()).await.unwrap();
    futures::pin_mut!(rows);
    let mut seen = 0;
    let err = loop {
        match rows.next().await {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without an error after {seen} rows"),
        }
    };
    assert!(seen > 0, "the panic came after rows were sent");
    assert_eq!(err.code().map(|s| s.code()), Some("XX000"), "{err}");

    // Inside a write, in delta-rs's writer tasks: nothing is committed.
    let insert = "INSERT INTO t SELECT i FROM generate_series(11, 20) g(i) WHERE NOT hindsight_debug_panic(i = 15)";
    assert_eq!(sqlstate(c.simple_query(insert).await), "XX000");

    // Inside an evaluation run: reported, and logged as a failed run.
    c.batch_execute("CREATE EVALUATION buggy SCHEDULE '0 0 * * *' AS SELECT count(*) AS n FROM t WHERE NOT hindsight_debug_panic(id = 2)")
        .await
        .unwrap();
    assert_eq!(sqlstate(c.query("RUN EVALUATION buggy", &[]).await), "XX000");
    let run = c.query_one("SELECT status, error FROM hindsight.evaluation_runs WHERE evaluation = 'buggy'", &[]).await.unwrap();
    assert_eq!(run.get::<_, String>(0), "failed");
    assert!(run.get::<_, String>(1).starts_with("XX000"), "{}", run.get::<_, String>(1));

    assert_eq!(count(&c, "t").await, 10);
    assert_eq!(count(&bystander, "t").await, 10);
}
