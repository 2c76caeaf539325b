//! The Tally coordinator: catalog, SQL planning, cutting plans into stages, scheduling their
//! tasks on workers, and job state.

mod bucketed_table;
mod catalog;
mod ctas;
mod data_roots;
mod error;
mod explain;
mod jobs;
mod options;
mod planner;
mod resolve;
mod role;
mod server;
mod service;
mod session;
mod sql_guard;
mod state;
mod status;
mod workers;

pub use catalog::TableFormat;
pub use error::CoordinatorError;
pub use jobs::DEFAULT_TASK_ATTEMPTS;
pub use options::TallyOptions;
pub use server::{CoordinatorConfig, CoordinatorHandle, start_coordinator};
