//! Serves spooled stage output over Arrow Flight `DoGet`: the ticket names the file, and its
//! MAC proves this worker issued it for exactly that piece (see `tally_common::tickets`).

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tally_common::MAX_MESSAGE_BYTES;
use tally_common::compression::WireCompression;
use tally_common::ids::{JobId, StageId};
use tally_common::shuffle_env::ShuffleEnv;
use tally_common::shuffle_writer::compact_views;
use tally_common::spool::open_spool_file;
use tally_proto::plan::ShuffleTicket;
use tonic::{Request, Response, Status, Streaming};

use crate::metrics::WorkerMetrics;

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub(crate) struct SpoolFlightService {
    env: Arc<ShuffleEnv>,
    metrics: Arc<WorkerMetrics>,
}

impl SpoolFlightService {
    pub(crate) fn new(env: Arc<ShuffleEnv>, metrics: Arc<WorkerMetrics>) -> Self {
        Self { env, metrics }
    }
}

#[tonic::async_trait]
impl FlightService for SpoolFlightService {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;
    type DoExchangeStream = BoxedStream<FlightData>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = ShuffleTicket::decode(request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("not a Tally shuffle ticket: {e}")))?;
        if !self.env.tickets.verify(&ticket) {
            return Err(Status::permission_denied(format!(
                "shuffle ticket for job {:?} stage {} piece {}/{} was not issued by worker {}",
                ticket.job_id.chars().take(80).collect::<String>(),
                ticket.stage_id,
                ticket.map_partition,
                ticket.out_partition,
                self.env.worker_id
            )));
        }
        let compression = WireCompression::from(ticket.compression());
        let path = self.env.spool.file(
            &JobId::from(ticket.job_id),
            StageId(ticket.stage_id),
            ticket.map_partition,
            ticket.out_partition,
        );
        let reader = open_spool_file(&path).map_err(|e| {
            if path.exists() {
                Status::internal(e.to_string())
            } else {
                Status::not_found(format!("no spooled data at {}", path.display()))
            }
        })?;
        let schema = reader.schema();
        self.metrics.stream_opened();
        let metrics = self.metrics.clone();
        let batches = futures::stream::iter(reader)
            .map(|batch| wire_pieces(batch?))
            .map_ok(|pieces| futures::stream::iter(pieces.into_iter().map(Ok)))
            .try_flatten();
        let encoded = FlightDataEncoderBuilder::new()
            .with_options(compression.ipc_options())
            // The pieces are already small; split again, a view column would be sent whole.
            .with_max_flight_data_size(MAX_MESSAGE_BYTES / 4)
            .with_schema(schema)
            .build(batches)
            // Counted as readers count them (the encoded message), so what workers served
            // adds up with what their readers report.
            .inspect_ok(move |data| metrics.message_sent(data.encoded_len()))
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(encoded.boxed()))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }
}

/// About what one Flight message carries (gRPC's 2 MiB habit, with room for headers).
const WIRE_PIECE_BYTES: usize = 1 << 20;

/// A spooled batch cut into messages of about `WIRE_PIECE_BYTES`, each with its string and
/// binary view columns compacted. Left to itself, the Flight encoder slices a large batch, and
/// every slice of a view column carries the whole batch's data buffers: a broadcast of wide
/// string rows went out six times larger than its Arrow buffers.
fn wire_pieces(batch: RecordBatch) -> Result<Vec<RecordBatch>, FlightError> {
    let rows = batch.num_rows();
    let pieces = batch
        .get_array_memory_size()
        .div_ceil(WIRE_PIECE_BYTES)
        .max(1);
    if pieces == 1 || rows <= 1 {
        return Ok(vec![batch]);
    }
    let rows_per_piece = rows.div_ceil(pieces).max(1);
    (0..rows)
        .step_by(rows_per_piece)
        .map(|offset| {
            let piece = batch.slice(offset, rows_per_piece.min(rows - offset));
            compact_views(&piece).map_err(|e| FlightError::ExternalError(Box::new(e)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringViewArray};

    use super::*;

    #[test]
    fn a_large_batch_of_string_views_goes_out_in_compact_pieces() {
        let values: Vec<String> = (0..20_000).map(|i| format!("{i:0>200}")).collect();
        let column: ArrayRef = Arc::new(StringViewArray::from_iter_values(values));
        let batch = RecordBatch::try_from_iter([("comment", column)]).unwrap();
        let whole = batch.get_array_memory_size();

        let pieces = wire_pieces(batch.clone()).unwrap();

        assert!(
            pieces.len() >= 4,
            "{} pieces of a {whole}-byte batch",
            pieces.len()
        );
        let rows: usize = pieces.iter().map(|p| p.num_rows()).sum();
        assert_eq!(rows, batch.num_rows());
        let sent: usize = pieces.iter().map(|p| p.get_array_memory_size()).sum();
        // Sliced without compacting, every piece would hold the whole 4 MB of strings.
        assert!(
            sent < whole * 5 / 4,
            "pieces hold {sent} bytes of a {whole}-byte batch"
        );
        assert!(
            pieces
                .iter()
                .all(|p| p.get_array_memory_size() <= 2 * WIRE_PIECE_BYTES)
        );
    }
}
