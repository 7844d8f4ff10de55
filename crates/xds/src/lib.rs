//! The xDS server: Envoy's Aggregated Discovery Service over gRPC, in both protocol
//! variants (state of the world and delta). Each stream follows the latest mesh snapshot,
//! generates its proxy's resources from it, and pushes what changed. ACKs and NACKs are
//! recorded per proxy; a NACK is logged with the proxy id and Envoy's error and counted.

pub mod ads;
pub mod cache;
pub mod delta;
pub mod incoming;
pub mod request;
pub mod service;
pub mod state;
pub mod status;
pub mod wire;

pub use ads::AdsServer;
pub use cache::ProxyShape;

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
pub use status::{ProxyStatus, XdsStatus};
