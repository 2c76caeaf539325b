//! A job as others see it (`tally_common::job_status`), taken from the model under the job
//! table's lock: clients get it, the cluster state keeps it as the job's record, and EXPLAIN
//! prints its stages.

use std::time::Duration;

use datafusion::physical_plan::displayable;
use tally_common::job_status::{
    JobFailure, JobState, JobStatus, StageState, StageStatus, TaskState, TaskStatus,
};
use tally_common::shuffle_writer::describe_partitioning;

use super::launch::sources;
use super::model::{Job, StageRun};
use crate::planner::StagePlan;

/// A stage as planned, before it runs (EXPLAIN).
pub(crate) fn planned_stage(stage: &StagePlan) -> StageStatus {
    StageStatus {
        stage_id: stage.id,
        state: StageState::Pending,
        output: describe_partitioning(stage.plan.output_partitioning()),
        input_stages: stage.inputs.clone(),
        tasks_total: stage.task_count() as u32,
        tasks_running: 0,
        tasks_succeeded: 0,
        output_rows: 0,
        output_bytes: 0,
        shuffle_rows: 0,
        shuffle_bytes: 0,
        shuffle_uncompressed_bytes: 0,
        elapsed: Duration::ZERO,
        rules: stage.rules.clone(),
        spilled_bytes: 0,
        malformed_records: 0,
        plan: displayable(stage.plan.as_ref()).indent(false).to_string(),
        tasks: Vec::new(),
    }
}

fn stage_status(stage: &StageRun) -> StageStatus {
    let outputs = stage.tasks.iter().flat_map(|t| &t.outputs);
    let count = |state: TaskState| stage.tasks.iter().filter(|t| t.state == state).count();
    StageStatus {
        stage_id: stage.id(),
        state: stage.state,
        output: describe_partitioning(stage.launched_plan().output_partitioning()),
        input_stages: stage.plan.inputs.clone(),
        tasks_total: if stage.launched.is_some() {
            stage.tasks.len()
        } else {
            stage.plan.task_count()
        } as u32,
        tasks_running: count(TaskState::Running) as u32,
        tasks_succeeded: count(TaskState::Succeeded) as u32,
        output_rows: outputs.clone().map(|o| o.rows).sum(),
        output_bytes: outputs.map(|o| o.bytes).sum(),
        shuffle_rows: stage.shuffle_rows,
        shuffle_bytes: stage.shuffle_bytes,
        shuffle_uncompressed_bytes: stage.shuffle_uncompressed_bytes,
        elapsed: stage
            .elapsed
            .or_else(|| stage.started.map(|s| s.elapsed()))
            .unwrap_or_default(),
        rules: stage
            .plan
            .rules
            .iter()
            .chain(&stage.notes)
            .cloned()
            .collect(),
        spilled_bytes: stage.spilled_bytes,
        malformed_records: stage.malformed_records,
        plan: displayable(stage.launched_plan().as_ref())
            .indent(false)
            .to_string(),
        tasks: stage
            .tasks
            .iter()
            .enumerate()
            .map(|(partition, task)| TaskStatus {
                partition: partition as u32,
                attempt: task.attempt,
                worker_id: task.worker.as_ref().map(|w| w.id.clone()),
                state: task.state,
                elapsed: task.time(),
                spilled_bytes: task.spilled_bytes,
                output_rows: task.outputs.iter().map(|o| o.rows).sum(),
                output_bytes: task.outputs.iter().map(|o| o.bytes).sum(),
            })
            .collect(),
    }
}

impl Job {
    pub(crate) fn status(&self) -> JobStatus {
        let answer_on_workers = self.inline_result.is_empty();
        let results = match self.final_stage() {
            Some(stage) if self.state == JobState::Succeeded && answer_on_workers => {
                sources(&self.id, stage).into_iter().flatten().collect()
            }
            _ => Vec::new(),
        };
        let final_outputs = self
            .final_stage()
            .filter(|_| answer_on_workers)
            .into_iter()
            .flat_map(|s| &s.tasks)
            .flat_map(|t| &t.outputs);
        JobStatus {
            job_id: self.id.clone(),
            sql: self.sql.clone(),
            state: self.state,
            failure: self.error.as_ref().map(|error| JobFailure {
                message: error.to_string(),
                code: error.code(),
            }),
            stages: self.stages.iter().map(stage_status).collect(),
            results,
            result_compression: self.result_compression,
            result_schema: self.result_schema.clone(),
            result_rows: final_outputs.clone().map(|o| o.rows).sum(),
            result_bytes: final_outputs.map(|o| o.bytes).sum(),
            submitted_at: self.submitted_at,
            elapsed: self.elapsed.unwrap_or_else(|| self.started.elapsed()),
            inline_result: self.inline_result.clone(),
            naive: self.naive.clone(),
        }
    }
}
