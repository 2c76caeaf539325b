//! `ShuffleReaderExec`, the leaf where a stage reads a finished stage's spooled output.
//! Partition `p` reads its pieces one after another: from the local spool when this worker
//! wrote them, over Flight `DoGet` otherwise. It counts both, so the job can report what
//! crossed the network.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::compression::WireCompression;
use crate::flight_fetch::{ReadCounters, encode_ticket, fetch_batches};
use crate::ids::StageId;
use crate::shuffle_env::ShuffleEnv;
use crate::spool::{SpoolLocation, open_spool_file};

/// How a reader's partitions are used by the plan above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadMode {
    pub compression: WireCompression,
    /// The build side of a broadcast join: every task of a worker reads all of it, so the
    /// worker fetches each remote piece once and keeps it on its disk.
    pub broadcast: bool,
}

#[derive(Debug)]
pub struct ShuffleReaderExec {
    stage_id: StageId,
    schema: SchemaRef,
    /// Per output partition, the spooled pieces it reads. Empty until the stage is resolved.
    partitions: Vec<Vec<SpoolLocation>>,
    mode: ReadMode,
    counters: Arc<ReadCounters>,
    properties: Arc<PlanProperties>,
}

impl ShuffleReaderExec {
    /// A reader of `partition_count` partitions whose locations are not known yet.
    pub fn unresolved(
        stage_id: StageId,
        schema: SchemaRef,
        partition_count: usize,
        mode: ReadMode,
    ) -> Self {
        Self::new(stage_id, schema, vec![Vec::new(); partition_count], mode)
    }

    pub fn new(
        stage_id: StageId,
        schema: SchemaRef,
        partitions: Vec<Vec<SpoolLocation>>,
        mode: ReadMode,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            stage_id,
            schema,
            partitions,
            mode,
            counters: Arc::default(),
            properties: Arc::new(properties),
        }
    }

    pub fn mode(&self) -> ReadMode {
        self.mode
    }

    pub fn stage_id(&self) -> StageId {
        self.stage_id
    }

    pub fn partitions(&self) -> &[Vec<SpoolLocation>] {
        &self.partitions
    }

    pub fn counters(&self) -> &ReadCounters {
        &self.counters
    }
}

impl DisplayAs for ShuffleReaderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ShuffleReaderExec: stage={}, partitions={}",
            self.stage_id,
            self.partitions.len()
        )?;
        if self.mode.broadcast {
            write!(f, ", broadcast")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ShuffleReaderExec {
    fn name(&self) -> &'static str {
        "ShuffleReaderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
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
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "ShuffleReaderExec has no children".to_string(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let sources = self.partitions.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "ShuffleReaderExec of stage {} has no partition {partition}",
                self.stage_id
            ))
        })?;
        let env = ShuffleEnv::from_task_context(&context)?;
        let counters = self.counters.clone();
        let mode = self.mode;
        let batches = futures::stream::iter(sources)
            .then(move |source| read_source(source, mode, env.clone(), counters.clone()))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            batches,
        )))
    }
}

async fn read_source(
    source: SpoolLocation,
    mode: ReadMode,
    env: Arc<ShuffleEnv>,
    counters: Arc<ReadCounters>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    if source.worker_id == env.worker_id {
        let path = env.spool.file(
            &source.job_id,
            source.stage_id,
            source.map_partition,
            source.out_partition,
        );
        return read_local(&path, counters);
    }
    if mode.broadcast {
        let path = env
            .broadcast_cache
            .fetch_once(&env, &source, mode.compression, &counters)
            .await?;
        return read_local(&path, counters);
    }
    let client = env.flight.get(&source.endpoint)?;
    let ticket = encode_ticket(&source.ticket(mode.compression));
    let remote = fetch_batches(client, &source.endpoint, ticket, counters.remote.clone()).await?;
    Ok(remote
        .inspect_ok(move |batch| {
            counters
                .remote_rows
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        })
        .boxed())
}

fn read_local(
    path: &std::path::Path,
    counters: Arc<ReadCounters>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    counters.local_bytes.fetch_add(bytes, Ordering::Relaxed);
    let reader = open_spool_file(path)?;
    Ok(futures::stream::iter(reader)
        .map(move |batch| {
            let batch = batch?;
            counters
                .local_rows
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            Ok(batch)
        })
        .boxed())
}
