//! A job as others see it: its state, its figures per stage and task, and where its answer
//! is. The coordinator makes it from its job model, the cluster state keeps it as the job's
//! record, and the client hands it to its users. Its wire message is read and written here
//! only.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::datatypes::{Schema, SchemaRef};
use tally_proto::coordinator as pb;

use crate::compression::WireCompression;
use crate::ids::{JobId, StageId, WorkerId};
use crate::ipc::{schema_from_bytes, schema_to_bytes};
use crate::spool::SpoolLocation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    /// Waiting for the stages it reads.
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Not yet sent to a worker (or to be sent again).
    Pending,
    /// Sent to a worker, which has not reported yet.
    Running,
    Succeeded,
    Failed,
    /// Still running when its job ended.
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }
}

/// Why a job failed: the message, and the gRPC code that says whose fault it is
/// (INVALID_ARGUMENT for the query's own errors, RESOURCE_EXHAUSTED for a worker's memory,
/// UNAVAILABLE for the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub message: String,
    pub code: tonic::Code,
}

#[derive(Debug, Clone)]
pub struct JobStatus {
    pub job_id: JobId,
    pub sql: String,
    pub state: JobState,
    pub failure: Option<JobFailure>,
    pub stages: Vec<StageStatus>,
    /// Where the answer is: the final stage's pieces in task order (empty unless the job
    /// succeeded with its answer on the workers).
    pub results: Vec<SpoolLocation>,
    /// How the answer's pieces are compressed on the wire.
    pub result_compression: WireCompression,
    pub result_schema: SchemaRef,
    pub result_rows: u64,
    pub result_bytes: u64,
    pub submitted_at: SystemTime,
    pub elapsed: Duration,
    /// An answer the coordinator made itself (EXPLAIN), as an Arrow IPC stream.
    pub inline_result: Vec<u8>,
    /// EXPLAIN ANALYZE: what the naive plan of the same query would shuffle, estimated.
    pub naive: Option<NaivePlan>,
}

/// The naive plan (`tally.planner = naive`) of a job's query as EXPLAIN ANALYZE estimates it
/// from statistics: it is planned, never run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaivePlan {
    /// The workers the estimate assumes: `(workers - 1) / workers` of every exchange's input
    /// crosses the network.
    pub workers: u32,
    /// Its exchanges, each the output of one of its stages, inputs before their readers.
    pub exchanges: Vec<NaiveExchange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaiveExchange {
    /// The operator whose output is exchanged, e.g. `AggregateExec`.
    pub input: String,
    /// How the exchange splits it, e.g. `hash([o_orderkey@0], 4)`, `gather`.
    pub output: String,
    /// Estimated bytes that would cross between workers; None when statistics give none.
    pub bytes: Option<u64>,
}

impl NaivePlan {
    /// The estimated bytes of every exchange with an estimate.
    pub fn bytes(&self) -> u64 {
        self.exchanges.iter().filter_map(|e| e.bytes).sum()
    }

    /// Whether every exchange has an estimate; otherwise `bytes` is a lower bound.
    pub fn complete(&self) -> bool {
        self.exchanges.iter().all(|e| e.bytes.is_some())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageStatus {
    pub stage_id: StageId,
    pub state: StageState,
    /// How its output is split for its consumer, e.g. `hash([l_orderkey], 6)`, `gather`.
    pub output: String,
    pub input_stages: Vec<StageId>,
    pub tasks_total: u32,
    pub tasks_running: u32,
    pub tasks_succeeded: u32,
    /// Rows and IPC bytes the stage spooled.
    pub output_rows: u64,
    pub output_bytes: u64,
    /// Of that output, what crossed from one worker to another (Flight messages as sent).
    pub shuffle_rows: u64,
    pub shuffle_bytes: u64,
    /// The shuffled batches' Arrow buffers before compression.
    pub shuffle_uncompressed_bytes: u64,
    pub elapsed: Duration,
    /// The rules that shaped the stage and what they decided when it started.
    pub rules: Vec<String>,
    /// Bytes its operators spilled to disk for want of memory.
    pub spilled_bytes: u64,
    /// Records of a Kafka table its tasks skipped as malformed.
    pub malformed_records: u64,
    /// Its plan, indented, for EXPLAIN and debugging.
    pub plan: String,
    /// One per task (partition), as its latest attempt stands.
    pub tasks: Vec<TaskStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskStatus {
    pub partition: u32,
    /// 0 for the first run; each re-run (a failure, or a lost worker) takes the next number.
    pub attempt: u32,
    pub worker_id: Option<WorkerId>,
    pub state: TaskState,
    /// The attempt's time: from when it was sent to its report, or so far while it runs.
    pub elapsed: Duration,
    /// Bytes the attempt's operators spilled to disk.
    pub spilled_bytes: u64,
    /// Rows and IPC bytes the attempt spooled (when it succeeded).
    pub output_rows: u64,
    pub output_bytes: u64,
}

impl JobStatus {
    pub fn is_finished(&self) -> bool {
        self.state.is_final()
    }

    /// The status with its answer left out, as the cluster state records it (the answer stays
    /// on the workers, and an EXPLAIN text can be large).
    pub fn without_answer(&self) -> Self {
        Self {
            results: Vec::new(),
            inline_result: Vec::new(),
            ..self.clone()
        }
    }
}

impl From<JobState> for pb::JobState {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Queued => pb::JobState::Queued,
            JobState::Running => pb::JobState::Running,
            JobState::Succeeded => pb::JobState::Succeeded,
            JobState::Failed => pb::JobState::Failed,
            JobState::Cancelled => pb::JobState::Cancelled,
        }
    }
}

impl From<pb::JobState> for JobState {
    fn from(state: pb::JobState) -> Self {
        match state {
            pb::JobState::Unspecified | pb::JobState::Queued => JobState::Queued,
            pb::JobState::Running => JobState::Running,
            pb::JobState::Succeeded => JobState::Succeeded,
            pb::JobState::Failed => JobState::Failed,
            pb::JobState::Cancelled => JobState::Cancelled,
        }
    }
}

impl From<StageState> for pb::StageState {
    fn from(state: StageState) -> Self {
        match state {
            StageState::Pending => pb::StageState::Pending,
            StageState::Running => pb::StageState::Running,
            StageState::Succeeded => pb::StageState::Succeeded,
            StageState::Failed => pb::StageState::Failed,
        }
    }
}

impl From<pb::StageState> for StageState {
    fn from(state: pb::StageState) -> Self {
        match state {
            pb::StageState::Unspecified | pb::StageState::Pending => StageState::Pending,
            pb::StageState::Running => StageState::Running,
            pb::StageState::Succeeded => StageState::Succeeded,
            pb::StageState::Failed => StageState::Failed,
        }
    }
}

impl From<TaskState> for pb::TaskState {
    fn from(state: TaskState) -> Self {
        match state {
            TaskState::Pending => pb::TaskState::Pending,
            TaskState::Running => pb::TaskState::Running,
            TaskState::Succeeded => pb::TaskState::Succeeded,
            TaskState::Failed => pb::TaskState::Failed,
            TaskState::Cancelled => pb::TaskState::Cancelled,
        }
    }
}

impl From<pb::TaskState> for TaskState {
    fn from(state: pb::TaskState) -> Self {
        match state {
            pb::TaskState::Unspecified | pb::TaskState::Pending => TaskState::Pending,
            pb::TaskState::Running => TaskState::Running,
            pb::TaskState::Succeeded => TaskState::Succeeded,
            pb::TaskState::Failed => TaskState::Failed,
            pb::TaskState::Cancelled => TaskState::Cancelled,
        }
    }
}

impl From<&JobStatus> for pb::JobStatus {
    fn from(job: &JobStatus) -> Self {
        pb::JobStatus {
            job_id: job.job_id.to_string(),
            sql: job.sql.clone(),
            state: pb::JobState::from(job.state) as i32,
            error: job
                .failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_default(),
            error_code: job.failure.as_ref().map_or(0, |f| f.code as i32),
            stages: job.stages.iter().map(pb::StageStatus::from).collect(),
            results: job
                .results
                .iter()
                .map(|location| location.to_proto(job.result_compression))
                .collect(),
            result_schema: schema_to_bytes(&job.result_schema).unwrap_or_default(),
            result_rows: job.result_rows,
            result_bytes: job.result_bytes,
            submitted_at_ms: job
                .submitted_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            elapsed_ms: job.elapsed.as_millis() as u64,
            inline_result: job.inline_result.clone(),
            naive: job.naive.as_ref().map(pb::NaivePlan::from),
        }
    }
}

impl From<&NaivePlan> for pb::NaivePlan {
    fn from(naive: &NaivePlan) -> Self {
        pb::NaivePlan {
            workers: naive.workers,
            exchanges: naive
                .exchanges
                .iter()
                .map(|e| pb::NaiveExchange {
                    input: e.input.clone(),
                    output: e.output.clone(),
                    bytes: e.bytes,
                })
                .collect(),
        }
    }
}

impl From<&pb::NaivePlan> for NaivePlan {
    fn from(naive: &pb::NaivePlan) -> Self {
        NaivePlan {
            workers: naive.workers,
            exchanges: naive
                .exchanges
                .iter()
                .map(|e| NaiveExchange {
                    input: e.input.clone(),
                    output: e.output.clone(),
                    bytes: e.bytes,
                })
                .collect(),
        }
    }
}

impl From<&StageStatus> for pb::StageStatus {
    fn from(stage: &StageStatus) -> Self {
        pb::StageStatus {
            stage_id: stage.stage_id.0,
            state: pb::StageState::from(stage.state) as i32,
            output: stage.output.clone(),
            input_stages: stage.input_stages.iter().map(|s| s.0).collect(),
            tasks_total: stage.tasks_total,
            tasks_running: stage.tasks_running,
            tasks_succeeded: stage.tasks_succeeded,
            output_rows: stage.output_rows,
            output_bytes: stage.output_bytes,
            shuffle_rows: stage.shuffle_rows,
            shuffle_bytes: stage.shuffle_bytes,
            shuffle_uncompressed_bytes: stage.shuffle_uncompressed_bytes,
            elapsed_ms: stage.elapsed.as_millis() as u64,
            rules: stage.rules.clone(),
            spilled_bytes: stage.spilled_bytes,
            malformed_records: stage.malformed_records,
            plan: stage.plan.clone(),
            tasks: stage
                .tasks
                .iter()
                .map(|task| pb::TaskSummary {
                    partition: task.partition,
                    attempt: task.attempt,
                    worker_id: task
                        .worker_id
                        .as_ref()
                        .map(|w| w.to_string())
                        .unwrap_or_default(),
                    state: pb::TaskState::from(task.state) as i32,
                    elapsed_ms: task.elapsed.as_millis() as u64,
                    spilled_bytes: task.spilled_bytes,
                    output_rows: task.output_rows,
                    output_bytes: task.output_bytes,
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::JobStatus> for JobStatus {
    type Error = String;

    fn try_from(status: pb::JobStatus) -> Result<Self, String> {
        let failure = (!status.error.is_empty()).then(|| JobFailure {
            message: status.error.clone(),
            code: match status.error_code {
                0 => tonic::Code::Unknown,
                code => tonic::Code::from(code),
            },
        });
        let result_compression = status
            .results
            .first()
            .and_then(|location| location.ticket.as_ref())
            .map(|ticket| WireCompression::from(ticket.compression()))
            .unwrap_or_default();
        let results = status
            .results
            .iter()
            .cloned()
            .map(SpoolLocation::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("job {}: {e}", status.job_id))?;
        Ok(JobStatus {
            job_id: JobId::from(status.job_id.clone()),
            sql: status.sql.clone(),
            state: JobState::from(status.state()),
            failure,
            stages: status.stages.iter().map(StageStatus::from).collect(),
            results,
            result_compression,
            result_schema: schema_from_bytes(&status.result_schema)
                .unwrap_or_else(|_| Arc::new(Schema::empty())),
            result_rows: status.result_rows,
            result_bytes: status.result_bytes,
            submitted_at: UNIX_EPOCH + Duration::from_millis(status.submitted_at_ms),
            elapsed: Duration::from_millis(status.elapsed_ms),
            naive: status.naive.as_ref().map(NaivePlan::from),
            inline_result: status.inline_result,
        })
    }
}

impl From<&pb::StageStatus> for StageStatus {
    fn from(stage: &pb::StageStatus) -> Self {
        StageStatus {
            stage_id: StageId(stage.stage_id),
            state: StageState::from(stage.state()),
            output: stage.output.clone(),
            input_stages: stage.input_stages.iter().map(|s| StageId(*s)).collect(),
            tasks_total: stage.tasks_total,
            tasks_running: stage.tasks_running,
            tasks_succeeded: stage.tasks_succeeded,
            output_rows: stage.output_rows,
            output_bytes: stage.output_bytes,
            shuffle_rows: stage.shuffle_rows,
            shuffle_bytes: stage.shuffle_bytes,
            shuffle_uncompressed_bytes: stage.shuffle_uncompressed_bytes,
            elapsed: Duration::from_millis(stage.elapsed_ms),
            rules: stage.rules.clone(),
            spilled_bytes: stage.spilled_bytes,
            malformed_records: stage.malformed_records,
            plan: stage.plan.clone(),
            tasks: stage
                .tasks
                .iter()
                .map(|task| TaskStatus {
                    partition: task.partition,
                    attempt: task.attempt,
                    worker_id: (!task.worker_id.is_empty())
                        .then(|| WorkerId::from(task.worker_id.clone())),
                    state: TaskState::from(task.state()),
                    elapsed: Duration::from_millis(task.elapsed_ms),
                    spilled_bytes: task.spilled_bytes,
                    output_rows: task.output_rows,
                    output_bytes: task.output_bytes,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_back_as_it_was_sent() {
        let status = JobStatus {
            job_id: JobId::from("a1b2c3"),
            sql: "SELECT 1".to_string(),
            state: JobState::Failed,
            failure: Some(JobFailure {
                message: "Divide by zero error".to_string(),
                code: tonic::Code::InvalidArgument,
            }),
            stages: vec![StageStatus {
                stage_id: StageId(1),
                state: StageState::Failed,
                output: "gather".to_string(),
                input_stages: vec![],
                tasks_total: 1,
                tasks_running: 0,
                tasks_succeeded: 0,
                output_rows: 0,
                output_bytes: 0,
                shuffle_rows: 0,
                shuffle_bytes: 7,
                shuffle_uncompressed_bytes: 9,
                elapsed: Duration::from_millis(12),
                rules: vec!["partial_aggregation".to_string()],
                spilled_bytes: 0,
                malformed_records: 3,
                plan: "ShuffleWriterExec".to_string(),
                tasks: vec![TaskStatus {
                    partition: 0,
                    attempt: 2,
                    worker_id: Some(WorkerId::from("w-1")),
                    state: TaskState::Cancelled,
                    elapsed: Duration::from_millis(8),
                    spilled_bytes: 4096,
                    output_rows: 0,
                    output_bytes: 0,
                }],
            }],
            results: vec![],
            result_compression: WireCompression::None,
            result_schema: Arc::new(Schema::empty()),
            result_rows: 0,
            result_bytes: 0,
            submitted_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            elapsed: Duration::from_millis(30),
            inline_result: vec![],
            naive: Some(NaivePlan {
                workers: 3,
                exchanges: vec![
                    NaiveExchange {
                        input: "DataSourceExec".to_string(),
                        output: "hash([k@0], 4)".to_string(),
                        bytes: Some(1234),
                    },
                    NaiveExchange {
                        input: "AggregateExec".to_string(),
                        output: "gather".to_string(),
                        bytes: None,
                    },
                ],
            }),
        };
        let restored = JobStatus::try_from(pb::JobStatus::from(&status)).unwrap();
        assert_eq!(restored.job_id, status.job_id);
        assert_eq!(restored.state, status.state);
        assert_eq!(restored.failure, status.failure);
        assert_eq!(restored.stages, status.stages);
        assert_eq!(restored.submitted_at, status.submitted_at);
        assert_eq!(restored.elapsed, status.elapsed);
        assert_eq!(restored.naive, status.naive);
        let naive = restored.naive.unwrap();
        assert_eq!((naive.bytes(), naive.complete()), (1234, false));
    }
}
