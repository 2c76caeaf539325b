//! One value set per group: the `GroupsAccumulator` DataFusion's hash aggregation drives, and
//! the single-group `Accumulator` for aggregates without GROUP BY.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, Decimal128Array, Float64Array,
    Int64Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};

use super::DistinctKind;
use super::sets::{Domain, ValueSet, ValuesOf};

#[derive(Debug)]
pub(crate) struct SetGroups {
    kind: DistinctKind,
    domain: Domain,
    return_type: DataType,
    sets: Vec<ValueSet>,
    /// `CountDisjoint` only: counts merged from other partitions' states.
    merged: Vec<i64>,
    /// Heap bytes held by the sets, estimated as members are added.
    bytes: usize,
}

impl SetGroups {
    pub(crate) fn new(
        kind: DistinctKind,
        input: &DataType,
        return_type: &DataType,
    ) -> Result<Self> {
        Ok(Self {
            kind,
            domain: Domain::for_type(input)?,
            return_type: return_type.clone(),
            sets: Vec::new(),
            merged: Vec::new(),
            bytes: 0,
        })
    }

    fn resize(&mut self, groups: usize) {
        while self.sets.len() < groups {
            self.sets.push(self.domain.new_set());
        }
        self.merged.resize(groups.max(self.merged.len()), 0);
    }

    /// Takes the emitted groups out, with their merged counts.
    fn take(&mut self, emit_to: EmitTo) -> (Vec<ValueSet>, Vec<i64>) {
        let before = self.sets.len().max(1);
        let sets = emit_to.take_needed(&mut self.sets);
        let merged = emit_to.take_needed(&mut self.merged);
        self.bytes = self.bytes * self.sets.len() / before;
        (sets, merged)
    }

    fn states(&self, sets: &mut [ValueSet], merged: &[i64]) -> ArrayRef {
        if self.kind == DistinctKind::CountDisjoint {
            return Arc::new(Int64Array::from_iter_values(
                sets.iter().zip(merged).map(|(s, m)| s.len() as i64 + m),
            ));
        }
        let mut builder = BinaryBuilder::new();
        let mut scratch = Vec::new();
        for set in sets {
            set.encode(&mut scratch);
            builder.append_value(&scratch);
        }
        Arc::new(builder.finish())
    }

    fn results(&self, sets: &[ValueSet], merged: &[i64]) -> Result<ArrayRef> {
        match self.kind {
            DistinctKind::Count | DistinctKind::CountDisjoint => {
                Ok(Arc::new(Int64Array::from_iter_values(
                    sets.iter().zip(merged).map(|(s, m)| s.len() as i64 + m),
                )))
            }
            DistinctKind::Sum => self.sums(sets),
        }
    }

    /// `SUM` of each set's members, with DataFusion's `SUM(DISTINCT)` arithmetic (wrapping
    /// integers); NULL for an empty set. Members are added in ascending order.
    fn sums(&self, sets: &[ValueSet]) -> Result<ArrayRef> {
        let mut values = Vec::with_capacity(sets.len());
        for set in sets {
            values.push(if set.len() == 0 {
                None
            } else {
                Some(self.domain.values(set)?)
            });
        }
        let unsupported = || {
            DataFusionError::Internal(format!(
                "tally_sum_distinct cannot return {}",
                self.return_type
            ))
        };
        Ok(match &self.return_type {
            DataType::Int64 => Arc::new(
                values
                    .iter()
                    .map(|v| match v {
                        Some(ValuesOf::Bits(bits)) => Ok(Some(
                            bits.iter().fold(0i64, |sum, b| sum.wrapping_add(*b as i64)),
                        )),
                        None => Ok(None),
                        Some(_) => Err(unsupported()),
                    })
                    .collect::<Result<Int64Array>>()?,
            ),
            DataType::UInt64 => Arc::new(
                values
                    .iter()
                    .map(|v| match v {
                        Some(ValuesOf::Bits(bits)) => {
                            Ok(Some(bits.iter().fold(0u64, |sum, b| sum.wrapping_add(*b))))
                        }
                        None => Ok(None),
                        Some(_) => Err(unsupported()),
                    })
                    .collect::<Result<UInt64Array>>()?,
            ),
            DataType::Float64 => Arc::new(
                values
                    .iter()
                    .map(|v| match v {
                        Some(ValuesOf::Array(array)) => Ok(Some(
                            array.as_primitive::<Float64Type>().values().iter().sum(),
                        )),
                        None => Ok(None),
                        Some(_) => Err(unsupported()),
                    })
                    .collect::<Result<Float64Array>>()?,
            ),
            DataType::Decimal128(precision, scale) => Arc::new(
                values
                    .iter()
                    .map(|v| match v {
                        Some(ValuesOf::Array(array)) => Ok(Some(
                            array
                                .as_primitive::<Decimal128Type>()
                                .values()
                                .iter()
                                .fold(0i128, |sum, v| sum.wrapping_add(*v)),
                        )),
                        None => Ok(None),
                        Some(_) => Err(unsupported()),
                    })
                    .collect::<Result<Decimal128Array>>()?
                    .with_precision_and_scale(*precision, *scale)?,
            ),
            _ => return Err(unsupported()),
        })
    }
}

/// Whether row `row` passes the aggregate's FILTER (a NULL filter value does not).
fn passes(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

impl GroupsAccumulator for SetGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let members = self.domain.members(&values[0])?;
        for (row, &group) in group_indices.iter().enumerate() {
            if passes(opt_filter, row) {
                self.bytes += members.insert(row, &mut self.sets[group]);
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        if self.kind == DistinctKind::CountDisjoint {
            let counts = values[0].as_primitive::<Int64Type>();
            for (row, &group) in group_indices.iter().enumerate() {
                if counts.is_valid(row) {
                    self.merged[group] += counts.value(row);
                }
            }
            return Ok(());
        }
        let states = values[0].as_binary::<i32>();
        for (row, &group) in group_indices.iter().enumerate() {
            if states.is_valid(row) {
                self.bytes += self.sets[group].merge_encoded(states.value(row))?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (sets, merged) = self.take(emit_to);
        self.results(&sets, &merged)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (mut sets, merged) = self.take(emit_to);
        Ok(vec![self.states(&mut sets, &merged)])
    }

    /// Each row as its own one-value set (used when DataFusion stops partial aggregation).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let members = self.domain.members(&values[0])?;
        let mut sets: Vec<ValueSet> = (0..values[0].len())
            .map(|row| {
                let mut set = self.domain.new_set();
                if passes(opt_filter, row) {
                    members.insert(row, &mut set);
                }
                set
            })
            .collect();
        let merged = vec![0; sets.len()];
        Ok(vec![self.states(&mut sets, &merged)])
    }

    fn size(&self) -> usize {
        self.bytes
            + self.sets.capacity() * (size_of::<ValueSet>() + 48)
            + self.merged.capacity() * size_of::<i64>()
    }
}

/// The same sets for one group (aggregates without GROUP BY).
#[derive(Debug)]
pub(crate) struct SetAccumulator {
    groups: SetGroups,
}

impl SetAccumulator {
    pub(crate) fn new(mut groups: SetGroups) -> Self {
        groups.resize(1);
        Self { groups }
    }

    fn group_indices(len: usize) -> Vec<usize> {
        vec![0; len]
    }
}

impl Accumulator for SetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let indices = Self::group_indices(values[0].len());
        self.groups.update_batch(values, &indices, None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let indices = Self::group_indices(states[0].len());
        self.groups.merge_batch(states, &indices, 1)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut sets = self.groups.sets.clone();
        let states = self.groups.states(&mut sets, &self.groups.merged);
        Ok(vec![ScalarValue::try_from_array(&states, 0)?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let results = self
            .groups
            .results(&self.groups.sets, &self.groups.merged)?;
        ScalarValue::try_from_array(&results, 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.groups.size()
    }
}
