//! The client library: submit SQL to a coordinator, follow the job, fetch the answer from the
//! workers over Flight.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use futures::TryStreamExt;
use serde::Serialize;
use tally_common::flight_fetch::{WireCounter, encode_ticket, fetch_batches};
use tally_common::security::{AuthChannel, ClusterSecurity};
use tally_common::shuffle_env::connect_flight_lazy;
use tally_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use tally_proto::coordinator::{
    CancelJobRequest, GetJobRequest, ListJobsRequest, ListTablesRequest, ListWorkersRequest,
    RegisterTableRequest, SubmitJobRequest,
};

use crate::error::ClientError;
use crate::model::{JobFailure, JobId, JobState, JobStatus, TableInfo, WorkerInfo};

#[derive(Clone)]
pub struct Client {
    endpoint: String,
    rpc: CoordinatorServiceClient<AuthChannel>,
    /// The token and TLS for the coordinator and for the workers the answer comes from.
    security: ClusterSecurity,
}

/// A finished query: its answer and what it cost.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub metrics: JobMetrics,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The job's figures, as `--metrics-json` writes them.
#[derive(Debug, Clone, Serialize)]
pub struct JobMetrics {
    pub job_id: String,
    pub state: String,
    /// Bytes sent from one worker to another between stages, as sent on the wire.
    pub shuffle_bytes: u64,
    /// The shuffled batches' Arrow buffers before compression.
    pub shuffle_uncompressed_bytes: u64,
    pub shuffle_rows: u64,
    /// Bytes of the spooled answer the client fetched.
    pub result_bytes: u64,
    pub result_rows: u64,
    pub elapsed_ms: u64,
    pub stages: Vec<StageMetrics>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageMetrics {
    pub stage_id: u32,
    pub input_stages: Vec<u32>,
    /// How the stage's output is split for its consumer.
    pub output: String,
    pub tasks: u32,
    pub output_rows: u64,
    pub output_bytes: u64,
    pub shuffle_bytes: u64,
    pub shuffle_uncompressed_bytes: u64,
    pub shuffle_rows: u64,
    pub elapsed_ms: u64,
    /// The planner rules that shaped the stage and what they decided.
    pub rules: Vec<String>,
    /// Bytes its operators spilled to disk for want of memory.
    pub spilled_bytes: u64,
    /// Records of a Kafka table its tasks skipped as malformed (`on_malformed = 'skip'`).
    pub malformed_records: u64,
}

impl From<&JobStatus> for JobMetrics {
    fn from(status: &JobStatus) -> Self {
        let stages: Vec<StageMetrics> = status
            .stages
            .iter()
            .map(|s| StageMetrics {
                stage_id: s.stage_id.0,
                input_stages: s.input_stages.iter().map(|s| s.0).collect(),
                output: s.output.clone(),
                tasks: s.tasks_total,
                output_rows: s.output_rows,
                output_bytes: s.output_bytes,
                shuffle_bytes: s.shuffle_bytes,
                shuffle_uncompressed_bytes: s.shuffle_uncompressed_bytes,
                shuffle_rows: s.shuffle_rows,
                elapsed_ms: s.elapsed.as_millis() as u64,
                rules: s.rules.clone(),
                spilled_bytes: s.spilled_bytes,
                malformed_records: s.malformed_records,
            })
            .collect();
        JobMetrics {
            job_id: status.job_id.to_string(),
            state: status.state.as_str().to_string(),
            shuffle_bytes: stages.iter().map(|s| s.shuffle_bytes).sum(),
            shuffle_uncompressed_bytes: stages.iter().map(|s| s.shuffle_uncompressed_bytes).sum(),
            shuffle_rows: stages.iter().map(|s| s.shuffle_rows).sum(),
            result_bytes: status.result_bytes,
            result_rows: status.result_rows,
            elapsed_ms: status.elapsed.as_millis() as u64,
            stages,
        }
    }
}

fn job_status(status: tally_proto::coordinator::JobStatus) -> Result<JobStatus, ClientError> {
    JobStatus::try_from(status).map_err(ClientError::Fetch)
}

impl Client {
    /// Connects now, so a wrong address fails here with a clear message.
    pub async fn connect(endpoints: &str) -> Result<Self, ClientError> {
        Self::connect_with(endpoints, ClusterSecurity::default()).await
    }

    /// Connects with the cluster token and TLS settings in `security`. `endpoints` may name
    /// several coordinators, separated by commas: the client uses the one that leads.
    pub async fn connect_with(
        endpoints: &str,
        security: ClusterSecurity,
    ) -> Result<Self, ClientError> {
        let candidates: Vec<&str> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        // Each refusal is kept as its bare reason (with the address when there are several),
        // so the error names the endpoint once.
        let mut refusals = Vec::new();
        for endpoint in &candidates {
            let refusal = match Self::connect_one(endpoint, security.clone()).await {
                Ok(client) if candidates.len() == 1 => return Ok(client),
                // With several candidates, ask: a standby refuses with the leader's address.
                Ok(client) => match client.list_workers().await {
                    Ok(_) => return Ok(client),
                    // A refused token is not a connection problem: say so as it is.
                    Err(error @ ClientError::Unauthenticated { .. }) => return Err(error),
                    Err(error) => error.to_string(),
                },
                Err(reason) if candidates.len() == 1 => reason,
                Err(reason) => format!("{endpoint}: {reason}"),
            };
            refusals.push(refusal);
        }
        Err(ClientError::Connect {
            endpoint: endpoints.to_string(),
            message: if refusals.is_empty() {
                "no coordinator address given".to_string()
            } else {
                refusals.join("; ")
            },
        })
    }

    /// Opens a channel to one coordinator; the error is the reason alone.
    async fn connect_one(endpoint: &str, security: ClusterSecurity) -> Result<Self, String> {
        let rpc = security.connect_client(endpoint).await?;
        Ok(Self {
            endpoint: endpoint.to_string(),
            rpc,
            security,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn status_error(&self, status: tonic::Status) -> ClientError {
        ClientError::from_status(&self.endpoint, status)
    }

    /// Runs `sql` to the end and fetches its answer.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, ClientError> {
        self.sql_with_settings(sql, &BTreeMap::new()).await
    }

    pub async fn sql_with_settings(
        &self,
        sql: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<QueryResult, ClientError> {
        let job_id = self.submit(sql, settings).await?;
        let status = self.wait(&job_id).await?;
        self.fetch_results(&status).await
    }

    pub async fn submit(
        &self,
        sql: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<JobId, ClientError> {
        let request = SubmitJobRequest {
            sql: sql.to_string(),
            settings: settings.clone().into_iter().collect(),
        };
        let response = self
            .rpc
            .clone()
            .submit_job(request)
            .await
            .map_err(|s| self.status_error(s))?;
        Ok(JobId::from(response.into_inner().job_id))
    }

    /// Follows the job until it ends; a failed or cancelled job is an error.
    pub async fn wait(&self, job_id: &JobId) -> Result<JobStatus, ClientError> {
        self.wait_with_progress(job_id, |_| {}).await
    }

    /// As `wait`, handing every status the coordinator sends on the way to `progress`.
    pub async fn wait_with_progress(
        &self,
        job_id: &JobId,
        mut progress: impl FnMut(&JobStatus),
    ) -> Result<JobStatus, ClientError> {
        let request = GetJobRequest {
            job_id: job_id.to_string(),
        };
        let mut updates = self
            .rpc
            .clone()
            .watch_job(request)
            .await
            .map_err(|s| self.status_error(s))?
            .into_inner();
        let mut last = None;
        while let Some(status) = updates.message().await.map_err(|s| self.status_error(s))? {
            if let Ok(update) = job_status(status.clone()) {
                progress(&update);
            }
            last = Some(status);
        }
        let status = job_status(last.ok_or_else(|| ClientError::Unavailable {
            endpoint: self.endpoint.clone(),
            message: format!("job {job_id} status stream ended without a state"),
        })?)?;
        match status.state {
            JobState::Succeeded => Ok(status),
            JobState::Failed | JobState::Cancelled => {
                let failure = status.failure.clone().unwrap_or(JobFailure {
                    message: format!("job ended {}", status.state.as_str()),
                    code: tonic::Code::Unknown,
                });
                Err(ClientError::JobFailed {
                    job_id: status.job_id.to_string(),
                    message: failure.message,
                    code: failure.code,
                })
            }
            other => Err(ClientError::Unavailable {
                endpoint: self.endpoint.clone(),
                message: format!("job {job_id} status stream ended while {other:?}"),
            }),
        }
    }

    /// Fetches the answer of a finished job from the workers that hold it, in order.
    pub async fn fetch_results(&self, status: &JobStatus) -> Result<QueryResult, ClientError> {
        if !status.inline_result.is_empty() {
            let reader = StreamReader::try_new(std::io::Cursor::new(&status.inline_result), None)
                .map_err(|e| ClientError::Fetch(e.to_string()))?;
            let schema = reader.schema();
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Fetch(e.to_string()))?;
            return Ok(QueryResult {
                schema,
                batches,
                metrics: JobMetrics::from(status),
            });
        }
        let schema = status.result_schema.clone();
        let mut batches = Vec::new();
        let counter = Arc::new(WireCounter::default());
        for piece in &status.results {
            let client = connect_flight_lazy(&piece.endpoint, &self.security)
                .map_err(|e| ClientError::Fetch(e.to_string()))?;
            let ticket = encode_ticket(&piece.ticket(status.result_compression));
            let stream = fetch_batches(client, &piece.endpoint, ticket, counter.clone())
                .await
                .map_err(|e| ClientError::Fetch(e.to_string()))?;
            let fetched: Vec<RecordBatch> = stream
                .try_collect()
                .await
                .map_err(|e| ClientError::Fetch(e.to_string()))?;
            batches.extend(fetched);
        }
        Ok(QueryResult {
            schema,
            batches,
            metrics: JobMetrics::from(status),
        })
    }

    pub async fn job(&self, job_id: &JobId) -> Result<JobStatus, ClientError> {
        let request = GetJobRequest {
            job_id: job_id.to_string(),
        };
        job_status(
            self.rpc
                .clone()
                .get_job(request)
                .await
                .map_err(|s| self.status_error(s))?
                .into_inner(),
        )
    }

    pub async fn cancel(&self, job_id: &JobId) -> Result<JobState, ClientError> {
        let request = CancelJobRequest {
            job_id: job_id.to_string(),
        };
        let response = self
            .rpc
            .clone()
            .cancel_job(request)
            .await
            .map_err(|s| self.status_error(s))?;
        Ok(JobState::from(response.into_inner().state()))
    }

    pub async fn list_jobs(&self) -> Result<Vec<JobStatus>, ClientError> {
        let response = self
            .rpc
            .clone()
            .list_jobs(ListJobsRequest {})
            .await
            .map_err(|s| self.status_error(s))?;
        response
            .into_inner()
            .jobs
            .into_iter()
            .map(job_status)
            .collect()
    }

    pub async fn register_table(&self, name: &str, path: &str) -> Result<TableInfo, ClientError> {
        let request = RegisterTableRequest {
            name: name.to_string(),
            path: path.to_string(),
            format: String::new(),
        };
        let response = self
            .rpc
            .clone()
            .register_table(request)
            .await
            .map_err(|s| self.status_error(s))?;
        response
            .into_inner()
            .table
            .ok_or_else(|| ClientError::Query(format!("table {name} was not registered")))
            .and_then(TableInfo::try_from)
    }

    pub async fn list_tables(&self) -> Result<Vec<TableInfo>, ClientError> {
        let response = self
            .rpc
            .clone()
            .list_tables(ListTablesRequest {})
            .await
            .map_err(|s| self.status_error(s))?;
        response
            .into_inner()
            .tables
            .into_iter()
            .map(TableInfo::try_from)
            .collect()
    }

    pub async fn list_workers(&self) -> Result<Vec<WorkerInfo>, ClientError> {
        let response = self
            .rpc
            .clone()
            .list_workers(ListWorkersRequest {})
            .await
            .map_err(|s| self.status_error(s))?;
        Ok(response
            .into_inner()
            .workers
            .into_iter()
            .map(WorkerInfo::from)
            .collect())
    }
}
