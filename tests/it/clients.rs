//! Client libraries the README promises, driven against a real server: psycopg 3 (Python), and
//! an independent Python implementation of the dataset content hash.

use crate::harness::TestServer;

/// Whether python3 can import these modules. CI installs them (see .ci/run), so there a missing
/// one fails the test; elsewhere the test says it did not run.
fn python_has(modules: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "python modules {modules} are required in CI");
        eprintln!("python modules {modules} not installed: skipping");
    }
    ok
}

async fn run_script(server: &TestServer, script: &str, args: &[&str]) {
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let port = server.addr.port().to_string();
    let mut all = vec![script.as_str(), port.as_str()];
    all.extend_from_slice(args);
    let out = tokio::process::Command::new("python3").args(&all).output().await.expect("run python3");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_copies_in_and_out_and_prepares() {
    if !python_has("psycopg") {
        return;
    }
    let server = TestServer::start().await;
    run_script(&server, "psycopg_check.py", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_content_hash_agrees_with_an_independent_implementation() {
    if !python_has("psycopg, blake3") {
        return;
    }
    for seed in ["1", "2", "3"] {
        let server = TestServer::start().await;
        run_script(&server, "hash_check.py", &[seed]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_training_walkthrough_runs_against_the_demo_warehouse() {
    if !python_has("psycopg, pandas") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = hindsight::catalog::Warehouse::open(dir.path().to_str().expect("utf8")).await.expect("open");
    hindsight::demo::write(&wh).await.expect("demo");
    let server = TestServer::on(dir.path()).await;
    run_script(&server, "training_walkthrough.py", &[]).await;
}
