//! Tests against the real `hindsight` binary in its own process: the command line, and the
//! memory a large streamed result costs the server. Durability under kill -9 is in reliability.rs.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::connect;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn spawn(warehouse: &std::path::Path, port: u16) -> Child {
    spawn_with(warehouse, port, &[], Stdio::null())
}

/// `hindsight serve` with more flags, its log going to `stderr`.
pub(crate) fn spawn_with(warehouse: &std::path::Path, port: u16, flags: &[&str], stderr: impl Into<Stdio>) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hindsight"))
        .args(["serve", "--warehouse", warehouse.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start hindsight")
}

pub(crate) async fn wait_ready(port: u16) -> tokio_postgres::Client {
    wait_ready_for(port, Duration::from_secs(10)).await
}

async fn wait_ready_for(port: u16, limit: Duration) -> tokio_postgres::Client {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..limit.as_millis() / 50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return connect(addr).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

/// A memory figure of a process from the kernel, in MiB: `VmRSS` now, `VmHWM` its peak.
pub(crate) fn status_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

pub(crate) fn peak_rss_mib(pid: u32) -> u64 {
    status_mib(pid, "VmHWM:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_streams_in_bounded_server_memory() {
    use futures::{StreamExt, pin_mut};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = spawn(dir.path(), port);
    let c = wait_ready(port).await;
    let before = peak_rss_mib(server.id());
    // About 600 MB of result: if the server held it, its peak memory would show it.
    let rows = c
        .query_raw(
            "SELECT value, repeat('x', 100) AS pad FROM generate_series(1, 5000000) AS s(value)",
            std::iter::empty::<i64>(),
        )
        .await
        .unwrap();
    pin_mut!(rows);
    let mut n = 0u64;
    while let Some(r) = rows.next().await {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, 5_000_000);
    let peak = peak_rss_mib(server.id());
    server.kill().ok();
    let _ = server.wait();
    if cfg!(target_os = "linux") {
        assert!(peak < before + 300, "server peak memory grew from {before} MiB to {peak} MiB while streaming");
    }
}

#[test]
fn demo_then_sql_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hindsight")).args(args).output().expect("run hindsight");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let demo = run(&["demo", "--warehouse", wh]);
    assert!(demo.contains("labels (1169 rows)"), "{demo}");
    // Run twice: existing demo tables are left alone.
    let again = run(&["demo", "--warehouse", wh]);
    assert!(!again.contains("labels"), "{again}");
    let out = run(&[
        "sql",
        "--warehouse",
        wh,
        "-c",
        "SELECT count(*) AS n FROM labels; SELECT model_version, count(*) AS n FROM requests GROUP BY 1 ORDER BY 1",
    ]);
    assert!(out.contains("| 1169 |"), "{out}");
    assert!(out.lines().any(|l| l.contains("v1") && l.contains("1159")), "{out}");
    assert!(out.lines().any(|l| l.contains("v2") && l.contains("341")), "{out}");
}

/// `serve --demo` shows evaluation results at once, and its scheduler runs evaluations: here an
/// ON COMMIT one, triggered by an INSERT from a client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_has_evaluation_results_and_a_running_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_hindsight"))
        .args(["serve", "--demo", "--warehouse", dir.path().to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hindsight");
    // The demo (tables, dataset, backfilled evaluations) is written before the server listens.
    let c = wait_ready_for(port, Duration::from_secs(120)).await;
    let weeks: i64 = c.query_one("SELECT count(DISTINCT window_start) FROM eval.weekly_quality WHERE auc IS NOT NULL", &[]).await.unwrap().get(0);
    assert!(weeks >= 8, "{weeks} weeks with an AUC");
    let drift: i64 = c.query_one("SELECT count(*) FROM eval.weekly_drift WHERE \"column\" = 'income'", &[]).await.unwrap().get(0);
    assert!(drift >= 10, "{drift} weekly drift rows for income");
    c.batch_execute(
        "CREATE TABLE product_catalog (sku BIGINT);
         CREATE EVALUATION catalog_size SCHEDULE '0 0 1 1 *' ON COMMIT TO product_catalog AS SELECT count(*) AS skus FROM product_catalog;
         INSERT INTO product_catalog VALUES (1), (2)",
    )
    .await
    .unwrap();
    let mut skus = None;
    for _ in 0..100 {
        if let Ok(row) = c.query_one("SELECT skus FROM eval.catalog_size", &[]).await {
            skus = Some(row.get::<_, i64>(0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(skus, Some(2), "the scheduler ran the evaluation after the commit");
    server.kill().ok();
    let _ = server.wait();
}

fn hindsight(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hindsight")).args(args).output().expect("run hindsight")
}

#[test]
fn serve_refuses_an_open_or_broken_setup() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().to_str().unwrap();
    let open = hindsight(&["serve", "--warehouse", wh, "--listen", &format!("0.0.0.0:{}", free_port())]);
    assert!(!open.status.success());
    assert!(String::from_utf8_lossy(&open.stderr).contains("without authentication"), "{open:?}");
    let bad_tls = hindsight(&["serve", "--warehouse", wh, "--listen", "127.0.0.1:0", "--tls-cert", "/nope.pem", "--tls-key", "/nope.key"]);
    assert!(!bad_tls.status.success());
    assert!(String::from_utf8_lossy(&bad_tls.stderr).contains("TLS"), "{bad_tls:?}");
    let config = dir.path().join("h.toml");
    std::fs::write(&config, "[users.x]\nrole = \"admin\"\nscram = \"plaintext-password\"\n").unwrap();
    let plain = hindsight(&["serve", "--warehouse", wh, "--config", config.to_str().unwrap()]);
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("users.x.scram"), "{plain:?}");
}

/// The README's production setup, end to end: `user add`, then `serve --config` with SCRAM and
/// metrics on their own port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_then_serve_with_passwords_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hindsight.toml");
    std::fs::write(&config, "# ours\nretention_days = 30\n").unwrap();
    let add = Command::new(env!("CARGO_BIN_EXE_hindsight"))
        .args(["user", "add", "ana", "--role", "reader", "--config", config.to_str().unwrap()])
        .env("HINDSIGHT_PASSWORD", "s3cret pass")
        .output()
        .unwrap();
    assert!(add.status.success(), "{add:?}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("# ours") && text.contains("[users.ana]") && text.contains("SCRAM-SHA-256$4096:"), "{text}");
    assert!(!text.contains("s3cret"), "the password itself was written: {text}");

    let (port, metrics_port) = (free_port(), free_port());
    let _server = KillOnDrop(Command::new(env!("CARGO_BIN_EXE_hindsight"))
        .args(["serve", "--warehouse", dir.path().join("wh").to_str().unwrap(), "--config", config.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let url = |pw: &str| format!("host=127.0.0.1 port={port} user=ana password='{pw}' dbname=hindsight");
    let mut client = None;
    for _ in 0..200 {
        if let Ok((c, conn)) = tokio_postgres::connect(&url("s3cret pass"), tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = client.expect("ana logs in with her password");
    c.simple_query("SELECT 1").await.unwrap();
    assert_eq!(crate::harness::sqlstate(c.simple_query("CREATE TABLE t (a INT)").await), "42501");
    assert!(tokio_postgres::connect(&url("wrong"), tokio_postgres::NoTls).await.is_err());
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.contains("hindsight_auth_failures_total 1"), "{body}");
    assert!(body.contains(r#"hindsight_errors_total{sqlstate="42501"} 1"#), "{body}");
}

/// A server process that is killed however the test ends, a failed assertion included.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
