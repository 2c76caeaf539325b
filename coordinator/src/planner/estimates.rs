//! Cost inputs for the rules that are gated by an estimated reduction: rows and distinct
//! values, from DataFusion's statistics (Parquet footers: row counts, min/max, null counts).
//!
//! Parquet files rarely record distinct counts, so a column's distinct values are bounded by
//! what is known: the recorded count, else for an integer column the width of its min..max
//! range; always at most the rows. Unknown stays unknown (`None`): each rule says what it
//! assumes then.

use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

/// Statistics of one plan's output.
pub(crate) struct Estimate {
    stats: Option<Arc<Statistics>>,
}

impl Estimate {
    pub(crate) fn of(plan: &Arc<dyn ExecutionPlan>) -> Self {
        let stats = StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .ok();
        Self { stats }
    }

    pub(crate) fn rows(&self) -> Option<f64> {
        self.stats
            .as_ref()
            .and_then(|s| s.num_rows.get_value().map(|rows| *rows as f64))
    }

    /// Distinct values of `expr` (a column of this output), when something bounds them.
    pub(crate) fn distinct_values(&self, expr: &Arc<dyn PhysicalExpr>) -> Option<f64> {
        let column = expr.downcast_ref::<Column>()?;
        let stats = self.stats.as_ref()?.column_statistics.get(column.index())?;
        let bound = recorded_distinct(stats).or_else(|| integer_range(stats))?;
        Some(match self.rows() {
            Some(rows) => bound.min(rows.max(1.0)),
            None => bound,
        })
    }

    /// Distinct combinations of `exprs`: the product of their distinct values, at most the
    /// rows. `Some(1.0)` for no expressions (one global group).
    pub(crate) fn groups(&self, exprs: &[Arc<dyn PhysicalExpr>]) -> Option<f64> {
        let mut product = 1.0f64;
        for expr in exprs {
            product *= self.distinct_values(expr)?;
        }
        Some(match self.rows() {
            Some(rows) => product.min(rows.max(1.0)),
            None => product,
        })
    }
}

fn recorded_distinct(stats: &ColumnStatistics) -> Option<f64> {
    match stats.distinct_count {
        Precision::Exact(n) | Precision::Inexact(n) => Some(n as f64),
        Precision::Absent => None,
    }
}

fn integer_range(stats: &ColumnStatistics) -> Option<f64> {
    let (Some(min), Some(max)) = (stats.min_value.get_value(), stats.max_value.get_value()) else {
        return None;
    };
    let as_i128 = |v: &ScalarValue| -> Option<i128> {
        Some(match v {
            ScalarValue::Int8(Some(v)) => *v as i128,
            ScalarValue::Int16(Some(v)) => *v as i128,
            ScalarValue::Int32(Some(v)) => *v as i128,
            ScalarValue::Int64(Some(v)) => *v as i128,
            ScalarValue::UInt8(Some(v)) => *v as i128,
            ScalarValue::UInt16(Some(v)) => *v as i128,
            ScalarValue::UInt32(Some(v)) => *v as i128,
            ScalarValue::UInt64(Some(v)) => *v as i128,
            ScalarValue::Date32(Some(v)) => *v as i128,
            _ => return None,
        })
    };
    let width = as_i128(max)? - as_i128(min)? + 1;
    (width > 0).then_some(width as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::test_support::Tables;

    #[tokio::test]
    async fn integer_ranges_bound_distinct_values_and_strings_are_unknown() {
        let tables = Tables::new(
            &[(
                "t",
                "SELECT value % 50 AS g, value AS v, 'x' || value AS s \
                 FROM generate_series({lo}, {hi})",
            )],
            1,
            1000,
        )
        .await;
        let plan = tables
            .ctx
            .sql("SELECT g, v, s FROM t")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let estimate = Estimate::of(&plan);
        assert_eq!(estimate.rows(), Some(1000.0));
        let column = |name: &str, index: usize| -> Arc<dyn PhysicalExpr> {
            Arc::new(Column::new(name, index))
        };
        assert_eq!(estimate.distinct_values(&column("g", 0)), Some(50.0));
        assert_eq!(
            estimate.groups(&[column("g", 0), column("v", 1)]),
            Some(1000.0)
        );
        assert_eq!(estimate.distinct_values(&column("s", 2)), None);
        assert_eq!(estimate.groups(&[]), Some(1.0));
    }
}
