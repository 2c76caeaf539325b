//! The job table and the scheduler: jobs start here, task reports and lost workers drive them
//! forward, and every job ends in one place (`end`), which records it and frees its spool.
//! Workers are reached only through the `WorkerTransport`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::displayable;
use tally_common::ids::{JobId, WorkerId};
use tally_common::job_status::{JobFailure, JobState, JobStatus, NaivePlan};
use tokio::sync::{mpsc, watch};

use super::error::JobError;
use super::model::{Job, StageRun, WorkerSettings};
use super::report::{ReportOutcome, TaskOutcome, TaskReport};
use super::scheduling::Dispatch;
use super::transport::WorkerTransport;
use super::workers::WorkerRegistry;
use crate::error::CoordinatorError;
use crate::options::Rules;
use crate::planner::DistributedPlan;

/// How long a worker has to answer a ping before its work is declared lost.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before a failed task's next attempt, times its failures so far.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Bounds every job runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobLimits {
    /// Failed attempts of one task (for reasons another try may not meet) before the job
    /// fails.
    pub task_attempts: u32,
    /// A job still running after this long fails.
    pub timeout: Duration,
}

/// What a job's finalizer made: the answer, when the coordinator makes it (EXPLAIN ANALYZE).
pub(crate) type FinalAnswer = Option<(SchemaRef, Vec<u8>)>;

pub(crate) struct JobManager {
    jobs: Mutex<BTreeMap<JobId, Job>>,
    /// Jobs of earlier leaders, as their last recorded status.
    history: Mutex<BTreeMap<JobId, JobStatus>>,
    workers: Arc<WorkerRegistry>,
    transport: Arc<dyn WorkerTransport>,
    /// Job statuses on their way to the cluster state, written in order by one task.
    records: mpsc::UnboundedSender<JobStatus>,
    /// How long a finished job's spooled answer stays on the workers.
    result_ttl: Duration,
    limits: JobLimits,
}

impl JobManager {
    pub(crate) fn new(
        workers: Arc<WorkerRegistry>,
        transport: Arc<dyn WorkerTransport>,
        records: mpsc::UnboundedSender<JobStatus>,
        result_ttl: Duration,
        limits: JobLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            jobs: Mutex::default(),
            history: Mutex::default(),
            workers,
            transport,
            records,
            result_ttl,
            limits,
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, Job>> {
        self.jobs.lock().expect("job table poisoned")
    }

    pub(crate) fn with_job<T>(&self, id: &JobId, f: impl FnOnce(&Job) -> T) -> Option<T> {
        self.jobs().get(id).map(f)
    }

    /// A job's status, whether this coordinator ran it or an earlier leader did.
    pub(crate) fn status(&self, id: &JobId) -> Option<JobStatus> {
        self.with_job(id, Job::status).or_else(|| {
            self.history
                .lock()
                .expect("job history poisoned")
                .get(id)
                .cloned()
        })
    }

    pub(crate) fn statuses(&self) -> Vec<JobStatus> {
        let jobs = self.jobs();
        let history = self.history.lock().expect("job history poisoned");
        history
            .iter()
            .filter(|(id, _)| !jobs.contains_key(*id))
            .map(|(_, status)| status.clone())
            .chain(jobs.values().map(Job::status))
            .collect()
    }

    pub(crate) fn subscribe(&self, id: &JobId) -> Option<watch::Receiver<u64>> {
        self.with_job(id, |job| job.updates.subscribe())
    }

    /// Takes over the records of earlier leaders. A job that was still running when its
    /// coordinator stopped cannot be followed (its tasks reported to a dead process): it is
    /// failed, and its record says why.
    pub(crate) fn restore(&self, records: Vec<JobStatus>) {
        let mut history = self.history.lock().expect("job history poisoned");
        for mut status in records {
            if !status.is_finished() {
                status.state = JobState::Failed;
                status.failure = Some(JobFailure {
                    message: "the coordinator stopped while the job was running; submit it again"
                        .to_string(),
                    code: tonic::Code::Unavailable,
                });
                let _ = self.records.send(status.clone());
            }
            history.insert(status.job_id.clone(), status);
        }
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
        let mut job = Job::new(
            id.clone(),
            sql,
            WorkerSettings::default(),
            Vec::new(),
            schema,
        );
        job.inline_result = inline_result;
        self.end(&mut job, JobState::Succeeded, None);
        self.jobs().insert(id, job);
    }

    pub(crate) fn start(
        self: &Arc<Self>,
        id: JobId,
        sql: String,
        settings: WorkerSettings,
        plan: DistributedPlan,
        rules: &Rules,
        awaits_finalizer: bool,
    ) {
        let schema = plan.final_stage().plan.input().schema();
        for stage in &plan.stages {
            tracing::debug!(job_id = %id, stage_id = %stage.id, tasks = stage.task_count(), plan = %displayable(stage.plan.as_ref()).indent(false), "stage planned");
        }
        let stages = plan
            .stages
            .into_iter()
            .map(|stage| StageRun::new(stage, rules.final_gather_max_groups))
            .collect();
        let mut job = Job::new(id.clone(), sql, settings, stages, schema);
        job.state = JobState::Running;
        job.max_task_failures = self.limits.task_attempts.max(1);
        job.result_compression = rules.compression;
        job.awaits_finalizer = awaits_finalizer;
        let _ = self.records.send(job.status());
        self.jobs().insert(id.clone(), job);
        tokio::spawn(self.clone().time_out(id.clone(), self.limits.timeout));
        self.schedule(&id);
    }

    /// Starts a job that succeeds only once `finalizer` has run after its stages are done;
    /// the job ends with the finalizer's outcome (which may be the answer itself).
    pub(crate) fn start_finalized<F, Fut>(
        self: &Arc<Self>,
        id: JobId,
        sql: String,
        settings: WorkerSettings,
        plan: DistributedPlan,
        rules: &Rules,
        finalizer: F,
    ) where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<FinalAnswer, CoordinatorError>> + Send + 'static,
    {
        self.start(id.clone(), sql, settings, plan, rules, true);
        let Some(mut updates) = self.subscribe(&id) else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match this.with_job(&id, |j| (j.stages_done(), j.is_finished())) {
                    Some((_, true)) | None => return,
                    Some((true, false)) => break,
                    Some((false, false)) => {}
                }
                if updates.changed().await.is_err() {
                    return;
                }
            }
            let outcome = finalizer().await;
            this.finalize(&id, outcome);
        });
    }

    /// Notes what the naive plan of a job's query would shuffle (EXPLAIN ANALYZE), for its
    /// status, its record and the web UI.
    pub(crate) fn compare_with_naive(&self, id: &JobId, naive: NaivePlan) {
        let mut jobs = self.jobs();
        if let Some(job) = jobs.get_mut(id) {
            job.naive = Some(naive);
            let _ = self.records.send(job.status());
        }
    }

    /// Resolves when the job has ended (at once for an unknown job): whether it succeeded.
    pub(crate) async fn finished(&self, id: &JobId) -> bool {
        let Some(mut updates) = self.subscribe(id) else {
            return false;
        };
        loop {
            match self.with_job(id, |j| (j.is_finished(), j.state)) {
                Some((true, state)) => return state == JobState::Succeeded,
                None => return false,
                Some((false, _)) => {}
            }
            if updates.changed().await.is_err() {
                return self
                    .with_job(id, |j| j.state == JobState::Succeeded)
                    .unwrap_or(false);
            }
        }
    }

    /// The one place a job ends: its final state, its waiters woken, its record written, and
    /// its spool freed (at once when it failed, after the result TTL when it succeeded: the
    /// client still has to fetch the answer).
    fn end(&self, job: &mut Job, state: JobState, error: Option<JobError>) {
        if job.is_finished() {
            return;
        }
        job.finish(state, error);
        match &job.error {
            None => {
                tracing::info!(job_id = %job.id, elapsed_ms = ?job.elapsed.map(|d| d.as_millis()), "job succeeded")
            }
            // The client reports a query's own failure; the log warns of the cluster's.
            Some(error) if error.is_the_jobs_own() => {
                tracing::info!(job_id = %job.id, state = ?state, %error, "job ended")
            }
            Some(error) => {
                tracing::warn!(job_id = %job.id, state = ?state, %error, "job ended")
            }
        }
        job.notify();
        let _ = self.records.send(job.status());
        let workers = job.workers_involved();
        if workers.is_empty() {
            return;
        }
        let delay = if state == JobState::Succeeded {
            self.result_ttl
        } else {
            Duration::ZERO
        };
        let job_id = job.id.clone();
        let transport = self.transport.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for worker in workers {
                if let Err(error) = transport.drop_job(&worker, &job_id).await {
                    tracing::debug!(job_id = %job_id, worker_id = %worker.id, %error, "could not drop job spool");
                }
            }
        });
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
        if let Some(job) = self.jobs().get_mut(&id) {
            self.end(
                job,
                JobState::Failed,
                Some(JobError::TimedOut { after: limit }),
            );
        }
    }

    /// Starts what is ready, places what waits, and sends the RunTask calls.
    fn schedule(self: &Arc<Self>, id: &JobId) {
        let workers = self.workers.alive();
        let dispatches = {
            let mut jobs = self.jobs();
            let Some(job) = jobs.get_mut(id) else { return };
            if job.is_finished() {
                return;
            }
            match job.advance(&workers) {
                Ok(dispatches) => {
                    if job.stages_done() && !job.awaits_finalizer {
                        self.end(job, JobState::Succeeded, None);
                    }
                    job.notify();
                    dispatches
                }
                Err(error) => {
                    self.end(job, JobState::Failed, Some(error));
                    Vec::new()
                }
            }
        };
        for Dispatch { worker, assignment } in dispatches {
            let manager = self.clone();
            tokio::spawn(async move {
                let task = assignment.task.clone();
                if let Err(error) = manager.transport.run_task(&worker, assignment).await {
                    // A worker that does not answer may be dead: the task runs elsewhere.
                    manager.report(TaskReport {
                        task,
                        worker: worker.id.clone(),
                        outcome: TaskOutcome::Failed {
                            kind: error.kind,
                            message: error.message,
                        },
                        reads: Vec::new(),
                        partial_input_rows: None,
                        spilled_bytes: 0,
                        malformed_records: 0,
                        elapsed: Duration::ZERO,
                    });
                }
            });
        }
    }

    pub(crate) fn report(self: &Arc<Self>, report: TaskReport) {
        let job_id = report.task.job_id.clone();
        let reader = report.worker.clone();
        let outcome = {
            let mut jobs = self.jobs();
            let Some(job) = jobs.get_mut(&job_id) else {
                return;
            };
            let outcome = job.apply_report(report);
            if let ReportOutcome::Fail(error) = &outcome {
                self.end(job, JobState::Failed, Some(error.clone()));
            }
            job.notify();
            outcome
        };
        match outcome {
            ReportOutcome::Nothing | ReportOutcome::Fail(_) => {}
            ReportOutcome::StageDone => self.schedule(&job_id),
            ReportOutcome::Retry {
                failures,
                fetch_failed_from,
            } => {
                let fetch_failure = fetch_failed_from.map(|source| (reader, source));
                tokio::spawn(self.clone().retry(job_id, failures, fetch_failure));
            }
        }
    }

    /// Before a failed task runs again: the workers of the job that no longer answer are
    /// lost (their tasks and spooled output are made again elsewhere); a failure to fetch
    /// from a worker that does answer may show a cut between workers (see exclusion.rs);
    /// then, after a pause that grows with the failures, the waiting tasks are sent out.
    async fn retry(
        self: Arc<Self>,
        job_id: JobId,
        failures: u32,
        fetch_failure: Option<(WorkerId, String)>,
    ) {
        let involved = self
            .with_job(&job_id, Job::workers_involved)
            .unwrap_or_default();
        let probes = involved.into_iter().map(|worker| {
            let transport = self.transport.clone();
            async move {
                let ping = transport.ping(&worker);
                let answered = matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(())));
                (worker, answered)
            }
        });
        let mut answering = Vec::new();
        for (worker, answered) in futures::future::join_all(probes).await {
            if answered {
                answering.push(worker);
            } else {
                tracing::warn!(job_id = %job_id, worker_id = %worker.id, endpoint = %worker.endpoint, "worker does not answer; its work is lost");
                self.workers.down(&worker.id);
                self.worker_lost(&worker.id);
            }
        }
        if let Some((reader, endpoint)) = fetch_failure {
            let source = answering.iter().find(|w| w.endpoint == endpoint);
            if let Some(source) = source {
                self.note_fetch_failure(&job_id, &reader, &source.id);
            }
        }
        tokio::time::sleep(RETRY_PAUSE * failures).await;
        self.schedule(&job_id);
    }

    /// Ends a job whose stages are done and whose finalizer has run; the finalizer may have
    /// made the answer itself.
    pub(crate) fn finalize(&self, id: &JobId, outcome: Result<FinalAnswer, CoordinatorError>) {
        let mut jobs = self.jobs();
        let Some(job) = jobs.get_mut(id) else { return };
        match outcome {
            Ok(answer) => {
                if let Some((schema, bytes)) = answer {
                    job.result_schema = schema;
                    job.inline_result = bytes;
                }
                self.end(job, JobState::Succeeded, None);
            }
            Err(error) => {
                let status = tonic::Status::from(error);
                let error = JobError::Finalize {
                    message: status.message().to_string(),
                    code: status.code(),
                };
                self.end(job, JobState::Failed, Some(error));
            }
        }
    }

    pub(crate) fn cancel(&self, id: &JobId) -> Option<JobState> {
        let mut jobs = self.jobs();
        let job = jobs.get_mut(id)?;
        self.end(job, JobState::Cancelled, Some(JobError::Cancelled));
        Some(job.state)
    }

    /// Fails every running job, e.g. when this coordinator stops leading.
    pub(crate) fn fail_all(&self, error: JobError) {
        for job in self.jobs().values_mut() {
            self.end(job, JobState::Failed, Some(error.clone()));
        }
    }

    /// `reader` could not fetch from `source` though both answer: once one of them is to
    /// blame, the job stops using it.
    fn note_fetch_failure(self: &Arc<Self>, job_id: &JobId, reader: &WorkerId, source: &WorkerId) {
        let cancels = {
            let mut jobs = self.jobs();
            let Some(job) = jobs.get_mut(job_id) else {
                return;
            };
            if job.is_finished() {
                return;
            }
            let Some(blamed) = job.note_fetch_failure(reader, source) else {
                return;
            };
            tracing::warn!(job_id = %job_id, worker_id = %blamed, "other workers cannot fetch from this worker, or it from them: the job stops using it");
            let cancels = job.exclude(&blamed);
            job.notify();
            cancels
        };
        for (holder, task) in cancels {
            let transport = self.transport.clone();
            tokio::spawn(async move {
                let _ = transport.cancel_task(&holder, &task).await;
            });
        }
    }

    /// A worker died: in every running job, what it was running or held that is still
    /// needed runs again on the live workers (see recovery.rs).
    pub(crate) fn worker_lost(self: &Arc<Self>, worker: &WorkerId) {
        let live = self.workers.alive();
        let mut affected = Vec::new();
        let mut cancels = Vec::new();
        {
            let mut jobs = self.jobs();
            for job in jobs.values_mut().filter(|job| !job.is_finished()) {
                let Some(stale) = job.lose_worker(worker) else {
                    continue;
                };
                cancels.extend(stale);
                if live.is_empty() {
                    let error = JobError::AllWorkersLost {
                        last: worker.clone(),
                    };
                    self.end(job, JobState::Failed, Some(error));
                }
                job.notify();
                affected.push(job.id.clone());
            }
        }
        for (holder, task) in cancels {
            let transport = self.transport.clone();
            tokio::spawn(async move {
                let _ = transport.cancel_task(&holder, &task).await;
            });
        }
        for job in affected {
            self.schedule(&job);
        }
    }
}
