//! A Flight SQL statement as a Tally job: run it to its end, then describe where its answer
//! is (`FlightInfo`), or serve the answers the coordinator holds itself.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use prost::Message;
use tally_common::flight_fetch::encode_ticket;
use tally_common::ids::JobId;
use tally_common::job_status::{JobState, JobStatus};
use tally_common::security::ClusterSecurity;

use super::locations::flight_location;
use crate::error::CoordinatorError;
use crate::jobs::JobManager;
use crate::sql::frontend::SqlFrontend;
use crate::sql::session::JobSettings;

/// Runs `sql` as a job and waits for its end. A job whose caller goes away first (the client
/// cancelled its call, or its connection dropped) is cancelled.
pub(super) async fn run_to_end(
    frontend: &Arc<SqlFrontend>,
    sql: &str,
) -> Result<JobStatus, CoordinatorError> {
    let job_id = frontend.submit(sql, JobSettings(HashMap::new())).await?;
    let mut guard = CancelUnlessEnded {
        jobs: frontend.jobs.clone(),
        job_id: Some(job_id.clone()),
    };
    let status = wait_for_end(&frontend.jobs, &job_id).await?;
    guard.job_id = None;
    tracing::debug!(job_id = %job_id, state = status.state.as_str(), "flight sql statement ended");
    Ok(status)
}

async fn wait_for_end(jobs: &JobManager, job_id: &JobId) -> Result<JobStatus, CoordinatorError> {
    let missing = || CoordinatorError::NotFound(format!("no job {job_id}"));
    let Some(mut updates) = jobs.subscribe(job_id) else {
        return jobs.status(job_id).ok_or_else(missing);
    };
    loop {
        let status = jobs.status(job_id).ok_or_else(missing)?;
        if status.is_finished() {
            return Ok(status);
        }
        if updates.changed().await.is_err() {
            return jobs.status(job_id).ok_or_else(missing);
        }
    }
}

/// Cancels the job when dropped: a Flight SQL call dropped by its client drops this with it.
struct CancelUnlessEnded {
    jobs: Arc<JobManager>,
    /// The job while it may still run; `None` once it has ended.
    job_id: Option<JobId>,
}

impl Drop for CancelUnlessEnded {
    fn drop(&mut self) {
        if let Some(job_id) = &self.job_id
            && self.jobs.cancel(job_id).is_some()
        {
            tracing::info!(job_id = %job_id, "flight sql caller went away; job cancelled");
        }
    }
}

/// The job's answer as Flight SQL describes it: a failed job is its error; a succeeded one has
/// an endpoint per piece, at the worker that holds it, in the order of the answer.
pub(super) fn flight_info(
    status: &JobStatus,
    descriptor: FlightDescriptor,
    security: &ClusterSecurity,
) -> Result<FlightInfo, CoordinatorError> {
    match status.state {
        JobState::Succeeded => {}
        JobState::Failed | JobState::Cancelled => {
            let message = status
                .failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_else(|| format!("job {} {}", status.job_id, status.state.as_str()));
            return Err(job_failure(status, message));
        }
        other => {
            return Err(CoordinatorError::Internal(format!(
                "job {} ended its wait while {}",
                status.job_id,
                other.as_str()
            )));
        }
    }
    let job_id = status.job_id.to_string();
    let (schema, endpoints) = if status.results.is_empty() {
        // The coordinator holds the answer (DDL, EXPLAIN) or there is none: it serves it.
        let schema = coordinator_answer(status)?.0;
        let ticket = TicketStatementQuery {
            statement_handle: job_id.clone().into(),
        };
        let endpoint = FlightEndpoint::new()
            .with_ticket(Ticket::new(ticket.as_any().encode_to_vec()))
            .with_app_metadata(job_id.clone());
        (schema, vec![endpoint])
    } else {
        let endpoints = status
            .results
            .iter()
            .map(|piece| {
                let ticket = encode_ticket(&piece.ticket(status.result_compression));
                FlightEndpoint::new()
                    .with_ticket(Ticket::new(ticket))
                    .with_location(flight_location(&piece.endpoint, security))
                    .with_app_metadata(job_id.clone())
            })
            .collect();
        (status.result_schema.clone(), endpoints)
    };
    let mut info = FlightInfo::new()
        .try_with_schema(&schema)
        .map_err(|e| CoordinatorError::Internal(format!("encoding the answer's schema: {e}")))?
        .with_descriptor(descriptor)
        .with_total_records(status.result_rows as i64)
        .with_ordered(true)
        .with_app_metadata(job_id);
    for endpoint in endpoints {
        info = info.with_endpoint(endpoint);
    }
    Ok(info)
}

/// A failed job's error with the code its failure carries (the query's fault, the cluster's).
fn job_failure(status: &JobStatus, message: String) -> CoordinatorError {
    let code = status
        .failure
        .as_ref()
        .map(|f| f.code)
        .unwrap_or(tonic::Code::Cancelled);
    match code {
        tonic::Code::InvalidArgument => CoordinatorError::Query(message),
        tonic::Code::NotFound => CoordinatorError::NotFound(message),
        tonic::Code::PermissionDenied => CoordinatorError::Refused(message),
        tonic::Code::Unavailable => CoordinatorError::Unavailable(message),
        tonic::Code::Aborted | tonic::Code::Cancelled => CoordinatorError::Conflict(message),
        _ => CoordinatorError::Internal(message),
    }
}

/// The answer of a job that keeps none on the workers: the coordinator's own (an Arrow IPC
/// stream in the status) or no rows at all.
pub(super) fn coordinator_answer(
    status: &JobStatus,
) -> Result<(SchemaRef, Vec<RecordBatch>), CoordinatorError> {
    if status.inline_result.is_empty() {
        return Ok((status.result_schema.clone(), Vec::new()));
    }
    let unreadable =
        |e: arrow::error::ArrowError| CoordinatorError::Internal(format!("job answer: {e}"));
    let reader = StreamReader::try_new(Cursor::new(status.inline_result.as_slice()), None)
        .map_err(unreadable)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(unreadable)?;
    Ok((schema, batches))
}

/// The job a coordinator-served ticket names.
pub(super) fn ticket_job(ticket: &TicketStatementQuery) -> Result<JobId, CoordinatorError> {
    let text = std::str::from_utf8(&ticket.statement_handle)
        .map_err(|_| CoordinatorError::Query("the statement ticket is not a job id".to_string()))?;
    JobId::parse(text).map_err(CoordinatorError::Query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_names_its_job_and_garbage_is_refused() {
        let job = JobId::new_random();
        let ticket = TicketStatementQuery {
            statement_handle: job.to_string().into(),
        };
        assert_eq!(ticket_job(&ticket).unwrap(), job);
        let garbage = TicketStatementQuery {
            statement_handle: vec![0xff, 0xfe].into(),
        };
        assert!(ticket_job(&garbage).is_err());
    }
}
