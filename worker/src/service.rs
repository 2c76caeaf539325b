//! The worker's gRPC control service.

use std::sync::Arc;

use tally_common::ids::{JobId, TaskKey};
use tally_proto::worker::worker_service_server::WorkerService;
use tally_proto::worker::{
    CancelTaskRequest, CancelTaskResponse, DropJobRequest, DropJobResponse, PingRequest,
    PingResponse, RunTaskRequest, RunTaskResponse,
};
use tonic::{Request, Response, Status};

use crate::error::WorkerError;
use crate::executor::TaskExecutor;

pub(crate) struct WorkerRpc {
    executor: Arc<TaskExecutor>,
}

impl WorkerRpc {
    pub(crate) fn new(executor: Arc<TaskExecutor>) -> Self {
        Self { executor }
    }
}

/// The task named in a request; its job ID names spool folders, so it is checked.
fn task_key(task: Option<tally_proto::plan::TaskKey>) -> Result<TaskKey, WorkerError> {
    let task = task.ok_or_else(|| WorkerError::InvalidRequest("missing task".to_string()))?;
    JobId::parse(&task.job_id).map_err(WorkerError::InvalidRequest)?;
    Ok(TaskKey::from(task))
}

#[tonic::async_trait]
impl WorkerService for WorkerRpc {
    async fn run_task(
        &self,
        request: Request<RunTaskRequest>,
    ) -> Result<Response<RunTaskResponse>, Status> {
        let request = request.into_inner();
        let task = task_key(request.task)?;
        self.executor
            .launch(task, &request.plan, &request.settings)?;
        Ok(Response::new(RunTaskResponse {}))
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        let task = task_key(request.into_inner().task)?;
        let was_running = self.executor.cancel(&task);
        Ok(Response::new(CancelTaskResponse { was_running }))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            worker_id: self.executor.env().worker_id.to_string(),
        }))
    }

    async fn drop_job(
        &self,
        request: Request<DropJobRequest>,
    ) -> Result<Response<DropJobResponse>, Status> {
        let job =
            JobId::parse(&request.into_inner().job_id).map_err(WorkerError::InvalidRequest)?;
        self.executor.drop_job(&job)?;
        tracing::debug!(job_id = %job, worker_id = %self.executor.env().worker_id, "job dropped");
        Ok(Response::new(DropJobResponse {}))
    }
}
