//! The job state machine through the in-process transport: the test plays the workers,
//! answering RunTask calls with reports in the order it chooses, so report ordering, stale
//! attempts, lost workers, cancellation and timeouts are checked without sockets or timing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tally_common::failure::FailureKind;
use tally_common::ids::{JobId, StageId, TaskKey, WorkerId};
use tally_meta::WorkerRecord;
use tokio::sync::mpsc;
use tonic::Code;

use super::in_process::{InProcessTransport, WorkerCall};
use super::transport::TaskAssignment;
use super::workers::{WorkerRef, WorkerRegistry};
use super::*;
use crate::planner::plan_job;
use crate::planner::test_support::Tables;
use crate::sql::session::{JobSettings, job_session};
use tally_common::job_status::{JobState, JobStatus, StageState, StageStatus, TaskState};

/// A query of two stages on two files: partial aggregates, and a final aggregate per hash
/// partition whose pieces are the answer.
const QUERY: &str = "SELECT value % 5 AS k, count(*) AS c FROM t GROUP BY value % 5";
/// The same, sorted: a third stage merges the sorted partitions into one task.
const SORTED_QUERY: &str =
    "SELECT value % 5 AS k, count(*) AS c FROM t GROUP BY value % 5 ORDER BY k";
const NAIVE: &[(&str, &str)] = &[("tally.planner", "naive")];

struct Cluster {
    manager: Arc<JobManager>,
    workers: Arc<WorkerRegistry>,
    transport: Arc<InProcessTransport>,
    calls: mpsc::UnboundedReceiver<WorkerCall>,
    tables: Tables,
    /// `tally.split_bytes` for one task per file of `t`, the shape these tests drive.
    split_per_file: String,
    /// Calls received while waiting for others, still to be looked at.
    backlog: Vec<WorkerCall>,
}

async fn cluster(workers: usize, limits: JobLimits) -> Cluster {
    let registry = Arc::new(WorkerRegistry::new(Default::default()));
    for n in 1..=workers {
        registry
            .up(&WorkerRecord {
                id: WorkerId::from(format!("w{n}")),
                endpoint: format!("127.0.0.1:{n}"),
                task_slots: 2,
            })
            .unwrap();
    }
    let (transport, calls) = InProcessTransport::new();
    let (records, _) = mpsc::unbounded_channel();
    let manager = JobManager::new(
        registry.clone(),
        transport.clone(),
        records,
        Duration::ZERO,
        limits,
    );
    let tables = Tables::new(
        &[("t", "SELECT value FROM generate_series({lo}, {hi})")],
        2,
        50,
    )
    .await;
    let largest_file = std::fs::read_dir(tables.dir().join("t"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    Cluster {
        manager,
        workers: registry,
        transport,
        calls,
        tables,
        split_per_file: largest_file.to_string(),
        backlog: Vec::new(),
    }
}

fn limits() -> JobLimits {
    JobLimits {
        task_attempts: 4,
        timeout: Duration::from_secs(3600),
    }
}

impl Cluster {
    async fn start(&self, sql: &str, settings: &[(&str, &str)]) -> JobId {
        let one_file = [("tally.split_bytes", self.split_per_file.as_str())];
        let settings = JobSettings(
            one_file
                .iter()
                .chain(settings)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let workers = self.workers.alive().len();
        let session = job_session(&self.tables.ctx, &settings, 2 * workers).unwrap();
        let state = session.ctx.state();
        let logical = state.create_logical_plan(sql).await.unwrap();
        let physical = state.create_physical_plan(&logical).await.unwrap();
        let id = JobId::new_random();
        let plan = plan_job(&id, physical, &session.rules, 2 * workers, workers).unwrap();
        self.manager.start(
            id.clone(),
            sql.to_string(),
            Arc::new(session.worker_settings.0),
            plan,
            &session.rules,
            false,
        );
        id
    }

    async fn next_call(&mut self) -> WorkerCall {
        if !self.backlog.is_empty() {
            return self.backlog.remove(0);
        }
        tokio::time::timeout(Duration::from_secs(10), self.calls.recv())
            .await
            .expect("a call within 10 s")
            .expect("the transport is open")
    }

    /// The next RunTask call; other calls wait in the backlog.
    async fn next_run(&mut self) -> (WorkerRef, TaskAssignment) {
        let mut skipped = Vec::new();
        let run = loop {
            match self.next_call().await {
                WorkerCall::Run(worker, task) => break (worker, task),
                other => skipped.push(other),
            }
        };
        self.backlog.splice(0..0, skipped);
        run
    }

    /// Every RunTask call already made, in order.
    async fn runs_so_far(&mut self) -> Vec<(WorkerRef, TaskAssignment)> {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut runs = Vec::new();
        let mut others = Vec::new();
        for call in self.backlog.drain(..) {
            match call {
                WorkerCall::Run(w, t) => runs.push((w, t)),
                other => others.push(other),
            }
        }
        while let Ok(call) = self.calls.try_recv() {
            match call {
                WorkerCall::Run(w, t) => runs.push((w, t)),
                other => others.push(other),
            }
        }
        self.backlog = others;
        runs
    }

    /// Reports the task succeeded, with one spooled row for each of `partitions` outputs.
    fn succeed(&self, worker: &WorkerRef, task: &TaskKey, partitions: u32) {
        self.manager.report(TaskReport {
            task: task.clone(),
            worker: worker.id.clone(),
            outcome: TaskOutcome::Succeeded {
                outputs: (0..partitions)
                    .map(|partition| TaskOutput {
                        partition,
                        rows: 1,
                        bytes: 10,
                        ticket_mac: Vec::new(),
                    })
                    .collect(),
            },
            reads: Vec::new(),
            partial_input_rows: Some(10),
            spilled_bytes: 0,
            malformed_records: 0,
            elapsed: Duration::ZERO,
        });
    }

    fn fail(&self, worker: &WorkerRef, task: &TaskKey, kind: FailureKind) {
        self.manager.report(TaskReport {
            task: task.clone(),
            worker: worker.id.clone(),
            outcome: TaskOutcome::Failed {
                kind,
                message: format!("task {task} failed"),
            },
            reads: Vec::new(),
            partial_input_rows: None,
            spilled_bytes: 0,
            malformed_records: 0,
            elapsed: Duration::ZERO,
        });
    }

    /// Answers every RunTask call with success until the job ends.
    async fn run_to_the_end(&mut self, job: &JobId) -> JobStatus {
        loop {
            let summary = self.summary(job);
            if summary.is_finished() {
                return summary;
            }
            let (worker, task) = self.next_run().await;
            self.succeed(&worker, &task.task, 8);
        }
    }

    fn summary(&self, job: &JobId) -> JobStatus {
        self.manager.status(job).expect("the job exists")
    }

    fn kill(&self, worker: &WorkerId) {
        self.transport.kill(worker);
        self.workers.down(worker);
        self.manager.worker_lost(worker);
    }

    /// Workers sent DropJob for `job` so far.
    async fn dropped_on(&mut self, job: &JobId) -> BTreeSet<WorkerId> {
        self.runs_so_far().await;
        self.backlog
            .iter()
            .filter_map(|call| match call {
                WorkerCall::DropJob(worker, id) if id == job => Some(worker.id.clone()),
                _ => None,
            })
            .collect()
    }
}

fn stage_state(summary: &JobStatus, stage: u32) -> StageState {
    summary.stages[stage as usize - 1].state
}

#[tokio::test]
async fn stages_run_in_order_and_the_job_succeeds() {
    let mut cluster = cluster(3, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    let summary = cluster.summary(&job);
    assert!(summary.stages.len() >= 2, "{:?}", summary.stages);
    let first = cluster.runs_so_far().await;
    assert!(!first.is_empty());
    assert!(
        first.iter().all(|(_, t)| t.task.stage_id == StageId(1)),
        "only the first stage runs before it has finished"
    );
    for (worker, task) in &first {
        cluster.succeed(worker, &task.task, 8);
    }
    let summary = cluster.run_to_the_end(&job).await;
    assert_eq!(summary.state, JobState::Succeeded);
    assert!(summary.failure.is_none());
    assert!(
        summary
            .stages
            .iter()
            .all(|s| s.state == StageState::Succeeded)
    );
    assert!(
        !summary.results.is_empty(),
        "the answer's pieces are listed"
    );
}

#[tokio::test]
async fn reports_of_stale_or_repeated_attempts_change_nothing() {
    let mut cluster = cluster(2, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    let runs = cluster.runs_so_far().await;
    let (worker, task) = runs[0].clone();

    // A report of an attempt that was never sent is ignored.
    let mut future = task.task.clone();
    future.attempt += 5;
    cluster.succeed(&worker, &future, 8);
    let stage = &cluster.summary(&job).stages[0];
    assert_eq!(stage.tasks_succeeded, 0);

    // A retryable failure runs the task again under the next attempt, elsewhere.
    cluster.fail(&worker, &task.task, FailureKind::LostInput);
    let (retry_worker, retry) = cluster.next_run().await;
    let pinged: BTreeSet<WorkerId> = cluster
        .backlog
        .iter()
        .filter_map(|call| match call {
            WorkerCall::Ping(worker) => Some(worker.id.clone()),
            _ => None,
        })
        .collect();
    assert!(
        pinged.contains(&runs[1].0.id),
        "before a retry the workers holding the job's work are asked whether they live"
    );
    assert_eq!(retry.task.partition, task.task.partition);
    assert_eq!(retry.task.attempt, task.task.attempt + 1);
    assert_ne!(
        retry_worker.id, worker.id,
        "the next attempt avoids the worker that failed"
    );

    // The late success of the old attempt changes nothing; the new one counts once.
    cluster.succeed(&worker, &task.task, 8);
    assert_eq!(cluster.summary(&job).stages[0].tasks_succeeded, 0);
    cluster.succeed(&retry_worker, &retry.task, 8);
    cluster.succeed(&retry_worker, &retry.task, 8);
    let stage = &cluster.summary(&job).stages[0];
    assert_eq!(stage.tasks_succeeded, 1);
    assert_eq!(stage.tasks[task.task.partition as usize].attempt, 1);

    for (worker, task) in &runs[1..] {
        cluster.succeed(worker, &task.task, 8);
    }
    assert_eq!(
        cluster.run_to_the_end(&job).await.state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn each_task_shows_its_current_attempts_time_spill_and_output() {
    let mut cluster = cluster(2, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    let runs = cluster.runs_so_far().await;
    assert!(runs.len() >= 2, "{runs:?}");
    let task_of = |cluster: &Cluster, partition: u32| {
        cluster.summary(&job).stages[0].tasks[partition as usize].clone()
    };
    let (worker, task) = runs[0].clone();
    let partition = task.task.partition;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let running = task_of(&cluster, partition);
    assert_eq!(running.state, TaskState::Running);
    assert_eq!(running.worker_id.as_ref(), Some(&worker.id));
    assert!(running.elapsed >= Duration::from_millis(30), "{running:?}");
    assert_eq!((running.spilled_bytes, running.output_rows), (0, 0));

    let report = |task: &TaskKey, worker: &WorkerRef, outcome, spilled_bytes, ms| TaskReport {
        task: task.clone(),
        worker: worker.id.clone(),
        outcome,
        reads: Vec::new(),
        partial_input_rows: None,
        spilled_bytes,
        malformed_records: 0,
        elapsed: Duration::from_millis(ms),
    };
    let outputs = [(0, 5, 100), (1, 2, 40)]
        .map(|(partition, rows, bytes)| TaskOutput {
            partition,
            rows,
            bytes,
            ticket_mac: Vec::new(),
        })
        .to_vec();
    cluster.manager.report(report(
        &task.task,
        &worker,
        TaskOutcome::Succeeded { outputs },
        4096,
        1234,
    ));
    let done = task_of(&cluster, partition);
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.elapsed, Duration::from_millis(1234));
    assert_eq!(
        (done.spilled_bytes, done.output_rows, done.output_bytes),
        (4096, 7, 140)
    );

    // A failed attempt that runs again: the row shows the new attempt from zero, while the
    // stage keeps what every attempt spilled.
    let (other_worker, other) = runs[1].clone();
    cluster.manager.report(report(
        &other.task,
        &other_worker,
        TaskOutcome::Failed {
            kind: FailureKind::LostInput,
            message: "lost".to_string(),
        },
        999,
        50,
    ));
    let again = task_of(&cluster, other.task.partition);
    assert_eq!(again.attempt, other.task.attempt + 1);
    assert_eq!(again.spilled_bytes, 0, "{again:?}");
    assert!(again.elapsed < Duration::from_millis(50), "{again:?}");
    assert_eq!(cluster.summary(&job).stages[0].spilled_bytes, 4096 + 999);
}

#[tokio::test]
async fn an_error_in_the_query_fails_the_job_at_once_and_frees_its_spool() {
    let mut cluster = cluster(2, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    let runs = cluster.runs_so_far().await;
    let (worker, task) = &runs[0];
    cluster.fail(worker, &task.task, FailureKind::Query);
    let summary = cluster.summary(&job);
    assert_eq!(summary.state, JobState::Failed);
    let failure = summary.failure.unwrap();
    assert_eq!(failure.code, Code::InvalidArgument);
    assert!(failure.message.contains("failed"), "{}", failure.message);
    assert_eq!(stage_state(&cluster.summary(&job), 1), StageState::Failed);
    assert!(cluster.runs_so_far().await.is_empty(), "no task runs again");
    assert!(!cluster.dropped_on(&job).await.is_empty());
    // Reports of its other tasks change nothing now.
    cluster.succeed(&runs[1].0, &runs[1].1.task, 8);
    assert_eq!(cluster.summary(&job).state, JobState::Failed);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_budget() {
    let mut cluster = cluster(2, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    let (mut worker, mut task) = cluster.next_run().await;
    let partition = task.task.partition;
    for _ in 0..3 {
        cluster.fail(&worker, &task.task, FailureKind::Io);
        loop {
            let (w, t) = cluster.next_run().await;
            if t.task.partition == partition && t.task.stage_id == StageId(1) {
                (worker, task) = (w, t);
                break;
            }
        }
    }
    cluster.fail(&worker, &task.task, FailureKind::Io);
    let summary = cluster.summary(&job);
    assert_eq!(summary.state, JobState::Failed);
    let message = summary.failure.unwrap().message;
    assert!(message.contains("failed 4 times"), "{message}");
}

#[tokio::test]
async fn a_worker_lost_while_its_task_runs_costs_that_task() {
    let mut cluster = cluster(3, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    let runs = cluster.runs_so_far().await;
    let (lost, lost_task) = runs[0].clone();
    for (worker, task) in &runs[1..] {
        cluster.succeed(worker, &task.task, 8);
    }
    cluster.kill(&lost.id);
    let (worker, rerun) = cluster.next_run().await;
    assert_eq!(rerun.task.partition, lost_task.task.partition);
    assert_eq!(rerun.task.attempt, lost_task.task.attempt + 1);
    assert_ne!(worker.id, lost.id);
    cluster.succeed(&worker, &rerun.task, 8);
    let summary = cluster.run_to_the_end(&job).await;
    assert_eq!(summary.state, JobState::Succeeded);
    let attempts: Vec<u32> = summary.stages[0].tasks.iter().map(|t| t.attempt).collect();
    assert_eq!(
        attempts.iter().filter(|a| **a > 0).count(),
        1,
        "only the lost task ran again: {attempts:?}"
    );
}

#[tokio::test]
async fn a_worker_lost_after_its_stage_finished_remakes_its_output_and_restarts_the_reader() {
    let mut cluster = cluster(3, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    let first = cluster.runs_so_far().await;
    for (worker, task) in &first {
        cluster.succeed(worker, &task.task, 8);
    }
    // Stage 2 runs and reads stage 1's output; a worker holding some of it is lost.
    let second = cluster.runs_so_far().await;
    assert!(second.iter().all(|(_, t)| t.task.stage_id == StageId(2)));
    let lost = first[0].0.clone();
    let survivors: Vec<_> = second
        .iter()
        .filter(|(w, _)| w.id != lost.id)
        .cloned()
        .collect();
    cluster.kill(&lost.id);
    let summary = cluster.summary(&job);
    assert_eq!(stage_state(&summary, 1), StageState::Running);
    assert_eq!(
        stage_state(&summary, 2),
        StageState::Pending,
        "its reader starts over"
    );

    // Stage 1 runs again what the lost worker held; the stale attempts of stage 2 on live
    // workers are cancelled.
    let reruns = cluster.runs_so_far().await;
    assert!(!reruns.is_empty());
    assert!(
        reruns
            .iter()
            .all(|(w, t)| t.task.stage_id == StageId(1) && w.id != lost.id)
    );
    let cancelled: Vec<(WorkerId, TaskKey)> = cluster
        .backlog
        .iter()
        .filter_map(|call| match call {
            WorkerCall::Cancel(worker, task) => Some((worker.id.clone(), task.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled.len(), survivors.len());
    for (worker, task) in &cancelled {
        assert_ne!(*worker, lost.id);
        assert_eq!(task.stage_id, StageId(2));
    }
    // Their late reports are ignored.
    for (worker, task) in &survivors {
        cluster.succeed(worker, &task.task, 8);
    }
    assert_eq!(stage_state(&cluster.summary(&job), 2), StageState::Pending);

    for (worker, task) in &reruns {
        cluster.succeed(worker, &task.task, 8);
    }
    let summary = cluster.run_to_the_end(&job).await;
    assert_eq!(summary.state, JobState::Succeeded);
    assert!(summary.stages[1].tasks.iter().all(|t| t.attempt >= 1));
    assert!(
        summary
            .stages
            .iter()
            .flat_map(|s| &s.tasks)
            .all(|t| t.worker_id.as_ref() != Some(&lost.id))
    );
}

#[tokio::test]
async fn a_lost_worker_costs_only_the_output_still_needed() {
    let mut cluster = cluster(3, limits()).await;
    let job = cluster.start(SORTED_QUERY, NAIVE).await;
    assert_eq!(cluster.summary(&job).stages.len(), 3);
    let final_stage = StageId(cluster.summary(&job).stages.len() as u32);
    let (lost, last) = loop {
        let (worker, task) = cluster.next_run().await;
        if task.task.stage_id == final_stage {
            break (worker, task);
        }
        cluster.succeed(&worker, &task.task, 8);
    };
    let before = cluster.summary(&job);
    cluster.kill(&lost.id);
    let after = cluster.summary(&job);
    let ran_on_lost = |stage: &StageStatus| {
        stage
            .tasks
            .iter()
            .any(|t| t.worker_id.as_ref() == Some(&lost.id))
    };
    // The final stage's input is still needed: what the lost worker held of it runs again.
    // A stage whose readers have all finished, and none of whose readers run again, is not.
    let first = &before.stages[0];
    assert!(
        !ran_on_lost(first),
        "placement changed: the test needs the first stage's tasks on other workers"
    );
    assert_eq!(after.stages[0].state, StageState::Succeeded);
    assert!(after.stages[0].tasks.iter().all(|t| t.attempt == 0));
    let feeding = &after.stages[final_stage.0 as usize - 2];
    for (old, new) in before.stages[final_stage.0 as usize - 2]
        .tasks
        .iter()
        .zip(&feeding.tasks)
    {
        let expected = u32::from(old.worker_id.as_ref() == Some(&lost.id));
        assert_eq!(
            new.attempt, expected,
            "task {} of stage {}",
            new.partition, feeding.stage_id
        );
    }
    // The final task's late report from the dead worker changes nothing.
    cluster.succeed(&lost, &last.task, 1);
    assert!(!cluster.summary(&job).is_finished());
    assert_eq!(
        cluster.run_to_the_end(&job).await.state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn losing_the_last_worker_fails_the_job_and_says_so() {
    let mut cluster = cluster(1, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    let (worker, _) = cluster.next_run().await;
    cluster.kill(&worker.id);
    let summary = cluster.summary(&job);
    assert_eq!(summary.state, JobState::Failed);
    let failure = summary.failure.unwrap();
    assert_eq!(failure.code, Code::Unavailable, "not the query's fault");
    assert!(
        failure.message.contains("no live workers left"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_job_cancelled_while_its_tasks_launch_ignores_their_reports() {
    let mut cluster = cluster(2, limits()).await;
    let job = cluster.start(QUERY, NAIVE).await;
    assert_eq!(cluster.manager.cancel(&job), Some(JobState::Cancelled));
    let runs = cluster.runs_so_far().await;
    assert!(
        !runs.is_empty(),
        "the RunTask calls were already on their way"
    );
    for (worker, task) in &runs {
        cluster.succeed(worker, &task.task, 8);
    }
    let summary = cluster.summary(&job);
    assert_eq!(summary.state, JobState::Cancelled);
    assert_eq!(summary.failure.unwrap().code, Code::Cancelled);
    assert!(
        summary.stages[0]
            .tasks
            .iter()
            .all(|t| t.state == TaskState::Cancelled)
    );
    let dropped = cluster.dropped_on(&job).await;
    let ran_on: BTreeSet<WorkerId> = runs.iter().map(|(w, _)| w.id.clone()).collect();
    assert_eq!(
        dropped, ran_on,
        "every worker that got a task drops the job"
    );
    assert_eq!(cluster.manager.cancel(&job), Some(JobState::Cancelled));
}

#[tokio::test]
async fn a_job_past_its_timeout_fails_with_deadline_exceeded() {
    let limits = JobLimits {
        task_attempts: 4,
        timeout: Duration::from_millis(300),
    };
    let mut cluster = cluster(2, limits).await;
    let job = cluster.start(QUERY, NAIVE).await;
    cluster.next_run().await;
    assert!(!cluster.summary(&job).is_finished());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let summary = cluster.summary(&job);
    assert_eq!(summary.state, JobState::Failed);
    let failure = summary.failure.unwrap();
    assert_eq!(failure.code, Code::DeadlineExceeded);
    assert!(
        failure.message.contains("timed out after 0 s"),
        "{}",
        failure.message
    );
}
