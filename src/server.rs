//! The accept loop: one task per connection, a cap on connections, and graceful shutdown.
//!
//! Owns: sockets and connection lifetimes. Must not: parse SQL or touch storage.
//!
//! Shutdown: when the shutdown future resolves we stop accepting and wait for running
//! connections to finish their current work. A statement's Delta commit is a single atomic put
//! of a log entry, so stopping between statements never leaves half a commit behind.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::catalog::Warehouse;
use crate::error::Result;
use crate::session::Session;
use crate::wire::{Connection, Handlers};

/// How long shutdown waits for open connections before it drops them.
const DRAIN: Duration = Duration::from_secs(30);

pub async fn run(
    listener: TcpListener,
    warehouse: Arc<Warehouse>,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    // A semaphore rather than a counter: a permit is released however the connection ends.
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "connection task panicked");
                }
            }
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "too many connections; refusing");
                    drop(socket);
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let warehouse = warehouse.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    tracing::debug!(%peer, "connection opened");
                    match Session::new(warehouse) {
                        Ok(session) => {
                            let handlers = Handlers(Connection::new(session));
                            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                        Err(e) => tracing::error!(%peer, error = %e, "could not start a session"),
                    }
                    tracing::debug!(%peer, "connection closed");
                });
            }
        }
    }
    tracing::info!(open = connections.len(), "shutting down: no new connections");
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "closing connections that outlived the drain period");
        connections.shutdown().await;
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
