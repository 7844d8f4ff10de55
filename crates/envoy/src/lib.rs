//! Envoy resource generation: a pure function from the mesh snapshot and one proxy to that
//! proxy's clusters, endpoints, listeners and routes, named the way Istio names them
//! (`outbound|PORT|SUBSET|HOST`, `inbound|PORT||`, `virtualOutbound`, `0.0.0.0_15443`,
//! SNI `outbound_.PORT_.SUBSET_.HOST`) so that config dumps read like Istio's.
//!
//! Modules are layered: each uses only modules listed before it, never one after it nor an
//! item of lib.rs, so no two import each other (`tests/layers.rs` checks this). lib.rs is the
//! top: [`generate`] composes a sidecar's resources and leaves a router's to `gateway`.
//! Layers, bottom first:
//! `pb`, `names`, `resources`, `render`, `tls`, `target`, `endpoint`, `cluster`, `http_route`,
//! `route`, `listener`, `sni_listener`, `passthrough`, `gateway_http`, `funnel`, `gateway`.

pub mod cluster;
pub mod endpoint;
pub mod funnel;
pub mod gateway;
pub mod gateway_http;
pub mod http_route;
pub mod listener;
pub mod names;
pub mod passthrough;
pub mod pb;
pub mod render;
pub mod resources;
pub mod route;
pub mod sni_listener;
pub mod target;
pub mod tls;

pub use resources::{
    NamedResource, ProxyResources, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE,
    SECRET_TYPE,
};

use isthmus_model::{MeshSnapshot, NodeKind, Proxy};
use pb::{Cluster, ClusterLoadAssignment};
use std::sync::Arc;

/// The outbound clusters and endpoints of the services `hosts` only, exactly as [`generate`]
/// makes them for `proxy` (a sidecar): what to replace when only those services' endpoints
/// changed. Cluster names are `outbound|PORT|SUBSET|HOST` with HOST in `hosts`.
pub fn sidecar_service_resources(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    hosts: &std::collections::BTreeSet<String>,
) -> ProxyResources {
    let mut targets = target::targets_by_name(snapshot, proxy);
    targets.retain(|_, (t, _)| hosts.contains(&t.service.hostname));
    let mut out = ProxyResources {
        clusters: targets
            .values()
            .map(|(t, subset)| cluster::outbound(snapshot, proxy, t, *subset))
            .collect(),
        ..Default::default()
    };
    out.endpoints = sidecar_endpoints(snapshot, proxy, &out.clusters, &targets);
    out.services = services_of(&targets);
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out
}

/// A sidecar's EDS: for every EDS cluster among `clusters` (whose targets are `targets`),
/// the egress gateway's pods when the target is funnelled, its own endpoints otherwise.
fn sidecar_endpoints(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    clusters: &[Cluster],
    targets: &target::TargetsByName<'_>,
) -> Vec<ClusterLoadAssignment> {
    clusters
        .iter()
        .filter(|c| c.eds_cluster_config.is_some())
        .filter_map(|c| {
            let (t, _) = targets.get(&c.name)?;
            if target::funnelled(snapshot, proxy, t.service, t.port) {
                return Some(funnel::sidecar_assignment(snapshot, proxy, &c.name));
            }
            Some(endpoint::load_assignment(snapshot, proxy, t, &c.name))
        })
        .collect()
}

/// Each outbound cluster's service host, by cluster name.
fn services_of(targets: &target::TargetsByName<'_>) -> std::collections::HashMap<String, Arc<str>> {
    let mut hosts: std::collections::HashMap<&str, Arc<str>> = std::collections::HashMap::new();
    targets
        .iter()
        .map(|(name, (t, _))| {
            let host = hosts
                .entry(t.service.hostname.as_str())
                .or_insert_with(|| Arc::from(t.service.hostname.as_str()))
                .clone();
            (name.clone(), host)
        })
        .collect()
}

/// Generates everything `proxy` needs from `snapshot`.
pub fn generate(snapshot: &MeshSnapshot, proxy: &Proxy) -> ProxyResources {
    let mut out = match proxy.id.kind {
        NodeKind::Sidecar => {
            let targets = target::targets_by_name(snapshot, proxy);
            let mut r = ProxyResources {
                clusters: cluster::sidecar_clusters(snapshot, proxy, &targets),
                listeners: listener::sidecar_listeners(snapshot, proxy),
                routes: route::outbound_routes(snapshot, proxy),
                ..Default::default()
            };
            r.endpoints = sidecar_endpoints(snapshot, proxy, &r.clusters, &targets);
            r.services = services_of(&targets);
            r
        }
        NodeKind::Router => gateway::router_resources(snapshot, proxy),
    };
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    out.routes.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
