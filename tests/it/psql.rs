//! psql itself, against the server: the meta-commands the README promises.

use std::process::Command;

use crate::harness::TestServer;

async fn psql(server: &TestServer, command: &str) -> Option<String> {
    let port = server.addr.port().to_string();
    let cmd = command.to_string();
    // psql blocks; the server runs on this test's runtime, so psql must not block it.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "hindsight", "-X", "-c", &cmd])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
    })
    .await
    .expect("psql task");
    let out = match out {
        Ok(o) => o,
        // CI installs psql (see .ci/run); on a developer machine without it the test says so.
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("psql not installed: skipping the psql smoke test");
            return None;
        }
        Err(e) => panic!("psql is required in CI: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql {command:?} failed: {stderr}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands_describe_the_warehouse() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE loans (id BIGINT NOT NULL, applicant TEXT, amount DOUBLE, opened TIMESTAMP, approved BOOLEAN)",
    )
    .await
    .unwrap();
    let Some(dt) = psql(&server, "\\dt").await else { return };
    let listed = |schema: &str, table: &str| {
        dt.lines().any(|l| l.split('|').map(str::trim).take(2).eq([schema, table]))
    };
    assert!(listed("public", "loans") && listed("hindsight", "datasets"), "{dt}");
    let d = psql(&server, "\\d loans").await.unwrap();
    for expected in ["bigint", "not null", "text", "double precision", "timestamp without time zone", "boolean"] {
        assert!(d.contains(expected), "\\d loans lacks {expected}:\n{d}");
    }
    let dn = psql(&server, "\\dn").await.unwrap();
    for schema in ["public", "hindsight", "datasets", "eval"] {
        assert!(dn.contains(schema), "{dn}");
    }
    let l = psql(&server, "\\l").await.unwrap();
    assert!(l.contains("hindsight"), "{l}");
    // A bare \df lists user functions: none, as in a fresh PostgreSQL database. Ours are
    // built-ins, listed by name or with S, with PostgreSQL's own.
    let df = psql(&server, "\\df").await.unwrap();
    assert!(df.contains("(0 rows)"), "{df}");
    let df = psql(&server, "\\df *auc").await.unwrap();
    for expected in ["roc_auc", "pr_auc", "score double precision, label boolean", "agg"] {
        assert!(df.contains(expected), "\\df *auc lacks {expected}:\n{df}");
    }
    let df = psql(&server, "\\dfS drift*").await.unwrap();
    assert!(df.contains("SETOF record") && df.contains("drift_test"), "{df}");
    let df = psql(&server, "\\dfS abs").await.unwrap();
    assert!(df.contains("double precision | double precision"), "{df}");
}
