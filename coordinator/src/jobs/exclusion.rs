//! Workers a job stops using although they answer the coordinator: a network cut between
//! workers leaves each side alive to the coordinator, so no worker is lost, yet a reader on
//! one side never gets the shuffle data of the other and every retry fails the same way.
//! A fetch failure between two workers that both answer blames neither; a worker in fetch
//! failures with two different workers is the one cut off, so the job places no more tasks
//! there and makes what it held again elsewhere (as for a lost worker, see recovery.rs).

use tally_common::ids::{TaskKey, WorkerId};

use super::model::Job;
use super::workers::WorkerRef;

impl Job {
    /// Records that `reader` could not fetch shuffle data from `source`; returns the worker
    /// now to blame, if any.
    pub(super) fn note_fetch_failure(
        &mut self,
        reader: &WorkerId,
        source: &WorkerId,
    ) -> Option<WorkerId> {
        if reader == source {
            return None;
        }
        for (worker, other) in [(reader, source), (source, reader)] {
            self.fetch_failures
                .entry(worker.clone())
                .or_default()
                .insert(other.clone());
        }
        [source, reader]
            .into_iter()
            .find(|worker| {
                !self.excluded.contains(*worker)
                    && self
                        .fetch_failures
                        .get(*worker)
                        .map_or(0, |peers| peers.len())
                        >= 2
            })
            .cloned()
    }

    /// Places no more tasks on `worker`; what it ran or held that is still needed runs again
    /// elsewhere. Returns the stale attempts to cancel.
    pub(super) fn exclude(&mut self, worker: &WorkerId) -> Vec<(WorkerRef, TaskKey)> {
        self.excluded.insert(worker.clone());
        self.lose_worker(worker).unwrap_or_default()
    }

    /// The workers this job places tasks on: the live ones it has not excluded (all of them
    /// if it excluded every one: a cut cannot be worked around then, and retries decide).
    pub(super) fn usable_workers(&self, alive: &[WorkerRef]) -> Vec<WorkerRef> {
        let usable: Vec<WorkerRef> = alive
            .iter()
            .filter(|w| !self.excluded.contains(&w.id))
            .cloned()
            .collect();
        if usable.is_empty() {
            alive.to_vec()
        } else {
            usable
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Schema;
    use tally_common::ids::JobId;

    use super::*;

    fn worker(name: &str) -> WorkerRef {
        WorkerRef {
            id: WorkerId::from(name.to_string()),
            endpoint: format!("{name}:50051"),
        }
    }

    #[test]
    fn the_worker_cut_off_from_two_others_is_blamed_and_no_longer_used() {
        let mut job = Job::new(
            JobId::new_random(),
            "SELECT 1".to_string(),
            Arc::default(),
            Vec::new(),
            Arc::new(Schema::empty()),
        );
        let [w1, w2, w3] = [worker("w1"), worker("w2"), worker("w3")];
        // One failure between two workers that both answer blames neither.
        assert_eq!(job.note_fetch_failure(&w1.id, &w2.id), None);
        assert_eq!(job.note_fetch_failure(&w1.id, &w2.id), None);
        // w2 failed with a second worker: w2 is the one cut off.
        assert_eq!(job.note_fetch_failure(&w2.id, &w3.id), Some(w2.id.clone()));
        job.exclude(&w2.id);
        let alive = [w1.clone(), w2.clone(), w3.clone()];
        assert_eq!(job.usable_workers(&alive), vec![w1.clone(), w3.clone()]);
        // Excluding everyone leaves the retries to decide.
        job.exclude(&w1.id);
        job.exclude(&w3.id);
        assert_eq!(job.usable_workers(&alive).len(), 3);
    }
}
