//! Co-partitioned (bucketed) joins. When both inputs of a join are already hash partitioned
//! on their join keys into the same number of partitions (tables bucketed alike on the join
//! key), partition `p` of one side can only match partition `p` of the other: the join runs
//! partition by partition with no exchange. DataFusion may still have chosen to collect the
//! smaller side (a broadcast); this rule undoes that, since staying put moves nothing.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::physical_expr::{Partitioning, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::planner::recompute;

pub(crate) fn join_colocated_inputs(
    plan: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
    let new_children = children
        .iter()
        .map(|child| join_colocated_inputs(child.clone()))
        .collect::<Result<Vec<_>>>()?;
    let plan = if children
        .iter()
        .zip(&new_children)
        .any(|(a, b)| !Arc::ptr_eq(a, b))
    {
        plan.replace_children(new_children, recompute())?
    } else {
        plan
    };
    let Some(join) = plan.downcast_ref::<HashJoinExec>() else {
        return Ok(plan);
    };
    if *join.partition_mode() != PartitionMode::CollectLeft || join.null_aware {
        return Ok(plan);
    }
    let Some(coalesce) = join.left().downcast_ref::<CoalescePartitionsExec>() else {
        return Ok(plan);
    };
    let left = coalesce.input();
    let left_keys: Vec<_> = join.on().iter().map(|(l, _)| l.clone()).collect();
    let right_keys: Vec<_> = join.on().iter().map(|(_, r)| r.clone()).collect();
    let (Some(left_count), Some(right_count)) = (
        partitioned_on(left.output_partitioning(), &left_keys),
        partitioned_on(join.right().output_partitioning(), &right_keys),
    ) else {
        return Ok(plan);
    };
    if left_count != right_count || left_count < 2 {
        return Ok(plan);
    }
    join.builder()
        .with_partition_mode(PartitionMode::Partitioned)
        .with_new_children(vec![left.clone(), join.right().clone()])?
        .recompute_properties()
        .build_exec()
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
