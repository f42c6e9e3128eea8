//! The ordered-set aggregates analysts use, as PostgreSQL computes them: `percentile_cont`,
//! `percentile_disc` and `mode`, each with `WITHIN GROUP (ORDER BY ...)`.
//!
//! DataFusion 55's `percentile_cont` quantizes the interpolation weight (to six decimals), so
//! `percentile_cont(0.9)` of ten values differed from PostgreSQL's in the fourth decimal; and
//! it has no `percentile_disc`. PostgreSQL sorts the group's non-NULL values and, for `cont`,
//! interpolates linearly at position `p * (n - 1)`; for `disc`, takes the first value whose
//! cumulative share reaches `p`. Both are registered over DataFusion's. DataFusion has no
//! `mode`: the most frequent value, the first in the ordering among equally frequent ones.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

pub fn udafs() -> [AggregateUDF; 3] {
    [
        AggregateUDF::new_from_impl(Percentile::new(false)),
        AggregateUDF::new_from_impl(Percentile::new(true)),
        AggregateUDF::new_from_impl(Mode { signature: Signature::any(1, Volatility::Immutable) }),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Percentile {
    discrete: bool,
    signature: Signature,
}

impl Percentile {
    fn new(discrete: bool) -> Self {
        Self { discrete, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for Percentile {
    fn name(&self) -> &str {
        if self.discrete { "percentile_disc" } else { "percentile_cont" }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let value = if self.discrete { args[0].clone() } else { DataType::Float64 };
        Ok(vec![value, DataType::Float64])
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(if self.discrete { args[0].clone() } else { DataType::Float64 })
    }
    fn supports_within_group_clause(&self) -> bool {
        true
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = Field::new_list_field(DataType::Float64, true);
        Ok(vec![Arc::new(Field::new(format!("{}[values]", args.name), DataType::List(Arc::new(item)), true))])
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let p = args
            .exprs
            .get(1)
            .and_then(|e| e.downcast_ref::<Literal>())
            .and_then(|l| l.value().cast_to(&DataType::Float64).ok())
            .and_then(|v| if let ScalarValue::Float64(p) = v { p } else { None })
            .ok_or_else(|| DataFusionError::Plan(format!("the fraction of {} must be a constant", self.name())))?;
        if !(0.0..=1.0).contains(&p) {
            return Err(DataFusionError::Execution(format!("percentile value {p} is not between 0 and 1")));
        }
        let descending = args.order_bys.first().is_some_and(|s| s.options.descending);
        Ok(Box::new(Values {
            values: vec![],
            p,
            descending,
            discrete: self.discrete,
            output: args.return_field.data_type().clone(),
        }))
    }
}

#[derive(Debug)]
struct Values {
    values: Vec<f64>,
    p: f64,
    descending: bool,
    discrete: bool,
    output: DataType,
}

impl Accumulator for Values {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let floats = datafusion::arrow::compute::cast(&values[0], &DataType::Float64)?;
        self.values.extend(floats.as_primitive::<Float64Type>().iter().flatten());
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_any().downcast_ref::<ListArray>().ok_or_else(|| DataFusionError::Internal("percentile state".into()))?;
        for list in lists.iter().flatten() {
            self.values.extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: ArrayRef = Arc::new(Float64Array::from(self.values.clone()));
        Ok(vec![SingleRowListArrayBuilder::new(values).build_list_scalar()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.values.is_empty() {
            return ScalarValue::try_from(&self.output);
        }
        self.values.sort_by(f64::total_cmp);
        if self.descending {
            self.values.reverse();
        }
        let n = self.values.len();
        let value = if self.discrete {
            // The first value whose cumulative share of the rows reaches p.
            let k = ((self.p * n as f64).ceil() as usize).clamp(1, n);
            self.values[k - 1]
        } else {
            let position = self.p * (n - 1) as f64;
            let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
            let (a, b) = (self.values[lo], self.values[hi]);
            if lo == hi { a } else { a + (b - a) * (position - lo as f64) }
        };
        ScalarValue::Float64(Some(value)).cast_to(&self.output)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8
    }
}


#[derive(Debug, PartialEq, Eq, Hash)]
struct Mode {
    signature: Signature,
}

impl AggregateUDFImpl for Mode {
    fn name(&self) -> &str {
        "mode"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }
    fn supports_within_group_clause(&self) -> bool {
        true
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = Field::new_list_field(args.input_fields[0].data_type().clone(), true);
        Ok(vec![Arc::new(Field::new(format!("{}[values]", args.name), DataType::List(Arc::new(item)), true))])
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let descending = args.order_bys.first().is_some_and(|s| s.options.descending);
        Ok(Box::new(Counts { counts: HashMap::new(), descending, output: args.return_field.data_type().clone() }))
    }
}

#[derive(Debug)]
struct Counts {
    counts: HashMap<ScalarValue, u64>,
    descending: bool,
    output: DataType,
}

impl Counts {
    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        for i in 0..values.len() {
            if !values.is_null(i) {
                *self.counts.entry(ScalarValue::try_from_array(values, i)?).or_default() += 1;
            }
        }
        Ok(())
    }
}

impl Accumulator for Counts {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_any().downcast_ref::<ListArray>().ok_or_else(|| DataFusionError::Internal("mode state".into()))?;
        for list in lists.iter().flatten() {
            self.add(&list)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        // Each value as often as it was counted: partial states merge by adding.
        let values: Vec<ScalarValue> =
            self.counts.iter().flat_map(|(v, n)| std::iter::repeat_n(v.clone(), *n as usize)).collect();
        let values = if values.is_empty() { datafusion::arrow::array::new_empty_array(&self.output) } else { ScalarValue::iter_to_array(values)? };
        Ok(vec![SingleRowListArrayBuilder::new(values).build_list_scalar()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let first = |a: &ScalarValue, b: &ScalarValue| {
            let order = a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal);
            if self.descending { order.reverse() } else { order }
        };
        let best = self.counts.iter().min_by(|(a, n), (b, m)| m.cmp(n).then_with(|| first(a, b)));
        match best {
            Some((v, _)) => Ok(v.clone()),
            None => ScalarValue::try_from(&self.output),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.keys().map(ScalarValue::size).sum::<usize>()
    }
}
