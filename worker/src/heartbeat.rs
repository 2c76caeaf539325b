//! Registration with the coordinator, heartbeats, and the channel tasks report on.

use std::sync::Arc;
use std::time::Duration;

use tally_common::ids::WorkerId;
use tally_common::security::{AuthChannel, ClusterSecurity};
use tally_common::{MAX_MESSAGE_BYTES, root_cause};
use tally_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use tally_proto::coordinator::{HeartbeatRequest, RegisterWorkerRequest, TaskStatusReport};
use tokio::sync::watch;

use crate::error::WorkerError;
use crate::executor::TaskExecutor;

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
const REGISTER_ATTEMPTS: u32 = 10;

#[derive(Clone)]
pub(crate) struct CoordinatorLink {
    endpoint: String,
    client: CoordinatorServiceClient<AuthChannel>,
}

impl CoordinatorLink {
    pub(crate) fn new(endpoint: &str, security: &ClusterSecurity) -> Result<Self, WorkerError> {
        let channel = security.lazy_channel(endpoint, Duration::from_secs(5))?;
        Ok(Self {
            endpoint: endpoint.to_string(),
            client: CoordinatorServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    fn error(&self, status: tonic::Status) -> WorkerError {
        let cause = root_cause(&status);
        let message = if cause == status.message() {
            cause
        } else {
            format!("{}: {cause}", status.message())
        };
        WorkerError::Coordinator {
            endpoint: self.endpoint.clone(),
            message,
        }
    }

    /// Registers, retrying for a while: a worker may start before its coordinator.
    pub(crate) async fn register(
        &self,
        worker_id: &WorkerId,
        endpoint: &str,
        task_slots: u32,
    ) -> Result<Duration, WorkerError> {
        let request = RegisterWorkerRequest {
            worker_id: worker_id.to_string(),
            endpoint: endpoint.to_string(),
            task_slots,
        };
        let mut attempt = 0;
        loop {
            match self.client.clone().register_worker(request.clone()).await {
                Ok(response) => {
                    let ms = response.into_inner().heartbeat_interval_ms;
                    tracing::info!(worker_id = %worker_id, coordinator = %self.endpoint, "registered");
                    return Ok(if ms == 0 {
                        DEFAULT_HEARTBEAT
                    } else {
                        Duration::from_millis(ms)
                    });
                }
                // A refused token will not get better by waiting.
                Err(status)
                    if attempt + 1 < REGISTER_ATTEMPTS
                        && status.code() != tonic::Code::Unauthenticated =>
                {
                    attempt += 1;
                    tracing::warn!(coordinator = %self.endpoint, error = %status.message(), "registration failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt.min(5) as u64)).await;
                }
                Err(status) => return Err(self.error(status)),
            }
        }
    }

    /// Delivers a task report, retrying briefly so a transient failure does not lose it.
    pub(crate) async fn report(&self, report: TaskStatusReport) {
        for attempt in 1..=5u64 {
            match self.client.clone().report_task_status(report.clone()).await {
                Ok(_) => return,
                Err(status) => {
                    tracing::warn!(attempt, error = %status.message(), "task report not delivered");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
    }
}

pub(crate) async fn run_heartbeats(
    link: CoordinatorLink,
    mut interval: Duration,
    worker_id: WorkerId,
    endpoint: String,
    task_slots: u32,
    executor: Arc<TaskExecutor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
        let request = HeartbeatRequest {
            worker_id: worker_id.to_string(),
            running_tasks: executor.running_count() as u32,
        };
        match link.client.clone().heartbeat(request).await {
            Ok(response) if !response.get_ref().registered => {
                if let Ok(every) = link.register(&worker_id, &endpoint, task_slots).await {
                    interval = every;
                }
            }
            Ok(_) => {}
            Err(status) => {
                tracing::warn!(worker_id = %worker_id, error = %status.message(), "heartbeat failed")
            }
        }
    }
}
