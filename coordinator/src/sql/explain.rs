//! EXPLAIN and EXPLAIN ANALYZE of distributed plans: one row per stage with how its output
//! is exchanged, the stages it reads, the rules that shaped it and its plan; ANALYZE adds
//! what each stage did (tasks, rows, shuffle bytes, time) and the job's total next to an
//! estimate of what the naive plan would have shuffled.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use tally_common::job_status::{NaiveExchange, NaivePlan, StageStatus};
use tally_common::shuffle_writer::describe_partitioning;

/// What a plan would ship, estimated from statistics, exchange by exchange (inputs before
/// their readers): the input of every exchange crosses the network, except the share that
/// stays on its own worker. An exchange whose input has no estimate has no figure, and the
/// total is a lower bound then.
pub(crate) fn estimate_exchanges(plan: &Arc<dyn ExecutionPlan>, workers: usize) -> NaivePlan {
    let remote_share = if workers <= 1 {
        0.0
    } else {
        (workers - 1) as f64 / workers as f64
    };
    let mut exchanges = Vec::new();
    collect_exchanges(
        plan,
        &StatisticsContext::new(),
        remote_share,
        &mut exchanges,
    );
    NaivePlan {
        workers: workers as u32,
        exchanges,
    }
}

fn collect_exchanges(
    node: &Arc<dyn ExecutionPlan>,
    statistics: &StatisticsContext,
    remote_share: f64,
    out: &mut Vec<NaiveExchange>,
) {
    for child in node.children() {
        collect_exchanges(child, statistics, remote_share, out);
    }
    let repartition = node.is::<RepartitionExec>();
    let is_exchange = repartition
        || ((node.is::<CoalescePartitionsExec>() || node.is::<SortPreservingMergeExec>())
            && node.children()[0].output_partitioning().partition_count() > 1);
    if is_exchange {
        let input = node.children()[0];
        out.push(NaiveExchange {
            input: input.name().to_string(),
            output: if repartition {
                describe_partitioning(Some(node.output_partitioning()))
            } else {
                "gather".to_string()
            },
            bytes: estimated_bytes(statistics, input)
                .map(|bytes| (bytes as f64 * remote_share) as u64),
        });
    }
}

/// A plan's estimated shuffle in all, as EXPLAIN prints it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Estimate {
    pub bytes: u64,
    pub complete: bool,
}

impl From<&NaivePlan> for Estimate {
    fn from(plan: &NaivePlan) -> Self {
        Estimate {
            bytes: plan.bytes(),
            complete: plan.complete(),
        }
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.complete {
            write!(f, "at least ")?;
        }
        write!(f, "{} bytes (estimated from statistics)", self.bytes)
    }
}

fn estimated_bytes(statistics: &StatisticsContext, plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let stats = statistics
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok()?;
    if let Some(bytes) = stats.total_byte_size.get_value() {
        return Some(*bytes as u64);
    }
    let rows = *stats.num_rows.get_value()? as u64;
    let width: usize = plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().primitive_width().unwrap_or(16))
        .sum();
    Some(rows * width as u64)
}

/// The EXPLAIN table: (stage, output, reads, plan), then a `job` row with `summary`.
pub(crate) fn explain_batch(
    stages: &[StageStatus],
    analyzed: bool,
    summary: String,
) -> Result<RecordBatch, ArrowError> {
    let mut ids = Vec::new();
    let mut outputs = Vec::new();
    let mut reads = Vec::new();
    let mut details = Vec::new();
    for stage in stages {
        ids.push(stage.stage_id.0);
        outputs.push(stage.output.clone());
        reads.push(
            stage
                .input_stages
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        let mut text = format!("tasks={}", stage.tasks_total);
        if analyzed {
            text.push_str(&format!(
                ", output_rows={}, shuffle_bytes={}, shuffle_rows={}, elapsed_ms={}",
                stage.output_rows,
                stage.shuffle_bytes,
                stage.shuffle_rows,
                stage.elapsed.as_millis()
            ));
        }
        if !stage.rules.is_empty() {
            text.push_str(&format!("\nrules: {}", stage.rules.join("; ")));
        }
        text.push('\n');
        text.push_str(&stage.plan);
        details.push(text);
    }
    ids.push(0);
    outputs.push("job".to_string());
    reads.push(String::new());
    details.push(summary);
    let schema = Arc::new(Schema::new(vec![
        Field::new("stage", DataType::UInt32, false),
        Field::new("output", DataType::Utf8, false),
        Field::new("reads", DataType::Utf8, false),
        Field::new("plan", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(UInt32Array::from(ids)),
            Arc::new(StringArray::from(outputs)),
            Arc::new(StringArray::from(reads)),
            Arc::new(StringArray::from(details)),
        ],
    )
}

pub(crate) fn to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::test_support::Tables;

    #[tokio::test]
    async fn each_exchange_has_its_own_estimate_and_the_total_adds_them_up() {
        let tables = Tables::new(
            &[
                (
                    "a",
                    "SELECT value AS k, value * 2 AS v FROM generate_series({lo}, {hi})",
                ),
                (
                    "b",
                    "SELECT value AS k, 'x' AS w FROM generate_series({lo}, {hi})",
                ),
            ],
            2,
            500,
        )
        .await;
        let plan = tables
            .physical("SELECT a.k % 7, sum(v) FROM a JOIN b ON a.k = b.k GROUP BY a.k % 7")
            .await;
        let three = estimate_exchanges(&plan, 3);
        assert_eq!(three.workers, 3);
        assert!(three.exchanges.len() >= 2, "{three:#?}");
        // Inputs come before their readers: the last exchange feeds the answer.
        let last = three.exchanges.last().unwrap();
        assert!(
            last.output == "gather" || last.output.starts_with("hash("),
            "{three:#?}"
        );
        // A scan's output has statistics: some exchange has an estimate above nothing.
        assert!(
            three.exchanges.iter().any(|e| e.bytes.unwrap_or(0) > 0),
            "{three:#?}"
        );
        let estimate = Estimate::from(&three);
        let listed: u64 = three.exchanges.iter().filter_map(|e| e.bytes).sum();
        assert_eq!(estimate.bytes, listed);
        assert_eq!(estimate.complete, three.complete());

        // On one worker nothing leaves it.
        let one = estimate_exchanges(&plan, 1);
        assert_eq!(one.exchanges.len(), three.exchanges.len());
        assert_eq!(one.bytes(), 0);
    }
}
