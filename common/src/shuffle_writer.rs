//! `ShuffleWriterExec`, the root of every stage: runs one input partition and spools its rows,
//! split the way the consuming stage reads them. Its own output is one summary row per
//! non-empty output partition: (partition, rows, bytes).

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;

use crate::ids::{JobId, StageId};
use crate::shuffle_env::ShuffleEnv;
use crate::spool::SpoolFileWriter;

#[derive(Debug, Clone)]
pub struct ShuffleWriterExec {
    input: Arc<dyn ExecutionPlan>,
    job_id: JobId,
    stage_id: StageId,
    /// `None`: each task's output stays one partition (a gather or the final result).
    output_partitioning: Option<Partitioning>,
    properties: Arc<PlanProperties>,
}

/// What one task spooled for one output partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpooledPartition {
    pub partition: u32,
    pub rows: u64,
    pub bytes: u64,
}

impl ShuffleWriterExec {
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        job_id: JobId,
        stage_id: StageId,
        output_partitioning: Option<Partitioning>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(summary_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            job_id,
            stage_id,
            output_partitioning,
            properties: Arc::new(properties),
        }
    }

    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }

    pub fn stage_id(&self) -> StageId {
        self.stage_id
    }

    pub fn output_partitioning(&self) -> Option<&Partitioning> {
        self.output_partitioning.as_ref()
    }

    /// How many partitions the consumer sees: the hash/round-robin count, or one per task.
    pub fn consumer_partition_count(&self) -> usize {
        match &self.output_partitioning {
            Some(p) => p.partition_count(),
            None => self.input.output_partitioning().partition_count(),
        }
    }

    /// Reads the summary rows this node's stream produced.
    pub fn parse_summary(batches: &[RecordBatch]) -> Result<Vec<SpooledPartition>> {
        let mut spooled = Vec::new();
        for batch in batches {
            let column = |i: usize| batch.column(i).as_any();
            let (Some(partitions), Some(rows), Some(bytes)) = (
                column(0).downcast_ref::<UInt32Array>(),
                column(1).downcast_ref::<UInt64Array>(),
                column(2).downcast_ref::<UInt64Array>(),
            ) else {
                return Err(DataFusionError::Internal(
                    "unexpected shuffle writer summary schema".to_string(),
                ));
            };
            for i in 0..batch.num_rows() {
                spooled.push(SpooledPartition {
                    partition: partitions.value(i),
                    rows: rows.value(i),
                    bytes: bytes.value(i),
                });
            }
        }
        Ok(spooled)
    }
}

pub fn describe_partitioning(partitioning: Option<&Partitioning>) -> String {
    match partitioning {
        None => "gather".to_string(),
        Some(Partitioning::Hash(exprs, n)) => {
            let keys: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
            format!("hash([{}], {n})", keys.join(", "))
        }
        Some(Partitioning::RoundRobinBatch(1)) => "single".to_string(),
        Some(Partitioning::RoundRobinBatch(n)) => format!("round_robin({n})"),
        Some(other) => other.to_string(),
    }
}

/// A piece of a batch with string or binary view columns still points into the whole
/// batch's data buffers, and Arrow IPC would write those buffers whole for every piece:
/// copy just the bytes the piece uses.
pub fn compact_views(batch: &RecordBatch) -> Result<RecordBatch> {
    let has_views = batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView));
    if !has_views {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Utf8View => Arc::new(column.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(column.as_binary_view().gc()) as ArrayRef,
            _ => column.clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

impl DisplayAs for ShuffleWriterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ShuffleWriterExec: stage={}, output={}",
            self.stage_id,
            describe_partitioning(self.output_partitioning.as_ref())
        )
    }
}

impl ExecutionPlan for ShuffleWriterExec {
    fn name(&self) -> &'static str {
        "ShuffleWriterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        if let Some(Partitioning::Hash(exprs, _)) = &self.output_partitioning {
            for expr in exprs {
                if f(expr)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "ShuffleWriterExec takes exactly one child".to_string(),
            ));
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.job_id.clone(),
            self.stage_id,
            self.output_partitioning.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let env = ShuffleEnv::from_task_context(&context)?;
        let input = self.input.execute(partition, context)?;
        let writer = self.clone();
        let summary =
            futures::stream::once(
                async move { writer.spool_partition(partition, input, &env).await },
            );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            summary_schema(),
            summary,
        )))
    }
}

impl ShuffleWriterExec {
    async fn spool_partition(
        &self,
        map_partition: usize,
        mut input: SendableRecordBatchStream,
        env: &ShuffleEnv,
    ) -> Result<RecordBatch> {
        let schema = self.input.schema();
        let out_count = match &self.output_partitioning {
            Some(p) => p.partition_count(),
            None => 1,
        };
        let mut writers: Vec<Option<SpoolFileWriter>> = (0..out_count).map(|_| None).collect();
        let mut write = |out: usize, batch: &RecordBatch| -> Result<()> {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            let batch = &compact_views(batch)?;
            if writers[out].is_none() {
                let path = env.spool.file(
                    &self.job_id,
                    self.stage_id,
                    map_partition as u32,
                    out as u32,
                );
                writers[out] = Some(SpoolFileWriter::create(path, &schema)?);
            }
            writers[out].as_mut().expect("created above").write(batch)
        };

        let mut partitioner = match &self.output_partitioning {
            Some(p) => Some(BatchPartitioner::try_new(
                p.clone(),
                metrics::Time::new(),
                map_partition,
                self.input.output_partitioning().partition_count(),
            )?),
            None => None,
        };
        while let Some(batch) = input.next().await {
            let batch = batch?;
            match partitioner.as_mut() {
                Some(partitioner) => {
                    partitioner.partition(batch, |out, piece| write(out, &piece))?
                }
                None => write(0, &batch)?,
            }
        }

        let (mut partitions, mut rows, mut bytes) = (vec![], vec![], vec![]);
        for (out, writer) in writers.into_iter().enumerate() {
            if let Some(writer) = writer {
                rows.push(writer.rows);
                bytes.push(writer.finish()?);
                partitions.push(out as u32);
            }
        }
        Ok(RecordBatch::try_new(
            summary_schema(),
            vec![
                Arc::new(UInt32Array::from(partitions)),
                Arc::new(UInt64Array::from(rows)),
                Arc::new(UInt64Array::from(bytes)),
            ],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringViewArray;

    #[test]
    fn a_slice_of_string_views_keeps_only_its_own_bytes() {
        let long: Vec<String> = (0..1000)
            .map(|i| format!("a long string value number {i}"))
            .collect();
        let array = StringViewArray::from_iter_values(long.iter());
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(array)]).unwrap();
        let piece = batch.slice(0, 10);
        let compacted = compact_views(&piece).unwrap();
        assert_eq!(compacted.num_rows(), 10);
        assert!(
            compacted.get_array_memory_size() * 10 < piece.get_array_memory_size(),
            "{} vs {}",
            compacted.get_array_memory_size(),
            piece.get_array_memory_size()
        );
        assert_eq!(compacted.column(0).as_string_view().value(3), long[3]);
    }
}
