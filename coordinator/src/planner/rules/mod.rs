//! Tally's planner rules, one file each; `planner/mod.rs` applies them as one ordered pipeline.

pub(crate) mod broadcast;
pub(crate) mod colocated_joins;
pub(crate) mod compact_distinct;
pub(crate) mod distributable_joins;
pub(crate) mod eager_aggregation;
pub(crate) mod final_placement;
pub(crate) mod raw_row_aggregation;
pub(crate) mod storage_splits;
pub(crate) mod worker_combine;

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

/// What EXPLAIN notes on a stage, from the operators these rules put in its plan.
pub(crate) fn stage_notes(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut notes = storage_splits::stage_notes(plan);
    notes.extend(compact_distinct::stage_notes(plan));
    notes.extend(eager_aggregation::stage_notes(plan));
    notes
}
