//! Whether this coordinator leads. Only the leader schedules and answers clients; a standby
//! refuses every call with the leader's address, so a client given several coordinators
//! finds the one that leads.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Status};

use crate::error::CoordinatorError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoleState {
    /// Waiting for leadership; the endpoint of the leader when known.
    Standby {
        leader: Option<String>,
    },
    Leading,
}

#[derive(Clone)]
pub(crate) struct Role(Arc<watch::Sender<RoleState>>);

impl Role {
    pub(crate) fn standby() -> Self {
        Self(Arc::new(
            watch::channel(RoleState::Standby { leader: None }).0,
        ))
    }

    pub(crate) fn is_leading(&self) -> bool {
        *self.0.borrow() == RoleState::Leading
    }

    pub(crate) fn lead(&self) {
        self.0.send_replace(RoleState::Leading);
    }

    /// Records who leads while this one waits.
    pub(crate) fn observe_leader(&self, leader: Option<String>) {
        self.0.send_if_modified(|state| match state {
            RoleState::Standby { leader: known } if *known != leader => {
                *known = leader;
                true
            }
            _ => false,
        });
    }

    pub(crate) async fn until_leading(&self) {
        let _ = self
            .0
            .subscribe()
            .wait_for(|state| *state == RoleState::Leading)
            .await;
    }

    /// The gate in front of the gRPC service.
    pub(crate) fn check<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        match &*self.0.borrow() {
            RoleState::Leading => Ok(request),
            RoleState::Standby { leader } => Err(CoordinatorError::Standby {
                leader: leader.clone(),
            }
            .into()),
        }
    }
}
