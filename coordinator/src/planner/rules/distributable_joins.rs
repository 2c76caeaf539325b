//! Joins whose single-node form is wrong when each partition runs as a separate task.
//!
//! DataFusion's `CollectLeft` hash join builds the small (left) side once and shares it with
//! every probe partition of one process. For join types that also emit left rows (left outer,
//! full, left semi/anti/mark), the partitions share a bitmap of matched left rows and the last
//! partition to finish emits them. In Tally each partition is a task with its own copy of the
//! left side, so no task would ever be "last" and the left rows would be lost or repeated.
//! This rule rewrites such joins before stages are cut:
//! - a keyed join becomes `Partitioned`: both sides hash-partitioned on their join keys, so
//!   each task owns a disjoint slice of the left side;
//! - a null-aware anti join (`NOT IN`) needs to see every probe row, so it runs as one task;
//! - a nested-loop join of such a type runs as one task too (no keys to partition on).
//!
//! Without broadcast joins (the naive plan, or `tally.broadcast_threshold_bytes = 0`) every
//! `CollectLeft` hash join becomes `Partitioned`: both sides are hash-shuffled.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::planner::recompute;

/// Rewrites, bottom up, every join that would lose left rows when split into tasks, and with
/// `broadcast` false every join that collects its left side.
pub(crate) fn make_joins_distributable(
    plan: Arc<dyn ExecutionPlan>,
    partitions: usize,
    broadcast: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(match distributable_join(&node, partitions, broadcast)? {
            Some(join) => Transformed::yes(join),
            None => Transformed::no(node),
        })
    })
    .data()
}

fn distributable_join(
    plan: &Arc<dyn ExecutionPlan>,
    partitions: usize,
    broadcast: bool,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(join) = plan.downcast_ref::<HashJoinExec>()
        && *join.partition_mode() == PartitionMode::CollectLeft
        && (emits_build_side(join.join_type()) || !broadcast)
    {
        return if join.null_aware {
            single_task(plan.clone(), join.left(), join.right()).map(Some)
        } else {
            let partitioned = partitioned(join, partitions)?;
            Ok(Some(as_many_partitions_as(plan, partitioned)))
        };
    }
    if let Some(join) = plan.downcast_ref::<NestedLoopJoinExec>()
        && emits_build_side(join.join_type())
    {
        return single_task(plan.clone(), join.left(), join.right()).map(Some);
    }
    Ok(None)
}

fn emits_build_side(join_type: &JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left
            | JoinType::Full
            | JoinType::LeftSemi
            | JoinType::LeftAnti
            | JoinType::LeftMark
    )
}

fn partitioned(join: &HashJoinExec, partitions: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let left = strip_coalesce(join.left());
    let left_keys = join.on().iter().map(|(l, _)| l.clone()).collect();
    let right_keys = join.on().iter().map(|(_, r)| r.clone()).collect();
    let left = RepartitionExec::try_new(left, Partitioning::Hash(left_keys, partitions))?;
    let right = RepartitionExec::try_new(
        join.right().clone(),
        Partitioning::Hash(right_keys, partitions),
    )?;
    join.builder()
        .with_partition_mode(PartitionMode::Partitioned)
        .with_new_children(vec![Arc::new(left), Arc::new(right)])?
        .recompute_properties()
        .build_exec()
}

/// The join with its probe side gathered into one partition, so one task sees all of it.
fn single_task(
    join: Arc<dyn ExecutionPlan>,
    left: &Arc<dyn ExecutionPlan>,
    right: &Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if right.output_partitioning().partition_count() <= 1 {
        return Ok(join);
    }
    let right: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(right.clone()));
    join.replace_children(vec![left.clone(), right], recompute())
}

/// `rewritten`, gathered into one partition when `original` had one: DataFusion placed no
/// merge above a join whose probe side was a single partition, and a parent may need one (a
/// nested-loop join's build side, a final aggregation).
fn as_many_partitions_as(
    original: &Arc<dyn ExecutionPlan>,
    rewritten: Arc<dyn ExecutionPlan>,
) -> Arc<dyn ExecutionPlan> {
    let single = original.output_partitioning().partition_count() == 1;
    if single && rewritten.output_partitioning().partition_count() > 1 {
        Arc::new(CoalescePartitionsExec::new(rewritten))
    } else {
        rewritten
    }
}

fn strip_coalesce(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    match plan.downcast_ref::<CoalescePartitionsExec>() {
        Some(coalesce) => coalesce.input().clone(),
        None => plan.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::test_support::{Tables, nodes, shown};

    async fn tables(small: &str) -> Tables {
        let big = "SELECT value % 2 + 1 AS k FROM generate_series(1, 100)";
        Tables::in_memory(4, &[("small", small), ("big", big)], 1).await
    }

    fn hash_joins(plan: &Arc<dyn ExecutionPlan>) -> Vec<(PartitionMode, JoinType)> {
        nodes(plan, |join: &HashJoinExec| {
            (*join.partition_mode(), *join.join_type())
        })
    }

    #[tokio::test]
    async fn left_semi_collect_left_join_becomes_partitioned() {
        let tables = tables("VALUES (1, 'a'), (2, 'b'), (3, 'c')").await;
        let plan = tables
            .physical(
                "SELECT column1 FROM small WHERE EXISTS (SELECT 1 FROM big WHERE k = column1)",
            )
            .await;
        let before = hash_joins(&plan);
        assert!(
            before
                .iter()
                .any(|(mode, ty)| *mode == PartitionMode::CollectLeft && emits_build_side(ty)),
            "test needs a CollectLeft join that emits left rows: {before:?}\n{}",
            shown(&plan)
        );
        let rewritten = make_joins_distributable(plan, 4, true).unwrap();
        for (mode, ty) in hash_joins(&rewritten) {
            assert!(
                !(mode == PartitionMode::CollectLeft && emits_build_side(&ty)),
                "{}",
                shown(&rewritten)
            );
        }
    }

    #[tokio::test]
    async fn a_partitioned_join_below_a_nested_loop_join_keeps_its_single_partition() {
        // TPC-H Q22's shape, with single-partition scans (small tables are one scan task):
        // the anti join is the build side of the nested-loop join of the scalar subquery.
        let tables = tables("VALUES (1, 10), (2, 20), (3, 30), (4, 40)").await;
        let subquery_as_join =
            "SET datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery = false";
        tables.ctx.sql(subquery_as_join).await.unwrap();
        let sql = "SELECT count(*) FROM small WHERE column2 > (SELECT avg(k) FROM big) \
                   AND NOT EXISTS (SELECT 1 FROM big WHERE k = column1)";
        let expected = tables.answer(tables.physical(sql).await).await;
        let plan = tables.physical(sql).await;
        assert_eq!(nodes(&plan, |_: &NestedLoopJoinExec| ()).len(), 1);
        let rewritten = make_joins_distributable(plan, 4, true).unwrap();
        assert!(
            hash_joins(&rewritten).contains(&(PartitionMode::Partitioned, JoinType::LeftAnti)),
            "{}",
            shown(&rewritten)
        );
        assert_eq!(tables.answer(rewritten).await, expected);
    }

    #[tokio::test]
    async fn inner_collect_left_join_is_left_alone() {
        let tables = tables("VALUES (1, 'a'), (2, 'b'), (3, 'c')").await;
        let plan = tables
            .physical("SELECT column2 FROM small JOIN big ON k = column1")
            .await;
        let before = hash_joins(&plan);
        let rewritten = make_joins_distributable(plan, 4, true).unwrap();
        assert_eq!(hash_joins(&rewritten), before);
    }

    #[tokio::test]
    async fn without_broadcast_every_collect_left_join_becomes_partitioned() {
        let tables = tables("VALUES (1, 'a'), (2, 'b')").await;
        let plan = tables
            .physical("SELECT column2 FROM small JOIN big ON k = column1")
            .await;
        let rewritten = make_joins_distributable(plan, 4, false).unwrap();
        let joins = hash_joins(&rewritten);
        assert_eq!(joins.len(), 1);
        assert_eq!(joins[0].0, PartitionMode::Partitioned);
    }
}
