//! The figures behind the pages as JSON, for scripts and tests: the same numbers the job
//! status holds, per job and per stage.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tally_common::ids::JobId;
use tally_common::job_status::JobStatus;

use super::UiState;
use super::dag;
use super::format::{stage_state, task_state};

fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

pub(crate) fn job_json(job: &JobStatus) -> Value {
    let stages: Vec<Value> = job
        .stages
        .iter()
        .map(|stage| {
            json!({
                "stage_id": stage.stage_id.0,
                "state": stage_state(stage.state),
                "input_stages": stage.input_stages.iter().map(|s| s.0).collect::<Vec<_>>(),
                "output": stage.output,
                "tasks_total": stage.tasks_total,
                "tasks_running": stage.tasks_running,
                "tasks_succeeded": stage.tasks_succeeded,
                "output_rows": stage.output_rows,
                "output_bytes": stage.output_bytes,
                "shuffle_bytes": stage.shuffle_bytes,
                "shuffle_rows": stage.shuffle_rows,
                "shuffle_uncompressed_bytes": stage.shuffle_uncompressed_bytes,
                "spilled_bytes": stage.spilled_bytes,
                "elapsed_ms": stage.elapsed.as_millis() as u64,
                "tasks": stage.tasks.iter().map(|task| json!({
                    "partition": task.partition,
                    "attempt": task.attempt,
                    "worker_id": task.worker_id.as_ref().map(|w| w.as_str()),
                    "state": task_state(task.state),
                    "elapsed_ms": task.elapsed.as_millis() as u64,
                    "spilled_bytes": task.spilled_bytes,
                    "output_rows": task.output_rows,
                    "output_bytes": task.output_bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let edges: Vec<Value> = dag::edges(job)
        .iter()
        .map(|edge| {
            json!({
                "from": edge.from,
                "to": edge.to,
                "bytes": edge.bytes,
                "rows": edge.rows,
            })
        })
        .collect();
    json!({
        "job_id": job.job_id.as_str(),
        "state": job.state.as_str(),
        "sql": job.sql,
        "error": job.failure.as_ref().map(|f| f.message.clone()),
        "elapsed_ms": job.elapsed.as_millis() as u64,
        "result_rows": job.result_rows,
        "result_bytes": job.result_bytes,
        "shuffle_bytes": job.stages.iter().map(|s| s.shuffle_bytes).sum::<u64>(),
        "shuffle_rows": job.stages.iter().map(|s| s.shuffle_rows).sum::<u64>(),
        "stages": stages,
        "edges": edges,
        "naive": job.naive.as_ref().map(|naive| json!({
            "workers": naive.workers,
            "bytes": naive.bytes(),
            "complete": naive.complete(),
            "exchanges": naive.exchanges.iter().map(|e| json!({
                "input": e.input,
                "output": e.output,
                "bytes": e.bytes,
            })).collect::<Vec<_>>(),
        })),
    })
}

pub(crate) async fn jobs(State(state): State<UiState>) -> Response {
    let mut jobs = state.frontend.jobs.statuses();
    jobs.sort_by_key(|j| j.submitted_at);
    json_response(Value::Array(jobs.iter().map(job_json).collect()))
}

pub(crate) async fn job(State(state): State<UiState>, Path(id): Path<String>) -> Response {
    match state.frontend.jobs.status(&JobId::from(id.clone())) {
        Some(job) => json_response(job_json(&job)),
        None => (StatusCode::NOT_FOUND, format!("no job {id}")).into_response(),
    }
}

pub(crate) async fn workers(State(state): State<UiState>) -> Response {
    let workers: Vec<Value> = state
        .frontend
        .workers
        .list()
        .iter()
        .map(|w| {
            json!({
                "worker_id": w.id.as_str(),
                "endpoint": w.endpoint,
                "alive": w.alive,
                "task_slots": w.task_slots,
                "last_heartbeat_ms_ago": w.since_last_heartbeat.as_millis() as u64,
                "memory_reserved_bytes": w.load.map(|l| l.memory_reserved_bytes),
                "memory_limit_bytes": w.load.map(|l| l.memory_limit_bytes),
                "spool_bytes": w.load.map(|l| l.spool_bytes),
            })
        })
        .collect();
    json_response(Value::Array(workers))
}
