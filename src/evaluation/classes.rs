//! Classification metrics: at a score threshold (`precision_at`, `recall_at`, `f1_at`,
//! `confusion_at`), over predicted classes (`accuracy`, `macro_f1`, `weighted_f1`), and
//! calibration (`ece`). Exact and mergeable like `metrics`; NULL rows skipped.
//!
//! - `*_at(score, label, threshold)`: a row is predicted positive when `score >= threshold`.
//!   As in scikit-learn (`zero_division=0`), precision with no predicted positives, recall with
//!   no positives and F1 with neither are 0. `confusion_at` returns `{tp, fp, tn, fn}`.
//! - `accuracy(pred, label)`: the share of rows where they are equal. Both sides are compared in
//!   one type: booleans as booleans, numbers (and booleans mixed with numbers, as 0/1) as
//!   doubles, anything else as text.
//! - `macro_f1(pred, label)`: the mean of per-class F1 over every class seen as a label or a
//!   prediction; `weighted_f1` weights each class's F1 by its label count. A class's F1 with no
//!   true and no predicted rows does not arise; with a zero denominator it is 0.
//! - `ece(score, label, bins)`: expected calibration error over `bins` equal-width bins of
//!   [0, 1] (a score of 1 goes in the last): the sum over bins of (rows in bin / rows) x
//!   |mean label - mean score|.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

use super::lists;
use crate::sql::semantics::exact::{ExactSum, sums_list_type, sums_to_list};

pub fn udafs() -> Vec<AggregateUDF> {
    use Kind::*;
    [PrecisionAt, RecallAt, F1At, ConfusionAt, Accuracy, MacroF1, WeightedF1, Ece]
        .into_iter()
        .map(|k| AggregateUDF::from(ClassMetric { kind: k, signature: Signature::user_defined(Volatility::Immutable) }))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    PrecisionAt,
    RecallAt,
    F1At,
    ConfusionAt,
    Accuracy,
    MacroF1,
    WeightedF1,
    Ece,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::PrecisionAt => "precision_at",
            Kind::RecallAt => "recall_at",
            Kind::F1At => "f1_at",
            Kind::ConfusionAt => "confusion_at",
            Kind::Accuracy => "accuracy",
            Kind::MacroF1 => "macro_f1",
            Kind::WeightedF1 => "weighted_f1",
            Kind::Ece => "ece",
        }
    }

    fn at_threshold(self) -> bool {
        matches!(self, Kind::PrecisionAt | Kind::RecallAt | Kind::F1At | Kind::ConfusionAt)
    }
}

fn confusion_fields() -> Fields {
    ["tp", "fp", "tn", "fn"].iter().map(|n| Field::new(*n, DataType::Int64, false)).collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ClassMetric {
    kind: Kind,
    signature: Signature,
}

impl AggregateUDFImpl for ClassMetric {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(if self.kind == Kind::ConfusionAt { DataType::Struct(confusion_fields()) } else { DataType::Float64 })
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let want = if self.kind.at_threshold() || self.kind == Kind::Ece { 3 } else { 2 };
        if args.len() != want {
            return plan_err!("{}() takes {want} arguments, got {}", self.name(), args.len());
        }
        if matches!(self.kind, Kind::Accuracy | Kind::MacroF1 | Kind::WeightedF1) {
            // One type for both sides, so equal classes compare equal (1 and 1.0, true and 1).
            let numeric = |t: &DataType| t.is_numeric() || matches!(t, DataType::Boolean | DataType::Null);
            let common = if args.iter().all(|t| *t == DataType::Boolean) {
                DataType::Boolean
            } else if args.iter().all(numeric) {
                DataType::Float64
            } else {
                DataType::Utf8
            };
            return Ok(vec![common.clone(), common]);
        }
        for t in args {
            if !(t.is_numeric() || *t == DataType::Boolean || *t == DataType::Null) {
                return plan_err!("{}() takes numbers or booleans, not {t}", self.name());
            }
        }
        Ok(vec![DataType::Float64; want])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(match self.kind {
            k if k.at_threshold() => Box::new(Confusion { kind: k, counts: [0; 4] }),
            Kind::Ece => Box::new(Calibration { bins: Vec::new() }),
            k => Box::new(Classes { kind: k, pairs: BTreeMap::new() }),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let f = |n: &str, t: DataType| Arc::new(Field::new(format!("{}[{n}]", args.name), t, true));
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        Ok(match self.kind {
            k if k.at_threshold() => ["tp", "fp", "tn", "fn"].iter().map(|n| f(n, DataType::Int64)).collect(),
            Kind::Ece => vec![f("count", list(DataType::Int64)), f("scores", sums_list_type()), f("labels", sums_list_type())],
            _ => vec![f("preds", list(DataType::Utf8)), f("labels", list(DataType::Utf8)), f("counts", list(DataType::Int64))],
        })
    }
}

fn int_list(v: impl IntoIterator<Item = i64>) -> ScalarValue {
    SingleRowListArrayBuilder::new(Arc::new(Int64Array::from_iter_values(v))).build_list_scalar()
}


fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Debug)]
struct Confusion {
    kind: Kind,
    /// tp, fp, tn, fn
    counts: [i64; 4],
}

impl Accumulator for Confusion {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (s, l, t) =
            (values[0].as_primitive::<Float64Type>(), values[1].as_primitive::<Float64Type>(), values[2].as_primitive::<Float64Type>());
        for i in 0..s.len() {
            if s.is_null(i) || l.is_null(i) || t.is_null(i) {
                continue;
            }
            let (predicted, actual) = (s.value(i) >= t.value(i), l.value(i) > 0.5);
            self.counts[match (predicted, actual) {
                (true, true) => 0,
                (true, false) => 1,
                (false, false) => 2,
                (false, true) => 3,
            }] += 1;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let [tp, fp, tn, fn_] = self.counts;
        Ok(match self.kind {
            Kind::PrecisionAt => ScalarValue::Float64(Some(ratio(tp, tp + fp))),
            Kind::RecallAt => ScalarValue::Float64(Some(ratio(tp, tp + fn_))),
            Kind::F1At => ScalarValue::Float64(Some(ratio(2 * tp, 2 * tp + fp + fn_))),
            _ => {
                let mut b = datafusion::common::scalar::ScalarStructBuilder::new();
                for (f, v) in confusion_fields().iter().zip([tp, fp, tn, fn_]) {
                    b = b.with_scalar(f.clone(), ScalarValue::Int64(Some(v)));
                }
                b.build()?
            }
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self.counts.iter().map(|c| ScalarValue::Int64(Some(*c))).collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for (c, s) in self.counts.iter_mut().zip(states) {
            *c += s.as_primitive::<Int64Type>().iter().flatten().sum::<i64>();
        }
        Ok(())
    }
}

/// Row counts per (prediction, label) pair.
#[derive(Debug)]
struct Classes {
    kind: Kind,
    pairs: BTreeMap<(String, String), i64>,
}

impl Accumulator for Classes {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (p, l) = (cast(&values[0], &DataType::Utf8)?, cast(&values[1], &DataType::Utf8)?);
        let (p, l) = (p.as_string::<i32>(), l.as_string::<i32>());
        for i in 0..p.len() {
            if p.is_valid(i) && l.is_valid(i) {
                *self.pairs.entry((p.value(i).to_string(), l.value(i).to_string())).or_default() += 1;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let total: i64 = self.pairs.values().sum();
        if total == 0 {
            return Ok(ScalarValue::Float64(None));
        }
        if self.kind == Kind::Accuracy {
            let right: i64 = self.pairs.iter().filter(|((p, l), _)| p == l).map(|(_, n)| n).sum();
            return Ok(ScalarValue::Float64(Some(right as f64 / total as f64)));
        }
        // Per class: (true positives, predicted, actual).
        let mut per: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        for ((p, l), n) in &self.pairs {
            per.entry(p.as_str()).or_default().1 += n;
            per.entry(l.as_str()).or_default().2 += n;
            if p == l {
                per.entry(p.as_str()).or_default().0 += n;
            }
        }
        let f1 = |(tp, predicted, actual): (i64, i64, i64)| ratio(2 * tp, predicted + actual);
        Ok(ScalarValue::Float64(Some(match self.kind {
            Kind::MacroF1 => per.values().map(|c| f1(*c)).sum::<f64>() / per.len() as f64,
            _ => per.values().map(|c| f1(*c) * c.2 as f64).sum::<f64>() / total as f64,
        })))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.pairs.keys().map(|(a, b)| 64 + a.len() + b.len()).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let text = |v: Vec<&String>| {
            let v: Vec<ScalarValue> = v.into_iter().map(|s| ScalarValue::Utf8(Some(s.clone()))).collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&v, &DataType::Utf8))
        };
        Ok(vec![
            text(self.pairs.keys().map(|(p, _)| p).collect()),
            text(self.pairs.keys().map(|(_, l)| l).collect()),
            int_list(self.pairs.values().copied()),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for ((p, l), n) in lists(&states[0]).zip(lists(&states[1])).zip(lists(&states[2])) {
            let (p, l) = (cast(&p, &DataType::Utf8)?, cast(&l, &DataType::Utf8)?);
            let (p, l, n) = (p.as_string::<i32>(), l.as_string::<i32>(), n.as_primitive::<Int64Type>());
            for i in 0..n.len() {
                *self.pairs.entry((p.value(i).to_string(), l.value(i).to_string())).or_default() += n.value(i);
            }
        }
        Ok(())
    }
}

/// Per bin: rows, sum of scores, sum of labels (exact, so the answer does not depend on the
/// order rows arrive in).
#[derive(Debug)]
struct Calibration {
    bins: Vec<(i64, ExactSum, ExactSum)>,
}

impl Calibration {
    fn ensure(&mut self, bins: usize) -> Result<()> {
        if bins == 0 || bins > 10_000 {
            return datafusion::common::exec_err!("ece(): bins must be between 1 and 10000, not {bins}");
        }
        if self.bins.is_empty() {
            self.bins = vec![(0, ExactSum::new(), ExactSum::new()); bins];
        } else if self.bins.len() != bins {
            return datafusion::common::exec_err!("ece(): bins must be the same on every row");
        }
        Ok(())
    }
}

impl Accumulator for Calibration {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (s, l, b) =
            (values[0].as_primitive::<Float64Type>(), values[1].as_primitive::<Float64Type>(), values[2].as_primitive::<Float64Type>());
        for i in 0..s.len() {
            if s.is_null(i) || l.is_null(i) || b.is_null(i) {
                continue;
            }
            let bins = b.value(i) as usize;
            self.ensure(bins)?;
            let at = ((s.value(i) * bins as f64).floor().max(0.0) as usize).min(bins - 1);
            let bin = &mut self.bins[at];
            bin.0 += 1;
            bin.1.add(s.value(i));
            bin.2.add(l.value(i));
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let total: i64 = self.bins.iter().map(|b| b.0).sum();
        if total == 0 {
            return Ok(ScalarValue::Float64(None));
        }
        let ece = self
            .bins
            .iter()
            .filter(|b| b.0 > 0)
            .map(|(n, s, l)| (*n as f64 / total as f64) * ((l.value() - s.value()) / *n as f64).abs())
            .sum();
        Ok(ScalarValue::Float64(Some(ece)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.bins.iter().map(|b| 8 + b.1.size() + b.2.size()).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            int_list(self.bins.iter().map(|b| b.0)),
            sums_to_list(self.bins.iter().map(|b| &b.1)),
            sums_to_list(self.bins.iter().map(|b| &b.2)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for ((n, s), l) in lists(&states[0]).zip(lists(&states[1])).zip(lists(&states[2])) {
            if n.is_empty() {
                continue;
            }
            self.ensure(n.len())?;
            let (n, s, l) = (n.as_primitive::<Int64Type>(), s.as_binary::<i32>(), l.as_binary::<i32>());
            for i in 0..n.len() {
                let bin = &mut self.bins[i];
                bin.0 += n.value(i);
                bin.1.merge(&ExactSum::from_bytes(s.value(i))?);
                bin.2.merge(&ExactSum::from_bytes(l.value(i))?);
            }
        }
        Ok(())
    }
}
