//! Envoy resource generation: a pure function from the mesh snapshot and one proxy to that
//! proxy's clusters, endpoints, listeners and routes, named the way Istio names them
//! (`outbound|PORT|SUBSET|HOST`, `inbound|PORT||`, `virtualOutbound`, `0.0.0.0_15443`,
//! SNI `outbound_.PORT_.SUBSET_.HOST`) so that config dumps read like Istio's.

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
pub mod route;
pub mod tls;

use isthmus_model::{MeshSnapshot, NodeKind, Proxy};
use pb::{Any, Cluster, ClusterLoadAssignment, Listener, RouteConfiguration};
use prost::{Message, Name};

/// Type URL of clusters.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Type URL of endpoints.
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Type URL of listeners.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Type URL of route configurations.
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Type URL of secrets (served by the agent, not the control plane).
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Every resource one proxy gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyResources {
    /// CDS.
    pub clusters: Vec<Cluster>,
    /// EDS, one per EDS cluster.
    pub endpoints: Vec<ClusterLoadAssignment>,
    /// LDS.
    pub listeners: Vec<Listener>,
    /// RDS.
    pub routes: Vec<RouteConfiguration>,
}

/// One resource, encoded, with its name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedResource {
    /// Resource name.
    pub name: String,
    /// The packed resource.
    pub resource: Any,
}

impl ProxyResources {
    /// The resources of one type URL, packed; unknown type URLs give none.
    pub fn of_type(&self, type_url: &str) -> Vec<NamedResource> {
        fn pack<T: Message + Name>(items: &[T], name: impl Fn(&T) -> String) -> Vec<NamedResource> {
            items
                .iter()
                .map(|i| NamedResource {
                    name: name(i),
                    resource: Any {
                        type_url: T::type_url(),
                        value: i.encode_to_vec(),
                    },
                })
                .collect()
        }
        match type_url {
            CLUSTER_TYPE => pack(&self.clusters, |c| c.name.clone()),
            ENDPOINT_TYPE => pack(&self.endpoints, |c| c.cluster_name.clone()),
            LISTENER_TYPE => pack(&self.listeners, |l| l.name.clone()),
            ROUTE_TYPE => pack(&self.routes, |r| r.name.clone()),
            _ => Vec::new(),
        }
    }
}

/// The outbound clusters and endpoints of the services `hosts` only, exactly as [`generate`]
/// makes them for `proxy` (a sidecar): what to replace when only those services' endpoints
/// changed. Cluster names are `outbound|PORT|SUBSET|HOST` with HOST in `hosts`.
pub fn sidecar_service_resources(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    hosts: &std::collections::BTreeSet<String>,
) -> ProxyResources {
    let mut out = ProxyResources {
        clusters: cluster::outbound_targets(snapshot, proxy)
            .into_iter()
            .filter(|(t, _)| hosts.contains(&t.service.hostname))
            .map(|(t, subset)| cluster::outbound(snapshot, proxy, &t, subset))
            .collect(),
        ..Default::default()
    };
    out.endpoints = endpoint::for_clusters(snapshot, proxy, &out.clusters);
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out
}

/// Generates everything `proxy` needs from `snapshot`.
pub fn generate(snapshot: &MeshSnapshot, proxy: &Proxy) -> ProxyResources {
    let mut out = match proxy.id.kind {
        NodeKind::Sidecar => {
            let mut r = ProxyResources {
                clusters: cluster::sidecar_clusters(snapshot, proxy),
                listeners: listener::sidecar_listeners(snapshot, proxy),
                routes: route::outbound_routes(snapshot, proxy),
                ..Default::default()
            };
            r.endpoints = endpoint::for_clusters(snapshot, proxy, &r.clusters);
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
