//! What can go wrong for a client, each case with a message a person can act on: one line
//! that says what failed and, where the cause does not make it plain, what to do.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `message` is the reason alone (per address when several were tried).
    #[error(
        "cannot reach the coordinator at {endpoint}: {message} (is `tally local` or `tally coordinator` running there?)"
    )]
    Connect { endpoint: String, message: String },
    /// The query or request is wrong: bad SQL, unknown table or column, missing file.
    #[error("{0}")]
    Query(String),
    /// `code` says whose fault it is: RESOURCE_EXHAUSTED when a worker ran out of memory,
    /// INVALID_ARGUMENT for errors in the query, UNKNOWN when the job does not say.
    #[error("job {job_id} failed: {message}")]
    JobFailed {
        job_id: String,
        message: String,
        code: Code,
    },
    #[error(
        "{endpoint} refused the call: {message} (give the cluster's token with --token-file FILE or TALLY_TOKEN)"
    )]
    Unauthenticated { endpoint: String, message: String },
    #[error("the coordinator at {endpoint} stopped answering: {message}")]
    Unavailable { endpoint: String, message: String },
    #[error("job {job_id} cancelled: interrupted (Ctrl-C)")]
    Interrupted { job_id: String },
    #[error("fetching results: {0}")]
    Fetch(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Local(String),
    /// `tally check` ran every check and some failed (its exit code is 1; any other error of
    /// `check` is 2). `names` lists the failed checks.
    #[error("{failed} of {total} checks failed: {names}")]
    ChecksFailed {
        failed: usize,
        total: usize,
        names: String,
    },
}

impl ClientError {
    pub(crate) fn from_status(endpoint: &str, status: Status) -> Self {
        let message = status.message().to_string();
        match status.code() {
            Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition => {
                ClientError::Query(message)
            }
            Code::Unauthenticated => ClientError::Unauthenticated {
                endpoint: endpoint.to_string(),
                message,
            },
            Code::Unavailable | Code::Unknown | Code::DeadlineExceeded => {
                ClientError::Unavailable {
                    endpoint: endpoint.to_string(),
                    message: first_line(&message),
                }
            }
            _ => ClientError::Query(message),
        }
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_string()
}
