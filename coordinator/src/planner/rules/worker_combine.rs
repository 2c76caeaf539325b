//! Worker-level combine. A stage ending in a partial aggregate no longer hash-splits its
//! output per task; each task spools one piece, and a combine stage runs one task on each
//! worker that merges the partial states of all that worker's pieces (`PartialReduce`), read
//! from its own disk, before hash-partitioning them for the final aggregate. Each worker then
//! sends one partial row per group instead of one per task.
//!
//! Whether to merge is decided when the combine stage starts, from what the partial stage
//! measured: when its partial aggregation reduced rows less than
//! `tally.worker_combine_min_reduction` times, groups are about as many as rows and a merge
//! would not shrink them, so the combine only re-partitions (still no network bytes).

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::Partitioning;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use tally_common::shuffle_reader::ShuffleReaderExec;
use tally_common::shuffle_writer::ShuffleWriterExec;

use super::final_placement::gather_final;

/// What a combine stage needs to build its plan when it starts.
#[derive(Debug, Clone)]
pub(crate) struct CombineSpec {
    /// The partial aggregate whose states are merged.
    pub partial: Arc<AggregateExec>,
    /// The exchange the partial aggregate fed: hash on the group keys.
    pub partitioning: Partitioning,
    pub min_reduction: f64,
}

impl CombineSpec {
    /// The partial aggregate at the top of `input`, if `input` feeds a hash exchange.
    pub(crate) fn for_exchange(
        input: &Arc<dyn ExecutionPlan>,
        partitioning: &Partitioning,
        min_reduction: f64,
    ) -> Option<Self> {
        let aggregate = input.downcast_ref::<AggregateExec>()?;
        // A PartialReduce emits partial states too (eager aggregation puts one above a join).
        let is_plain_partial = matches!(
            aggregate.mode(),
            AggregateMode::Partial | AggregateMode::PartialReduce
        ) && aggregate.group_expr().is_single()
            && !aggregate.group_expr().expr().is_empty();
        if !is_plain_partial || !matches!(partitioning, Partitioning::Hash(..)) {
            return None;
        }
        Some(Self {
            partial: Arc::new(aggregate.clone()),
            partitioning: partitioning.clone(),
            min_reduction,
        })
    }

    /// The combine's operators over `reader` (the worker's partial pieces): a merge of the
    /// partial states, or the pieces as they are.
    pub(crate) fn plan(
        &self,
        reader: Arc<dyn ExecutionPlan>,
        merge: bool,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !merge {
            return Ok(reader);
        }
        let partial = &self.partial;
        Ok(Arc::new(AggregateExec::try_new(
            AggregateMode::PartialReduce,
            partial.group_expr().as_final(),
            partial.aggr_expr().to_vec(),
            vec![None; partial.aggr_expr().len()],
            reader,
            partial.input_schema(),
        )?))
    }

    /// Merge when the partial aggregation reduced its input enough (or was not measured).
    pub(crate) fn should_merge(&self, partial_in: Option<u64>, partial_out: u64) -> bool {
        match partial_in {
            Some(input) if partial_out > 0 => {
                input as f64 / partial_out as f64 >= self.min_reduction
            }
            _ => true,
        }
    }
}

/// What a combine stage's partial stage measured, read when the combine stage starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CombineMeasurement {
    /// Rows that entered the partial aggregation, when every task reported them.
    pub partial_input_rows: Option<u64>,
    /// Rows the partial aggregation put out: an upper bound on the groups.
    pub partial_output_rows: u64,
    /// The final aggregation's stage reads nothing but this combine's output.
    pub sole_reader: bool,
}

/// The combine stage's plan as it starts: merge or only re-partition (this rule's gate), and
/// hash-partitioned or gathered into one task (`final_placement`). Returns the plan and what
/// was decided, for EXPLAIN.
pub(crate) fn settle(
    spec: &CombineSpec,
    writer: &Arc<ShuffleWriterExec>,
    measured: CombineMeasurement,
    final_gather_max_groups: usize,
) -> Result<(Arc<ShuffleWriterExec>, Vec<String>)> {
    let CombineMeasurement {
        partial_input_rows,
        partial_output_rows,
        sole_reader,
    } = measured;
    let mut notes = Vec::new();
    let merge = spec.should_merge(partial_input_rows, partial_output_rows);
    notes.push(match partial_input_rows {
        Some(input) if merge => format!(
            "worker_combine: merging partial states ({input} rows aggregated into {partial_output_rows})"
        ),
        Some(input) => format!(
            "worker_combine: not merging, groups about as many as rows ({input} rows into {partial_output_rows})"
        ),
        None => "worker_combine: merging partial states".to_string(),
    });
    let partitioning = if gather_final(final_gather_max_groups, partial_output_rows, sole_reader) {
        notes.push(format!(
            "final_gather: at most {partial_output_rows} groups, final aggregation in one task"
        ));
        Partitioning::RoundRobinBatch(1)
    } else {
        spec.partitioning.clone()
    };
    let reader = leaf_reader(writer.input()).ok_or_else(|| {
        DataFusionError::Internal("a combine stage reads its partial stage".to_string())
    })?;
    let input = spec.plan(reader, merge)?;
    let writer = Arc::new(ShuffleWriterExec::new(
        input,
        writer.job_id().clone(),
        writer.stage_id(),
        Some(partitioning),
    ));
    Ok((writer, notes))
}

/// The combine stage's reader of the partial pieces.
fn leaf_reader(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let mut found = None;
    plan.apply(|node| {
        if node.is::<ShuffleReaderExec>() {
            found = Some(node.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::test_support::Tables;
    use datafusion::physical_plan::repartition::RepartitionExec;

    #[tokio::test]
    async fn merged_partials_give_the_same_final_answer() {
        let t = "SELECT value % 7 AS k, value AS v FROM generate_series(1, 500)";
        let tables = Tables::in_memory(3, &[("t", t)], 1).await;
        let sql = "SELECT k, sum(v) AS s, count(*) AS c, avg(v) AS a FROM t GROUP BY k ORDER BY k";
        let plan = tables.physical(sql).await;
        let expected = tables.answer(plan.clone()).await;

        // Put a PartialReduce between the partial aggregate and its exchange, as the combine
        // stage does, and check the final answer does not change.
        let rewritten = insert_combine(plan).unwrap();
        assert_eq!(tables.answer(rewritten).await, expected);
    }

    fn insert_combine(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>()
            && let Some(spec) =
                CombineSpec::for_exchange(repartition.input(), repartition.partitioning(), 2.0)
        {
            let merged = spec.plan(repartition.input().clone(), true)?;
            return plan
                .clone()
                .replace_children(vec![merged], crate::planner::recompute());
        }
        let children = plan
            .children()
            .into_iter()
            .map(|c| insert_combine(c.clone()))
            .collect::<Result<Vec<_>>>()?;
        if children.is_empty() {
            return Ok(plan);
        }
        plan.replace_children(children, crate::planner::recompute())
    }

    #[test]
    fn merge_is_skipped_when_groups_are_about_as_many_as_rows() {
        let spec = CombineSpec {
            partial: dummy_partial(),
            partitioning: Partitioning::UnknownPartitioning(1),
            min_reduction: 2.0,
        };
        assert!(spec.should_merge(Some(1000), 10));
        assert!(!spec.should_merge(Some(1000), 900));
        assert!(spec.should_merge(None, 900), "unmeasured: merge");
    }

    fn dummy_partial() -> Arc<AggregateExec> {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::physical_plan::aggregates::PhysicalGroupBy;
        use datafusion::physical_plan::empty::EmptyExec;
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let input = Arc::new(EmptyExec::new(schema.clone()));
        Arc::new(
            AggregateExec::try_new(
                AggregateMode::Partial,
                PhysicalGroupBy::default(),
                vec![],
                vec![],
                input,
                schema,
            )
            .unwrap(),
        )
    }
}
