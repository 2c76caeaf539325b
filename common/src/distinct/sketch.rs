//! `APPROX_DISTINCT` with smaller states on the wire. DataFusion's HyperLogLog state is a
//! list of up to 256 64-bit hashes for small groups, then the 16,384 one-byte registers. A
//! group of a few thousand values leaves most registers at zero, and no register exceeds 51
//! (64 - 14 + 1), so the registers are re-encoded losslessly as whichever is smaller:
//! - `SPARSE`: the non-zero registers, each as the gap from the previous one (LEB128 varint)
//!   and its value;
//! - `PACKED`: every register in 6 bits (12,288 bytes);
//! - `RAW`: DataFusion's bytes as they are (the hash lists, or registers that fit neither).
//!
//! Everything else is DataFusion's own `approx_distinct`: the same hashes, the same sketch,
//! the same estimate; only the state's bytes change between the partial and final
//! aggregates.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::approx_distinct::approx_distinct_udaf;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

pub const APPROX_DISTINCT_NAME: &str = "tally_approx_distinct";

const REGISTERS: usize = 16_384;
const RAW: u8 = 0;
const SPARSE: u8 = 1;
const PACKED: u8 = 2;

/// Whether DataFusion's `approx_distinct` keeps a HyperLogLog (binary) state for this type;
/// booleans and small integers use an exact bitmap instead, left as it is.
pub fn sketches(data_type: &DataType) -> bool {
    !matches!(
        data_type,
        DataType::Null
            | DataType::Boolean
            | DataType::UInt8
            | DataType::Int8
            | DataType::UInt16
            | DataType::Int16
    )
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CompactApproxDistinct {
    signature: Signature,
}

impl CompactApproxDistinct {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for CompactApproxDistinct {
    fn default() -> Self {
        Self::new()
    }
}

pub fn compact_approx_distinct_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(CompactApproxDistinct::new()))
}

impl AggregateUDFImpl for CompactApproxDistinct {
    fn name(&self) -> &str {
        APPROX_DISTINCT_NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        approx_distinct_udaf().return_type(arg_types)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        approx_distinct_udaf().default_value(data_type)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "compact_hll"),
            DataType::Binary,
            false,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        check(&args)?;
        Ok(Box::new(CompactSketch {
            inner: approx_distinct_udaf().accumulator(args)?,
        }))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        approx_distinct_udaf().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        check(&args)?;
        Ok(Box::new(CompactSketches {
            inner: approx_distinct_udaf().create_groups_accumulator(args)?,
        }))
    }
}

fn check(args: &AccumulatorArgs) -> Result<()> {
    match args.expr_fields {
        [field] if sketches(field.data_type()) => Ok(()),
        _ => Err(DataFusionError::Plan(format!(
            "{APPROX_DISTINCT_NAME} takes one argument of a sketched type"
        ))),
    }
}

/// DataFusion's states, re-encoded.
fn encode_states(states: &ArrayRef) -> ArrayRef {
    let states = states.as_binary::<i32>();
    let mut builder = BinaryBuilder::new();
    let mut scratch = Vec::new();
    for row in 0..states.len() {
        encode(states.value(row), &mut scratch);
        builder.append_value(&scratch);
    }
    Arc::new(builder.finish())
}

/// Encoded states, back to DataFusion's bytes.
fn decode_states(states: &ArrayRef) -> Result<ArrayRef> {
    let states = states.as_binary::<i32>();
    let mut builder = BinaryBuilder::new();
    let mut scratch = Vec::new();
    for row in 0..states.len() {
        decode(states.value(row), &mut scratch)?;
        builder.append_value(&scratch);
    }
    Ok(Arc::new(builder.finish()))
}

fn encode(state: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if state.len() == REGISTERS && state.iter().all(|r| *r < 64) {
        let mut sparse = 1;
        let mut previous = 0;
        for (index, _) in state.iter().enumerate().filter(|(_, r)| **r != 0) {
            sparse += varint_len(index - previous) + 1;
            previous = index;
        }
        if sparse < REGISTERS * 6 / 8 {
            out.push(SPARSE);
            let mut previous = 0;
            for (index, register) in state.iter().enumerate().filter(|(_, r)| **r != 0) {
                write_varint(out, index - previous);
                out.push(*register);
                previous = index;
            }
        } else {
            out.push(PACKED);
            for chunk in state.chunks_exact(4) {
                let bits = u32::from(chunk[0])
                    | (u32::from(chunk[1]) << 6)
                    | (u32::from(chunk[2]) << 12)
                    | (u32::from(chunk[3]) << 18);
                out.extend_from_slice(&bits.to_le_bytes()[..3]);
            }
        }
        return;
    }
    out.push(RAW);
    out.extend_from_slice(state);
}

fn decode(encoded: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let corrupt = |what: &str| DataFusionError::Execution(format!("approx_distinct state: {what}"));
    let Some((&tag, mut body)) = encoded.split_first() else {
        // A sketch that saw nothing (an accumulator with no input states nothing): every
        // register zero, as DataFusion's merge expects.
        out.resize(REGISTERS, 0);
        return Ok(());
    };
    match tag {
        RAW => out.extend_from_slice(body),
        SPARSE => {
            out.resize(REGISTERS, 0);
            let mut index = 0;
            while !body.is_empty() {
                index += read_varint(&mut body).ok_or_else(|| corrupt("truncated gap"))?;
                let (&register, rest) = body
                    .split_first()
                    .ok_or_else(|| corrupt("truncated register"))?;
                *out.get_mut(index)
                    .ok_or_else(|| corrupt("register index out of range"))? = register;
                body = rest;
            }
        }
        PACKED => {
            if body.len() != REGISTERS * 6 / 8 {
                return Err(corrupt("packed registers of the wrong length"));
            }
            for chunk in body.chunks_exact(3) {
                let bits = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], 0]);
                for shift in [0, 6, 12, 18] {
                    out.push(((bits >> shift) & 0x3f) as u8);
                }
            }
        }
        other => return Err(corrupt(&format!("unknown encoding {other}"))),
    }
    Ok(())
}

fn varint_len(value: usize) -> usize {
    (usize::BITS as usize - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(reader: &mut &[u8]) -> Option<usize> {
    let mut value = 0usize;
    for shift in (0..usize::BITS).step_by(7) {
        let (&byte, rest) = reader.split_first()?;
        *reader = rest;
        value |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[derive(Debug)]
struct CompactSketch {
    inner: Box<dyn Accumulator>,
}

impl Accumulator for CompactSketch {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(&[decode_states(&states[0])?])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut out = Vec::new();
        match self.inner.state()?.as_slice() {
            [ScalarValue::Binary(Some(bytes))] => encode(bytes, &mut out),
            [ScalarValue::Binary(None)] => {}
            other => {
                return Err(DataFusionError::Internal(format!(
                    "approx_distinct state is not one binary value: {other:?}"
                )));
            }
        }
        Ok(vec![ScalarValue::Binary(Some(out))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.inner.size()
    }
}

struct CompactSketches {
    inner: Box<dyn GroupsAccumulator>,
}

impl GroupsAccumulator for CompactSketches {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .update_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.inner.evaluate(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let states = self.inner.state(emit_to)?;
        Ok(vec![encode_states(&states[0])])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner.merge_batch(
            &[decode_states(&values[0])?],
            group_indices,
            total_num_groups,
        )
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let states = self.inner.convert_to_state(values, opt_filter)?;
        Ok(vec![encode_states(&states[0])])
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::{SessionConfig, SessionContext};

    #[test]
    fn a_sketch_that_saw_nothing_decodes_to_empty_registers() {
        let mut out = vec![1, 2, 3];
        decode(&[], &mut out).unwrap();
        assert_eq!(out, vec![0u8; REGISTERS]);
    }

    #[test]
    fn registers_round_trip_in_every_encoding() {
        let mut sparse = vec![0u8; REGISTERS];
        sparse[3] = 5;
        sparse[REGISTERS - 1] = 51;
        let dense: Vec<u8> = (0..REGISTERS).map(|i| (i % 7) as u8 + 1).collect();
        let hashes: Vec<u8> = (0..80u8).collect();
        for (state, tag, at_most) in [
            (sparse, SPARSE, 8),
            (dense, PACKED, REGISTERS * 6 / 8 + 1),
            (hashes, RAW, 81),
        ] {
            let (mut encoded, mut decoded) = (Vec::new(), Vec::new());
            encode(&state, &mut encoded);
            assert_eq!(encoded[0], tag);
            assert!(encoded.len() <= at_most, "{} bytes", encoded.len());
            decode(&encoded, &mut decoded).unwrap();
            assert_eq!(decoded, state);
        }
        assert!(decode(&[SPARSE, 0xff, 0xff, 0x7f, 1], &mut Vec::new()).is_err());
        assert!(decode(&[PACKED, 1, 2], &mut Vec::new()).is_err());
    }

    #[tokio::test]
    async fn estimates_are_datafusions_own() {
        let config = SessionConfig::new().with_target_partitions(4);
        let ctx = SessionContext::new_with_config(config);
        ctx.register_udaf(compact_approx_distinct_udaf().as_ref().clone());
        ctx.sql(
            "CREATE TABLE t AS SELECT value % 3 AS g, value * 7919 % 50000 AS v, \
             'u' || (value % 3000) AS s FROM generate_series(1, 200000)",
        )
        .await
        .unwrap();
        for column in ["v", "s"] {
            let run = |f: &str| {
                let ctx = ctx.clone();
                let sql = format!("SELECT g, {f}({column}) AS n FROM t GROUP BY g ORDER BY g");
                async move {
                    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                    pretty_format_batches(&batches).unwrap().to_string()
                }
            };
            assert_eq!(
                run("tally_approx_distinct").await,
                run("approx_distinct").await
            );
        }
    }
}
