//! Prometheus metrics over HTTP, as a scraper sees them.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::TestServer;

async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of one sample line (`name{labels} value`), or 0 if the series is absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_queries_errors_rows_and_connections() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hindsight::metrics::serve(listener, async {
        let _ = stopped.await;
    }));
    // The registry is the process's, shared with tests running alongside: compare before/after.
    let before = scrape(metrics, "/metrics").await;
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.simple_query("SELECT * FROM generate_series(1, 1000)").await.unwrap();
    let _ = c.simple_query("SELECT * FROM no_such_table_for_metrics").await;
    let after = scrape(metrics, "/metrics").await;
    assert!(after.starts_with("HTTP/1.1 200 OK"), "{after}");
    for series in [r#"hindsight_queries_total{kind="select"}"#, r#"hindsight_errors_total{sqlstate="42P01"}"#] {
        assert!(sample(&after, series) >= sample(&before, series) + 1.0, "{series} did not move:\n{after}");
    }
    assert!(sample(&after, "hindsight_rows_out_total") >= sample(&before, "hindsight_rows_out_total") + 1000.0);
    assert!(sample(&after, "hindsight_bytes_out_total") > sample(&before, "hindsight_bytes_out_total"));
    assert!(sample(&after, "hindsight_connections_active") >= 1.0);
    assert!(after.contains(r#"hindsight_query_duration_seconds_bucket{le="#), "no latency histogram:\n{after}");
    assert!(scrape(metrics, "/nothing").await.starts_with("HTTP/1.1 404"));
    let _ = stop.send(());
}
