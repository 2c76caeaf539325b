//! The coordinator's own types to and from their wire messages, in one place: the gRPC
//! service and the job records in the cluster state are the only readers of these messages.

use std::time::Duration;

use prost::Message;
use tally_common::failure::FailureKind;
use tally_common::ids::{StageId, TaskKey, WorkerId};
use tally_common::ipc::schema_to_bytes;
use tally_common::job_status::JobStatus;
use tally_proto::coordinator as pb;

use crate::error::{CoordinatorError, one_line};
use crate::jobs::{StageRead, TaskOutcome, TaskOutput, TaskReport, WorkerLoad, WorkerView};
use crate::sql::catalog::TableView;

pub(crate) fn job_status(job: &JobStatus) -> pb::JobStatus {
    pb::JobStatus::from(job)
}

/// The job's record in the cluster state: its status without its answer.
pub(crate) fn job_record(job: &JobStatus) -> Vec<u8> {
    job_status(&job.without_answer()).encode_to_vec()
}

/// A job recorded by this or an earlier leader.
pub(crate) fn job_from_record(record: &[u8]) -> Result<JobStatus, String> {
    JobStatus::try_from(pb::JobStatus::decode(record).map_err(|e| e.to_string())?)
}

/// A worker's task report; None when it names no task.
pub(crate) fn task_report(report: pb::TaskStatusReport) -> Option<TaskReport> {
    let task = TaskKey::from(report.task.clone()?);
    let outcome = match report.state() {
        pb::TaskState::Succeeded => TaskOutcome::Succeeded {
            outputs: report
                .outputs
                .iter()
                .map(|out| TaskOutput {
                    partition: out.partition,
                    rows: out.rows,
                    bytes: out.bytes,
                    ticket_mac: out.ticket_mac.clone(),
                })
                .collect(),
        },
        state => TaskOutcome::Failed {
            kind: FailureKind::of_code(tonic::Code::from(report.error_code), report.retryable),
            message: if report.error.is_empty() {
                format!("task {task} ended as {state:?}")
            } else {
                one_line(&report.error)
            },
        },
    };
    Some(TaskReport {
        worker: WorkerId::from(report.worker_id),
        outcome,
        reads: report
            .reads
            .iter()
            .map(|read| StageRead {
                stage: StageId(read.stage_id),
                remote_rows: read.remote_rows,
                remote_bytes: read.remote_bytes,
                remote_uncompressed_bytes: read.remote_uncompressed_bytes,
            })
            .collect(),
        partial_input_rows: report.partial_input_rows,
        spilled_bytes: report.spilled_bytes,
        malformed_records: report.malformed_records,
        elapsed: Duration::from_millis(report.elapsed_ms),
        task,
    })
}

pub(crate) fn worker_info(worker: &WorkerView) -> pb::WorkerInfo {
    pb::WorkerInfo {
        worker_id: worker.id.to_string(),
        endpoint: worker.endpoint.clone(),
        task_slots: worker.task_slots,
        alive: worker.alive,
        last_heartbeat_ms_ago: worker.since_last_heartbeat.as_millis() as u64,
        load: worker.load.map(|load| pb::WorkerLoad {
            memory_reserved_bytes: load.memory_reserved_bytes,
            memory_limit_bytes: load.memory_limit_bytes,
            spool_bytes: load.spool_bytes,
        }),
    }
}

/// What a worker's heartbeat says it holds.
pub(crate) fn worker_load(load: pb::WorkerLoad) -> WorkerLoad {
    WorkerLoad {
        memory_reserved_bytes: load.memory_reserved_bytes,
        memory_limit_bytes: load.memory_limit_bytes,
        spool_bytes: load.spool_bytes,
    }
}

pub(crate) fn table_info(table: &TableView) -> Result<pb::TableInfo, CoordinatorError> {
    Ok(pb::TableInfo {
        name: table.name.clone(),
        path: table.path.to_string_lossy().to_string(),
        format: table.format.as_str().to_string(),
        schema: schema_to_bytes(&table.schema)
            .map_err(|e| CoordinatorError::Internal(e.to_string()))?,
        bucketing: table.bucketing.clone().unwrap_or_default(),
        view: table.view.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_keeps_its_failure_class() {
        let report = pb::TaskStatusReport {
            task: Some(tally_proto::plan::TaskKey {
                job_id: "j".to_string(),
                stage_id: 2,
                partition: 1,
                attempt: 0,
            }),
            worker_id: "w-1".to_string(),
            state: pb::TaskState::Failed as i32,
            error: "fetching shuffle data from w:1:\n refused".to_string(),
            error_code: tonic::Code::Unavailable as i32,
            retryable: true,
            ..Default::default()
        };
        let report = task_report(report).unwrap();
        let TaskOutcome::Failed { kind, message } = report.outcome else {
            panic!("a failure")
        };
        assert_eq!(kind, FailureKind::LostInput);
        assert_eq!(message, "fetching shuffle data from w:1: refused");
    }
}
