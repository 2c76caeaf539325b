//! Workers played by a test: every call the scheduler makes arrives on a channel, and the
//! test answers RunTask calls with the reports it chooses, in the order it chooses. A worker
//! marked dead answers no call, as a killed process would not.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tally_common::failure::FailureKind;
use tally_common::ids::{JobId, TaskKey, WorkerId};
use tokio::sync::mpsc;

use super::transport::{CallError, TaskAssignment, WorkerTransport};
use super::workers::WorkerRef;

#[derive(Debug)]
pub(crate) enum WorkerCall {
    Run(WorkerRef, TaskAssignment),
    Cancel(WorkerRef, TaskKey),
    DropJob(WorkerRef, JobId),
    Ping(WorkerRef),
}

pub(crate) struct InProcessTransport {
    calls: mpsc::UnboundedSender<WorkerCall>,
    dead: Mutex<BTreeSet<WorkerId>>,
}

impl InProcessTransport {
    pub(crate) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<WorkerCall>) {
        let (calls, received) = mpsc::unbounded_channel();
        let transport = Arc::new(Self {
            calls,
            dead: Mutex::default(),
        });
        (transport, received)
    }

    /// From now on the worker answers nothing.
    pub(crate) fn kill(&self, worker: &WorkerId) {
        self.dead.lock().unwrap().insert(worker.clone());
    }

    fn deliver(&self, worker: &WorkerRef, call: WorkerCall) -> Result<(), CallError> {
        if self.dead.lock().unwrap().contains(&worker.id) {
            return Err(CallError {
                kind: FailureKind::Unreachable,
                message: format!("worker {} did not answer", worker.id),
            });
        }
        let _ = self.calls.send(call);
        Ok(())
    }
}

#[async_trait]
impl WorkerTransport for InProcessTransport {
    async fn run_task(&self, worker: &WorkerRef, task: TaskAssignment) -> Result<(), CallError> {
        self.deliver(worker, WorkerCall::Run(worker.clone(), task))
    }

    async fn cancel_task(&self, worker: &WorkerRef, task: &TaskKey) -> Result<(), CallError> {
        self.deliver(worker, WorkerCall::Cancel(worker.clone(), task.clone()))
    }

    async fn drop_job(&self, worker: &WorkerRef, job: &JobId) -> Result<(), CallError> {
        self.deliver(worker, WorkerCall::DropJob(worker.clone(), job.clone()))
    }

    async fn ping(&self, worker: &WorkerRef) -> Result<(), CallError> {
        self.deliver(worker, WorkerCall::Ping(worker.clone()))
    }
}
