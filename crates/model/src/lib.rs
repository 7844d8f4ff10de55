//! The aggregated mesh snapshot: every registry's objects folded into one immutable view of
//! services, endpoints (with cluster, network, locality, labels and identity), network
//! gateways, traffic rules and mTLS policy. Envoy generation reads only this.
//!
//! Data flows one way: registries' stores -> [`MeshBuilder::apply`] (a snapshot and the
//! [`PushRequest`] saying what it changed) -> per-proxy generation.
//!
//! Modules are layered: each uses only modules listed before it, never one after it nor an
//! item of lib.rs, so no two import each other (`tests/layers.rs` checks this). What a
//! snapshot holds sits below `build`, which makes snapshots, and `builder`, which drives it.
//! Layers, bottom first:
//! `host`, `labels`, `credential`, `health`, `policy`, `proxy`, `service`, `automation`, `objects`, `pod`,
//! `workload`, `incremental`, `snapshot`, `delegate`, `build`, `push`, `builder`, `analysis`.

pub mod analysis;
pub mod automation;
pub mod build;
pub mod builder;
pub mod credential;
pub mod delegate;
pub mod health;
pub mod host;
pub mod incremental;
pub mod labels;
pub mod objects;
pub mod pod;
pub mod policy;
pub mod proxy;
pub mod push;
pub mod service;
pub mod snapshot;
pub mod workload;

pub use builder::MeshBuilder;
pub use host::{fqdn, host_matches};
pub use pod::PodInfo;
pub use proxy::{Demand, Interception, NodeId, NodeKind, Proxy, ProxyError};
pub use push::{ConfigKey, ConfigsUpdated, PushRequest};
pub use service::{Address, Endpoint, EndpointOrigin, Endpoints, Port, Service, ServiceOrigin};
pub use snapshot::{
    binds_gateway, MeshSnapshot, NetworkGateway, SnapshotInput, VipRange, VipRangeError,
};
