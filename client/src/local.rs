//! An embedded cluster: a coordinator and N workers in this process, each on its own
//! 127.0.0.1 port, talking real gRPC and Flight to each other. `tally local`, `tally sql`
//! without `--coordinator`, and the tests use it.

use std::path::PathBuf;
use std::time::Duration;

use tally_common::security::ClusterSecurity;
use tally_coordinator::{CoordinatorConfig, CoordinatorHandle, start_coordinator};
use tally_worker::{WorkerConfig, WorkerHandle, start_worker};

use crate::client::Client;
use crate::error::ClientError;

pub struct LocalCluster {
    coordinator: CoordinatorHandle,
    security: ClusterSecurity,
    workers: Vec<WorkerHandle>,
    spool_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct LocalClusterOptions {
    pub workers: usize,
    /// Coordinator port; 0 picks a free one.
    pub port: u16,
    pub coordinator: CoordinatorConfig,
    /// Bytes each worker's operators may hold (see `WorkerConfig::memory_limit`).
    pub worker_memory_limit: usize,
}

impl Default for LocalClusterOptions {
    fn default() -> Self {
        Self {
            workers: 3,
            port: 0,
            coordinator: CoordinatorConfig::default(),
            worker_memory_limit: tally_worker::DEFAULT_MEMORY_LIMIT,
        }
    }
}

impl LocalCluster {
    pub async fn start(workers: usize) -> Result<Self, ClientError> {
        Self::start_with(LocalClusterOptions {
            workers,
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(options: LocalClusterOptions) -> Result<Self, ClientError> {
        if options.workers == 0 {
            return Err(ClientError::Local(
                "a local cluster needs at least one worker".to_string(),
            ));
        }
        let mut config = options.coordinator.clone();
        config.bind.set_port(options.port);
        let coordinator = start_coordinator(config)
            .await
            .map_err(|e| ClientError::Local(e.to_string()))?;
        // With etcd another coordinator of the same cluster may lead: wait a while for it.
        tokio::time::timeout(Duration::from_secs(30), coordinator.until_leading())
            .await
            .map_err(|_| {
                ClientError::Local(format!(
                    "the coordinator at {} did not become the leader of cluster {:?} in 30 s",
                    coordinator.endpoint, options.coordinator.meta.cluster
                ))
            })?;
        let spool_dir = std::env::temp_dir().join(format!(
            "tally-local-{}-{}",
            std::process::id(),
            coordinator.endpoint.replace([':', '.'], "-")
        ));
        let mut workers = Vec::new();
        for _ in 0..options.workers {
            let mut config = WorkerConfig::local(coordinator.endpoint.clone(), spool_dir.clone());
            config.meta = options.coordinator.meta.clone();
            config.memory_limit = options.worker_memory_limit;
            config.security = options.coordinator.security.clone();
            let worker = start_worker(config)
                .await
                .map_err(|e| ClientError::Local(e.to_string()))?;
            workers.push(worker);
        }
        let cluster = Self {
            coordinator,
            security: options.coordinator.security.clone(),
            workers,
            spool_dir,
        };
        cluster.wait_for_workers(options.workers).await?;
        Ok(cluster)
    }

    async fn wait_for_workers(&self, count: usize) -> Result<(), ClientError> {
        for _ in 0..100 {
            if self.coordinator.live_workers() >= count {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ClientError::Local(format!(
            "only {} of {count} workers registered",
            self.coordinator.live_workers()
        )))
    }

    /// The coordinator's `host:port`.
    pub fn endpoint(&self) -> &str {
        &self.coordinator.endpoint
    }

    /// The web UI's URL, when the coordinator was given an HTTP address.
    pub fn http_endpoint(&self) -> Option<&str> {
        self.coordinator.http_endpoint.as_deref()
    }

    pub fn worker_endpoints(&self) -> Vec<String> {
        self.workers.iter().map(|w| w.endpoint.clone()).collect()
    }

    /// Each worker's spool folder (a job's files are under `<folder>/<job id>`).
    pub fn worker_spool_dirs(&self) -> Vec<PathBuf> {
        self.workers
            .iter()
            .map(|w| self.spool_dir.join(w.worker_id.as_str()))
            .collect()
    }

    /// Stops a worker abruptly, as a crash would: no goodbye, its spooled output gone with it.
    /// False when no worker has that id.
    pub fn kill_worker(&mut self, id: &str) -> bool {
        match self.workers.iter().position(|w| w.worker_id.as_str() == id) {
            Some(index) => {
                self.workers.remove(index).kill();
                true
            }
            None => false,
        }
    }

    pub async fn client(&self) -> Result<Client, ClientError> {
        Client::connect_with(self.endpoint(), self.security.clone()).await
    }

    pub async fn register_table(&self, name: &str, path: &str) -> Result<(), ClientError> {
        self.coordinator
            .register_table(name, path)
            .await
            .map_err(|e| ClientError::Query(e.to_string()))
    }

    pub async fn shutdown(self) {
        for worker in self.workers {
            worker.shutdown().await;
        }
        self.coordinator.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.spool_dir);
    }
}
