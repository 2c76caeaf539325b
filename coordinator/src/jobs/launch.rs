//! Settling a stage's plan when it starts: where each reader's pieces are (the producers
//! have finished), which worker each task must or would rather run on, and the run-time
//! rules of the planner (worker combine, final placement) from what the producers measured.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use tally_common::codec::encode_plan;
use tally_common::ids::{JobId, StageId, WorkerId};
use tally_common::shuffle_reader::ShuffleReaderExec;
use tally_common::shuffle_writer::ShuffleWriterExec;
use tally_common::spool::SpoolLocation;

use super::error::JobError;
use super::model::{Launch, StageRun, TaskOutput, TaskRun};
use super::workers::WorkerRef;
use crate::planner::{CombineMeasurement, Exchange, settle_at_stage_start};

/// Settles stage `index` of `stages` (every stage it reads has finished).
pub(crate) fn launch_stage(
    job: &JobId,
    index: usize,
    stages: &[StageRun],
) -> Result<Launch, JobError> {
    let stage = &stages[index];
    let start_error = |e: DataFusionError| JobError::StageStart {
        stage: stage.id(),
        message: e.to_string(),
    };
    let producer = |id: StageId| &stages[id.0 as usize - 1];
    let measured = stage.plan.combine.as_ref().map(|_| {
        let partial = producer(stage.plan.inputs[0]);
        CombineMeasurement {
            partial_input_rows: partial.tasks.iter().map(|t| t.partial_input_rows).sum(),
            partial_output_rows: partial
                .tasks
                .iter()
                .flat_map(|t| &t.outputs)
                .map(|o| o.rows)
                .sum(),
            sole_reader: sole_reader_of(stage.id(), stages),
        }
    });
    let (writer, notes) =
        settle_at_stage_start(&stage.plan, measured, stage.final_gather_max_groups)
            .map_err(start_error)?;
    let resolved =
        resolve_readers(writer, &|input| sources(job, producer(input))).map_err(start_error)?;
    let bytes = encode_plan(resolved.clone()).map_err(|e| JobError::StageStart {
        stage: stage.id(),
        message: format!("cannot be sent to workers: {e}"),
    })?;
    let task_count = resolved.input().output_partitioning().partition_count();
    let pinned = stage
        .plan
        .inputs
        .iter()
        .find(|input| producer(**input).plan.exchange == Exchange::PerWorker)
        .map(|input| holders(producer(*input)));
    Ok(Launch {
        preferred: preferred_workers(&resolved, task_count),
        plan: resolved,
        bytes,
        pinned,
        notes,
        task_count,
    })
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
                    .filter(|(_, task)| task.runs_on(&holder.id))
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
    out: &TaskOutput,
) -> SpoolLocation {
    let worker = task
        .worker
        .as_ref()
        .expect("a finished task ran on a worker");
    SpoolLocation {
        worker_id: worker.id.clone(),
        endpoint: worker.endpoint.clone(),
        job_id: job.clone(),
        stage_id: producer.id(),
        map_partition: map as u32,
        out_partition: out.partition,
        rows: out.rows,
        mac: out.ticket_mac.clone(),
    }
}

/// For each task, the worker that already holds most of the rows it reads, when that is more
/// than half of them: running it there keeps those rows off the network. A one-task stage
/// counts every piece it reads; otherwise reader partition `p` feeds task `p` (broadcast
/// readers, read whole by every task, do not count).
fn preferred_workers(plan: &Arc<ShuffleWriterExec>, tasks: usize) -> Vec<Option<WorkerId>> {
    let mut rows: Vec<BTreeMap<WorkerId, u64>> = vec![BTreeMap::new(); tasks];
    plan.input()
        .apply(|node| {
            let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() else {
                return Ok(TreeNodeRecursion::Continue);
            };
            if reader.mode().broadcast || (tasks > 1 && reader.partitions().len() != tasks) {
                return Ok(TreeNodeRecursion::Continue);
            }
            for (partition, sources) in reader.partitions().iter().enumerate() {
                let task = if tasks == 1 { 0 } else { partition };
                if task < tasks {
                    for source in sources {
                        *rows[task].entry(source.worker_id.clone()).or_default() += source.rows;
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("the walk cannot fail");
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
    let mut reads_only_stage = true;
    consumer
        .plan
        .plan
        .input()
        .apply(|node| {
            let leaf = node.children().is_empty();
            let is_reader = node
                .downcast_ref::<ShuffleReaderExec>()
                .is_some_and(|reader| reader.stage_id() == stage);
            if leaf && !is_reader {
                reads_only_stage = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("the walk cannot fail");
    reads_only_stage
}

fn resolve_readers(
    plan: Arc<ShuffleWriterExec>,
    sources: &dyn Fn(StageId) -> Vec<Vec<SpoolLocation>>,
) -> Result<Arc<ShuffleWriterExec>, DataFusionError> {
    let plan: Arc<dyn ExecutionPlan> = plan;
    let resolved = plan
        .transform_up(|node| {
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
        .data()?;
    Ok(Arc::new(
        resolved
            .downcast_ref::<ShuffleWriterExec>()
            .expect("a stage plan has a writer root")
            .clone(),
    ))
}
