//! Cancel requests. A client cancels by opening a second connection that carries only the
//! running connection's (pid, secret key); this registry finds that connection and bumps its
//! cancel counter, which the statement's `Interrupt` watches.
//!
//! A counter rather than pgwire's one-shot per query: the same statement is watched in two places
//! (while it executes and while its rows stream), and a cancel that arrives while the connection
//! is idle must not hit the next statement, as in PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::watch;

type Key = (i32, Bytes);

#[derive(Default)]
pub struct Cancels {
    connections: Mutex<HashMap<Key, watch::Sender<u64>>>,
}

/// Keeps a connection reachable by cancel requests; unregisters it when dropped.
pub struct Registration {
    key: Key,
    cancels: Arc<Cancels>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cancels.connections.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

impl Cancels {
    pub fn register(self: &Arc<Self>, pid: i32, secret: &SecretKey) -> (watch::Receiver<u64>, Registration) {
        let key = (pid, secret.to_bytes());
        let (tx, rx) = watch::channel(0);
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), tx);
        (rx, Registration { key, cancels: self.clone() })
    }

    fn cancel(&self, pid: i32, secret: &SecretKey) {
        let key = (pid, secret.to_bytes());
        if let Some(tx) = self.connections.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// pgwire's handler for the cancel connection.
pub struct CancelRequests(pub Arc<Cancels>);

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.0.cancel(request.pid, &request.secret_key);
    }
}
