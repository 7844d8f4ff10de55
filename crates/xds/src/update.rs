//! What streams follow: each snapshot with the push request that says what it changed.

use isthmus_model::{MeshSnapshot, PushRequest};
use std::sync::Arc;
use std::time::Instant;

/// What streams follow: a snapshot and the push request that says what it changed from the
/// one before (as [`isthmus_model::MeshBuilder::apply`] makes them).
#[derive(Debug, Clone)]
pub struct MeshUpdate {
    /// The mesh at this version.
    pub snapshot: Arc<MeshSnapshot>,
    /// What changed from the version before.
    pub push: Arc<PushRequest>,
    /// When the control plane saw the change that made this version (the start of
    /// `pilot_proxy_convergence_time`).
    pub changed_at: Instant,
}

impl MeshUpdate {
    /// An update that regenerates everything (the first one, or one whose change is not
    /// known).
    pub fn full(snapshot: Arc<MeshSnapshot>) -> MeshUpdate {
        let push = Arc::new(PushRequest::initial(snapshot.version));
        MeshUpdate::new(snapshot, push)
    }

    /// The update of `snapshot` made by `push`, seen now.
    pub fn new(snapshot: Arc<MeshSnapshot>, push: Arc<PushRequest>) -> MeshUpdate {
        MeshUpdate {
            snapshot,
            push,
            changed_at: Instant::now(),
        }
    }

    /// The snapshot's version.
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }
}
