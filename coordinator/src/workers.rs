//! The workers the coordinator knows, their liveness from heartbeats, and their clients.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tally_common::MAX_MESSAGE_BYTES;
use tally_common::ids::WorkerId;
use tally_common::security::{AuthChannel, ClusterSecurity};
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
    heartbeat_timeout: Duration,
    security: ClusterSecurity,
}

impl WorkerRegistry {
    pub(crate) fn new(heartbeat_timeout: Duration, security: ClusterSecurity) -> Self {
        Self {
            workers: Mutex::default(),
            heartbeat_timeout,
            security,
        }
    }

    pub(crate) fn register(
        &self,
        id: WorkerId,
        endpoint: String,
        task_slots: u32,
    ) -> Result<(), CoordinatorError> {
        let channel = self
            .security
            .lazy_channel(&endpoint, Duration::from_secs(5))
            .map_err(|e| CoordinatorError::Query(format!("bad worker endpoint: {e}")))?;
        let client = WorkerServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tracing::info!(worker_id = %id, %endpoint, "worker registered");
        self.lock().insert(
            id.clone(),
            WorkerEntry {
                worker: WorkerRef {
                    id,
                    endpoint,
                    client,
                },
                task_slots,
                last_seen: Instant::now(),
                alive: true,
            },
        );
        Ok(())
    }

    /// Records a heartbeat; false when the worker is unknown or was declared dead.
    pub(crate) fn heartbeat(&self, id: &WorkerId) -> bool {
        match self.lock().get_mut(id) {
            Some(entry) if entry.alive => {
                entry.last_seen = Instant::now();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn alive(&self) -> Vec<WorkerRef> {
        self.lock()
            .values()
            .filter(|e| e.alive)
            .map(|e| e.worker.clone())
            .collect()
    }

    /// Declares dead the workers silent for longer than the heartbeat timeout.
    pub(crate) fn expire(&self) -> Vec<WorkerId> {
        let mut dead = Vec::new();
        for entry in self.lock().values_mut() {
            if entry.alive && entry.last_seen.elapsed() > self.heartbeat_timeout {
                entry.alive = false;
                dead.push(entry.worker.id.clone());
            }
        }
        for id in &dead {
            tracing::warn!(worker_id = %id, "worker stopped heartbeating");
        }
        dead
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
