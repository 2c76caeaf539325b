//! A job as its status message: what clients see of it.

use std::time::UNIX_EPOCH;

use datafusion::physical_plan::displayable;
use tally_common::ipc::schema_to_bytes;
use tally_common::shuffle_writer::describe_partitioning;
use tally_proto::coordinator::{JobStatus, StageStatus, TaskSummary};
use tally_proto::plan::ShuffleLocation;

use crate::jobs::Job;

pub(crate) fn job_status(job: &Job) -> JobStatus {
    let stages = job
        .stages
        .iter()
        .map(|stage| {
            let outputs = stage.tasks.iter().flat_map(|t| &t.outputs);
            StageStatus {
                stage_id: stage.plan.id.0,
                state: stage.state as i32,
                output: describe_partitioning(stage.launched_plan().output_partitioning()),
                input_stages: stage.plan.inputs.iter().map(|s| s.0).collect(),
                tasks_total: if stage.launched.is_some() {
                    stage.tasks.len()
                } else {
                    stage.plan.task_count()
                } as u32,
                tasks_running: stage.tasks.iter().filter(|t| t.running).count() as u32,
                tasks_succeeded: stage
                    .tasks
                    .iter()
                    .filter(|t| t.state == tally_proto::coordinator::TaskState::Succeeded)
                    .count() as u32,
                output_rows: outputs.clone().map(|o| o.rows).sum(),
                output_bytes: outputs.map(|o| o.bytes).sum(),
                shuffle_rows: stage.shuffle_rows,
                shuffle_bytes: stage.shuffle_bytes,
                shuffle_uncompressed_bytes: stage.shuffle_uncompressed_bytes,
                elapsed_ms: stage
                    .elapsed
                    .or_else(|| stage.started.map(|s| s.elapsed()))
                    .map_or(0, |d| d.as_millis() as u64),
                rules: stage
                    .plan
                    .rules
                    .iter()
                    .chain(&stage.notes)
                    .cloned()
                    .collect(),
                spilled_bytes: stage.spilled_bytes,
                plan: displayable(stage.launched_plan().as_ref())
                    .indent(false)
                    .to_string(),
                tasks: stage
                    .tasks
                    .iter()
                    .enumerate()
                    .map(|(partition, task)| TaskSummary {
                        partition: partition as u32,
                        attempt: task.attempt,
                        worker_id: task
                            .worker
                            .as_ref()
                            .map(|w| w.id.to_string())
                            .unwrap_or_default(),
                        state: task.state as i32,
                    })
                    .collect(),
            }
        })
        .collect();
    let results: Vec<ShuffleLocation> = job
        .results()
        .iter()
        .map(|location| location.to_proto(job.result_compression))
        .collect();
    let final_outputs = job
        .final_stage()
        .filter(|_| job.inline_result.is_empty())
        .into_iter()
        .flat_map(|s| &s.tasks)
        .flat_map(|t| &t.outputs);
    JobStatus {
        job_id: job.id.to_string(),
        sql: job.sql.clone(),
        state: job.state as i32,
        error: job.error.clone(),
        error_code: job.error_code,
        stages,
        results,
        result_schema: schema_to_bytes(&job.result_schema).unwrap_or_default(),
        result_rows: final_outputs.clone().map(|o| o.rows).sum(),
        result_bytes: final_outputs.map(|o| o.bytes).sum(),
        submitted_at_ms: job
            .submitted_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        inline_result: job.inline_result.clone(),
        elapsed_ms: job
            .elapsed
            .unwrap_or_else(|| job.started.elapsed())
            .as_millis() as u64,
    }
}
