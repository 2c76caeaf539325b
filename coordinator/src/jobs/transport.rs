//! How the scheduler reaches workers. The scheduler sees only this trait: the gRPC
//! implementation talks to worker processes, and the in-process one (tests) lets a test play
//! the workers, so the job state machine is tested without sockets or timing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tally_common::failure::FailureKind;
use tally_common::ids::{JobId, TaskKey};
use tally_common::security::{AuthChannel, ClusterSecurity};
use tally_proto::worker::worker_service_client::WorkerServiceClient;
use tally_proto::worker::{CancelTaskRequest, DropJobRequest, PingRequest, RunTaskRequest};

use super::model::WorkerSettings;
use super::workers::WorkerRef;

/// One task for one worker: its stage plan (datafusion-proto bytes) and the job's settings.
#[derive(Debug, Clone)]
pub(crate) struct TaskAssignment {
    pub task: TaskKey,
    pub plan: Arc<[u8]>,
    pub settings: WorkerSettings,
}

/// A call a worker did not carry out, classified.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CallError {
    pub kind: FailureKind,
    pub message: String,
}

#[async_trait]
pub(crate) trait WorkerTransport: Send + Sync + 'static {
    /// Starts the task; its outcome comes later as a report.
    async fn run_task(&self, worker: &WorkerRef, task: TaskAssignment) -> Result<(), CallError>;
    async fn cancel_task(&self, worker: &WorkerRef, task: &TaskKey) -> Result<(), CallError>;
    /// Cancels the job's tasks on the worker and deletes its spooled output there.
    async fn drop_job(&self, worker: &WorkerRef, job: &JobId) -> Result<(), CallError>;
    /// Answers while the worker serves.
    async fn ping(&self, worker: &WorkerRef) -> Result<(), CallError>;
}

/// Workers as processes, over gRPC: one lazily connected client per worker endpoint.
pub(crate) struct GrpcTransport {
    security: ClusterSecurity,
    clients: Mutex<HashMap<String, WorkerServiceClient<AuthChannel>>>,
}

impl GrpcTransport {
    pub(crate) fn new(security: ClusterSecurity) -> Self {
        Self {
            security,
            clients: Mutex::default(),
        }
    }

    fn client(&self, worker: &WorkerRef) -> Result<WorkerServiceClient<AuthChannel>, CallError> {
        let mut clients = self.clients.lock().expect("worker clients poisoned");
        if let Some(client) = clients.get(&worker.endpoint) {
            return Ok(client.clone());
        }
        let client: WorkerServiceClient<AuthChannel> = self
            .security
            .lazy_client(&worker.endpoint)
            .map_err(|e| CallError {
                kind: FailureKind::Unreachable,
                message: format!("worker {} at {}: {e}", worker.id, worker.endpoint),
            })?;
        clients.insert(worker.endpoint.clone(), client.clone());
        Ok(client)
    }
}

/// A failed call: one the worker did not answer names the worker; one it refused carries the
/// worker's own message.
fn call_error(worker: &WorkerRef, status: tonic::Status) -> CallError {
    let kind = FailureKind::of_status(&status);
    let message = if kind == FailureKind::Unreachable {
        format!(
            "worker {} at {} did not answer: {}",
            worker.id,
            worker.endpoint,
            status.message()
        )
    } else {
        status.message().to_string()
    };
    CallError { kind, message }
}

#[async_trait]
impl WorkerTransport for GrpcTransport {
    async fn run_task(&self, worker: &WorkerRef, task: TaskAssignment) -> Result<(), CallError> {
        let request = RunTaskRequest {
            task: Some((&task.task).into()),
            plan: task.plan.to_vec(),
            settings: task.settings.as_ref().clone(),
        };
        self.client(worker)?
            .run_task(request)
            .await
            .map(|_| ())
            .map_err(|status| call_error(worker, status))
    }

    async fn cancel_task(&self, worker: &WorkerRef, task: &TaskKey) -> Result<(), CallError> {
        let request = CancelTaskRequest {
            task: Some(task.into()),
        };
        self.client(worker)?
            .cancel_task(request)
            .await
            .map(|_| ())
            .map_err(|status| call_error(worker, status))
    }

    async fn drop_job(&self, worker: &WorkerRef, job: &JobId) -> Result<(), CallError> {
        let request = DropJobRequest {
            job_id: job.to_string(),
        };
        self.client(worker)?
            .drop_job(request)
            .await
            .map(|_| ())
            .map_err(|status| call_error(worker, status))
    }

    async fn ping(&self, worker: &WorkerRef) -> Result<(), CallError> {
        self.client(worker)?
            .ping(PingRequest {})
            .await
            .map(|_| ())
            .map_err(|status| call_error(worker, status))
    }
}
