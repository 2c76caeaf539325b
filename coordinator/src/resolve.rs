//! Settling a stage's plan when it starts: where each reader's pieces are (the producers
//! have finished), which worker each task must run on, and the choices the worker-level
//! combine makes from what its partial stage measured.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::DataFusionError;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_plan::ExecutionPlan;
use tally_common::ids::{JobId, StageId, WorkerId};
use tally_common::shuffle_reader::{ShuffleReaderExec, SpoolLocation};
use tally_common::shuffle_writer::ShuffleWriterExec;
use tally_proto::coordinator::PartitionOutput;

use crate::jobs::{StageRun, TaskRun};
use crate::planner::Exchange;
use crate::planner::rules::final_placement::gather_final;
use crate::workers::WorkerRef;

/// A stage ready to run: its plan with readers resolved, and a worker per task where the
/// task must run on a particular one.
pub(crate) struct LaunchPlan {
    pub plan: Arc<ShuffleWriterExec>,
    pub pinned: Option<Vec<WorkerRef>>,
    pub notes: Vec<String>,
}

/// Reads of a finished producer stage, as its consumer's reader partitions.
pub(crate) fn sources(job: &JobId, producer: &StageRun) -> Vec<Vec<SpoolLocation>> {
    match producer.plan.exchange {
        Exchange::Gather => producer
            .tasks
            .iter()
            .enumerate()
            .map(|(map, task)| pieces(job, producer, map, task).collect())
            .collect(),
        Exchange::Partitioned => {
            let count = producer.launched_plan().consumer_partition_count();
            let mut partitions = vec![Vec::new(); count];
            for (map, task) in producer.tasks.iter().enumerate() {
                for piece in pieces(job, producer, map, task) {
                    if let Some(sources) = partitions.get_mut(piece.out_partition as usize) {
                        sources.push(piece);
                    }
                }
            }
            partitions
        }
        Exchange::PerWorker => holders(producer)
            .iter()
            .map(|holder| {
                producer
                    .tasks
                    .iter()
                    .enumerate()
                    .filter(|(_, task)| task.worker.as_ref().is_some_and(|w| w.id == holder.id))
                    .flat_map(|(map, task)| pieces(job, producer, map, task))
                    .collect()
            })
            .collect(),
    }
}

/// The workers holding any of the producer's output, in task order.
fn holders(producer: &StageRun) -> Vec<WorkerRef> {
    let mut holders: Vec<WorkerRef> = Vec::new();
    for task in &producer.tasks {
        if let Some(worker) = &task.worker
            && task.outputs.iter().any(|o| o.rows > 0)
            && !holders.iter().any(|h| h.id == worker.id)
        {
            holders.push(worker.clone());
        }
    }
    holders
}

fn pieces<'a>(
    job: &'a JobId,
    producer: &'a StageRun,
    map: usize,
    task: &'a TaskRun,
) -> impl Iterator<Item = SpoolLocation> + 'a {
    task.outputs
        .iter()
        .filter(|out| out.rows > 0)
        .map(move |out| location(job, producer, map, task, out))
}

fn location(
    job: &JobId,
    producer: &StageRun,
    map: usize,
    task: &TaskRun,
    out: &PartitionOutput,
) -> SpoolLocation {
    let worker = task
        .worker
        .as_ref()
        .expect("a finished task ran on a worker");
    SpoolLocation {
        worker_id: worker.id.clone(),
        endpoint: worker.endpoint.clone(),
        job_id: job.clone(),
        stage_id: producer.plan.id,
        map_partition: map as u32,
        out_partition: out.partition,
        rows: out.rows,
        mac: out.ticket_mac.clone(),
    }
}

/// Settles `stage`'s plan from its finished inputs; `stages` holds every stage of the job.
pub(crate) fn launch_plan(
    job: &JobId,
    stage: &StageRun,
    stages: &[StageRun],
) -> Result<LaunchPlan, DataFusionError> {
    let producer = |id: StageId| &stages[id.0 as usize - 1];
    let mut notes = Vec::new();
    let mut writer = stage.plan.plan.clone();

    if let Some(spec) = &stage.plan.combine {
        let partial = producer(stage.plan.inputs[0]);
        let partial_out: u64 = partial
            .tasks
            .iter()
            .flat_map(|t| &t.outputs)
            .map(|o| o.rows)
            .sum();
        let partial_in: Option<u64> = partial.tasks.iter().map(|t| t.partial_input_rows).sum();
        let merge = spec.should_merge(partial_in, partial_out);
        notes.push(match partial_in {
            Some(input) if merge => format!(
                "worker_combine: merging partial states ({input} rows aggregated into {partial_out})"
            ),
            Some(input) => format!(
                "worker_combine: not merging, groups about as many as rows ({input} rows into {partial_out})"
            ),
            None => "worker_combine: merging partial states".to_string(),
        });
        let only_consumer = sole_reader_of(stage.plan.id, stages);
        let gather = gather_final(stage.final_gather_max_groups, partial_out, only_consumer);
        let partitioning = if gather {
            notes.push(format!(
                "final_gather: at most {partial_out} groups, final aggregation in one task"
            ));
            Partitioning::RoundRobinBatch(1)
        } else {
            spec.partitioning.clone()
        };
        let reader = leaf_reader(writer.input()).ok_or_else(|| {
            DataFusionError::Internal("a combine stage reads its partial stage".to_string())
        })?;
        let input = spec.plan(reader, merge)?;
        writer = Arc::new(ShuffleWriterExec::new(
            input,
            writer.job_id().clone(),
            writer.stage_id(),
            Some(partitioning),
        ));
    }

    let resolved = resolve_readers(writer.clone(), &|input| sources(job, producer(input)))?;
    let resolved = Arc::new(
        resolved
            .downcast_ref::<ShuffleWriterExec>()
            .expect("a stage plan has a writer root")
            .clone(),
    );
    let pinned = stage
        .plan
        .inputs
        .iter()
        .find(|input| producer(**input).plan.exchange == Exchange::PerWorker)
        .map(|input| holders(producer(*input)));
    Ok(LaunchPlan {
        plan: resolved,
        pinned,
        notes,
    })
}

/// For each task, the worker that already holds most of the rows it reads, when that is more
/// than half of them: running it there keeps those rows off the network. A one-task stage
/// counts every piece it reads; otherwise reader partition `p` feeds task `p` (broadcast
/// readers, read whole by every task, do not count).
pub(crate) fn preferred_workers(
    plan: &Arc<ShuffleWriterExec>,
    tasks: usize,
) -> Vec<Option<WorkerId>> {
    let mut rows: Vec<BTreeMap<WorkerId, u64>> = vec![BTreeMap::new(); tasks];
    let mut pending: Vec<Arc<dyn ExecutionPlan>> = vec![plan.input().clone()];
    while let Some(node) = pending.pop() {
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>()
            && !reader.mode().broadcast
        {
            for (partition, sources) in reader.partitions().iter().enumerate() {
                let task = if tasks == 1 { 0 } else { partition };
                if task >= tasks || (tasks > 1 && reader.partitions().len() != tasks) {
                    continue;
                }
                for source in sources {
                    *rows[task].entry(source.worker_id.clone()).or_default() += source.rows;
                }
            }
        }
        pending.extend(node.children().into_iter().cloned());
    }
    rows.into_iter()
        .map(|by_worker| {
            let total: u64 = by_worker.values().sum();
            by_worker
                .into_iter()
                .max_by_key(|(_, rows)| *rows)
                .filter(|(_, rows)| *rows * 2 > total)
                .map(|(worker, _)| worker)
        })
        .collect()
}

/// True when exactly one stage reads `stage`, and reads nothing else: its partition count can
/// change without breaking a join or union that expects the planned one.
fn sole_reader_of(stage: StageId, stages: &[StageRun]) -> bool {
    let consumers: Vec<&StageRun> = stages
        .iter()
        .filter(|s| s.plan.inputs.contains(&stage))
        .collect();
    let [consumer] = consumers.as_slice() else {
        return false;
    };
    let mut pending: Vec<Arc<dyn ExecutionPlan>> = vec![consumer.plan.plan.input().clone()];
    while let Some(node) = pending.pop() {
        let children = node.children();
        if children.is_empty() {
            match node.downcast_ref::<ShuffleReaderExec>() {
                Some(reader) if reader.stage_id() == stage => {}
                _ => return false,
            }
        }
        pending.extend(children.into_iter().cloned());
    }
    true
}

fn leaf_reader(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if plan.is::<ShuffleReaderExec>() {
        return Some(plan.clone());
    }
    plan.children().into_iter().find_map(leaf_reader)
}

fn resolve_readers(
    plan: Arc<dyn ExecutionPlan>,
    sources: &dyn Fn(StageId) -> Vec<Vec<SpoolLocation>>,
) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    plan.transform_up(|node| {
        let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() else {
            return Ok(Transformed::no(node));
        };
        Ok(Transformed::yes(Arc::new(ShuffleReaderExec::new(
            reader.stage_id(),
            reader.schema(),
            sources(reader.stage_id()),
            reader.mode(),
        ))))
    })
    .data()
}
