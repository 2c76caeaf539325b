//! The job model: a job is a list of stages, a stage one task per partition. Every change of a
//! stage's or a task's state is a method here, so the states stay consistent; when to make
//! a change is the scheduler's call (`manager.rs`), and a job ends only through
//! `JobManager::end`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow::datatypes::SchemaRef;
use tally_common::compression::WireCompression;
use tally_common::ids::{JobId, StageId, TaskKey, WorkerId};
use tally_common::job_status::{JobState, NaivePlan, StageState, TaskState};
use tally_common::shuffle_writer::ShuffleWriterExec;
use tokio::sync::watch;

use super::error::JobError;
use super::workers::WorkerRef;
use crate::planner::StagePlan;

/// Failed attempts of one task after which its job fails, unless configured otherwise.
pub const DEFAULT_TASK_ATTEMPTS: u32 = 4;

/// DataFusion settings every worker applies to the job's stage plans.
pub(crate) type WorkerSettings = Arc<HashMap<String, String>>;

pub(crate) struct Job {
    pub id: JobId,
    /// Failed attempts of one task (retryable failures) after which the job fails.
    pub max_task_failures: u32,
    pub sql: String,
    pub state: JobState,
    /// Why the job failed or was cancelled.
    pub error: Option<JobError>,
    pub submitted_at: SystemTime,
    pub started: Instant,
    pub elapsed: Option<Duration>,
    pub settings: WorkerSettings,
    pub stages: Vec<StageRun>,
    pub result_schema: SchemaRef,
    /// How the answer is compressed on its way to the client.
    pub result_compression: WireCompression,
    /// The job succeeds only once its finalizer (e.g. registering the table it wrote) is done.
    pub awaits_finalizer: bool,
    /// An answer made by the coordinator (EXPLAIN), as an Arrow IPC stream.
    pub inline_result: Vec<u8>,
    /// EXPLAIN ANALYZE: the naive plan's shuffle, estimated, to compare with this job's.
    pub naive: Option<NaivePlan>,
    pub(super) updates: watch::Sender<u64>,
    /// Workers the job places no more tasks on (see exclusion.rs).
    pub(super) excluded: BTreeSet<WorkerId>,
    /// Per worker, the workers it failed to fetch from or that failed to fetch from it.
    pub(super) fetch_failures: BTreeMap<WorkerId, BTreeSet<WorkerId>>,
}

pub(crate) struct StageRun {
    pub plan: StagePlan,
    /// The plan the tasks ran, settled when the stage started, and as sent to workers.
    pub launched: Option<Arc<ShuffleWriterExec>>,
    pub(super) launched_bytes: Arc<[u8]>,
    /// Where each task must run (it reads its input from that worker's disk), if anywhere.
    pub(super) pinned: Option<Vec<WorkerRef>>,
    /// Where each task would rather run (next to its input files).
    pub(super) preferred: Vec<Option<WorkerId>>,
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
    /// Records of a Kafka table its tasks skipped as malformed.
    pub malformed_records: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct TaskRun {
    pub attempt: u32,
    /// Failed attempts that counted against the job's budget.
    pub failures: u32,
    /// The worker the last failed attempt ran on, avoided for the next one.
    pub(super) avoid: Option<WorkerId>,
    pub partial_input_rows: Option<u64>,
    pub state: TaskState,
    pub worker: Option<WorkerRef>,
    pub outputs: Vec<TaskOutput>,
    /// When the attempt was sent to its worker.
    pub sent: Option<Instant>,
    /// The attempt's time as its worker reported it, once it ended.
    pub elapsed: Option<Duration>,
    /// Bytes the attempt spilled, as its report said.
    pub spilled_bytes: u64,
}

/// Rows and bytes a task spooled for one output partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskOutput {
    pub partition: u32,
    pub rows: u64,
    pub bytes: u64,
    /// The MAC the worker minted for this piece; readers present it with the ticket.
    pub ticket_mac: Vec<u8>,
}

/// A stage's plan settled when it starts.
pub(crate) struct Launch {
    pub plan: Arc<ShuffleWriterExec>,
    pub bytes: Vec<u8>,
    pub pinned: Option<Vec<WorkerRef>>,
    pub preferred: Vec<Option<WorkerId>>,
    pub notes: Vec<String>,
    pub task_count: usize,
}

impl TaskRun {
    fn new(attempt: u32) -> Self {
        Self {
            attempt,
            failures: 0,
            avoid: None,
            partial_input_rows: None,
            state: TaskState::Pending,
            worker: None,
            outputs: Vec::new(),
            sent: None,
            elapsed: None,
            spilled_bytes: 0,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.state == TaskState::Running
    }

    pub(crate) fn runs_on(&self, worker: &WorkerId) -> bool {
        self.worker.as_ref().is_some_and(|w| &w.id == worker)
    }

    /// Sent to `worker`.
    pub(super) fn dispatch(&mut self, worker: WorkerRef) {
        self.worker = Some(worker);
        self.state = TaskState::Running;
        self.sent = Some(Instant::now());
        self.elapsed = None;
        self.spilled_bytes = 0;
    }

    /// The attempt's time: as reported once it ended, or since it was sent while it runs
    /// (0 before it is sent).
    pub(crate) fn time(&self) -> Duration {
        match (self.elapsed, self.sent) {
            (Some(elapsed), _) => elapsed,
            (None, Some(sent)) if self.is_running() => sent.elapsed(),
            _ => Duration::ZERO,
        }
    }

    /// What the attempt's report said of its time and spill, whatever its outcome.
    pub(super) fn reported(&mut self, elapsed: Duration, spilled_bytes: u64) {
        self.elapsed = Some(elapsed);
        self.spilled_bytes = spilled_bytes;
    }

    pub(super) fn succeed(&mut self, outputs: Vec<TaskOutput>, partial_input_rows: Option<u64>) {
        self.state = TaskState::Succeeded;
        self.outputs = outputs;
        self.partial_input_rows = partial_input_rows;
    }

    pub(super) fn fail(&mut self) {
        self.state = TaskState::Failed;
    }

    /// A failed attempt that another may repair: counted, and the next one avoids the worker.
    pub(super) fn fail_for_retry(&mut self) {
        self.failures += 1;
        self.avoid = self.worker.as_ref().map(|w| w.id.clone());
        self.rerun();
    }

    /// Prepares the task to run again under the next attempt number.
    pub(super) fn rerun(&mut self) {
        self.attempt += 1;
        self.state = TaskState::Pending;
        self.outputs.clear();
        self.partial_input_rows = None;
        self.worker = None;
        self.sent = None;
        self.elapsed = None;
        self.spilled_bytes = 0;
    }
}

impl StageRun {
    pub(super) fn new(plan: StagePlan, final_gather_max_groups: usize) -> Self {
        Self {
            plan,
            launched: None,
            launched_bytes: Arc::from(Vec::new()),
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
            malformed_records: 0,
        }
    }

    /// The plan its tasks ran, or before it started, the plan it was cut with.
    pub(crate) fn launched_plan(&self) -> &Arc<ShuffleWriterExec> {
        self.launched.as_ref().unwrap_or(&self.plan.plan)
    }

    pub(crate) fn id(&self) -> StageId {
        self.plan.id
    }

    /// Pending -> Running (or straight to Succeeded when it has no tasks).
    pub(super) fn start(&mut self, launch: Launch) {
        self.started = Some(Instant::now());
        self.preferred = launch.preferred;
        self.notes = launch.notes;
        self.launched = Some(launch.plan);
        self.launched_bytes = Arc::from(launch.bytes);
        self.pinned = launch.pinned;
        self.tasks = vec![TaskRun::new(self.next_attempt); launch.task_count];
        if launch.task_count == 0 {
            self.elapsed = Some(Duration::ZERO);
            self.state = StageState::Succeeded;
        } else {
            self.state = StageState::Running;
        }
    }

    /// Running -> Succeeded once every task has.
    pub(super) fn complete_if_done(&mut self) -> bool {
        if self.state == StageState::Running
            && self.tasks.iter().all(|t| t.state == TaskState::Succeeded)
        {
            self.state = StageState::Succeeded;
            self.elapsed = self.started.map(|s| s.elapsed());
            return true;
        }
        false
    }

    /// Some of its tasks run again (their output died with a worker): Running again.
    pub(super) fn resume(&mut self) {
        self.state = StageState::Running;
        self.elapsed = None;
    }

    /// Back to pending: its input was lost, so it starts over once the input is whole. Returns
    /// the attempts still running, to cancel.
    pub(super) fn start_over(&mut self, job: &JobId) -> Vec<(WorkerRef, TaskKey)> {
        let stale = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, task)| task.is_running())
            .filter_map(|(partition, task)| {
                let worker = task.worker.clone()?;
                Some((worker, self.task_key(job, partition, task.attempt)))
            })
            .collect();
        self.next_attempt = self.tasks.iter().map(|t| t.attempt + 1).max().unwrap_or(0);
        self.state = StageState::Pending;
        self.launched = None;
        self.launched_bytes = Arc::from(Vec::new());
        self.pinned = None;
        self.notes.clear();
        self.tasks.clear();
        self.elapsed = None;
        stale
    }

    /// The job ended while the stage ran: it failed, and its running tasks were cancelled.
    fn abort(&mut self) {
        if self.state == StageState::Running {
            self.state = StageState::Failed;
        }
        for task in &mut self.tasks {
            if task.is_running() {
                // Its time stops with the job.
                task.elapsed = Some(task.time());
                task.state = TaskState::Cancelled;
            }
        }
    }

    pub(crate) fn task_key(&self, job: &JobId, partition: usize, attempt: u32) -> TaskKey {
        TaskKey {
            job_id: job.clone(),
            stage_id: self.plan.id,
            partition: partition as u32,
            attempt,
        }
    }
}

impl Job {
    pub(super) fn new(
        id: JobId,
        sql: String,
        settings: WorkerSettings,
        stages: Vec<StageRun>,
        result_schema: SchemaRef,
    ) -> Self {
        Self {
            id,
            max_task_failures: DEFAULT_TASK_ATTEMPTS,
            sql,
            state: JobState::Queued,
            error: None,
            submitted_at: SystemTime::now(),
            started: Instant::now(),
            elapsed: None,
            settings,
            stages,
            result_schema,
            result_compression: WireCompression::None,
            awaits_finalizer: false,
            inline_result: Vec::new(),
            naive: None,
            updates: watch::channel(0).0,
            excluded: BTreeSet::new(),
            fetch_failures: BTreeMap::new(),
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.state.is_final()
    }

    pub(crate) fn stage(&self, id: StageId) -> &StageRun {
        &self.stages[id.0 as usize - 1]
    }

    pub(super) fn stage_mut(&mut self, id: StageId) -> &mut StageRun {
        &mut self.stages[id.0 as usize - 1]
    }

    pub(super) fn has_stage(&self, id: StageId) -> bool {
        id.0 >= 1 && id.0 as usize <= self.stages.len()
    }

    /// Every stage has finished its tasks.
    pub(crate) fn stages_done(&self) -> bool {
        self.final_stage()
            .is_some_and(|s| s.state == StageState::Succeeded)
    }

    pub(crate) fn final_stage(&self) -> Option<&StageRun> {
        self.stages.last()
    }

    pub(super) fn notify(&self) {
        self.updates.send_modify(|version| *version += 1);
    }

    /// Sets the final state; only `JobManager::end` calls it.
    pub(super) fn finish(&mut self, state: JobState, error: Option<JobError>) {
        debug_assert!(state.is_final());
        self.state = state;
        self.error = error;
        self.elapsed = Some(self.started.elapsed());
        if state != JobState::Succeeded {
            for stage in &mut self.stages {
                stage.abort();
            }
        }
    }

    /// Workers that hold (or are producing) anything of this job.
    pub(crate) fn workers_involved(&self) -> Vec<WorkerRef> {
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
}
