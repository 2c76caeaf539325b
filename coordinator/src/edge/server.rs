//! Starting and stopping a coordinator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tally_common::MAX_MESSAGE_BYTES;
use tally_common::auth::RequireToken;
use tally_common::job_status::JobStatus;
use tally_common::security::ClusterSecurity;
use tally_meta::{MetaConfig, SharedMetaStore, WorkerEvent};
use tally_proto::coordinator::coordinator_service_server::CoordinatorServiceServer;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use super::convert;
use super::flight_sql::{TallyFlightSql, basic_to_bearer};
use super::role::Role;
use super::service::CoordinatorRpc;
use crate::error::CoordinatorError;
use crate::jobs::{
    DEFAULT_TASK_ATTEMPTS, GrpcTransport, JobError, JobLimits, JobManager, WorkerRegistry,
};
use crate::lineage::recorder::LineageRecorder;
use crate::lineage::{LineageSender, LineageTarget};
use crate::sql::catalog::Catalog;
use crate::sql::data_roots::DataRoots;
use crate::sql::frontend::SqlFrontend;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub bind: SocketAddr,
    /// The host other processes reach this coordinator at, when not the bound address.
    pub advertise_host: Option<String>,
    /// Where cluster state lives: in this process, or in etcd.
    pub meta: MetaConfig,
    pub heartbeat_interval: Duration,
    /// A worker that heartbeats to this coordinator (no etcd) and is silent this long is dead.
    pub heartbeat_timeout: Duration,
    /// Hash partitions per exchange for each live worker (unless a job sets
    /// `datafusion.execution.target_partitions`).
    pub partitions_per_worker: usize,
    /// How long a finished job's answer stays on the workers for the client to fetch.
    pub result_ttl: Duration,
    /// Where `CREATE TABLE ... AS SELECT` writes a table given no location.
    pub table_dir: PathBuf,
    /// Failed attempts of one task (a lost worker or input, I/O) before its job fails.
    pub task_attempts: u32,
    /// A job still running after this long fails.
    pub job_timeout: Duration,
    /// The folders SQL may read and write tables under (the table dir is always one).
    pub data_roots: Vec<PathBuf>,
    /// The cluster token and TLS, for what it serves and what it calls.
    pub security: ClusterSecurity,
    /// Where the web UI and `/metrics` listen (`--http-bind`); none without it.
    pub http_bind: Option<SocketAddr>,
    /// Where OpenLineage events of jobs that write tables go (`--openlineage-url`).
    pub openlineage: Option<LineageTarget>,
    /// The namespace of Tally's jobs in those events.
    pub openlineage_namespace: String,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_host: None,
            meta: MetaConfig::default(),
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(15),
            partitions_per_worker: 2,
            result_ttl: Duration::from_secs(600),
            table_dir: std::env::temp_dir().join("tally-tables"),
            task_attempts: DEFAULT_TASK_ATTEMPTS,
            job_timeout: Duration::from_secs(6 * 3600),
            data_roots: std::env::current_dir().into_iter().collect(),
            security: ClusterSecurity::default(),
            http_bind: None,
            openlineage: None,
            openlineage_namespace: "tally".to_string(),
        }
    }
}

pub struct CoordinatorHandle {
    /// `host:port` of the coordinator's gRPC service.
    pub endpoint: String,
    /// The web UI's URL (`http://host:port`), when it was asked for.
    pub http_endpoint: Option<String>,
    state: Arc<SqlFrontend>,
    role: Role,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    ui: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl CoordinatorHandle {
    /// Registers a table, as `--table NAME=PATH` does: the operator's own tables are trusted,
    /// so their paths become data roots.
    pub async fn register_table(&self, name: &str, path: &str) -> Result<(), CoordinatorError> {
        self.state.catalog.data_roots.allow(path);
        self.state
            .catalog
            .register(name, path, None)
            .await
            .map(|_| ())
    }

    pub fn live_workers(&self) -> usize {
        self.state.workers.alive().len()
    }

    pub fn is_leading(&self) -> bool {
        self.role.is_leading()
    }

    /// Waits until this coordinator leads and has loaded the cluster's tables and jobs.
    pub async fn until_leading(&self) {
        self.role.until_leading().await
    }

    /// Resolves when the coordinator stopped on its own (it lost its leadership).
    pub async fn stopped(&self) {
        let _ = self.shutdown.subscribe().wait_for(|stopped| *stopped).await;
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if let Some(ui) = self.ui {
            let _ = ui.await;
        }
        // The last jobs' lineage events go out before the process may end.
        if let Some(lineage) = &self.state.lineage {
            lineage.drain(Duration::from_secs(10)).await;
        }
    }
}

/// Starts serving at once; with etcd, as a standby until it wins the election. With the
/// in-memory store it leads before this returns.
pub async fn start_coordinator(
    config: CoordinatorConfig,
) -> Result<CoordinatorHandle, CoordinatorError> {
    config.security.check_listen(config.bind)?;
    if let Some(http) = config.http_bind {
        config.security.check_listen(http)?;
    }
    let mut roots = config.data_roots.clone();
    roots.push(config.table_dir.clone());
    let data_roots = DataRoots::new(&roots)?;
    let store = config.meta.open().await?;
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
    let endpoint = match &config.advertise_host {
        Some(host) => format!("{host}:{}", local.port()),
        None => local.to_string(),
    };

    let workers = Arc::new(WorkerRegistry::new(config.security.clone()));
    let limits = JobLimits {
        task_attempts: config.task_attempts,
        timeout: config.job_timeout,
    };
    let (records, pending) = mpsc::unbounded_channel();
    tokio::spawn(write_job_records(store.clone(), pending));
    let jobs = JobManager::new(
        workers.clone(),
        Arc::new(GrpcTransport::new(config.security.clone())),
        records,
        config.result_ttl,
        limits,
    );
    let catalog = Arc::new(Catalog::new(store.clone(), data_roots));
    let state = Arc::new(SqlFrontend::new(
        catalog,
        workers.clone(),
        jobs.clone(),
        config.partitions_per_worker,
        config.table_dir.clone(),
        config.openlineage.clone().map(|target| {
            LineageRecorder::new(
                LineageSender::new(target),
                config.openlineage_namespace.clone(),
            )
        }),
    ));
    let role = Role::standby();
    let gate = role.clone();
    let rpc = CoordinatorServiceServer::new(CoordinatorRpc::new(
        state.clone(),
        store.clone(),
        config.heartbeat_interval,
        config.heartbeat_timeout,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let rpc = InterceptedService::new(rpc, move |request| gate.check(request));
    // Flight SQL on the same port, behind the same token check and gate; Basic credentials
    // whose password is the token count as the token.
    let flight_gate = role.clone();
    let mut flight_token = RequireToken::new(config.security.token.as_ref());
    let flight_sql =
        FlightServiceServer::new(TallyFlightSql::new(state.clone(), config.security.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let flight_sql = InterceptedService::new(flight_sql, move |request| {
        let request = flight_token.call(basic_to_bearer(request)?)?;
        flight_gate.check(request)
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ui = match config.http_bind {
        Some(bind) => Some(
            crate::ui::serve(bind, state.clone(), &config.security, shutdown_rx.clone()).await?,
        ),
        None => None,
    };
    let mut stop = shutdown_rx.clone();
    let server = tokio::spawn(
        config
            .security
            .server()?
            .add_service(config.security.guard(rpc))
            .add_service(flight_sql)
            // TCP_NODELAY: without it a response's last frame (the gRPC trailers) waits
            // for the peer's delayed ACK, about 40 ms per call.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                },
            ),
    );
    tokio::spawn(lead(
        state.clone(),
        store.clone(),
        endpoint.clone(),
        role.clone(),
        shutdown_tx.clone(),
    ));
    if !config.meta.uses_etcd() {
        role.until_leading().await;
    }

    tracing::info!(%endpoint, "coordinator listening");
    let (http_endpoint, ui) = match ui {
        Some(ui) => (Some(ui.endpoint), Some(ui.task)),
        None => (None, None),
    };
    Ok(CoordinatorHandle {
        endpoint,
        http_endpoint,
        state,
        role,
        shutdown: shutdown_tx,
        server,
        ui,
    })
}

/// Wins the election, loads the cluster's tables and job history, follows worker membership,
/// and opens the gate. Losing leadership stops this coordinator: another one may already
/// schedule, and a supervisor restarts this one as a standby.
async fn lead(
    state: Arc<SqlFrontend>,
    store: SharedMetaStore,
    endpoint: String,
    role: Role,
    shutdown: watch::Sender<bool>,
) {
    let mut stopped = shutdown.subscribe();
    let observer = tokio::spawn(observe_leader(store.clone(), role.clone()));
    // A standby waits as long as it takes; a campaign that fails (etcd's request timeout,
    // a lapsed lease, etcd away for a while) runs again.
    let mut leadership = loop {
        let campaign = tokio::select! {
            campaign = store.campaign(&endpoint) => campaign,
            _ = stopped.wait_for(|stopped| *stopped) => return,
        };
        match campaign {
            Ok(leadership) => break leadership,
            Err(error) => {
                tracing::warn!(%error, "not leading yet; running again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped.wait_for(|stopped| *stopped) => return,
                }
            }
        }
    };
    observer.abort();
    if let Err(error) = restore(&state, &store).await {
        tracing::error!(%error, "could not load the cluster state; stopping");
        let _ = shutdown.send(true);
        return;
    }
    let events = match store.watch_workers().await {
        Ok(events) => events,
        Err(error) => {
            tracing::error!(%error, "could not watch workers; stopping");
            let _ = shutdown.send(true);
            return;
        }
    };
    tokio::spawn(follow_workers(state.clone(), events));
    role.lead();
    tracing::info!(%endpoint, "leading the cluster");
    let lost = tokio::select! {
        _ = leadership.lost() => true,
        _ = stopped.wait_for(|stopped| *stopped) => false,
    };
    if lost {
        tracing::error!(%endpoint, "lost leadership; stopping this coordinator");
        state.jobs.fail_all(JobError::LostLeadership);
        let _ = shutdown.send(true);
    } else {
        leadership.resign().await;
    }
}

/// Keeps a standby's hint of who leads fresh, for the clients it turns away.
async fn observe_leader(store: SharedMetaStore, role: Role) {
    loop {
        match store.leader().await {
            Ok(leader) => role.observe_leader(leader),
            Err(error) => tracing::warn!(%error, "cannot read the leader"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Loads what the cluster state holds: tables, and the history of jobs run under earlier
/// leaders.
async fn restore(state: &SqlFrontend, store: &SharedMetaStore) -> Result<(), CoordinatorError> {
    state.catalog.restore().await?;
    let mut jobs = Vec::new();
    for record in store.jobs().await? {
        match convert::job_from_record(&record) {
            Ok(job) => jobs.push(job),
            Err(error) => tracing::warn!(%error, "skipping an unreadable job record"),
        }
    }
    state.jobs.restore(jobs);
    Ok(())
}

/// Writes job records to the cluster state in the order they were made.
async fn write_job_records(
    store: SharedMetaStore,
    mut pending: mpsc::UnboundedReceiver<JobStatus>,
) {
    while let Some(job) = pending.recv().await {
        if let Err(error) = store.put_job(&job.job_id, convert::job_record(&job)).await {
            tracing::warn!(job_id = %job.job_id, %error, "job record not saved");
        }
    }
}

async fn follow_workers(state: Arc<SqlFrontend>, mut events: mpsc::UnboundedReceiver<WorkerEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            WorkerEvent::Up(worker) => {
                if let Err(error) = state.workers.up(&worker) {
                    tracing::warn!(%error, worker_id = %worker.id, "ignoring worker");
                }
            }
            WorkerEvent::Down(id) => {
                state.workers.down(&id);
                state.jobs.worker_lost(&id);
            }
        }
    }
}
