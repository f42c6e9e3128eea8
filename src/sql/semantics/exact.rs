//! Floating-point aggregates whose answer does not depend on the order rows arrive in.
//!
//! DataFusion adds doubles in whatever order batches and partitions finish, and double addition
//! is not associative: the same `sum(x)` over the same table version gave 6 or 7 different
//! answers in 10 runs, so `REPRODUCE DATASET` could not prove anything that summed a float.
//! Here every double is added *exactly* (as an integer multiple of 2^-1074, the smallest
//! double, spread over 32-bit digits) and the total is rounded once, to the nearest double, at
//! the end. Exact addition is associative, so partitions, batch sizes and thread timing cannot
//! change a bit of the answer, and the answer is the correctly rounded true sum.
//!
//! `sum`, `avg` (`mean`), `var_samp` (`var`, `variance`), `var_pop`, `stddev` (`stddev_samp`)
//! and `stddev_pop` are registered over DataFusion's under the same names; over doubles they
//! use [`ExactSum`], over integers and decimals (already exact) they are DataFusion's own. The
//! variance keeps exact sums of x and of x² (each square split into two doubles that add up to
//! it exactly, with a fused multiply-add) and finishes in double-double arithmetic, so it does
//! not lose the digits a naive sum of squares loses when the mean is large.
//!
//! The evaluation metrics (`evaluation::metrics`, `evaluation::classes`) keep their sums as
//! [`ExactSum`] too. Must not: know about sessions, storage or SQL text.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BinaryArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl};

/// A sum of doubles kept exactly.
///
/// The value is `sum(digits[k] * 2^(32 * (first + k))) * 2^-1074`. Digits are i64 so that up to
/// 2^30 additions of 32-bit pieces can wait before carries are propagated; only the digits the
/// values touched are held (a column of similar magnitudes needs three or four).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactSum {
    first: usize,
    digits: Vec<i64>,
    /// Additions since carries were last propagated.
    pending: u32,
    /// Non-finite values are counted, not added, so that a sliding window can retract them.
    nan: u64,
    pos_inf: u64,
    neg_inf: u64,
}

/// Carries wait until this many additions: each adds less than 2^32 to a digit, so a digit
/// stays under 2^62 in magnitude, and merging two such sums stays under 2^63.
const CARRY_EVERY: u32 = 1 << 30;

/// Bytes before the digits in [`ExactSum::to_bytes`].
const HEADER: usize = 32;

impl ExactSum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `x` exactly.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            *self.non_finite(x) += 1;
            return;
        }
        if x == 0.0 {
            return;
        }
        let bits = x.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as usize;
        let fraction = bits & ((1 << 52) - 1);
        // x = mantissa * 2^(exponent - 1074), exponent >= 0.
        let (mantissa, exponent) = if biased == 0 { (fraction, 0) } else { (fraction | 1 << 52, biased - 1) };
        let wide = (mantissa as u128) << (exponent % 32);
        let at = exponent / 32;
        self.reserve(at, at + 3);
        let base = at - self.first;
        // 0 or -1: the sign without a branch, which values of random sign would mispredict.
        let negate = -((bits >> 63) as i64);
        for k in 0..3 {
            let piece = ((wide >> (32 * k)) & 0xffff_ffff) as i64;
            self.digits[base + k] += (piece ^ negate) - negate;
        }
        self.pending += 1;
        if self.pending >= CARRY_EVERY {
            self.carry();
        }
    }

    fn non_finite(&mut self, x: f64) -> &mut u64 {
        if x.is_nan() {
            &mut self.nan
        } else if x > 0.0 {
            &mut self.pos_inf
        } else {
            &mut self.neg_inf
        }
    }

    /// Subtracts a value added before (a sliding window's retraction), exactly.
    pub fn sub(&mut self, x: f64) {
        if x.is_finite() {
            self.add(-x);
        } else {
            let count = self.non_finite(x);
            *count = count.saturating_sub(1);
        }
    }

    /// Adds another sum exactly.
    pub fn merge(&mut self, other: &ExactSum) {
        self.nan += other.nan;
        self.pos_inf += other.pos_inf;
        self.neg_inf += other.neg_inf;
        if other.digits.is_empty() {
            return;
        }
        self.reserve(other.first, other.first + other.digits.len());
        let base = other.first - self.first;
        for (k, d) in other.digits.iter().enumerate() {
            self.digits[base + k] += d;
        }
        self.pending += other.pending + 1;
        if self.pending >= CARRY_EVERY {
            self.carry();
        }
    }

    /// Adds the square of `x` exactly.
    pub fn add_square(&mut self, x: f64) {
        square_parts(x).into_iter().for_each(|part| self.add(part));
    }

    /// Subtracts a square added before (a sliding window's retraction), exactly.
    pub fn sub_square(&mut self, x: f64) {
        square_parts(x).into_iter().for_each(|part| self.sub(part));
    }

    /// Makes digits `from..to` (absolute indexes) exist.
    fn reserve(&mut self, from: usize, to: usize) {
        if self.digits.is_empty() {
            self.first = from;
        }
        if from < self.first {
            let grow = self.first - from;
            self.digits.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = from;
        }
        let end = self.first + self.digits.len();
        if to > end {
            self.digits.resize(self.digits.len() + (to - end), 0);
        }
    }

    /// Leaves every digit but the last in [0, 2^32); the last carries the sign.
    fn carry(&mut self) {
        let mut k = 0;
        while k < self.digits.len() {
            let c = self.digits[k] >> 32;
            // The last digit keeps a sign (-1 is "negative and small"); it grows a digit above
            // only when it no longer fits in 32 bits.
            if k + 1 < self.digits.len() || (c != 0 && c != -1) {
                self.digits[k] -= c << 32;
                if k + 1 == self.digits.len() {
                    self.digits.push(0);
                }
                self.digits[k + 1] += c;
            }
            k += 1;
        }
        self.pending = 0;
    }

    /// The sum, rounded once to the nearest double (ties to even).
    pub fn value(&self) -> f64 {
        if self.nan > 0 || (self.pos_inf > 0 && self.neg_inf > 0) {
            return f64::NAN;
        }
        if self.pos_inf > 0 {
            return f64::INFINITY;
        }
        if self.neg_inf > 0 {
            return f64::NEG_INFINITY;
        }
        let mut s = self.clone();
        s.carry();
        let negative = s.digits.last().is_some_and(|&d| d < 0);
        if negative {
            s.digits.iter_mut().for_each(|d| *d = -*d);
            s.carry();
        }
        let Some(top) = s.digits.iter().rposition(|&d| d != 0) else { return 0.0 };
        // The three digits from the top (absolute indexes), and whether anything lies below.
        let top_abs = s.first + top;
        let base = top_abs.saturating_sub(2);
        let digit = |abs: usize| if abs >= s.first && abs <= top_abs { s.digits[abs - s.first] as u128 } else { 0 };
        let window = (digit(base + 2) << 64) | (digit(base + 1) << 32) | digit(base);
        let sticky = s.digits[..base.saturating_sub(s.first).min(s.digits.len())].iter().any(|&d| d != 0);
        let lead = 127 - window.leading_zeros() as usize;
        let (mut mantissa, mut shift) = (window, 0usize);
        if lead > 52 {
            shift = lead - 52;
            mantissa = window >> shift;
            let rest = window & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            if rest > half || (rest == half && (sticky || mantissa & 1 == 1)) {
                mantissa += 1;
            }
        }
        let exponent = (shift + 32 * base) as i64 - 1074;
        let magnitude = if exponent > 1023 { f64::INFINITY } else { mantissa as f64 * pow2(exponent) };
        if negative { -magnitude } else { magnitude }
    }

    /// The sum as two doubles whose exact sum is within 2^-106 of it (relative).
    pub fn double_double(&self) -> (f64, f64) {
        let hi = self.value();
        if !hi.is_finite() {
            return (hi, 0.0);
        }
        let mut rest = self.clone();
        rest.add(-hi);
        (hi, rest.value())
    }

    /// The state as bytes, little-endian: the counts of NaN, +inf and -inf, the first digit's
    /// index, then the digits (carried).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.clone();
        s.carry();
        let mut out = Vec::with_capacity(HEADER + 8 * s.digits.len());
        for count in [s.nan, s.pos_inf, s.neg_inf] {
            out.extend_from_slice(&count.to_le_bytes());
        }
        out.extend_from_slice(&(s.first as u64).to_le_bytes());
        for d in &s.digits {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < HEADER || (bytes.len() - HEADER) % 8 != 0 {
            return exec_err!("an exact sum's state has {} bytes, not {HEADER} + 8k", bytes.len());
        }
        let mut words = bytes.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        let mut next = || words.next().unwrap_or(0);
        let (nan, pos_inf, neg_inf, first) = (next() as u64, next() as u64, next() as u64, next() as usize);
        Ok(Self { first, digits: words.collect(), pending: 1, nan, pos_inf, neg_inf })
    }

    /// Merges every sum held in a Binary state column.
    pub fn merge_column(&mut self, column: &ArrayRef) -> Result<()> {
        let column = column.as_binary::<i32>();
        for bytes in column.iter().flatten() {
            self.merge(&Self::from_bytes(bytes)?);
        }
        Ok(())
    }

    pub fn size(&self) -> usize {
        std::mem::size_of::<Self>() + 8 * self.digits.capacity()
    }
}

/// x² as two doubles whose sum it is exactly: `x * x` rounded, and the rounding error (a fused
/// multiply-add gives it exactly); the error is 0 when the square overflows.
fn square_parts(x: f64) -> [f64; 2] {
    let p = x * x;
    [p, if p.is_finite() { x.mul_add(x, -p) } else { 0.0 }]
}

/// 2^e for -1074 <= e <= 1023, exactly.
fn pow2(e: i64) -> f64 {
    if e >= -1022 { f64::from_bits(((e + 1023) as u64) << 52) } else { f64::from_bits(1u64 << (e + 1074)) }
}

/// Double-double arithmetic (Dekker, Knuth): a pair (hi, lo) holds about 106 bits.
mod dd {
    pub type Dd = (f64, f64);

    fn two_sum(a: f64, b: f64) -> Dd {
        let s = a + b;
        let v = s - a;
        (s, (a - (s - v)) + (b - v))
    }

    fn quick(hi: f64, lo: f64) -> Dd {
        let s = hi + lo;
        (s, lo - (s - hi))
    }

    pub fn sub(a: Dd, b: Dd) -> Dd {
        let (s, e) = two_sum(a.0, -b.0);
        quick(s, e + a.1 - b.1)
    }

    pub fn mul(a: Dd, b: Dd) -> Dd {
        let p = a.0 * b.0;
        let e = a.0.mul_add(b.0, -p) + a.0 * b.1 + a.1 * b.0;
        quick(p, e)
    }

    pub fn div(a: Dd, n: f64) -> Dd {
        let q = a.0 / n;
        let p = q * n;
        let r = (a.0 - p) - q.mul_add(n, -p) + a.1;
        quick(q, r / n)
    }
}

/// The sum of squares around the mean, `sum(x²) - sum(x)² / n`, in double-double from exact
/// sums of x and x²; None when either is not finite.
fn around_mean(sum: &ExactSum, squares: &ExactSum, n: u64) -> Option<dd::Dd> {
    let (s, q) = (sum.double_double(), squares.double_double());
    (s.0.is_finite() && q.0.is_finite()).then(|| dd::sub(q, dd::div(dd::mul(s, s), n as f64)))
}

/// [`around_mean`] rounded to a double (at least 0).
pub fn squares_around_mean(sum: &ExactSum, squares: &ExactSum, n: u64) -> f64 {
    around_mean(sum, squares, n).map_or(f64::NAN, |m| m.0.max(0.0))
}

/// The squares around the mean divided by `d`, rounded once.
fn divide(squares: &ExactSum, sum: &ExactSum, n: u64, d: f64) -> f64 {
    match around_mean(sum, squares, n) {
        None => f64::NAN,
        Some(m) if m.0 <= 0.0 => 0.0,
        Some(m) => dd::div(m, d).0,
    }
}

/// Which of DataFusion's aggregates is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stat {
    Sum,
    Avg,
    VarSamp,
    VarPop,
    StddevSamp,
    StddevPop,
}

impl Stat {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "sum" => Stat::Sum,
            "avg" => Stat::Avg,
            "var" => Stat::VarSamp,
            "var_pop" => Stat::VarPop,
            "stddev" => Stat::StddevSamp,
            "stddev_pop" => Stat::StddevPop,
            _ => return None,
        })
    }

    fn squares(self) -> bool {
        !matches!(self, Stat::Sum | Stat::Avg)
    }
}

/// DataFusion's registered names of the aggregates replaced here.
const REPLACED: &[&str] = &["sum", "avg", "var", "var_pop", "stddev", "stddev_pop"];

/// Registers the order-independent versions over DataFusion's.
pub fn install(ctx: &datafusion::prelude::SessionContext) {
    let registered = ctx.state().aggregate_functions().clone();
    for name in REPLACED {
        if let (Some(inner), Some(stat)) = (registered.get(*name), Stat::of(name)) {
            ctx.register_udaf(AggregateUDF::new_from_impl(Exact { inner: inner.clone(), stat }));
        }
    }
}

/// DataFusion's aggregate, with exact summation when its (coerced) argument is a double.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Exact {
    inner: Arc<AggregateUDF>,
    stat: Stat,
}

fn is_float(fields: &[FieldRef]) -> bool {
    fields.first().is_some_and(|f| matches!(f.data_type(), DataType::Float64 | DataType::Float32 | DataType::Float16))
}

impl AggregateUDFImpl for Exact {
    crate::macros::forward_aggregate_signature!();

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if !is_float(args.expr_fields) {
            return self.inner.accumulator(args);
        }
        let stat = self.stat;
        Ok(if args.is_distinct { Box::new(Distinct { stat, seen: HashSet::new() }) } else { Box::new(Moments::new(stat)) })
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if !is_float(args.expr_fields) {
            return self.inner.create_sliding_accumulator(args);
        }
        self.accumulator(args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        if !is_float(args.input_fields) {
            return self.inner.state_fields(args);
        }
        let f = |n: &str, t: DataType| Arc::new(Field::new(format!("{}[{n}]", args.name), t, true));
        Ok(if args.is_distinct {
            vec![f("distinct", DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))))]
        } else {
            vec![f("sum", DataType::Binary), f("squares", DataType::Binary), f("count", DataType::Int64)]
        })
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !is_float(args.expr_fields) && self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn datafusion::logical_expr::GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }

    fn reverse_expr(&self) -> datafusion::logical_expr::ReversedUDAF {
        // Sums do not care about order: the same function reversed.
        datafusion::logical_expr::ReversedUDAF::Identical
    }
}

/// Count, exact sum and (for variances) exact sum of squares.
#[derive(Debug)]
struct Moments {
    stat: Stat,
    n: u64,
    sum: ExactSum,
    squares: ExactSum,
}

impl Moments {
    fn new(stat: Stat) -> Self {
        Self { stat, n: 0, sum: ExactSum::new(), squares: ExactSum::new() }
    }

    fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum.add(x);
        if self.stat.squares() {
            self.squares.add_square(x);
        }
    }

    fn result(&self) -> Option<f64> {
        let n = self.n;
        match self.stat {
            _ if n == 0 => None,
            Stat::Sum => Some(self.sum.value()),
            Stat::Avg => Some(dd::div(self.sum.double_double(), n as f64).0),
            Stat::VarSamp | Stat::StddevSamp if n < 2 => None,
            Stat::VarSamp => Some(divide(&self.squares, &self.sum, n, (n - 1) as f64)),
            Stat::VarPop => Some(divide(&self.squares, &self.sum, n, n as f64)),
            Stat::StddevSamp => Some(divide(&self.squares, &self.sum, n, (n - 1) as f64).sqrt()),
            Stat::StddevPop => Some(divide(&self.squares, &self.sum, n, n as f64).sqrt()),
        }
    }
}

fn doubles(values: &[ArrayRef]) -> Result<ArrayRef> {
    cast(&values[0], &DataType::Float64).map_err(Into::into)
}

impl Accumulator for Moments {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = doubles(values)?;
        for x in column.as_primitive::<Float64Type>().iter().flatten() {
            self.add(x);
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = doubles(values)?;
        for x in column.as_primitive::<Float64Type>().iter().flatten() {
            self.n -= 1;
            self.sum.sub(x);
            if self.stat.squares() {
                self.squares.sub_square(x);
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.result()))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.sum.size() + self.squares.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Binary(Some(self.sum.to_bytes())),
            ScalarValue::Binary(Some(self.squares.to_bytes())),
            ScalarValue::Int64(Some(self.n as i64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.sum.merge_column(&states[0])?;
        self.squares.merge_column(&states[1])?;
        let counts = states[2].as_primitive::<Int64Type>();
        self.n += counts.iter().flatten().map(|c| c as u64).sum::<u64>();
        Ok(())
    }
}

/// `sum(DISTINCT x)`, `avg(DISTINCT x)`: the distinct values, summed exactly at the end (so
/// the set's hash order does not matter).
#[derive(Debug)]
struct Distinct {
    stat: Stat,
    /// Bit patterns, with -0 as 0 and every NaN as one.
    seen: HashSet<u64>,
}

fn canonical(x: f64) -> u64 {
    if x == 0.0 { 0 } else if x.is_nan() { f64::NAN.to_bits() } else { x.to_bits() }
}

impl Accumulator for Distinct {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = doubles(values)?;
        self.seen.extend(column.as_primitive::<Float64Type>().iter().flatten().map(canonical));
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut m = Moments::new(self.stat);
        self.seen.iter().for_each(|b| m.add(f64::from_bits(*b)));
        Ok(ScalarValue::Float64(m.result()))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + 16 * self.seen.capacity()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = Float64Array::from_iter_values(self.seen.iter().map(|b| f64::from_bits(*b)));
        Ok(vec![SingleRowListArrayBuilder::new(Arc::new(values)).build_list_scalar()])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for values in lists.iter().flatten() {
            self.seen.extend(values.as_primitive::<Float64Type>().iter().flatten().map(canonical));
        }
        Ok(())
    }
}

/// A list of exact sums as a state value (a `List<Binary>`).
pub fn sums_to_list<'a>(sums: impl IntoIterator<Item = &'a ExactSum>) -> ScalarValue {
    let bytes: Vec<Vec<u8>> = sums.into_iter().map(ExactSum::to_bytes).collect();
    let array = BinaryArray::from_iter_values(bytes.iter());
    SingleRowListArrayBuilder::new(Arc::new(array)).build_list_scalar()
}

/// The type of [`sums_to_list`]'s values.
pub fn sums_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Binary, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator: the tests need many orders, not a crate.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 11
    }

    fn sum_of(values: &[f64]) -> f64 {
        let mut s = ExactSum::new();
        values.iter().for_each(|&v| s.add(v));
        s.value()
    }

    #[test]
    fn exact_where_naive_summation_is_not() {
        assert_eq!(sum_of(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(sum_of(&[0.1, 0.2, 0.3]), 0.6);
        assert_eq!(sum_of(&[0.1; 10]), 1.0);
        assert_eq!(sum_of(&[f64::MAX, f64::MAX]), f64::INFINITY);
        assert_eq!(sum_of(&[f64::MAX, f64::MAX, -f64::MAX]), f64::MAX);
        assert_eq!(sum_of(&[5e-324, 5e-324]), 1e-323);
        assert_eq!(sum_of(&[-2.5, 1.25]), -1.25);
        assert_eq!(sum_of(&[]), 0.0);
        assert!(sum_of(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        // Ties round to even: 2^53 + 1 is halfway between 2^53 and 2^53 + 2.
        assert_eq!(sum_of(&[9007199254740992.0, 1.0]), 9007199254740992.0);
        assert_eq!(sum_of(&[9007199254740992.0, 1.0, 1e-300]), 9007199254740994.0);
    }

    #[test]
    fn any_order_and_any_split_gives_the_same_bits() {
        let mut seed = 7;
        let values: Vec<f64> = (0..5000)
            .map(|_| {
                let m = (lcg(&mut seed) % 1_000_000) as f64 / 7.0;
                let e = (lcg(&mut seed) % 40) as i32 - 20;
                if lcg(&mut seed) % 2 == 0 { m * 10f64.powi(e) } else { -m * 10f64.powi(e) }
            })
            .collect();
        let reference = sum_of(&values);
        for round in 0..20 {
            let mut shuffled = values.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, (lcg(&mut seed) as usize) % (i + 1));
            }
            let parts = 1 + round % 4;
            let mut total = ExactSum::new();
            for chunk in shuffled.chunks(shuffled.len() / parts + 1) {
                let mut s = ExactSum::new();
                chunk.iter().for_each(|&v| s.add(v));
                total.merge(&ExactSum::from_bytes(&s.to_bytes()).unwrap());
            }
            assert_eq!(total.value().to_bits(), reference.to_bits());
        }
    }

    #[test]
    fn correctly_rounded_against_integer_arithmetic() {
        // Values that are integers times 2^-10 can be summed exactly in i128.
        let mut seed = 11;
        for _ in 0..200 {
            let ints: Vec<i64> = (0..50).map(|_| (lcg(&mut seed) % (1 << 60)) as i64 - (1 << 59)).collect();
            let doubles: Vec<f64> = ints.iter().map(|&i| i as f64 / 1024.0).collect();
            let exact: i128 = doubles.iter().map(|&d| (d * 1024.0) as i128).sum();
            let want = exact as f64 / 1024.0; // i128 -> f64 rounds correctly (ties to even).
            assert_eq!(sum_of(&doubles).to_bits(), want.to_bits());
        }
    }

    #[test]
    fn retracting_squares_undoes_adding_them_infinities_included() {
        let mut s = ExactSum::new();
        for x in [3.0, f64::INFINITY, 1e200, 0.1] {
            s.add_square(x);
        }
        for x in [f64::INFINITY, 1e200, 0.1] {
            s.sub_square(x);
        }
        assert_eq!(s.value(), 9.0);
    }

    #[test]
    fn variance_keeps_digits_when_the_mean_is_large() {
        let values = [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0];
        let mut m = Moments::new(Stat::VarSamp);
        values.iter().for_each(|&v| m.add(v));
        assert_eq!(m.result(), Some(30.0));
        let mut p = Moments::new(Stat::VarPop);
        [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0].iter().for_each(|&v| p.add(v));
        assert_eq!(p.result(), Some(4.0));
    }
}
