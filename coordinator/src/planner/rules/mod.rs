//! Tally's physical plan rewrites, one file each, applied in order by `planner::plan_job`.

pub(crate) mod broadcast;
pub(crate) mod colocated_joins;
pub(crate) mod compact_distinct;
pub(crate) mod distributable_joins;
pub(crate) mod final_placement;
pub(crate) mod raw_row_aggregation;
pub(crate) mod worker_combine;
