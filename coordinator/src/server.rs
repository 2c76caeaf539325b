//! Starting and stopping a coordinator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tally_common::MAX_MESSAGE_BYTES;
use tally_common::security::ClusterSecurity;
use tally_proto::coordinator::coordinator_service_server::CoordinatorServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use crate::data_roots::DataRoots;
use crate::error::CoordinatorError;
use crate::jobs::JobManager;
use crate::service::CoordinatorRpc;
use crate::state::CoordinatorState;
use crate::workers::WorkerRegistry;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub bind: SocketAddr,
    pub heartbeat_interval: Duration,
    /// A worker silent this long is dead.
    pub heartbeat_timeout: Duration,
    /// Hash partitions per exchange for each live worker (unless a job sets
    /// `datafusion.execution.target_partitions`).
    pub partitions_per_worker: usize,
    /// How long a finished job's answer stays on the workers for the client to fetch.
    pub result_ttl: Duration,
    /// Where `CREATE TABLE ... AS SELECT` writes a table given no location.
    pub table_dir: PathBuf,
    /// The folders SQL may read and write tables under (the table dir is always one).
    pub data_roots: Vec<PathBuf>,
    /// The cluster token and TLS, for what it serves and what it calls.
    pub security: ClusterSecurity,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(15),
            partitions_per_worker: 2,
            result_ttl: Duration::from_secs(600),
            table_dir: std::env::temp_dir().join("tally-tables"),
            data_roots: std::env::current_dir().into_iter().collect(),
            security: ClusterSecurity::default(),
        }
    }
}

pub struct CoordinatorHandle {
    /// `host:port` of the coordinator's gRPC service.
    pub endpoint: String,
    state: Arc<CoordinatorState>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl CoordinatorHandle {
    /// Registers a table, as `--table NAME=PATH` does: the operator's own tables are trusted,
    /// so their paths become data roots.
    pub async fn register_table(&self, name: &str, path: &str) -> Result<(), CoordinatorError> {
        self.state.data_roots.allow(path);
        self.state
            .register_table(name, path, None)
            .await
            .map(|_| ())
    }

    pub fn live_workers(&self) -> usize {
        self.state.workers.alive().len()
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
    }
}

pub async fn start_coordinator(
    config: CoordinatorConfig,
) -> Result<CoordinatorHandle, CoordinatorError> {
    config.security.check_listen(config.bind)?;
    let mut roots = config.data_roots.clone();
    roots.push(config.table_dir.clone());
    let data_roots = DataRoots::new(&roots)?;
    let listener =
        TcpListener::bind(config.bind)
            .await
            .map_err(|source| CoordinatorError::Bind {
                addr: config.bind.to_string(),
                source,
            })?;
    let local = listener
        .local_addr()
        .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
    let endpoint = local.to_string();

    let workers = Arc::new(WorkerRegistry::new(
        config.heartbeat_timeout,
        config.security.clone(),
    ));
    let jobs = JobManager::new(workers.clone(), config.result_ttl);
    let state = Arc::new(CoordinatorState::new(
        workers.clone(),
        jobs.clone(),
        config.partitions_per_worker,
        config.table_dir.clone(),
        data_roots,
    ));
    let rpc = CoordinatorServiceServer::new(CoordinatorRpc::new(
        state.clone(),
        config.heartbeat_interval.as_millis() as u64,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut stop = shutdown_rx.clone();
    let server = tokio::spawn(
        config
            .security
            .server()?
            .add_service(config.security.guard(rpc))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }),
    );

    let mut stop = shutdown_rx;
    let interval = config.heartbeat_interval;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            for dead in workers.expire() {
                jobs.worker_lost(&dead);
            }
        }
    });

    tracing::info!(%endpoint, "coordinator listening");
    Ok(CoordinatorHandle {
        endpoint,
        state,
        shutdown: shutdown_tx,
        server,
    })
}
