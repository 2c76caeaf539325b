//! Why a job failed, as a type: the scheduler decides with it, and only the edge turns it into
//! a message and a gRPC code.

use std::time::Duration;

use tally_common::failure::FailureKind;
use tally_common::ids::{StageId, TaskKey, WorkerId};
use tonic::Code;

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum JobError {
    /// A task failed in a way another try would meet again (the query's own error, memory).
    #[error("{message}")]
    Task {
        task: TaskKey,
        kind: FailureKind,
        message: String,
    },
    /// A task failed again and again for reasons outside the query.
    #[error("task {task} failed {attempts} times; the last time: {message}")]
    RetriesExhausted {
        task: TaskKey,
        attempts: u32,
        kind: FailureKind,
        message: String,
    },
    /// Settling a stage's plan (or encoding it for the workers) failed: Tally's fault.
    #[error("stage {stage} could not start: {message}")]
    StageStart { stage: StageId, message: String },
    #[error("no live workers to run the job on")]
    NoWorkers,
    #[error("no live workers left: worker {last} was the last one and stopped responding")]
    AllWorkersLost { last: WorkerId },
    /// A task must run where its input is spooled, and that worker is gone.
    #[error("worker {worker} holding stage {stage} input is gone")]
    InputHolderGone { worker: WorkerId, stage: StageId },
    #[error("timed out after {} s (the coordinator's --job-timeout-secs)", .after.as_secs())]
    TimedOut { after: Duration },
    #[error("cancelled by the user")]
    Cancelled,
    #[error("the coordinator lost its leadership while the job ran")]
    LostLeadership,
    /// The work after the stages (registering a written table, the EXPLAIN ANALYZE text).
    #[error("{message}")]
    Finalize { message: String, code: Code },
}

impl JobError {
    /// Whose fault it is, as the gRPC code clients see with the message.
    pub(crate) fn code(&self) -> Code {
        match self {
            JobError::Task { kind, .. } | JobError::RetriesExhausted { kind, .. } => kind.code(),
            JobError::StageStart { .. } => Code::Internal,
            JobError::NoWorkers
            | JobError::AllWorkersLost { .. }
            | JobError::InputHolderGone { .. }
            | JobError::LostLeadership => Code::Unavailable,
            JobError::TimedOut { .. } => Code::DeadlineExceeded,
            JobError::Cancelled => Code::Cancelled,
            JobError::Finalize { code, .. } => *code,
        }
    }

    /// True when the job ended for a reason of its own (its query, its memory needs, its
    /// user cancelling it): the client reports it, so the cluster need not warn about it.
    pub(crate) fn is_the_jobs_own(&self) -> bool {
        match self {
            JobError::Task { kind, .. } => kind.is_the_jobs_own(),
            JobError::Cancelled => true,
            JobError::Finalize { code, .. } => {
                FailureKind::of_code(*code, false) == FailureKind::Query
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_common::ids::JobId;

    #[test]
    fn a_lost_cluster_is_not_the_query_fault() {
        let task = TaskKey {
            job_id: JobId::from("j"),
            stage_id: StageId(1),
            partition: 0,
            attempt: 3,
        };
        let divide = JobError::Task {
            task: task.clone(),
            kind: FailureKind::Query,
            message: "Divide by zero error".to_string(),
        };
        assert_eq!(divide.code(), Code::InvalidArgument);
        assert_eq!(divide.to_string(), "Divide by zero error");
        assert!(divide.is_the_jobs_own());
        assert!(JobError::Cancelled.is_the_jobs_own());
        let lost = JobError::AllWorkersLost {
            last: WorkerId::from("w-1"),
        };
        assert_eq!(lost.code(), Code::Unavailable);
        assert!(!lost.is_the_jobs_own());
        let exhausted = JobError::RetriesExhausted {
            task,
            attempts: 4,
            kind: FailureKind::LostInput,
            message: "fetching shuffle data from w:1: refused".to_string(),
        };
        assert_eq!(exhausted.code(), Code::Unavailable);
        assert!(exhausted.to_string().starts_with("task "), "{exhausted}");
        assert!(!exhausted.is_the_jobs_own());
    }
}
