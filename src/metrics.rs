//! Prometheus metrics, and the small HTTP endpoint (`--metrics-listen`) that serves them.
//!
//! Owns: the process-wide registry and its families. Recording is one call at the point where
//! something happened (`wire` for statements and connections, `scheduler` for runs); nothing
//! here knows about SQL. Global like the `prometheus` crate's default registry: every server in
//! the process reports into the same families, which is what a scrape of the process means.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Sqlstate {
    pub sqlstate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub queries: Family<Kind, Counter>,
    pub errors: Family<Sqlstate, Counter>,
    pub latency: HistogramFamily<Kind>,
    pub connections_active: Gauge,
    pub connections: Counter,
    pub connections_refused: Counter,
    pub auth_failures: Counter,
    pub rows_out: Counter,
    pub bytes_out: Counter,
    pub scheduler_runs: Family<Status, Counter>,
    pub compactions: Family<Outcome, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3 min in factors of two: online lookups and evaluation backfills on one scale.
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

impl Metrics {
    fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("hindsight"),
            queries: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            connections_active: Gauge::default(),
            connections: Counter::default(),
            connections_refused: Counter::default(),
            auth_failures: Counter::default(),
            rows_out: Counter::default(),
            bytes_out: Counter::default(),
            scheduler_runs: Family::default(),
            compactions: Family::default(),
        };
        let registry = &mut m.registry;
        registry.register("queries", "Statements run, by kind", m.queries.clone());
        registry.register("errors", "Statements that failed, by SQLSTATE", m.errors.clone());
        registry.register("query_duration_seconds", "Statement time to last row, by kind", m.latency.clone());
        registry.register("connections_active", "Client connections open now", m.connections_active.clone());
        registry.register("connections", "Client connections accepted", m.connections.clone());
        registry.register(
            "connections_refused",
            "Connections refused because max_connections were open",
            m.connections_refused.clone(),
        );
        registry.register("auth_failures", "Failed authentications", m.auth_failures.clone());
        registry.register("rows_out", "Result rows sent to clients", m.rows_out.clone());
        registry.register("bytes_out", "Bytes of result rows sent to clients", m.bytes_out.clone());
        registry.register("scheduler_runs", "Scheduled evaluation runs, by outcome", m.scheduler_runs.clone());
        registry.register(
            "compactions",
            "Background compactions of small files after writes, by outcome",
            m.compactions.clone(),
        );
        m
    }

    pub fn record_query(&self, kind: &'static str, elapsed: Duration, sqlstate: Option<&str>) {
        self.queries.get_or_create(&Kind { kind }).inc();
        self.latency.get_or_create(&Kind { kind }).observe(elapsed.as_secs_f64());
        if let Some(state) = sqlstate {
            self.errors.get_or_create(&Sqlstate { sqlstate: state.to_string() }).inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Serves `GET /metrics` until `shutdown` resolves. Deliberately tiny: one request per
/// connection, no keep-alive, nothing else served.
pub async fn serve(listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (mut socket, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // Read the request head (bounded), with a deadline so an idle peer cannot pin a task.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(request.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
            let (status, body) = if line.starts_with("GET /metrics ") || line.starts_with("GET / ") {
                ("200 OK", METRICS.render())
            } else {
                ("404 Not Found", "try GET /metrics\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if let Err(e) = async {
                socket.write_all(head.as_bytes()).await?;
                socket.write_all(body.as_bytes()).await?;
                socket.shutdown().await
            }
            .await
            {
                tracing::debug!(%peer, error = %e, "metrics: write failed");
            }
        });
    }
}
