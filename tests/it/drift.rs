//! Drift aggregates and `drift(...)` over the wire against references computed here by other
//! means: KS D from empirical CDFs at every point, its exact p-value by enumerating every split
//! of a pooled sample, Wasserstein from the quantile functions, histograms by searching the
//! edges, chi-squared and Z p-values from closed forms and numeric integration. Random data with
//! ties and NULLs, grouped, in small batches over 3 partitions so partial states merge.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{TestServer, sqlstate};

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * (1.0 + want.abs()) || (got.is_infinite() && want.is_infinite())
}

fn ecdf(v: &[f64], x: f64) -> f64 {
    v.iter().filter(|&&y| y <= x).count() as f64 / v.len() as f64
}

fn ks(a: &[f64], b: &[f64]) -> f64 {
    a.iter().chain(b).map(|&x| (ecdf(a, x) - ecdf(b, x)).abs()).fold(0.0, f64::max)
}

/// The integral over u of |A⁻¹(u) - B⁻¹(u)|, both quantile functions being step functions.
fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let mut cuts: Vec<f64> = (0..=a.len()).map(|i| i as f64 / a.len() as f64).chain((0..=b.len()).map(|j| j as f64 / b.len() as f64)).collect();
    cuts.sort_by(f64::total_cmp);
    let q = |v: &[f64], u: f64| v[((u * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    cuts.windows(2).filter(|w| w[1] > w[0]).map(|w| (w[1] - w[0]) * (q(&a, (w[0] + w[1]) / 2.0) - q(&b, (w[0] + w[1]) / 2.0)).abs()).sum()
}

/// Shares per bin: equal-width bins found by scanning the edges when the baseline has over 20
/// distinct values, else one bin per value.
fn shares(a: &[f64], b: &[f64], bins: usize) -> (Vec<f64>, Vec<f64>) {
    let distinct: std::collections::BTreeSet<u64> = a.iter().map(|x| x.to_bits()).collect();
    let keyed: Vec<(usize, u64)> = if distinct.len() > 20 {
        let lo = a.iter().chain(b).copied().fold(f64::INFINITY, f64::min);
        let hi = a.iter().chain(b).copied().fold(f64::NEG_INFINITY, f64::max);
        let edges: Vec<f64> = (0..=bins).map(|k| lo + (hi - lo) * k as f64 / bins as f64).collect();
        let bin = |x: f64| (0..bins).rev().find(|&k| x >= edges[k]).unwrap_or(0) as u64;
        a.iter().map(|&x| (0, bin(x))).chain(b.iter().map(|&x| (1, bin(x)))).collect()
    } else {
        a.iter().map(|x| (0, x.to_bits())).chain(b.iter().map(|x| (1, x.to_bits()))).collect()
    };
    let mut counts: BTreeMap<u64, [f64; 2]> = BTreeMap::new();
    for (side, key) in keyed {
        counts.entry(key).or_default()[side] += 1.0;
    }
    (counts.values().map(|c| c[0] / a.len() as f64).collect(), counts.values().map(|c| c[1] / b.len() as f64).collect())
}

fn psi(a: &[f64], b: &[f64]) -> f64 {
    let (mut p, mut q) = shares(a, b, 30);
    for s in [&mut p, &mut q] {
        let min = s.iter().copied().filter(|v| *v > 0.0).fold(1.0, f64::min);
        let fill = if min <= 1e-4 { min / 1e6 } else { 1e-4 };
        s.iter_mut().filter(|v| **v == 0.0).for_each(|v| *v = fill);
    }
    p.iter().zip(&q).map(|(p, q)| (p - q) * (p / q).ln()).sum()
}

fn js(p: &[f64], q: &[f64]) -> f64 {
    let kl = |x: &[f64], m: &[f64]| -> f64 { x.iter().zip(m).filter(|(x, _)| **x > 0.0).map(|(x, m)| x * (x / m).ln()).sum() };
    let m: Vec<f64> = p.iter().zip(q).map(|(p, q)| (p + q) / 2.0).collect();
    ((kl(p, &m) + kl(q, &m)) / 2.0).sqrt()
}

/// Pearson's statistic against the scaled baseline counts, per category.
fn chi2(a: &[&str], b: &[&str]) -> (f64, usize) {
    let mut counts: BTreeMap<&str, [f64; 2]> = BTreeMap::new();
    a.iter().for_each(|k| counts.entry(k).or_default()[0] += 1.0);
    b.iter().for_each(|k| counts.entry(k).or_default()[1] += 1.0);
    let scale = b.len() as f64 / a.len() as f64;
    (counts.values().map(|c| (c[1] - c[0] * scale).powi(2) / (c[0] * scale)).sum(), counts.len())
}

/// P(|N(0,1)| > z) by Simpson's rule over the density.
fn normal_two_sided(z: f64) -> f64 {
    let (lo, hi, n) = (z.abs(), z.abs() + 40.0, 200_000);
    let h = (hi - lo) / n as f64;
    let f = |x: f64| (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let s: f64 = (0..=n).map(|i| f(lo + i as f64 * h) * if i == 0 || i == n { 1.0 } else if i % 2 == 1 { 4.0 } else { 2.0 }).sum();
    2.0 * s * h / 3.0
}

#[tokio::test]
async fn drift_statistics_agree_with_independent_references() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute("SET datafusion.execution.batch_size = 7; SET datafusion.execution.target_partitions = 3").await.unwrap();
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        // (group, is_current, x, category); groups differ in size and in how far they drift.
        let rows: Vec<(i64, bool, Option<f64>, Option<&str>)> = (0..900)
            .map(|_| {
                let g = rng.random_range(0..3i64);
                let cur = rng.random_bool(0.45);
                let shift = if cur { g as f64 * 0.4 } else { 0.0 };
                // Rounded to tenths: ties within and across the sides.
                let x = (!rng.random_bool(0.04)).then(|| ((rng.random_range(0.0..4.0f64) + shift) * 10.0).round() / 10.0);
                let cats = ["a", "b", "c"];
                let k = if cur && g == 2 && rng.random_bool(0.3) { 2 } else { rng.random_range(0..3) };
                (g, cur, x, (!rng.random_bool(0.04)).then(|| cats[k]))
            })
            .collect();
        let t = format!("d{seed}");
        c.batch_execute(&format!("CREATE TABLE {t} (g BIGINT, cur BOOLEAN, x DOUBLE, c TEXT)")).await.unwrap();
        let values: Vec<String> = rows
            .iter()
            .map(|(g, cur, x, k)| format!("({g}, {cur}, {}, {})", x.map_or("NULL".into(), |x| x.to_string()), k.map_or("NULL".into(), |k| format!("'{k}'"))))
            .collect();
        c.batch_execute(&format!("INSERT INTO {t} VALUES {}", values.join(", "))).await.unwrap();
        let sql = format!(
            "SELECT g, ks_stat(x, cur), wasserstein(x, cur), psi(x, cur), js_distance(x, cur), js_distance(c, cur),
                    psi(c, cur), chi2_stat(c, cur), chi2_pvalue(c, cur), psi(x, cur, 7)
             FROM {t} GROUP BY g ORDER BY g"
        );
        for row in c.query(&sql, &[]).await.unwrap() {
            let g: i64 = row.get(0);
            let side = |s: bool| -> Vec<f64> { rows.iter().filter(|r| r.0 == g && r.1 == s).filter_map(|r| r.2).collect() };
            let cats = |s: bool| -> Vec<&str> { rows.iter().filter(|r| r.0 == g && r.1 == s).filter_map(|r| r.3).collect() };
            let (a, b) = (side(false), side(true));
            // Categories as numbers 0, 1, 2: one bin per value either way.
            let code = |v: Vec<&str>| -> Vec<f64> { v.iter().map(|k| (k.as_bytes()[0] - b'a') as f64).collect() };
            let (ca, cb) = (code(cats(false)), code(cats(true)));
            let (stat, k) = chi2(&cats(false), &cats(true));
            assert_eq!(k, 3, "three categories give two degrees of freedom");
            // With two degrees of freedom the chi-squared survival function is exp(-x / 2).
            let p = (-stat / 2.0).exp();
            let (sa, sb) = shares(&a, &b, 7);
            let mut psi7 = 0.0;
            for (p, q) in sa.iter().zip(&sb) {
                let (p, q) = (if *p == 0.0 { 1e-4 } else { *p }, if *q == 0.0 { 1e-4 } else { *q });
                psi7 += (p - q) * (p / q).ln();
            }
            let (cp, cq) = shares(&ca, &cb, 30);
            let (xp, xq) = shares(&a, &b, 30);
            let want = [ks(&a, &b), wasserstein(&a, &b), psi(&a, &b), js(&xp, &xq), js(&cp, &cq), psi(&ca, &cb), stat, p, psi7];
            for (i, want) in want.iter().enumerate() {
                let got: f64 = row.get(i + 1);
                assert!(close(got, *want, 1e-9), "seed {seed} group {g} statistic {i}: got {got}, want {want}");
            }
        }
    }
    // Errors: wrong types and arity are plan errors, and the connection lives on.
    assert!(c.query("SELECT ks_stat('a', true)", &[]).await.is_err());
    assert!(c.query("SELECT psi(1.0)", &[]).await.is_err());
    let none: Option<f64> = c.query_one("SELECT psi(x, cur) FROM d0 WHERE cur", &[]).await.unwrap().get(0);
    assert_eq!(none, None, "no baseline rows: NULL");
}

#[tokio::test]
async fn ks_pvalue_is_exact_for_small_samples() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..5 {
        // 11 distinct values, 5 of them baseline: every split is equally likely under the null.
        let pooled: Vec<f64> = (0..11).map(|i| i as f64 + rng.random_range(0.0..0.5)).collect();
        let mask: u32 = loop {
            let m = rng.random_range(0..1u32 << 11);
            if m.count_ones() == 5 {
                break m;
            }
        };
        let split = |m: u32| -> (Vec<f64>, Vec<f64>) {
            let (mut a, mut b) = (vec![], vec![]);
            pooled.iter().enumerate().for_each(|(i, v)| if m & (1 << i) != 0 { a.push(*v) } else { b.push(*v) });
            (a, b)
        };
        let (a, b) = split(mask);
        let d = ks(&a, &b);
        let splits: Vec<u32> = (0..1u32 << 11).filter(|m| m.count_ones() == 5).collect();
        let want = splits.iter().filter(|&&m| { let (x, y) = split(m); ks(&x, &y) >= d - 1e-12 }).count() as f64 / splits.len() as f64;
        let values: Vec<String> = a.iter().map(|x| format!("({x}, false)")).chain(b.iter().map(|x| format!("({x}, true)"))).collect();
        let row = c.query_one(&format!("SELECT ks_pvalue(x, cur), ks_stat(x, cur) FROM (VALUES {}) t(x, cur)", values.join(", ")), &[]).await.unwrap();
        let (p, stat): (f64, f64) = (row.get(0), row.get(1));
        assert!(close(stat, d, 1e-12));
        assert!(close(p, want, 1e-9), "p {p}, enumerated {want}");
    }
}

#[tokio::test]
async fn drift_table_function_picks_tests_as_evidently_does() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let mut rng = StdRng::seed_from_u64(11);
    // Small: 400 baseline rows; large: 1,500. Columns: x (many values), k (3 values), flag (2),
    // n (integers 0..4: numeric, but few values), t (a timestamp, skipped unless named).
    for (table, n) in [("small_b", 400), ("small_c", 300), ("large_b", 1500), ("large_c", 1200)] {
        let shift = if table.ends_with("_c") { 0.3 } else { 0.0 };
        let values: Vec<String> = (0..n)
            .map(|_| {
                let x = (rng.random_range(0.0..1.0f64) + shift) * 100.0;
                let k = ["p", "q", "r"][rng.random_range(0..3)];
                let flag = rng.random_bool(0.5 + shift);
                format!("({x}, '{k}', {flag}, {}, TIMESTAMP '2026-01-01')", rng.random_range(0..5))
            })
            .collect();
        c.batch_execute(&format!("CREATE TABLE {table} (x DOUBLE, k TEXT, flag BOOLEAN, n INT, t TIMESTAMP); INSERT INTO {table} VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
    let tests = |rows: &[tokio_postgres::Row]| -> Vec<(String, String, String)> {
        rows.iter().map(|r| (r.get::<_, String>("column"), r.get::<_, String>("kind"), r.get::<_, String>("test"))).collect()
    };
    let small = c.query("SELECT * FROM drift('small_b', 'small_c')", &[]).await.unwrap();
    let s = |a: &str, b: &str, t: &str| (a.to_string(), b.to_string(), t.to_string());
    assert_eq!(tests(&small), vec![s("x", "num", "ks"), s("k", "cat", "chisquare"), s("flag", "cat", "z"), s("n", "num", "chisquare")]);
    let large = c.query("SELECT * FROM drift(large_b, 'SELECT * FROM large_c')", &[]).await.unwrap();
    assert_eq!(tests(&large), vec![s("x", "num", "wasserstein"), s("k", "cat", "jensenshannon"), s("flag", "cat", "jensenshannon"), s("n", "num", "jensenshannon")]);

    // Each row's statistic against the references, and the verdict against its threshold.
    let fetch = |t: &str, col: &str| format!("SELECT {col} FROM {t} ORDER BY {col}");
    let floats = |rows: Vec<tokio_postgres::Row>| -> Vec<f64> { rows.iter().map(|r| r.get::<_, f64>(0)).collect() };
    let (a, b) = (floats(c.query(&fetch("large_b", "x"), &[]).await.unwrap()), floats(c.query(&fetch("large_c", "x"), &[]).await.unwrap()));
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    let std = (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
    let x = &large[0];
    assert!(close(x.get("statistic"), wasserstein(&a, &b) / std, 1e-9));
    assert_eq!(x.get::<_, Option<f64>>("p_value"), None);
    assert_eq!(x.get::<_, bool>("drifted"), x.get::<_, f64>("statistic") >= 0.1);
    let (sa, sb) = (floats(c.query(&fetch("small_b", "x"), &[]).await.unwrap()), floats(c.query(&fetch("small_c", "x"), &[]).await.unwrap()));
    assert!(close(small[0].get("statistic"), ks(&sa, &sb), 1e-12));
    assert!(small[0].get::<_, bool>("drifted"), "a 30% shift in 300 rows is drift");
    // The Z test of the boolean column.
    let mut counts = Vec::new();
    for t in ["small_b", "small_c"] {
        let r = c.query_one(&format!("SELECT count(*) FILTER (WHERE flag), count(*) FROM {t}"), &[]).await.unwrap();
        counts.push((r.get::<_, i64>(0) as f64, r.get::<_, i64>(1) as f64));
    }
    let [(f0, n0), (f1, n1)] = counts[..] else { unreachable!() };
    let pooled = (f0 + f1) / (n0 + n1);
    // Evidently's sign: the baseline share of `true` (the last value in sorted order) minus the
    // current share.
    let z = (f0 / n0 - f1 / n1) / (pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1)).sqrt();
    assert!(close(small[2].get::<_, f64>("statistic"), z, 1e-9));
    assert!(close(small[2].get("p_value"), normal_two_sided(z), 1e-7), "{:?} vs {}", small[2].get::<_, f64>("p_value"), normal_two_sided(z));

    // Named columns, timestamps included when asked for; errors with their SQLSTATEs.
    let named = c.query("SELECT \"column\", test FROM drift('small_b', 'small_c', 'n', 't')", &[]).await.unwrap();
    assert_eq!(named.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["n", "t"]);
    assert_eq!(named[1].get::<_, String>(1), "z", "one timestamp value: fewer than three values");
    assert_eq!(sqlstate(c.query("SELECT * FROM drift('small_b', 'small_c', 'nope')", &[]).await), "42703");
    assert_eq!(sqlstate(c.query("SELECT * FROM drift('small_b')", &[]).await), "42601");
    assert_eq!(sqlstate(c.query("SELECT * FROM drift('missing', 'small_c')", &[]).await), "42P01");
    // It composes: a filter over its rows.
    let drifted: i64 = c.query_one("SELECT count(*) FROM drift('small_b', 'small_c') d WHERE d.drifted", &[]).await.unwrap().get(0);
    assert!(drifted >= 1);
}
