//! Moving a job forward: every stage whose inputs are complete starts (its plan settled by
//! `launch.rs`), and every task not yet running gets a worker (`placement.rs`). The result is
//! the RunTask calls to make once the job table is unlocked.

use super::error::JobError;
use super::launch::launch_stage;
use tally_common::job_status::{StageState, TaskState};

use super::model::Job;
use super::placement::place_task;
use super::transport::TaskAssignment;
use super::workers::WorkerRef;

/// A RunTask call to make.
pub(crate) struct Dispatch {
    pub worker: WorkerRef,
    pub assignment: TaskAssignment,
}

impl Job {
    /// Starts what is ready and places what waits, among the live `workers`.
    pub(super) fn advance(&mut self, workers: &[WorkerRef]) -> Result<Vec<Dispatch>, JobError> {
        self.start_ready_stages()?;
        let usable = self.usable_workers(workers);
        self.place_waiting_tasks(&usable)
    }

    fn start_ready_stages(&mut self) -> Result<(), JobError> {
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
                return Ok(());
            }
            for index in ready {
                let launch = launch_stage(&self.id, index, &self.stages)?;
                self.stages[index].start(launch);
            }
        }
    }

    fn place_waiting_tasks(&mut self, workers: &[WorkerRef]) -> Result<Vec<Dispatch>, JobError> {
        let mut dispatches = Vec::new();
        for stage in &mut self.stages {
            if stage.state != StageState::Running {
                continue;
            }
            for partition in 0..stage.tasks.len() {
                let task = &stage.tasks[partition];
                if matches!(task.state, TaskState::Running | TaskState::Succeeded) {
                    continue;
                }
                let worker = place_task(stage, partition, task, workers)?;
                let attempt = task.attempt;
                stage.tasks[partition].dispatch(worker.clone());
                dispatches.push(Dispatch {
                    worker,
                    assignment: TaskAssignment {
                        task: stage.task_key(&self.id, partition, attempt),
                        plan: stage.launched_bytes.clone(),
                        settings: self.settings.clone(),
                    },
                });
            }
        }
        Ok(dispatches)
    }
}
