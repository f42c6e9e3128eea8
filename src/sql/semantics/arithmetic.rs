//! Arithmetic and casts as PostgreSQL computes them, where DataFusion differs silently.
//!
//! - Integer `+`, `-`, `*` overflow is an error in PostgreSQL (22003); DataFusion wraps
//!   (`9223372036854775807 + 1` was `-9223372036854775808`). Integer operations run on arrow's
//!   checked kernels instead.
//! - A float divided by zero is an error in PostgreSQL (22012); DataFusion gives infinity/NaN.
//! - A timestamp cast to text is written with a space, not ISO 8601's `T`.
//! - A float or numeric cast to an integer rounds in PostgreSQL (`rint` for floats, half to
//!   even; half away from zero for numeric); DataFusion truncates (`999.99::bigint` was 999).
//!
//! One analyzer rule, after DataFusion's type coercion (so every operand's type is settled),
//! replaces those expressions, keeping each one's name so the plan above still finds it. Remove
//! the rule and the differential test (`tests/it/postgres.rs`) fails.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::functions::utils::make_scalar_function;
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{
    BinaryExpr, Cast, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TryCast, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct PostgresArithmetic;

impl AnalyzerRule for PostgresArithmetic {
    fn name(&self) -> &str {
        "postgres_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        super::rewrite_plan(plan, |plan| {
            let schema = super::input_schema(&plan);
            super::rewrite_expressions(plan, |e| e.transform_up(|e| rewrite(e, &schema)))
        })
    }
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let is = |e: &Expr, test: fn(&DataType) -> bool| e.get_type(schema).is_ok_and(|t| test(&t));
    let integers = |l: &Expr, r: &Expr| is(l, DataType::is_integer) && is(r, DataType::is_integer);
    let rounds_to_int: fn(&DataType) -> bool = |t| t.is_floating() || matches!(t, DataType::Decimal128(..));
    let rounded = |expr: Box<Expr>| Box::new(Op::Round.udf().call(vec![*expr]));
    Ok(match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let checked = match op {
                Operator::Plus if integers(&left, &right) => Some(Op::Add),
                Operator::Minus if integers(&left, &right) => Some(Op::Sub),
                Operator::Multiply if integers(&left, &right) => Some(Op::Mul),
                Operator::Divide if is(&left, DataType::is_floating) || is(&right, DataType::is_floating) => Some(Op::FloatDiv),
                _ => None,
            };
            match checked {
                Some(checked) => Transformed::yes(checked.udf().call(vec![*left, *right])),
                None => Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right })),
            }
        }
        Expr::Cast(Cast { expr, field }) if field.data_type().is_integer() && is(&expr, rounds_to_int) => {
            Transformed::yes(Expr::Cast(Cast { expr: rounded(expr), field }))
        }
        Expr::TryCast(TryCast { expr, field }) if field.data_type().is_integer() && is(&expr, rounds_to_int) => {
            Transformed::yes(Expr::TryCast(TryCast { expr: rounded(expr), field }))
        }
        // Arrow writes a timestamp as text in ISO 8601, with a `T`; PostgreSQL with a space.
        Expr::Cast(Cast { expr, field })
            if matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
                && is(&expr, |t| matches!(t, DataType::Timestamp(..))) =>
        {
            let text = ScalarUDF::new_from_impl(super::functions::TimestampText::default()).call(vec![*expr]);
            Transformed::yes(Expr::Cast(Cast { expr: Box::new(text), field }))
        }
        // PostgreSQL's round(float8) is rint (half to even); DataFusion's rounds half away.
        Expr::ScalarFunction(f) if f.func.name() == "round" && f.args.len() == 1 && is(&f.args[0], DataType::is_floating) => {
            Transformed::yes(Op::Round.udf().call(f.args))
        }
        e => Transformed::no(e),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    FloatDiv,
    /// Rounds as PostgreSQL does before a cast to an integer.
    Round,
}

impl Op {
    fn udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(PgOp { op: self, signature: Signature::any(if self == Op::Round { 1 } else { 2 }, Volatility::Immutable) })
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgOp {
    op: Op,
    signature: Signature,
}

impl ScalarUDFImpl for PgOp {

    fn name(&self) -> &str {
        match self.op {
            Op::Add => "pg_int_add",
            Op::Sub => "pg_int_sub",
            Op::Mul => "pg_int_mul",
            Op::FloatDiv => "pg_float_div",
            Op::Round => "pg_round_for_int",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(wider(args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        make_scalar_function(|arrays: &[ArrayRef]| self.op.apply(arrays), vec![])(&args.args)
    }
}

impl Op {
    fn apply(self, arrays: &[ArrayRef]) -> Result<ArrayRef> {
        // The operands share a type after coercion; a plan this rule's output was rewritten in
        // again (delta-rs plans an UPDATE's assignments itself) may have narrowed a literal.
        let to = wider(&arrays.iter().map(|a| a.data_type().clone()).collect::<Vec<_>>());
        let arrays = arrays.iter().map(|a| datafusion::arrow::compute::cast(a, &to)).collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(match self {
            Op::Add => numeric::add(&arrays[0], &arrays[1]).map_err(out_of_range(&arrays[0]))?,
            Op::Sub => numeric::sub(&arrays[0], &arrays[1]).map_err(out_of_range(&arrays[0]))?,
            Op::Mul => numeric::mul(&arrays[0], &arrays[1]).map_err(out_of_range(&arrays[0]))?,
            Op::FloatDiv => {
                let divisor = &arrays[1];
                let zero = match divisor.data_type() {
                    DataType::Float64 => divisor.as_primitive::<Float64Type>().iter().any(|v| v == Some(0.0)),
                    DataType::Float32 => divisor.as_primitive::<Float32Type>().iter().any(|v| v == Some(0.0)),
                    _ => false,
                };
                if zero {
                    return Err(DataFusionError::ArrowError(Box::new(datafusion::arrow::error::ArrowError::DivideByZero), None));
                }
                numeric::div(&arrays[0], divisor)?
            }
            Op::Round => round_for_int(&arrays[0])?,
        })
    }
}

/// The type both operands are computed in: a float if either is one, then the one with the
/// most bytes (the first among equals).
fn wider(types: &[DataType]) -> DataType {
    let rank = |t: &DataType| (t.is_floating(), t.primitive_width().unwrap_or(0));
    types.iter().fold(types[0].clone(), |w, t| if rank(t) > rank(&w) { t.clone() } else { w })
}

fn out_of_range(operand: &ArrayRef) -> impl Fn(datafusion::arrow::error::ArrowError) -> DataFusionError + '_ {
    use datafusion::arrow::error::ArrowError;
    move |e| {
        if !matches!(e, ArrowError::ArithmeticOverflow(_)) {
            return DataFusionError::ArrowError(Box::new(e), None);
        }
        let name = match operand.data_type() {
            DataType::Int16 => "smallint",
            DataType::Int32 => "integer",
            _ => "bigint",
        };
        DataFusionError::ArrowError(
            Box::new(datafusion::arrow::error::ArrowError::ArithmeticOverflow(format!("{name} out of range"))),
            None,
        )
    }
}

fn round_for_int(values: &ArrayRef) -> Result<ArrayRef> {
    Ok(match values.data_type() {
        DataType::Float64 => Arc::new(values.as_primitive::<Float64Type>().unary::<_, Float64Type>(f64::round_ties_even)) as ArrayRef,
        DataType::Float32 => Arc::new(values.as_primitive::<Float32Type>().unary::<_, Float32Type>(f32::round_ties_even)),
        DataType::Decimal128(p, s) => {
            let unit = 10i128.pow(u32::from(s.unsigned_abs()));
            let rounded: Decimal128Array = values
                .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>()
                .unary(|v| if *s <= 0 { v } else { (v + v.signum() * (unit / 2)) / unit * unit });
            Arc::new(rounded.with_precision_and_scale(*p, *s)?)
        }
        _ => values.clone(),
    })
}

