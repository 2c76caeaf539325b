//! Broadcast joins, fetched once per worker. DataFusion collects the small side of a join
//! (statistics under `tally.broadcast_threshold_bytes`) into every task that probes it; cut
//! into stages, that side is a gathered stage that every probe task reads whole. Marking those
//! readers as broadcast makes each worker fetch every remote piece once, keep it on its disk,
//! and serve its other tasks from there: the small side crosses the network once per worker,
//! never once per task, and the big side does not move at all.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PartitionMode,
};
use tally_common::ids::StageId;
use tally_common::shuffle_reader::{ReadMode, ShuffleReaderExec};
use tally_common::shuffle_writer::ShuffleWriterExec;

use crate::planner::StagePlan;
use crate::planner::recompute;

const RULE: &str = "broadcast: read once per worker";

/// Marks the readers of every join's collected side as broadcast, and notes the rule on the
/// stages they read.
pub(crate) fn read_broadcasts_once_per_worker(stages: &mut [StagePlan]) -> Result<()> {
    let mut broadcast_stages = Vec::new();
    for stage in stages.iter_mut() {
        let plan: Arc<dyn ExecutionPlan> = stage.plan.clone();
        let marked = plan
            .transform_up(|node| {
                Ok(match broadcast_left_side(&node)? {
                    Some((join, producer)) => {
                        broadcast_stages.push(producer);
                        Transformed::yes(join)
                    }
                    None => Transformed::no(node),
                })
            })
            .data()?;
        if let Some(writer) = marked.downcast_ref::<ShuffleWriterExec>() {
            stage.plan = Arc::new(writer.clone());
        }
    }
    for stage in stages.iter_mut() {
        if broadcast_stages.contains(&stage.id) && !stage.rules.iter().any(|r| r == RULE) {
            stage.rules.push(RULE.to_string());
        }
    }
    Ok(())
}

/// Joins whose every task reads the whole left side.
fn collects_left_side(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<HashJoinExec>()
        .is_some_and(|join| *join.partition_mode() == PartitionMode::CollectLeft)
        || plan.is::<NestedLoopJoinExec>()
        || plan.is::<CrossJoinExec>()
}

/// The join with `Coalesce(reader)` on its left side in broadcast mode, and the stage read.
fn broadcast_left_side(
    join: &Arc<dyn ExecutionPlan>,
) -> Result<Option<(Arc<dyn ExecutionPlan>, StageId)>> {
    if !collects_left_side(join) {
        return Ok(None);
    }
    let children = join.children();
    let Some(coalesce) = children[0].downcast_ref::<CoalescePartitionsExec>() else {
        return Ok(None);
    };
    let Some(reader) = coalesce.input().downcast_ref::<ShuffleReaderExec>() else {
        return Ok(None);
    };
    if reader.mode().broadcast {
        return Ok(None);
    }
    let stage = reader.stage_id();
    let reader: Arc<dyn ExecutionPlan> = Arc::new(ShuffleReaderExec::unresolved(
        stage,
        reader.schema(),
        reader.partitions().len(),
        ReadMode {
            broadcast: true,
            ..reader.mode()
        },
    ));
    let left = children[0]
        .clone()
        .replace_children(vec![reader], recompute())?;
    let right = children[1].clone();
    Ok(Some((
        join.clone()
            .replace_children(vec![left, right], recompute())?,
        stage,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Rules;
    use crate::planner::cut;
    use crate::planner::test_support::{Tables, nodes};
    use tally_common::ids::JobId;

    #[tokio::test]
    async fn collected_join_side_is_read_as_a_broadcast() {
        // Two partitions each, as two files would give: the small side must be gathered.
        let tables = Tables::in_memory(
            4,
            &[
                ("small", "SELECT value AS s FROM generate_series(0, 3)"),
                ("big", "SELECT value AS b FROM generate_series(0, 1999)"),
            ],
            2,
        )
        .await;
        let plan = tables
            .physical("SELECT b FROM small JOIN big ON b = s")
            .await;
        let rules = Rules::from_config(tables.ctx.state().config().options()).unwrap();
        let distributed = cut(&JobId::from("j"), plan, &rules, 3).unwrap();
        let readers: usize = distributed
            .stages
            .iter()
            .map(|s| {
                let plan = s.plan.clone() as Arc<dyn ExecutionPlan>;
                nodes(&plan, |r: &ShuffleReaderExec| r.mode().broadcast)
                    .into_iter()
                    .filter(|broadcast| *broadcast)
                    .count()
            })
            .sum();
        assert_eq!(readers, 1);
        assert!(
            distributed
                .stages
                .iter()
                .any(|s| s.rules.iter().any(|r| r == RULE))
        );
    }
}
