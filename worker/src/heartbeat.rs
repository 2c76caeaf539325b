//! Membership. Without etcd a worker registers with its coordinator and heartbeats to it;
//! with etcd it puts itself in the cluster state under a lease it keeps alive.

use std::sync::Arc;
use std::time::Duration;

use tally_meta::{SharedMetaStore, WorkerRecord};
use tally_proto::coordinator::HeartbeatRequest;
use tokio::sync::watch;

use crate::coordinator_link::CoordinatorLink;
use crate::error::WorkerError;
use crate::executor::TaskExecutor;

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
