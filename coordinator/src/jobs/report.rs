//! A task's report and what it does to its job: a success records the task's output and may
//! finish its stage; a failure another try may repair sends the task out again; any other
//! failure fails the job. Reports of attempts that are no longer current change nothing.

use std::time::Duration;

use tally_common::failure::{FailureKind, FetchFailed};
use tally_common::ids::{StageId, TaskKey, WorkerId};

use super::error::JobError;
use super::model::{Job, TaskOutput};

/// What a worker reports when a task ends.
#[derive(Debug, Clone)]
pub(crate) struct TaskReport {
    pub task: TaskKey,
    pub worker: WorkerId,
    pub outcome: TaskOutcome,
    /// What the task fetched from other workers, per input stage.
    pub reads: Vec<StageRead>,
    /// Rows that entered the stage's partial aggregation, when it has one.
    pub partial_input_rows: Option<u64>,
    pub spilled_bytes: u64,
    /// Records of a Kafka table the task skipped as malformed.
    pub malformed_records: u64,
    /// How long the attempt ran on its worker.
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub(crate) enum TaskOutcome {
    Succeeded { outputs: Vec<TaskOutput> },
    Failed { kind: FailureKind, message: String },
}

/// What a task fetched from other workers out of one input stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StageRead {
    pub stage: StageId,
    pub remote_rows: u64,
    pub remote_bytes: u64,
    pub remote_uncompressed_bytes: u64,
}

/// What a report asks of the scheduler.
#[derive(Debug)]
pub(crate) enum ReportOutcome {
    Nothing,
    /// A stage finished: later stages may start.
    StageDone,
    /// A task failed in a way another try may not: find out whether workers died, then run
    /// it again.
    Retry {
        failures: u32,
        /// The task could not fetch its input from this worker endpoint.
        fetch_failed_from: Option<String>,
    },
    /// The job cannot succeed.
    Fail(JobError),
}

impl Job {
    /// Applies a task report to the model.
    pub(super) fn apply_report(&mut self, report: TaskReport) -> ReportOutcome {
        let key = &report.task;
        if self.is_finished() || !self.has_stage(key.stage_id) {
            return ReportOutcome::Nothing;
        }
        let max_failures = self.max_task_failures;
        let stage = self.stage_mut(key.stage_id);
        let Some(task) = stage.tasks.get_mut(key.partition as usize) else {
            return ReportOutcome::Nothing;
        };
        // Only the attempt in flight, from the worker it was sent to, counts.
        if task.attempt != key.attempt || !task.is_running() || !task.runs_on(&report.worker) {
            return ReportOutcome::Nothing;
        }
        stage.spilled_bytes += report.spilled_bytes;
        task.reported(report.elapsed, report.spilled_bytes);
        // Counted once per task: the records of a failed attempt are read again.
        if matches!(report.outcome, TaskOutcome::Succeeded { .. }) {
            stage.malformed_records += report.malformed_records;
        }
        match report.outcome {
            TaskOutcome::Succeeded { outputs } => {
                task.succeed(outputs, report.partial_input_rows);
                for read in &report.reads {
                    if self.has_stage(read.stage) {
                        let producer = self.stage_mut(read.stage);
                        producer.shuffle_bytes += read.remote_bytes;
                        producer.shuffle_uncompressed_bytes += read.remote_uncompressed_bytes;
                        producer.shuffle_rows += read.remote_rows;
                    }
                }
                if self.stage_mut(key.stage_id).complete_if_done() {
                    ReportOutcome::StageDone
                } else {
                    ReportOutcome::Nothing
                }
            }
            TaskOutcome::Failed { kind, message } if kind.retryable() => {
                if task.failures + 1 < max_failures {
                    task.fail_for_retry();
                    tracing::warn!(job_id = %key.job_id, stage_id = %key.stage_id, task = %key, failures = task.failures, error = %message, "task failed; it will run again");
                    return ReportOutcome::Retry {
                        failures: task.failures,
                        fetch_failed_from: FetchFailed::source_in(&message).map(str::to_string),
                    };
                }
                task.failures += 1;
                task.fail();
                ReportOutcome::Fail(JobError::RetriesExhausted {
                    task: key.clone(),
                    attempts: max_failures,
                    kind,
                    message,
                })
            }
            TaskOutcome::Failed { kind, message } => {
                task.fail();
                ReportOutcome::Fail(JobError::Task {
                    task: key.clone(),
                    kind,
                    message,
                })
            }
        }
    }
}
