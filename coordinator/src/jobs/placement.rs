//! Which worker runs a task:
//! - a task that reads its input from one worker's disk (a worker-level combine) runs there;
//! - a task whose last attempt failed avoids that worker when another is alive;
//! - a task that reads mostly rows one worker already holds runs there;
//! - task p of a stage scanning bucketed tables runs on worker p mod W, so bucket p of every
//!   table bucketed alike is read on the same worker in every stage and job;
//! - other tasks go round the workers, each stage starting one worker further along so that
//!   single-task stages spread.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_plan::ExecutionPlanProperties;
use tally_common::shuffle_writer::ShuffleWriterExec;

use super::error::JobError;
use super::model::{StageRun, TaskRun};
use super::workers::WorkerRef;

/// The worker for task `partition` of `stage`, among the live `workers`.
pub(crate) fn place_task(
    stage: &StageRun,
    partition: usize,
    task: &TaskRun,
    workers: &[WorkerRef],
) -> Result<WorkerRef, JobError> {
    if workers.is_empty() {
        return Err(JobError::NoWorkers);
    }
    if let Some(pinned) = &stage.pinned {
        let holder = &pinned[partition];
        if !workers.iter().any(|w| w.id == holder.id) {
            return Err(JobError::InputHolderGone {
                worker: holder.id.clone(),
                stage: stage.id(),
            });
        }
        return Ok(holder.clone());
    }
    let others: Vec<&WorkerRef> = workers
        .iter()
        .filter(|w| task.avoid.as_ref() != Some(&w.id))
        .collect();
    let usable = if others.is_empty() {
        workers.iter().collect()
    } else {
        others
    };
    let preferred = stage
        .preferred
        .get(partition)
        .and_then(Option::as_ref)
        .and_then(|id| usable.iter().find(|w| &w.id == id));
    let offset = if reads_buckets(stage.launched_plan()) {
        0
    } else {
        stage.id().0 as usize
    };
    Ok((*preferred.unwrap_or(&usable[(partition + offset) % usable.len()])).clone())
}

/// True when the stage scans a table whose partitions are declared hash partitioned (buckets).
fn reads_buckets(plan: &Arc<ShuffleWriterExec>) -> bool {
    let mut found = false;
    plan.input()
        .apply(|node| {
            found = node.is::<DataSourceExec>()
                && matches!(node.output_partitioning(), Partitioning::Hash(..));
            Ok(if found {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
        .expect("the walk cannot fail");
    found
}
