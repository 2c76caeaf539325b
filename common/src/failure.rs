//! One classification of failures for every role: whose fault a failure is, whether another
//! try may pass, and the gRPC code it travels as. The worker classifies a failed task with
//! it, the Flight fetch marks lost inputs, and the scheduler reads the class of a task report
//! or of a call a worker did not answer. Deciding retryability anywhere else is a bug.

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use tonic::{Code, Status};

use crate::kafka::MalformedRecord;

/// Why something failed, by whose fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// An error in the query itself: its plan, types or values (a division by zero, a cast).
    Query,
    /// A worker ran out of memory for the task: the operator's limit, not the query.
    ResourcesExhausted,
    /// Spooled input could not be fetched from another worker, which may have died.
    LostInput,
    /// A worker did not answer a call.
    Unreachable,
    /// Reading or writing files (spool, table files, object store) failed.
    Io,
    /// Tally itself went wrong.
    Internal,
}

impl FailureKind {
    /// Another try may pass (on another worker, once lost input is made again); a query's
    /// own error would fail the same way every time.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            FailureKind::LostInput | FailureKind::Unreachable | FailureKind::Io
        )
    }

    /// The failure is the job's own (its query, its memory needs), not the cluster's: the
    /// client reports it, so the cluster's logs need not warn about it.
    pub fn is_the_jobs_own(self) -> bool {
        matches!(self, FailureKind::Query | FailureKind::ResourcesExhausted)
    }

    /// The gRPC code this failure travels as.
    pub fn code(self) -> Code {
        match self {
            FailureKind::Query => Code::InvalidArgument,
            FailureKind::ResourcesExhausted => Code::ResourceExhausted,
            FailureKind::LostInput | FailureKind::Unreachable => Code::Unavailable,
            FailureKind::Io | FailureKind::Internal => Code::Internal,
        }
    }

    /// The class of a DataFusion error met while planning or running a task.
    pub fn of_datafusion(error: &DataFusionError) -> Self {
        match error.find_root() {
            DataFusionError::ResourcesExhausted(_) => FailureKind::ResourcesExhausted,
            DataFusionError::Plan(_)
            | DataFusionError::SQL(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => FailureKind::Query,
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
                FailureKind::Query
            }
            DataFusionError::External(source) if source.is::<MalformedRecord>() => {
                FailureKind::Query
            }
            DataFusionError::External(source) if source.is::<FetchFailed>() => {
                FailureKind::LostInput
            }
            DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => FailureKind::Io,
            _ => FailureKind::Internal,
        }
    }

    /// The class of a failed call to another process. A call that got no answer (the peer is
    /// gone, the connection broke) is unreachable; otherwise the peer's code says.
    pub fn of_status(status: &Status) -> Self {
        match status.code() {
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
                FailureKind::Unreachable
            }
            code => Self::of_code(code, false),
        }
    }

    /// The class a report carries as its gRPC code and retry flag.
    pub fn of_code(code: Code, retryable: bool) -> Self {
        match code {
            Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::OutOfRange => FailureKind::Query,
            Code::ResourceExhausted => FailureKind::ResourcesExhausted,
            Code::Unavailable if retryable => FailureKind::LostInput,
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
                FailureKind::Unreachable
            }
            _ if retryable => FailureKind::Io,
            _ => FailureKind::Internal,
        }
    }
}

/// Shuffle data could not be fetched from another worker: the task may pass on another try,
/// once the data is made again elsewhere.
#[derive(Debug)]
pub struct FetchFailed {
    pub endpoint: String,
    pub message: String,
}

impl std::fmt::Display for FetchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fetching shuffle data from {}: {}",
            self.endpoint, self.message
        )
    }
}

impl std::error::Error for FetchFailed {}

impl FetchFailed {
    /// The endpoint a failure's message says shuffle data could not be fetched from.
    pub fn source_in(message: &str) -> Option<&str> {
        let rest = &message[message.find("fetching shuffle data from ")? + 27..];
        rest.split(": ")
            .next()
            .filter(|endpoint| !endpoint.is_empty())
    }

    pub fn into_datafusion(endpoint: &str, message: &str) -> DataFusionError {
        DataFusionError::External(Box::new(FetchFailed {
            endpoint: endpoint.to_string(),
            message: message.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_of_a_fetch_failure_is_read_back_from_its_message() {
        let failed = FetchFailed::into_datafusion("10.0.0.2:50051", "tcp connect error");
        let message = format!("External error: {failed}");
        assert_eq!(FetchFailed::source_in(&message), Some("10.0.0.2:50051"));
        assert_eq!(FetchFailed::source_in("disk full"), None);
    }

    #[test]
    fn query_errors_are_not_retried_and_lost_inputs_are() {
        let divide = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert_eq!(FailureKind::of_datafusion(&divide), FailureKind::Query);
        assert!(!FailureKind::of_datafusion(&divide).retryable());
        let plan = DataFusionError::Plan("no column x".to_string());
        assert_eq!(
            FailureKind::of_datafusion(&plan).code(),
            Code::InvalidArgument
        );
        let memory = DataFusionError::ResourcesExhausted("pool".to_string());
        assert_eq!(
            FailureKind::of_datafusion(&memory).code(),
            Code::ResourceExhausted
        );
        assert!(!FailureKind::of_datafusion(&memory).retryable());

        let lost = DataFusionError::Context(
            "reading stage 1".to_string(),
            Box::new(FetchFailed::into_datafusion("w:1", "connection refused")),
        );
        assert_eq!(FailureKind::of_datafusion(&lost), FailureKind::LostInput);
        assert!(FailureKind::of_datafusion(&lost).retryable());
        let io = DataFusionError::IoError(std::io::Error::other("disk"));
        assert!(FailureKind::of_datafusion(&io).retryable());
        let internal = DataFusionError::Internal("bug".to_string());
        assert_eq!(FailureKind::of_datafusion(&internal), FailureKind::Internal);
        assert!(!FailureKind::of_datafusion(&internal).retryable());
    }

    #[test]
    fn a_report_keeps_its_class_through_code_and_flag() {
        for kind in [
            FailureKind::Query,
            FailureKind::ResourcesExhausted,
            FailureKind::LostInput,
            FailureKind::Io,
            FailureKind::Internal,
        ] {
            assert_eq!(FailureKind::of_code(kind.code(), kind.retryable()), kind);
        }
    }

    #[test]
    fn a_call_without_an_answer_is_unreachable_and_retryable() {
        let gone = FailureKind::of_status(&Status::unavailable("connection refused"));
        assert_eq!(gone, FailureKind::Unreachable);
        assert!(gone.retryable());
        let refused = FailureKind::of_status(&Status::invalid_argument("bad plan"));
        assert_eq!(refused, FailureKind::Query);
        assert!(!refused.retryable());
    }
}
