//! Cluster state behind one trait: the workers and their liveness, the catalog, the job
//! history, and which coordinator leads. The embedded default keeps it in memory; a real
//! cluster keeps it in etcd so it outlives any one process.

mod error;
mod etcd;
mod memory;
mod records;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tally_common::ids::{JobId, WorkerId};
use tokio::sync::{mpsc, watch};

pub use error::MetaError;
pub use etcd::EtcdStore;
pub use memory::InMemoryStore;
pub use records::{CoveredInput, CoveredOffset, TableRecord, ViewManifest, WorkerRecord};

/// A change in cluster membership. A watch starts with an `Up` for every live worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    Up(WorkerRecord),
    Down(WorkerId),
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Adds or replaces a worker that stays live for `ttl` unless kept alive.
    async fn register_worker(&self, worker: &WorkerRecord, ttl: Duration) -> Result<(), MetaError>;

    /// Extends a worker's life by its ttl; false when it has already expired (the worker
    /// must register again).
    async fn keep_worker_alive(&self, id: &WorkerId) -> Result<bool, MetaError>;

    /// Removes a worker at once (a clean shutdown).
    async fn deregister_worker(&self, id: &WorkerId) -> Result<(), MetaError>;

    /// Membership changes until the receiver is dropped.
    async fn watch_workers(&self) -> Result<mpsc::UnboundedReceiver<WorkerEvent>, MetaError>;

    async fn put_table(&self, table: &TableRecord) -> Result<(), MetaError>;
    async fn delete_table(&self, name: &str) -> Result<(), MetaError>;
    async fn tables(&self) -> Result<Vec<TableRecord>, MetaError>;

    /// Stores a job's record (an encoded status the coordinator defines).
    async fn put_job(&self, id: &JobId, record: Vec<u8>) -> Result<(), MetaError>;
    async fn jobs(&self) -> Result<Vec<Vec<u8>>, MetaError>;

    /// Waits until `endpoint` leads the cluster's coordinators.
    async fn campaign(&self, endpoint: &str) -> Result<Leadership, MetaError>;

    /// The endpoint of the coordinator that leads now, if any.
    async fn leader(&self) -> Result<Option<String>, MetaError>;
}

pub type SharedMetaStore = Arc<dyn MetaStore>;

/// Where cluster state lives: `None` keeps it in this process.
#[derive(Debug, Clone, Default)]
pub struct MetaConfig {
    /// etcd endpoints (`host:port` or URLs); empty for the in-memory store.
    pub etcd: Vec<String>,
    /// Keys live under `/tally/<cluster>/`, so clusters can share one etcd.
    pub cluster: String,
}

impl MetaConfig {
    pub fn uses_etcd(&self) -> bool {
        !self.etcd.is_empty()
    }

    pub async fn open(&self) -> Result<SharedMetaStore, MetaError> {
        if self.uses_etcd() {
            let cluster = if self.cluster.is_empty() {
                "default"
            } else {
                &self.cluster
            };
            Ok(Arc::new(EtcdStore::connect(&self.etcd, cluster).await?))
        } else {
            Ok(Arc::new(InMemoryStore::default()))
        }
    }
}

/// Gives leadership up at once, so a standby need not wait for a lease to lapse.
pub(crate) type Resign =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Held by the leading coordinator; `lost` turns true when another may have taken over.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    /// Keeps the leader's lease alive while held.
    _keeper: Option<AbortOnDrop>,
    resign: Option<Resign>,
}

impl Leadership {
    pub(crate) fn new(
        lost: watch::Receiver<bool>,
        keeper: Option<tokio::task::JoinHandle<()>>,
        resign: Option<Resign>,
    ) -> Self {
        Self {
            lost,
            _keeper: keeper.map(AbortOnDrop),
            resign,
        }
    }

    /// Resolves when leadership is lost.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Steps down (a clean shutdown). Dropping a leadership without resigning behaves like a
    /// crash: the standby takes over when the lease lapses.
    pub async fn resign(mut self) {
        if let Some(resign) = self.resign.take() {
            resign().await;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
