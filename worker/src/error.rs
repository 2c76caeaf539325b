//! The worker's errors and, in one place, how each becomes a gRPC status (a task's own
//! failure is classified by `tally_common::failure`).

use datafusion::error::DataFusionError;
use tally_common::failure::FailureKind;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Plan(#[from] DataFusionError),
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot register with the coordinator at {endpoint}: {message}")]
    Coordinator { endpoint: String, message: String },
    #[error("cannot join the cluster: {0}")]
    Membership(String),
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Security(#[from] tally_common::security::SecurityError),
}

impl From<WorkerError> for Status {
    fn from(err: WorkerError) -> Self {
        let code = match &err {
            WorkerError::InvalidRequest(_) => Code::InvalidArgument,
            WorkerError::Plan(error) => FailureKind::of_datafusion(error).code(),
            WorkerError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => Code::NotFound,
            WorkerError::Coordinator { .. } | WorkerError::Membership(_) => Code::Unavailable,
            _ => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}
