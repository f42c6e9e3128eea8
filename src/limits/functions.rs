//! Functions whose output can be far larger than their input, checked before they allocate.
//!
//! `repeat('x', 1500000000)` is one short literal that asks for 1.5 GB; DataFusion's kernels
//! allocate it at once, outside any memory pool, and the kernel's OOM killer ended the server.
//! Each function here keeps its own behaviour, wrapped: before it runs, the size of its output
//! is computed from its arguments; a single value over 1 GiB is refused as PostgreSQL refuses it
//! (54000 `requested length too large`), and the whole output is reserved from the session's
//! memory pool (53200 when the pool cannot hold it). The reservation lives as long as the
//! output does, so a large value that is kept (sorted, joined, aggregated) stays counted.

use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayData, ArrayRef, AsArray, make_array};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{ExprSchema, Result as DfResult, ScalarValue};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use crate::error::{Error, to_datafusion};

/// PostgreSQL's largest value (`MaxAllocSize`, 1 GB less a byte).
pub const MAX_VALUE_BYTES: u64 = (1 << 30) - 1;

/// How big a call's output will be: its largest value and all of its values together.
#[derive(Debug, Default, Clone, Copy)]
struct Size {
    largest: u64,
    total: u64,
}

impl Size {
    fn add(&mut self, value: u64) {
        self.largest = self.largest.max(value);
        self.total = self.total.saturating_add(value);
    }
}

type Estimate = fn(&[ColumnarValue], usize) -> DfResult<Size>;

/// The functions wrapped, with how each one's output size follows from its arguments.
const CAPPED: &[(&str, Estimate)] = &[
    ("repeat", |a, n| per_row(a, n, |a, i| Ok(len(&a[0], i)?.saturating_mul(count(&a[1], i)?)))),
    ("lpad", |a, n| per_row(a, n, |a, i| Ok(count(&a[1], i)?.saturating_mul(4)))),
    ("rpad", |a, n| per_row(a, n, |a, i| Ok(count(&a[1], i)?.saturating_mul(4)))),
    ("replace", |a, n| {
        per_row(a, n, |a, i| {
            let (s, from, to) = (len(&a[0], i)?, len(&a[1], i)?.max(1), len(&a[2], i)?);
            Ok(s.saturating_add((s / from).saturating_mul(to)))
        })
    }),
    ("regexp_replace", |a, n| {
        // Every position of the text may match (an empty match), each replaced in full.
        per_row(a, n, |a, i| {
            let (s, to) = (len(&a[0], i)?, len(&a[2], i)?);
            Ok(s.saturating_add(s.saturating_add(1).saturating_mul(to)))
        })
    }),
    ("array_repeat", |a, n| per_row(a, n, |a, i| Ok(element_bytes(&a[0], i)?.saturating_mul(count(&a[1], i)?)))),
    ("array_resize", |a, n| per_row(a, n, |a, i| Ok(16u64.saturating_mul(count(&a[1], i)?)))),
    ("range", |a, n| per_row(a, n, series)),
    ("generate_series", |a, n| per_row(a, n, series)),
];

/// Replaces each capped function registered in `ctx` by its checked version over `pool`.
pub fn install(ctx: &datafusion::prelude::SessionContext, pool: &Arc<dyn MemoryPool>) {
    let registered = ctx.state().scalar_functions().clone();
    for (name, estimate) in CAPPED {
        if let Some(inner) = registered.get(*name) {
            let mut signature = inner.signature().clone();
            signature.volatility = Volatility::Volatile;
            ctx.register_udf(ScalarUDF::new_from_impl(Capped {
                inner: inner.clone(),
                signature,
                estimate: *estimate,
                pool: pool.clone(),
            }));
        }
    }
}

/// Sums a per-row size over a call's rows. With only constant arguments the value is computed
/// once and repeated on every row (see `Capped::invoke_with_args`).
fn per_row(args: &[ColumnarValue], rows: usize, size: impl Fn(&[ColumnarValue], usize) -> DfResult<u64>) -> DfResult<Size> {
    let args = args.iter().map(as_int64_if_integer).collect::<DfResult<Vec<_>>>()?;
    let mut out = Size::default();
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        let one = size(&args, 0)?;
        return Ok(Size { largest: one, total: one.saturating_mul(rows as u64) });
    }
    for i in 0..rows {
        out.add(size(&args, i)?);
    }
    Ok(out)
}

/// Integer arguments of any width, read as i64 (the counts and bounds above).
fn as_int64_if_integer(a: &ColumnarValue) -> DfResult<ColumnarValue> {
    Ok(match a {
        ColumnarValue::Array(arr) if arr.data_type().is_integer() => ColumnarValue::Array(cast(arr, &DataType::Int64)?),
        ColumnarValue::Scalar(s) if s.data_type().is_integer() => ColumnarValue::Scalar(s.cast_to(&DataType::Int64)?),
        other => other.clone(),
    })
}

/// An integer argument at row `i`, negatives and NULLs as 0.
fn count(a: &ColumnarValue, i: usize) -> DfResult<u64> {
    Ok(int(a, i).map_or(0, |v| v.max(0) as u64))
}

fn int(a: &ColumnarValue, i: usize) -> Option<i64> {
    match a {
        ColumnarValue::Scalar(ScalarValue::Int64(v)) => *v,
        ColumnarValue::Array(arr) => arr.as_primitive_opt::<Int64Type>().filter(|p| p.is_valid(i)).map(|p| p.value(i)),
        _ => None,
    }
}

/// Bytes of a string or binary argument at row `i`.
fn len(a: &ColumnarValue, i: usize) -> DfResult<u64> {
    Ok(match a {
        ColumnarValue::Scalar(s) => (match s {
            ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => v.as_ref().map_or(0, |s| s.len()),
            ScalarValue::Binary(v) | ScalarValue::LargeBinary(v) | ScalarValue::BinaryView(v) => v.as_ref().map_or(0, |b| b.len()),
            other => other.size(),
        }) as u64,
        ColumnarValue::Array(arr) if arr.is_null(i) => 0,
        ColumnarValue::Array(arr) => match arr.data_type() {
            DataType::Utf8 => arr.as_string::<i32>().value(i).len() as u64,
            DataType::LargeUtf8 => arr.as_string::<i64>().value(i).len() as u64,
            DataType::Utf8View => arr.as_string_view().value(i).len() as u64,
            DataType::Binary => arr.as_binary::<i32>().value(i).len() as u64,
            DataType::LargeBinary => arr.as_binary::<i64>().value(i).len() as u64,
            DataType::BinaryView => arr.as_binary_view().value(i).len() as u64,
            _ => element_bytes(a, i)?,
        },
    })
}

/// The size of one element of an argument of any type (an average over an array's rows).
fn element_bytes(a: &ColumnarValue, _i: usize) -> DfResult<u64> {
    Ok(match a {
        ColumnarValue::Scalar(s) => s.size() as u64,
        ColumnarValue::Array(arr) => (arr.get_array_memory_size() / arr.len().max(1)) as u64 + 8,
    })
}

/// Elements of `range(start, stop [, step])` over integers, dates or timestamps, 8 bytes each.
fn series(a: &[ColumnarValue], i: usize) -> DfResult<u64> {
    let point = |c: &ColumnarValue| -> Option<i128> {
        match c {
            ColumnarValue::Scalar(s) => scalar_point(s),
            ColumnarValue::Array(arr) => (!arr.is_null(i)).then(|| ScalarValue::try_from_array(arr, i).ok()).flatten().and_then(|s| scalar_point(&s)),
        }
    };
    let (start, stop) = match a {
        [stop] => (Some(0), point(stop)),
        [start, stop, ..] => (point(start), point(stop)),
        [] => return Ok(0),
    };
    let step = a.get(2).and_then(point).map_or(1, |s| s.unsigned_abs().max(1));
    let (Some(start), Some(stop)) = (start, stop) else { return Ok(0) };
    let elements = (stop - start).unsigned_abs() / step + 1;
    Ok(u64::try_from(elements.saturating_mul(8)).unwrap_or(u64::MAX))
}

/// A bound or step of a series as a number on one scale: integers as themselves, dates and
/// timestamps in microseconds, intervals in microseconds (a month as 30 days).
fn scalar_point(s: &ScalarValue) -> Option<i128> {
    const DAY: i128 = 86_400_000_000;
    Some(match s {
        ScalarValue::Int64(Some(v)) => *v as i128,
        ScalarValue::Int32(Some(v)) => *v as i128,
        ScalarValue::Int16(Some(v)) => *v as i128,
        ScalarValue::Date32(Some(d)) => *d as i128 * DAY,
        ScalarValue::Date64(Some(ms)) => *ms as i128 * 1000,
        ScalarValue::TimestampSecond(Some(v), _) => *v as i128 * 1_000_000,
        ScalarValue::TimestampMillisecond(Some(v), _) => *v as i128 * 1000,
        ScalarValue::TimestampMicrosecond(Some(v), _) => *v as i128,
        ScalarValue::TimestampNanosecond(Some(v), _) => *v as i128 / 1000,
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            v.months as i128 * 30 * DAY + v.days as i128 * DAY + v.nanoseconds as i128 / 1000
        }
        ScalarValue::IntervalDayTime(Some(v)) => v.days as i128 * DAY + v.milliseconds as i128 * 1000,
        ScalarValue::IntervalYearMonth(Some(m)) => *m as i128 * 30 * DAY,
        _ => return None,
    })
}

/// A function that checks the size of its output before computing it (see the module doc).
///
/// It is volatile, so the planner never folds a call with constant arguments into a literal:
/// DataFusion repeats a literal on every row of every batch, outside any pool, and a folded
/// `repeat('x', 100000000)` over a table would have become 8,192 copies per batch. Unfolded,
/// the call repeats its one value itself, counted.
#[derive(Debug)]
struct Capped {
    inner: Arc<ScalarUDF>,
    signature: Signature,
    estimate: Estimate,
    pool: Arc<dyn MemoryPool>,
}

impl PartialEq for Capped {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for Capped {}

impl Hash for Capped {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl Capped {
    /// Refuses a value over PostgreSQL's limit, then reserves the whole output.
    fn reserve(&self, args: &[ColumnarValue], rows: usize) -> DfResult<MemoryReservation> {
        let size = (self.estimate)(args, rows)?;
        if size.largest > MAX_VALUE_BYTES {
            return Err(to_datafusion(Error::ProgramLimit(format!(
                "requested length too large: {} would make a value of {} bytes, over the limit of {MAX_VALUE_BYTES}",
                self.inner.name(),
                size.largest
            ))));
        }
        let reservation = MemoryConsumer::new(format!("{}()", self.inner.name())).register(&self.pool);
        // Twice the output: DataFusion's kernels build a value (`str::repeat`) and then copy it
        // into the array, so both exist for a moment. `tie` keeps only the output's size.
        reservation.try_grow(usize::try_from(size.total.saturating_mul(2)).unwrap_or(usize::MAX))?;
        Ok(reservation)
    }
}

/// What keeps a wrapped output's memory counted: the output itself and its reservation, freed
/// together when the last buffer pointing into the output is dropped.
struct Held {
    _array: AssertUnwindSafe<ArrayRef>,
    _reservation: AssertUnwindSafe<MemoryReservation>,
}

/// The same array, its buffers owned by `Held`, so the reservation lives exactly as long.
fn tie(array: ArrayRef, reservation: MemoryReservation) -> ArrayRef {
    reservation.resize(array.get_array_memory_size());
    let data = array.to_data();
    let owner: Arc<Held> = Arc::new(Held { _array: AssertUnwindSafe(array), _reservation: AssertUnwindSafe(reservation) });
    make_array(rewrap(&data, &owner))
}

fn rewrap(data: &ArrayData, owner: &Arc<Held>) -> ArrayData {
    let buffer = |b: &Buffer| -> Buffer {
        let Some(ptr) = NonNull::new(b.as_ptr() as *mut u8) else { return b.clone() };
        // SAFETY: `ptr` and `len` describe a live buffer of the array `owner` holds; the new
        // buffer keeps `owner` (and so that buffer) alive for as long as it exists.
        unsafe { Buffer::from_custom_allocation(ptr, b.len(), owner.clone()) }
    };
    let nulls = data.nulls().map(|n| {
        let bits = n.inner();
        // SAFETY: the same bits, offset and length as a valid null buffer.
        unsafe { NullBuffer::new_unchecked(BooleanBuffer::new(buffer(bits.inner()), bits.offset(), bits.len()), n.null_count()) }
    });
    let builder = ArrayData::builder(data.data_type().clone())
        .len(data.len())
        .offset(data.offset())
        .nulls(nulls)
        .buffers(data.buffers().iter().map(buffer).collect())
        .child_data(data.child_data().iter().map(|c| rewrap(c, owner)).collect());
    // SAFETY: every part is the valid array's own, only owned differently.
    unsafe { builder.build_unchecked() }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner.inner().schema_name(args)
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    #[allow(deprecated)]
    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        self.inner.inner().is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let reservation = self.reserve(&args.args, rows)?;
        let array = match self.inner.invoke_with_args(args)? {
            ColumnarValue::Array(a) => a,
            ColumnarValue::Scalar(s) => s.to_array_of_size(rows)?,
        };
        Ok(ColumnarValue::Array(tie(array, reservation)))
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> DfResult<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    fn estimate(name: &str, args: &[ColumnarValue], rows: usize) -> Size {
        let (_, f) = CAPPED.iter().find(|(n, _)| *n == name).unwrap();
        f(args, rows).unwrap()
    }

    #[test]
    fn sizes_follow_the_arguments() {
        let s = |v: &str| ColumnarValue::Scalar(ScalarValue::Utf8(Some(v.into())));
        let n = |v: i64| ColumnarValue::Scalar(ScalarValue::Int64(Some(v)));
        assert_eq!(estimate("repeat", &[s("ab"), n(1_500_000_000)], 8192).largest, 3_000_000_000);
        assert_eq!(estimate("repeat", &[s("ab"), n(1_000)], 8192).total, 2_000 * 8192, "one value, on every row");
        let texts = ColumnarValue::Array(Arc::new(StringArray::from(vec!["a", "bbb", "cc"])));
        let counts = ColumnarValue::Array(Arc::new(Int64Array::from(vec![Some(10), None, Some(-5)])));
        let size = estimate("repeat", &[texts, counts], 3);
        assert_eq!((size.largest, size.total), (10, 10));
        assert_eq!(estimate("generate_series", &[n(1), n(1_000_000_001)], 1).total, 8_000_000_008);
        assert_eq!(estimate("range", &[n(0), n(100), n(10)], 1).total, 88);
    }

    #[test]
    fn a_tied_array_keeps_its_reservation_until_the_last_slice_is_dropped() {
        let pool: Arc<dyn MemoryPool> = Arc::new(datafusion::execution::memory_pool::GreedyMemoryPool::new(1 << 20));
        let r = MemoryConsumer::new("t").register(&pool);
        r.try_grow(100).unwrap();
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("zz")]));
        let tied = tie(a.clone(), r);
        assert_eq!(tied.as_ref(), a.as_ref());
        assert!(pool.reserved() > 0);
        let slice = tied.slice(1, 2);
        drop(tied);
        assert!(pool.reserved() > 0);
        assert!(slice.is_null(0));
        drop(slice);
        assert_eq!(pool.reserved(), 0);
    }
}

/// Aggregates whose one result grows with their input: checked before each batch grows them.
const GUARDED_AGGREGATES: &[&str] = &["string_agg", "array_agg"];

/// Replaces `string_agg` and `array_agg` by versions that refuse to grow one result past
/// `limit` bytes (see [`GuardedAggregate`]).
pub fn install_aggregates(ctx: &datafusion::prelude::SessionContext, pool: &Arc<dyn MemoryPool>) {
    let limit = aggregate_limit(pool);
    let registered = ctx.state().aggregate_functions().clone();
    for name in GUARDED_AGGREGATES {
        if let Some(inner) = registered.get(*name) {
            ctx.register_udaf(datafusion::logical_expr::AggregateUDF::new_from_impl(GuardedAggregate { inner: inner.clone(), limit }));
        }
    }
}

/// The largest single aggregate result: PostgreSQL's 1 GB, or a quarter of the memory pool if
/// that is less (a result may double as it grows, and the pool must hold the rest too).
fn aggregate_limit(pool: &Arc<dyn MemoryPool>) -> usize {
    let quarter = match pool.memory_limit() {
        datafusion::execution::memory_pool::MemoryLimit::Finite(b) => b / 4,
        _ => usize::MAX,
    };
    (MAX_VALUE_BYTES as usize).min(quarter)
}

/// An aggregate whose state may not grow past `limit`.
///
/// `string_agg` without GROUP BY appends to one string, which doubles its capacity as it goes,
/// and DataFusion asks the memory pool only after a batch was added: a 10 GB `string_agg` in a
/// 2 GiB pool held 4 GiB (the old string and its doubled copy) before it was told no. Here each
/// batch is judged before it is added, as if the state doubled, and a result that would pass
/// `limit` fails with 54000 as PostgreSQL's does past 1 GB.
#[derive(Debug, PartialEq, Eq, Hash)]
struct GuardedAggregate {
    inner: Arc<datafusion::logical_expr::AggregateUDF>,
    limit: usize,
}

impl GuardedAggregate {
    fn wrap(&self, inner: Arc<dyn datafusion::logical_expr::AggregateUDFImpl>) -> Arc<dyn datafusion::logical_expr::AggregateUDFImpl> {
        Arc::new(Self { inner: Arc::new(datafusion::logical_expr::AggregateUDF::new_from_shared_impl(inner)), limit: self.limit })
    }
}

impl datafusion::logical_expr::AggregateUDFImpl for GuardedAggregate {
    crate::macros::forward_aggregate_signature!();

    fn accumulator(
        &self,
        acc_args: datafusion::logical_expr::function::AccumulatorArgs,
    ) -> DfResult<Box<dyn datafusion::logical_expr::Accumulator>> {
        Ok(Box::new(GuardedAccumulator { name: self.name().to_string(), inner: self.inner.accumulator(acc_args)?, limit: self.limit }))
    }

    fn state_fields(&self, args: datafusion::logical_expr::function::StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: datafusion::logical_expr::function::AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: datafusion::logical_expr::function::AccumulatorArgs,
    ) -> DfResult<Box<dyn datafusion::logical_expr::GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(
        &self,
        args: datafusion::logical_expr::function::AccumulatorArgs,
    ) -> DfResult<Box<dyn datafusion::logical_expr::Accumulator>> {
        self.inner.create_sliding_accumulator(args)
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> DfResult<Option<Arc<dyn datafusion::logical_expr::AggregateUDFImpl>>> {
        Ok(self.inner.inner().clone().with_beneficial_ordering(beneficial_ordering)?.map(|i| self.wrap(i)))
    }

    fn simplify(&self) -> Option<datafusion::logical_expr::function::AggregateFunctionSimplification> {
        self.inner.simplify()
    }

    fn reverse_expr(&self) -> datafusion::logical_expr::ReversedUDAF {
        match self.inner.reverse_udf() {
            datafusion::logical_expr::ReversedUDAF::Reversed(r) => {
                datafusion::logical_expr::ReversedUDAF::Reversed(Arc::new(datafusion::logical_expr::AggregateUDF::new_from_shared_impl(self.wrap(r.inner().clone()))))
            }
            other => other,
        }
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.inner.supports_null_handling_clause()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner.is_descending()
    }
}

/// The accumulator of a [`GuardedAggregate`].
#[derive(Debug)]
struct GuardedAccumulator {
    name: String,
    inner: Box<dyn datafusion::logical_expr::Accumulator>,
    limit: usize,
}

impl GuardedAccumulator {
    /// Refuses a batch that could take the state past the limit: appending may double it.
    fn admit(&self, values: &[ArrayRef]) -> DfResult<()> {
        let now = self.inner.size();
        let incoming: usize = values.iter().map(|a| a.get_array_memory_size()).sum();
        let grown = (now + incoming).max(now.saturating_mul(2));
        if grown > self.limit {
            // Past PostgreSQL's own limit on a value, PostgreSQL's error; past what the memory
            // pool allows one value, out of memory.
            return Err(if self.limit as u64 == MAX_VALUE_BYTES {
                to_datafusion(Error::ProgramLimit(format!("{}: its result would be over 1 GB, PostgreSQL's limit for one value", self.name)))
            } else {
                datafusion::error::DataFusionError::ResourcesExhausted(format!(
                    "out of memory: {}'s result would grow past {}, a quarter of the memory this statement may use",
                    self.name,
                    super::memory::mib(self.limit)
                ))
            });
        }
        Ok(())
    }
}

impl datafusion::logical_expr::Accumulator for GuardedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.admit(values)?;
        self.inner.update_batch(values)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.inner.evaluate()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.admit(states)?;
        self.inner.merge_batch(states)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.inner.retract_batch(values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}
