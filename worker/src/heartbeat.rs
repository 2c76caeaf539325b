//! Membership. Without etcd a worker registers with its coordinator and heartbeats to it,
//! each heartbeat saying what it holds (memory reserved of its pool, bytes spooled) for the
//! web UI; with etcd it puts itself in the cluster state under a lease it keeps alive.

use std::time::Duration;

use tally_meta::{SharedMetaStore, WorkerRecord};
use tally_proto::coordinator::{HeartbeatRequest, WorkerLoad};
use tokio::sync::watch;

use crate::coordinator_link::CoordinatorLink;
use crate::error::WorkerError;
use crate::metrics::Gauges;

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
        gauges: Gauges,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), WorkerError> {
        match self {
            Membership::Coordinator(link) => {
                let every = link.register(&worker).await?;
                tokio::spawn(heartbeats(link, every, worker, gauges, shutdown));
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
    gauges: Gauges,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
        // Reading the gauges walks the spool folder: off the async threads.
        let read = gauges.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || read()).await else {
            continue;
        };
        let request = HeartbeatRequest {
            worker_id: worker.id.to_string(),
            running_tasks: now.tasks_running as u32,
            load: Some(WorkerLoad {
                memory_reserved_bytes: now.memory_reserved as u64,
                memory_limit_bytes: now.memory_limit as u64,
                spool_bytes: now.spool_bytes,
            }),
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
