//! The channel a worker reports on: to the coordinator it was given, or with etcd, to
//! whichever coordinator leads (found again after a failed call).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_common::root_cause;
use tally_common::security::{AuthChannel, ClusterSecurity};
use tally_meta::{SharedMetaStore, WorkerRecord};
use tally_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use tally_proto::coordinator::{RegisterWorkerRequest, TaskState, TaskStatusReport};

use crate::error::WorkerError;
use crate::metrics::WorkerMetrics;

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
const REGISTER_ATTEMPTS: u32 = 10;

/// How the worker finds the coordinator to talk to.
#[derive(Clone)]
enum Finder {
    /// The address it was given.
    Fixed(String),
    /// The leader named in the cluster state.
    Leader(SharedMetaStore),
}

/// A coordinator's address and a client to it.
type Coordinator = (String, CoordinatorServiceClient<AuthChannel>);

#[derive(Clone)]
pub(crate) struct CoordinatorLink {
    finder: Finder,
    security: ClusterSecurity,
    /// The coordinator last found, with a client to it.
    current: Arc<Mutex<Option<Coordinator>>>,
    /// Every finished task passes through `report`: it is counted there.
    metrics: Option<Arc<WorkerMetrics>>,
}

impl CoordinatorLink {
    pub(crate) fn fixed(endpoint: &str, security: &ClusterSecurity) -> Result<Self, WorkerError> {
        let client = security.lazy_client(endpoint)?;
        Ok(Self {
            finder: Finder::Fixed(endpoint.to_string()),
            security: security.clone(),
            current: Arc::new(Mutex::new(Some((endpoint.to_string(), client)))),
            metrics: None,
        })
    }

    /// Counts the tasks this link reports in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<WorkerMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub(crate) fn leader_of(store: SharedMetaStore, security: &ClusterSecurity) -> Self {
        Self {
            finder: Finder::Leader(store),
            security: security.clone(),
            current: Arc::default(),
            metrics: None,
        }
    }

    /// The coordinator to call, found again after a failure.
    pub(crate) async fn coordinator(&self) -> Result<Coordinator, WorkerError> {
        if let Some(current) = self.current.lock().expect("link poisoned").clone() {
            return Ok(current);
        }
        let endpoint = match &self.finder {
            Finder::Fixed(endpoint) => endpoint.clone(),
            Finder::Leader(store) => store
                .leader()
                .await
                .map_err(|e| WorkerError::Coordinator {
                    endpoint: "(the leader)".to_string(),
                    message: e.to_string(),
                })?
                .ok_or_else(|| WorkerError::Coordinator {
                    endpoint: "(the leader)".to_string(),
                    message: "no coordinator leads the cluster".to_string(),
                })?,
        };
        let client: CoordinatorServiceClient<AuthChannel> = self.security.lazy_client(&endpoint)?;
        *self.current.lock().expect("link poisoned") = Some((endpoint.clone(), client.clone()));
        Ok((endpoint, client))
    }

    /// Forgets the coordinator after a failed call, so the next call looks for the leader.
    fn forget(&self) {
        if matches!(self.finder, Finder::Leader(_)) {
            *self.current.lock().expect("link poisoned") = None;
        }
    }

    fn error(endpoint: &str, status: tonic::Status) -> WorkerError {
        let cause = root_cause(&status);
        let message = if cause == status.message() {
            cause
        } else {
            format!("{}: {cause}", status.message())
        };
        WorkerError::Coordinator {
            endpoint: endpoint.to_string(),
            message,
        }
    }

    /// Registers, retrying for a while: a worker may start before its coordinator.
    pub(crate) async fn register(&self, worker: &WorkerRecord) -> Result<Duration, WorkerError> {
        let request = RegisterWorkerRequest {
            worker_id: worker.id.to_string(),
            endpoint: worker.endpoint.clone(),
            task_slots: worker.task_slots,
        };
        let mut attempt = 0;
        loop {
            let (endpoint, mut client) = self.coordinator().await?;
            match client.register_worker(request.clone()).await {
                Ok(response) => {
                    let ms = response.into_inner().heartbeat_interval_ms;
                    tracing::info!(worker_id = %worker.id, coordinator = %endpoint, "registered");
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
                    tracing::warn!(coordinator = %endpoint, error = %status.message(), "registration failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt.min(5) as u64)).await;
                }
                Err(status) => return Err(Self::error(&endpoint, status)),
            }
        }
    }

    /// Delivers a task report, retrying briefly so a transient failure (or a change of
    /// leader) does not lose it.
    pub(crate) async fn report(&self, report: TaskStatusReport) {
        if let Some(metrics) = &self.metrics {
            metrics.task_ended(
                report.state() == TaskState::Succeeded,
                Duration::from_millis(report.elapsed_ms),
                report.spilled_bytes,
            );
        }
        for attempt in 1..=5u64 {
            let delivered = match self.coordinator().await {
                Ok((_, mut client)) => client.report_task_status(report.clone()).await.map(|_| ()),
                Err(error) => Err(tonic::Status::unavailable(error.to_string())),
            };
            match delivered {
                Ok(()) => return,
                Err(status) => {
                    self.forget();
                    tracing::warn!(attempt, error = %status.message(), "task report not delivered");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
    }
}
