//! Hostile and unlucky input against the real binary: statements built to overflow the stack or
//! exhaust memory, a client that hangs up mid-query, names that try to leave the warehouse,
//! corrupt logs, a full disk and malformed authentication. Each must cost only its own
//! statement (or connection), with the right SQLSTATE, while a probe on another connection keeps
//! getting answers throughout.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::harness::{TestServer, connect, message, sqlstate};
use crate::process::{KillOnDrop, free_port, peak_rss_mib, spawn_with, wait_ready};

/// What a prober on its own connection saw while other statements ran.
struct Probe {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<(Duration, Vec<String>)>,
}

impl Probe {
    /// Runs `SELECT 1` every 20 ms on a connection of its own.
    async fn start(port: u16) -> Self {
        let c = connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), answered.clone());
        let task = tokio::spawn(async move {
            let (mut slowest, mut errors) = (Duration::ZERO, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                match c.simple_query("SELECT 1").await {
                    Ok(_) => _ = count.fetch_add(1, Ordering::Relaxed),
                    Err(e) => errors.push(e.to_string()),
                }
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (slowest, errors)
        });
        Self { stop, answered, task }
    }

    /// Runs `statement` and checks that the probe was answered several times while it ran: a
    /// server that stalls other connections behind one statement answers the probe only after
    /// it. This orders events rather than timing them, so a slow machine cannot fail it.
    async fn answers_during<T>(&self, statement: impl std::future::Future<Output = T>) -> T {
        let before = self.answered.load(Ordering::Relaxed);
        let result = statement.await;
        let during = self.answered.load(Ordering::Relaxed) - before;
        assert!(during >= 3, "the probe was answered {during} times while the statement ran");
        result
    }

    /// Stops the probe and checks that every probe was answered. How long the slowest waited is
    /// reported, not judged (benches/hostile.py measures it on a release build).
    async fn check(self) -> (u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let (slowest, errors) = self.task.await.unwrap();
        let answered = self.answered.load(Ordering::Relaxed);
        assert!(errors.is_empty(), "the probe saw errors: {errors:?}");
        assert!(answered > 0, "the probe was never answered");
        (answered, slowest)
    }
}

async fn one_i64(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql:.80}: {e}")).get(0)
}

fn list(range: std::ops::Range<i64>) -> String {
    range.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_long_expressions_are_answered_or_refused_and_the_server_lives() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = KillOnDrop(spawn_with(dir.path(), port, &[], Stdio::null()));
    let c = wait_ready(port).await;
    c.batch_execute("CREATE TABLE t (id BIGINT); INSERT INTO t SELECT value FROM generate_series(1, 5) AS s(value)").await.unwrap();
    let probe = Probe::start(port).await;

    // What PostgreSQL answers, hindsight answers.
    assert_eq!(one_i64(&c, &format!("SELECT {}", vec!["1::BIGINT"; 300].join(" + "))).await, 300);
    let ors = (0..5000).map(|i| format!("id = {i}")).collect::<Vec<_>>().join(" OR ");
    assert_eq!(one_i64(&c, &format!("SELECT count(*) FROM t WHERE {ors}")).await, 5);
    let ands = (0..5000).map(|i| format!("id <> {}", i + 100)).collect::<Vec<_>>().join(" AND ");
    // ... and a long chain of conditions that are not comparisons with constants, up to the limit.
    let mixed = (0..200).map(|i| format!("id * {} <> {}", i + 2, i + 1000)).collect::<Vec<_>>().join(" AND ");
    assert_eq!(one_i64(&c, &format!("SELECT count(*) FROM t WHERE {mixed}")).await, 5);
    assert_eq!(one_i64(&c, &format!("SELECT count(*) FROM t WHERE {ands}")).await, 5);
    assert_eq!(one_i64(&c, &format!("SELECT count(*) FROM t WHERE id IN ({})", list(0..10_000))).await, 5);
    assert_eq!(one_i64(&c, &format!("SELECT count(*) FROM t WHERE id NOT IN ({})", list(3..10_003))).await, 2);
    assert_eq!(one_i64(&c, &format!("SELECT count(*) FROM t WHERE id IN ({}) OR id = 1", list(4..30_004))).await, 3);
    // A DELETE with a long list, as ORMs send them, deletes what it names and nothing else.
    assert_eq!(c.execute(format!("DELETE FROM t WHERE id IN ({})", list(5..20_005)).as_str(), &[]).await.unwrap(), 1);
    assert_eq!(c.execute(format!("UPDATE t SET id = id * 10 WHERE id NOT IN ({})", list(2..20_002)).as_str(), &[]).await.unwrap(), 1);
    assert_eq!(one_i64(&c, "SELECT sum(id) FROM t").await, 10 + 2 + 3 + 4);

    // What PostgreSQL refuses as too deep (54001), hindsight refuses too, at once.
    let deep = format!("SELECT {}", vec!["1"; 5000].join(" + "));
    assert_eq!(sqlstate(c.simple_query(&deep).await), "54001");
    let chain = (0..1500).map(|i| format!("id * {} <> {}", i + 2, i + 1000)).collect::<Vec<_>>().join(" AND ");
    assert_eq!(sqlstate(c.simple_query(&format!("SELECT count(*) FROM t WHERE {chain}")).await), "54001");
    let run = format!("SELECT {}", vec!["1"; 60_000].join("+"));
    assert_eq!(sqlstate(c.simple_query(&run).await), "54001");
    let parens = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    assert_eq!(sqlstate(c.simple_query(&parens).await), "54001");
    let calls = format!("SELECT {}1{}", "abs(".repeat(200), ")".repeat(200));
    assert_eq!(sqlstate(c.simple_query(&calls).await), "54001");

    assert_eq!(one_i64(&c, "SELECT count(*) FROM t").await, 4);
    let (answered, slowest) = probe.check().await;
    eprintln!("deep expressions: all answered or refused with 54001; probe answered {answered} times, slowest {slowest:?}");
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_fail_alone_within_the_server_pool() {
    const POOL_MIB: u64 = 256;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = KillOnDrop(spawn_with(dir.path(), port, &["--memory-pool-mb", &POOL_MIB.to_string()], Stdio::null()));
    let c = wait_ready(port).await;
    let before = peak_rss_mib(server.0.id());
    let probe = Probe::start(port).await;

    // One value over PostgreSQL's 1 GB limit is refused as PostgreSQL refuses it, unallocated.
    assert_eq!(sqlstate(c.simple_query("SELECT repeat('x', 1500000000)").await), "54000");
    assert_eq!(sqlstate(c.simple_query("SELECT lpad('x', 1500000000)").await), "54000");
    // Values under it, but more of them than the pool holds, are refused by the pool.
    assert_eq!(sqlstate(c.simple_query("SELECT length(repeat('x', 200000000)) FROM generate_series(1, 4)").await), "53200");
    assert_eq!(sqlstate(c.simple_query("SELECT cardinality(range(1, 100000000))").await), "53200");
    // An aggregate that grows without bound, and a sort of a cross join (spilling, then stopped).
    let agg = "SELECT length(string_agg(repeat('x', 1000), ',')) FROM generate_series(1, 2000000)";
    assert_eq!(sqlstate(c.simple_query(agg).await), "53200");
    c.simple_query("SET statement_timeout = '3s'").await.unwrap();
    let sort = "SELECT a.value * b.value AS v, repeat('y', 50) AS pad FROM generate_series(1::BIGINT, 100000) a(value), generate_series(1::BIGINT, 100000) b(value) ORDER BY v";
    let stopped = sqlstate(probe.answers_during(c.simple_query(sort)).await);
    assert!(stopped == "57014" || stopped == "53200", "the sort ended with {stopped}");
    c.simple_query("RESET statement_timeout").await.unwrap();
    // A large constant is repeated on every row of a batch: 400 rows of a 10 MB one, with the
    // statement's batches cut to fit.
    let big = "x".repeat(10 << 20);
    let repeated = format!("SELECT max(length(x || value::text))::BIGINT FROM (SELECT '{big}' AS x, value FROM generate_series(1, 400) AS s(value)) s");
    assert_eq!(one_i64(&c, &repeated).await, (10 << 20) + 3);
    // Engine settings are bounded, for admins too.
    assert_eq!(sqlstate(c.simple_query("SET datafusion.execution.batch_size = 1000000000").await), "22023");
    assert_eq!(sqlstate(c.simple_query("SET datafusion.runtime.memory_limit = '1T'").await), "55P02");
    c.simple_query("SET datafusion.execution.batch_size = 4096").await.unwrap();

    // The same session, and the server, carry on.
    assert_eq!(one_i64(&c, "SELECT sum(length(repeat('x', 10))) FROM generate_series(1, 1000)").await, 10_000);
    let (answered, slowest) = probe.check().await;
    eprintln!("memory bombs: probe answered {answered} times, slowest {slowest:?}");
    let peak = peak_rss_mib(server.0.id());
    eprintln!("memory bombs: all refused; server peak {peak} MiB (pool {POOL_MIB} MiB, {before} MiB at start)");
    if cfg!(target_os = "linux") {
        assert!(peak < before + POOL_MIB + 512, "the server's memory peaked at {peak} MiB");
    }
}

/// CPU seconds a process has used (user and system), from the kernel.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stops_when_its_client_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = KillOnDrop(spawn_with(dir.path(), port, &[], Stdio::null()));
    let _ = wait_ready(port).await;
    let pid = server.0.id();
    let url = format!("host=127.0.0.1 port={port} user=hindsight dbname=hindsight");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    // Runs for many minutes, producing nothing until its end.
    let endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000000000) SELECT count(*) FROM r";
    let query = tokio::spawn(async move { client.simple_query(endless).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy_from = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = cpu_seconds(pid) - busy_from;
    // Other tests share the cores, so "busy" is only a share of one; what matters is the drop.
    assert!(busy > 0.25, "the query did not keep the server busy ({busy:.2} s of CPU in 1 s)");
    // The client goes away without a word, as a killed process or a dropped network does.
    connection.abort();
    query.abort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_from = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cpu_seconds(pid) - idle_from;
    eprintln!("hang-up: {busy:.2} s of CPU per second while the query ran, {:.2} per second after its client left", after / 2.0);
    assert!(after / 2.0 < busy / 4.0, "the server went on using {after:.2} s of CPU in 2 s after the client hung up");
    let c = wait_ready(port).await;
    assert_eq!(one_i64(&c, "SELECT 1::BIGINT").await, 1);
}

#[tokio::test]
async fn names_that_cannot_be_folders_are_refused_and_nothing_leaves_the_warehouse() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("warehouse");
    std::fs::create_dir_all(&root).unwrap();
    let server = TestServer::on(&root).await;
    let c = server.connect().await;
    let bad = [
        r#""../../x""#,
        r#""../hindsight/evil""#,
        r#"datasets."../public/t""#,
        r#""x#y""#,
        r#""q?r""#,
        r#""%2e%2e/z""#,
        r#""/tmp/absolute""#,
        r#"".hidden""#,
        r#""a\b""#,
        r#""tab	name""#,
        r#""""#,
    ];
    for name in bad {
        let r = c.simple_query(&format!("CREATE TABLE {name} (a INT)")).await;
        let state = match &r {
            Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_default(),
            Ok(_) => "created".to_string(),
        };
        // An empty quoted identifier is PostgreSQL's own syntax error.
        assert!(state == "42602" || (name == r#""""# && state == "42601"), "{name}: {state} {r:?}");
    }
    assert_eq!(sqlstate(c.simple_query(r#"CREATE TABLE hindsight."../public/t2" (a INT)"#).await), "42501");
    assert_eq!(sqlstate(c.simple_query(r#"SELECT * FROM "../../x""#).await), "42P01");
    // The warehouse's parent holds the warehouse and nothing else; each schema only tables.
    let outside: Vec<_> = std::fs::read_dir(outer.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("warehouse")]);
    // Names PostgreSQL users write do work, and come back as written.
    for name in [r#""my table""#, r#""Ünïcode_名前""#, r#""price$eur""#, r#""x-y""#, "plain"] {
        c.batch_execute(&format!("CREATE TABLE {name} (a INT); INSERT INTO {name} VALUES (7)")).await.unwrap();
        assert_eq!(c.query_one(&format!("SELECT a FROM {name}"), &[]).await.unwrap().get::<_, i32>(0), 7);
        c.batch_execute(&format!("DROP TABLE {name}")).await.unwrap();
    }
}

/// Replaces a table's next log entry (the version after its latest) with `bytes`.
fn write_next_entry(warehouse: &Path, schema: &str, table: &str, bytes: &[u8]) -> String {
    let log = warehouse.join(schema).join(table).join("_delta_log");
    let next = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".json")?.parse::<u64>().ok())
        .max()
        .unwrap()
        + 1;
    let name = format!("{next:020}.json");
    std::fs::write(log.join(&name), bytes).unwrap();
    name
}

#[tokio::test]
async fn a_corrupt_table_fails_alone_naming_itself_and_its_log_entry() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE good (id BIGINT); INSERT INTO good VALUES (1);
         CREATE TABLE empty_entry (id BIGINT); INSERT INTO empty_entry VALUES (1);
         CREATE TABLE garbage (id BIGINT); INSERT INTO garbage VALUES (1);",
    )
    .await
    .unwrap();
    c.simple_query("CREATE DATASET ds AS SELECT * FROM good").await.unwrap();
    // Read once, so that the server holds their snapshots and must notice the change.
    for t in ["good", "empty_entry", "garbage"] {
        assert_eq!(one_i64(&c, &format!("SELECT count(*) FROM {t}")).await, 1);
    }
    let empty = write_next_entry(&server.warehouse, "public", "empty_entry", b"");
    let junk = write_next_entry(&server.warehouse, "public", "garbage", b"this is not json\n");

    for (table, file) in [("empty_entry", &empty), ("garbage", &junk)] {
        let r = c.simple_query(&format!("SELECT * FROM {table}")).await;
        let e = r.expect_err("a corrupt table read");
        assert_eq!(e.code().map(|c| c.code()), Some("XX001"), "{e:?}");
        let text = message::<()>(Err(e));
        assert!(text.contains(&format!("public.{table}")) && text.contains(file.as_str()), "{text}");
        assert!(!text.contains("backtrace") && !text.lines().any(|l| l.trim_start().starts_with("0:")), "{text}");
    }
    // Everything else keeps working: other tables, the catalog, listings, datasets.
    assert_eq!(one_i64(&c, "SELECT count(*) FROM good").await, 1);
    let columns = c
        .query("SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1", &[])
        .await
        .unwrap();
    assert_eq!(columns.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), vec!["good"]);
    let listed = c.query("SELECT relname FROM pg_catalog.pg_class WHERE relname = 'good'", &[]).await.unwrap();
    assert_eq!(listed.len(), 1);
    let reproduced = c.query_one("REPRODUCE DATASET ds", &[]).await.unwrap();
    assert!(reproduced.get::<_, bool>("identical"));
    // A corrupt registry is reported as such, not as a missing dataset.
    let registry = write_next_entry(&server.warehouse, "hindsight", "datasets", b"{\"add\": truncated");
    let e = c.simple_query("REPRODUCE DATASET ds").await.expect_err("the registry is corrupt");
    assert_eq!(e.code().map(|c| c.code()), Some("XX001"));
    assert!(message::<()>(Err(e)).contains(&registry));
    assert_eq!(one_i64(&c, "SELECT count(*) FROM good").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_53100_and_loses_no_committed_row() {
    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs", mount.path().to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: this machine does not let the test mount a small tmpfs (it needs root)");
        return;
    }
    let unmount = scopeguard(mount.path().to_path_buf());
    let port = free_port();
    let server = KillOnDrop(spawn_with(&mount.path().join("wh"), port, &["--auto-compact-files", "0"], Stdio::null()));
    let c = wait_ready(port).await;
    c.batch_execute("CREATE TABLE t (id BIGINT, s TEXT); INSERT INTO t VALUES (1, 'kept')").await.unwrap();
    let fill = "INSERT INTO t SELECT value, md5(value::text) || md5((value + 1)::text) FROM generate_series(1, 400000) AS s(value)";
    assert_eq!(sqlstate(c.simple_query(fill).await), "53100");
    // Rows that do not compress: 600,000 of them are more than the disk holds.
    let sink = c.copy_in::<_, bytes::Bytes>("COPY t FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut failed = None;
    for i in 0..600_000u64 {
        let mut noise = String::with_capacity(64);
        for _ in 0..4 {
            state = state.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            noise.push_str(&format!("{:016x}", z ^ (z >> 31)));
        }
        if let Err(e) = futures::SinkExt::send(&mut sink, bytes::Bytes::from(format!("{i}\t{noise}\n"))).await {
            failed = Some(e);
            break;
        }
    }
    let copied = match failed {
        Some(e) => Err(e),
        None => sink.as_mut().finish().await,
    };
    assert_eq!(sqlstate(copied), "53100", "COPY into a full disk");
    assert_eq!(c.query_one("SELECT count(*), min(s) FROM t", &[]).await.unwrap().get::<_, i64>(0), 1);
    drop(server);
    drop(unmount);
}

/// Unmounts a test's tmpfs when dropped.
fn scopeguard(path: std::path::PathBuf) -> impl Drop {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    Unmount(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authentication_messages_end_their_connection_without_a_panic() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("h.toml");
    let added = std::process::Command::new(env!("CARGO_BIN_EXE_hindsight"))
        .args(["user", "add", "ana", "--role", "reader", "--config", config.to_str().unwrap()])
        .env("HINDSIGHT_PASSWORD", "secret")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(added.success());
    let log = dir.path().join("server.log");
    let port = free_port();
    let _server = KillOnDrop(spawn_with(
        &dir.path().join("wh"),
        port,
        &["--config", config.to_str().unwrap()],
        std::fs::File::create(&log).unwrap(),
    ));
    let startup = {
        let body = [&196608i32.to_be_bytes()[..], b"user\0ana\0database\0hindsight\0\0"].concat();
        [&((body.len() + 4) as i32).to_be_bytes()[..], &body].concat()
    };
    let password = |body: &[u8]| [&b"p"[..], &((body.len() + 4) as i32).to_be_bytes(), body].concat();
    let mech = |len: i32, data: &[u8]| [&b"SCRAM-SHA-256\0"[..], &len.to_be_bytes(), data].concat();
    let cases: Vec<Vec<u8>> = vec![
        password(b""),
        password(b"\0"),
        password(b"SCRAM-SHA-256\0"),
        password(&mech(100, b"abc")),
        password(&mech(-1, b"")),
        password(&mech(5, b"\xff\xfe\x00zz")),
        password(&mech(16, b"p=x,,n=,r=abcdef")),
    ];
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for case in &cases {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&startup).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        s.write_all(case).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap_or(0);
        let reply = &buf[..n];
        assert!(reply.first() == Some(&b'E') && reply.windows(6).any(|w| w == b"C08P01"), "{case:?} got {reply:?}");
    }
    // The server is alive, a real login works, and nothing panicked on the way.
    let url = format!("host=127.0.0.1 port={port} user=ana password=secret dbname=hindsight");
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(c.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get::<_, i64>(0), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panic"), "the server panicked:\n{text}");
}
