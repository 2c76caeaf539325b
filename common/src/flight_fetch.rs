//! Fetching spooled data over Flight `DoGet`, counting the bytes as they arrive: the size of
//! each Flight message is exactly what the sending worker put on the wire (IPC header and
//! body, after any compression).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use datafusion::error::Result;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use tally_proto::plan as pb;

use crate::failure::FetchFailed;
use crate::security::AuthChannel;

#[derive(Debug, Default)]
pub struct WireCounter {
    bytes: AtomicU64,
    uncompressed: AtomicU64,
}

impl WireCounter {
    /// Flight message bytes as they crossed the network.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The received batches' Arrow buffers, as they were before compression.
    pub fn uncompressed_bytes(&self) -> u64 {
        self.uncompressed.load(Ordering::Relaxed)
    }
}

/// What one shuffle reader moved, split by where it came from.
#[derive(Debug, Default)]
pub struct ReadCounters {
    pub remote: Arc<WireCounter>,
    pub remote_rows: AtomicU64,
    pub local_bytes: AtomicU64,
    pub local_rows: AtomicU64,
}

fn buffer_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|column| column.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

pub fn encode_ticket(ticket: &pb::ShuffleTicket) -> Vec<u8> {
    ticket.encode_to_vec()
}

/// Streams the batches behind `ticket`, adding every received message's size to `counter`.
pub async fn fetch_batches(
    mut client: FlightServiceClient<AuthChannel>,
    endpoint: &str,
    ticket: Vec<u8>,
    counter: Arc<WireCounter>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let response = client
        .do_get(Ticket {
            ticket: ticket.into(),
        })
        .await
        .map_err(|status| FetchFailed::into_datafusion(endpoint, status.message()))?;
    let endpoint = endpoint.to_string();
    let batch_counter = counter.clone();
    let counted = response.into_inner().map(move |message| {
        let data = message.map_err(FlightError::from)?;
        counter
            .bytes
            .fetch_add(data.encoded_len() as u64, Ordering::Relaxed);
        Ok(data)
    });
    Ok(FlightRecordBatchStream::new_from_flight_data(counted)
        .map_err(move |e| FetchFailed::into_datafusion(&endpoint, &e.to_string()))
        .inspect_ok(move |batch| {
            batch_counter
                .uncompressed
                .fetch_add(buffer_bytes(batch), Ordering::Relaxed);
        })
        .boxed())
}
