//! Scheduling: the life of a job from its distributed plan to its end.
//!
//! A job is a list of stages; a stage runs when every stage it reads has finished (blocking
//! shuffle), as one task per partition spread over the live workers; task reports from the
//! workers drive it forward.
//! - `model.rs`: jobs, stages and tasks, and every change of their states;
//! - `manager.rs`: the job table, the scheduler's reactions (reports, retries, lost workers,
//!   cancel, timeout), and the one place a job ends;
//! - `scheduling.rs`, `launch.rs`, `placement.rs`: starting stages and placing tasks;
//! - `report.rs`: what a task report does; `recovery.rs`: what a lost worker costs;
//!   `exclusion.rs`: workers a job stops using when other workers cannot reach them;
//! - `transport.rs`: how workers are reached (gRPC, or in-process in tests);
//! - `status.rs`: the job's status, as clients and the cluster state see it.

mod error;
mod exclusion;
#[cfg(test)]
mod in_process;
mod launch;
mod manager;
mod model;
mod placement;
mod recovery;
mod report;
mod scheduling;
mod status;
#[cfg(test)]
mod tests;
mod transport;
mod workers;

pub(crate) use error::JobError;
pub(crate) use manager::{JobLimits, JobManager};
pub use model::DEFAULT_TASK_ATTEMPTS;
pub(crate) use model::TaskOutput;
pub(crate) use report::{StageRead, TaskOutcome, TaskReport};
pub(crate) use status::planned_stage;
pub(crate) use transport::GrpcTransport;
pub(crate) use workers::{WorkerLoad, WorkerRegistry, WorkerView};
