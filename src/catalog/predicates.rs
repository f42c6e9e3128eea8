//! What of a filter delta-rs is shown.
//!
//! Owns: rewriting the filters handed to delta-rs (scans, DELETE and UPDATE predicates) so that
//! none holds a long `IN` list. Must not: change which rows a statement reads or writes.
//!
//! delta-rs turns `x IN (v1, ..., vn)` into `x = v1 OR ... OR x = vn` before it converts a filter
//! for file skipping, and converts (and prints) that chain recursively, one stack frame per
//! value: a list of 100,000 ids, what BI filters and ORMs send, overflowed the stack and aborted
//! the server. DataFusion's simplifier merges ORs of equalities and of smaller lists back into
//! one list, so splitting it does not help. Instead:
//! - a scan gets `x >= min(v) AND x <= max(v)` for file skipping, and DataFusion applies the
//!   exact filter after the scan ([`weaken_long_lists`]);
//! - a DELETE or UPDATE predicate gets the list as one opaque function of `x`
//!   ([`hide_long_lists`]), which delta-rs cannot convert (so it skips no files by it) and
//!   DataFusion evaluates exactly as the `IN` it replaces.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    lit,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal, in_list};

/// IN lists longer than this are not shown to delta-rs as they are.
const LONG_IN_LIST: usize = 64;

fn is_long(e: &Expr) -> bool {
    matches!(e, Expr::InList(l) if l.list.len() > LONG_IN_LIST)
}

fn is_true(e: &Expr) -> bool {
    matches!(e, Expr::Literal(ScalarValue::Boolean(Some(true)), _))
}

/// A weaker filter for a scan's file skipping if `filter` holds a long IN list (`true` when
/// nothing weaker can be said); `None` if it holds none. Only positions where a weaker filter
/// stays weaker (AND, OR) are rewritten.
pub fn weaken_long_lists(filter: &Expr) -> Option<Expr> {
    if !filter.exists(|e| Ok(is_long(e))).unwrap_or(true) {
        return None;
    }
    Some(match filter {
        Expr::InList(l) if is_long(filter) && !l.negated => match literal_range(&l.list) {
            Some((lo, hi)) => l.expr.as_ref().clone().gt_eq(lit(lo)).and(l.expr.as_ref().clone().lt_eq(lit(hi))),
            None => lit(true),
        },
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::And | Operator::Or), right }) => {
            let left = weaken_long_lists(left).unwrap_or_else(|| left.as_ref().clone());
            let right = weaken_long_lists(right).unwrap_or_else(|| right.as_ref().clone());
            match op {
                Operator::Or if is_true(&left) || is_true(&right) => lit(true),
                Operator::And if is_true(&left) => right,
                Operator::And if is_true(&right) => left,
                _ => Expr::BinaryExpr(BinaryExpr::new(Box::new(left), *op, Box::new(right))),
            }
        }
        _ => lit(true),
    })
}

/// Whether `filter` is the `true` [`weaken_long_lists`] gives when nothing can be pushed.
pub fn pushes_nothing(filter: &Expr) -> bool {
    is_true(filter)
}

/// The smallest and largest of a list of non-NULL literals of one ordered type.
fn literal_range(list: &[Expr]) -> Option<(ScalarValue, ScalarValue)> {
    let mut values = list.iter().map(|v| match v {
        Expr::Literal(s, _) if !s.is_null() => Some(s),
        _ => None,
    });
    let first = values.next()??;
    let (lo, hi) = values.try_fold((first, first), |(lo, hi), v| {
        let v = v?;
        Some((if v.partial_cmp(lo)?.is_lt() { v } else { lo }, if v.partial_cmp(hi)?.is_gt() { v } else { hi }))
    })?;
    Some((lo.clone(), hi.clone()))
}

/// The same predicate, each long IN list of literals replaced by one function call that
/// computes it (see the module doc).
pub fn hide_long_lists(predicate: Expr) -> DfResult<Expr> {
    predicate
        .transform(|e| match e {
            Expr::InList(l) if l.list.len() > LONG_IN_LIST && l.list.iter().all(|v| matches!(v, Expr::Literal(..))) => {
                let values = l
                    .list
                    .iter()
                    .filter_map(|v| match v {
                        Expr::Literal(s, _) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                let call = ScalarUDF::new_from_impl(InValues::new(values)).call(vec![*l.expr]);
                Ok(Transformed::yes(if l.negated { std::ops::Not::not(call) } else { call }))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
}

/// `x IN (v1, ..., vn)` as a function of `x` alone, the values held by the function: the
/// answer of DataFusion's own IN (a hash set; NULL when `x` is NULL, or when `x` is not in the
/// list and the list holds a NULL).
#[derive(Debug)]
struct InValues {
    name: String,
    values: Vec<ScalarValue>,
    signature: Signature,
    /// DataFusion's IN over the first batch's type, built once.
    prepared: OnceLock<Arc<dyn PhysicalExpr>>,
}

impl InValues {
    fn new(values: Vec<ScalarValue>) -> Self {
        Self {
            name: format!("in_list_of_{}_values", values.len()),
            values,
            signature: Signature::any(1, Volatility::Immutable),
            prepared: OnceLock::new(),
        }
    }
}

impl PartialEq for InValues {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl Eq for InValues {}

impl Hash for InValues {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.values.hash(state);
    }
}

impl ScalarUDFImpl for InValues {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [x] = args.args.as_slice() else {
            return datafusion::common::exec_err!("{} takes one argument", self.name);
        };
        let x = x.to_array(args.number_rows)?;
        let schema = Schema::new(vec![Field::new("x", x.data_type().clone(), true)]);
        let expr = match self.prepared.get() {
            Some(e) => e.clone(),
            None => {
                let list = self
                    .values
                    .iter()
                    .map(|v| Ok(Arc::new(Literal::new(v.cast_to(x.data_type())?)) as Arc<dyn PhysicalExpr>))
                    .collect::<DfResult<Vec<_>>>()?;
                let e = in_list(Arc::new(Column::new("x", 0)), list, &false, &schema)?;
                self.prepared.get_or_init(|| e).clone()
            }
        };
        let batch = RecordBatch::try_new(Arc::new(schema), vec![x])?;
        expr.evaluate(&batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::col;

    fn list(n: i64, negated: bool) -> Expr {
        col("id").in_list((0..n).map(lit).collect(), negated)
    }

    #[test]
    fn scans_see_the_range_of_a_long_list_and_nothing_for_a_negated_one() {
        assert_eq!(weaken_long_lists(&list(10, false)), None);
        assert_eq!(weaken_long_lists(&list(100, false)), Some(col("id").gt_eq(lit(0i64)).and(col("id").lt_eq(lit(99i64)))));
        assert!(pushes_nothing(&weaken_long_lists(&list(100, true)).unwrap()));
        assert!(pushes_nothing(&weaken_long_lists(&std::ops::Not::not(list(100, false))).unwrap()));
        let and = list(100, false).and(col("x").eq(lit(1)));
        assert_eq!(weaken_long_lists(&and), Some(col("id").gt_eq(lit(0i64)).and(col("id").lt_eq(lit(99i64))).and(col("x").eq(lit(1)))));
        let or = list(100, true).or(col("x").eq(lit(1)));
        assert!(pushes_nothing(&weaken_long_lists(&or).unwrap()));
    }

    #[test]
    fn a_hidden_list_answers_as_in_does() {
        let hidden = hide_long_lists(list(100, false)).unwrap();
        let Expr::ScalarFunction(f) = &hidden else { panic!("not hidden: {hidden}") };
        let values = datafusion::arrow::array::Int64Array::from(vec![Some(5), Some(500), None]);
        let out = f
            .func
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(Arc::new(values))],
                arg_fields: vec![Arc::new(Field::new("id", DataType::Int64, true))],
                number_rows: 3,
                return_field: Arc::new(Field::new("r", DataType::Boolean, true)),
                config_options: Arc::default(),
            })
            .unwrap()
            .to_array(3)
            .unwrap();
        let out = datafusion::arrow::array::AsArray::as_boolean(&out).clone();
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![Some(true), Some(false), None]);
        assert!(matches!(hide_long_lists(list(100, true)).unwrap(), Expr::Not(_)));
        assert_eq!(hide_long_lists(list(3, false)).unwrap(), list(3, false));
    }
}
