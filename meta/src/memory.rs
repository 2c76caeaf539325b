//! The embedded default: cluster state in this process. Worker liveness works like etcd's
//! leases (a deadline pushed back by each keep-alive), so the coordinator sees one behaviour.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tally_common::ids::{JobId, WorkerId};
use tokio::sync::{mpsc, watch};

use crate::{Leadership, MetaError, MetaStore, TableRecord, WorkerEvent, WorkerRecord};

/// How often expired workers are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct InMemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    workers: BTreeMap<WorkerId, LiveWorker>,
    watchers: Vec<mpsc::UnboundedSender<WorkerEvent>>,
    sweeping: bool,
    tables: BTreeMap<String, TableRecord>,
    jobs: BTreeMap<JobId, Vec<u8>>,
    leader: Option<String>,
}

struct LiveWorker {
    record: WorkerRecord,
    ttl: Duration,
    deadline: Instant,
}

impl State {
    fn publish(&mut self, event: WorkerEvent) {
        self.watchers.retain(|w| w.send(event.clone()).is_ok());
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.workers.remove(&id);
            tracing::warn!(worker_id = %id, "worker lease expired");
            self.publish(WorkerEvent::Down(id));
        }
    }
}

impl InMemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("meta store poisoned")
    }

    /// Expires workers in the background while anyone watches.
    fn start_sweeper(&self) {
        let state: Weak<Mutex<State>> = Arc::downgrade(&self.state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(state) = state.upgrade() else { return };
                let mut state = state.lock().expect("meta store poisoned");
                state.expire();
                if state.watchers.is_empty() {
                    state.sweeping = false;
                    return;
                }
            }
        });
    }
}

#[async_trait]
impl MetaStore for InMemoryStore {
    async fn register_worker(&self, worker: &WorkerRecord, ttl: Duration) -> Result<(), MetaError> {
        let mut state = self.lock();
        state.workers.insert(
            worker.id.clone(),
            LiveWorker {
                record: worker.clone(),
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        state.publish(WorkerEvent::Up(worker.clone()));
        Ok(())
    }

    async fn keep_worker_alive(&self, id: &WorkerId) -> Result<bool, MetaError> {
        let mut state = self.lock();
        state.expire();
        Ok(match state.workers.get_mut(id) {
            Some(worker) => {
                worker.deadline = Instant::now() + worker.ttl;
                true
            }
            None => false,
        })
    }

    async fn deregister_worker(&self, id: &WorkerId) -> Result<(), MetaError> {
        let mut state = self.lock();
        if state.workers.remove(id).is_some() {
            state.publish(WorkerEvent::Down(id.clone()));
        }
        Ok(())
    }

    async fn watch_workers(&self) -> Result<mpsc::UnboundedReceiver<WorkerEvent>, MetaError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let start_sweeper = {
            let mut state = self.lock();
            for worker in state.workers.values() {
                let _ = tx.send(WorkerEvent::Up(worker.record.clone()));
            }
            state.watchers.push(tx);
            !std::mem::replace(&mut state.sweeping, true)
        };
        if start_sweeper {
            self.start_sweeper();
        }
        Ok(rx)
    }

    async fn put_table(&self, table: &TableRecord) -> Result<(), MetaError> {
        self.lock().tables.insert(table.name.clone(), table.clone());
        Ok(())
    }

    async fn delete_table(&self, name: &str) -> Result<(), MetaError> {
        self.lock().tables.remove(name);
        Ok(())
    }

    async fn tables(&self) -> Result<Vec<TableRecord>, MetaError> {
        Ok(self.lock().tables.values().cloned().collect())
    }

    async fn put_job(&self, id: &JobId, record: Vec<u8>) -> Result<(), MetaError> {
        self.lock().jobs.insert(id.clone(), record);
        Ok(())
    }

    async fn jobs(&self) -> Result<Vec<Vec<u8>>, MetaError> {
        Ok(self.lock().jobs.values().cloned().collect())
    }

    /// One process, one coordinator: it leads at once and for good.
    async fn campaign(&self, endpoint: &str) -> Result<Leadership, MetaError> {
        self.lock().leader = Some(endpoint.to_string());
        let (lost_tx, lost) = watch::channel(false);
        // The sender lives as long as the task; nothing ever sends `true`.
        let keeper = tokio::spawn(async move {
            lost_tx.closed().await;
        });
        Ok(Leadership::new(lost, Some(keeper), None))
    }

    async fn leader(&self) -> Result<Option<String>, MetaError> {
        Ok(self.lock().leader.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str) -> WorkerRecord {
        WorkerRecord {
            id: WorkerId::from(id.to_string()),
            endpoint: format!("127.0.0.1:{}", id.len()),
            task_slots: 2,
        }
    }

    #[tokio::test]
    async fn a_worker_not_kept_alive_goes_down_and_must_register_again() {
        let store = InMemoryStore::default();
        let mut events = store.watch_workers().await.unwrap();
        store
            .register_worker(&worker("w-a"), Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(events.recv().await, Some(WorkerEvent::Up(worker("w-a"))));
        assert!(store.keep_worker_alive(&worker("w-a").id).await.unwrap());
        let down = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .unwrap();
        assert_eq!(down, Some(WorkerEvent::Down(worker("w-a").id)));
        assert!(!store.keep_worker_alive(&worker("w-a").id).await.unwrap());
    }

    #[tokio::test]
    async fn a_new_watch_starts_with_the_live_workers() {
        let store = InMemoryStore::default();
        store
            .register_worker(&worker("w-b"), Duration::from_secs(60))
            .await
            .unwrap();
        let mut events = store.watch_workers().await.unwrap();
        assert_eq!(events.recv().await, Some(WorkerEvent::Up(worker("w-b"))));
        store.deregister_worker(&worker("w-b").id).await.unwrap();
        assert_eq!(
            events.recv().await,
            Some(WorkerEvent::Down(worker("w-b").id))
        );
    }
}
