//! What is stored per worker and per table, as JSON so an operator can read it with etcdctl.

use serde::{Deserialize, Serialize};
use tally_common::ids::WorkerId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub id: WorkerId,
    /// `host:port` of its gRPC and Flight services.
    pub endpoint: String,
    pub task_slots: u32,
}

/// A table as registered; its schema and bucketing are read again from the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRecord {
    pub name: String,
    pub path: String,
    pub format: String,
}
