//! Job state and scheduling. A job is a list of stages; a stage runs when every stage it
//! reads has finished (blocking shuffle), as one task per partition spread over the live
//! workers. Task reports from workers drive the job forward.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow::datatypes::SchemaRef;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_plan::displayable;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use tally_common::codec::encode_plan;
use tally_common::compression::WireCompression;
use tally_common::ids::{JobId, StageId, TaskKey, WorkerId};
use tally_common::shuffle_reader::SpoolLocation;
use tally_common::shuffle_writer::ShuffleWriterExec;
use tally_proto::coordinator::{
    JobState, PartitionOutput, StageState, TaskState, TaskStatusReport,
};
use tally_proto::worker::{DropJobRequest, RunTaskRequest};
use tokio::sync::watch;

use crate::options::Rules;
use crate::planner::{DistributedPlan, StagePlan};
use crate::resolve::{launch_plan, preferred_workers, sources};
use crate::session::JobSettings;
use crate::workers::{WorkerRef, WorkerRegistry};

pub(crate) struct Job {
    pub id: JobId,
    pub sql: String,
    pub state: JobState,
    pub error: String,
    /// The gRPC code of a failed task's error (e.g. RESOURCE_EXHAUSTED), 0 when none.
    pub error_code: i32,
    pub submitted_at: SystemTime,
    pub started: Instant,
    pub elapsed: Option<Duration>,
    pub settings: JobSettings,
    pub stages: Vec<StageRun>,
    pub result_schema: SchemaRef,
    /// How the answer is compressed on its way to the client.
    pub result_compression: WireCompression,
    /// The job succeeds only once its finalizer (e.g. registering the table it wrote) is done.
    pub awaits_finalizer: bool,
    /// An answer made by the coordinator (EXPLAIN), as an Arrow IPC stream.
    pub inline_result: Vec<u8>,
    updates: watch::Sender<u64>,
}

pub(crate) struct StageRun {
    pub plan: StagePlan,
    /// The plan the tasks ran, settled when the stage started.
    pub launched: Option<Arc<ShuffleWriterExec>>,
    /// What the rules decided when the stage started.
    pub notes: Vec<String>,
    pub final_gather_max_groups: usize,
    pub state: StageState,
    /// One per partition, created when the stage starts.
    pub tasks: Vec<TaskRun>,
    pub started: Option<Instant>,
    pub elapsed: Option<Duration>,
    /// What consumers of this stage fetched from other workers.
    pub shuffle_bytes: u64,
    pub shuffle_uncompressed_bytes: u64,
    pub shuffle_rows: u64,
    /// What its tasks spilled to disk for want of memory.
    pub spilled_bytes: u64,
}

#[derive(Clone)]
pub(crate) struct TaskRun {
    pub attempt: u32,
    pub partial_input_rows: Option<u64>,
    pub state: TaskState,
    pub worker: Option<WorkerRef>,
    pub outputs: Vec<PartitionOutput>,
    pub running: bool,
}

impl Default for TaskRun {
    fn default() -> Self {
        Self {
            attempt: 0,
            partial_input_rows: None,
            state: TaskState::Unspecified,
            worker: None,
            outputs: Vec::new(),
            running: false,
        }
    }
}

impl StageRun {
    /// The plan its tasks ran, or before it started, the plan it was cut with.
    pub(crate) fn launched_plan(&self) -> &Arc<ShuffleWriterExec> {
        self.launched.as_ref().unwrap_or(&self.plan.plan)
    }
}

/// True when the stage scans a table whose partitions are declared hash partitioned (buckets).
fn reads_buckets(plan: &Arc<ShuffleWriterExec>) -> bool {
    let mut pending: Vec<Arc<dyn ExecutionPlan>> = vec![plan.input().clone()];
    while let Some(node) = pending.pop() {
        if node.is::<DataSourceExec>()
            && matches!(node.output_partitioning(), Partitioning::Hash(..))
        {
            return true;
        }
        pending.extend(node.children().into_iter().cloned());
    }
    false
}

/// A RunTask call to make once the job table is unlocked.
struct Dispatch {
    worker: WorkerRef,
    request: RunTaskRequest,
}

impl Job {
    pub(crate) fn is_finished(&self) -> bool {
        matches!(
            self.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    fn stage(&self, id: StageId) -> &StageRun {
        &self.stages[id.0 as usize - 1]
    }

    fn stage_mut(&mut self, id: StageId) -> &mut StageRun {
        &mut self.stages[id.0 as usize - 1]
    }

    /// Every stage has finished its tasks.
    pub(crate) fn stages_done(&self) -> bool {
        self.final_stage()
            .is_some_and(|s| s.state == StageState::Succeeded)
    }

    pub(crate) fn final_stage(&self) -> Option<&StageRun> {
        self.stages.last()
    }

    /// Where the answer is: the final stage's one output piece per task, in task order.
    pub(crate) fn results(&self) -> Vec<SpoolLocation> {
        match self.final_stage() {
            Some(stage) if self.state == JobState::Succeeded && self.inline_result.is_empty() => {
                sources(&self.id, stage).into_iter().flatten().collect()
            }
            _ => Vec::new(),
        }
    }

    fn notify(&self) {
        self.updates.send_modify(|version| *version += 1);
    }

    fn finish(&mut self, state: JobState, error: String) {
        if self.is_finished() {
            return;
        }
        self.state = state;
        self.error = error;
        self.elapsed = Some(self.started.elapsed());
        for stage in &mut self.stages {
            if stage.state == StageState::Running && state != JobState::Succeeded {
                stage.state = StageState::Failed;
            }
        }
        match state {
            JobState::Succeeded => {
                tracing::info!(job_id = %self.id, elapsed_ms = ?self.elapsed.map(|d| d.as_millis()), "job succeeded")
            }
            _ => {
                tracing::warn!(job_id = %self.id, state = ?state, error = %self.error, "job ended")
            }
        }
    }

    /// Workers that hold (or are producing) anything of this job.
    fn workers_involved(&self) -> Vec<WorkerRef> {
        let mut seen = BTreeSet::new();
        let mut workers = Vec::new();
        for task in self.stages.iter().flat_map(|s| &s.tasks) {
            if let Some(worker) = &task.worker
                && seen.insert(worker.id.clone())
            {
                workers.push(worker.clone());
            }
        }
        workers
    }

    /// Starts every stage whose inputs are complete; returns the RunTask calls to make.
    fn launch_ready_stages(&mut self, workers: &[WorkerRef]) -> Result<Vec<Dispatch>, String> {
        let mut dispatches = Vec::new();
        loop {
            let ready: Vec<usize> = (0..self.stages.len())
                .filter(|&i| {
                    let stage = &self.stages[i];
                    stage.state == StageState::Pending
                        && stage
                            .plan
                            .inputs
                            .iter()
                            .all(|input| self.stage(*input).state == StageState::Succeeded)
                })
                .collect();
            if ready.is_empty() {
                break;
            }
            for index in ready {
                let launch = launch_plan(&self.id, &self.stages[index], &self.stages)
                    .map_err(|e| format!("stage {} could not start: {e}", index + 1))?;
                let bytes = encode_plan(launch.plan.clone())
                    .map_err(|e| format!("stage {} cannot be sent to workers: {e}", index + 1))?;
                let task_count = launch.plan.input().output_partitioning().partition_count();
                let preferred = preferred_workers(&launch.plan, task_count);
                let stage = &mut self.stages[index];
                stage.started = Some(Instant::now());
                stage.notes = launch.notes;
                stage.launched = Some(launch.plan);
                stage.tasks = vec![TaskRun::default(); task_count];
                if task_count == 0 {
                    stage.state = StageState::Succeeded;
                    stage.elapsed = Some(Duration::ZERO);
                    continue;
                }
                if workers.is_empty() {
                    return Err("no live workers to run the job on".to_string());
                }
                stage.state = StageState::Running;
                // Task p of a stage scanning bucketed tables runs on worker p mod W, so bucket
                // p of every table bucketed alike is read on the same worker in every stage and
                // job. Other stages start one worker further along, to spread single tasks.
                let offset = if reads_buckets(stage.launched_plan()) {
                    0
                } else {
                    stage.plan.id.0 as usize
                };
                for (partition, task) in stage.tasks.iter_mut().enumerate() {
                    let worker = match &launch.pinned {
                        Some(pinned) => {
                            let holder = &pinned[partition];
                            if !workers.iter().any(|w| w.id == holder.id) {
                                return Err(format!(
                                    "worker {} holding stage {} input is gone",
                                    holder.id,
                                    index + 1
                                ));
                            }
                            holder.clone()
                        }
                        None => preferred[partition]
                            .as_ref()
                            .and_then(|id| workers.iter().find(|w| &w.id == id))
                            .unwrap_or(&workers[(partition + offset) % workers.len()])
                            .clone(),
                    };
                    task.worker = Some(worker.clone());
                    task.running = true;
                    let key = TaskKey {
                        job_id: self.id.clone(),
                        stage_id: stage.plan.id,
                        partition: partition as u32,
                        attempt: task.attempt,
                    };
                    dispatches.push(Dispatch {
                        worker,
                        request: RunTaskRequest {
                            task: Some((&key).into()),
                            plan: bytes.clone(),
                            settings: self.settings.0.clone(),
                        },
                    });
                }
            }
        }
        if self.stages_done() && !self.awaits_finalizer {
            self.finish(JobState::Succeeded, String::new());
        }
        Ok(dispatches)
    }

    /// Applies a task report; returns true when the job may have stages to launch.
    fn apply_report(&mut self, report: TaskStatusReport) -> bool {
        let Some(key) = report.task.clone().map(TaskKey::from) else {
            return false;
        };
        if self.is_finished() || key.stage_id.0 == 0 || key.stage_id.0 as usize > self.stages.len()
        {
            return false;
        }
        let state = report.state();
        let stage_id = key.stage_id;
        {
            let stage = self.stage_mut(stage_id);
            let Some(task) = stage.tasks.get_mut(key.partition as usize) else {
                return false;
            };
            if task.attempt != key.attempt || !task.running {
                return false;
            }
            task.running = false;
            task.state = state;
            stage.spilled_bytes += report.spilled_bytes;
            if state == TaskState::Succeeded {
                task.outputs = report.outputs.clone();
                task.partial_input_rows = report.partial_input_rows;
            }
        }
        match state {
            TaskState::Succeeded => {
                for read in &report.reads {
                    let input = StageId(read.stage_id);
                    if input.0 >= 1 && input.0 as usize <= self.stages.len() {
                        let producer = self.stage_mut(input);
                        producer.shuffle_bytes += read.remote_bytes;
                        producer.shuffle_uncompressed_bytes += read.remote_uncompressed_bytes;
                        producer.shuffle_rows += read.remote_rows;
                    }
                }
                let stage = self.stage_mut(stage_id);
                if stage.tasks.iter().all(|t| t.state == TaskState::Succeeded) {
                    stage.state = StageState::Succeeded;
                    stage.elapsed = stage.started.map(|s| s.elapsed());
                    return true;
                }
                false
            }
            _ => {
                let error = if report.error.is_empty() {
                    format!("task {key} ended as {state:?}")
                } else {
                    report.error.clone()
                };
                self.stage_mut(stage_id).state = StageState::Failed;
                self.error_code = report.error_code;
                self.finish(JobState::Failed, crate::error::one_line(&error));
                false
            }
        }
    }
}

pub(crate) struct JobManager {
    jobs: Mutex<BTreeMap<JobId, Job>>,
    workers: Arc<WorkerRegistry>,
    /// How long a finished job's spooled answer stays on the workers.
    result_ttl: Duration,
}

impl JobManager {
    pub(crate) fn new(workers: Arc<WorkerRegistry>, result_ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            jobs: Mutex::default(),
            workers,
            result_ttl,
        })
    }

    pub(crate) fn with_job<T>(&self, id: &JobId, f: impl FnOnce(&Job) -> T) -> Option<T> {
        self.jobs.lock().expect("job table poisoned").get(id).map(f)
    }

    pub(crate) fn for_each_job<T>(&self, mut f: impl FnMut(&Job) -> T) -> Vec<T> {
        self.jobs
            .lock()
            .expect("job table poisoned")
            .values()
            .map(&mut f)
            .collect()
    }

    pub(crate) fn subscribe(&self, id: &JobId) -> Option<watch::Receiver<u64>> {
        self.with_job(id, |job| job.updates.subscribe())
    }

    /// Records a job that needed no workers (DDL, EXPLAIN), already finished, with the answer
    /// the coordinator made for it, if any.
    pub(crate) fn insert_finished(
        &self,
        id: JobId,
        sql: String,
        schema: SchemaRef,
        inline_result: Vec<u8>,
    ) {
        let mut job = new_job(id.clone(), sql, JobSettings::default(), Vec::new(), schema);
        job.inline_result = inline_result;
        job.finish(JobState::Succeeded, String::new());
        self.jobs
            .lock()
            .expect("job table poisoned")
            .insert(id, job);
    }

    pub(crate) fn start(
        self: &Arc<Self>,
        id: JobId,
        sql: String,
        settings: JobSettings,
        plan: DistributedPlan,
        rules: &Rules,
        awaits_finalizer: bool,
    ) {
        let schema = plan.final_stage().plan.input().schema();
        let stages = plan
            .stages
            .into_iter()
            .map(|stage| StageRun {
                plan: stage,
                launched: None,
                notes: Vec::new(),
                final_gather_max_groups: rules.final_gather_max_groups,
                state: StageState::Pending,
                tasks: Vec::new(),
                started: None,
                elapsed: None,
                shuffle_bytes: 0,
                shuffle_uncompressed_bytes: 0,
                shuffle_rows: 0,
                spilled_bytes: 0,
            })
            .collect();
        let mut job = new_job(id.clone(), sql, settings, stages, schema);
        job.state = JobState::Running;
        job.result_compression = rules.compression;
        job.awaits_finalizer = awaits_finalizer;
        for stage in &job.stages {
            tracing::debug!(job_id = %id, stage_id = %stage.plan.id, tasks = stage.tasks.len(), plan = %displayable(stage.plan.plan.as_ref()).indent(false), "stage planned");
        }
        self.jobs
            .lock()
            .expect("job table poisoned")
            .insert(id.clone(), job);
        self.schedule(&id);
    }

    /// Launches what is ready and sends the RunTask calls.
    fn schedule(self: &Arc<Self>, id: &JobId) {
        let workers = self.workers.alive();
        let dispatches = {
            let mut jobs = self.jobs.lock().expect("job table poisoned");
            let Some(job) = jobs.get_mut(id) else { return };
            if job.is_finished() {
                return;
            }
            let dispatches = match job.launch_ready_stages(&workers) {
                Ok(dispatches) => dispatches,
                Err(error) => {
                    job.finish(JobState::Failed, error);
                    Vec::new()
                }
            };
            job.notify();
            if job.is_finished() {
                self.after_finish(job);
            }
            dispatches
        };
        for dispatch in dispatches {
            let manager = self.clone();
            tokio::spawn(async move {
                let Dispatch { worker, request } = dispatch;
                let key = TaskKey::from(request.task.clone().expect("dispatch has a task"));
                if let Err(status) = worker.client.clone().run_task(request).await {
                    let message = match status.code() {
                        tonic::Code::Unavailable | tonic::Code::Unknown => format!(
                            "worker {} at {} did not answer: {}",
                            worker.id,
                            worker.endpoint,
                            status.message()
                        ),
                        _ => status.message().to_string(),
                    };
                    manager.report(TaskStatusReport {
                        task: Some((&key).into()),
                        worker_id: worker.id.to_string(),
                        state: TaskState::Failed as i32,
                        error: message,
                        error_code: status.code() as i32,
                        ..Default::default()
                    });
                }
            });
        }
    }

    pub(crate) fn report(self: &Arc<Self>, report: TaskStatusReport) {
        let Some(job_id) = report.task.as_ref().map(|t| JobId::from(t.job_id.clone())) else {
            return;
        };
        let launch = {
            let mut jobs = self.jobs.lock().expect("job table poisoned");
            let Some(job) = jobs.get_mut(&job_id) else {
                return;
            };
            let launch = job.apply_report(report);
            job.notify();
            if job.is_finished() {
                self.after_finish(job);
            }
            launch
        };
        if launch {
            self.schedule(&job_id);
        }
    }

    /// Ends a job whose stages are done and whose finalizer has run; the finalizer may have
    /// made the answer itself.
    pub(crate) fn finalize(
        self: &Arc<Self>,
        id: &JobId,
        outcome: Result<Option<(SchemaRef, Vec<u8>)>, String>,
    ) {
        let mut jobs = self.jobs.lock().expect("job table poisoned");
        let Some(job) = jobs.get_mut(id) else { return };
        match outcome {
            Ok(answer) => {
                if let Some((schema, bytes)) = answer {
                    job.result_schema = schema;
                    job.inline_result = bytes;
                }
                job.finish(JobState::Succeeded, String::new())
            }
            Err(error) => job.finish(JobState::Failed, error),
        }
        job.notify();
        self.after_finish(job);
    }

    pub(crate) fn cancel(self: &Arc<Self>, id: &JobId) -> Option<JobState> {
        let mut jobs = self.jobs.lock().expect("job table poisoned");
        let job = jobs.get_mut(id)?;
        if !job.is_finished() {
            job.finish(JobState::Cancelled, "cancelled by the user".to_string());
            job.notify();
            self.after_finish(job);
        }
        Some(job.state)
    }

    /// Fails the running jobs that had work on a worker that died.
    pub(crate) fn worker_lost(self: &Arc<Self>, worker: &WorkerId) {
        let mut jobs = self.jobs.lock().expect("job table poisoned");
        for job in jobs.values_mut().filter(|job| !job.is_finished()) {
            let affected = job
                .stages
                .iter()
                .flat_map(|s| &s.tasks)
                .any(|t| t.worker.as_ref().is_some_and(|w| &w.id == worker));
            if affected {
                job.finish(
                    JobState::Failed,
                    format!("worker {worker} stopped responding while the job used it"),
                );
                job.notify();
                self.after_finish(job);
            }
        }
    }

    /// Frees the job's spool: at once when it failed, after the result TTL when it succeeded
    /// (the client still has to fetch the answer).
    fn after_finish(&self, job: &Job) {
        let workers = job.workers_involved();
        if workers.is_empty() {
            return;
        }
        let delay = if job.state == JobState::Succeeded {
            self.result_ttl
        } else {
            Duration::ZERO
        };
        let job_id = job.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for worker in workers {
                let request = DropJobRequest {
                    job_id: job_id.to_string(),
                };
                if let Err(status) = worker.client.clone().drop_job(request).await {
                    tracing::debug!(job_id = %job_id, worker_id = %worker.id, error = %status.message(), "could not drop job spool");
                }
            }
        });
    }
}

fn new_job(
    id: JobId,
    sql: String,
    settings: JobSettings,
    stages: Vec<StageRun>,
    result_schema: SchemaRef,
) -> Job {
    Job {
        id,
        sql,
        state: JobState::Queued,
        error: String::new(),
        error_code: 0,
        submitted_at: SystemTime::now(),
        started: Instant::now(),
        elapsed: None,
        settings,
        stages,
        result_schema,
        result_compression: WireCompression::None,
        awaits_finalizer: false,
        inline_result: Vec::new(),
        updates: watch::channel(0).0,
    }
}
