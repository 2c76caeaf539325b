//! A Tally worker: runs stage tasks sent by the coordinator, spools their output, serves it to
//! other workers and clients over Arrow Flight, and heartbeats to the coordinator.

mod coordinator_link;
mod error;
mod executor;
mod flight_service;
mod heartbeat;
mod metrics;
mod server;
mod service;

pub use error::WorkerError;
pub use server::{DEFAULT_MEMORY_LIMIT, WorkerConfig, WorkerHandle, start_worker};
