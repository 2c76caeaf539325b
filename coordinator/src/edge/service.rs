//! The coordinator's gRPC service: a thin edge that converts messages and errors.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tally_common::ids::{JobId, WorkerId};
use tally_meta::{SharedMetaStore, WorkerRecord};
use tally_proto::coordinator::coordinator_service_server::CoordinatorService;
use tally_proto::coordinator::*;
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::CoordinatorError;
use crate::sql::catalog::TableFormat;
use crate::sql::frontend::SqlFrontend;
use crate::sql::session::JobSettings;

pub(crate) struct CoordinatorRpc {
    frontend: Arc<SqlFrontend>,
    store: SharedMetaStore,
    heartbeat_interval: Duration,
    /// A worker that heartbeats here is dead after this long without one.
    heartbeat_timeout: Duration,
}

impl CoordinatorRpc {
    pub(crate) fn new(
        frontend: Arc<SqlFrontend>,
        store: SharedMetaStore,
        heartbeat_interval: Duration,
        heartbeat_timeout: Duration,
    ) -> Self {
        Self {
            frontend,
            store,
            heartbeat_interval,
            heartbeat_timeout,
        }
    }

    fn status_of(&self, id: &JobId) -> Result<JobStatus, CoordinatorError> {
        self.frontend
            .jobs
            .status(id)
            .map(|job| convert::job_status(&job))
            .ok_or_else(|| CoordinatorError::NotFound(format!("no job {id}")))
    }
}

type JobStatusStream = Pin<Box<dyn Stream<Item = Result<JobStatus, Status>> + Send>>;

#[tonic::async_trait]
impl CoordinatorService for CoordinatorRpc {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let settings = JobSettings(request.settings.into_iter().collect());
        let job_id = self.frontend.submit(&request.sql, settings).await?;
        Ok(Response::new(SubmitJobResponse {
            job_id: job_id.to_string(),
        }))
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<JobStatus>, Status> {
        let id = JobId::from(request.into_inner().job_id);
        Ok(Response::new(self.status_of(&id)?))
    }

    type WatchJobStream = JobStatusStream;

    async fn watch_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = JobId::from(request.into_inner().job_id);
        let Some(mut updates) = self.frontend.jobs.subscribe(&id) else {
            // A job from before this coordinator led has ended: its record is all there is.
            let status = self.status_of(&id)?;
            return Ok(Response::new(Box::pin(tokio_stream::once(Ok(status)))));
        };
        let state = self.frontend.clone();
        let stream = async_stream_of(move |tx| async move {
            loop {
                let Some(job) = state.jobs.status(&id) else {
                    return;
                };
                let finished = job.is_finished();
                if tx.send(Ok(convert::job_status(&job))).await.is_err() || finished {
                    return;
                }
                if updates.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let id = JobId::from(request.into_inner().job_id);
        let state = self
            .frontend
            .jobs
            .cancel(&id)
            .ok_or_else(|| CoordinatorError::NotFound(format!("no job {id}")))?;
        Ok(Response::new(CancelJobResponse {
            state: tally_proto::coordinator::JobState::from(state) as i32,
        }))
    }

    async fn list_jobs(
        &self,
        _request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let mut jobs = self.frontend.jobs.statuses();
        jobs.sort_by_key(|j| j.submitted_at);
        Ok(Response::new(ListJobsResponse {
            jobs: jobs.iter().map(convert::job_status).collect(),
        }))
    }

    async fn register_table(
        &self,
        request: Request<RegisterTableRequest>,
    ) -> Result<Response<RegisterTableResponse>, Status> {
        let request = request.into_inner();
        let format = match request.format.as_str() {
            "" => None,
            format => Some(TableFormat::parse(format)?),
        };
        let table = self
            .frontend
            .catalog
            .register(&request.name, &request.path, format)
            .await?;
        Ok(Response::new(RegisterTableResponse {
            table: Some(convert::table_info(&table)?),
        }))
    }

    async fn list_tables(
        &self,
        _request: Request<ListTablesRequest>,
    ) -> Result<Response<ListTablesResponse>, Status> {
        let tables = self.frontend.catalog.list().await?;
        let tables = tables
            .iter()
            .map(convert::table_info)
            .collect::<Result<_, _>>()?;
        Ok(Response::new(ListTablesResponse { tables }))
    }

    async fn register_worker(
        &self,
        request: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerResponse>, Status> {
        let request = request.into_inner();
        if request.worker_id.is_empty() || request.endpoint.is_empty() {
            return Err(Status::invalid_argument(
                "worker_id and endpoint are required",
            ));
        }
        self.frontend.workers.check_endpoint(&request.endpoint)?;
        let worker = WorkerRecord {
            id: WorkerId::from(request.worker_id),
            endpoint: request.endpoint,
            task_slots: request.task_slots,
        };
        self.store
            .register_worker(&worker, self.heartbeat_timeout)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(RegisterWorkerResponse {
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let id = WorkerId::from(request.worker_id);
        let load = request.load.map(convert::worker_load);
        let registered = self
            .store
            .keep_worker_alive(&id)
            .await
            .map_err(CoordinatorError::from)?;
        if registered {
            self.frontend.workers.seen(&id, load);
        }
        Ok(Response::new(HeartbeatResponse { registered }))
    }

    async fn list_workers(
        &self,
        _request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        Ok(Response::new(ListWorkersResponse {
            workers: self
                .frontend
                .workers
                .list()
                .iter()
                .map(convert::worker_info)
                .collect(),
        }))
    }

    async fn report_task_status(
        &self,
        request: Request<TaskStatusReport>,
    ) -> Result<Response<ReportTaskStatusResponse>, Status> {
        let report = convert::task_report(request.into_inner())
            .ok_or_else(|| Status::invalid_argument("a task report names its task"))?;
        self.frontend.jobs.report(report);
        Ok(Response::new(ReportTaskStatusResponse {}))
    }
}

/// A response stream fed by a task, so the producer can await between items.
fn async_stream_of<F, Fut>(producer: F) -> JobStatusStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<JobStatus, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(producer(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
