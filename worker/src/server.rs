//! Starting and stopping a worker: one port serves the worker's control service, its Flight
//! service and, over HTTP/1.1, its Prometheus metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tally_common::MAX_MESSAGE_BYTES;
use tally_common::auth::RequireToken;
use tally_common::ids::WorkerId;
use tally_common::security::ClusterSecurity;
use tally_common::shuffle_env::ShuffleEnv;
use tally_common::spool::Spool;
use tally_meta::{MetaConfig, WorkerRecord};
use tally_proto::worker::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use crate::coordinator_link::CoordinatorLink;
use crate::error::WorkerError;
use crate::executor::TaskExecutor;
use crate::flight_service::SpoolFlightService;
use crate::heartbeat::Membership;
use crate::metrics::{self, Gauges, Snapshot, WorkerMetrics, bytes_under};
use crate::service::WorkerRpc;

/// 4 GiB: three workers of an embedded cluster fit a 24 GiB machine with room to spare.
pub const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's `host:port` or URL; unused with etcd (the worker reports to the
    /// leader named there).
    pub coordinator: String,
    /// Where cluster state lives; with etcd the worker joins through it.
    pub meta: MetaConfig,
    /// With etcd: how long the worker's record outlives its last keep-alive.
    pub lease_ttl: Duration,
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The host other processes reach this worker at; defaults to the bound IP.
    pub advertise_host: Option<String>,
    pub spool_dir: PathBuf,
    /// Tasks that execute at once; more wait in line.
    pub task_slots: u32,
    /// Bytes the worker's operators may hold at once (they spill or fail beyond it).
    pub memory_limit: usize,
    pub worker_id: Option<WorkerId>,
    /// The cluster token and TLS, for what it serves and what it calls.
    pub security: ClusterSecurity,
}

impl WorkerConfig {
    pub fn local(coordinator: impl Into<String>, spool_dir: PathBuf) -> Self {
        Self {
            coordinator: coordinator.into(),
            meta: MetaConfig::default(),
            lease_ttl: Duration::from_secs(5),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_host: None,
            spool_dir,
            task_slots: std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            worker_id: None,
            security: ClusterSecurity::default(),
        }
    }
}

/// A running worker. Dropping the handle does not stop it; call `shutdown`.
pub struct WorkerHandle {
    pub worker_id: WorkerId,
    /// `host:port` where the worker serves gRPC and Flight.
    pub endpoint: String,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    executor: Arc<TaskExecutor>,
}

impl WorkerHandle {
    /// Stops serving, aborts running tasks and waits for the server to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        self.executor.stop();
    }

    /// Stops the worker abruptly, as a crash would: no goodbye to the coordinator.
    pub fn kill(self) {
        self.executor.stop();
        self.server.abort();
        let _ = self.shutdown.send(true);
    }
}

pub async fn start_worker(config: WorkerConfig) -> Result<WorkerHandle, WorkerError> {
    config.security.check_listen(config.bind)?;
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| WorkerError::Bind {
            addr: config.bind.to_string(),
            source,
        })?;
    let local = listener.local_addr()?;
    let host = config
        .advertise_host
        .clone()
        .unwrap_or_else(|| local.ip().to_string());
    let endpoint = format!("{host}:{}", local.port());
    let worker_id = config
        .worker_id
        .clone()
        .unwrap_or_else(WorkerId::new_random);
    std::fs::create_dir_all(&config.spool_dir)?;

    let env = Arc::new(ShuffleEnv::new(
        worker_id.clone(),
        Spool::new(config.spool_dir.join(worker_id.as_str())),
        config.security.clone(),
    ));
    let (coordinator, membership) = if config.meta.uses_etcd() {
        let store = config
            .meta
            .open()
            .await
            .map_err(|e| WorkerError::Membership(e.to_string()))?;
        let link = CoordinatorLink::leader_of(store.clone(), &config.security);
        let membership = Membership::Store {
            store,
            ttl: config.lease_ttl,
        };
        (link, membership)
    } else {
        let link = CoordinatorLink::fixed(&config.coordinator, &config.security)?;
        (link.clone(), Membership::Coordinator(link))
    };
    let metrics = WorkerMetrics::new();
    let coordinator = coordinator.with_metrics(metrics.clone());
    // Beside the spool, not in it: job IDs never contain a dot.
    let spill_dir = config.spool_dir.join(format!("{worker_id}.spill"));
    let executor = Arc::new(TaskExecutor::new(
        env.clone(),
        coordinator.clone(),
        config.task_slots,
        config.memory_limit,
        spill_dir.clone(),
    )?);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let rpc = WorkerServiceServer::new(WorkerRpc::new(executor.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let flight = FlightServiceServer::new(SpoolFlightService::new(env.clone(), metrics.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let security = &config.security;
    // `GET /metrics` over HTTP/1.1 on the same port as gRPC and Flight.
    let gauges: Gauges = {
        let executor = executor.clone();
        let spool_root = env.spool.root().to_path_buf();
        let memory_limit = config.memory_limit;
        Arc::new(move || Snapshot {
            tasks_running: executor.running_count(),
            memory_reserved: executor.memory_reserved(),
            memory_limit,
            spool_bytes: bytes_under(&spool_root),
        })
    };
    let scrape = gauges.clone();
    let routes = Routes::from(metrics::router(
        metrics,
        RequireToken::new(security.token.as_ref()),
        move || scrape(),
    ))
    .add_service(security.guard(rpc))
    .add_service(security.guard(flight));
    let mut stop = shutdown_rx.clone();
    let server = executor.data_plane().spawn(
        security
            .server()?
            .accept_http1(true)
            .add_routes(routes)
            // TCP_NODELAY: without it a response's last frame (the gRPC trailers) waits
            // for the peer's delayed ACK, about 40 ms per call.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                },
            ),
    );
    tracing::info!(worker_id = %worker_id, %endpoint, "worker listening");

    let record = WorkerRecord {
        id: worker_id.clone(),
        endpoint: endpoint.clone(),
        task_slots: config.task_slots,
    };
    if let Err(e) = membership.join(record, gauges, shutdown_rx).await {
        let _ = std::fs::remove_dir_all(&spill_dir);
        return Err(e);
    }

    Ok(WorkerHandle {
        worker_id,
        endpoint,
        shutdown: shutdown_tx,
        server,
        executor,
    })
}
