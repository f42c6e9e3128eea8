//! `percentile_cont` and `percentile_disc` as PostgreSQL computes them.
//!
//! DataFusion 55's `percentile_cont` quantizes the interpolation weight (to six decimals), so
//! `percentile_cont(0.9)` of ten values differed from PostgreSQL's in the fourth decimal; and
//! it has no `percentile_disc`. PostgreSQL sorts the group's non-NULL values and, for `cont`,
//! interpolates linearly at position `p * (n - 1)`; for `disc`, takes the first value whose
//! cumulative share reaches `p`. Both are registered over DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

pub fn udafs() -> [AggregateUDF; 2] {
    [AggregateUDF::new_from_impl(Percentile::new(false)), AggregateUDF::new_from_impl(Percentile::new(true))]
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

