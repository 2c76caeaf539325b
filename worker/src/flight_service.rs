//! Serves spooled stage output over Arrow Flight `DoGet`: the ticket names the file, and its
//! MAC proves this worker issued it for exactly that piece (see `tally_common::tickets`).

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tally_common::compression::WireCompression;
use tally_common::ids::{JobId, StageId};
use tally_common::shuffle_env::ShuffleEnv;
use tally_common::spool::open_spool_file;
use tally_proto::plan::ShuffleTicket;
use tonic::{Request, Response, Status, Streaming};

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub(crate) struct SpoolFlightService {
    env: Arc<ShuffleEnv>,
}

impl SpoolFlightService {
    pub(crate) fn new(env: Arc<ShuffleEnv>) -> Self {
        Self { env }
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
        let batches = futures::stream::iter(reader).map_err(FlightError::from);
        let encoded = FlightDataEncoderBuilder::new()
            .with_options(compression.ipc_options())
            .with_schema(schema)
            .build(batches)
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
