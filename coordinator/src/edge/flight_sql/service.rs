//! The Flight SQL service: each call converted to the coordinator's own operations, and their
//! errors to gRPC statuses (through `CoordinatorError`, in one place).

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tally_common::security::ClusterSecurity;
use tonic::{Request, Response, Status};

use super::prepared::PreparedStatements;
use super::statements::{coordinator_answer, flight_info, run_to_end, ticket_job};
use super::{actions, listing, parameters};
use crate::error::CoordinatorError;
use crate::sql::frontend::SqlFrontend;

type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;
type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

pub(crate) struct TallyFlightSql {
    frontend: Arc<SqlFrontend>,
    /// For the workers' locations: `grpc+tls` when the cluster speaks TLS.
    security: ClusterSecurity,
    prepared: PreparedStatements,
}

impl TallyFlightSql {
    pub(crate) fn new(frontend: Arc<SqlFrontend>, security: ClusterSecurity) -> Self {
        Self {
            frontend,
            security,
            prepared: PreparedStatements::default(),
        }
    }

    async fn statement_info(
        &self,
        sql: &str,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let status = run_to_end(&self.frontend, sql).await?;
        Ok(Response::new(flight_info(
            &status,
            descriptor,
            &self.security,
        )?))
    }

    /// A listing's `FlightInfo`: one endpoint on this coordinator whose ticket is the command.
    fn listing_info(
        command: impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = Ticket::new(command.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding a listing's schema: {e}")))?
            .with_endpoint(arrow_flight::FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// The statement's schemas, when DataFusion can plan it as it stands; Tally's own
    /// statements (views, bucketed CTAS) tell their schema when they run.
    async fn prepared_schemas(&self, sql: &str) -> Result<(Schema, Schema), CoordinatorError> {
        let count = parameters::parameter_count(sql)?;
        let unknown_parameters = || {
            Schema::new(
                (1..=count)
                    .map(|n| Field::new(format!("${n}"), DataType::Null, true))
                    .collect::<Vec<_>>(),
            )
        };
        let state = self.frontend.catalog.base().state();
        let Ok(plan) = state.create_logical_plan(sql).await else {
            return Ok((Schema::empty(), unknown_parameters()));
        };
        let types = plan.get_parameter_types().unwrap_or_default();
        let parameters = Schema::new(
            (1..=count)
                .map(|n| {
                    let name = format!("${n}");
                    let data_type = types
                        .get(&name)
                        .cloned()
                        .flatten()
                        .unwrap_or(DataType::Null);
                    Field::new(name, data_type, true)
                })
                .collect::<Vec<_>>(),
        );
        Ok((plan.schema().as_arrow().clone(), parameters))
    }
}

fn encode_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> FlightDataStream {
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from)
        .boxed()
}

fn one_batch(
    batch: Result<RecordBatch, CoordinatorError>,
) -> Result<Response<FlightDataStream>, Status> {
    let batch = batch?;
    Ok(Response::new(encode_batches(batch.schema(), vec![batch])))
}

fn schema_message(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

#[tonic::async_trait]
impl FlightSqlService for TallyFlightSql {
    type FlightService = Self;

    /// The token check ran before this (Basic credentials already turned into the Bearer
    /// token): the answer hands the client the header to send from now on.
    async fn do_handshake(
        &self,
        request: Request<tonic::Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let authorization = request.metadata().get("authorization").cloned();
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<HandshakeStream> =
            Response::new(futures::stream::once(async { Ok(answer) }).boxed());
        if let Some(authorization) = authorization {
            response
                .metadata_mut()
                .insert("authorization", authorization);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.statement_info(&query.query, request.into_inner())
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = self.prepared.bound_sql(&query.prepared_statement_handle)?;
        self.statement_info(&sql, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let job_id = ticket_job(&ticket)?;
        let status = self
            .frontend
            .jobs
            .status(&job_id)
            .ok_or_else(|| CoordinatorError::NotFound(format!("no job {job_id}")))?;
        if !status.results.is_empty() {
            return Err(CoordinatorError::Query(format!(
                "the answer of job {job_id} is on the workers: fetch it from the endpoints \
                 its FlightInfo names"
            ))
            .into());
        }
        let (schema, batches) = coordinator_answer(&status)?;
        Ok(Response::new(encode_batches(schema, batches)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&listing::SQL_INFO).schema();
        Self::listing_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let batch = query
            .into_builder(&listing::SQL_INFO)
            .build()
            .map_err(|e| CoordinatorError::Internal(e.to_string()));
        one_batch(batch)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Self::listing_info(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        one_batch(listing::catalogs(query))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Self::listing_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        one_batch(listing::schemas(query))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Self::listing_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let tables = self.frontend.catalog.list().await?;
        one_batch(listing::tables(query, &tables))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Self::listing_info(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        one_batch(listing::table_types(query))
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        )
        .try_collect()
        .await
        .map_err(|e| CoordinatorError::Query(format!("reading the bound parameters: {e}")))?;
        let bound: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
        let parameters = match bound.as_slice() {
            [] => RecordBatch::new_empty(Arc::new(Schema::empty())),
            [one] => (*one).clone(),
            several => {
                return Err(CoordinatorError::Query(format!(
                    "{} batches of parameters were bound: a Tally query takes one row",
                    several.len()
                ))
                .into());
            }
        };
        self.prepared
            .bind(&query.prepared_statement_handle, &parameters)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (dataset, parameters) = self.prepared_schemas(&query.query).await?;
        let handle = self.prepared.prepare(&query.query)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_message(&dataset)?,
            parameter_schema: schema_message(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(self.prepared.close(&query.prepared_statement_handle)?)
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        let Some(answer) = actions::run(&self.frontend.jobs, &action.r#type, &action.body) else {
            return Err(Status::invalid_argument(format!(
                "unknown action {:?}: Tally serves Flight SQL's actions, {} and {}",
                action.r#type.chars().take(80).collect::<String>(),
                actions::JOB,
                actions::CANCEL
            )));
        };
        let body = answer?;
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(
            futures::stream::once(async { Ok(result) }).boxed(),
        ))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(actions::action_types().into_iter().map(Ok).collect())
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<FlightDataStream>, Status> {
        Err(Status::invalid_argument(format!(
            "not a ticket this coordinator issued ({}): a query's answer is fetched from the \
             endpoints its FlightInfo names",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
