//! What the client library hands its users: jobs (the status type the coordinator makes,
//! `tally_common::job_status`), workers and tables as Tally's own types, converted from the
//! coordinator's messages here and nowhere else.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use tally_common::ids::WorkerId;
use tally_common::ipc::schema_from_bytes;
use tally_proto::coordinator as pb;

pub use tally_common::ids::{JobId, StageId};
pub use tally_common::job_status::{
    JobFailure, JobState, JobStatus, NaiveExchange, NaivePlan, StageState, StageStatus, TaskState,
    TaskStatus,
};

use crate::error::ClientError;

#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub worker_id: WorkerId,
    pub endpoint: String,
    pub task_slots: u32,
    pub alive: bool,
    pub since_last_heartbeat: Duration,
    /// Its memory and spool use as its last heartbeat reported them; None before one, and
    /// for workers of a cluster in etcd (they keep a lease instead of heartbeating).
    pub load: Option<WorkerLoad>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLoad {
    /// Bytes its operators hold in its memory pool, and the pool's size.
    pub memory_reserved_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Bytes of stage output spooled on its disk.
    pub spool_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub path: String,
    pub format: String,
    pub schema: SchemaRef,
    /// e.g. "8 buckets by (o_orderkey)", when bucketed.
    pub bucketing: Option<String>,
    /// For a materialized view: what it covers and whether it is up to date.
    pub view: Option<String>,
}

impl From<pb::WorkerInfo> for WorkerInfo {
    fn from(worker: pb::WorkerInfo) -> Self {
        WorkerInfo {
            worker_id: WorkerId::from(worker.worker_id),
            endpoint: worker.endpoint,
            task_slots: worker.task_slots,
            alive: worker.alive,
            since_last_heartbeat: Duration::from_millis(worker.last_heartbeat_ms_ago),
            load: worker.load.map(|load| WorkerLoad {
                memory_reserved_bytes: load.memory_reserved_bytes,
                memory_limit_bytes: load.memory_limit_bytes,
                spool_bytes: load.spool_bytes,
            }),
        }
    }
}

impl TryFrom<pb::TableInfo> for TableInfo {
    type Error = ClientError;

    fn try_from(table: pb::TableInfo) -> Result<Self, ClientError> {
        Ok(TableInfo {
            schema: schema_from_bytes(&table.schema)
                .map_err(|e| ClientError::Fetch(format!("table {}: {e}", table.name)))?,
            name: table.name,
            path: table.path,
            format: table.format,
            bucketing: (!table.bucketing.is_empty()).then_some(table.bucketing),
            view: (!table.view.is_empty()).then_some(table.view),
        })
    }
}
