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
use std::sync::Arc;

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
    /// For a sidecar, the service host each outbound cluster (by name) was generated for:
    /// the CDS and EDS resources of that name belong to that service, and are what changes
    /// when only its endpoints move. Recorded as generation makes them (from
    /// [`names::ClusterKey`]), never read back from names.
    pub services: std::collections::HashMap<String, Arc<str>>,
}

/// One resource, encoded, with its name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedResource {
    /// Resource name.
    pub name: String,
    /// The service it was generated for (outbound clusters and their endpoints of a
    /// sidecar), if any.
    pub service: Option<Arc<str>>,
    /// The packed resource.
    pub resource: Any,
}

impl ProxyResources {
    /// The resources of one type URL, packed; unknown type URLs give none.
    pub fn of_type(&self, type_url: &str) -> Vec<NamedResource> {
        fn pack<T: Message + Name>(
            items: &[T],
            name: impl Fn(&T) -> String,
            services: &std::collections::HashMap<String, Arc<str>>,
        ) -> Vec<NamedResource> {
            items
                .iter()
                .map(|i| {
                    let name = name(i);
                    NamedResource {
                        service: services.get(&name).cloned(),
                        name,
                        resource: Any {
                            type_url: T::type_url(),
                            value: i.encode_to_vec(),
                        },
                    }
                })
                .collect()
        }
        let none = std::collections::HashMap::new();
        match type_url {
            CLUSTER_TYPE => pack(&self.clusters, |c| c.name.clone(), &self.services),
            ENDPOINT_TYPE => pack(&self.endpoints, |c| c.cluster_name.clone(), &self.services),
            LISTENER_TYPE => pack(&self.listeners, |l| l.name.clone(), &none),
            ROUTE_TYPE => pack(&self.routes, |r| r.name.clone(), &none),
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
    let mut targets = cluster::targets_by_name(snapshot, proxy);
    targets.retain(|_, (t, _)| hosts.contains(&t.service.hostname));
    let mut out = ProxyResources {
        clusters: targets
            .values()
            .map(|(t, subset)| cluster::outbound(snapshot, proxy, t, *subset))
            .collect(),
        ..Default::default()
    };
    out.endpoints = endpoint::for_clusters(snapshot, proxy, &out.clusters, &targets);
    out.services = services_of(&targets);
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out
}

/// Each outbound cluster's service host, by cluster name.
fn services_of(
    targets: &cluster::TargetsByName<'_>,
) -> std::collections::HashMap<String, Arc<str>> {
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
            let targets = cluster::targets_by_name(snapshot, proxy);
            let mut r = ProxyResources {
                clusters: cluster::sidecar_clusters(snapshot, proxy, &targets),
                listeners: listener::sidecar_listeners(snapshot, proxy),
                routes: route::outbound_routes(snapshot, proxy),
                ..Default::default()
            };
            r.endpoints = endpoint::for_clusters(snapshot, proxy, &r.clusters, &targets);
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
