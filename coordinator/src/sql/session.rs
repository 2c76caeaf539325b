//! The DataFusion session the coordinator plans with. Defaults differ from single-node
//! DataFusion where distribution needs it: no round-robin repartitions (scan partitions are
//! the tasks, sized in bytes by the `storage_splits` rule this session runs first), and no
//! dynamic filters (they would link operators across stages).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use tally_common::ids::JobId;

use super::spark::SqlDialect;
use crate::error::CoordinatorError;
use crate::options::{Rules, TallyOptions, sql_dialect};
use crate::planner::rules::compact_distinct::SINGLE_DISTINCT_TO_GROUP_BY;
use crate::planner::rules::storage_splits::plan_scans_by_bytes;
use crate::planner::{DistributedPlan, plan_job};

pub(crate) const TARGET_PARTITIONS: &str = "datafusion.execution.target_partitions";

/// Settings Tally needs on the coordinator and on every worker. Work stealing between scan
/// partitions assumes all partitions run in one process; a task runs just one. Uncorrelated
/// scalar subqueries are planned as joins, which stages can carry. Scans are cut into tasks
/// by the `storage_splits` rule alone: DataFusion's own file-scan repartitioning would cut
/// them again into `target_partitions` ranges.
const DISTRIBUTED_SETTINGS: [(&str, &str); 6] = [
    ("datafusion.optimizer.repartition_file_scans", "false"),
    (
        "datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery",
        "false",
    ),
    (
        "datafusion.optimizer.enable_round_robin_repartition",
        "false",
    ),
    (
        "datafusion.optimizer.enable_dynamic_filter_pushdown",
        "false",
    ),
    (
        "datafusion.execution.enable_file_stream_work_stealing",
        "false",
    ),
    ("datafusion.execution.collect_statistics", "true"),
];

pub(crate) fn base_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_option_extension(TallyOptions::default());
    for (key, value) in DISTRIBUTED_SETTINGS {
        config = config.set_str(key, value);
    }
    config
}

/// The runtime the coordinator plans with. Table folders receive new files all the time
/// (mini-batches): DataFusion's file-listing cache, which by default never expires, would
/// hide them from every later query and refresh, so folders are listed at every plan.
pub(crate) fn base_runtime() -> Arc<RuntimeEnv> {
    RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .build_arc()
        .expect("a runtime without a file-listing cache")
}

/// Settings every worker applies to the stage plans of one job.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobSettings(pub HashMap<String, String>);

/// A job's session, the rules in force, and the settings its workers apply.
pub(crate) struct JobSession {
    pub ctx: SessionContext,
    pub rules: Rules,
    pub worker_settings: JobSettings,
}

/// A per-job session: shares the catalog with `base`, with the job's settings applied on top,
/// then the DataFusion settings that the job's rules imply (unless the job set them itself).
pub(crate) fn job_session(
    base: &SessionContext,
    settings: &JobSettings,
    default_partitions: usize,
) -> Result<JobSession, CoordinatorError> {
    let mut state: SessionState = base.state();
    let mut applied: HashMap<String, String> = DISTRIBUTED_SETTINGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    applied.extend(settings.0.clone());
    applied
        .entry(TARGET_PARTITIONS.to_string())
        .or_insert_with(|| default_partitions.max(1).to_string());
    for (key, value) in &applied {
        state
            .config_mut()
            .options_mut()
            .set(key, value)
            .map_err(|e| {
                CoordinatorError::Query(format!(
                    "setting {key} = {value}: {}",
                    crate::error::one_line(&e.to_string())
                ))
            })?;
    }
    let rules = Rules::from_config(state.config().options()).map_err(CoordinatorError::Query)?;
    let dialect = SqlDialect::parse(&sql_dialect(state.config().options()))?;
    let implied = rule_settings(&rules)
        .into_iter()
        .chain(dialect.settings().iter().map(|&(k, v)| (k, v.to_string())));
    for (key, value) in implied {
        if !settings.0.contains_key(key) {
            state
                .config_mut()
                .options_mut()
                .set(key, &value)
                .map_err(|e| CoordinatorError::Internal(format!("{key}: {e}")))?;
            applied.insert(key.to_string(), value);
        }
    }
    // Workers need only DataFusion's settings; Tally's are baked into the stage plans.
    applied.retain(|key, _| !key.starts_with("tally."));
    let ctx = SessionContext::new_with_state(dialect.apply(plan_scans_by_bytes(state)));
    if rules.compact_distinct {
        // DISTINCT aggregates stay whole, for the compact_distinct rule to give them states.
        ctx.remove_optimizer_rule(SINGLE_DISTINCT_TO_GROUP_BY);
    }
    Ok(JobSession {
        ctx,
        rules,
        worker_settings: JobSettings(applied),
    })
}

/// DataFusion settings that carry out Tally's rules.
fn rule_settings(rules: &Rules) -> Vec<(&'static str, String)> {
    let broadcast_bytes = rules.broadcast_threshold_bytes;
    let mut settings = vec![
        (
            "datafusion.optimizer.hash_join_single_partition_threshold",
            broadcast_bytes.to_string(),
        ),
        (
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            if broadcast_bytes == 0 {
                0
            } else {
                usize::MAX / 2
            }
            .to_string(),
        ),
    ];
    if rules.partial_aggregation {
        // Single-node DataFusion stops partial aggregation that does not reduce; before a
        // network exchange every reduction counts.
        settings.push((
            "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
            "1.0".to_string(),
        ));
    }
    settings
}

impl JobSession {
    /// Cuts `plan` into stages as the job's rules and partition count say.
    pub(crate) fn distribute(
        &self,
        id: &JobId,
        plan: Arc<dyn ExecutionPlan>,
        workers: usize,
    ) -> Result<DistributedPlan, CoordinatorError> {
        plan_job(id, plan, &self.rules, self.partitions(), workers)
            .map_err(CoordinatorError::from_datafusion)
    }

    /// Hash partitions per exchange (and scan tasks to aim for) in this job.
    pub(crate) fn partitions(&self) -> usize {
        self.ctx
            .state()
            .config()
            .options()
            .execution
            .target_partitions
    }
}
