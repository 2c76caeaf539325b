//! The naive plan's aggregation: no partial aggregate before the exchange, so raw rows are
//! hash-shuffled on the group keys and aggregated once (`SinglePartitioned`). This is what a
//! plain hash-shuffle engine moves, and the baseline the minimized plans are measured
//! against.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;

/// Rewrites every `Final(exchange(Partial(x)))` into `Single(exchange(x))`.
pub(crate) fn aggregate_raw_rows(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(match rewrite_final(&node)? {
            Some(rewritten) => Transformed::yes(rewritten),
            None => Transformed::no(node),
        })
    })
    .data()
}

fn rewrite_final(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(last) = plan.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let exchange = last.input();
    let Some(partial) = exchange
        .children()
        .first()
        .and_then(|child| child.downcast_ref::<AggregateExec>())
    else {
        return Ok(None);
    };
    if *partial.mode() != AggregateMode::Partial || !partial.group_expr().is_single() {
        return Ok(None);
    }
    let raw = partial.input().clone();
    let (mode, exchanged): (AggregateMode, Arc<dyn ExecutionPlan>) = match last.mode() {
        AggregateMode::FinalPartitioned => {
            let Some(repartition) = exchange.downcast_ref::<RepartitionExec>() else {
                return Ok(None);
            };
            let keys = partial
                .group_expr()
                .expr()
                .iter()
                .map(|(expr, _)| expr.clone())
                .collect();
            let count = repartition.partitioning().partition_count();
            (
                AggregateMode::SinglePartitioned,
                Arc::new(RepartitionExec::try_new(
                    raw,
                    Partitioning::Hash(keys, count),
                )?),
            )
        }
        AggregateMode::Final if exchange.is::<CoalescePartitionsExec>() => (
            AggregateMode::Single,
            Arc::new(CoalescePartitionsExec::new(raw)),
        ),
        _ => return Ok(None),
    };
    let single = AggregateExec::try_new(
        mode,
        partial.group_expr().clone(),
        partial.aggr_expr().to_vec(),
        partial.filter_expr().to_vec(),
        exchanged,
        partial.input_schema(),
    )?;
    Ok(Some(Arc::new(single)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::test_support::{Tables, nodes, shown};

    #[tokio::test]
    async fn grouped_and_global_aggregates_lose_their_partial_and_keep_their_answer() {
        let t = "SELECT value % 5 AS k, value AS v FROM generate_series(1, 1000)";
        let tables = Tables::in_memory(4, &[("t", t)], 1).await;
        for sql in [
            "SELECT k, sum(v), count(*), avg(v) FROM t GROUP BY k ORDER BY k",
            "SELECT sum(v), count(DISTINCT k) FROM t",
        ] {
            let plan = tables.physical(sql).await;
            let expected = tables.answer(plan.clone()).await;
            let raw = aggregate_raw_rows(plan).unwrap();
            let modes = nodes(&raw, |agg: &AggregateExec| *agg.mode());
            assert!(
                !modes.contains(&AggregateMode::Partial),
                "{sql}\n{}",
                shown(&raw)
            );
            assert_eq!(tables.answer(raw).await, expected, "{sql}");
        }
    }
}
