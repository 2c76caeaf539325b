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
use prost::Message;
use tally_common::codec::encode_plan;
use tally_common::compression::WireCompression;
use tally_common::ids::{JobId, StageId, TaskKey, WorkerId};
use tally_common::shuffle_reader::SpoolLocation;
use tally_common::shuffle_writer::ShuffleWriterExec;
use tally_meta::SharedMetaStore;
use tally_proto::coordinator::{
    JobState, JobStatus, PartitionOutput, StageState, TaskState, TaskStatusReport,
};
use tally_proto::worker::{CancelTaskRequest, DropJobRequest, PingRequest, RunTaskRequest};
use tokio::sync::{mpsc, watch};

use crate::options::Rules;
use crate::planner::{DistributedPlan, StagePlan};
use crate::resolve::{launch_plan, preferred_workers, sources};
use crate::session::JobSettings;
use crate::status::job_status;
use crate::workers::{WorkerRef, WorkerRegistry};

mod recovery;

/// Failed attempts of one task after which its job fails, unless configured otherwise.
pub const DEFAULT_TASK_ATTEMPTS: u32 = 4;

/// How long a worker has to answer a ping before its work is declared lost.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before a failed task's next attempt, times its failures so far.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

pub(crate) struct Job {
    pub id: JobId,
    /// Failed attempts of one task (retryable failures) after which the job fails.
    pub max_task_failures: u32,
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
    /// The plan the tasks ran, settled when the stage started, and as sent to workers.
    pub launched: Option<Arc<ShuffleWriterExec>>,
    launched_bytes: Vec<u8>,
    /// Where each task must run (it reads its input from that worker's disk), if anywhere.
    pinned: Option<Vec<WorkerRef>>,
    /// Where each task would rather run (next to its input files).
    preferred: Vec<Option<WorkerId>>,
    /// The attempt number the stage's next tasks start at: a restarted stage's new tasks
    /// must not be mistaken for the old ones.
    next_attempt: u32,
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
    /// Failed attempts that counted against the job's budget.
    pub failures: u32,
    /// The worker the last failed attempt ran on, avoided for the next one.
    avoid: Option<WorkerId>,
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
            failures: 0,
            avoid: None,
            partial_input_rows: None,
            state: TaskState::Unspecified,
            worker: None,
            outputs: Vec::new(),
            running: false,
        }
    }
}

impl TaskRun {
    /// Prepares the task to run again under the next attempt number.
    fn rerun(&mut self) {
        self.attempt += 1;
        self.running = false;
        self.state = TaskState::Unspecified;
        self.outputs.clear();
        self.partial_input_rows = None;
        self.worker = None;
    }
}

impl StageRun {
    fn new(plan: StagePlan, final_gather_max_groups: usize) -> Self {
        Self {
            plan,
            launched: None,
            launched_bytes: Vec::new(),
            pinned: None,
            preferred: Vec::new(),
            next_attempt: 0,
            notes: Vec::new(),
            final_gather_max_groups,
            state: StageState::Pending,
            tasks: Vec::new(),
            started: None,
            elapsed: None,
            shuffle_bytes: 0,
            shuffle_uncompressed_bytes: 0,
            shuffle_rows: 0,
            spilled_bytes: 0,
        }
    }

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

/// What a task report asks of the scheduler.
enum ReportOutcome {
    Nothing,
    /// A stage finished: later stages may start.
    Launch,
    /// A task failed in a way another try may not: find out whether workers died, then run
    /// it again.
    Retry {
        failures: u32,
    },
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

    /// Starts every stage whose inputs are complete and sends every task without a worker to
    /// one; returns the RunTask calls to make.
    fn launch_ready_stages(&mut self, workers: &[WorkerRef]) -> Result<Vec<Dispatch>, String> {
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
                let stage = &mut self.stages[index];
                stage.preferred = preferred_workers(&launch.plan, task_count);
                stage.started = Some(Instant::now());
                stage.notes = launch.notes;
                stage.launched = Some(launch.plan);
                stage.launched_bytes = bytes;
                stage.pinned = launch.pinned;
                let first = TaskRun {
                    attempt: stage.next_attempt,
                    ..Default::default()
                };
                stage.tasks = vec![first; task_count];
                stage.state = if task_count == 0 {
                    stage.elapsed = Some(Duration::ZERO);
                    StageState::Succeeded
                } else {
                    StageState::Running
                };
            }
        }
        let dispatches = self.dispatch_waiting_tasks(workers)?;
        if self.stages_done() && !self.awaits_finalizer {
            self.finish(JobState::Succeeded, String::new());
        }
        Ok(dispatches)
    }

    /// Picks a worker for every task of a running stage that is not running or done.
    fn dispatch_waiting_tasks(&mut self, workers: &[WorkerRef]) -> Result<Vec<Dispatch>, String> {
        let mut dispatches = Vec::new();
        for (index, stage) in self.stages.iter_mut().enumerate() {
            if stage.state != StageState::Running {
                continue;
            }
            // Task p of a stage scanning bucketed tables runs on worker p mod W, so bucket
            // p of every table bucketed alike is read on the same worker in every stage and
            // job. Other stages start one worker further along, to spread single tasks.
            let offset = if reads_buckets(stage.launched_plan()) {
                0
            } else {
                stage.plan.id.0 as usize
            };
            for (partition, task) in stage.tasks.iter_mut().enumerate() {
                if task.running || task.state == TaskState::Succeeded {
                    continue;
                }
                if workers.is_empty() {
                    return Err("no live workers to run the job on".to_string());
                }
                let worker = match &stage.pinned {
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
                    None => {
                        // After a failure, another worker if there is one.
                        let usable: Vec<&WorkerRef> = workers
                            .iter()
                            .filter(|w| task.avoid.as_ref() != Some(&w.id))
                            .collect();
                        let usable = if usable.is_empty() {
                            workers.iter().collect()
                        } else {
                            usable
                        };
                        let preferred = stage
                            .preferred
                            .get(partition)
                            .and_then(Option::as_ref)
                            .and_then(|id| usable.iter().find(|w| &w.id == id));
                        (*preferred.unwrap_or(&usable[(partition + offset) % usable.len()])).clone()
                    }
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
                        plan: stage.launched_bytes.clone(),
                        settings: self.settings.0.clone(),
                    },
                });
            }
        }
        Ok(dispatches)
    }

    /// Applies a task report: what the scheduler should do next.
    fn apply_report(&mut self, report: TaskStatusReport) -> ReportOutcome {
        let Some(key) = report.task.clone().map(TaskKey::from) else {
            return ReportOutcome::Nothing;
        };
        if self.is_finished() || key.stage_id.0 == 0 || key.stage_id.0 as usize > self.stages.len()
        {
            return ReportOutcome::Nothing;
        }
        let max_failures = self.max_task_failures;
        let state = report.state();
        let stage_id = key.stage_id;
        {
            let stage = self.stage_mut(stage_id);
            let Some(task) = stage.tasks.get_mut(key.partition as usize) else {
                return ReportOutcome::Nothing;
            };
            if task.attempt != key.attempt || !task.running {
                return ReportOutcome::Nothing;
            }
            task.running = false;
            task.state = state;
            stage.spilled_bytes += report.spilled_bytes;
            if state == TaskState::Succeeded {
                task.outputs = report.outputs.clone();
                task.partial_input_rows = report.partial_input_rows;
            } else if report.retryable && task.failures + 1 < max_failures {
                task.failures += 1;
                let failed_on = task.worker.clone();
                task.avoid = failed_on.as_ref().map(|w| w.id.clone());
                task.rerun();
                tracing::warn!(task = %key, failures = task.failures, error = %report.error, "task failed; it will run again");
                return ReportOutcome::Retry {
                    failures: task.failures,
                };
            } else if report.retryable {
                task.failures += 1;
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
                    return ReportOutcome::Launch;
                }
                ReportOutcome::Nothing
            }
            _ => {
                let mut error = if report.error.is_empty() {
                    format!("task {key} ended as {state:?}")
                } else {
                    crate::error::one_line(&report.error)
                };
                if report.retryable {
                    error =
                        format!("task {key} failed {max_failures} times; the last time: {error}");
                }
                self.stage_mut(stage_id).state = StageState::Failed;
                self.error_code = report.error_code;
                self.finish(JobState::Failed, error);
                ReportOutcome::Nothing
            }
        }
    }
}

pub(crate) struct JobManager {
    jobs: Mutex<BTreeMap<JobId, Job>>,
    /// Jobs of earlier leaders, as their last recorded status.
    history: Mutex<BTreeMap<JobId, JobStatus>>,
    workers: Arc<WorkerRegistry>,
    /// Job records on their way to the cluster state, written in order by one task.
    records: mpsc::UnboundedSender<(JobId, Vec<u8>)>,
    /// How long a finished job's spooled answer stays on the workers.
    result_ttl: Duration,
    limits: JobLimits,
}

/// Bounds every job runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobLimits {
    /// Failed attempts of one task (for reasons another try may not meet) before the job
    /// fails.
    pub task_attempts: u32,
    /// A job still running after this long fails.
    pub timeout: Duration,
}

impl JobManager {
    pub(crate) fn new(
        workers: Arc<WorkerRegistry>,
        store: SharedMetaStore,
        result_ttl: Duration,
        limits: JobLimits,
    ) -> Arc<Self> {
        let (records, mut pending) = mpsc::unbounded_channel::<(JobId, Vec<u8>)>();
        tokio::spawn(async move {
            while let Some((id, record)) = pending.recv().await {
                if let Err(error) = store.put_job(&id, record).await {
                    tracing::warn!(job_id = %id, %error, "job record not saved");
                }
            }
        });
        Arc::new(Self {
            jobs: Mutex::default(),
            history: Mutex::default(),
            workers,
            records,
            result_ttl,
            limits,
        })
    }

    pub(crate) fn with_job<T>(&self, id: &JobId, f: impl FnOnce(&Job) -> T) -> Option<T> {
        self.jobs.lock().expect("job table poisoned").get(id).map(f)
    }

    /// A job's status, whether this coordinator ran it or an earlier leader did.
    pub(crate) fn status(&self, id: &JobId) -> Option<JobStatus> {
        self.with_job(id, job_status).or_else(|| {
            self.history
                .lock()
                .expect("job history poisoned")
                .get(id)
                .cloned()
        })
    }

    pub(crate) fn statuses(&self) -> Vec<JobStatus> {
        let jobs = self.jobs.lock().expect("job table poisoned");
        let history = self.history.lock().expect("job history poisoned");
        history
            .iter()
            .filter(|(id, _)| !jobs.contains_key(*id))
            .map(|(_, status)| status.clone())
            .chain(jobs.values().map(job_status))
            .collect()
    }

    /// Takes over the records of earlier leaders. A job that was still running when its
    /// coordinator stopped cannot be followed (its tasks reported to a dead process): it is
    /// failed, and its record says why.
    pub(crate) async fn restore(&self, records: Vec<Vec<u8>>) {
        let mut history = self.history.lock().expect("job history poisoned");
        for record in records {
            let mut status = match JobStatus::decode(record.as_slice()) {
                Ok(status) => status,
                Err(error) => {
                    tracing::warn!(%error, "skipping an unreadable job record");
                    continue;
                }
            };
            if matches!(status.state(), JobState::Queued | JobState::Running) {
                status.set_state(JobState::Failed);
                status.error = "the coordinator stopped while the job was running; submit it again"
                    .to_string();
                let id = JobId::from(status.job_id.clone());
                let _ = self.records.send((id, status.encode_to_vec()));
            }
            history.insert(JobId::from(status.job_id.clone()), status);
        }
    }

    /// Saves the job's status in the cluster state, without its answer (that stays on the
    /// workers, and an EXPLAIN text can be large).
    fn record(&self, job: &Job) {
        let mut status = job_status(job);
        status.results.clear();
        status.inline_result.clear();
        let _ = self.records.send((job.id.clone(), status.encode_to_vec()));
    }

    /// Fails every running job, e.g. when this coordinator stops leading.
    pub(crate) fn fail_all(self: &Arc<Self>, reason: &str) {
        let mut jobs = self.jobs.lock().expect("job table poisoned");
        for job in jobs.values_mut().filter(|job| !job.is_finished()) {
            job.finish(JobState::Failed, reason.to_string());
            job.notify();
            self.after_finish(job);
        }
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
        self.record(&job);
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
            .map(|stage| StageRun::new(stage, rules.final_gather_max_groups))
            .collect();
        let mut job = new_job(id.clone(), sql, settings, stages, schema);
        job.state = JobState::Running;
        job.max_task_failures = self.limits.task_attempts.max(1);
        job.result_compression = rules.compression;
        job.awaits_finalizer = awaits_finalizer;
        for stage in &job.stages {
            tracing::debug!(job_id = %id, stage_id = %stage.plan.id, tasks = stage.tasks.len(), plan = %displayable(stage.plan.plan.as_ref()).indent(false), "stage planned");
        }
        self.record(&job);
        self.jobs
            .lock()
            .expect("job table poisoned")
            .insert(id.clone(), job);
        tokio::spawn(self.clone().time_out(id.clone(), self.limits.timeout));
        self.schedule(&id);
    }

    /// Fails the job if it is still running after `limit`, freeing its workers.
    async fn time_out(self: Arc<Self>, id: JobId, limit: Duration) {
        let Some(mut updates) = self.subscribe(&id) else {
            return;
        };
        let finished = async {
            loop {
                if self.with_job(&id, Job::is_finished).unwrap_or(true) {
                    return;
                }
                if updates.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(limit, finished).await.is_ok() {
            return;
        }
        let mut jobs = self.jobs.lock().expect("job table poisoned");
        if let Some(job) = jobs.get_mut(&id).filter(|job| !job.is_finished()) {
            job.finish(
                JobState::Failed,
                format!(
                    "timed out after {} s (the coordinator's --job-timeout-secs)",
                    limit.as_secs()
                ),
            );
            job.notify();
            self.after_finish(job);
        }
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
                    // A worker that does not answer may be dead: the task runs elsewhere.
                    let unreachable = matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                    );
                    let message = if unreachable {
                        format!(
                            "worker {} at {} did not answer: {}",
                            worker.id,
                            worker.endpoint,
                            status.message()
                        )
                    } else {
                        status.message().to_string()
                    };
                    manager.report(TaskStatusReport {
                        task: Some((&key).into()),
                        worker_id: worker.id.to_string(),
                        state: TaskState::Failed as i32,
                        error: message,
                        retryable: unreachable,
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
        let outcome = {
            let mut jobs = self.jobs.lock().expect("job table poisoned");
            let Some(job) = jobs.get_mut(&job_id) else {
                return;
            };
            let outcome = job.apply_report(report);
            job.notify();
            if job.is_finished() {
                self.after_finish(job);
            }
            outcome
        };
        match outcome {
            ReportOutcome::Nothing => {}
            ReportOutcome::Launch => self.schedule(&job_id),
            ReportOutcome::Retry { failures } => {
                tokio::spawn(self.clone().retry(job_id, failures));
            }
        }
    }

    /// Before a failed task runs again: the workers of the job that no longer answer are
    /// lost (their tasks and spooled output are made again elsewhere), then, after a pause
    /// that grows with the failures, the waiting tasks are sent out.
    async fn retry(self: Arc<Self>, job_id: JobId, failures: u32) {
        let involved = self
            .with_job(&job_id, |job| job.workers_involved())
            .unwrap_or_default();
        let probes = involved.into_iter().map(|worker| async move {
            let mut client = worker.client.clone();
            let ping = client.ping(PingRequest {});
            let answered = matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)));
            (worker, answered)
        });
        for (worker, answered) in futures::future::join_all(probes).await {
            if !answered {
                tracing::warn!(worker_id = %worker.id, endpoint = %worker.endpoint, "worker does not answer; its work is lost");
                self.workers.down(&worker.id);
                self.worker_lost(&worker.id);
            }
        }
        tokio::time::sleep(RETRY_PAUSE * failures).await;
        self.schedule(&job_id);
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

    /// A worker died: in every running job, what it was running or held that is still
    /// needed runs again on the live workers (see recovery.rs).
    pub(crate) fn worker_lost(self: &Arc<Self>, worker: &WorkerId) {
        let live = self.workers.alive();
        let mut affected = Vec::new();
        let mut cancels = Vec::new();
        {
            let mut jobs = self.jobs.lock().expect("job table poisoned");
            for job in jobs.values_mut().filter(|job| !job.is_finished()) {
                let Some(stale) = job.lose_worker(worker) else {
                    continue;
                };
                cancels.extend(stale);
                if live.is_empty() {
                    job.finish(
                        JobState::Failed,
                        format!("no live workers left: worker {worker} was the last one and stopped responding"),
                    );
                    self.after_finish(job);
                }
                job.notify();
                affected.push(job.id.clone());
            }
        }
        for (holder, key) in cancels {
            tokio::spawn(async move {
                let request = CancelTaskRequest {
                    task: Some((&key).into()),
                };
                let _ = holder.client.clone().cancel_task(request).await;
            });
        }
        for job in affected {
            self.schedule(&job);
        }
    }

    /// Frees the job's spool: at once when it failed, after the result TTL when it succeeded
    /// (the client still has to fetch the answer).
    fn after_finish(&self, job: &Job) {
        self.record(job);
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
        max_task_failures: DEFAULT_TASK_ATTEMPTS,
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
