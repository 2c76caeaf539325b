//! What a running task needs from the worker it runs on: who "here" is (to read local spool
//! files from disk instead of over the network), the spool, and Flight connections to peers.
//! It travels to the shuffle nodes as a DataFusion `SessionConfig` extension.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arrow_flight::flight_service_client::FlightServiceClient;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use futures::TryStreamExt;
use tokio::sync::OnceCell;

use crate::compression::WireCompression;
use crate::flight_fetch::{ReadCounters, encode_ticket, fetch_batches};
use crate::ids::WorkerId;
use crate::security::{AuthChannel, ClusterSecurity};
use crate::spool::{Spool, SpoolFileWriter, SpoolLocation};
use crate::tickets::TicketKey;

#[derive(Debug)]
pub struct ShuffleEnv {
    pub worker_id: WorkerId,
    pub spool: Spool,
    pub flight: FlightClients,
    pub broadcast_cache: BroadcastCache,
    /// Mints and checks the tickets of the pieces this worker spools.
    pub tickets: TicketKey,
}

impl ShuffleEnv {
    pub fn new(worker_id: WorkerId, spool: Spool, security: ClusterSecurity) -> Self {
        Self {
            worker_id,
            spool,
            flight: FlightClients::new(security),
            broadcast_cache: BroadcastCache::default(),
            tickets: TicketKey::random(),
        }
    }

    pub fn from_task_context(context: &TaskContext) -> Result<Arc<ShuffleEnv>> {
        context
            .session_config()
            .get_extension::<ShuffleEnv>()
            .ok_or_else(|| {
                DataFusionError::Internal(
                    "shuffle nodes run only inside a Tally worker (no ShuffleEnv in the session)"
                        .to_string(),
                )
            })
    }
}

/// One lazily connected channel per peer endpoint, shared by all tasks of the worker.
#[derive(Debug)]
pub struct FlightClients {
    security: ClusterSecurity,
    clients: Mutex<HashMap<String, FlightServiceClient<AuthChannel>>>,
}

impl FlightClients {
    pub fn new(security: ClusterSecurity) -> Self {
        Self {
            security,
            clients: Mutex::default(),
        }
    }

    pub fn get(&self, endpoint: &str) -> Result<FlightServiceClient<AuthChannel>> {
        let mut clients = self.clients.lock().expect("flight client cache poisoned");
        if let Some(client) = clients.get(endpoint) {
            return Ok(client.clone());
        }
        let client = connect_flight_lazy(endpoint, &self.security)?;
        clients.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }
}

/// Remote pieces of broadcast join build sides, fetched once per worker: the first task that
/// needs a piece downloads it into the spool, the others wait for it and read the file.
#[derive(Debug, Default)]
pub struct BroadcastCache {
    pieces: Mutex<HashMap<PathBuf, Arc<OnceCell<PathBuf>>>>,
}

impl BroadcastCache {
    pub async fn fetch_once(
        &self,
        env: &ShuffleEnv,
        source: &SpoolLocation,
        compression: WireCompression,
        counters: &ReadCounters,
    ) -> Result<PathBuf> {
        let path = env.spool.broadcast_copy(
            &source.job_id,
            source.stage_id,
            source.map_partition,
            source.out_partition,
        );
        let cell = self
            .pieces
            .lock()
            .expect("broadcast cache poisoned")
            .entry(path.clone())
            .or_default()
            .clone();
        let fetched = cell
            .get_or_try_init(|| async {
                let client = env.flight.get(&source.endpoint)?;
                let ticket = encode_ticket(&source.ticket(compression));
                let mut batches =
                    fetch_batches(client, &source.endpoint, ticket, counters.remote.clone())
                        .await?;
                let mut file: Option<SpoolFileWriter> = None;
                while let Some(batch) = batches.try_next().await? {
                    counters
                        .remote_rows
                        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    if file.is_none() {
                        file = Some(SpoolFileWriter::create(path.clone(), &batch.schema())?);
                    }
                    file.as_mut().expect("created above").write(&batch)?;
                }
                match file {
                    Some(file) => file.finish()?,
                    None => {
                        return Err(DataFusionError::Execution(format!(
                            "broadcast piece {} from {} was empty",
                            path.display(),
                            source.endpoint
                        )));
                    }
                };
                Ok::<_, DataFusionError>(path.clone())
            })
            .await?;
        Ok(fetched.clone())
    }
}

/// A Flight client of `endpoint` (`host:port` or a URL) that connects on first use.
pub fn connect_flight_lazy(
    endpoint: &str,
    security: &ClusterSecurity,
) -> Result<FlightServiceClient<AuthChannel>> {
    security
        .lazy_client(endpoint)
        .map_err(|e| DataFusionError::Execution(format!("Flight endpoint {endpoint}: {e}")))
}
