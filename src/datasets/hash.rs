//! The content hash of a dataset: the same for the same rows in any order and any batching,
//! different when any value, NULL or the row count changes.
//!
//! Definition (version 1):
//! - Each row is encoded canonically, column by column: a byte 0 for NULL, or 1 then the value.
//!   Integers are 8 bytes little-endian, floats are the 8-byte IEEE bits of the f64 (with -0.0 as
//!   0.0 and one NaN), booleans one byte, dates days and timestamps microseconds since the epoch
//!   (8 bytes), decimals 16 bytes, text and binary an 8-byte length then the bytes; other types
//!   their text form, as text.
//! - A row's hash is the first 16 bytes of BLAKE3 of its encoding, read as a little-endian u128.
//! - The dataset's hash is BLAKE3 of: "hindsight-dataset-hash-v1\n", then per column its name, a
//!   tab, its Arrow type and a newline, then the row count (8 bytes) and the wrapping sum of the
//!   row hashes (16 bytes), both little-endian; written as 64 hex digits.
//!
//! A sum is order- and batch-independent, and unlike XOR it counts a duplicated row twice.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::Result;

/// Hashes a stream of batches; feed every batch, then `finish`.
#[derive(Debug, Default, Clone)]
pub struct ContentHasher {
    sum: u128,
    rows: u64,
    /// Per-row encodings of the batch in hand, reused between batches.
    rows_buf: Vec<Vec<u8>>,
}

impl ContentHasher {
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if self.rows_buf.len() < n {
            self.rows_buf.resize_with(n, Vec::new);
        }
        let bufs = &mut self.rows_buf[..n];
        bufs.iter_mut().for_each(Vec::clear);
        for column in batch.columns() {
            encode_column(column, bufs)?;
        }
        for b in bufs.iter() {
            let h = blake3::hash(b);
            let mut first = [0u8; 16];
            first.copy_from_slice(&h.as_bytes()[..16]);
            self.sum = self.sum.wrapping_add(u128::from_le_bytes(first));
        }
        self.rows += n as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(&self, schema: &Schema) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"hindsight-dataset-hash-v1\n");
        for f in schema.fields() {
            h.update(format!("{}\t{}\n", f.name(), f.data_type()).as_bytes());
        }
        h.update(&self.rows.to_le_bytes());
        h.update(&self.sum.to_le_bytes());
        h.finalize().to_hex().to_string()
    }
}

fn each<T>(bufs: &mut [Vec<u8>], nulls: &dyn Array, mut value: impl FnMut(usize, &mut Vec<u8>) -> T) {
    for (i, b) in bufs.iter_mut().enumerate() {
        if nulls.is_null(i) {
            b.push(0);
        } else {
            b.push(1);
            value(i, b);
        }
    }
}

fn encode_column(col: &ArrayRef, bufs: &mut [Vec<u8>]) -> Result<()> {
    match col.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16
        | DataType::UInt32 | DataType::UInt64 => {
            let a = cast(col, &DataType::Int64)?;
            let a: &Int64Array = a.as_primitive::<Int64Type>();
            each(bufs, a, |i, b| b.extend_from_slice(&a.value(i).to_le_bytes()));
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let a = cast(col, &DataType::Float64)?;
            let a: &Float64Array = a.as_primitive::<Float64Type>();
            each(bufs, a, |i, b| {
                let v = a.value(i);
                let v = if v == 0.0 { 0.0 } else if v.is_nan() { f64::NAN } else { v };
                b.extend_from_slice(&v.to_bits().to_le_bytes())
            });
        }
        DataType::Boolean => {
            let a: &BooleanArray = col.as_boolean();
            each(bufs, a, |i, b| b.push(a.value(i) as u8));
        }
        DataType::Date32 | DataType::Date64 => {
            let a = cast(col, &DataType::Date32)?;
            let a = cast(&a, &DataType::Int32)?;
            let a = cast(&a, &DataType::Int64)?;
            let a: &Int64Array = a.as_primitive::<Int64Type>();
            each(bufs, a, |i, b| b.extend_from_slice(&a.value(i).to_le_bytes()));
        }
        DataType::Timestamp(_, tz) => {
            let a = cast(col, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?;
            let a = cast(&a, &DataType::Int64)?;
            let a: &Int64Array = a.as_primitive::<Int64Type>();
            each(bufs, a, |i, b| b.extend_from_slice(&a.value(i).to_le_bytes()));
        }
        DataType::Decimal128(_, _) => {
            let a: &Decimal128Array = col.as_primitive();
            each(bufs, a, |i, b| b.extend_from_slice(&a.value(i).to_le_bytes()));
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let a = cast(col, &DataType::Utf8)?;
            let a: &StringArray = a.as_string::<i32>();
            each(bufs, a, |i, b| {
                let v = a.value(i).as_bytes();
                b.extend_from_slice(&(v.len() as u64).to_le_bytes());
                b.extend_from_slice(v);
            });
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            let a = cast(col, &DataType::Binary)?;
            let a: &BinaryArray = a.as_binary::<i32>();
            each(bufs, a, |i, b| {
                let v = a.value(i);
                b.extend_from_slice(&(v.len() as u64).to_le_bytes());
                b.extend_from_slice(v);
            });
        }
        _ => {
            let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
            each(bufs, col.as_ref(), |i, b| {
                let v = fmt.value(i).to_string();
                b.extend_from_slice(&(v.len() as u64).to_le_bytes());
                b.extend_from_slice(v.as_bytes());
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    use super::*;

    fn batch(a: Vec<Option<i64>>, s: Vec<Option<&str>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(a)), Arc::new(StringArray::from(s))]).unwrap()
    }

    fn hash(batches: &[RecordBatch]) -> String {
        let mut h = ContentHasher::default();
        batches.iter().for_each(|b| h.update(b).unwrap());
        h.finish(&batches[0].schema())
    }

    #[test]
    fn order_and_batching_do_not_matter_values_and_nulls_do() {
        let whole = hash(&[batch(vec![Some(1), Some(2), None], vec![Some("x"), None, Some("")])]);
        let split = hash(&[batch(vec![None], vec![Some("")]), batch(vec![Some(2), Some(1)], vec![None, Some("x")])]);
        assert_eq!(whole, split);
        let changed = hash(&[batch(vec![Some(1), Some(3), None], vec![Some("x"), None, Some("")])]);
        assert_ne!(whole, changed);
        let null_for_empty = hash(&[batch(vec![Some(1), Some(2), None], vec![Some("x"), None, None])]);
        assert_ne!(whole, null_for_empty);
        let duplicated = hash(&[batch(vec![Some(1), Some(1), Some(2), None], vec![Some("x"), Some("x"), None, Some("")])]);
        assert_ne!(whole, duplicated);
    }
}
