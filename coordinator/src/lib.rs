//! The Tally coordinator, in three layers:
//! - `edge/`: the gRPC service and server, converting wire messages at the boundary;
//! - `sql/`: the SQL front end (catalog, sessions, statements into jobs) and `planner/`, the
//!   distributed planner whose rules minimize what crosses the network;
//! - `jobs/`: scheduling, the life of a job from its stages to its end;
//! - `ui/`: the web UI and Prometheus metrics on `--http-bind`.

mod edge;
mod error;
mod jobs;
mod lineage;
mod options;
mod planner;
mod sql;
mod ui;

pub use edge::server::{CoordinatorConfig, CoordinatorHandle, start_coordinator};
pub use error::CoordinatorError;
pub use jobs::DEFAULT_TASK_ATTEMPTS;
pub use lineage::LineageTarget;
pub use options::TallyOptions;
pub use sql::catalog::TableFormat;
