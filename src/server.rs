//! The accept loop: one task per connection, a cap on connections, TLS, and graceful shutdown.
//!
//! Owns: sockets and connection lifetimes. Must not: parse SQL or touch storage.
//!
//! Shutdown: when the shutdown future resolves we stop accepting, idle connections are closed
//! with 57P01 (`wire::serve`), and busy ones get `DRAIN` to finish their statement. A
//! statement's Delta commit is a single atomic put of a log entry, so stopping between
//! statements never leaves half a commit behind.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::Limits;
use crate::error::Result;
use crate::metrics::METRICS;
use crate::security::Users;
use crate::security::tls::Tls;
use crate::engine::Engine;
use crate::session::Session;
use crate::wire::{Connection, Handlers, Shared, TooManyConnections};

/// How long shutdown waits for open connections before it drops them.
const DRAIN: Duration = Duration::from_secs(30);
/// How long a refused connection may take to hear why.
const REFUSAL: Duration = Duration::from_secs(5);

/// A server over one warehouse, built like a delta-rs operation: required parts in `new`,
/// options as `with_*`, then `run`.
pub struct Server {
    engine: Arc<Engine>,
    max_connections: usize,
    users: Users,
    tls: Option<Tls>,
    limits: Limits,
}

impl Server {
    /// `trust` on loopback, no TLS, no limits but the message size, 256 connections.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine, max_connections: 256, users: Users::default(), tls: None, limits: Limits::default() }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn warehouse(&self) -> &Arc<crate::catalog::Warehouse> {
        self.engine.warehouse()
    }

    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Users who must authenticate with SCRAM-SHA-256; none means `trust`.
    pub fn with_users(mut self, users: Users) -> Self {
        self.users = users;
        self
    }

    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
        let require_tls = self.tls.as_ref().is_some_and(|t| t.require);
        let shared = Arc::new(Shared::new(self.users, self.tls.as_ref().map(|t| t.cert_pem.as_slice()), require_tls, self.limits)?);
        let acceptor: Option<TlsAcceptor> = self.tls.map(|t| t.acceptor);
        // A semaphore rather than a counter: a permit is released however the connection ends.
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let mut connections = JoinSet::new();
        // Tells idle connections to close (57P01); busy ones finish their statement first.
        let (stopping, stop) = tokio::sync::watch::channel(false);
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
                    let acceptor = acceptor.clone();
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "too many connections; refusing");
                        METRICS.connections_refused.inc();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(REFUSAL, pgwire::tokio::process_socket(socket, acceptor, TooManyConnections)).await;
                        });
                        continue;
                    };
                    let engine = self.engine.clone();
                    let shared = shared.clone();
                    let watch = crate::wire::Peer::of(&socket);
                    let stop = stop.clone();
                    connections.spawn(async move {
                        let _permit = permit;
                        let _active = ActiveConnection::open();
                        tracing::debug!(%peer, "connection opened");
                        match Session::new(&engine, &shared.limits) {
                            Ok(session) => {
                                let handlers = Handlers::new(Connection::new(session, shared, watch));
                                if let Err(e) = crate::wire::serve(socket, acceptor, handlers, stop).await {
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
        tracing::info!(open = connections.len(), "shutting down: no new connections; idle ones are closed");
        drop(listener);
        let _ = stopping.send(true);
        let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(open = connections.len(), "closing connections that outlived the drain period");
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// Counts a connection as open until it is dropped, however its task ends.
struct ActiveConnection;

impl ActiveConnection {
    fn open() -> Self {
        METRICS.connections.inc();
        METRICS.connections_active.inc();
        Self
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        METRICS.connections_active.dec();
    }
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
