//! From a DataFusion physical plan to a distributed plan: stages cut at every exchange.

mod distributable_joins;
mod stages;

pub(crate) use distributable_joins::make_joins_distributable;

pub(crate) use stages::{DistributedPlan, Exchange, StagePlan, cut_stages};

use datafusion::physical_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};

/// Rebuilding a node over new children recomputes its properties from them.
pub(crate) fn recompute() -> ReplaceChildrenOptions {
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute)
}
