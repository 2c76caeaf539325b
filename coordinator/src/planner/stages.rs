//! Cutting a physical plan into stages. Every exchange DataFusion planned becomes a stage
//! boundary:
//! - a `RepartitionExec` (hash or round-robin): the input becomes a stage whose tasks spool
//!   their rows split by that partitioning; the consumer reads partition `p` from every task;
//! - a `CoalescePartitionsExec` / `SortPreservingMergeExec` over several partitions: the input
//!   becomes a stage whose tasks each spool one partition; the merge stays in the consumer,
//!   reading task `p`'s output as its input partition `p` (a gather).
//!
//! An order-preserving repartition gets a sort above its reader, since the pieces of several
//! tasks arrive one after another.
//!
//! The root becomes the final stage, whose spooled output is the answer.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use tally_common::compression::WireCompression;
use tally_common::ids::{JobId, StageId};
use tally_common::shuffle_reader::{ReadMode, ShuffleReaderExec};
use tally_common::shuffle_writer::ShuffleWriterExec;

use crate::options::Rules;
use crate::planner::recompute;
use crate::planner::rules::stage_notes;
use crate::planner::rules::worker_combine::CombineSpec;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};

/// How a consumer's reader partitions map onto the producer's spooled pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exchange {
    /// Reader partition `p` reads piece `p` of every producer task.
    Partitioned,
    /// Reader partition `p` reads the single piece of producer task `p`.
    Gather,
    /// Reader partition `w` reads every piece held by the `w`-th worker holding any, and its
    /// task runs on that worker: the worker-level combine.
    PerWorker,
}

#[derive(Debug, Clone)]
pub(crate) struct StagePlan {
    pub id: StageId,
    /// A `ShuffleWriterExec` over the stage's operators; readers of inputs are unresolved.
    pub plan: Arc<ShuffleWriterExec>,
    pub inputs: Vec<StageId>,
    pub exchange: Exchange,
    /// Set on a worker-level combine stage, whose plan is settled when it starts.
    pub combine: Option<CombineSpec>,
    /// The rules that shaped this stage, for EXPLAIN.
    pub rules: Vec<String>,
}

impl StagePlan {
    pub fn task_count(&self) -> usize {
        self.plan.input().output_partitioning().partition_count()
    }
}

#[derive(Debug)]
pub(crate) struct DistributedPlan {
    /// Producers before consumers; the last is the final stage.
    pub stages: Vec<StagePlan>,
}

impl DistributedPlan {
    pub fn final_stage(&self) -> &StagePlan {
        self.stages
            .last()
            .expect("a distributed plan has a final stage")
    }
}

/// Cuts `plan` into stages; `workers` is how many workers the combine stages may use.
pub(crate) fn cut_stages(
    job: &JobId,
    plan: Arc<dyn ExecutionPlan>,
    rules: &Rules,
    workers: usize,
) -> Result<DistributedPlan> {
    let mut cutter = StageCutter {
        job: job.clone(),
        stages: Vec::new(),
        read_mode: ReadMode {
            compression: rules.compression,
            broadcast: false,
        },
        rules: rules.clone(),
        workers: workers.max(1),
    };
    let root = cutter.cut(plan)?;
    cutter.add_stage(root, None, Exchange::Gather);
    Ok(DistributedPlan {
        stages: cutter.stages,
    })
}

struct StageCutter {
    job: JobId,
    stages: Vec<StagePlan>,
    read_mode: ReadMode,
    rules: Rules,
    workers: usize,
}

impl StageCutter {
    fn cut(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
        let cut_children = children
            .iter()
            .map(|child| self.cut(child.clone()))
            .collect::<Result<Vec<_>>>()?;
        let changed = children
            .iter()
            .zip(&cut_children)
            .any(|(before, after)| !Arc::ptr_eq(before, after));
        let plan = if changed {
            plan.replace_children(cut_children, recompute())?
        } else {
            plan
        };

        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            let input = repartition.input().clone();
            let partitioning: Partitioning = repartition.partitioning().clone();
            if self.rules.worker_combine
                && !repartition.preserve_order()
                && let Some(spec) = CombineSpec::for_exchange(
                    &input,
                    &partitioning,
                    self.rules.worker_combine_min_reduction,
                )
            {
                return self.combined_exchange(input, spec);
            }
            let count = partitioning.partition_count();
            let schema = input.schema();
            // An order-preserving repartition promises sorted partitions; pieces from several
            // tasks arrive one after another, so sort them again.
            let ordering = repartition
                .preserve_order()
                .then(|| input.output_ordering().cloned())
                .flatten();
            let stage = self.add_stage(input, Some(partitioning), Exchange::Partitioned);
            let reader: Arc<dyn ExecutionPlan> = Arc::new(ShuffleReaderExec::unresolved(
                stage,
                schema,
                count,
                self.read_mode,
            ));
            return Ok(match ordering {
                Some(ordering) => {
                    Arc::new(SortExec::new(ordering, reader).with_preserve_partitioning(true))
                }
                None => reader,
            });
        }

        let is_merge = plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>();
        if is_merge {
            let input = plan.children()[0].clone();
            let count = input.output_partitioning().partition_count();
            if count > 1 {
                let schema = input.schema();
                let stage = self.add_stage(input, None, Exchange::Gather);
                let reader = Arc::new(ShuffleReaderExec::unresolved(
                    stage,
                    schema,
                    count,
                    self.read_mode,
                ));
                return plan.replace_children(vec![reader], recompute());
            }
        }
        Ok(plan)
    }

    /// Partial aggregate stage -> per-worker combine stage -> reader of the combined states.
    fn combined_exchange(
        &mut self,
        partial: Arc<dyn ExecutionPlan>,
        spec: CombineSpec,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = partial.schema();
        let partial_stage = self.add_stage(partial, None, Exchange::PerWorker);
        let reader: Arc<dyn ExecutionPlan> = Arc::new(ShuffleReaderExec::unresolved(
            partial_stage,
            schema.clone(),
            self.workers,
            self.read_mode,
        ));
        let count = spec.partitioning.partition_count();
        let merged = spec.plan(reader, true)?;
        let combine_stage = self.add_stage(
            merged,
            Some(spec.partitioning.clone()),
            Exchange::Partitioned,
        );
        let stage = self.last_stage();
        stage.rules.push("worker_combine".to_string());
        stage.combine = Some(spec);
        Ok(Arc::new(ShuffleReaderExec::unresolved(
            combine_stage,
            schema,
            count,
            self.read_mode,
        )))
    }

    fn last_stage(&mut self) -> &mut StagePlan {
        self.stages.last_mut().expect("a stage was added")
    }

    fn add_stage(
        &mut self,
        input: Arc<dyn ExecutionPlan>,
        partitioning: Option<Partitioning>,
        exchange: Exchange,
    ) -> StageId {
        let id = StageId(self.stages.len() as u32 + 1);
        let inputs = input_stages(&input);
        let plan = Arc::new(ShuffleWriterExec::new(
            input,
            self.job.clone(),
            id,
            partitioning,
        ));
        let mut rules = Vec::new();
        if matches!(&plan.input().downcast_ref::<AggregateExec>(), Some(agg) if *agg.mode() == AggregateMode::Partial)
        {
            rules.push("partial_aggregation".to_string());
        }
        rules.extend(stage_notes(plan.input()));
        if self.read_mode.compression != WireCompression::None {
            rules.push(format!("compression={:?}", self.read_mode.compression).to_lowercase());
        }
        self.stages.push(StagePlan {
            id,
            plan,
            inputs,
            exchange,
            combine: None,
            rules,
        });
        id
    }
}

/// The stages whose readers sit in `plan` (not looking through other stages).
fn input_stages(plan: &Arc<dyn ExecutionPlan>) -> Vec<StageId> {
    let mut stages = Vec::new();
    plan.apply(|node| {
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>()
            && !stages.contains(&reader.stage_id())
        {
            stages.push(reader.stage_id());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    stages.sort();
    stages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::test_support::Tables;

    async fn plan_of(sql: &str) -> Arc<dyn ExecutionPlan> {
        // Three partitions, as three scanned files would give.
        let t = "SELECT value AS k, value AS v FROM generate_series(0, 59)";
        Tables::in_memory(4, &[("t", t)], 3)
            .await
            .physical(sql)
            .await
    }

    #[tokio::test]
    async fn group_by_cuts_at_the_hash_exchange_and_the_final_merge() {
        let plan = plan_of("SELECT k % 7 AS g, sum(v) FROM t GROUP BY k % 7 ORDER BY g").await;
        let distributed = cut_stages(&JobId::from("j"), plan, &Rules::naive(), 3).unwrap();
        let stages = &distributed.stages;
        assert_eq!(stages.len(), 3, "partial agg / final agg + sort / merge");
        assert_eq!(stages[0].task_count(), 3, "one task per scan partition");
        assert_eq!(stages[0].exchange, Exchange::Partitioned);
        assert!(stages[0].inputs.is_empty());
        assert_eq!(stages[1].task_count(), 4, "one task per hash partition");
        assert_eq!(stages[1].inputs, vec![StageId(1)]);
        assert_eq!(stages[1].exchange, Exchange::Gather);
        assert_eq!(distributed.final_stage().task_count(), 1);
        assert_eq!(distributed.final_stage().inputs, vec![StageId(2)]);
    }

    #[tokio::test]
    async fn single_partition_plan_is_one_stage() {
        let plan = plan_of("SELECT 1 + 1").await;
        let distributed = cut_stages(&JobId::from("j"), plan, &Rules::naive(), 3).unwrap();
        assert_eq!(distributed.stages.len(), 1);
        assert_eq!(distributed.final_stage().task_count(), 1);
    }
}
