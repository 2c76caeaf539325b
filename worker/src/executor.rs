//! Runs tasks: decodes the stage plan, executes one partition of it, and reports what it
//! spooled and what it read to the coordinator.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::object_store::DefaultObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::prelude::SessionConfig;
use futures::TryStreamExt;
use tally_common::codec::decode_plan;
use tally_common::failure::FailureKind;
use tally_common::ids::{JobId, TaskKey};
use tally_common::kafka::MALFORMED_RECORDS_METRIC;
use tally_common::object_stores::{ObjectStore, S3Options, register_bucket, split_settings};
use tally_common::shuffle_env::ShuffleEnv;
use tally_common::shuffle_reader::ShuffleReaderExec;
use tally_common::shuffle_writer::{ShuffleWriterExec, SpooledPartition};
use tally_proto::coordinator::{PartitionOutput, StageRead, TaskState, TaskStatusReport};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tracing::Instrument;

use crate::coordinator_link::CoordinatorLink;
use crate::error::WorkerError;

pub(crate) struct TaskExecutor {
    env: Arc<ShuffleEnv>,
    runtime: Arc<RuntimeEnv>,
    /// S3 clients by bucket and options (`S3Options::to_setting`).
    s3_clients: Mutex<HashMap<(String, String), Arc<dyn ObjectStore>>>,
    /// Bytes the memory pool holds, for the message of a task that ran out of it.
    memory_limit: usize,
    coordinator: CoordinatorLink,
    running: Mutex<HashMap<TaskKey, AbortHandle>>,
    /// At most `task_slots` tasks execute at once; the others wait their turn here, so a
    /// worker's memory and CPU are shared by few tasks rather than all it was sent.
    slots: Arc<Semaphore>,
    /// Tasks, and the Flight and task RPCs that move their data, run on their own threads, so
    /// busy tasks never delay the worker's heartbeats (nor, in an embedded cluster, the
    /// coordinator).
    runtime_handle: tokio::runtime::Handle,
    task_runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// Set when the worker stops: tasks cut short by the stop report nothing, as a worker
    /// that died could not.
    stopping: std::sync::atomic::AtomicBool,
    /// Jobs dropped here lately: a task of one that arrives late (its RunTask crossed the
    /// DropJob) is refused, so it cannot spool files again.
    dropped: Mutex<VecDeque<JobId>>,
}

/// How many dropped jobs a worker remembers.
const DROPPED_JOBS_KEPT: usize = 1024;

impl TaskExecutor {
    pub(crate) fn new(
        env: Arc<ShuffleEnv>,
        coordinator: CoordinatorLink,
        task_slots: u32,
        memory_limit: usize,
        spill_dir: PathBuf,
    ) -> Result<Self, WorkerError> {
        let task_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(task_slots.max(1) as usize)
            .thread_name(format!("tally-task-{}", env.worker_id))
            .enable_all()
            .build()?;
        // Operators reserve memory from one pool per worker. Sorts, aggregations, sort-merge
        // and nested-loop joins spill to files under `spill_dir` when the pool is full; hash
        // joins (DataFusion 55 cannot spill them) fail with a resources-exhausted error
        // instead of the process running out of memory.
        std::fs::create_dir_all(&spill_dir)?;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(memory_limit)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![spill_dir])),
            )
            .build_arc()?;
        Ok(Self {
            env,
            runtime,
            s3_clients: Mutex::default(),
            memory_limit,
            coordinator,
            running: Mutex::default(),
            slots: Arc::new(Semaphore::new(task_slots.max(1) as usize)),
            runtime_handle: task_runtime.handle().clone(),
            task_runtime: Mutex::new(Some(task_runtime)),
            stopping: Default::default(),
            dropped: Mutex::default(),
        })
    }

    /// The runtime of the data plane: tasks and the servers that feed them.
    pub(crate) fn data_plane(&self) -> &tokio::runtime::Handle {
        &self.runtime_handle
    }

    pub(crate) fn env(&self) -> &ShuffleEnv {
        &self.env
    }

    pub(crate) fn running_count(&self) -> usize {
        self.running.lock().expect("task table poisoned").len()
    }

    /// Bytes the operators of this worker's tasks hold in its memory pool.
    pub(crate) fn memory_reserved(&self) -> usize {
        self.runtime.memory_pool.reserved()
    }

    /// Decodes the plan now, so a bad plan is refused in the RunTask answer, then runs it in
    /// the background.
    pub(crate) fn launch(
        self: &Arc<Self>,
        task: TaskKey,
        plan: &[u8],
        settings: &HashMap<String, String>,
    ) -> Result<(), WorkerError> {
        let context = self.task_context(&task, settings)?;
        let plan = decode_plan(plan, &context).map_err(|e| {
            WorkerError::InvalidRequest(format!("task {task}: cannot decode its plan: {e}"))
        })?;
        if plan.downcast_ref::<ShuffleWriterExec>().is_none() {
            return Err(WorkerError::InvalidRequest(format!(
                "task {task}: a stage plan must have a ShuffleWriterExec root, not {}",
                plan.name()
            )));
        }
        let mut running = self.running.lock().expect("task table poisoned");
        if self.was_dropped(&task.job_id) {
            return Err(WorkerError::InvalidRequest(format!(
                "task {task}: its job was cancelled or has ended"
            )));
        }
        if running.contains_key(&task) {
            return Err(WorkerError::InvalidRequest(format!(
                "task {task} is already running"
            )));
        }
        let executor = self.clone();
        let key = task.clone();
        let slots = self.slots.clone();
        // Every log line of the task's work names its job, stage and partition.
        let span = tracing::info_span!("task", job_id = %task.job_id, stage_id = %task.stage_id, partition = task.partition, attempt = task.attempt);
        let handle = self.runtime_handle.spawn(
            async move {
                let _slot = slots
                    .acquire_owned()
                    .await
                    .expect("task slots are never closed");
                let started = Instant::now();
                tracing::debug!(task = %key, "task started");
                let outcome = run_partition(plan.clone(), key.partition as usize, context).await;
                executor.finish(key, plan, outcome, started).await;
            }
            .instrument(span),
        );
        running.insert(task, handle.abort_handle());
        Ok(())
    }

    async fn finish(
        &self,
        task: TaskKey,
        plan: Arc<dyn ExecutionPlan>,
        outcome: Result<Vec<SpooledPartition>>,
        started: Instant,
    ) {
        self.running
            .lock()
            .expect("task table poisoned")
            .remove(&task);
        let mut report = TaskStatusReport {
            task: Some((&task).into()),
            worker_id: self.env.worker_id.to_string(),
            reads: stage_reads(&plan),
            partial_input_rows: partial_input_rows(&plan),
            elapsed_ms: started.elapsed().as_millis() as u64,
            spilled_bytes: spilled_bytes(&plan),
            malformed_records: malformed_records(&plan),
            ..Default::default()
        };
        match outcome {
            Ok(spooled) => {
                tracing::debug!(task = %task, elapsed_ms = report.elapsed_ms, "task succeeded");
                report.set_state(TaskState::Succeeded);
                report.outputs = spooled
                    .into_iter()
                    .map(|p| PartitionOutput {
                        partition: p.partition,
                        rows: p.rows,
                        bytes: p.bytes,
                        ticket_mac: self.env.tickets.sign(
                            &task.job_id,
                            task.stage_id,
                            task.partition,
                            p.partition,
                        ),
                    })
                    .collect();
            }
            Err(e) => {
                let failure = FailureKind::of_datafusion(&e);
                // A query's own error goes back to its client; warn only of the cluster's.
                if failure.is_the_jobs_own() {
                    tracing::info!(task = %task, error = %e, "task failed");
                } else {
                    tracing::warn!(task = %task, error = %e, "task failed");
                }
                report.set_state(TaskState::Failed);
                report.retryable = failure.retryable();
                report.error_code = failure.code() as i32;
                report.error = self.describe_failure(&e);
            }
        }
        if self.was_dropped(&task.job_id) {
            // Cut short by DropJob: what it spooled after the drop goes too.
            let _ = self.env.spool.remove_job(&task.job_id);
        } else if !self.stopping.load(Ordering::SeqCst) {
            self.coordinator.report(report).await;
        }
    }

    pub(crate) fn cancel(&self, task: &TaskKey) -> bool {
        let handle = self
            .running
            .lock()
            .expect("task table poisoned")
            .remove(task);
        handle.map(|h| h.abort()).is_some()
    }

    /// Aborts the job's tasks here and deletes what it spooled.
    fn was_dropped(&self, job: &JobId) -> bool {
        self.dropped
            .lock()
            .expect("dropped jobs poisoned")
            .contains(job)
    }

    pub(crate) fn drop_job(&self, job: &JobId) -> Result<(), WorkerError> {
        {
            let mut dropped = self.dropped.lock().expect("dropped jobs poisoned");
            if dropped.len() == DROPPED_JOBS_KEPT {
                dropped.pop_front();
            }
            dropped.push_back(job.clone());
        }
        self.running
            .lock()
            .expect("task table poisoned")
            .retain(|task, handle| {
                let keep = &task.job_id != job;
                if !keep {
                    handle.abort();
                }
                keep
            });
        // An aborted task stops at its next await; one caught in the middle of a write can
        // still put files in the job's folder after this sweep, so sweep again shortly after.
        let (spool, dropped) = (self.env.spool.clone(), job.clone());
        self.runtime_handle.spawn(async move {
            for delay_ms in [200, 1_000] {
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                let _ = spool.remove_job(&dropped);
            }
        });
        Ok(self.env.spool.remove_job(job)?)
    }

    pub(crate) fn abort_all(&self) {
        for (_, handle) in self.running.lock().expect("task table poisoned").drain() {
            handle.abort();
        }
    }

    /// Aborts every task and stops the task threads.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.abort_all();
        if let Some(runtime) = self
            .task_runtime
            .lock()
            .expect("task runtime poisoned")
            .take()
        {
            runtime.shutdown_background();
        }
    }
}

impl TaskExecutor {
    /// A task's error as the job will show it. Running out of memory names the worker, its
    /// limit and the setting to raise, since the fix is the operator's, not the query's.
    fn describe_failure(&self, error: &DataFusionError) -> String {
        match error.find_root() {
            DataFusionError::ResourcesExhausted(cause) => format!(
                "worker {} ran out of memory: its operators may hold {} MiB in all \
                 (tally worker --memory-limit-mb) and this task needed more ({}). Raise the \
                 limit, or spread the work thinner with more partitions \
                 (datafusion.execution.target_partitions); sorts and aggregations spill to \
                 disk, hash joins cannot",
                self.env.worker_id,
                self.memory_limit >> 20,
                cause.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            _ => error.to_string(),
        }
    }

    fn task_context(
        &self,
        task: &TaskKey,
        settings: &HashMap<String, String>,
    ) -> Result<Arc<TaskContext>, WorkerError> {
        let (settings, buckets) = split_settings(settings)?;
        let runtime = self.runtime_for(&buckets)?;
        // A task runs one partition alone: never let it steal its siblings' files.
        let config = SessionConfig::from_string_hash_map(&settings)?
            .set_bool(
                "datafusion.execution.enable_file_stream_work_stealing",
                false,
            )
            .with_extension(self.env.clone());
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_session_id(task.job_id.to_string())
            .build();
        Ok(state.task_ctx())
    }

    /// The worker's runtime, or for a job that reads S3 buckets, one that shares its memory
    /// pool and disk with the buckets' clients added. A job's settings name the buckets with
    /// their table options, so two jobs may read one bucket with different credentials;
    /// clients are built once per bucket and options.
    fn runtime_for(
        &self,
        buckets: &BTreeMap<String, S3Options>,
    ) -> Result<Arc<RuntimeEnv>, WorkerError> {
        if buckets.is_empty() {
            return Ok(self.runtime.clone());
        }
        let runtime = RuntimeEnvBuilder::from_runtime_env(&self.runtime)
            .with_object_store_registry(Arc::new(DefaultObjectStoreRegistry::new()))
            .build_arc()?;
        let mut clients = self.s3_clients.lock().expect("S3 clients poisoned");
        for (bucket, options) in buckets {
            let key = options.to_setting(bucket);
            let store = match clients.get(&key) {
                Some(store) => store.clone(),
                None => {
                    let store = options.build(bucket)?;
                    clients.insert(key, store.clone());
                    store
                }
            };
            register_bucket(&runtime, bucket, store);
        }
        Ok(runtime)
    }
}

impl Drop for TaskExecutor {
    /// A runtime may not be dropped from async code (a worker that failed to start is
    /// dropped there): stop it without waiting.
    fn drop(&mut self) {
        if let Some(runtime) = self.task_runtime.get_mut().ok().and_then(Option::take) {
            runtime.shutdown_background();
        }
    }
}

async fn run_partition(
    plan: Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
) -> Result<Vec<SpooledPartition>> {
    let summary: Vec<_> = plan.execute(partition, context)?.try_collect().await?;
    ShuffleWriterExec::parse_summary(&summary)
}

/// Rows that entered the stage's first partial aggregate (from the root), if it has one: the
/// coordinator compares them with the rows it put out to judge a worker-level combine.
fn partial_input_rows(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let mut rows = None;
    plan.apply(|node| {
        if let Some(aggregate) = node.downcast_ref::<AggregateExec>()
            && *aggregate.mode() == AggregateMode::Partial
        {
            rows = aggregate
                .input()
                .metrics()
                .and_then(|m| m.output_rows())
                .map(|rows| rows as u64);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    rows
}

/// Records the plan's Kafka scans skipped as malformed.
fn malformed_records(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let mut total = 0;
    plan.apply(|node| {
        total += node
            .metrics()
            .and_then(|m| m.sum_by_name(MALFORMED_RECORDS_METRIC))
            .map_or(0, |v| v.as_usize() as u64);
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    total
}

/// Bytes the plan's operators spilled to disk.
fn spilled_bytes(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let mut total = 0;
    plan.apply(|node| {
        total += node.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0) as u64;
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    total
}

/// What the task's shuffle readers moved, per input stage.
fn stage_reads(plan: &Arc<dyn ExecutionPlan>) -> Vec<StageRead> {
    let mut reads: Vec<StageRead> = Vec::new();
    plan.apply(|node| {
        let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let counters = reader.counters();
        let stage_id = reader.stage_id().0;
        let index = match reads.iter().position(|r| r.stage_id == stage_id) {
            Some(i) => i,
            None => {
                reads.push(StageRead {
                    stage_id,
                    ..Default::default()
                });
                reads.len() - 1
            }
        };
        let read = &mut reads[index];
        read.remote_bytes += counters.remote.bytes();
        read.remote_uncompressed_bytes += counters.remote.uncompressed_bytes();
        read.remote_rows += counters.remote_rows.load(Ordering::Relaxed);
        read.local_bytes += counters.local_bytes.load(Ordering::Relaxed);
        read.local_rows += counters.local_rows.load(Ordering::Relaxed);
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    reads
}
