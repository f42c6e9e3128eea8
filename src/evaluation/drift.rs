//! Drift statistics as aggregates over one column and a flag that says which rows are current
//! (the rest are the baseline): `psi(x, is_current [, bins])`, `ks_stat`, `ks_pvalue`,
//! `js_distance(x, is_current [, bins])`, `wasserstein`, `chi2_stat`, `chi2_pvalue`, and
//! `drift_test(x, is_current)`, which picks a test the way Evidently's `DataDriftPreset` does and
//! returns `{kind, test, statistic, p_value, threshold, drifted}` (the `drift(...)` table
//! function is built on it).
//!
//! Definitions (those of Evidently 0.4+ and SciPy; NULL rows are skipped; every function is
//! NULL when either side has no rows):
//! - `ks_stat`: the two-sample Kolmogorov-Smirnov D, sup |F_baseline - F_current|.
//! - `ks_pvalue`: two-sided; exact (lattice paths, as `scipy.stats.ks_2samp`'s `exact` mode)
//!   when neither side has more than 10,000 rows, else from the limiting Kolmogorov
//!   distribution at sqrt(n m / (n + m)) D.
//! - `wasserstein`: the 1-D earth mover's distance, `scipy.stats.wasserstein_distance`.
//! - `psi` and `js_distance` compare the two sides' shares per bin. A numeric column with more
//!   than 20 distinct baseline values is cut into `bins` (default 30) equal-width bins over the
//!   range of both sides; anything else gets one bin per distinct value. `psi` replaces empty
//!   bins by a small share first (Evidently's rule: 0.0001, or the smallest share / 10^6 when that
//!   is smaller), then sums (b - c) ln(b / c). `js_distance` is SciPy's `jensenshannon`
//!   (natural log): the square root of the Jensen-Shannon divergence.
//! - `chi2_stat` / `chi2_pvalue`: Pearson's goodness of fit of the current counts per value
//!   against the baseline's shares scaled to the current size, with (values - 1) degrees of
//!   freedom (Evidently's `chisquare`); one value only gives 0 and p = 1.
//!
//! `drift_test` chooses, with n = the number of distinct values on both sides: when the
//! baseline has at most 1,000 rows, KS (p <= 0.05 is drift) for numbers with n > 5, else
//! chi-squared (p < 0.05) for n > 2, else a two-proportion Z test (p < 0.05); for larger
//! baselines, the Wasserstein distance divided by the baseline's standard deviation (>= 0.1 is
//! drift) for numbers with n > 5, else the Jensen-Shannon distance (>= 0.1).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::common::scalar::ScalarStructBuilder;
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

use datafusion::sql::sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, Query, SelectItem, Statement};

use super::lists;
use crate::error::{Error, Result as HResult};
use crate::sql::Planner;
use crate::sql::build;
use crate::sql::table_functions;

pub fn udafs() -> Vec<AggregateUDF> {
    use Stat::*;
    [Psi, KsStat, KsPvalue, JsDistance, Wasserstein, Chi2Stat, Chi2Pvalue, Test]
        .into_iter()
        .map(|s| AggregateUDF::from(Drift { stat: s, signature: Signature::user_defined(Volatility::Immutable) }))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stat {
    Psi,
    KsStat,
    KsPvalue,
    JsDistance,
    Wasserstein,
    Chi2Stat,
    Chi2Pvalue,
    Test,
}

impl Stat {
    fn name(self) -> &'static str {
        match self {
            Stat::Psi => "psi",
            Stat::KsStat => "ks_stat",
            Stat::KsPvalue => "ks_pvalue",
            Stat::JsDistance => "js_distance",
            Stat::Wasserstein => "wasserstein",
            Stat::Chi2Stat => "chi2_stat",
            Stat::Chi2Pvalue => "chi2_pvalue",
            Stat::Test => "drift_test",
        }
    }

    fn takes_bins(self) -> bool {
        matches!(self, Stat::Psi | Stat::JsDistance)
    }

    fn numeric_only(self) -> bool {
        matches!(self, Stat::KsStat | Stat::KsPvalue | Stat::Wasserstein)
    }
}

/// The fields of `drift_test`'s result.
pub fn test_fields() -> Fields {
    Fields::from(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("test", DataType::Utf8, false),
        Field::new("statistic", DataType::Float64, true),
        Field::new("p_value", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, false),
        Field::new("drifted", DataType::Boolean, true),
    ])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Drift {
    stat: Stat,
    signature: Signature,
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean | DataType::Dictionary(..))
}

impl AggregateUDFImpl for Drift {
    fn name(&self) -> &str {
        self.stat.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(if self.stat == Stat::Test { DataType::Struct(test_fields()) } else { DataType::Float64 })
    }

    /// Numbers (and dates and timestamps) become doubles; text and booleans are categories.
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let arity = if self.stat.takes_bins() { 2..=3 } else { 2..=2 };
        if !arity.contains(&args.len()) {
            let bins = if self.stat.takes_bins() { " [, bins]" } else { "" };
            return plan_err!("usage: {name}(value, is_current{bins})");
        }
        let value = match &args[0] {
            t if t.is_numeric() || *t == DataType::Null => DataType::Float64,
            t if t.is_temporal() => DataType::Int64,
            t if is_text(t) && !self.stat.numeric_only() => DataType::Utf8,
            t => return plan_err!("{name}() compares numbers{}, not {t}", if self.stat.numeric_only() { "" } else { " or categories" }),
        };
        let flag = &args[1];
        if !(flag.is_integer() || matches!(flag, DataType::Boolean | DataType::Null)) {
            return plan_err!("{name}(): is_current must be a boolean, not {flag}");
        }
        let mut out = vec![value, DataType::Boolean];
        if args.len() == 3 {
            if !args[2].is_integer() {
                return plan_err!("{name}(): bins must be an integer, not {}", args[2]);
            }
            out.push(DataType::Int64);
        }
        Ok(out)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let categorical = args.expr_fields.first().is_some_and(|f| *f.data_type() == DataType::Utf8);
        Ok(Box::new(DriftAcc { stat: self.stat, categorical, sample: Sample::default(), bins: None }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let f = |n: &str, t: DataType| Arc::new(Field::new(format!("{}[{n}]", args.name), t, true));
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        Ok(vec![
            f("baseline", list(DataType::Float64)),
            f("current", list(DataType::Float64)),
            f("categories", list(DataType::Utf8)),
            f("baseline_counts", list(DataType::Int64)),
            f("current_counts", list(DataType::Int64)),
            f("bins", DataType::Int64),
        ])
    }
}

/// Both sides of one column: numbers as values, categories as counts.
#[derive(Debug, Default)]
struct Sample {
    baseline: Vec<f64>,
    current: Vec<f64>,
    /// Sorted, so that statistics sum their categories in one order on every run.
    counts: BTreeMap<String, [u64; 2]>,
}

#[derive(Debug)]
struct DriftAcc {
    stat: Stat,
    categorical: bool,
    sample: Sample,
    bins: Option<i64>,
}

impl Accumulator for DriftAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some(b) = values.get(2).and_then(|b| b.as_primitive::<Int64Type>().iter().flatten().next()) {
            self.bins = Some(b);
        }
        let flag = values[1].as_boolean();
        let value = cast(&values[0], if self.categorical { &DataType::Utf8 } else { &DataType::Float64 })?;
        for i in (0..value.len()).filter(|&i| value.is_valid(i) && flag.is_valid(i)) {
            let side = flag.value(i) as usize;
            if self.categorical {
                self.sample.counts.entry(value.as_string::<i32>().value(i).to_string()).or_default()[side] += 1;
            } else {
                let x = value.as_primitive::<Float64Type>().value(i);
                if side == 1 { self.sample.current.push(x) } else { self.sample.baseline.push(x) }
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if let Some(b) = states[5].as_primitive::<Int64Type>().iter().flatten().next() {
            self.bins = Some(b);
        }
        for (target, state) in [(&mut self.sample.baseline, &states[0]), (&mut self.sample.current, &states[1])] {
            for values in lists(state) {
                target.extend(values.as_primitive::<Float64Type>().iter().flatten());
            }
        }
        for ((keys, base), cur) in lists(&states[2]).zip(lists(&states[3])).zip(lists(&states[4])) {
            let (keys, base, cur) = (keys.as_string::<i32>(), base.as_primitive::<Int64Type>(), cur.as_primitive::<Int64Type>());
            for i in 0..keys.len() {
                let c = self.sample.counts.entry(keys.value(i).to_string()).or_default();
                c[0] += base.value(i) as u64;
                c[1] += cur.value(i) as u64;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = |a: ArrayRef| SingleRowListArrayBuilder::new(a).build_list_scalar();
        let counts = std::mem::take(&mut self.sample.counts);
        let keys: Vec<&String> = counts.keys().collect();
        let side = |s: usize| Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| counts[*k][s] as i64))) as ArrayRef;
        Ok(vec![
            list(Arc::new(Float64Array::from(std::mem::take(&mut self.sample.baseline)))),
            list(Arc::new(Float64Array::from(std::mem::take(&mut self.sample.current)))),
            list(Arc::new(StringArray::from_iter_values(keys.iter().map(|k| k.as_str())))),
            list(side(0)),
            list(side(1)),
            ScalarValue::Int64(self.bins),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let bins = match self.bins {
            None => 30,
            Some(b) if b >= 1 => b as usize,
            Some(b) => return exec_err!("{}(): bins must be at least 1, not {b}", self.stat.name()),
        };
        let s = &mut self.sample;
        s.baseline.sort_unstable_by(f64::total_cmp);
        s.current.sort_unstable_by(f64::total_cmp);
        let (n0, n1) = if self.categorical {
            s.counts.values().fold((0, 0), |(a, b), c| (a + c[0], b + c[1]))
        } else {
            (s.baseline.len() as u64, s.current.len() as u64)
        };
        if n0 == 0 || n1 == 0 {
            return Ok(if self.stat == Stat::Test { ScalarValue::try_from(&DataType::Struct(test_fields()))? } else { ScalarValue::Float64(None) });
        }
        let value = match self.stat {
            Stat::Psi => psi(&s.shares(self.categorical, bins, true)),
            Stat::JsDistance => js_distance(&s.shares(self.categorical, bins, false)),
            Stat::KsStat => ks(&s.baseline, &s.current) as f64 / (n0 * n1) as f64,
            Stat::KsPvalue => ks_pvalue(&s.baseline, &s.current),
            Stat::Wasserstein => wasserstein(&s.baseline, &s.current),
            Stat::Chi2Stat => chi2(&s.counts_per_value(self.categorical)).0,
            Stat::Chi2Pvalue => chi2(&s.counts_per_value(self.categorical)).1,
            Stat::Test => return Ok(s.evidently(self.categorical)),
        };
        Ok(ScalarValue::Float64(Some(value)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + 8 * (self.sample.baseline.capacity() + self.sample.current.capacity())
            + self.sample.counts.keys().map(|k| k.len() + 48).sum::<usize>()
    }
}

impl Sample {
    /// Counts per distinct value, [baseline, current]; numbers must be sorted.
    fn counts_per_value(&self, categorical: bool) -> Vec<[u64; 2]> {
        if categorical {
            return self.counts.values().copied().collect();
        }
        let mut out = Vec::new();
        let (a, b) = (&self.baseline, &self.current);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let x = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => if x.total_cmp(y).is_le() { *x } else { *y },
                (Some(x), None) => *x,
                (None, Some(y)) => *y,
                (None, None) => unreachable!(),
            };
            let mut c = [0u64; 2];
            while a.get(i).is_some_and(|v| v.total_cmp(&x).is_eq()) {
                c[0] += 1;
                i += 1;
            }
            while b.get(j).is_some_and(|v| v.total_cmp(&x).is_eq()) {
                c[1] += 1;
                j += 1;
            }
            out.push(c);
        }
        out
    }

    /// Each side's share per bin (Evidently's `get_binned_data`), optionally with empty bins
    /// filled.
    fn shares(&self, categorical: bool, bins: usize, fill_zeroes: bool) -> [Vec<f64>; 2] {
        let distinct_baseline = if categorical { 0 } else { distinct(&self.baseline) };
        let counts = if !categorical && distinct_baseline > 20 {
            histogram(&self.baseline, &self.current, bins)
        } else {
            self.counts_per_value(categorical)
        };
        let totals = counts.iter().fold([0u64; 2], |t, c| [t[0] + c[0], t[1] + c[1]]);
        let side = |s: usize| -> Vec<f64> {
            let mut p: Vec<f64> = counts.iter().map(|c| c[s] as f64 / totals[s] as f64).collect();
            if fill_zeroes {
                let smallest = p.iter().copied().filter(|&v| v != 0.0).fold(f64::INFINITY, f64::min);
                let fill = if smallest <= 0.0001 { smallest / 1e6 } else { 0.0001 };
                p.iter_mut().filter(|v| **v == 0.0).for_each(|v| *v = fill);
            }
            p
        };
        [side(0), side(1)]
    }

    /// Evidently's default test for this column, with its threshold.
    fn evidently(&self, categorical: bool) -> ScalarValue {
        let counts = self.counts_per_value(categorical);
        let n_values = counts.len();
        let n_baseline: u64 = counts.iter().map(|c| c[0]).sum();
        let numeric = !categorical && n_values > 5;
        let (test, statistic, p_value, threshold) = if n_baseline <= 1000 {
            if numeric {
                let d = ks(&self.baseline, &self.current);
                let d = d as f64 / (self.baseline.len() * self.current.len()) as f64;
                ("ks", d, Some(ks_pvalue(&self.baseline, &self.current)), 0.05)
            } else if n_values > 2 {
                let (stat, p) = chi2(&counts);
                ("chisquare", stat, Some(p), 0.05)
            } else {
                let (z, p) = z_test(&counts);
                ("z", z, Some(p), 0.05)
            }
        } else if numeric {
            let mean = self.baseline.iter().sum::<f64>() / self.baseline.len() as f64;
            let var = self.baseline.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / self.baseline.len() as f64;
            ("wasserstein", wasserstein(&self.baseline, &self.current) / var.sqrt().max(0.001), None, 0.1)
        } else {
            ("jensenshannon", js_distance(&self.shares(categorical, 30, false)), None, 0.1)
        };
        let drifted = match (test, p_value) {
            ("ks", Some(p)) => p <= threshold,
            (_, Some(p)) => p < threshold,
            (_, None) => statistic >= threshold,
        };
        let mut b = ScalarStructBuilder::new();
        let fields = test_fields();
        let values = [
            ScalarValue::from(if categorical { "cat" } else { "num" }),
            ScalarValue::from(test),
            ScalarValue::Float64(Some(statistic)),
            ScalarValue::Float64(p_value),
            ScalarValue::Float64(Some(threshold)),
            ScalarValue::Boolean(Some(drifted)),
        ];
        for (f, v) in fields.iter().zip(values) {
            b = b.with_scalar(f.as_ref().clone(), v);
        }
        b.build().unwrap_or(ScalarValue::Null)
    }
}

fn distinct(sorted: &[f64]) -> usize {
    sorted.chunk_by(|a, b| a.total_cmp(b).is_eq()).count()
}

/// Counts per equal-width bin over the range of both sides, as `numpy.histogram` with
/// `histogram_bin_edges(both, bins)`: bins are half-open but the last, which holds the maximum.
fn histogram(a: &[f64], b: &[f64], bins: usize) -> Vec<[u64; 2]> {
    let lo = a[0].min(b[0]);
    let hi = a[a.len() - 1].max(b[b.len() - 1]);
    let (lo, hi) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let step = (hi - lo) / bins as f64;
    let edge = |k: usize| if k == bins { hi } else { lo + k as f64 * step };
    let mut out = vec![[0u64; 2]; bins];
    for (side, values) in [a, b].into_iter().enumerate() {
        for &x in values {
            let mut k = (((x - lo) / (hi - lo)) * bins as f64) as usize;
            k = k.min(bins - 1);
            // The division may land one bin off the edges numpy compares against.
            if k > 0 && x < edge(k) {
                k -= 1;
            } else if k + 1 < bins && x >= edge(k + 1) {
                k += 1;
            }
            out[k][side] += 1;
        }
    }
    out
}

fn psi([b, c]: &[Vec<f64>; 2]) -> f64 {
    b.iter().zip(c).map(|(b, c)| (b - c) * (b / c).ln()).sum()
}

fn js_distance([p, q]: &[Vec<f64>; 2]) -> f64 {
    let rel = |x: f64, y: f64| if x > 0.0 && y > 0.0 { x * (x / y).ln() } else if x == 0.0 { 0.0 } else { f64::INFINITY };
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let js: f64 = p
        .iter()
        .zip(q)
        .map(|(p, q)| {
            let (p, q) = (p / sp, q / sq);
            let m = (p + q) / 2.0;
            rel(p, m) + rel(q, m)
        })
        .sum();
    (js / 2.0).sqrt()
}

/// The KS statistic scaled to an integer: max |i m - j n| over the merged sorted samples
/// (D = that / (n m)).
fn ks(a: &[f64], b: &[f64]) -> u64 {
    let (n, m) = (a.len() as i128, b.len() as i128);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0i128);
    while i < a.len() && j < b.len() {
        let x = if a[i].total_cmp(&b[j]).is_le() { a[i] } else { b[j] };
        while i < a.len() && a[i].total_cmp(&x).is_eq() {
            i += 1;
        }
        while j < b.len() && b[j].total_cmp(&x).is_eq() {
            j += 1;
        }
        d = d.max((i as i128 * m - j as i128 * n).abs());
    }
    d as u64
}

fn ks_pvalue(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    let d = ks(a, b);
    if n.max(m) <= 10_000 {
        return ks_exact(n, m, d);
    }
    let en = (n * m) as f64 / (n + m) as f64;
    kolmogorov_sf(en.sqrt() * d as f64 / (n * m) as f64)
}

/// P(D >= d / (n m)) under the null: one minus the share of monotone lattice paths from (0, 0)
/// to (n, m) that keep |i m - j n| < d at every point. u[j] is the share of paths to (i, j)
/// that stayed inside; the last step into (i, j) came from (i - 1, j) in i / (i + j) of them.
fn ks_exact(n: usize, m: usize, d: u64) -> f64 {
    let inside = |i: usize, j: usize| ((i as i128 * m as i128 - j as i128 * n as i128).unsigned_abs() as u64) < d;
    let mut u = vec![0.0f64; m + 1];
    u[0] = 1.0;
    for j in 1..=m {
        u[j] = if inside(0, j) { u[j - 1] } else { 0.0 };
    }
    for i in 1..=n {
        u[0] = if inside(i, 0) { u[0] } else { 0.0 };
        for j in 1..=m {
            u[j] = if inside(i, j) { (i as f64 * u[j] + j as f64 * u[j - 1]) / (i + j) as f64 } else { 0.0 };
        }
    }
    (1.0 - u[m]).clamp(0.0, 1.0)
}

/// The limiting Kolmogorov distribution's survival function, Q(x) = P(K > x).
pub(crate) fn kolmogorov_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.18 {
        // P(K <= x) = sqrt(2 pi) / x * sum exp(-(2k - 1)^2 pi^2 / (8 x^2)), fast for small x.
        let s: f64 = (1..=20)
            .map(|k| {
                let t = (2 * k - 1) as f64 * std::f64::consts::PI;
                (-t * t / (8.0 * x * x)).exp()
            })
            .sum();
        return (1.0 - (2.0 * std::f64::consts::PI).sqrt() / x * s).clamp(0.0, 1.0);
    }
    let s: f64 = (1..=100).map(|k| {
        let k = k as f64;
        let sign = if k as i64 % 2 == 1 { 1.0 } else { -1.0 };
        sign * (-2.0 * k * k * x * x).exp()
    }).sum();
    (2.0 * s).clamp(0.0, 1.0)
}

fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut total) = (0usize, 0usize, 0.0);
    let mut x = a[0].min(b[0]);
    loop {
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        let next = match (a.get(i), b.get(j)) {
            (Some(p), Some(q)) => p.min(*q),
            (Some(p), None) => *p,
            (None, Some(q)) => *q,
            (None, None) => return total,
        };
        total += (i as f64 / n - j as f64 / m).abs() * (next - x);
        x = next;
    }
}

/// Pearson's statistic of the current counts against the baseline's, scaled, and its p-value.
fn chi2(counts: &[[u64; 2]]) -> (f64, f64) {
    if counts.len() < 2 {
        return (0.0, 1.0);
    }
    let (n0, n1) = counts.iter().fold((0u64, 0u64), |(a, b), c| (a + c[0], b + c[1]));
    let scale = n1 as f64 / n0 as f64;
    let stat: f64 = counts
        .iter()
        .map(|c| {
            let expected = c[0] as f64 * scale;
            let d = c[1] as f64 - expected;
            if expected == 0.0 { if d == 0.0 { 0.0 } else { f64::INFINITY } } else { d * d / expected }
        })
        .sum();
    let df = (counts.len() - 1) as f64;
    let p = if stat.is_infinite() {
        0.0
    } else if stat <= 0.0 || stat.is_nan() {
        1.0
    } else {
        statrs::function::gamma::checked_gamma_ur(df / 2.0, stat / 2.0).unwrap_or(f64::NAN)
    };
    (stat, p)
}

/// The two-proportion Z test of one value's share (Evidently's `z` test for binary columns);
/// `counts` holds at most two values, in sorted order.
///
/// As Evidently's `proportions_diff_z_stat_ind`, the statistic is the baseline share of the
/// last value in sorted order (`true` of a boolean) minus its current share.
fn z_test(counts: &[[u64; 2]]) -> (f64, f64) {
    if counts.len() < 2 {
        return (0.0, 1.0);
    }
    let (n0, n1) = counts.iter().fold((0u64, 0u64), |(a, b), c| (a + c[0], b + c[1]));
    let (n0, n1) = (n0 as f64, n1 as f64);
    let last = counts[counts.len() - 1];
    let (p0, p1) = (last[0] as f64 / n0, last[1] as f64 / n1);
    let pooled = (last[0] + last[1]) as f64 / (n0 + n1);
    let z = (p0 - p1) / (pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1)).sqrt();
    let p = statrs::function::erf::erfc(z.abs() / std::f64::consts::SQRT_2);
    (z, p)
}

/// The table function's name.
pub const FUNCTION: &str = "drift";

fn usage() -> Error {
    Error::Syntax(format!(
        "usage: {FUNCTION}('baseline', 'current' [, 'column', ...]), where each side is a table name or a quoted query"
    ))
}

/// Expands every `drift(baseline, current [, column, ...])` in a statement into one aggregate
/// over both sides (each column's `drift_test`), unnested to one row per column, built as a syntax
/// tree (`sql::build`) with both sides in place as parsed; as SQL it reads:
///
/// ```sql
/// SELECT r['column'] AS "column", r['t']['kind'] AS kind, ...
/// FROM (SELECT unnest(make_array(named_struct('column', 'c', 't', "d0"), ...)) AS r
///       FROM (SELECT drift_test("c", "__hs_current") AS "d0", ...
///             FROM (SELECT "c", ..., false AS "__hs_current" FROM (<baseline>) b
///                   UNION ALL SELECT "c", ..., true FROM (<current>) c) u) a) x
/// ```
///
/// Both sides are read once, whatever the number of columns.
pub async fn expand(session: &dyn Planner, stmt: &mut Statement) -> HResult<()> {
    let calls = table_functions::calls(stmt, FUNCTION);
    if calls.is_empty() {
        return Ok(());
    }
    let mut derived = Vec::with_capacity(calls.len());
    for args in &calls {
        derived.push(expansion(session, args).await?);
    }
    table_functions::replace(stmt, FUNCTION, derived);
    Ok(())
}

async fn expansion(session: &dyn Planner, args: &[FunctionArg]) -> HResult<Box<Query>> {
    let exprs: Vec<&Expr> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(usage()),
        })
        .collect::<HResult<_>>()?;
    let [baseline, current, wanted @ ..] = exprs.as_slice() else { return Err(usage()) };
    let baseline = build::relation_arg(baseline).ok_or_else(usage)??;
    let current = build::relation_arg(current).ok_or_else(usage)??;
    let wanted: Vec<&str> = wanted.iter().map(|e| table_functions::string_arg(e).ok_or_else(usage)).collect::<HResult<_>>()?;
    let (b, c) = (session.query_schema(baseline.clone()).await?, session.query_schema(current.clone()).await?);
    let comparable = |t: &DataType| t.is_numeric() || t.is_temporal() || is_text(t);
    let columns: Vec<String> = if wanted.is_empty() {
        // Dates and timestamps only when asked for: by default they drift by construction.
        b.fields()
            .iter()
            .filter(|f| (f.data_type().is_numeric() || is_text(f.data_type())) && c.field_with_name(f.name()).is_ok())
            .map(|f| f.name().clone())
            .collect()
    } else {
        let mut out = Vec::new();
        for w in wanted {
            for (side, schema) in [("baseline", &b), ("current", &c)] {
                let f = schema.field_with_name(w).map_err(|_| {
                    Error::UndefinedColumn(format!("{FUNCTION}: the {side} has no column \"{w}\""))
                })?;
                if !comparable(f.data_type()) {
                    return Err(Error::DatatypeMismatch(format!(
                        "{FUNCTION}: column \"{w}\" is {}; drift compares numbers, dates, timestamps, text and booleans",
                        f.data_type()
                    )));
                }
            }
            out.push(w.to_string());
        }
        out
    };
    if columns.is_empty() {
        return Err(Error::UndefinedColumn(format!("{FUNCTION}: the baseline and current share no column to compare")));
    }
    let name = |n: &str| Expr::Identifier(build::ident(n));
    let side = |q: Box<Query>, alias: &str, current: bool| {
        let mut projection: Vec<SelectItem> = columns.iter().map(|c| SelectItem::UnnamedExpr(name(c))).collect();
        projection.push(build::aliased(build::boolean(current), "__hs_current"));
        build::select(projection, build::from(build::derived(q, alias)))
    };
    let both = build::union_all(side(baseline, "__hs_b", false), side(current, "__hs_c", true));
    let tests = columns
        .iter()
        .enumerate()
        .map(|(i, c)| build::aliased(build::call("drift_test", vec![name(c), name("__hs_current")]), &format!("d{i}")))
        .collect();
    let tested = build::query(build::select(tests, build::from(build::derived(build::query(both), "__hs_u"))));
    let structs = columns
        .iter()
        .enumerate()
        .map(|(i, c)| build::call("named_struct", vec![build::string("column"), build::string(c), build::string("t"), name(&format!("d{i}"))]))
        .collect();
    let rows = build::aliased(build::call("unnest", vec![build::call("make_array", structs)]), "r");
    let unnested = build::query(build::select(vec![rows], build::from(build::derived(tested, "__hs_a"))));
    let field = |of: Expr, f: &str| build::call("get_field", vec![of, build::string(f)]);
    let mut fields = vec![build::aliased(field(name("r"), "column"), "column")];
    for f in ["kind", "test", "statistic", "p_value", "threshold", "drifted"] {
        fields.push(build::aliased(field(field(name("r"), "t"), f), f));
    }
    Ok(build::query(build::select(fields, build::from(build::derived(unnested, "__hs_x")))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact KS p-value against enumeration of every way to split a pooled sample (without
    /// ties, each split is one lattice path, equally likely).
    #[test]
    fn ks_exact_matches_permutations() {
        let pooled: Vec<f64> = (0..10).map(|k| k as f64 * 1.1).collect();
        let split = |mask: u32| -> (Vec<f64>, Vec<f64>) {
            let mut sides = (Vec::new(), Vec::new());
            for (k, v) in pooled.iter().enumerate() {
                if mask & (1 << k) != 0 { sides.0.push(*v) } else { sides.1.push(*v) }
            }
            sides
        };
        for observed in [0b0000101101u32, 0b1010010001, 0b0000001111] {
            let (a, b) = split(observed);
            let d = ks(&a, &b);
            let masks: Vec<u32> = (0u32..1 << 10).filter(|m| m.count_ones() == 4).collect();
            let hits = masks.iter().filter(|&&m| { let (x, y) = split(m); ks(&x, &y) >= d }).count();
            assert!((ks_exact(4, 6, d) - hits as f64 / masks.len() as f64).abs() < 1e-12);
        }
    }

    #[test]
    fn kolmogorov_limit_is_continuous_and_close_to_exact_for_large_samples() {
        assert!((kolmogorov_sf(1.18 - 1e-12) - kolmogorov_sf(1.18 + 1e-12)).abs() < 1e-10);
        // 1.3581 is the 5% critical value.
        assert!((kolmogorov_sf(1.3581) - 0.05).abs() < 1e-4);
        let (n, m) = (3000usize, 2000usize);
        let d = (0.04 * (n * m) as f64) as u64;
        let exact = ks_exact(n, m, d);
        let limit = kolmogorov_sf(((n * m) as f64 / (n + m) as f64).sqrt() * d as f64 / (n * m) as f64);
        assert!((exact - limit).abs() < 0.01, "{exact} vs {limit}");
    }
}
