//! Tally's client library (submit SQL, follow jobs, fetch answers), the embedded local
//! cluster, output formats, and the TPC-H generator behind `tally gen-tpch`.

pub mod cli;
mod client;
mod error;
mod local;
mod model;
pub mod output;
pub mod quality;
pub mod tpch;

pub use client::{Client, JobMetrics, QueryResult, StageMetrics};
pub use error::ClientError;
pub use local::{LocalCluster, LocalClusterOptions};
pub use model::{
    JobFailure, JobId, JobState, JobStatus, NaiveExchange, NaivePlan, StageId, StageState,
    StageStatus, TableInfo, TaskState, TaskStatus, WorkerInfo, WorkerLoad,
};
