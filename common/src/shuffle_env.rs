//! What a running task needs from the worker it runs on: who "here" is (to read local spool
//! files from disk instead of over the network), the spool, and Flight connections to peers.
//! It travels to the shuffle nodes as a DataFusion `SessionConfig` extension.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_flight::flight_service_client::FlightServiceClient;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use tonic::transport::{Channel, Endpoint};

use crate::MAX_MESSAGE_BYTES;
use crate::ids::WorkerId;
use crate::spool::Spool;

#[derive(Debug)]
pub struct ShuffleEnv {
    pub worker_id: WorkerId,
    pub spool: Spool,
    pub flight: FlightClients,
}

impl ShuffleEnv {
    pub fn new(worker_id: WorkerId, spool: Spool) -> Self {
        Self {
            worker_id,
            spool,
            flight: FlightClients::default(),
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
#[derive(Debug, Default)]
pub struct FlightClients {
    clients: Mutex<HashMap<String, FlightServiceClient<Channel>>>,
}

impl FlightClients {
    pub fn get(&self, endpoint: &str) -> Result<FlightServiceClient<Channel>> {
        let mut clients = self.clients.lock().expect("flight client cache poisoned");
        if let Some(client) = clients.get(endpoint) {
            return Ok(client.clone());
        }
        let client = connect_flight_lazy(endpoint)?;
        clients.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }
}

/// `host:port` or a URL; plain `host:port` means http.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

pub fn connect_flight_lazy(endpoint: &str) -> Result<FlightServiceClient<Channel>> {
    let channel = Endpoint::from_shared(endpoint_url(endpoint))
        .map_err(|e| DataFusionError::Execution(format!("bad Flight endpoint {endpoint}: {e}")))?
        .connect_lazy();
    Ok(FlightServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
