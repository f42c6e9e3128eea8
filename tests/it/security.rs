//! SCRAM-SHA-256 logins, roles judged on the plan, and TLS (through psql, with the test-only
//! certificates in tests/fixtures/tls, made with openssl and valid for a century).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use futures::SinkExt;
use hindsight::security::scram::{ITERATIONS, Verifier};
use hindsight::security::tls::{Tls, TlsConfig};
use hindsight::security::{Role, UserEntry, Users};
use tokio_postgres::{Client, NoTls};

use crate::harness::{TestServer, count, sqlstate};

const PEOPLE: [(&str, Role, &str); 3] =
    [("alice", Role::Admin, "wonderland"), ("bob", Role::Reader, "builder"), ("carol", Role::Writer, "singer")];

fn users() -> Users {
    let entries: BTreeMap<String, UserEntry> = PEOPLE
        .iter()
        .map(|(name, role, pw)| (name.to_string(), UserEntry { role: *role, scram: Verifier::from_password(pw, ITERATIONS).to_string() }))
        .collect();
    Users::from_entries(&entries).expect("users")
}

async fn login(addr: SocketAddr, user: &str, password: &str) -> Result<Client, tokio_postgres::Error> {
    let url = format!("host=127.0.0.1 port={} user={user} password={password} dbname=hindsight", addr.port());
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn as_user(server: &TestServer, user: &str) -> Client {
    let pw = PEOPLE.iter().find(|p| p.0 == user).expect("known user").2;
    login(server.addr, user, pw).await.expect("login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_admits_users_with_their_password_and_no_one_else() {
    let server = TestServer::start_with(|s| s.with_users(users())).await;
    let alice = as_user(&server, "alice").await;
    let row = alice.query_one("SELECT current_setting('session_user'), current_setting('is_superuser')", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("alice".into(), "on".into()));
    let bob = as_user(&server, "bob").await;
    let superuser: String = bob.query_one("SHOW is_superuser", &[]).await.unwrap().get(0);
    assert_eq!(superuser, "off");

    assert_eq!(sqlstate(login(server.addr, "alice", "builder").await), "28P01");
    // A name that is not a user fails the same way, at the same step.
    assert_eq!(sqlstate(login(server.addr, "mallory", "wonderland").await), "28P01");
    let url = format!("host=127.0.0.1 port={} user=alice dbname=hindsight", server.addr.port());
    assert!(tokio_postgres::connect(&url, NoTls).await.is_err(), "a login without a password got in");
    // The server lives on for everyone else.
    alice.simple_query("SELECT 1").await.unwrap();
}

/// Every refused statement gets 42501 and leaves the table's history as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_judged_on_the_plan_and_refusals_change_nothing() {
    let server = TestServer::start_with(|s| s.with_users(users())).await;
    let alice = as_user(&server, "alice").await;
    alice.batch_execute("CREATE TABLE t (a BIGINT, b TEXT); INSERT INTO t VALUES (1, 'x')").await.unwrap();
    let versions = |c: Client| async move {
        let n = c.query("DESCRIBE HISTORY t", &[]).await.unwrap().len();
        (c, n)
    };

    let bob = as_user(&server, "bob").await;
    let (bob, before) = versions(bob).await;
    assert_eq!(count(&bob, "t").await, 1);
    bob.query("SELECT * FROM t VERSION AS OF 0", &[]).await.unwrap();
    for refused in [
        "INSERT INTO t VALUES (2, 'y')",
        "UPDATE t SET b = 'z'",
        "DELETE FROM t",
        "TRUNCATE t",
        "EXPLAIN ANALYZE INSERT INTO t VALUES (3, 'w')",
        "MERGE INTO t USING (SELECT 1 AS a) s ON t.a = s.a WHEN MATCHED THEN DELETE",
        "CREATE TABLE u (a INT)",
        "CREATE TABLE u AS SELECT * FROM t",
        "DROP TABLE t",
        "VACUUM t",
        "OPTIMIZE t",
        "CREATE DATASET d AS SELECT * FROM t",
        "CREATE FEATURE VIEW fv ON t ENTITY (a) TIMESTAMP b",
        "CREATE EVALUATION e SCHEDULE '0 * * * *' AS SELECT count(*) FROM t",
    ] {
        assert_eq!(sqlstate(bob.simple_query(refused).await), "42501", "reader ran {refused}");
    }
    // The extended protocol: parsing is allowed, executing is judged.
    let insert = bob.prepare("INSERT INTO t VALUES ($1, $2)").await.unwrap();
    assert_eq!(sqlstate(bob.execute(&insert, &[&5i64, &"p"]).await), "42501");
    // Statements of our own take the same path (`commands::run`) when prepared.
    for refused in ["OPTIMIZE t", "RESTORE TABLE t TO VERSION AS OF 0", "VACUUM t"] {
        let prepared = bob.prepare(refused).await.unwrap();
        assert_eq!(sqlstate(bob.execute(&prepared, &[]).await), "42501", "reader ran prepared {refused}");
    }
    assert!(bob.query("SELECT count(*) FROM history('t')", &[]).await.is_ok(), "a reader reads history()");
    let copy = bob.copy_in::<_, bytes::Bytes>("COPY t FROM STDIN").await;
    assert_eq!(sqlstate(copy.map(|_| ())), "42501");

    let carol = as_user(&server, "carol").await;
    carol.simple_query("INSERT INTO t VALUES (2, 'y')").await.unwrap();
    carol.simple_query("UPDATE t SET b = 'z' WHERE a = 2").await.unwrap();
    let mut sink = Box::pin(carol.copy_in::<_, bytes::Bytes>("COPY t FROM STDIN").await.unwrap());
    sink.send(bytes::Bytes::from_static(b"3\tc\n")).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 1);
    for refused in ["DROP TABLE t", "CREATE TABLE u AS SELECT * FROM t", "VACUUM t", "OPTIMIZE t", "CREATE DATASET d AS SELECT * FROM t"] {
        assert_eq!(sqlstate(carol.simple_query(refused).await), "42501", "writer ran {refused}");
    }

    // Only carol's three writes happened.
    let (_, after) = versions(alice).await;
    assert_eq!(after, before + 3);
    assert_eq!(count(&carol, "t").await, 3);
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

fn tls() -> Tls {
    Tls::load(&TlsConfig::new(fixture("server.pem"), fixture("server.key"))).expect("TLS fixtures load")
}

#[test]
fn tls_takes_pkcs8_and_rsa_keys_and_refuses_a_bad_setup() {
    Tls::load(&TlsConfig::new(fixture("server-rsa.pem"), fixture("server-rsa.key"))).expect("RSA (PKCS#1) key");
    let mismatched = Tls::load(&TlsConfig::new(fixture("server.pem"), fixture("server-rsa.key")));
    assert!(mismatched.is_err(), "a key that is not the certificate's was accepted");
    let missing = Tls::load(&TlsConfig::new(fixture("nope.pem"), fixture("server.key")));
    assert!(missing.err().map(|e| e.to_string()).unwrap_or_default().contains("nope.pem"));
    let not_a_cert = Tls::load(&TlsConfig::new(fixture("server.key"), fixture("server.key")));
    assert!(not_a_cert.is_err());
}

/// psql's answer to `-c command` over a connection string, or None where psql is missing (CI
/// installs it).
async fn psql(conninfo: String, password: &str, command: &str) -> Option<Result<String, String>> {
    let (command, password) = (command.to_string(), password.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("psql").args([&conninfo, "-X", "-A", "-t", "-c", &command]).env("PGPASSWORD", password).env("PGCONNECT_TIMEOUT", "5").output()
    })
    .await
    .expect("psql task");
    match out {
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("psql not installed: skipping");
            None
        }
        Err(e) => panic!("psql is required in CI: {e}"),
        Ok(o) if o.status.success() => Some(Ok(String::from_utf8_lossy(&o.stdout).into_owned())),
        Ok(o) => Some(Err(String::from_utf8_lossy(&o.stderr).into_owned())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_over_tls_with_verify_full_and_channel_binding() {
    let server = TestServer::start_with(|s| s.with_users(users()).with_tls(tls())).await;
    let port = server.addr.port();
    let ca = fixture("ca.pem");
    let base = |mode: &str| format!("host=localhost port={port} user=alice dbname=hindsight sslmode={mode} sslrootcert={}", ca.display());
    let Some(full) = psql(base("verify-full"), "wonderland", "SELECT 40 + 2").await else { return };
    assert_eq!(full.expect("verify-full").trim(), "42");
    let info = psql(base("require"), "wonderland", "\\conninfo").await.unwrap().expect("require");
    assert!(info.contains("SSL connection"), "{info}");
    // SCRAM-SHA-256-PLUS: the proof is bound to this TLS session's certificate.
    let bound = psql(format!("{} channel_binding=require", base("verify-full")), "wonderland", "SELECT 1").await.unwrap();
    assert_eq!(bound.expect("channel binding").trim(), "1");
    let wrong = psql(base("verify-full"), "nope", "SELECT 1").await.unwrap();
    assert!(wrong.expect_err("a wrong password got in").to_lowercase().contains("password authentication failed"));
    // verify-full checks the name: the certificate is for localhost and 127.0.0.1 only.
    let other = format!(
        "host=db.example.com hostaddr=127.0.0.1 port={port} user=alice dbname=hindsight sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    let mismatch = psql(other, "wonderland", "SELECT 1").await.unwrap();
    assert!(mismatch.expect_err("a certificate for another name was accepted").contains("does not match host name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_clients_are_not_offered_channel_binding_and_tls_can_be_required() {
    // With TLS configured but not required, a plaintext client logs in with SCRAM-SHA-256: the
    // -PLUS variant needs the TLS session it would bind to, and libpq refuses a server that
    // offers it over plaintext.
    let open = TestServer::start_with(|s| s.with_users(users()).with_tls(tls())).await;
    let plain = format!("host=127.0.0.1 port={} user=alice dbname=hindsight sslmode=disable", open.addr.port());
    let Some(r) = psql(plain, "wonderland", "SELECT 1").await else { return };
    assert_eq!(r.expect("a plaintext login").trim(), "1");

    // Required: plaintext is refused with 28000 before any password is asked for.
    let mut required = TlsConfig::new(fixture("server.pem"), fixture("server.key"));
    required.require = true;
    let strict = TestServer::start_with(move |s| s.with_users(users()).with_tls(Tls::load(&required).unwrap())).await;
    let port = strict.addr.port();
    let refused = psql(format!("host=127.0.0.1 port={port} user=alice dbname=hindsight sslmode=disable"), "wonderland", "SELECT 1").await.unwrap();
    let refused = refused.expect_err("a plaintext connection got in");
    assert!(refused.contains("TLS"), "{refused}");
    let url = format!("host=127.0.0.1 port={port} user=alice password=wonderland dbname=hindsight");
    let e = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map(|_| ()).expect_err("plaintext");
    assert_eq!(e.code().map(|c| c.code()), Some("28000"));
    let ca = fixture("ca.pem");
    let tls_url = format!("host=localhost port={port} user=alice dbname=hindsight sslmode=verify-full sslrootcert={}", ca.display());
    assert_eq!(psql(tls_url, "wonderland", "SELECT 2").await.unwrap().expect("over TLS").trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_signed_by_the_configured_ca_are_required() {
    let mut config = TlsConfig::new(fixture("server.pem"), fixture("server.key"));
    config.client_ca = Some(fixture("client-ca.pem"));
    let server = TestServer::start_with(move |s| s.with_users(users()).with_tls(Tls::load(&config).unwrap())).await;
    let port = server.addr.port();
    // libpq wants a client key only its owner can read.
    let keys = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let to = keys.path().join(name);
        std::fs::copy(fixture(name), &to).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        to
    };
    let ca = fixture("ca.pem");
    let base = format!("host=localhost port={port} user=alice dbname=hindsight sslmode=verify-full sslrootcert={}", ca.display());
    let with = |cert: &str, key_file: &std::path::Path| format!("{base} sslcert={} sslkey={}", fixture(cert).display(), key_file.display());
    let Some(r) = psql(with("client.pem", &key("client.key")), "wonderland", "SELECT 3").await else { return };
    assert_eq!(r.expect("a client certificate from the CA").trim(), "3");
    let stranger = psql(with("stranger.pem", &key("stranger.key")), "wonderland", "SELECT 3").await.unwrap();
    assert!(stranger.is_err(), "a certificate from another CA got in");
    let without = psql(format!("{base} sslcert=/nonexistent sslkey=/nonexistent"), "wonderland", "SELECT 3").await.unwrap();
    assert!(without.is_err(), "a connection without a certificate got in");
    let plain = psql(format!("host=127.0.0.1 port={port} user=alice dbname=hindsight sslmode=disable"), "wonderland", "SELECT 3").await.unwrap();
    assert!(plain.is_err(), "a plaintext connection got around the certificate");
}

/// Server-side files: admins only, inside `file_directories` only, `..` and links resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_and_from_server_files_is_confined() {
    let root = tempfile::tempdir().unwrap();
    let exports = root.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let dirs = hindsight::security::paths::FileDirectories::new(std::slice::from_ref(&exports)).unwrap();
    let server = TestServer::start_with(move |s| {
        s.with_users(users()).with_limits(hindsight::config::Limits { file_directories: dirs, ..Default::default() })
    })
    .await;
    let alice = as_user(&server, "alice").await;
    alice
        .batch_execute("CREATE TABLE t (a BIGINT, b TEXT, at TIMESTAMP); INSERT INTO t VALUES (1, 'x,y', TIMESTAMP '2025-01-02 03:04:05'), (2, NULL, NULL)")
        .await
        .unwrap();
    let out = exports.join("t.csv");
    let written = alice.simple_query(&format!("COPY t TO '{}' WITH (FORMAT csv, HEADER)", out.display())).await.unwrap();
    assert!(matches!(written.last(), Some(tokio_postgres::SimpleQueryMessage::CommandComplete(2))));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text, "a,b,at\n1,\"x,y\",2025-01-02 03:04:05\n2,,\n");
    alice.batch_execute("CREATE TABLE u (a BIGINT, b TEXT, at TIMESTAMP)").await.unwrap();
    alice.simple_query(&format!("COPY u FROM '{}' WITH (FORMAT csv, HEADER)", out.display())).await.unwrap();
    let back = alice.query("SELECT a, b FROM u ORDER BY a", &[]).await.unwrap();
    assert_eq!(back.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, Option<String>>(1))).collect::<Vec<_>>(), [(1, Some("x,y".into())), (2, None)]);

    let escape = format!("{}/../t.csv", exports.display());
    assert_eq!(sqlstate(alice.simple_query(&format!("COPY t TO '{escape}' WITH (FORMAT csv)")).await), "42501");
    assert!(!root.path().join("t.csv").exists());
    assert_eq!(sqlstate(alice.simple_query("COPY t FROM '/etc/passwd'").await), "42501");
    assert_eq!(sqlstate(alice.simple_query("COPY t TO PROGRAM 'cat'").await), "0A000");
    let carol = as_user(&server, "carol").await;
    assert_eq!(sqlstate(carol.simple_query(&format!("COPY u FROM '{}' WITH (FORMAT csv, HEADER)", out.display())).await), "42501");
    assert_eq!(count(&alice, "u").await, 2);

    // Without file_directories nobody reaches files, admins included.
    let closed = TestServer::start().await;
    let c = closed.connect().await;
    c.batch_execute("CREATE TABLE t (a BIGINT)").await.unwrap();
    assert_eq!(sqlstate(c.simple_query(&format!("COPY t TO '{}' WITH (FORMAT csv)", exports.join("x.csv").display())).await), "42501");
}

/// Issue 19: `datasets.*` and `eval.*` are records: no role rewrites them through SQL, an
/// admin's DROP is logged, and REPRODUCE notices a copy changed behind hindsight's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_written_only_by_hindsight_and_an_admins_drop_is_logged() {
    let server = TestServer::start_with(|s| s.with_users(users())).await;
    let alice = as_user(&server, "alice").await;
    alice
        .batch_execute(
            "CREATE TABLE t (a BIGINT, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');
             CREATE DATASET d AS SELECT * FROM t;
             CREATE EVALUATION e SCHEDULE '0 0 * * *' AS SELECT count(*) AS n FROM t",
        )
        .await
        .unwrap();
    alice.query("RUN EVALUATION e FOR WINDOW '2026-03-02', '2026-03-03'", &[]).await.unwrap();
    let mut versions = Vec::new();
    for table in ["datasets.d", "eval.e"] {
        versions.push(alice.query(&format!("DESCRIBE HISTORY {table}"), &[]).await.unwrap().len());
    }
    let mut attempts = Vec::new();
    for (table, column) in [("datasets.d", "a"), ("eval.e", "n")] {
        attempts.extend([
            format!("INSERT INTO {table} SELECT * FROM {table}"),
            format!("UPDATE {table} SET {column} = {column}"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
            format!("MERGE INTO {table} USING (SELECT 1 AS a) s ON true WHEN MATCHED THEN DELETE"),
        ]);
    }
    attempts.push("CREATE TABLE eval.mine (a INT)".into());
    attempts.push("CREATE TABLE datasets.mine AS SELECT 1 AS a".into());
    for user in ["bob", "carol", "alice"] {
        let c = as_user(&server, user).await;
        for sql in &attempts {
            assert_eq!(sqlstate(c.simple_query(sql).await), "42501", "{user} ran {sql}");
        }
        for table in ["datasets.d", "eval.e"] {
            if user != "alice" {
                assert_eq!(sqlstate(c.simple_query(&format!("DROP TABLE {table}")).await), "42501", "{user} dropped {table}");
            }
            // tokio-postgres cannot use a connection again after a refused COPY: one each.
            let copier = as_user(&server, user).await;
            let copy = copier.copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN")).await;
            assert_eq!(sqlstate(copy.map(|_| ())), "42501", "{user} copied into {table}");
        }
    }
    for (table, before) in ["datasets.d", "eval.e"].into_iter().zip(versions) {
        let after = alice.query(&format!("DESCRIBE HISTORY {table}"), &[]).await.unwrap().len();
        assert_eq!(after, before, "{table} was written");
    }
    assert_eq!(count(&alice, "datasets.d").await, 2);
    let copy_identical = |row: tokio_postgres::Row| (row.get::<_, bool>("identical"), row.get::<_, Option<bool>>("copy_identical"));
    let reproduced = alice.query_one("REPRODUCE DATASET d", &[]).await.unwrap();
    assert_eq!(copy_identical(reproduced), (true, Some(true)));

    // Someone with write access to the bucket deletes a row through another Delta client.
    let url = url::Url::from_directory_path(server.warehouse.join("datasets/d")).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    table.delete().with_predicate("a = 1").await.unwrap();
    let reproduced = alice.query_one("REPRODUCE DATASET d", &[]).await.unwrap();
    assert_eq!(copy_identical(reproduced), (true, Some(false)), "the tampered copy was not noticed");

    // An admin may drop either; each drop is logged with the version that went.
    alice.batch_execute("DROP TABLE datasets.d; DROP TABLE eval.e").await.unwrap();
    let drops = alice.query("SELECT table_name, last_version, dropped_by FROM hindsight.drops ORDER BY table_name", &[]).await.unwrap();
    let drops: Vec<(String, i64, String)> = drops.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(drops, vec![("datasets.d".into(), 1, "alice".into()), ("eval.e".into(), 1, "alice".into())]);
    let reproduced = alice.query_one("REPRODUCE DATASET d", &[]).await.unwrap();
    assert_eq!(copy_identical(reproduced), (true, None));
    // The name stays taken: the dataset is its registry row, not its copy.
    assert_eq!(sqlstate(alice.simple_query("CREATE DATASET d AS SELECT 1").await), "42710");
}
