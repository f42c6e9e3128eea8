//! A client for the benchmark script (`benches/run.sh`): runs one query over the wire and reports
//! rows per second. Streams with tokio-postgres, so it measures the server, not client buffering.
//!
//! Usage: hindsight-bench-client <port> <query>

use std::time::Instant;

use futures::{StreamExt, pin_mut};
use tokio_postgres::NoTls;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (Some(port), Some(query)) = (args.first(), args.get(1)) else {
        eprintln!("usage: wire <port> <query>");
        std::process::exit(2);
    };
    let user = std::env::var("BENCH_USER").unwrap_or_else(|_| "hindsight".into());
    let db = std::env::var("BENCH_DB").unwrap_or_else(|_| "hindsight".into());
    let url = format!("host=127.0.0.1 port={port} user={user} dbname={db}");
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(conn);
    let start = Instant::now();
    let rows = client.query_raw(query.as_str(), std::iter::empty::<i32>()).await?;
    pin_mut!(rows);
    let mut n = 0u64;
    while let Some(r) = rows.next().await {
        r?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("rows={n} seconds={secs:.2} rows_per_sec={:.0}", n as f64 / secs);
    Ok(())
}
