//! Stopping a statement early: a cancel request (psql's Ctrl-C), its `statement_timeout`, or
//! its client hanging up.
//!
//! A statement runs in two phases, and both must stop: executing (planning, a write, building
//! the first batch) and streaming rows to the client after `do_query` has returned. Dropping
//! DataFusion's stream stops its operators and frees their memory; a stream cut short ends with
//! a 57014 error after the rows already sent, as in PostgreSQL.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::error::{Error, Result, catch_panic};

#[derive(Debug, Clone, Copy)]
enum Reason {
    Cancel,
    Timeout(u64),
    ClientGone,
}

impl Reason {
    fn error(self) -> Error {
        match self {
            Reason::Cancel => Error::Canceled,
            Reason::Timeout(ms) => Error::StatementTimeout(ms),
            Reason::ClientGone => Error::ClientGone,
        }
    }
}

/// How often a running statement checks that its client is still connected (PostgreSQL's
/// `client_connection_check_interval`, which is off by default there; here it is always on).
const CLIENT_CHECK: Duration = Duration::from_millis(250);

/// The connection's socket, to notice that the client hung up while its statement runs. A
/// statement that produces no rows for a while (a long aggregate, a recursive CTE) would
/// otherwise run to its end for no one.
#[derive(Debug, Clone, Copy)]
pub struct Peer(#[cfg_attr(not(target_os = "linux"), allow(dead_code))] i32);

impl Peer {
    #[cfg(unix)]
    pub fn of(socket: &impl std::os::fd::AsRawFd) -> Option<Self> {
        Some(Self(socket.as_raw_fd()))
    }

    #[cfg(not(unix))]
    pub fn of<T>(_socket: &T) -> Option<Self> {
        None
    }

    /// Whether the client closed its end: the kernel reports the peer's FIN or RST on the
    /// socket even while unread data waits in it (POLLRDHUP, as PostgreSQL checks it).
    #[cfg(target_os = "linux")]
    fn gone(self) -> bool {
        let mut fd = libc::pollfd { fd: self.0, events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: one valid pollfd, a zero timeout; the socket stays open while its connection
        // runs a statement, which is when this is polled.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        ready > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    #[cfg(not(target_os = "linux"))]
    fn gone(self) -> bool {
        false
    }
}

/// Resolves when the statement must stop; cheap to clone into the row stream.
#[derive(Clone)]
pub struct Interrupt(Shared<BoxFuture<'static, Reason>>);

impl Interrupt {
    /// `cancel` counts the connection's cancel requests: the statement stops at the next one
    /// (those that came before it started do not count).
    pub fn new(cancel: Option<watch::Receiver<u64>>, timeout: Option<Duration>, peer: Option<Peer>) -> Self {
        let cancel = cancel.map(|mut rx| {
            rx.borrow_and_update();
            rx
        });
        let deadline = timeout.map(|t| (tokio::time::Instant::now() + t, t.as_millis() as u64));
        let fired = async move {
            let cancelled = async {
                let fired = match cancel {
                    Some(mut rx) => rx.changed().await.is_ok(),
                    None => false,
                };
                // Not fired: no cancel registry, or the connection is gone and nobody waits.
                if !fired {
                    std::future::pending::<()>().await;
                }
            };
            let timed_out = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let hung_up = async {
                let Some(peer) = peer else { return std::future::pending().await };
                let mut every = tokio::time::interval(CLIENT_CHECK);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    if peer.gone() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = cancelled => Reason::Cancel,
                _ = timed_out => Reason::Timeout(deadline.map_or(0, |(_, ms)| ms)),
                _ = hung_up => Reason::ClientGone,
            }
        };
        Self(fired.boxed().shared())
    }

    /// Runs `work` unless the statement is stopped first, in which case `work` is dropped; a
    /// panic in `work` becomes an error.
    pub async fn guard<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            biased;
            reason = self.0.clone() => Err(reason.error()),
            r = catch_panic(work) => r,
        }
    }

    /// The same stream, ending with the stop's error if it comes before the stream's end, or
    /// with an internal error if an operator panics while rows stream.
    pub fn guard_stream(&self, inner: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let schema = inner.schema();
        let stop = self.0.clone();
        let stream = futures::stream::unfold(Some((inner, stop)), |state| async move {
            let (mut inner, mut stop) = state?;
            tokio::select! {
                biased;
                reason = &mut stop => {
                    // Dropping `inner` here stops the plan and releases what it holds.
                    drop(inner);
                    Some((Err(DataFusionError::External(Box::new(reason.error()))), None))
                }
                item = AssertUnwindSafe(inner.next()).catch_unwind() => match item {
                    Ok(item) => item.map(|i| (i, Some((inner, stop)))),
                    Err(panic) => {
                        drop(inner);
                        Some((Err(DataFusionError::External(Box::new(Error::from_panic(panic)))), None))
                    }
                },
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), stream.fuse()))
    }
}
