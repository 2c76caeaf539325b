//! What is stored per worker and per table, as JSON so an operator can read it with etcdctl.

use std::collections::BTreeMap;

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
    /// Set for a materialized view: its manifest. Replacing the record is how a refresh
    /// commits, so a view changes in one store write or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<ViewManifest>,
    /// The `CREATE EXTERNAL TABLE` statement of a table whose schema is declared rather than
    /// read from files (a Kafka topic), planned again when the coordinator starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// The options of a table in an S3 bucket that are not secrets (endpoint, region,
    /// allow_http), as table options (`aws.endpoint`): credentials never enter the cluster
    /// state, and after a restart come from the coordinator's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// What a materialized view is and exactly which source inputs its stored states cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewManifest {
    /// The view's `SELECT ... GROUP BY ...`, planned again when the coordinator starts.
    pub query: String,
    pub source: String,
    /// The state files are hash-bucketed on these view columns.
    pub bucket_by: Vec<String>,
    pub buckets: usize,
    /// The states live in `<view folder>/gen-<generation>/`; each refresh writes the next.
    pub generation: u64,
    pub inputs: Vec<CoveredInput>,
    /// For a view over a Kafka topic: per partition, the first offset not yet in the states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<CoveredOffset>,
    /// Groups stored, one state row each.
    pub groups: u64,
    /// Milliseconds since the Unix epoch.
    pub refreshed_at_ms: u64,
}

/// One source file as it was when its rows went into the view's states.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CoveredInput {
    pub path: String,
    pub size: u64,
    /// Modification time, milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// How far a view has consumed one partition of a Kafka topic: records before `next` are in
/// its states, exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CoveredOffset {
    pub partition: i32,
    pub next: i64,
}
