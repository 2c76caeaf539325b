//! EXPLAIN and EXPLAIN ANALYZE of distributed plans: one row per stage with how its output
//! is exchanged, the stages it reads, the rules that shaped it and its plan; ANALYZE adds
//! what each stage did (tasks, rows, shuffle bytes, time) and the job's total next to an
//! estimate of what the naive plan would have shuffled.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use tally_common::job_status::StageStatus;

/// What a plan would ship, estimated from statistics: the input of every exchange crosses
/// the network, except the share that stays on its own worker. Exchanges whose input has no
/// estimate are left out, so the figure is a lower bound then (`complete` is false).
pub(crate) fn estimate_shuffle_bytes(plan: &Arc<dyn ExecutionPlan>, workers: usize) -> Estimate {
    let remote_share = if workers <= 1 {
        0.0
    } else {
        (workers - 1) as f64 / workers as f64
    };
    let statistics = StatisticsContext::new();
    let mut estimate = Estimate {
        bytes: 0,
        complete: true,
    };
    plan.apply(|node| {
        let is_exchange = node.is::<RepartitionExec>()
            || ((node.is::<CoalescePartitionsExec>() || node.is::<SortPreservingMergeExec>())
                && node.children()[0].output_partitioning().partition_count() > 1);
        if is_exchange {
            match estimated_bytes(&statistics, node.children()[0]) {
                Some(bytes) => estimate.bytes += (bytes as f64 * remote_share) as u64,
                None => estimate.complete = false,
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    estimate
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Estimate {
    pub bytes: u64,
    pub complete: bool,
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
