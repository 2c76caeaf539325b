//! The DataFusion session the coordinator plans with. Defaults differ from single-node
//! DataFusion where distribution needs it: no round-robin repartitions (scan partitions are
//! the tasks), and no dynamic filters (they would link operators across stages).

use std::collections::HashMap;

use datafusion::execution::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::CoordinatorError;

pub(crate) const TARGET_PARTITIONS: &str = "datafusion.execution.target_partitions";

/// Settings Tally needs on the coordinator and on every worker. Work stealing between scan
/// partitions assumes all partitions run in one process; a task runs just one. Uncorrelated
/// scalar subqueries are planned as joins, which stages can carry.
const DISTRIBUTED_SETTINGS: [(&str, &str); 5] = [
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
    let mut config = SessionConfig::new().with_information_schema(true);
    for (key, value) in DISTRIBUTED_SETTINGS {
        config = config.set_str(key, value);
    }
    config
}

/// Settings every worker applies to the stage plans of one job.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobSettings(pub HashMap<String, String>);

/// A per-job session: shares the catalog with `base`, with the job's settings applied on top.
pub(crate) fn job_session(
    base: &SessionContext,
    settings: &JobSettings,
    default_partitions: usize,
) -> Result<(SessionContext, JobSettings), CoordinatorError> {
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
            .map_err(|e| CoordinatorError::Query(format!("setting {key} = {value}: {e}")))?;
    }
    Ok((SessionContext::new_with_state(state), JobSettings(applied)))
}
