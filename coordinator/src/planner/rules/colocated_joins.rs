//! Co-partitioned (bucketed) joins. When both inputs of a join are already hash partitioned
//! on their join keys into the same number of partitions (tables bucketed alike on the join
//! key), partition `p` of one side can only match partition `p` of the other: the join runs
//! partition by partition with no exchange. DataFusion may still have chosen to collect the
//! smaller side (a broadcast); this rule undoes that, since staying put moves nothing.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::{Partitioning, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

pub(crate) fn join_colocated_inputs(
    plan: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(match colocated_join(&node)? {
            Some(join) => Transformed::yes(join),
            None => Transformed::no(node),
        })
    })
    .data()
}

/// The join run partition by partition, if both inputs are partitioned alike on its keys.
fn colocated_join(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(join) = plan.downcast_ref::<HashJoinExec>() else {
        return Ok(None);
    };
    if *join.partition_mode() != PartitionMode::CollectLeft || join.null_aware {
        return Ok(None);
    }
    let Some(coalesce) = join.left().downcast_ref::<CoalescePartitionsExec>() else {
        return Ok(None);
    };
    let left = coalesce.input();
    let left_keys: Vec<_> = join.on().iter().map(|(l, _)| l.clone()).collect();
    let right_keys: Vec<_> = join.on().iter().map(|(_, r)| r.clone()).collect();
    let (Some(left_count), Some(right_count)) = (
        partitioned_on(left.output_partitioning(), &left_keys),
        partitioned_on(join.right().output_partitioning(), &right_keys),
    ) else {
        return Ok(None);
    };
    if left_count != right_count || left_count < 2 {
        return Ok(None);
    }
    join.builder()
        .with_partition_mode(PartitionMode::Partitioned)
        .with_new_children(vec![left.clone(), join.right().clone()])?
        .recompute_properties()
        .build_exec()
        .map(Some)
}

/// The partition count, if `partitioning` hashes exactly `keys`, in order.
fn partitioned_on(partitioning: &Partitioning, keys: &[Arc<dyn PhysicalExpr>]) -> Option<usize> {
    let Partitioning::Hash(exprs, count) = partitioning else {
        return None;
    };
    let same = exprs.len() == keys.len()
        && exprs
            .iter()
            .zip(keys)
            .all(|(a, b)| a.to_string() == b.to_string());
    same.then_some(*count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::test_support::{Tables, nodes, shown};
    use datafusion::physical_plan::repartition::RepartitionExec;

    const SQL: &str = "SELECT count(*), sum(a), sum(b) FROM small JOIN big ON small.k = big.k";

    async fn tables(small_buckets: usize, big_buckets: usize) -> Tables {
        let tables = Tables::new(&[], 0, 0).await;
        let small = "SELECT value AS k, value * 10 AS a FROM generate_series(1, 8)";
        let big = "SELECT value % 8 + 1 AS k, value AS b FROM generate_series(1, 2000)";
        tables
            .add_bucketed("small", small, &["k"], small_buckets)
            .await;
        tables.add_bucketed("big", big, &["k"], big_buckets).await;
        tables
    }

    fn join_modes(plan: &Arc<dyn ExecutionPlan>) -> Vec<PartitionMode> {
        nodes(plan, |join: &HashJoinExec| *join.partition_mode())
    }

    #[tokio::test]
    async fn join_of_tables_bucketed_alike_runs_bucket_by_bucket() {
        let tables = tables(4, 4).await;
        let plan = tables.physical(SQL).await;
        assert_eq!(
            join_modes(&plan),
            vec![PartitionMode::CollectLeft],
            "the small side is collected before the rule:\n{}",
            shown(&plan)
        );
        let expected = tables.answer(plan.clone()).await;
        let colocated = join_colocated_inputs(plan).unwrap();
        assert_eq!(join_modes(&colocated), vec![PartitionMode::Partitioned]);
        assert!(
            nodes(&colocated, |_: &RepartitionExec| ()).is_empty(),
            "no row moves:\n{}",
            shown(&colocated)
        );
        assert_eq!(tables.answer(colocated).await, expected);
    }

    #[tokio::test]
    async fn tables_with_different_bucket_counts_keep_the_collected_side() {
        let tables = tables(4, 3).await;
        let plan = tables.physical(SQL).await;
        let before = join_modes(&plan);
        assert_eq!(join_modes(&join_colocated_inputs(plan).unwrap()), before);
    }
}
