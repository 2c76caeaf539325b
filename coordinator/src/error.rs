//! The coordinator's errors and, in one place, how each becomes a gRPC status. The category
//! says who is at fault: the query (invalid argument), a missing thing (not found), the
//! cluster (unavailable) or Tally itself (internal).

use datafusion::error::DataFusionError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("{0}")]
    Query(String),
    #[error("{0}")]
    NotFound(String),
    /// The request names something it may not touch (a path outside the data roots).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Security(#[from] tally_common::security::SecurityError),
    #[error("no workers are registered: start at least one `tally worker`")]
    NoWorkers,
    #[error("{0}")]
    Unavailable(String),
    /// Another operation holds what this one needs (a view being refreshed).
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("this coordinator is a standby; {}", match leader {
        Some(leader) => format!("the leader is at {leader}"),
        None => "no coordinator leads yet".to_string(),
    })]
    Standby { leader: Option<String> },
    #[error("cluster state: {0}")]
    Meta(#[from] tally_meta::MetaError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

impl CoordinatorError {
    /// A DataFusion planning error is the query's fault unless DataFusion says otherwise.
    pub fn from_datafusion(err: DataFusionError) -> Self {
        match err.find_root() {
            DataFusionError::Internal(msg) => CoordinatorError::Internal(msg.clone()),
            root => CoordinatorError::Query(with_hint(one_line(&root.to_string()))),
        }
    }
}

/// What to do, after the messages where DataFusion only says what is wrong.
fn with_hint(message: String) -> String {
    let unknown_table = message
        .strip_prefix("table '")
        .and_then(|rest| rest.strip_suffix("' not found"));
    match unknown_table {
        Some(qualified) => {
            // Tally has one catalog and one schema: drop their default names.
            let name = qualified.strip_prefix("datafusion.").unwrap_or(qualified);
            let name = name.strip_prefix("public.").unwrap_or(name);
            format!(
                "table {name} not found: `tally tables` lists the tables; register one with \
                 --table {name}=PATH or CREATE EXTERNAL TABLE"
            )
        }
        None => message,
    }
}

/// DataFusion prefixes its messages with a category ("Error during planning: ..."); users
/// want the sentence that names what is wrong, on one line.
pub(crate) fn one_line(message: &str) -> String {
    let mut message = message.trim();
    for prefix in [
        "Execution error: ",
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "Arrow error: ",
        "Internal error: ",
        "External error: ",
        "IO error: ",
        "Invalid or Unsupported Configuration: ",
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            message = rest;
        }
    }
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl From<CoordinatorError> for Status {
    fn from(err: CoordinatorError) -> Self {
        let code = match &err {
            CoordinatorError::Query(_) => Code::InvalidArgument,
            CoordinatorError::NotFound(_) => Code::NotFound,
            CoordinatorError::Conflict(_) => Code::Aborted,
            CoordinatorError::Refused(_) => Code::PermissionDenied,
            CoordinatorError::Security(_) => Code::FailedPrecondition,
            CoordinatorError::NoWorkers
            | CoordinatorError::Unavailable(_)
            | CoordinatorError::Standby { .. }
            | CoordinatorError::Meta(_) => Code::Unavailable,
            CoordinatorError::Internal(_) | CoordinatorError::Bind { .. } => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planning_errors_are_the_query_fault_and_one_line() {
        let err = CoordinatorError::from_datafusion(DataFusionError::Plan(
            "table 'nope' not found\n  at somewhere".to_string(),
        ));
        let status = Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "table 'nope' not found at somewhere");
    }
}
