//! Tally's own Flight actions beside Flight SQL's, for what Flight SQL has no word for: a
//! job's figures and cancelling a job by its id. Both take the job id as the action body and
//! answer one JSON document.

use arrow_flight::ActionType;
use serde_json::{Value, json};
use tally_common::ids::JobId;
use tally_common::job_status::JobStatus;

use crate::error::CoordinatorError;
use crate::jobs::JobManager;

/// `tally.job`: the job's state, error and figures, with shuffle bytes per stage.
pub(super) const JOB: &str = "tally.job";
/// `tally.cancel`: cancels the job; answers its state afterwards.
pub(super) const CANCEL: &str = "tally.cancel";

pub(super) fn action_types() -> Vec<ActionType> {
    vec![
        ActionType {
            r#type: JOB.to_string(),
            description: "Job status and figures as JSON (body: the job id)".to_string(),
        },
        ActionType {
            r#type: CANCEL.to_string(),
            description: "Cancel a job (body: the job id); answers its state as JSON".to_string(),
        },
    ]
}

/// Runs one of Tally's actions; `None` when `kind` is not one.
pub(super) fn run(
    jobs: &JobManager,
    kind: &str,
    body: &[u8],
) -> Option<Result<Vec<u8>, CoordinatorError>> {
    let answer = match kind {
        JOB => job_id(body).and_then(|id| {
            jobs.status(&id)
                .map(|status| job_json(&status))
                .ok_or_else(|| not_found(&id))
        }),
        CANCEL => job_id(body).and_then(|id| {
            let state = jobs.cancel(&id).ok_or_else(|| not_found(&id))?;
            Ok(json!({"job_id": id.to_string(), "state": state.as_str()}))
        }),
        _ => return None,
    };
    Some(answer.map(|value| value.to_string().into_bytes()))
}

fn job_id(body: &[u8]) -> Result<JobId, CoordinatorError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| CoordinatorError::Query("the action body is not a job id".to_string()))?;
    JobId::parse(text.trim()).map_err(CoordinatorError::Query)
}

fn not_found(id: &JobId) -> CoordinatorError {
    CoordinatorError::NotFound(format!("no job {id}"))
}

/// The figures `tally sql --metrics-json` writes, from the same status.
pub(super) fn job_json(status: &JobStatus) -> Value {
    let stages: Vec<Value> = status
        .stages
        .iter()
        .map(|stage| {
            json!({
                "stage_id": stage.stage_id.0,
                "input_stages": stage.input_stages.iter().map(|s| s.0).collect::<Vec<_>>(),
                "output": stage.output,
                "tasks": stage.tasks_total,
                "output_rows": stage.output_rows,
                "output_bytes": stage.output_bytes,
                "shuffle_bytes": stage.shuffle_bytes,
                "shuffle_rows": stage.shuffle_rows,
                "spilled_bytes": stage.spilled_bytes,
                "malformed_records": stage.malformed_records,
                "elapsed_ms": stage.elapsed.as_millis() as u64,
            })
        })
        .collect();
    json!({
        "job_id": status.job_id.to_string(),
        "state": status.state.as_str(),
        "error": status.failure.as_ref().map(|f| f.message.clone()),
        "shuffle_bytes": status.stages.iter().map(|s| s.shuffle_bytes).sum::<u64>(),
        "shuffle_rows": status.stages.iter().map(|s| s.shuffle_rows).sum::<u64>(),
        "result_rows": status.result_rows,
        "result_bytes": status.result_bytes,
        "elapsed_ms": status.elapsed.as_millis() as u64,
        "stages": stages,
    })
}
