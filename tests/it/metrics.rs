//! Metric aggregates over the wire against references computed here, by other algorithms
//! (pairwise counting for ROC AUC, per-positive precision for average precision, two passes
//! for R²), on random data with ties, NULLs, boolean and integer labels and a one-class group,
//! grouped and merged across partitions and small batches.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::TestServer;

#[derive(Clone, Copy)]
struct Row {
    g: i64,
    score: Option<f64>,
    label: Option<bool>,
    y: f64,
}

fn roc_auc(rows: &[(f64, bool)]) -> Option<f64> {
    let (pos, neg): (Vec<&(f64, bool)>, Vec<&(f64, bool)>) = rows.iter().partition(|r| r.1);
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += if p.0 > n.0 { 1.0 } else if p.0 == n.0 { 0.5 } else { 0.0 };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

fn average_precision(rows: &[(f64, bool)]) -> Option<f64> {
    let positives = rows.iter().filter(|r| r.1).count();
    if positives == 0 {
        return None;
    }
    let mut sum = 0.0;
    for p in rows.iter().filter(|r| r.1) {
        let above: Vec<_> = rows.iter().filter(|r| r.0 >= p.0).collect();
        sum += above.iter().filter(|r| r.1).count() as f64 / above.len() as f64;
    }
    Some(sum / positives as f64)
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn r2(rows: &[(f64, f64)]) -> Option<f64> {
    let m = mean(rows.iter().map(|r| r.1))?;
    let sst: f64 = rows.iter().map(|r| (r.1 - m).powi(2)).sum();
    let sse: f64 = rows.iter().map(|r| (r.1 - r.0).powi(2)).sum();
    Some(if sst == 0.0 { if sse == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - sse / sst })
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test]
async fn metrics_agree_with_independent_references() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let rows: Vec<Row> = (0..600)
            .map(|_| {
                let g = rng.random_range(0..6);
                let label = (!rng.random_bool(0.05)).then(|| g != 5 && rng.random_bool(0.4));
                Row {
                    g,
                    // Rounded scores make many ties.
                    score: (!rng.random_bool(0.05)).then(|| (rng.random_range(0.0..1.0f64) * 20.0).round() / 20.0),
                    label,
                    y: rng.random_range(-5.0..5.0f64).round(),
                }
            })
            .collect();
        let t = format!("m{seed}");
        c.batch_execute(&format!("CREATE TABLE {t} (g BIGINT, score DOUBLE, label BOOLEAN, label_int INT, y DOUBLE)")).await.unwrap();
        let values: Vec<String> = rows
            .iter()
            .map(|r| {
                let s = r.score.map_or("NULL".into(), |s| s.to_string());
                let (l, li) = r.label.map_or(("NULL".into(), "NULL".into()), |l| (l.to_string(), (l as i32).to_string()));
                format!("({}, {s}, {l}, {li}, {})", r.g, r.y)
            })
            .collect();
        c.batch_execute(&format!("INSERT INTO {t} VALUES {}", values.join(", "))).await.unwrap();
        c.batch_execute("SET datafusion.execution.batch_size = 7; SET datafusion.execution.target_partitions = 3").await.unwrap();
        let sql = format!(
            "SELECT g, roc_auc(score, label), pr_auc(score, label_int), log_loss(score, label), brier(score, label_int),
                    rmse(score, y), mae(score, y), mape(score, y), r2(score, y)
             FROM {t} GROUP BY g ORDER BY g"
        );
        let got = c.query(&sql, &[]).await.unwrap();
        assert_eq!(got.len(), 6);
        for row in got {
            let g: i64 = row.get(0);
            let group: Vec<Row> = rows.iter().copied().filter(|r| r.g == g).collect();
            let bin: Vec<(f64, bool)> = group.iter().filter_map(|r| Some((r.score?, r.label?))).collect();
            let reg: Vec<(f64, f64)> = group.iter().filter_map(|r| Some((r.score?, r.y))).collect();
            let clip = |p: f64| p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
            let expected = [
                roc_auc(&bin),
                average_precision(&bin),
                mean(bin.iter().map(|&(p, l)| if l { -clip(p).ln() } else { -(1.0 - clip(p)).ln() })),
                mean(bin.iter().map(|&(p, l)| (p - if l { 1.0 } else { 0.0 }).powi(2))),
                mean(reg.iter().map(|&(p, y)| (p - y).powi(2))).map(f64::sqrt),
                mean(reg.iter().map(|&(p, y)| (p - y).abs())),
                mean(reg.iter().map(|&(p, y)| (p - y).abs() / y.abs().max(f64::EPSILON))),
                r2(&reg),
            ];
            for (i, want) in expected.iter().enumerate() {
                let got: Option<f64> = row.get(i + 1);
                assert!(close(got, *want), "seed {seed} group {g} metric {i}: got {got:?}, want {want:?}");
            }
        }
        c.batch_execute("RESET datafusion.execution.batch_size; RESET datafusion.execution.target_partitions").await.unwrap();
    }
    // Wrong arguments are plan errors, and the connection lives on.
    assert!(c.query("SELECT roc_auc('a', 1)", &[]).await.is_err());
    assert!(c.query("SELECT rmse(1.0)", &[]).await.is_err());
    let n: Option<f64> = c.query_one("SELECT rmse(x, x) FROM (SELECT 1.0 AS x) WHERE false", &[]).await.unwrap().get(0);
    assert_eq!(n, None);
}

#[tokio::test]
async fn class_metrics_agree_with_independent_references() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(100 + seed);
        // (group, score, label, predicted class, true class)
        let rows: Vec<(i64, Option<f64>, Option<bool>, Option<i64>, i64)> = (0..500)
            .map(|_| {
                let g = rng.random_range(0..4);
                let label = (!rng.random_bool(0.05)).then(|| g != 3 && rng.random_bool(0.4));
                let score = (!rng.random_bool(0.05)).then(|| (rng.random_range(0.0..1.0f64) * 10.0).round() / 10.0);
                let truth = rng.random_range(0..4);
                let pred = (!rng.random_bool(0.05)).then(|| if rng.random_bool(0.6) { truth } else { rng.random_range(0..5) });
                (g, score, label, pred, truth)
            })
            .collect();
        let t = format!("c{seed}");
        c.batch_execute(&format!("CREATE TABLE {t} (g BIGINT, score DOUBLE, label BOOLEAN, pred BIGINT, truth INT)")).await.unwrap();
        let opt = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
        let values: Vec<String> = rows
            .iter()
            .map(|r| format!("({}, {}, {}, {}, {})", r.0, opt(r.1.map(|s| s.to_string())), opt(r.2.map(|l| l.to_string())), opt(r.3.map(|p| p.to_string())), r.4))
            .collect();
        c.batch_execute(&format!("INSERT INTO {t} VALUES {}", values.join(", "))).await.unwrap();
        c.batch_execute("SET datafusion.execution.batch_size = 5; SET datafusion.execution.target_partitions = 3").await.unwrap();
        let sql = format!(
            "SELECT g, precision_at(score, label, 0.5), recall_at(score, label, 0.5), f1_at(score, label, 0.5),
                    confusion_at(score, label, 0.5)['tp'], confusion_at(score, label, 0.5)['tn'],
                    accuracy(pred, truth), macro_f1(pred, truth), weighted_f1(pred, truth), ece(score, label, 5)
             FROM {t} GROUP BY g ORDER BY g"
        );
        for row in c.query(&sql, &[]).await.unwrap() {
            let g: i64 = row.get(0);
            let group: Vec<_> = rows.iter().filter(|r| r.0 == g).collect();
            let bin: Vec<(f64, bool)> = group.iter().filter_map(|r| Some((r.1?, r.2?))).collect();
            let count = |f: &dyn Fn(bool, bool) -> bool| bin.iter().filter(|(s, l)| f(*s >= 0.5, *l)).count() as f64;
            let (tp, fp, tn, fn_) = (count(&|p, l| p && l), count(&|p, l| p && !l), count(&|p, l| !p && !l), count(&|p, l| !p && l));
            let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
            let classes: Vec<(i64, i64)> = group.iter().filter_map(|r| Some((r.3?, r.4))).collect();
            let labels: std::collections::BTreeSet<i64> = classes.iter().flat_map(|&(p, t)| [p, t]).collect();
            let f1 = |k: i64| {
                let tp = classes.iter().filter(|&&(p, t)| p == k && t == k).count() as f64;
                let predicted = classes.iter().filter(|&&(p, _)| p == k).count() as f64;
                let actual = classes.iter().filter(|&&(_, t)| t == k).count() as f64;
                (div(2.0 * tp, predicted + actual), actual)
            };
            let macro_f1 = labels.iter().map(|&k| f1(k).0).sum::<f64>() / labels.len() as f64;
            let weighted = labels.iter().map(|&k| f1(k).0 * f1(k).1).sum::<f64>() / classes.len() as f64;
            // ECE over 5 bins, by definition: each row's bin from its score.
            let mut ece = 0.0;
            for b in 0..5 {
                let in_bin: Vec<_> = bin.iter().filter(|(s, _)| ((s * 5.0).floor() as usize).min(4) == b).collect();
                if !in_bin.is_empty() {
                    let n = in_bin.len() as f64;
                    let (ms, ml) = (in_bin.iter().map(|r| r.0).sum::<f64>() / n, in_bin.iter().filter(|r| r.1).count() as f64 / n);
                    ece += n / bin.len() as f64 * (ml - ms).abs();
                }
            }
            let accuracy = classes.iter().filter(|(p, t)| p == t).count() as f64 / classes.len() as f64;
            let expected = [div(tp, tp + fp), div(tp, tp + fn_), div(2.0 * tp, 2.0 * tp + fp + fn_)];
            for (i, want) in expected.iter().enumerate() {
                assert!(close(row.get(i + 1), Some(*want)), "seed {seed} group {g} metric {i}");
            }
            assert_eq!((row.get::<_, i64>(4) as f64, row.get::<_, i64>(5) as f64), (tp, tn), "seed {seed} group {g} confusion");
            for (i, want) in [accuracy, macro_f1, weighted, ece].iter().enumerate() {
                assert!(close(row.get(i + 6), Some(*want)), "seed {seed} group {g} metric {}: {:?} vs {want}", i + 6, row.get::<_, Option<f64>>(i + 6));
            }
        }
        c.batch_execute("RESET datafusion.execution.batch_size; RESET datafusion.execution.target_partitions").await.unwrap();
    }
}

/// Tie-averaged NDCG@k by a per-row formula: each row's gain times the mean discount of the
/// positions its tie group spans (the expectation over orderings of the ties).
fn ndcg(rows: &[(f64, f64)], k: usize) -> f64 {
    let discount = |r: usize| if r < k { 1.0 / ((r + 2) as f64).log2() } else { 0.0 };
    let dcg: f64 = rows
        .iter()
        .map(|&(s, g)| {
            let above = rows.iter().filter(|r| r.0 > s).count();
            let tied = rows.iter().filter(|r| r.0 == s).count();
            g * (above..above + tied).map(discount).sum::<f64>() / tied as f64
        })
        .sum();
    let mut ideal: Vec<f64> = rows.iter().map(|r| r.1).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal.iter().enumerate().map(|(r, g)| g * discount(r)).sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

#[tokio::test]
async fn ndcg_agrees_with_a_per_row_reference() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let mut rng = StdRng::seed_from_u64(9);
    let mut rows: Vec<(i64, Option<f64>, f64)> = Vec::new();
    for q in 0..40 {
        for _ in 0..rng.random_range(1..15) {
            let score = (!rng.random_bool(0.05)).then(|| rng.random_range(0..6) as f64 / 5.0);
            rows.push((q, score, rng.random_range(0..4) as f64));
        }
    }
    c.batch_execute("CREATE TABLE docs (q BIGINT, score DOUBLE, rel INT)").await.unwrap();
    let values: Vec<String> =
        rows.iter().map(|r| format!("({}, {}, {})", r.0, r.1.map_or("NULL".into(), |s| s.to_string()), r.2)).collect();
    c.batch_execute(&format!("INSERT INTO docs VALUES {}", values.join(", "))).await.unwrap();
    c.batch_execute("SET datafusion.execution.batch_size = 3; SET datafusion.execution.target_partitions = 3").await.unwrap();
    for k in [1usize, 3, 10] {
        let got = c.query(&format!("SELECT q, ndcg_at({k}, score, rel) FROM docs GROUP BY q ORDER BY q"), &[]).await.unwrap();
        for row in got {
            let q: i64 = row.get(0);
            let docs: Vec<(f64, f64)> = rows.iter().filter(|r| r.0 == q).filter_map(|r| Some((r.1?, r.2))).collect();
            let want = (!docs.is_empty()).then(|| ndcg(&docs, k));
            assert!(close(row.get(1), want), "k {k} query {q}: {:?} vs {want:?}", row.get::<_, Option<f64>>(1));
        }
    }
    assert!(c.query("SELECT ndcg_at(0, score, rel) FROM docs", &[]).await.is_err());
}
