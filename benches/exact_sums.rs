//! What exact summation costs: the same aggregates over the same in-memory doubles, with
//! DataFusion's own `sum`/`avg`/`stddev` and with hindsight's order-independent ones
//! (`sql::semantics::exact`), in one process and one run; and the per-value cost of
//! [`ExactSum`] against a plain `f64` loop, which is what every metric aggregate pays.
//!
//!   cargo bench --bench exact_sums            (ROWS=10000000 by default)
//!
//! Data as a scoring table has it: scores in [0, 1), amounts spread over six decades with both
//! signs, 100 slices; rows in random slice order.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use hindsight::sql::semantics::exact::{self, ExactSum};
use rand::{Rng, SeedableRng};

const QUERIES: &[(&str, &str)] = &[
    ("sum, avg, stddev of a score", "SELECT sum(score), avg(score), stddev(score) FROM t"),
    ("sum, avg, stddev of an amount", "SELECT sum(amount), avg(amount), stddev(amount) FROM t"),
    (
        "the three by 100 slices",
        "SELECT slice, sum(amount), avg(amount), stddev(amount) FROM t GROUP BY slice",
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: usize = std::env::var("ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(10_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let score: Vec<f64> = (0..rows).map(|_| rng.random::<f64>()).collect();
    let amount: Vec<f64> = (0..rows)
        .map(|_| {
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            sign * 10f64.powf(rng.random_range(-2.0..4.0))
        })
        .collect();
    let slice: Vec<i64> = (0..rows).map(|_| rng.random_range(0..100)).collect();

    println!("== per value, {rows} doubles (one thread)");
    for (name, values) in [("score", &score), ("amount", &amount)] {
        let plain = best_of(5, || values.iter().sum::<f64>());
        let exact = best_of(5, || {
            let mut sum = ExactSum::new();
            values.iter().for_each(|&x| sum.add(x));
            sum.value()
        });
        println!(
            "{name}: f64 loop {:.2} ns/value, ExactSum {:.2} ns/value ({:.1}x)",
            plain * 1e9 / rows as f64,
            exact * 1e9 / rows as f64,
            exact / plain
        );
    }

    let schema = Arc::new(Schema::new(vec![
        Field::new("slice", DataType::Int64, false),
        Field::new("score", DataType::Float64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let batches: Vec<RecordBatch> = (0..rows)
        .step_by(8192)
        .map(|start| {
            let end = (start + 8192).min(rows);
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(slice[start..end].to_vec())),
                    Arc::new(Float64Array::from(score[start..end].to_vec())),
                    Arc::new(Float64Array::from(amount[start..end].to_vec())),
                ],
            )
        })
        .collect::<Result<_, _>>()?;
    let partitions = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    // One partition per core, as a Delta scan of several files gives.
    let per = batches.len().div_ceil(partitions);
    let parts: Vec<Vec<RecordBatch>> = batches.chunks(per.max(1)).map(|c| c.to_vec()).collect();
    let table = Arc::new(MemTable::try_new(schema, parts)?);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("== SQL over {rows} rows, {partitions} partitions (best of 5)");
    for exact_sums in [false, true] {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
        if exact_sums {
            exact::install(&ctx);
        }
        ctx.register_table("t", table.clone())?;
        for (name, sql) in QUERIES {
            let secs = runtime.block_on(async {
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t0 = Instant::now();
                    ctx.sql(sql).await?.collect().await?;
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                Ok::<_, datafusion::error::DataFusionError>(best)
            })?;
            let which = if exact_sums { "exact (hindsight)" } else { "DataFusion's" };
            println!("{name}, {which}: {:.3} s", secs);
        }
    }
    Ok(())
}

/// The fastest of `n` runs, in seconds; the result is kept so the work is not optimised away.
fn best_of(n: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..n {
        let t0 = Instant::now();
        std::hint::black_box(f());
        best = best.min(t0.elapsed().as_secs_f64());
    }
    best
}
