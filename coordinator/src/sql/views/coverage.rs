//! Which source files a view covers, and how the source differs from that now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::execution::SessionState;
use datafusion::physical_plan::ExecutionPlan;
use tally_meta::{CoveredInput, ViewManifest};

use super::kafka_offsets::{kafka_ranges, unread_records};
use super::states::{CompiledView, inputs_of};
use super::table::MaterializedViewTable;
use crate::error::CoordinatorError;

/// The source's files now against the ones a view covers.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct InputChanges {
    /// Files the view has never read.
    pub new: Vec<CoveredInput>,
    /// Covered files whose size or modification time differ now (as they are now).
    pub changed: Vec<CoveredInput>,
    /// Covered files that are gone.
    pub vanished: Vec<CoveredInput>,
}

impl InputChanges {
    pub(crate) fn between(covered: &[CoveredInput], current: &[CoveredInput]) -> Self {
        let covered_by_path: HashMap<&str, &CoveredInput> =
            covered.iter().map(|c| (c.path.as_str(), c)).collect();
        let current_by_path: HashMap<&str, &CoveredInput> =
            current.iter().map(|c| (c.path.as_str(), c)).collect();
        let mut changes = Self::default();
        for input in current {
            match covered_by_path.get(input.path.as_str()) {
                None => changes.new.push(input.clone()),
                Some(old) if *old != input => changes.changed.push(input.clone()),
                Some(_) => {}
            }
        }
        changes.vanished = covered
            .iter()
            .filter(|c| !current_by_path.contains_key(c.path.as_str()))
            .cloned()
            .collect();
        changes
    }

    /// Covered files that changed or vanished: what an incremental refresh cannot merge.
    pub(crate) fn rewritten(&self) -> Vec<&CoveredInput> {
        self.changed.iter().chain(&self.vanished).collect()
    }
}

/// The plan that scans every current file of the view's source (filtered as the view says),
/// and those files.
pub(crate) async fn current_inputs(
    state: &SessionState,
    view: &CompiledView,
) -> Result<(Arc<dyn ExecutionPlan>, Vec<CoveredInput>), CoordinatorError> {
    let source = &view.definition.source;
    let cannot_read = |e: datafusion::error::DataFusionError| {
        CoordinatorError::Query(format!(
            "cannot read {source}, the source of the view: {}",
            crate::error::one_line(&e.to_string())
        ))
    };
    let plan = state
        .create_physical_plan(&view.definition.input)
        .await
        .map_err(cannot_read)?;
    let inputs = inputs_of(&plan).map_err(cannot_read)?;
    Ok((plan, inputs))
}

/// One line for `tally tables`: what the view covers and whether the source moved on.
pub(crate) async fn coverage_summary(
    state: &SessionState,
    manifest: &ViewManifest,
    table: &MaterializedViewTable,
) -> String {
    let current = current_inputs(state, table.compiled()).await;
    if let Some(ranges) = current
        .as_ref()
        .ok()
        .and_then(|(plan, _)| kafka_ranges(plan))
    {
        let behind = unread_records(&ranges, &manifest.offsets);
        return format!(
            "materialized view of Kafka table {}: {} partitions, {} groups, refreshed {} ago; \
                 {}",
            manifest.source,
            manifest.offsets.len(),
            manifest.groups,
            age(manifest.refreshed_at_ms),
            if behind == 0 {
                "up to date".to_string()
            } else {
                format!("stale: {behind} new records")
            }
        );
    }
    let staleness = match current {
        Ok((_, current)) => {
            let changes = InputChanges::between(&manifest.inputs, &current);
            if changes == InputChanges::default() {
                "up to date".to_string()
            } else {
                format!(
                    "stale: {} new, {} changed, {} vanished inputs",
                    changes.new.len(),
                    changes.changed.len(),
                    changes.vanished.len()
                )
            }
        }
        Err(error) => error.to_string(),
    };
    format!(
        "materialized view of {}: {} inputs, {} groups, refreshed {} ago; {staleness}",
        manifest.source,
        manifest.inputs.len(),
        manifest.groups,
        age(manifest.refreshed_at_ms)
    )
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn age(then_ms: u64) -> String {
    let seconds = Duration::from_millis(now_ms().saturating_sub(then_ms)).as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{}s", seconds / 60, seconds % 60),
        3600..86400 => format!("{}h{}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{}h", seconds / 86400, seconds % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str, size: u64) -> CoveredInput {
        CoveredInput {
            path: path.to_string(),
            size,
            modified_ms: 1,
        }
    }

    #[test]
    fn new_changed_and_vanished_inputs_are_told_apart() {
        let covered = [input("a", 1), input("b", 2), input("c", 3)];
        let current = [input("a", 1), input("b", 20), input("d", 4)];
        let changes = InputChanges::between(&covered, &current);
        assert_eq!(changes.new, vec![input("d", 4)]);
        assert_eq!(changes.changed, vec![input("b", 20)]);
        assert_eq!(changes.vanished, vec![input("c", 3)]);
        assert_eq!(changes.rewritten().len(), 2);
        assert_eq!(
            InputChanges::between(&covered, &covered),
            InputChanges::default()
        );
    }
}
