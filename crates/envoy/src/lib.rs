//! Envoy resource generation: a pure function from the mesh snapshot and one proxy to that
//! proxy's clusters, endpoints, listeners and routes, named the way Istio names them
//! (`outbound|PORT|SUBSET|HOST`, `inbound|PORT||`, `virtualOutbound`, `0.0.0.0_15443`,
//! SNI `outbound_.PORT_.SUBSET_.HOST`) so that config dumps read like Istio's.
//!
//! Modules are layered: each uses only modules listed before it, never one after it nor an
//! item of lib.rs, so no two import each other (`tests/layers.rs` checks this). lib.rs is the
//! top: [`generate`] composes a sidecar's resources and leaves a router's to `gateway`.
//! Layers, bottom first:
//! `pb`, `names`, `telemetry`, `resources`, `jwt`, `rbac`, `render`, `tls`, `policy`, `locality`, `target`, `endpoint`, `cluster`, `http_route`,
//! `tcp_route`, `route`, `listener`, `sni_listener`, `passthrough`, `gateway_http`, `funnel`, `gateway`.

pub mod cluster;
pub mod endpoint;
pub mod funnel;
pub mod gateway;
pub mod gateway_http;
pub mod http_route;
pub mod jwt;
pub mod listener;
pub mod locality;
pub mod names;
pub mod passthrough;
pub mod pb;
pub mod policy;
pub mod rbac;
pub mod render;
pub mod resources;
pub mod route;
pub mod sni_listener;
pub mod target;
pub mod tcp_route;
pub mod telemetry;
pub mod tls;

pub use resources::{
    NamedResource, ProxyResources, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE,
    SECRET_TYPE,
};

use isthmus_api::networking::Subset;
use isthmus_model::{MeshSnapshot, NodeKind, Proxy};
use std::sync::Arc;

/// The outbound clusters and endpoints of the services `hosts` only, exactly as [`generate`]
/// makes them for `proxy` (a sidecar): what to replace when only those services' endpoints
/// changed. Cluster names are `outbound|PORT|SUBSET|HOST` with HOST in `hosts`.
pub fn sidecar_service_resources(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    hosts: &std::collections::BTreeSet<String>,
) -> ProxyResources {
    let targets = target::outbound_targets(snapshot, proxy)
        .into_iter()
        .filter(|(t, _)| hosts.contains(&t.service.hostname));
    let mut out = sidecar_outbound(snapshot, proxy, targets);
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out
}

/// A sidecar's outbound clusters for `targets`, the EDS of those that take it (the egress
/// gateway's pods when the target is funnelled, its own endpoints otherwise), and the
/// service each was generated for.
fn sidecar_outbound<'a>(
    snapshot: &'a MeshSnapshot,
    proxy: &Proxy,
    targets: impl IntoIterator<Item = (target::OutboundTarget<'a>, Option<&'a Subset>)>,
) -> ProxyResources {
    let mut out = ProxyResources::default();
    let mut hosts: std::collections::HashMap<&str, Arc<str>> = std::collections::HashMap::new();
    for (t, subset) in targets {
        let c = cluster::outbound(snapshot, proxy, &t, subset);
        if c.eds_cluster_config.is_some() {
            out.endpoints
                .push(if target::funnelled(snapshot, proxy, t.service, t.port) {
                    funnel::sidecar_assignment(snapshot, proxy, &c.name)
                } else {
                    endpoint::load_assignment(snapshot, proxy, &t, &c.name)
                });
        }
        let host = hosts
            .entry(t.service.hostname.as_str())
            .or_insert_with(|| Arc::from(t.service.hostname.as_str()))
            .clone();
        out.services.insert(c.name.clone(), host);
        out.clusters.push(c);
    }
    out
}

/// Generates everything `proxy` needs from `snapshot`.
pub fn generate(snapshot: &MeshSnapshot, proxy: &Proxy) -> ProxyResources {
    let mut out = match proxy.id.kind {
        NodeKind::Sidecar => {
            let mut r =
                sidecar_outbound(snapshot, proxy, target::outbound_targets(snapshot, proxy));
            r.clusters
                .extend(cluster::sidecar_local_clusters(snapshot, proxy));
            r.listeners = listener::sidecar_listeners(snapshot, proxy);
            r.routes = route::outbound_routes(snapshot, proxy);
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
