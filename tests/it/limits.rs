//! Stopping statements (cancel requests, statement_timeout) and the server's limits
//! (connections, memory per query, message size). Every case ends by using the same connection
//! again: a stopped or refused statement must leave it usable.

use std::time::Duration;

use futures::{StreamExt, pin_mut};
use hindsight::config::Limits;
use tokio_postgres::NoTls;

use crate::harness::{TestServer, message, sqlstate};

/// Runs for hours unless stopped: the work happens while the one row is being produced.
const SLOW: &str = "SELECT count(*) FROM generate_series(1, 100000000000)";
/// Streams rows for hours unless stopped.
const ENDLESS: &str = "SELECT value FROM generate_series(1, 100000000000) AS s(value)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_a_running_query_and_the_connection_lives_on() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await
    });
    let r = tokio::time::timeout(Duration::from_secs(30), c.simple_query(SLOW)).await.expect("cancel took effect");
    canceller.await.unwrap().unwrap();
    assert_eq!(sqlstate(r), "57014");
    assert_eq!(c.query_one("SELECT 41 + 1", &[]).await.unwrap().get::<_, i32>(0), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_rows_that_are_already_streaming() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let rows = c.query_raw(ENDLESS, std::iter::empty::<i64>()).await.unwrap();
    pin_mut!(rows);
    let mut seen = 0u64;
    while seen < 10_000 {
        rows.next().await.expect("a row").expect("rows before the cancel");
        seen += 1;
    }
    c.cancel_token().cancel_query(NoTls).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rows.next().await {
                Some(Ok(_)) => seen += 1,
                Some(Err(e)) => return Err(e),
                None => return Ok(seen),
            }
        }
    })
    .await
    .expect("the stream stopped");
    assert_eq!(sqlstate(ended), "57014");
    assert_eq!(c.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_stops_queries_per_session_and_by_server_default() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.simple_query("SET statement_timeout = '250ms'").await.unwrap();
    let e = c.simple_query(SLOW).await.expect_err("the timeout did not fire");
    assert_eq!(e.code().map(|c| c.code()), Some("57014"));
    assert!(message::<()>(Err(e)).contains("statement timeout"));
    // A plan that computes without waiting on anything (a cross join under a sort polls its
    // input once per 100,000 rows it makes) still stops; without yielding it ran for hours.
    let computing = "SELECT a.v * b.v AS v FROM generate_series(1::BIGINT, 100000) a(v), generate_series(1::BIGINT, 100000) b(v) ORDER BY v LIMIT 3";
    let stopped = tokio::time::timeout(Duration::from_secs(120), c.simple_query(computing)).await.expect("the timeout never fired");
    assert_eq!(sqlstate(stopped), "57014");
    // The extended protocol too, and after rows started to flow.
    let rows = c.query_raw(ENDLESS, std::iter::empty::<i64>()).await.unwrap();
    pin_mut!(rows);
    let mut failed = None;
    while let Some(r) = rows.next().await {
        if let Err(e) = r {
            failed = Some(e);
            break;
        }
    }
    assert_eq!(failed.and_then(|e| e.code().map(|c| c.code().to_string())).as_deref(), Some("57014"));
    assert_eq!(sqlstate(c.simple_query("SET statement_timeout = 'soon'").await), "22023");
    c.simple_query("RESET statement_timeout").await.unwrap();
    assert_eq!(c.query_one("SHOW statement_timeout", &[]).await.unwrap().get::<_, String>(0), "0");

    let limited = TestServer::start_with(|s| {
        s.with_limits(Limits { statement_timeout: Some(Duration::from_millis(300)), ..Limits::default() })
    })
    .await;
    let c = limited.connect().await;
    assert_eq!(c.query_one("SHOW statement_timeout", &[]).await.unwrap().get::<_, String>(0), "300");
    assert_eq!(sqlstate(c.simple_query(SLOW).await), "57014");
    c.simple_query("SET statement_timeout = 0").await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_told_why() {
    let server = TestServer::start_with(|s| s.with_max_connections(2)).await;
    let first = server.connect().await;
    let second = server.connect().await;
    let url = format!("host=127.0.0.1 port={} user=hindsight dbname=hindsight", server.addr.port());
    let third = tokio_postgres::connect(&url, NoTls).await.map(|_| ());
    assert_eq!(sqlstate(third), "53300");
    drop(second);
    // The permit comes back once the server sees the connection close.
    let mut admitted = false;
    for _ in 0..100 {
        if tokio_postgres::connect(&url, NoTls).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed slot was not reused");
    first.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_fails_alone() {
    let server = TestServer::start_with(|s| {
        s.with_limits(Limits { memory_limit: Some(16 << 20), ..Limits::default() })
    })
    .await;
    let c = server.connect().await;
    // array_agg keeps every value in one accumulator, which cannot spill.
    let r = c.simple_query("SELECT cardinality(array_agg(value)) FROM generate_series(1, 20000000) AS s(value)").await;
    assert_eq!(sqlstate(r), "53200");
    // Sorting spills to disk instead of failing.
    let row = c
        .query_one("SELECT count(*) FROM (SELECT value FROM generate_series(1, 3000000) AS s(value) ORDER BY value DESC)", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_size_limit_are_refused() {
    let server = TestServer::start_with(|s| s.with_limits(Limits { max_message_bytes: 4096, ..Limits::default() })).await;
    let c = server.connect().await;
    let long = format!("SELECT '{}'", "x".repeat(5000));
    assert_eq!(sqlstate(c.simple_query(&long).await), "54000");
    assert_eq!(sqlstate(c.prepare(&long).await), "54000");
    let big = "y".repeat(5000);
    assert_eq!(sqlstate(c.query("SELECT $1::TEXT", &[&big]).await), "54000");
    c.simple_query("SELECT 1").await.unwrap();
}
