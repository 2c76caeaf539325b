//! Exact sets of distinct values, and their compact encoding as partial aggregate states.
//!
//! Integer-like values (integers, dates, times, timestamps, durations) are kept as 64-bit
//! patterns in a roaring bitmap (`RoaringTreemap`): a signed value is reinterpreted as `u64`
//! (two's complement), which is reversible, so negative numbers and the full 64-bit range are
//! exact. Every other type is kept as its Arrow row-format bytes (order-preserving and
//! equality-preserving: two floats are the same member iff their bit patterns are, as in
//! DataFusion's own distinct accumulators).
//!
//! On the wire a set is one binary value, tagged by its first byte:
//! - `DELTAS`: the sorted members as LEB128 varints of their gaps; small or sparse sets;
//! - `ROARING`: roaring's portable serialization (after run-length optimisation); dense sets;
//! - `FRONT_CODED`: sorted row-format members, each written as the length it shares with the
//!   previous member and its remaining suffix.
//!
//! The integer encoder writes whichever of the first two is smaller, so a one-value set costs
//! about as much as the value itself and a dense set about one bit per value.

use std::collections::HashSet;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::error::{DataFusionError, Result};
use roaring::RoaringTreemap;

const DELTAS: u8 = 0;
const ROARING: u8 = 1;
const FRONT_CODED: u8 = 2;

/// Whether values of `data_type` are kept in a roaring bitmap (as 64-bit patterns).
pub fn is_integer_like(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(_, _)
            | Duration(_)
    )
}

/// How the input values of one aggregate become set members.
#[derive(Debug)]
pub(crate) enum Domain {
    /// 64-bit patterns in roaring bitmaps.
    Integers,
    /// Arrow row-format bytes.
    Rows(RowConverter),
}

/// The members of one input batch, in row order; `None` for NULL (never a member).
pub(crate) enum Members {
    Integers(Vec<Option<u64>>),
    Rows { rows: Rows, valid: Vec<bool> },
}

impl Domain {
    pub(crate) fn for_type(data_type: &DataType) -> Result<Self> {
        if is_integer_like(data_type) {
            Ok(Self::Integers)
        } else {
            Ok(Self::Rows(RowConverter::new(vec![SortField::new(
                data_type.clone(),
            )])?))
        }
    }

    pub(crate) fn new_set(&self) -> ValueSet {
        match self {
            Self::Integers => ValueSet::Integers(RoaringTreemap::new()),
            Self::Rows(_) => ValueSet::Rows(HashSet::new()),
        }
    }

    pub(crate) fn members(&self, array: &ArrayRef) -> Result<Members> {
        let nulls = array.logical_nulls();
        let valid = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
        match self {
            Self::Integers => {
                let bits: Vec<Option<u64>> = if array.data_type() == &DataType::UInt64 {
                    let values = array.as_primitive::<UInt64Type>();
                    (0..array.len())
                        .map(|i| valid(i).then(|| values.value(i)))
                        .collect()
                } else {
                    // Every other integer-like type fits in i64; its two's complement bits
                    // are the member.
                    let wide = cast(array, &DataType::Int64)?;
                    let values = wide.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                    (0..array.len())
                        .map(|i| valid(i).then(|| values.value(i) as u64))
                        .collect()
                };
                Ok(Members::Integers(bits))
            }
            Self::Rows(converter) => {
                let rows = converter.convert_columns(std::slice::from_ref(array))?;
                let valid = (0..array.len()).map(valid).collect();
                Ok(Members::Rows { rows, valid })
            }
        }
    }

    /// The members of `set` as an array of the input type, in ascending order.
    pub(crate) fn values(&self, set: &ValueSet) -> Result<ValuesOf> {
        match (self, set) {
            (Self::Integers, ValueSet::Integers(bits)) => Ok(ValuesOf::Bits(bits.iter().collect())),
            (Self::Rows(converter), ValueSet::Rows(members)) => {
                let mut sorted: Vec<&[u8]> = members.iter().map(|m| m.as_ref()).collect();
                sorted.sort_unstable();
                let parser = converter.parser();
                let rows = sorted.iter().map(|bytes| parser.parse(bytes));
                let mut columns = converter.convert_rows(rows)?;
                Ok(ValuesOf::Array(columns.remove(0)))
            }
            _ => Err(mismatch()),
        }
    }
}

/// A set's members, decoded.
pub(crate) enum ValuesOf {
    Bits(Vec<u64>),
    Array(ArrayRef),
}

impl Members {
    /// Inserts member `row` into `set`; returns the bytes it added (0 if NULL or present).
    pub(crate) fn insert(&self, row: usize, set: &mut ValueSet) -> usize {
        match (self, set) {
            (Self::Integers(bits), ValueSet::Integers(members)) => match bits[row] {
                Some(bits) if members.insert(bits) => 2,
                _ => 0,
            },
            (Self::Rows { rows, valid }, ValueSet::Rows(members)) => {
                if !valid[row] {
                    return 0;
                }
                let bytes = rows.row(row);
                let bytes = bytes.as_ref();
                if members.contains(bytes) {
                    return 0;
                }
                members.insert(bytes.into());
                bytes.len() + 24
            }
            _ => 0,
        }
    }
}

/// One group's distinct values.
#[derive(Debug, Clone)]
pub(crate) enum ValueSet {
    Integers(RoaringTreemap),
    Rows(HashSet<Box<[u8]>>),
}

impl ValueSet {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::Integers(bits) => bits.len(),
            Self::Rows(members) => members.len() as u64,
        }
    }

    /// Writes the set's compact encoding to `out` (cleared first).
    pub(crate) fn encode(&mut self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Self::Integers(bits) => {
                let deltas = deltas_len(bits);
                bits.optimize();
                if deltas <= bits.serialized_size() {
                    out.reserve(deltas + 1);
                    out.push(DELTAS);
                    write_varint(out, bits.len());
                    let mut previous = 0u64;
                    for (i, value) in bits.iter().enumerate() {
                        write_varint(out, if i == 0 { value } else { value - previous });
                        previous = value;
                    }
                } else {
                    out.push(ROARING);
                    bits.serialize_into(&mut *out)
                        .expect("writing to a Vec cannot fail");
                }
            }
            Self::Rows(members) => {
                let mut sorted: Vec<&[u8]> = members.iter().map(|m| m.as_ref()).collect();
                sorted.sort_unstable();
                out.push(FRONT_CODED);
                write_varint(out, sorted.len() as u64);
                let mut previous: &[u8] = &[];
                for member in sorted {
                    let shared = previous
                        .iter()
                        .zip(member)
                        .take_while(|(a, b)| a == b)
                        .count();
                    write_varint(out, shared as u64);
                    write_varint(out, (member.len() - shared) as u64);
                    out.extend_from_slice(&member[shared..]);
                    previous = member;
                }
            }
        }
    }

    /// Adds the members of an encoded set; returns the bytes it added.
    pub(crate) fn merge_encoded(&mut self, encoded: &[u8]) -> Result<usize> {
        let Some((&tag, body)) = encoded.split_first() else {
            return Ok(0);
        };
        let mut reader = body;
        match (tag, self) {
            (DELTAS, Self::Integers(members)) => {
                let count = read_varint(&mut reader)?;
                let before = members.len();
                // The members arrive sorted: building a bitmap from them appends to its
                // containers, where inserting one by one searches for each (merging the
                // states of a view's refresh was dominated by those inserts).
                let mut values = Vec::with_capacity(count.min(1 << 20) as usize);
                let mut value = 0u64;
                for i in 0..count {
                    let step = read_varint(&mut reader)?;
                    value = if i == 0 {
                        step
                    } else {
                        value
                            .checked_add(step)
                            .ok_or_else(|| corrupt("delta past 64 bits"))?
                    };
                    values.push(value);
                }
                let other = RoaringTreemap::from_sorted_iter(values)
                    .map_err(|_| corrupt("deltas out of order"))?;
                if members.is_empty() {
                    *members = other;
                } else {
                    *members |= other;
                }
                Ok(2 * (members.len() - before) as usize)
            }
            (ROARING, Self::Integers(members)) => {
                let other = RoaringTreemap::deserialize_from(reader)
                    .map_err(|e| corrupt(&format!("roaring bitmap: {e}")))?;
                let before = members.len();
                *members |= other;
                Ok(2 * (members.len() - before) as usize)
            }
            (FRONT_CODED, Self::Rows(members)) => {
                let count = read_varint(&mut reader)?;
                let mut previous: Vec<u8> = Vec::new();
                let mut added = 0;
                for _ in 0..count {
                    let shared = read_varint(&mut reader)? as usize;
                    let suffix = read_varint(&mut reader)? as usize;
                    if shared > previous.len() || suffix > reader.len() {
                        return Err(corrupt("front-coded member out of bounds"));
                    }
                    previous.truncate(shared);
                    previous.extend_from_slice(&reader[..suffix]);
                    reader = &reader[suffix..];
                    if !members.contains(previous.as_slice()) {
                        added += previous.len() + 24;
                        members.insert(previous.as_slice().into());
                    }
                }
                Ok(added)
            }
            (tag, _) => Err(corrupt(&format!(
                "encoding {tag} does not fit this value type"
            ))),
        }
    }
}

/// Bytes of the DELTAS encoding of `bits`, tag included.
fn deltas_len(bits: &RoaringTreemap) -> usize {
    let mut total = 1 + varint_len(bits.len());
    let mut previous = 0u64;
    for (i, value) in bits.iter().enumerate() {
        total += varint_len(if i == 0 { value } else { value - previous });
        previous = value;
    }
    total
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(reader: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = reader
            .split_first()
            .ok_or_else(|| corrupt("truncated varint"))?;
        *reader = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(corrupt("varint longer than 64 bits"))
}

fn corrupt(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("distinct set state: {what}"))
}

fn mismatch() -> DataFusionError {
    DataFusionError::Internal("distinct set of another value type".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int32Array, Int64Array, StringArray};
    use std::sync::Arc;

    fn set_of(domain: &Domain, array: ArrayRef) -> ValueSet {
        let members = domain.members(&array).unwrap();
        let mut set = domain.new_set();
        for row in 0..array.len() {
            members.insert(row, &mut set);
        }
        set
    }

    fn round_trip(domain: &Domain, set: &mut ValueSet) -> (ValueSet, usize) {
        let mut bytes = Vec::new();
        set.encode(&mut bytes);
        let mut decoded = domain.new_set();
        decoded.merge_encoded(&bytes).unwrap();
        (decoded, bytes.len())
    }

    #[test]
    fn negative_and_extreme_integers_are_distinct_members_and_survive_encoding() {
        let domain = Domain::Integers;
        let values = Int64Array::from(vec![
            Some(i64::MIN),
            Some(-1),
            Some(0),
            None,
            Some(-1),
            Some(i64::MAX),
            Some(1 << 40),
        ]);
        let mut set = set_of(&domain, Arc::new(values));
        assert_eq!(set.len(), 5, "NULL is not a member, -1 counted once");
        let (decoded, _) = round_trip(&domain, &mut set);
        let ValuesOf::Bits(bits) = domain.values(&decoded).unwrap() else {
            panic!("integers decode to bits")
        };
        let mut signed: Vec<i64> = bits.into_iter().map(|b| b as i64).collect();
        signed.sort();
        assert_eq!(signed, vec![i64::MIN, -1, 0, 1 << 40, i64::MAX]);
    }

    #[test]
    fn small_sets_cost_about_their_values_and_dense_sets_about_a_bit_each() {
        let domain = Domain::Integers;
        let mut one = set_of(&domain, Arc::new(Int32Array::from(vec![123_456])));
        assert!(round_trip(&domain, &mut one).1 <= 5);
        let mut dense = set_of(
            &domain,
            Arc::new(Int64Array::from_iter_values((0..200_000).map(|v| v * 2))),
        );
        let (decoded, bytes) = round_trip(&domain, &mut dense);
        assert_eq!(decoded.len(), 200_000);
        assert!(bytes < 60_000, "{bytes} bytes for 200,000 values");
    }

    #[test]
    fn strings_and_floats_keep_their_members_through_front_coding() {
        let strings: ArrayRef = Arc::new(StringArray::from(vec![
            Some("campaign-0001"),
            Some("campaign-0002"),
            None,
            Some("campaign-0001"),
            Some(""),
        ]));
        let domain = Domain::for_type(strings.data_type()).unwrap();
        let mut set = set_of(&domain, strings);
        assert_eq!(set.len(), 3);
        let (decoded, _) = round_trip(&domain, &mut set);
        let ValuesOf::Array(values) = domain.values(&decoded).unwrap() else {
            panic!("rows decode to an array")
        };
        let values = values.as_string::<i32>();
        let values: Vec<&str> = values.iter().map(|v| v.unwrap()).collect();
        assert_eq!(values, vec!["", "campaign-0001", "campaign-0002"]);

        let floats: ArrayRef = Arc::new(Float64Array::from(vec![0.0, -0.0, 1.5, 1.5, f64::NAN]));
        let domain = Domain::for_type(floats.data_type()).unwrap();
        let mut set = set_of(&domain, floats);
        assert_eq!(
            set.len(),
            4,
            "-0.0 and 0.0 differ in bits, as in DataFusion"
        );
        assert_eq!(round_trip(&domain, &mut set).0.len(), 4);
    }

    #[test]
    fn corrupt_states_are_errors_not_panics() {
        let mut set = Domain::Integers.new_set();
        assert!(set.merge_encoded(&[DELTAS, 5, 1]).is_err());
        assert!(set.merge_encoded(&[FRONT_CODED, 1, 0, 1]).is_err());
        assert!(set.merge_encoded(&[ROARING, 9, 9]).is_err());
    }
}
