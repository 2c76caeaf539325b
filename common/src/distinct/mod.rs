//! Exact distinct aggregates whose partial states are compact value sets (see `sets.rs`):
//! `COUNT(DISTINCT x)` and `SUM(DISTINCT x)` ship one encoded set per group and partition
//! instead of DataFusion's list of values per group or the raw (group, value) pairs of its
//! `SingleDistinctToGroupBy` rewrite. States merge by set union in the final aggregate.
//!
//! `COUNT(DISTINCT x)` over input hash partitioned on `x` alone (a table bucketed by `x`) uses
//! a third form: the value sets of different partitions are disjoint, so each partial state is
//! just its set's size and the final aggregate adds them up; no value moves at all.
//!
//! `APPROX_DISTINCT` keeps DataFusion's HyperLogLog and re-encodes its registers more
//! compactly for the wire (`sketch.rs`).
//!
//! The coordinator puts these functions into physical plans; workers find them by name in
//! `TallyCodec` (see `udaf_by_name`), so nothing needs registering on either side.

mod accumulator;
mod sets;
mod sketch;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DECIMAL128_MAX_PRECISION, DataType, Field, FieldRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};

use accumulator::{SetAccumulator, SetGroups};
pub use sets::is_integer_like;
pub use sketch::{APPROX_DISTINCT_NAME, compact_approx_distinct_udaf, sketches};

/// Which distinct aggregate a `DistinctSetAggregate` computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistinctKind {
    /// `COUNT(DISTINCT x)`: states are encoded value sets.
    Count,
    /// `SUM(DISTINCT x)`: states are encoded value sets.
    Sum,
    /// `COUNT(DISTINCT x)` over partitions whose values of `x` are disjoint: states are counts.
    CountDisjoint,
}

impl DistinctKind {
    pub const ALL: [DistinctKind; 3] = [Self::Count, Self::Sum, Self::CountDisjoint];

    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "tally_count_distinct",
            Self::Sum => "tally_sum_distinct",
            Self::CountDisjoint => "tally_count_distinct_disjoint",
        }
    }

    /// Whether this aggregate can take values of `data_type`.
    pub fn supports(self, data_type: &DataType) -> bool {
        match self {
            Self::Count | Self::CountDisjoint => {
                is_integer_like(data_type)
                    || (!matches!(data_type, DataType::Null)
                        && RowConverter::supports_fields(&[SortField::new(data_type.clone())]))
            }
            Self::Sum => matches!(
                data_type,
                DataType::Int64 | DataType::UInt64 | DataType::Float64 | DataType::Decimal128(..)
            ),
        }
    }
}

/// The aggregate function `kind`, ready to put in a plan.
pub fn distinct_udaf(kind: DistinctKind) -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(DistinctSetAggregate::new(kind)))
}

/// The Tally distinct aggregate called `name`, if it is one (for plan decoding).
pub fn udaf_by_name(name: &str) -> Option<Arc<AggregateUDF>> {
    if name == APPROX_DISTINCT_NAME {
        return Some(compact_approx_distinct_udaf());
    }
    DistinctKind::ALL
        .into_iter()
        .find(|kind| kind.name() == name)
        .map(distinct_udaf)
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistinctSetAggregate {
    kind: DistinctKind,
    signature: Signature,
}

impl DistinctSetAggregate {
    pub fn new(kind: DistinctKind) -> Self {
        Self {
            kind,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn check_input(&self, data_type: &DataType) -> Result<()> {
        if self.kind.supports(data_type) {
            Ok(())
        } else {
            Err(DataFusionError::Plan(format!(
                "{} does not take {data_type}",
                self.kind.name()
            )))
        }
    }
}

/// `SUM`'s result type (as DataFusion's `sum` gives it) for the types `Sum` takes.
fn sum_type(input: &DataType) -> Result<DataType> {
    Ok(match input {
        DataType::Decimal128(precision, scale) => {
            DataType::Decimal128(DECIMAL128_MAX_PRECISION.min(precision + 10), *scale)
        }
        other => other.clone(),
    })
}

impl AggregateUDFImpl for DistinctSetAggregate {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let [input] = arg_types else {
            return Err(DataFusionError::Plan(format!(
                "{} takes one argument",
                self.kind.name()
            )));
        };
        self.check_input(input)?;
        match self.kind {
            DistinctKind::Count | DistinctKind::CountDisjoint => Ok(DataType::Int64),
            DistinctKind::Sum => sum_type(input),
        }
    }

    fn is_nullable(&self) -> bool {
        self.kind == DistinctKind::Sum
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SetAccumulator::new(self.groups(&args)?)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field = match self.kind {
            DistinctKind::CountDisjoint => {
                Field::new(format_state_name(args.name, "count"), DataType::Int64, true)
            }
            DistinctKind::Count | DistinctKind::Sum => Field::new(
                format_state_name(args.name, "distinct_set"),
                DataType::Binary,
                true,
            ),
        };
        Ok(vec![Arc::new(field)])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.groups(&args)?))
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        match self.kind {
            DistinctKind::Count | DistinctKind::CountDisjoint => Ok(ScalarValue::Int64(Some(0))),
            DistinctKind::Sum => ScalarValue::try_from(data_type),
        }
    }
}

impl DistinctSetAggregate {
    fn groups(&self, args: &AccumulatorArgs) -> Result<SetGroups> {
        let [input] = args.expr_fields else {
            return Err(DataFusionError::Plan(format!(
                "{} takes one argument",
                self.kind.name()
            )));
        };
        self.check_input(input.data_type())?;
        SetGroups::new(self.kind, input.data_type(), args.return_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A table of 4 partitions with NULLs, negatives, 64-bit extremes, strings, floats and
    /// decimals, so partial states are merged across partitions.
    async fn context() -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(4)
            .set_bool("datafusion.optimizer.enable_round_robin_repartition", true);
        let ctx = SessionContext::new_with_config(config);
        for kind in DistinctKind::ALL {
            ctx.register_udaf(distinct_udaf(kind).as_ref().clone());
        }
        ctx.sql(
            "CREATE TABLE t AS SELECT value % 5 AS g, \
               CASE WHEN value % 11 = 0 THEN NULL \
                    WHEN value % 13 = 0 THEN -9223372036854775808 \
                    WHEN value % 17 = 0 THEN 9223372036854775807 \
                    ELSE (value % 97) - 40 END AS i, \
               CAST(value % 23 AS INT) AS i32, \
               CAST(value % 31 AS BIGINT UNSIGNED) * 1000000000000 AS u, \
               CASE WHEN value % 7 = 0 THEN NULL ELSE 'user-' || (value % 41) END AS s, \
               CAST(value % 19 AS DOUBLE) / 4 AS f, \
               CAST(value % 29 AS DECIMAL(10, 2)) / 3 AS d \
             FROM generate_series(1, 3000)",
        )
        .await
        .unwrap();
        ctx
    }

    async fn text(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn count_and_sum_distinct_match_datafusion_for_every_value_type() {
        let ctx = context().await;
        for column in ["i", "i32", "u", "s", "f", "d"] {
            let ours = text(
                &ctx,
                &format!(
                    "SELECT g, tally_count_distinct({column}) AS v FROM t GROUP BY g ORDER BY g"
                ),
            )
            .await;
            let theirs = text(
                &ctx,
                &format!("SELECT g, count(DISTINCT {column}) AS v FROM t GROUP BY g ORDER BY g"),
            )
            .await;
            assert_eq!(
                ours.lines().collect::<Vec<_>>(),
                theirs.lines().collect::<Vec<_>>(),
                "{column}"
            );
        }
        for column in ["i", "u", "f", "d"] {
            let ours = text(
                &ctx,
                &format!(
                    "SELECT g, tally_sum_distinct({column}) AS v FROM t GROUP BY g ORDER BY g"
                ),
            )
            .await;
            let theirs = text(
                &ctx,
                &format!("SELECT g, sum(DISTINCT {column}) AS v FROM t GROUP BY g ORDER BY g"),
            )
            .await;
            assert_eq!(
                ours.lines().collect::<Vec<_>>(),
                theirs.lines().collect::<Vec<_>>(),
                "{column}"
            );
        }
    }

    #[tokio::test]
    async fn empty_input_and_all_null_groups_give_zero_and_null() {
        let ctx = context().await;
        let global = text(
            &ctx,
            "SELECT tally_count_distinct(i) AS c, tally_sum_distinct(i) AS s FROM t WHERE g > 10",
        )
        .await;
        assert!(global.contains("| 0 |   |"), "{global}");
        let nulls = text(
            &ctx,
            "SELECT g, tally_count_distinct(s) AS c, tally_sum_distinct(CAST(NULL AS BIGINT)) AS n \
             FROM t WHERE s IS NULL GROUP BY g ORDER BY g",
        )
        .await;
        assert_eq!(nulls.matches("| 0 |   |").count(), 5, "{nulls}");
    }

    #[tokio::test]
    async fn disjoint_counts_add_up_when_partitions_hold_different_values() {
        let ctx = context().await;
        // Each row's value appears in one partition only (hash partitioned on it), as in a
        // table bucketed by the value.
        let ours = text(
            &ctx,
            "SELECT g, sum(c) AS v FROM (SELECT g, i, tally_count_distinct_disjoint(i) AS c \
             FROM t GROUP BY g, i) GROUP BY g ORDER BY g",
        )
        .await;
        let theirs = text(
            &ctx,
            "SELECT g, count(DISTINCT i) AS v FROM t GROUP BY g ORDER BY g",
        )
        .await;
        assert_eq!(
            ours.lines().collect::<Vec<_>>(),
            theirs.lines().collect::<Vec<_>>()
        );
    }

    #[test]
    fn workers_find_the_functions_by_name() {
        for kind in DistinctKind::ALL {
            assert_eq!(udaf_by_name(kind.name()).unwrap().name(), kind.name());
        }
        assert!(udaf_by_name(APPROX_DISTINCT_NAME).is_some());
        assert!(udaf_by_name("count").is_none());
    }
}
