//! From a DataFusion physical plan to a distributed plan: Tally's rewrites (one file each
//! under `rules/`), then stages cut at every exchange.

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

pub(crate) use stages::{DistributedPlan, Exchange, StagePlan};

use crate::options::Rules;
use rules::colocated_joins::join_colocated_inputs;
use rules::compact_distinct::compact_distinct_states;
use rules::distributable_joins::make_joins_distributable;
use rules::eager_aggregation::push_aggregates_below_joins;
use rules::raw_row_aggregation::aggregate_raw_rows;

/// Rewrites `plan` as `rules` say and cuts it into stages.
pub(crate) fn plan_job(
    job: &JobId,
    plan: Arc<dyn ExecutionPlan>,
    rules: &Rules,
    partitions: usize,
    workers: usize,
) -> Result<DistributedPlan> {
    let plan = rewrite(plan, rules, partitions)?;
    stages::cut_stages(job, plan, rules, workers)
}

/// Tally's rewrites of a single-node physical plan, before it is cut into stages.
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
