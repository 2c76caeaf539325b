//! The workers the coordinator knows, as the cluster state reports them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tally_common::ids::WorkerId;
use tally_common::security::ClusterSecurity;
use tally_meta::WorkerRecord;

use crate::error::CoordinatorError;

/// A worker as the scheduler addresses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WorkerRef {
    pub id: WorkerId,
    pub endpoint: String,
}

/// A worker as `tally workers` lists it.
#[derive(Clone, Debug)]
pub(crate) struct WorkerView {
    pub id: WorkerId,
    pub endpoint: String,
    pub task_slots: u32,
    pub alive: bool,
    pub since_last_heartbeat: Duration,
    /// As its last heartbeat said; None before one (and for workers that keep an etcd lease
    /// instead of heartbeating here).
    pub load: Option<WorkerLoad>,
}

/// A worker's memory and disk use, as it reports them in its heartbeats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WorkerLoad {
    pub memory_reserved_bytes: u64,
    pub memory_limit_bytes: u64,
    pub spool_bytes: u64,
}

struct WorkerEntry {
    worker: WorkerRef,
    task_slots: u32,
    last_seen: Instant,
    alive: bool,
    load: Option<WorkerLoad>,
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
        self.check_endpoint(endpoint)?;
        tracing::info!(worker_id = %worker.id, %endpoint, "worker up");
        self.lock().insert(
            worker.id.clone(),
            WorkerEntry {
                worker: WorkerRef {
                    id: worker.id.clone(),
                    endpoint: endpoint.clone(),
                },
                task_slots: worker.task_slots,
                last_seen: Instant::now(),
                alive: true,
                load: None,
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

    /// Notes a heartbeat and what it said the worker holds (a worker of an older version
    /// says nothing: the last figures stay), for `tally workers` and the web UI.
    pub(crate) fn seen(&self, id: &WorkerId, load: Option<WorkerLoad>) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.last_seen = Instant::now();
            if load.is_some() {
                entry.load = load;
            }
        }
    }

    pub(crate) fn alive(&self) -> Vec<WorkerRef> {
        self.lock()
            .values()
            .filter(|e| e.alive)
            .map(|e| e.worker.clone())
            .collect()
    }

    pub(crate) fn list(&self) -> Vec<WorkerView> {
        self.lock()
            .values()
            .map(|e| WorkerView {
                id: e.worker.id.clone(),
                endpoint: e.worker.endpoint.clone(),
                task_slots: e.task_slots,
                alive: e.alive,
                since_last_heartbeat: e.last_seen.elapsed(),
                load: e.load,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkerId, WorkerEntry>> {
        self.workers.lock().expect("worker registry poisoned")
    }
}
