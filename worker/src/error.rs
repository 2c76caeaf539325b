//! The worker's errors and, in one place, how each becomes a gRPC status.

use datafusion::error::DataFusionError;
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

/// Whose fault a failed task is, as a gRPC code: the query's (invalid argument), the
/// worker's memory (resource exhausted), or something else (internal).
pub(crate) fn task_error_code(error: &DataFusionError) -> Code {
    use arrow::error::ArrowError;
    match error.find_root() {
        DataFusionError::ResourcesExhausted(_) => Code::ResourceExhausted,
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Code::InvalidArgument,
        DataFusionError::ArrowError(e, _)
            if matches!(
                e.as_ref(),
                ArrowError::DivideByZero
                    | ArrowError::CastError(_)
                    | ArrowError::ComputeError(_)
                    | ArrowError::ArithmeticOverflow(_)
                    | ArrowError::InvalidArgumentError(_)
            ) =>
        {
            Code::InvalidArgument
        }
        _ => Code::Internal,
    }
}

impl From<WorkerError> for Status {
    fn from(err: WorkerError) -> Self {
        let code = match &err {
            WorkerError::InvalidRequest(_) => Code::InvalidArgument,
            WorkerError::Plan(DataFusionError::ResourcesExhausted(_)) => Code::ResourceExhausted,
            WorkerError::Plan(_) => Code::InvalidArgument,
            WorkerError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => Code::NotFound,
            WorkerError::Coordinator { .. } | WorkerError::Membership(_) => Code::Unavailable,
            _ => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}
