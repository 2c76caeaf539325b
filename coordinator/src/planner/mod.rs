//! From a DataFusion physical plan to a distributed plan. Tally's rules (one file each under
//! `rules/`) run as one ordered pipeline, readable top to bottom in this file:
//!
//! 0. While DataFusion plans, before its own physical optimizer rules (installed by the job's
//!    session, `sql/session.rs`): `storage_splits` regroups every file scan into tasks of
//!    about `tally.split_bytes`, so DataFusion places exchanges for those task counts.
//! 1. On the single-node plan (`rewrite`): `colocated_joins` (bucketed scans keep their
//!    buckets), `distributable_joins` (every join partitioned or broadcast), `eager_aggregation`
//!    (partial aggregates below joins), `compact_distinct` (distinct states as compact sets),
//!    and for the naive baseline `raw_row_aggregation`.
//! 2. Cutting it into stages (`cut`): `worker_combine` turns each hash exchange fed by a partial
//!    aggregate into a partial stage and a per-worker combine stage, while the cutter makes every
//!    other exchange a stage boundary; then `broadcast` marks the readers of collected join sides
//!    to fetch once per worker.
//! 3. When a stage starts (`settle_at_stage_start`, called by the scheduler): `worker_combine`
//!    decides from the partial stage's measured rows whether to merge, and `final_placement`
//!    whether the final aggregation gathers into one task.

pub(crate) mod estimates;
pub(crate) mod rules;
#[cfg(test)]
mod snapshot_tests;
pub(crate) mod stages;
#[cfg(test)]
pub(crate) mod test_support;

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, ReplaceChildrenOptions};
use tally_common::ids::JobId;

pub(crate) use rules::worker_combine::CombineMeasurement;
pub(crate) use stages::{DistributedPlan, Exchange, StagePlan};
use tally_common::shuffle_writer::ShuffleWriterExec;

use crate::options::Rules;
use rules::broadcast::read_broadcasts_once_per_worker;
use rules::colocated_joins::join_colocated_inputs;
use rules::compact_distinct::compact_distinct_states;
use rules::distributable_joins::make_joins_distributable;
use rules::eager_aggregation::push_aggregates_below_joins;
use rules::raw_row_aggregation::aggregate_raw_rows;
use rules::worker_combine;

/// Steps 1 and 2: rewrites `plan` as `rules` say and cuts it into stages.
pub(crate) fn plan_job(
    job: &JobId,
    plan: Arc<dyn ExecutionPlan>,
    rules: &Rules,
    partitions: usize,
    workers: usize,
) -> Result<DistributedPlan> {
    let plan = rewrite(plan, rules, partitions)?;
    cut(job, plan, rules, workers)
}

/// Step 2: stages cut at every exchange (worker combines among them), broadcast reads marked.
pub(crate) fn cut(
    job: &JobId,
    plan: Arc<dyn ExecutionPlan>,
    rules: &Rules,
    workers: usize,
) -> Result<DistributedPlan> {
    let mut distributed = stages::cut_stages(job, plan, rules, workers)?;
    if rules.broadcast_threshold_bytes > 0 {
        read_broadcasts_once_per_worker(&mut distributed.stages)?;
    }
    Ok(distributed)
}

/// Step 3: a stage's plan as it starts. A worker-level combine stage settles from what its
/// partial stage measured; every other stage runs as it was cut. Returns the plan and what
/// the rules decided, for EXPLAIN.
pub(crate) fn settle_at_stage_start(
    stage: &StagePlan,
    measured: Option<CombineMeasurement>,
    final_gather_max_groups: usize,
) -> Result<(Arc<ShuffleWriterExec>, Vec<String>)> {
    match (&stage.combine, measured) {
        (Some(spec), Some(measured)) => {
            worker_combine::settle(spec, &stage.plan, measured, final_gather_max_groups)
        }
        _ => Ok((stage.plan.clone(), Vec::new())),
    }
}

/// Step 1: Tally's rewrites of a single-node physical plan, before it is cut into stages.
pub(crate) fn rewrite(
    plan: Arc<dyn ExecutionPlan>,
    rules: &Rules,
    partitions: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let broadcast = rules.broadcast_threshold_bytes > 0;
    let mut plan = plan;
    if rules.bucketed_scans {
        plan = join_colocated_inputs(plan)?;
    }
    plan = make_joins_distributable(plan, partitions, broadcast)?;
    if rules.eager_aggregation {
        plan = push_aggregates_below_joins(plan, rules.eager_aggregation_min_reduction)?;
    }
    if rules.compact_distinct {
        plan = compact_distinct_states(plan, rules.compact_distinct_min_rows_per_group)?;
    }
    if !rules.partial_aggregation {
        plan = aggregate_raw_rows(plan)?;
    }
    Ok(plan)
}

/// Rebuilding a node over new children recomputes its properties from them.
pub(crate) fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}
