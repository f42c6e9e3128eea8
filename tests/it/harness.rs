//! Starting servers and connecting clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hindsight::catalog::Warehouse;
use hindsight::engine::Engine;
use hindsight::server::Server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// A server running in this process on a free port, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub warehouse: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server over a fresh, empty warehouse.
    pub async fn start() -> Self {
        Self::start_with(|s| s).await
    }

    /// A server over a fresh warehouse, with options (users, TLS, limits) set by `configure`.
    pub async fn start_with(configure: impl FnOnce(Server) -> Server + Send + 'static) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self::on_with(dir.path(), configure).await;
        s._dir = Some(dir);
        s
    }

    /// A server over an existing warehouse folder (two servers may share one).
    pub async fn on(warehouse: &Path) -> Self {
        Self::on_with(warehouse, |s| s).await
    }

    pub async fn on_with(warehouse: &Path, configure: impl FnOnce(Server) -> Server + Send + 'static) -> Self {
        let wh = Warehouse::open(warehouse.to_str().expect("utf8 path")).await.expect("open warehouse");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            configure(Server::new(Engine::new(Arc::clone(&wh), hindsight::session::Session::background).expect("engine")).with_max_connections(64))
                .run(listener, async {
                    let _ = stopped.await;
                })
                .await
                .expect("server");
        });
        Self { addr, warehouse: warehouse.to_path_buf(), stop: Some(stop), task: Some(task), _dir: None }
    }

    pub async fn connect(&self) -> Client {
        connect(self.addr).await
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn connect(addr: SocketAddr) -> Client {
    let url = format!("host=127.0.0.1 port={} user=hindsight dbname=hindsight", addr.port());
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The SQLSTATE of a failed call, or a panic naming what succeeded instead.
pub fn sqlstate<T: std::fmt::Debug>(r: Result<T, tokio_postgres::Error>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no sqlstate: {e}")),
    }
}

/// The message of a failed call.
pub fn message<T: std::fmt::Debug>(r: Result<T, tokio_postgres::Error>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()),
    }
}

/// Rows in a table, as the server counts them.
pub async fn count(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.expect("count").get(0)
}

/// The files of a folder with extension `ext`, in name order.
pub fn files_ending(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// The data files of a table's latest version, by the Delta log (adds minus removes over its
/// JSON entries), with the rows each holds by its statistics.
pub fn live_files(warehouse: &Path, table: &str) -> std::collections::HashMap<String, u64> {
    let entries = files_ending(&warehouse.join("public").join(table).join("_delta_log"), "json");
    let mut live = std::collections::HashMap::new();
    for entry in entries {
        for line in std::fs::read_to_string(entry).expect("a log entry").lines() {
            let action: serde_json::Value = serde_json::from_str(line).expect("a JSON action");
            if let Some(add) = action.get("add") {
                let stats: serde_json::Value = serde_json::from_str(add["stats"].as_str().unwrap_or("{}")).unwrap_or_default();
                live.insert(add["path"].as_str().unwrap_or_default().to_string(), stats["numRecords"].as_u64().unwrap_or(0));
            } else if let Some(path) = action.pointer("/remove/path").and_then(|p| p.as_str()) {
                live.remove(path);
            }
        }
    }
    live
}
