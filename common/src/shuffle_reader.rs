//! `ShuffleReaderExec`, the leaf where a stage reads a finished stage's spooled output.
//! Partition `p` reads its pieces one after another: from the local spool when this worker
//! wrote them, over Flight `DoGet` otherwise. It counts both, so the job can report what
//! crossed the network.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

use tally_proto::plan as pb;

use crate::flight_fetch::{WireCounter, encode_ticket, fetch_batches};
use crate::ids::{JobId, StageId, WorkerId};
use crate::shuffle_env::ShuffleEnv;
use crate::spool::open_spool_file;

/// One spooled file: output partition `out_partition` of task `map_partition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolLocation {
    pub worker_id: WorkerId,
    pub endpoint: String,
    pub job_id: JobId,
    pub stage_id: StageId,
    pub map_partition: u32,
    pub out_partition: u32,
    pub rows: u64,
}

impl SpoolLocation {
    pub fn ticket(&self) -> pb::ShuffleTicket {
        pb::ShuffleTicket {
            job_id: self.job_id.to_string(),
            stage_id: self.stage_id.0,
            map_partition: self.map_partition,
            out_partition: self.out_partition,
        }
    }
}

impl From<&SpoolLocation> for pb::ShuffleLocation {
    fn from(loc: &SpoolLocation) -> Self {
        pb::ShuffleLocation {
            worker_id: loc.worker_id.to_string(),
            flight_endpoint: loc.endpoint.clone(),
            ticket: Some(loc.ticket()),
            rows: loc.rows,
        }
    }
}

impl TryFrom<pb::ShuffleLocation> for SpoolLocation {
    type Error = DataFusionError;

    fn try_from(loc: pb::ShuffleLocation) -> Result<Self> {
        let ticket = loc.ticket.ok_or_else(|| {
            DataFusionError::Internal("shuffle location without ticket".to_string())
        })?;
        Ok(SpoolLocation {
            worker_id: WorkerId::from(loc.worker_id),
            endpoint: loc.flight_endpoint,
            job_id: JobId::from(ticket.job_id),
            stage_id: StageId(ticket.stage_id),
            map_partition: ticket.map_partition,
            out_partition: ticket.out_partition,
            rows: loc.rows,
        })
    }
}

/// What one reader moved, split by where it came from.
#[derive(Debug, Default)]
pub struct ReadCounters {
    pub remote: Arc<WireCounter>,
    pub remote_rows: AtomicU64,
    pub local_bytes: AtomicU64,
    pub local_rows: AtomicU64,
}

#[derive(Debug)]
pub struct ShuffleReaderExec {
    stage_id: StageId,
    schema: SchemaRef,
    /// Per output partition, the spooled pieces it reads. Empty until the stage is resolved.
    partitions: Vec<Vec<SpoolLocation>>,
    counters: Arc<ReadCounters>,
    properties: Arc<PlanProperties>,
}

impl ShuffleReaderExec {
    /// A reader of `partition_count` partitions whose locations are not known yet.
    pub fn unresolved(stage_id: StageId, schema: SchemaRef, partition_count: usize) -> Self {
        Self::new(stage_id, schema, vec![Vec::new(); partition_count])
    }

    pub fn new(stage_id: StageId, schema: SchemaRef, partitions: Vec<Vec<SpoolLocation>>) -> Self {
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
            counters: Arc::default(),
            properties: Arc::new(properties),
        }
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
        )
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
        let batches = futures::stream::iter(sources)
            .then(move |source| read_source(source, env.clone(), counters.clone()))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            batches,
        )))
    }
}

async fn read_source(
    source: SpoolLocation,
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
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        counters.local_bytes.fetch_add(bytes, Ordering::Relaxed);
        let reader = open_spool_file(&path)?;
        let local = futures::stream::iter(reader).map(move |batch| {
            let batch = batch?;
            counters
                .local_rows
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            Ok(batch)
        });
        return Ok(local.boxed());
    }
    let client = env.flight.get(&source.endpoint)?;
    let ticket = encode_ticket(&source.ticket());
    let remote = fetch_batches(client, &source.endpoint, ticket, counters.remote.clone()).await?;
    Ok(remote
        .inspect_ok(move |batch| {
            counters
                .remote_rows
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        })
        .boxed())
}
