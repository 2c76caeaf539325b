//! The workers the coordinator knows, as the cluster state reports them, and their clients.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tally_common::MAX_MESSAGE_BYTES;
use tally_common::ids::WorkerId;
use tally_common::security::{AuthChannel, ClusterSecurity};
use tally_meta::WorkerRecord;
use tally_proto::coordinator::WorkerInfo;
use tally_proto::worker::worker_service_client::WorkerServiceClient;

use crate::error::CoordinatorError;

#[derive(Clone, Debug)]
pub(crate) struct WorkerRef {
    pub id: WorkerId,
    pub endpoint: String,
    pub client: WorkerServiceClient<AuthChannel>,
}

struct WorkerEntry {
    worker: WorkerRef,
    task_slots: u32,
    last_seen: Instant,
    alive: bool,
}

pub(crate) struct WorkerRegistry {
    workers: Mutex<BTreeMap<WorkerId, WorkerEntry>>,
    security: ClusterSecurity,
}

impl WorkerRegistry {
    pub(crate) fn new(security: ClusterSecurity) -> Self {
        Self {
            workers: Mutex::default(),
            security,
        }
    }

    /// A worker joined (or joined again): the cluster state said so.
    pub(crate) fn up(&self, worker: &WorkerRecord) -> Result<(), CoordinatorError> {
        let endpoint = &worker.endpoint;
        let channel = self
            .security
            .lazy_channel(endpoint, Duration::from_secs(5))
            .map_err(|e| CoordinatorError::Query(format!("bad worker endpoint {endpoint}: {e}")))?;
        let client = WorkerServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tracing::info!(worker_id = %worker.id, %endpoint, "worker up");
        self.lock().insert(
            worker.id.clone(),
            WorkerEntry {
                worker: WorkerRef {
                    id: worker.id.clone(),
                    endpoint: endpoint.clone(),
                    client,
                },
                task_slots: worker.task_slots,
                last_seen: Instant::now(),
                alive: true,
            },
        );
        Ok(())
    }

    /// Refuses an endpoint no channel can be made to, before it enters the cluster state.
    pub(crate) fn check_endpoint(&self, endpoint: &str) -> Result<(), CoordinatorError> {
        self.security
            .endpoint(endpoint)
            .map(|_| ())
            .map_err(|e| CoordinatorError::Query(format!("bad worker endpoint {endpoint}: {e}")))
    }

    /// A worker's liveness lapsed; it stays listed as dead.
    pub(crate) fn down(&self, id: &WorkerId) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.alive = false;
            tracing::warn!(worker_id = %id, "worker down");
        }
    }

    /// Notes a heartbeat, for `tally workers`.
    pub(crate) fn seen(&self, id: &WorkerId) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.last_seen = Instant::now();
        }
    }

    pub(crate) fn alive(&self) -> Vec<WorkerRef> {
        self.lock()
            .values()
            .filter(|e| e.alive)
            .map(|e| e.worker.clone())
            .collect()
    }

    pub(crate) fn list(&self) -> Vec<WorkerInfo> {
        self.lock()
            .values()
            .map(|e| WorkerInfo {
                worker_id: e.worker.id.to_string(),
                endpoint: e.worker.endpoint.clone(),
                task_slots: e.task_slots,
                alive: e.alive,
                last_heartbeat_ms_ago: e.last_seen.elapsed().as_millis() as u64,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkerId, WorkerEntry>> {
        self.workers.lock().expect("worker registry poisoned")
    }
}
