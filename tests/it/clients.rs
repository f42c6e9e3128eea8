//! Client libraries the README promises, driven against a real server: psycopg 3 (Python).

use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_copies_in_and_out_and_prepares() {
    let has_psycopg = std::process::Command::new("python3")
        .args(["-c", "import psycopg"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_psycopg {
        // CI installs psycopg (see .ci/run); elsewhere the test says it did not run.
        assert!(std::env::var_os("CI").is_none(), "psycopg is required in CI");
        eprintln!("psycopg not installed: skipping");
        return;
    }
    let server = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/psycopg_check.py");
    let port = server.addr.port().to_string();
    let out = tokio::process::Command::new("python3").args([script, &port]).output().await.expect("run python3");
    assert!(
        out.status.success(),
        "psycopg check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
