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
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    async fn context() -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(4)
            .set_bool("datafusion.optimizer.enable_round_robin_repartition", false);
        let ctx = SessionContext::new_with_config(config);
        ctx.sql(
            "CREATE TABLE t AS SELECT value % 5 AS k, value AS v \
             FROM generate_series(1, 1000)",
        )
        .await
        .unwrap();
        ctx
    }

    fn modes(plan: &Arc<dyn ExecutionPlan>) -> Vec<AggregateMode> {
        let mut found = Vec::new();
        if let Some(agg) = plan.downcast_ref::<AggregateExec>() {
            found.push(*agg.mode());
        }
        for child in plan.children() {
            found.extend(modes(child));
        }
        found
    }

    #[tokio::test]
    async fn grouped_and_global_aggregates_lose_their_partial_and_keep_their_answer() {
        let ctx = context().await;
        for sql in [
            "SELECT k, sum(v), count(*), avg(v) FROM t GROUP BY k ORDER BY k",
            "SELECT sum(v), count(DISTINCT k) FROM t",
        ] {
            let plan = ctx
                .sql(sql)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            let expected = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
            let raw = aggregate_raw_rows(plan).unwrap();
            assert!(
                !modes(&raw).contains(&AggregateMode::Partial),
                "{sql}\n{}",
                displayable(raw.as_ref()).indent(false)
            );
            let actual = collect(raw, ctx.task_ctx()).await.unwrap();
            assert_eq!(
                arrow::util::pretty::pretty_format_batches(&actual)
                    .unwrap()
                    .to_string(),
                arrow::util::pretty::pretty_format_batches(&expected)
                    .unwrap()
                    .to_string(),
                "{sql}"
            );
        }
    }
}
