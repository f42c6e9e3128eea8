//! The differential test: every query of `sql/postgres/queries/*.sql` runs against PostgreSQL 15
//! (started here as a cluster of its own, on a free loopback port) and against hindsight, on the
//! same rows (`sql/postgres/setup.sql`). The expected answer is PostgreSQL's, taken at test time:
//! the same outcome (rows, or an error), the same column names and type OIDs, the same values
//! (floats to 1e-12), in the same order where the query orders its result.
//!
//! A query whose answer still differs is listed in `sql/postgres/differences.toml`, each with the
//! reason. The test fails for a query that differs and is not listed, and for a listed one that
//! no longer differs, so the list is always the truth. `HINDSIGHT_RECORD_DIFFERENCES=1` rewrites
//! the list from this run's differences, keeping the reasons someone wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::process::{KillOnDrop, free_port, spawn, wait_ready};

/// A PostgreSQL server of the test's own, stopped (and its folder removed) when dropped.
struct Postgres {
    _server: KillOnDrop,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The folder holding `initdb` and `postgres`: Debian's `/usr/lib/postgresql/<major>/bin`, the
/// newest there.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

/// A command as the `postgres` user when this process is root (initdb and postgres refuse to
/// run as root), as is otherwise.
fn as_postgres(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

async fn start_postgres() -> Option<Postgres> {
    let Some(bin) = postgres_bin() else {
        if std::env::var_os("CI").is_some() {
            panic!("PostgreSQL is required in CI (Debian's postgresql package; .ci/run installs it)");
        }
        eprintln!("PostgreSQL is not installed: skipping the differential test");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let owned = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
        assert!(owned.success(), "chown of the PostgreSQL test folder");
    }
    let data = dir.path().join("data");
    let init = as_postgres(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("initdb");
    assert!(init.success(), "initdb failed");
    let port = free_port();
    let server = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir.path())
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "TimeZone=UTC", "-c", "DateStyle=ISO, MDY"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postgres");
    let server = KillOnDrop(server);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some(Postgres { _server: server, port, _dir: dir });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("PostgreSQL did not start");
}

async fn connect_to(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// What one server answered: its columns (name, type OID) and rows as text, or its SQLSTATE.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Rows { columns: Vec<(String, u32)>, rows: Vec<Vec<Option<String>>> },
    Error(String),
}

async fn answer(c: &Client, sql: &str) -> Answer {
    let error = |e: tokio_postgres::Error| Answer::Error(e.code().map_or_else(|| e.to_string(), |c| c.code().to_string()));
    // Column names and types as a driver sees them (Describe), then the values as text.
    let columns = match c.prepare(sql).await {
        Ok(s) => s.columns().iter().map(|c| (c.name().to_string(), c.type_().oid())).collect(),
        Err(e) => return error(e),
    };
    match tokio::time::timeout(Duration::from_secs(60), c.simple_query(sql)).await {
        Ok(Ok(messages)) => Answer::Rows {
            columns,
            rows: messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
                    _ => None,
                })
                .collect(),
        },
        Ok(Err(e)) => error(e),
        Err(_) => Answer::Error("timed out".into()),
    }
}

const FLOAT_OIDS: [u32; 3] = [700, 701, 1700];

/// Whether two answers agree, and if not, how they differ (a line a person can read).
fn compare(sql: &str, pg: &Answer, ours: &Answer) -> Result<(), String> {
    match (pg, ours) {
        (Answer::Error(a), Answer::Error(b)) if a == b => Ok(()),
        (Answer::Error(a), Answer::Error(b)) => Err(format!("both fail, PostgreSQL with {a}, hindsight with {b}")),
        (Answer::Error(a), Answer::Rows { .. }) => Err(format!("PostgreSQL fails with {a}, hindsight answers")),
        (Answer::Rows { .. }, Answer::Error(b)) => Err(format!("hindsight fails with {b}")),
        (Answer::Rows { columns: pc, rows: pr }, Answer::Rows { columns: oc, rows: or }) => {
            let names = |c: &[(String, u32)]| c.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            if names(pc) != names(oc) {
                return Err(format!("column names {:?}, hindsight {:?}", names(pc), names(oc)));
            }
            let types = |c: &[(String, u32)]| c.iter().map(|(_, t)| *t).collect::<Vec<_>>();
            // Values are compared even where the types differ, so that a type difference cannot
            // hide a value that differs too.
            let values = same_rows(sql, pc, pr, oc, or);
            if types(pc) != types(oc) {
                let values = values.map_or_else(|how| format!(" and {how}"), |()| ", values agree".to_string());
                return Err(format!("column types (OIDs) {:?}, hindsight {:?}{values}", types(pc), types(oc)));
            }
            values
        }
    }
}

/// Whether two row sets agree as text (floats to 1e-12 where either side's column is a float).
fn same_rows(sql: &str, pc: &[(String, u32)], pr: &[Vec<Option<String>>], oc: &[(String, u32)], or: &[Vec<Option<String>>]) -> Result<(), String> {
    let floats: Vec<bool> = pc.iter().zip(oc).map(|((_, a), (_, b))| FLOAT_OIDS.contains(a) || FLOAT_OIDS.contains(b)).collect();
    let (mut pr, mut or) = (pr.to_vec(), or.to_vec());
    if !ordered(sql) {
        pr.sort();
        or.sort();
    }
    if pr.len() != or.len() {
        return Err(format!("{} rows, hindsight {}", pr.len(), or.len()));
    }
    for (a, b) in pr.iter().zip(&or) {
        let same = a.len() == b.len()
            && a.iter().zip(b).zip(floats.iter().chain(std::iter::repeat(&false))).all(|((x, y), float)| match (x, y) {
                (Some(x), Some(y)) if *float => close(x, y),
                _ => x == y,
            });
        if !same {
            return Err(format!("a row {a:?}, hindsight {b:?}"));
        }
    }
    Ok(())
}

/// Whether a difference is an answer where PostgreSQL's differs in its values, or an answer
/// where PostgreSQL refuses: what a user would take for PostgreSQL's answer and be misled by.
fn answers_differently(how: &str) -> bool {
    how.starts_with("a row") || how.contains("and a row") || how.contains(" rows, hindsight") || how.starts_with("PostgreSQL fails")
}

fn close(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        _ if a == b => true,
        (Ok(x), Ok(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// Whether the query orders its result: an ORDER BY after its last closing parenthesis.
fn ordered(sql: &str) -> bool {
    let upper = sql.to_uppercase();
    let tail = upper.rsplit_once(')').map_or(upper.as_str(), |(_, t)| t);
    tail.contains("ORDER BY")
}

/// The statements of a file: each ends with `;` at the end of a line; `--` lines are comments.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_string());
            current.clear();
        }
    }
    out
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql/postgres")
}

/// `differences.toml`: per query id (`file#n`, n counting from 1), why hindsight's answer differs.
fn known_differences() -> BTreeMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        reason: String,
    }
    let text = std::fs::read_to_string(corpus_dir().join("differences.toml")).unwrap_or_default();
    let table: BTreeMap<String, Entry> = toml::from_str(&text).expect("differences.toml parses");
    table.into_iter().map(|(k, v)| (k, v.reason)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_and_bi_queries_answer_as_postgresql_does() {
    let Some(pg) = start_postgres().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _hindsight = KillOnDrop(spawn(dir.path(), port));
    let ours = wait_ready(port).await;
    let theirs = connect_to(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", pg.port)).await;
    for stmt in statements(&std::fs::read_to_string(corpus_dir().join("setup.sql")).unwrap()) {
        theirs.batch_execute(&stmt).await.unwrap_or_else(|e| panic!("PostgreSQL setup: {stmt}: {e}"));
        ours.batch_execute(&stmt).await.unwrap_or_else(|e| panic!("hindsight setup: {stmt}: {e}"));
    }
    let known = known_differences();
    let files = crate::harness::files_ending(&corpus_dir().join("queries"), "sql");
    let (mut unexpected, mut fixed, mut differing, mut silent) = (Vec::new(), Vec::new(), BTreeMap::new(), Vec::new());
    let mut summary = Vec::new();
    for file in files {
        let category = file.file_stem().unwrap().to_string_lossy().to_string();
        let queries = statements(&std::fs::read_to_string(&file).unwrap());
        let mut agreeing = 0;
        for (i, sql) in queries.iter().enumerate() {
            let id = format!("{category}#{}", i + 1);
            let pg_answer = answer(&theirs, sql).await;
            let our_answer = answer(&ours, sql).await;
            match compare(sql, &pg_answer, &our_answer) {
                Ok(()) => {
                    agreeing += 1;
                    if known.contains_key(&id) {
                        fixed.push(id);
                    }
                }
                Err(how) => {
                    // An answer that differs without an error must be one someone explained.
                    if answers_differently(&how) && known.get(&id).is_none_or(|r| r.starts_with("not yet:")) {
                        silent.push(format!("{id}: {how}\n    {}", sql.replace('\n', " ")));
                    }
                    if !known.contains_key(&id) {
                        unexpected.push(format!("{id}: {how}\n    {}", sql.replace('\n', " ")));
                    }
                    differing.insert(id, (how, sql.clone()));
                }
            }
        }
        summary.push(format!("{category} {agreeing}/{}", queries.len()));
    }
    let total: usize = summary.iter().map(|s| s.rsplit('/').next().unwrap().parse::<usize>().unwrap()).sum();
    eprintln!("agreeing with PostgreSQL {}: {} of {total}", summary.join(", "), total - differing.len());
    if std::env::var_os("HINDSIGHT_RECORD_DIFFERENCES").is_some() {
        let mut text = String::from(
            "# Queries of sql/postgres/queries whose answer differs from PostgreSQL 15's, with the reason.\n\
             # tests/it/postgres.rs fails for a difference not listed here and for a listing that no longer differs.\n\n",
        );
        for (id, (how, sql)) in &differing {
            // A reason someone wrote is kept; a recorded one ("not yet: ...") is recorded afresh.
            let reason = known.get(id).filter(|r| !r.starts_with("not yet:")).cloned().unwrap_or_else(|| format!("not yet: {how}"));
            let reason = serde_json::to_string(&reason).unwrap();
            text.push_str(&format!("[\"{id}\"]\n# {}\nreason = {reason}\n\n", sql.replace('\n', " ")));
        }
        std::fs::write(corpus_dir().join("differences.toml"), text).unwrap();
    }
    // The README states the figure; it must be this run's.
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let claim = format!("agrees with PostgreSQL 15 on {} of {total} queries", total - differing.len());
    let readme_ok = readme.contains(&claim);
    assert!(unexpected.is_empty(), "answers that differ from PostgreSQL's and are not in differences.toml:\n{}", unexpected.join("\n"));
    assert!(
        silent.is_empty(),
        "hindsight answers these differently from PostgreSQL, without an error; answer as PostgreSQL does, refuse \
         (0A000), or explain the difference in differences.toml:\n{}",
        silent.join("\n")
    );
    assert!(fixed.is_empty(), "these now agree with PostgreSQL; remove them from differences.toml: {fixed:?}");
    assert!(readme_ok, "README.md must say \"{claim}\" (its PostgreSQL semantics paragraph)");
}
