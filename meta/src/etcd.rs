//! Cluster state in etcd, under `/tally/<cluster>/`:
//! - `workers/<id>`: a worker's record, attached to a lease the worker keeps alive, so a
//!   dead worker's key disappears by itself and watchers see a delete;
//! - `tables/<name>`, `jobs/<id>`: the catalog and the job history, which outlive any
//!   coordinator;
//! - `leader`: the election of the coordinator that schedules (etcd's election API).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions,
};
use tally_common::ids::{JobId, WorkerId};
use tokio::sync::{Mutex, mpsc, watch};

use crate::{Leadership, MetaError, MetaStore, TableRecord, WorkerEvent, WorkerRecord};

/// A leader whose lease lapses this long is replaced.
const LEADER_TTL_SECS: i64 = 3;
/// Pause before a broken worker watch is opened again.
const REWATCH_AFTER: Duration = Duration::from_millis(500);

pub struct EtcdStore {
    client: Client,
    endpoints: String,
    prefix: String,
    /// Leases of the workers registered through this store (in a worker process: its own).
    leases: Mutex<HashMap<WorkerId, WorkerLease>>,
}

struct WorkerLease {
    keeper: LeaseKeeper,
    responses: LeaseKeepAliveStream,
}

impl EtcdStore {
    pub async fn connect(endpoints: &[String], cluster: &str) -> Result<Self, MetaError> {
        let joined = endpoints.join(",");
        // HTTP/2 pings find a connection to etcd that was cut off: the lease keep-alive
        // stream on it would otherwise wait for TCP to give up.
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| MetaError::Etcd {
                endpoints: joined.clone(),
                message: e.to_string(),
            })?;
        let store = Self {
            client,
            endpoints: joined,
            prefix: format!("/tally/{cluster}/"),
            leases: Mutex::default(),
        };
        // Fail here, with the address, rather than at the first use.
        store
            .client
            .clone()
            .status()
            .await
            .map_err(|e| store.error(e))?;
        Ok(store)
    }

    fn error(&self, error: etcd_client::Error) -> MetaError {
        MetaError::Etcd {
            endpoints: self.endpoints.clone(),
            message: error.to_string(),
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", self.prefix)
    }

    async fn values(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        let response = self
            .client
            .clone()
            .get(self.key(kind, ""), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.error(e))?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).to_string(),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }

    async fn lease_with_keeper(&self, ttl: i64) -> Result<(i64, WorkerLease), MetaError> {
        let mut client = self.client.clone();
        let lease = client
            .lease_grant(ttl, None)
            .await
            .map_err(|e| self.error(e))?
            .id();
        let (keeper, responses) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| self.error(e))?;
        Ok((lease, WorkerLease { keeper, responses }))
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(value).map_err(|e| MetaError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// Sends a keep-alive and reads its answer: false when the lease is gone.
async fn refresh(lease: &mut WorkerLease) -> Result<bool, etcd_client::Error> {
    lease.keeper.keep_alive().await?;
    Ok(match lease.responses.message().await? {
        Some(response) => response.ttl() > 0,
        None => false,
    })
}

#[async_trait]
impl MetaStore for EtcdStore {
    async fn register_worker(&self, worker: &WorkerRecord, ttl: Duration) -> Result<(), MetaError> {
        let ttl = ttl.as_secs().max(1) as i64;
        let (lease, keeper) = self.lease_with_keeper(ttl).await?;
        self.client
            .clone()
            .put(
                self.key("workers", worker.id.as_str()),
                encode(worker),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(|e| self.error(e))?;
        self.leases.lock().await.insert(worker.id.clone(), keeper);
        Ok(())
    }

    async fn keep_worker_alive(&self, id: &WorkerId) -> Result<bool, MetaError> {
        let mut leases = self.leases.lock().await;
        let Some(lease) = leases.get_mut(id) else {
            return Ok(false);
        };
        let alive = refresh(lease).await.map_err(|e| self.error(e))?;
        if !alive {
            leases.remove(id);
        }
        Ok(alive)
    }

    async fn deregister_worker(&self, id: &WorkerId) -> Result<(), MetaError> {
        self.leases.lock().await.remove(id);
        self.client
            .clone()
            .delete(self.key("workers", id.as_str()), None)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn watch_workers(&self) -> Result<mpsc::UnboundedReceiver<WorkerEvent>, MetaError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = self.client.clone();
        let prefix = self.key("workers", "");
        tokio::spawn(async move {
            let mut known = BTreeSet::new();
            while !tx.is_closed() {
                if let Err(error) = follow_workers(client.clone(), &prefix, &tx, &mut known).await {
                    tracing::warn!(%error, "worker watch broke; watching again");
                }
                tokio::time::sleep(REWATCH_AFTER).await;
            }
        });
        Ok(rx)
    }

    async fn put_table(&self, table: &TableRecord) -> Result<(), MetaError> {
        self.client
            .clone()
            .put(self.key("tables", &table.name), encode(table), None)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn delete_table(&self, name: &str) -> Result<(), MetaError> {
        self.client
            .clone()
            .delete(self.key("tables", name), None)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn tables(&self) -> Result<Vec<TableRecord>, MetaError> {
        self.values("tables")
            .await?
            .iter()
            .map(|(key, value)| decode(key, value))
            .collect()
    }

    async fn put_job(&self, id: &JobId, record: Vec<u8>) -> Result<(), MetaError> {
        self.client
            .clone()
            .put(self.key("jobs", &id.to_string()), record, None)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn jobs(&self) -> Result<Vec<Vec<u8>>, MetaError> {
        Ok(self
            .values("jobs")
            .await?
            .into_iter()
            .map(|(_, value)| value)
            .collect())
    }

    async fn campaign(&self, endpoint: &str) -> Result<Leadership, MetaError> {
        let (lease, mut keeper) = self.lease_with_keeper(LEADER_TTL_SECS).await?;
        let (lost_tx, lost) = watch::channel(false);
        // The lease must stay alive while waiting too: a standby's candidacy is a key on it.
        let keep_alive = tokio::spawn(async move {
            let ttl = Duration::from_secs(LEADER_TTL_SECS as u64);
            // The lease lives at least TTL after a keep-alive sent at `renewed`; once that
            // has passed without an answer, etcd may have let it lapse and another coordinator
            // may lead: this one must stop before then, not when TCP gives up.
            let mut renewed = tokio::time::Instant::now();
            loop {
                let sent = tokio::time::Instant::now();
                match tokio::time::timeout_at(renewed + ttl, refresh(&mut keeper)).await {
                    Ok(Ok(true)) => renewed = sent,
                    Ok(Ok(false)) => {
                        tracing::error!(lease, "coordinator lease expired");
                        break;
                    }
                    Ok(Err(error)) => {
                        tracing::error!(lease, %error, "coordinator lease keep-alive failed");
                        break;
                    }
                    Err(_) => {
                        tracing::error!(
                            lease,
                            "etcd did not answer the lease keep-alive within its TTL"
                        );
                        break;
                    }
                }
                tokio::time::sleep(ttl / 3).await;
            }
            let _ = lost_tx.send(true);
        });
        let client = self.client.clone();
        let resign: crate::Resign = Box::new(move || {
            Box::pin(async move {
                if let Err(error) = client.clone().lease_revoke(lease).await {
                    tracing::warn!(lease, %error, "could not resign leadership");
                }
            })
        });
        let mut lapsed = lost.clone();
        let leadership = Leadership::new(lost, Some(keep_alive), Some(resign));
        let mut client = self.client.clone();
        let campaign = client.campaign(self.key("leader", ""), endpoint, lease);
        // A candidacy whose lease lapsed can never win: give up and let the caller run again.
        tokio::select! {
            won = campaign => won.map_err(|e| self.error(e))?,
            _ = lapsed.wait_for(|lost| *lost) => {
                return Err(MetaError::Etcd {
                    endpoints: self.endpoints.clone(),
                    message: "the candidacy's lease lapsed while waiting to lead".to_string(),
                });
            }
        };
        Ok(leadership)
    }

    async fn leader(&self) -> Result<Option<String>, MetaError> {
        match self.client.clone().leader(self.key("leader", "")).await {
            Ok(response) => Ok(response
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).to_string())),
            // etcd answers "election: no leader" as an error.
            Err(etcd_client::Error::GRpcStatus(status))
                if status.message().contains("no leader") =>
            {
                Ok(None)
            }
            Err(error) => Err(self.error(error)),
        }
    }
}

/// Lists the workers, then follows changes from that revision; returns when the watch
/// breaks. `known` carries membership across watches, so a worker that vanished while no
/// watch was open still gets its `Down`.
async fn follow_workers(
    mut client: Client,
    prefix: &str,
    tx: &mpsc::UnboundedSender<WorkerEvent>,
    known: &mut BTreeSet<WorkerId>,
) -> Result<(), etcd_client::Error> {
    let listing = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = listing.header().map(|h| h.revision()).unwrap_or(0);
    let mut listed = BTreeSet::new();
    for kv in listing.kvs() {
        let key = String::from_utf8_lossy(kv.key()).to_string();
        match decode::<WorkerRecord>(&key, kv.value()) {
            Ok(worker) => {
                listed.insert(worker.id.clone());
                let _ = tx.send(WorkerEvent::Up(worker));
            }
            Err(error) => tracing::warn!(%error, "skipping worker record"),
        }
    }
    for gone in known.difference(&listed) {
        let _ = tx.send(WorkerEvent::Down(gone.clone()));
    }
    *known = listed;

    let mut stream = client
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await?;
    while let Some(response) = stream.message().await? {
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).to_string();
            match event.event_type() {
                EventType::Put => match decode::<WorkerRecord>(&key, kv.value()) {
                    Ok(worker) => {
                        known.insert(worker.id.clone());
                        let _ = tx.send(WorkerEvent::Up(worker));
                    }
                    Err(error) => tracing::warn!(%error, "skipping worker record"),
                },
                EventType::Delete => {
                    let id = WorkerId::from(key.trim_start_matches(prefix).to_string());
                    known.remove(&id);
                    let _ = tx.send(WorkerEvent::Down(id));
                }
            }
        }
        if tx.is_closed() {
            break;
        }
    }
    Ok(())
}
