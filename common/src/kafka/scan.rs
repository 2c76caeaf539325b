//! The scan of a Kafka table: one output partition per slice of a topic partition's offsets,
//! fixed when the job was planned. A task fetches its slice from the partition's leader and
//! decodes it; running it again reads exactly the same records.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use rskafka::client::partition::PartitionClient;

use super::{KafkaOptions, KafkaTopic, OffsetRange, RecordDecoder};

/// The scan's count of records skipped as malformed, which tasks report to the coordinator.
pub const MALFORMED_RECORDS_METRIC: &str = "malformed_records";

/// Most bytes one fetch asks a broker for.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;
/// How long a fetch waits for records the broker does not have yet: a scan reads only
/// records that were there when its job was planned, so hardly at all.
const FETCH_WAIT_MS: i32 = 100;

#[derive(Debug)]
pub struct KafkaScanExec {
    topic: KafkaTopic,
    options: KafkaOptions,
    /// The table's schema (value and metadata columns), before the projection.
    table_schema: SchemaRef,
    projection: Vec<usize>,
    slices: Vec<OffsetRange>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl KafkaScanExec {
    pub fn try_new(
        topic: KafkaTopic,
        options: KafkaOptions,
        table_schema: SchemaRef,
        projection: Vec<usize>,
        slices: Vec<OffsetRange>,
    ) -> Result<Self> {
        let schema = Arc::new(table_schema.project(&projection)?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            // A plan needs at least one partition: no records is one empty slice.
            Partitioning::UnknownPartitioning(slices.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            topic,
            options,
            table_schema,
            projection,
            slices,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    pub fn topic(&self) -> &KafkaTopic {
        &self.topic
    }

    pub fn options(&self) -> KafkaOptions {
        self.options
    }

    pub fn table_schema(&self) -> &SchemaRef {
        &self.table_schema
    }

    pub fn projection(&self) -> &[usize] {
        &self.projection
    }

    pub fn slices(&self) -> &[OffsetRange] {
        &self.slices
    }

    /// Every partition's range as the slices cover it.
    pub fn ranges(&self) -> Vec<OffsetRange> {
        let mut ranges: Vec<OffsetRange> = Vec::new();
        for slice in &self.slices {
            match ranges.iter_mut().find(|r| r.partition == slice.partition) {
                Some(range) => {
                    range.start = range.start.min(slice.start);
                    range.end = range.end.max(slice.end);
                }
                None => ranges.push(*slice),
            }
        }
        ranges.sort();
        ranges
    }

    /// The same scan over other slices.
    pub fn with_slices(&self, slices: Vec<OffsetRange>) -> Result<Self> {
        Self::try_new(
            self.topic.clone(),
            self.options,
            self.table_schema.clone(),
            self.projection.clone(),
            slices,
        )
    }
}

impl DisplayAs for KafkaScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let records: u64 = self.slices.iter().map(OffsetRange::records).sum();
        write!(
            f,
            "KafkaScanExec: topic={}, format={}, {} records in {} slices of {} partitions",
            self.topic.topic,
            self.options.format_name(),
            records,
            self.slices.len(),
            self.ranges().len()
        )
    }
}

impl ExecutionPlan for KafkaScanExec {
    fn name(&self) -> &'static str {
        "KafkaScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal(
                "KafkaScanExec has no children".to_string(),
            ));
        }
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let Some(slice) = self.slices.get(partition).copied() else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let reader = SliceReader {
            topic: self.topic.clone(),
            slice,
            decoder: RecordDecoder::new(
                self.table_schema.clone(),
                self.options.format,
                self.options.on_malformed,
                &self.topic.topic,
            ),
            projection: self.projection.clone(),
            malformed: MetricBuilder::new(&self.metrics)
                .counter(MALFORMED_RECORDS_METRIC, partition),
            output_rows: MetricBuilder::new(&self.metrics).output_rows(partition),
            client: None,
            offset: slice.start,
        };
        let batches = futures::stream::try_unfold(reader, |mut reader| async move {
            Ok(reader.next_batch().await?.map(|batch| (batch, reader)))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// Reads one slice, fetch by fetch.
struct SliceReader {
    topic: KafkaTopic,
    slice: OffsetRange,
    decoder: RecordDecoder,
    projection: Vec<usize>,
    malformed: Count,
    output_rows: Count,
    /// Connected at the first fetch.
    client: Option<PartitionClient>,
    /// The next offset to read.
    offset: i64,
}

impl SliceReader {
    /// The rows of the next fetch that holds any; `None` once the slice is read.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut empty_fetches = 0;
        while self.offset < self.slice.end {
            if self.client.is_none() {
                let client = self.topic.client().await?;
                let partition = self
                    .topic
                    .partition_client(&client, self.slice.partition)
                    .await?;
                self.client = Some(partition);
            }
            let client = self.client.as_ref().expect("connected above");
            let offset = self.offset;
            let partition = self.slice.partition;
            let topic = &self.topic;
            let fetch = |from: i64, wait_ms: i32| async move {
                client
                    .fetch_records(from, 1..FETCH_BYTES, wait_ms)
                    .await
                    .map_err(|e| {
                        topic.error(
                            &format!("fetch from partition {partition} at offset {from}"),
                            &e,
                        )
                    })
            };
            let (mut records, high_watermark) = fetch(offset, FETCH_WAIT_MS).await?;
            // Kafka answers a fetch inside a record batch with that whole batch; some
            // Kafka-compatible brokers (tansu 0.6) answer with the batches that start after
            // the offset. Fetching again from earlier offsets finds the batch holding it.
            let mut back = 1;
            while records.first().is_none_or(|r| r.offset > offset) && offset < high_watermark {
                let from = (offset - back).max(0);
                let (earlier, _) = fetch(from, 0).await?;
                if earlier.first().is_some_and(|r| r.offset <= offset) {
                    records = earlier;
                    break;
                }
                if from == 0 {
                    break;
                }
                back *= 2;
            }
            let records: Vec<_> = records
                .into_iter()
                .filter(|r| r.offset >= offset && r.offset < self.slice.end)
                .collect();
            let Some(last) = records.last().map(|r| r.offset) else {
                // Records the job planned but the broker no longer has (retention, compaction).
                empty_fetches += 1;
                if empty_fetches > 1 || high_watermark <= offset {
                    return Err(DataFusionError::IoError(std::io::Error::other(format!(
                        "Kafka topic '{}' partition {partition}: no records at offset {offset} \
                         (the job planned {}..{}; the partition ends at {high_watermark})",
                        self.topic.topic, self.slice.start, self.slice.end
                    ))));
                }
                continue;
            };
            empty_fetches = 0;
            self.offset = last + 1;
            let (batch, skipped) = self.decoder.decode(partition, &records)?;
            self.malformed.add(skipped);
            if batch.num_rows() > 0 {
                self.output_rows.add(batch.num_rows());
                return Ok(Some(batch.project(&self.projection)?));
            }
        }
        Ok(None)
    }
}
