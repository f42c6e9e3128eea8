//! Model-quality metrics as DataFusion aggregate functions: exact, with partial states that
//! merge (so they run in parallel and per group), skipping rows where either argument is NULL.
//!
//! Binary metrics take a score (a probability) and a label that is boolean or 0/1. Regression
//! metrics take a prediction and a target. Definitions follow scikit-learn:
//! - `roc_auc(score, label)`: area under the ROC curve, ties counted half (the trapezoid rule);
//!   NULL when the rows hold only one class;
//! - `pr_auc(score, label)`: average precision, the sum over thresholds of (recall step) x
//!   precision; NULL without positives;
//! - `log_loss(score, label)`: mean cross-entropy, scores clipped to [eps, 1 - eps] with eps the
//!   f64 machine epsilon;
//! - `brier(score, label)`: mean squared difference;
//! - `rmse(pred, y)`, `mae(pred, y)`; `mape(pred, y)`: mean |y - pred| / max(|y|, eps);
//! - `r2(pred, y)`: 1 - SSE / SST; when every y is equal, 1 if the predictions are exact,
//!   else 0 (scikit-learn's `force_finite`);
//! - `ndcg_at(k, score, relevance)`: over one query's rows (GROUP BY the query and average),
//!   DCG@k / ideal DCG@k with linear gains and 1/log2(rank + 1) discounts; rows with tied
//!   scores share the average of their positions' discounts (`ndcg_score`'s default); 0 when
//!   every relevance is 0.
//!
//! Every function is NULL over no rows. Sums are exact (`sql::semantics::exact`), so a metric
//! gives the same bits over the same rows in any order, partitioning or batch size.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

use crate::sql::semantics::exact::{ExactSum, squares_around_mean};

/// Every metric, to register in a session.
pub fn udafs() -> Vec<AggregateUDF> {
    use Kind::*;
    [RocAuc, PrAuc, LogLoss, Brier, Rmse, Mae, Mape, R2, NdcgAt].into_iter().map(|k| AggregateUDF::from(Metric::new(k))).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    RocAuc,
    PrAuc,
    LogLoss,
    Brier,
    Rmse,
    Mae,
    Mape,
    R2,
    NdcgAt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RocAuc => "roc_auc",
            Kind::PrAuc => "pr_auc",
            Kind::LogLoss => "log_loss",
            Kind::Brier => "brier",
            Kind::Rmse => "rmse",
            Kind::Mae => "mae",
            Kind::Mape => "mape",
            Kind::R2 => "r2",
            Kind::NdcgAt => "ndcg_at",
        }
    }

    /// Ranking metrics keep every (score, label) pair; the others keep sums.
    fn keeps_pairs(self) -> bool {
        matches!(self, Kind::RocAuc | Kind::PrAuc | Kind::NdcgAt)
    }

    fn arity(self) -> usize {
        if self == Kind::NdcgAt { 3 } else { 2 }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Metric {
    kind: Kind,
    signature: Signature,
}

impl Metric {
    fn new(kind: Kind) -> Self {
        Self { kind, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for Metric {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    /// Both arguments become doubles: numbers, and booleans as 0/1.
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let want = self.kind.arity();
        if args.len() != want {
            return plan_err!("{}() takes {want} arguments, got {}", self.name(), args.len());
        }
        for t in args {
            if !(t.is_numeric() || *t == DataType::Boolean || *t == DataType::Null) {
                return plan_err!("{}() takes numbers or booleans, not {t}", self.name());
            }
        }
        Ok(vec![DataType::Float64; want])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(if self.kind.keeps_pairs() {
            Box::new(Pairs { kind: self.kind, scores: Vec::new(), labels: Vec::new(), k: None })
        } else {
            Box::new(Sums { kind: self.kind, loss: ExactSum::new(), y: ExactSum::new(), y2: ExactSum::new(), n: 0 })
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let f = |n: &str, t: DataType| Arc::new(Field::new(format!("{}[{n}]", args.name), t, true));
        let list = || DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        Ok(if self.kind.keeps_pairs() {
            vec![f("scores", list()), f("labels", list()), f("k", DataType::Float64)]
        } else {
            vec![f("loss", DataType::Binary), f("y", DataType::Binary), f("y2", DataType::Binary), f("n", DataType::Int64)]
        })
    }
}

/// Rows where both arguments are set, as doubles.
fn pairs(values: &[ArrayRef]) -> Result<impl Iterator<Item = (f64, f64)> + '_> {
    let (a, b) = (values[0].as_primitive::<Float64Type>(), values[1].as_primitive::<Float64Type>());
    Ok((0..a.len()).filter(move |&i| a.is_valid(i) && b.is_valid(i)).map(move |i| (a.value(i), b.value(i))))
}

/// Additive metrics, summed exactly (`ExactSum`) so that no partitioning or batch size changes
/// a bit of the answer. `loss` is the sum of the row's loss (for r2, of squared errors); r2
/// also keeps exact sums of y and y², from which SST comes in double-double arithmetic.
#[derive(Debug)]
struct Sums {
    kind: Kind,
    loss: ExactSum,
    y: ExactSum,
    y2: ExactSum,
    n: i64,
}

impl Accumulator for Sums {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for (p, y) in pairs(values)? {
            self.loss.add(match self.kind {
                Kind::LogLoss => {
                    let p = p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
                    -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
                }
                Kind::Brier | Kind::Rmse | Kind::R2 => (p - y) * (p - y),
                Kind::Mae => (y - p).abs(),
                Kind::Mape => (y - p).abs() / y.abs().max(f64::EPSILON),
                _ => 0.0,
            });
            if self.kind == Kind::R2 {
                self.y.add(y);
                self.y2.add_square(y);
            }
            self.n += 1;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.n == 0 {
            return Ok(ScalarValue::Float64(None));
        }
        let (n, loss) = (self.n as f64, self.loss.value());
        Ok(ScalarValue::Float64(Some(match self.kind {
            Kind::Rmse => (loss / n).sqrt(),
            Kind::R2 => {
                let sst = squares_around_mean(&self.y, &self.y2, self.n as u64);
                if sst == 0.0 {
                    if loss == 0.0 { 1.0 } else { 0.0 }
                } else {
                    1.0 - loss / sst
                }
            }
            _ => loss / n,
        })))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.loss.size() + self.y.size() + self.y2.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut out: Vec<ScalarValue> = [&self.loss, &self.y, &self.y2].iter().map(|s| ScalarValue::Binary(Some(s.to_bytes()))).collect();
        out.push(ScalarValue::Int64(Some(self.n)));
        Ok(out)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.loss.merge_column(&states[0])?;
        self.y.merge_column(&states[1])?;
        self.y2.merge_column(&states[2])?;
        self.n += states[3].as_primitive::<Int64Type>().iter().flatten().sum::<i64>();
        Ok(())
    }
}

/// Ranking metrics: every (score, label) pair, ranked at the end.
#[derive(Debug)]
struct Pairs {
    kind: Kind,
    scores: Vec<f64>,
    labels: Vec<f64>,
    /// ndcg_at's cutoff.
    k: Option<f64>,
}

impl Pairs {
    fn ndcg(&self, k: usize) -> f64 {
        let discount = |rank: usize| if rank < k { 1.0 / ((rank + 2) as f64).log2() } else { 0.0 };
        let mut order: Vec<usize> = (0..self.scores.len()).collect();
        // Ties by label too, so that a tie's gains are summed in one order on every run.
        order.sort_unstable_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]).then(self.labels[a].total_cmp(&self.labels[b])));
        let (mut dcg, mut i) = (0.0, 0);
        while i < order.len() {
            let start = i;
            let (mut gain, score) = (0.0, self.scores[order[i]]);
            while i < order.len() && self.scores[order[i]].total_cmp(&score).is_eq() {
                gain += self.labels[order[i]];
                i += 1;
            }
            let discounts: f64 = (start..i).map(discount).sum();
            dcg += gain / (i - start) as f64 * discounts;
        }
        let mut ideal = self.labels.clone();
        ideal.sort_unstable_by(|a, b| b.total_cmp(a));
        let idcg: f64 = ideal.iter().enumerate().map(|(r, g)| g * discount(r)).sum();
        if idcg == 0.0 { 0.0 } else { dcg / idcg }
    }
}

impl Accumulator for Pairs {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.kind == Kind::NdcgAt {
            let k = values[0].as_primitive::<Float64Type>();
            if let Some(v) = k.iter().flatten().next() {
                self.k = Some(v);
            }
            for (s, l) in pairs(&values[1..])? {
                self.scores.push(s);
                self.labels.push(l);
            }
            return Ok(());
        }
        for (s, l) in pairs(values)? {
            self.scores.push(s);
            self.labels.push(l);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.kind == Kind::NdcgAt {
            return Ok(match self.k {
                Some(k) if k >= 1.0 && !self.scores.is_empty() => ScalarValue::Float64(Some(self.ndcg(k as usize))),
                Some(k) if k < 1.0 => return datafusion::common::exec_err!("ndcg_at(): k must be at least 1, not {k}"),
                _ => ScalarValue::Float64(None),
            });
        }
        // Highest score first; each group of equal scores is one threshold. Sorting the pairs
        // themselves (not indexes into them) keeps the sort in cache.
        let mut ranked: Vec<(f64, bool)> = self.scores.iter().zip(&self.labels).map(|(&s, &l)| (s, l > 0.5)).collect();
        ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let positives = ranked.iter().filter(|r| r.1).count() as f64;
        let negatives = ranked.len() as f64 - positives;
        let (mut tp, mut fp, mut area) = (0.0f64, 0.0f64, 0.0f64);
        let mut i = 0;
        while i < ranked.len() {
            let (tp0, fp0) = (tp, fp);
            let score = ranked[i].0;
            while i < ranked.len() && ranked[i].0.total_cmp(&score).is_eq() {
                if ranked[i].1 { tp += 1.0 } else { fp += 1.0 }
                i += 1;
            }
            area += match self.kind {
                // Trapezoid between consecutive ROC points, in counts (normalised below).
                Kind::RocAuc => (fp - fp0) * (tp + tp0) / 2.0,
                // Recall step times the precision at this threshold.
                _ => (tp - tp0) * tp / (tp + fp),
            };
        }
        let value = match self.kind {
            Kind::RocAuc if positives > 0.0 && negatives > 0.0 => Some(area / (positives * negatives)),
            Kind::PrAuc if positives > 0.0 => Some(area / positives),
            _ => None,
        };
        Ok(ScalarValue::Float64(value))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + 8 * (self.scores.capacity() + self.labels.capacity())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        // Built as one array: a state may hold millions of pairs.
        let list = |v: &[f64]| SingleRowListArrayBuilder::new(Arc::new(Float64Array::from(v.to_vec()))).build_list_scalar();
        Ok(vec![list(&self.scores), list(&self.labels), ScalarValue::Float64(self.k)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if let Some(k) = states[2].as_primitive::<Float64Type>().iter().flatten().next() {
            self.k = Some(k);
        }
        for (target, state) in [(&mut self.scores, &states[0]), (&mut self.labels, &states[1])] {
            for values in super::lists(state) {
                let values = cast(&values, &DataType::Float64)?;
                target.extend(values.as_primitive::<Float64Type>().iter().flatten());
            }
        }
        Ok(())
    }
}
