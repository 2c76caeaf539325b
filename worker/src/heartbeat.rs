//! Membership and the channel tasks report on. Without etcd a worker registers with its
//! coordinator and heartbeats to it; with etcd it puts itself in the cluster state under a
//! lease it keeps alive, and reports to whichever coordinator leads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_common::security::{AuthChannel, ClusterSecurity};
use tally_common::{MAX_MESSAGE_BYTES, root_cause};
use tally_meta::{SharedMetaStore, WorkerRecord};
use tally_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use tally_proto::coordinator::{HeartbeatRequest, RegisterWorkerRequest, TaskStatusReport};
use tokio::sync::watch;

use crate::error::WorkerError;
use crate::executor::TaskExecutor;

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
}

fn connect_lazy(
    endpoint: &str,
    security: &ClusterSecurity,
) -> Result<CoordinatorServiceClient<AuthChannel>, WorkerError> {
    let channel = security.lazy_channel(endpoint, Duration::from_secs(5))?;
    Ok(CoordinatorServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

impl CoordinatorLink {
    pub(crate) fn fixed(endpoint: &str, security: &ClusterSecurity) -> Result<Self, WorkerError> {
        let client = connect_lazy(endpoint, security)?;
        Ok(Self {
            finder: Finder::Fixed(endpoint.to_string()),
            security: security.clone(),
            current: Arc::new(Mutex::new(Some((endpoint.to_string(), client)))),
        })
    }

    pub(crate) fn leader_of(store: SharedMetaStore, security: &ClusterSecurity) -> Self {
        Self {
            finder: Finder::Leader(store),
            security: security.clone(),
            current: Arc::default(),
        }
    }

    /// The coordinator to call, found again after a failure.
    async fn coordinator(&self) -> Result<Coordinator, WorkerError> {
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
        let client = connect_lazy(&endpoint, &self.security)?;
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
    async fn register(&self, worker: &WorkerRecord) -> Result<Duration, WorkerError> {
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

/// Keeps the worker a member of the cluster until shutdown.
pub(crate) enum Membership {
    /// Registration and heartbeats through the coordinator's RPCs.
    Coordinator(CoordinatorLink),
    /// A record in the cluster state under a lease of `ttl`.
    Store {
        store: SharedMetaStore,
        ttl: Duration,
    },
}

impl Membership {
    /// Joins now, so a worker that cannot join fails to start with the reason.
    pub(crate) async fn join(
        self,
        worker: WorkerRecord,
        executor: Arc<TaskExecutor>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), WorkerError> {
        match self {
            Membership::Coordinator(link) => {
                let every = link.register(&worker).await?;
                tokio::spawn(heartbeats(link, every, worker, executor, shutdown));
            }
            Membership::Store { store, ttl } => {
                store
                    .register_worker(&worker, ttl)
                    .await
                    .map_err(|e| WorkerError::Membership(e.to_string()))?;
                tracing::info!(worker_id = %worker.id, "joined the cluster");
                tokio::spawn(keep_lease(store, ttl, worker, shutdown));
            }
        }
        Ok(())
    }
}

async fn heartbeats(
    link: CoordinatorLink,
    mut interval: Duration,
    worker: WorkerRecord,
    executor: Arc<TaskExecutor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
        let request = HeartbeatRequest {
            worker_id: worker.id.to_string(),
            running_tasks: executor.running_count() as u32,
        };
        let Ok((_, mut client)) = link.coordinator().await else {
            continue;
        };
        match client.heartbeat(request).await {
            Ok(response) if !response.get_ref().registered => {
                if let Ok(every) = link.register(&worker).await {
                    interval = every;
                }
            }
            Ok(_) => {}
            Err(status) => {
                tracing::warn!(worker_id = %worker.id, error = %status.message(), "heartbeat failed")
            }
        }
    }
}

/// Refreshes the lease three times per ttl, joins again under a new lease if it lapsed, and
/// leaves on shutdown.
async fn keep_lease(
    store: SharedMetaStore,
    ttl: Duration,
    worker: WorkerRecord,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => break,
        }
        let lapsed = match store.keep_worker_alive(&worker.id).await {
            Ok(alive) => !alive,
            Err(error) => {
                tracing::warn!(worker_id = %worker.id, %error, "lease keep-alive failed");
                true
            }
        };
        if lapsed {
            tracing::warn!(worker_id = %worker.id, "lease lapsed; joining again");
            if let Err(error) = store.register_worker(&worker, ttl).await {
                tracing::warn!(worker_id = %worker.id, %error, "could not join again");
            }
        }
    }
    if let Err(error) = store.deregister_worker(&worker.id).await {
        tracing::warn!(worker_id = %worker.id, %error, "could not leave the cluster");
    }
}
