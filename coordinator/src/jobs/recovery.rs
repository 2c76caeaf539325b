//! What a job loses with a worker, and what runs again. Shuffles are blocking: a stage's
//! output is spooled on the workers that ran its tasks until the job ends. When one dies:
//! - its running tasks, and its finished tasks whose output a stage still to finish needs
//!   (or the answer, for the last stage), run again elsewhere under a new attempt number;
//!   nothing else of that stage runs again;
//! - a stage that was reading output now lost starts over once that output is made again
//!   (its plan names where every input piece is), and so, in turn, do its own readers.
//!
//! Tasks on live workers of a stage that starts over are cancelled; reports of old attempts
//! are ignored.

use std::collections::BTreeSet;

use tally_common::ids::{TaskKey, WorkerId};

use tally_common::job_status::{StageState, TaskState};

use super::model::Job;
use super::workers::WorkerRef;

impl Job {
    /// Resets what `lost` held or ran. None when the job had nothing there; otherwise the
    /// stale attempts on live workers to cancel.
    pub(super) fn lose_worker(&mut self, lost: &WorkerId) -> Option<Vec<(WorkerRef, TaskKey)>> {
        let stage_count = self.stages.len();
        let readers: Vec<Vec<usize>> = (0..stage_count)
            .map(|producer| {
                (0..stage_count)
                    .filter(|&reader| {
                        self.stages[reader]
                            .plan
                            .inputs
                            .iter()
                            .any(|input| input.0 as usize == producer + 1)
                    })
                    .collect()
            })
            .collect();

        // Tasks whose work died with the worker. A stage that runs again needs its inputs, so
        // repeat until nothing more is needed.
        let mut lost_output = BTreeSet::new();
        loop {
            let mut changed = false;
            for (index, stage_readers) in readers.iter().enumerate() {
                let needed = stage_readers.is_empty()
                    || stage_readers
                        .iter()
                        .any(|&reader| self.stages[reader].state != StageState::Succeeded);
                let stage = &mut self.stages[index];
                if !matches!(stage.state, StageState::Running | StageState::Succeeded) {
                    continue;
                }
                let mut reset = false;
                for task in &mut stage.tasks {
                    let lost_work =
                        task.is_running() || (task.state == TaskState::Succeeded && needed);
                    if task.runs_on(lost) && lost_work {
                        task.rerun();
                        reset = true;
                    }
                }
                if reset {
                    stage.resume();
                    lost_output.insert(index);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if lost_output.is_empty() {
            return None;
        }
        tracing::warn!(job_id = %self.id, worker_id = %lost, stages = ?lost_output.iter().map(|i| i + 1).collect::<Vec<_>>(), "worker lost; its tasks run again");

        // Stages reading lost output start over, once it is whole again.
        let mut stale = Vec::new();
        let mut restarted = BTreeSet::new();
        loop {
            let restart: Vec<usize> = (0..stage_count)
                .filter(|&index| {
                    self.stages[index].state == StageState::Running
                        && !restarted.contains(&index)
                        && self.stages[index]
                            .plan
                            .inputs
                            .iter()
                            .any(|input| lost_output.contains(&(input.0 as usize - 1)))
                })
                .collect();
            if restart.is_empty() {
                break;
            }
            for index in restart {
                let stage = &mut self.stages[index];
                stale.extend(stage.start_over(&self.id));
                tracing::info!(job_id = %self.id, stage_id = %stage.id(), "stage starts over: its input was lost");
                restarted.insert(index);
                lost_output.insert(index);
            }
        }
        Some(stale)
    }
}
