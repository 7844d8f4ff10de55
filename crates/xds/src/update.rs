//! What streams follow: each snapshot with the push request that says what it changed.

use isthmus_model::{MeshSnapshot, PushRequest};
use std::sync::Arc;

/// What streams follow: a snapshot and the push request that says what it changed from the
/// one before (as [`isthmus_model::MeshBuilder::apply`] makes them).
#[derive(Debug, Clone)]
pub struct MeshUpdate {
    /// The mesh at this version.
    pub snapshot: Arc<MeshSnapshot>,
    /// What changed from the version before.
    pub push: Arc<PushRequest>,
}

impl MeshUpdate {
    /// An update that regenerates everything (the first one, or one whose change is not
    /// known).
    pub fn full(snapshot: Arc<MeshSnapshot>) -> MeshUpdate {
        let push = Arc::new(PushRequest::initial(snapshot.version));
        MeshUpdate { snapshot, push }
    }

    /// The snapshot's version.
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }
}
