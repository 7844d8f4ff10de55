//! The xDS server: Envoy's Aggregated Discovery Service over gRPC, in both protocol
//! variants (state of the world and delta). Each stream follows the latest mesh snapshot,
//! generates its proxy's resources from it, and pushes what changed. A stream is served only
//! to a proxy whose workload certificate names the namespace and service account it claims. Agents get the mesh's
//! name table on the same streams (Istio's NDS). ACKs and NACKs are
//! recorded per proxy; a NACK is logged with the proxy id and Envoy's error and counted.
//!
//! Modules are layered: each uses only modules listed before it, never one after it nor an
//! item of lib.rs, so no two import each other (`tests/layers.rs` checks this). Layers,
//! bottom first:
//! `update`, `status`, `peer`, `wire`, `nds`, `request`, `incoming`, `service`, `cache`, `demand`, `state`, `delta`,
//! `ads`.

pub mod ads;
pub mod cache;
pub mod delta;
pub mod demand;
pub mod incoming;
pub mod nds;
pub mod peer;
pub mod request;
pub mod service;
pub mod state;
pub mod status;
pub mod update;
pub mod wire;

pub use ads::AdsServer;
pub use cache::ProxyShape;
pub use demand::{Demands, Scoping};
pub use nds::{NameTables, NDS_TYPE};
pub use peer::{Peer, Refusal, SpiffeId};
pub use status::{ProxyStatus, XdsStatus};
pub use update::MeshUpdate;
