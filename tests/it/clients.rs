//! Client libraries the README promises, driven against a real server: psycopg 3 (Python), and
//! an independent Python implementation of the dataset content hash.

use crate::harness::TestServer;

/// Whether a client the test needs is installed. CI installs them all (see .ci/run), so there a
/// missing one fails the test; elsewhere the test says it did not run.
fn available(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{what} is required in CI");
        eprintln!("{what} is not installed: skipping");
    }
    ok
}

/// Whether python3 can import these modules.
fn python_has(modules: &str) -> bool {
    let ok = std::process::Command::new("python3").args(["-c", &format!("import {modules}")]).output().is_ok_and(|o| o.status.success());
    available(&format!("python modules {modules}"), ok)
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
    hindsight::demo::write(&hindsight::engine::Engine::new(wh.clone(), hindsight::session::Session::background).expect("engine")).await.expect("demo");
    let server = TestServer::on(dir.path()).await;
    run_script(&server, "training_walkthrough.py", &[]).await;
}

/// psycopg2 (client-side parameters, executemany, copy_expert and copy_from, SQLSTATEs,
/// transactions), SQLAlchemy with pandas, and polars, each on an empty warehouse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_sqlalchemy_pandas_and_polars() {
    for (section, modules) in [
        ("psycopg2", "psycopg2"),
        ("sqlalchemy", "sqlalchemy, psycopg, pandas"),
        ("polars", "polars, connectorx, pyarrow, psycopg"),
    ] {
        if !python_has(modules) {
            continue;
        }
        let server = TestServer::start().await;
        run_script(&server, "drivers_check.py", &[section]).await;
    }
}

/// pgjdbc, the driver under DBeaver and Metabase: metadata browsing, batches, server-side
/// prepares, fetch sizes, CopyManager. CI installs Debian's build of the driver (see .ci/run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_browses_prepares_fetches_and_copies() {
    const JAR: &str = "/usr/share/java/postgresql.jar";
    let java = std::process::Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    if !available(&format!("java with {JAR}"), java && std::path::Path::new(JAR).exists()) {
        return;
    }
    let server = TestServer::start().await;
    let source = format!("{}/tests/clients/JdbcCheck.java", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("java")
        .args(["-cp", JAR, &source, &server.addr.port().to_string()])
        .output()
        .await
        .expect("run java");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("jdbc ok"),
        "JdbcCheck failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
