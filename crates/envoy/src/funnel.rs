//! The egress funnel (seed 004: "traffic from a cluster to a remote cluster always traverses
//! through the local egress gateway"). With an egress gateway configured, a sidecar's cluster
//! for an HTTP port of a MESH_EXTERNAL service (`outbound|80||ingress.b.remote`) has the
//! egress gateway's pods as its endpoints, on port 15443, over mesh mTLS with the SNI
//! `outbound_.80_._.ingress.b.remote`. The egress gateway terminates that mTLS (a mesh
//! client certificate is required), routes by the SNI to its own cluster of the same name and
//! opens mutual TLS of its own to the service's real endpoints (another cluster's ingress
//! gateway, which trusts the same root). The sidecar never holds the remote address.
//!
//! Whether a sidecar's target is funnelled, and the mTLS it uses towards the gateway, are
//! decided with the targets ([`crate::target::funnelled`], [`crate::target::funnel_tls`]),
//! below clusters and endpoints; this module holds the sidecar's endpoints for a funnelled
//! cluster and the gateway's side.

use crate::cluster::outbound;
use crate::endpoint::{lb_endpoint, load_assignment};
use crate::names::{self, ports};
use crate::pb::*;
use crate::resources::ProxyResources;
use crate::route::{http_connection_manager_with, route_to, HcmRoute};
use crate::sni_listener::add_sni_chains;
use crate::target::{egress_gateway_service, explicit_tls_mode, funnel_carries, outbound_targets};
use crate::tls::{downstream_mtls, upstream_mtls, PeerIdentity};
use isthmus_api::enums::TlsMode;
use isthmus_model::{Address, MeshSnapshot, NodeKind, Proxy};

/// The egress gateway's port for funnelled traffic (the `tls` port Istio's egress gateway
/// Service has).
pub const FUNNEL_PORT: u32 = ports::EAST_WEST;

/// The sidecar's view of a funnelled cluster: the egress gateway's pods in this cluster.
pub fn sidecar_assignment(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    cluster_name: &str,
) -> ClusterLoadAssignment {
    let mut lb_endpoints = Vec::new();
    if let Some(gw) = egress_gateway_service(snapshot) {
        for e in gw
            .endpoints
            .iter()
            .filter(|e| *e.origin.cluster == *proxy.cluster || e.origin.cluster.is_empty())
        {
            lb_endpoints.push(lb_endpoint(e.address.to_string(), FUNNEL_PORT, e.weight()));
        }
    }
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Whether `proxy` is one of the egress gateway's pods.
pub fn is_gateway(snapshot: &MeshSnapshot, proxy: &Proxy) -> bool {
    let own = Address::parse(&proxy.id.ip);
    proxy.id.kind == NodeKind::Router
        && egress_gateway_service(snapshot).is_some_and(|g| {
            g.endpoints.iter().any(|e| {
                e.address == own
                    && (*e.origin.cluster == *proxy.cluster || e.origin.cluster.is_empty())
            })
        })
}

/// Adds the funnel's listener chains and clusters to the egress gateway's resources.
pub fn add_gateway(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    authz: &crate::rbac::GatewayAuthz,
    res: &mut ProxyResources,
) {
    if !is_gateway(snapshot, proxy) {
        return;
    }
    let mut chains = Vec::new();
    for (t, subset) in outbound_targets(snapshot, proxy) {
        if !t.subset.is_empty() || !funnel_carries(snapshot, t.service, t.port) {
            continue;
        }
        let name = names::outbound_cluster(t.port, "", &t.service.hostname);
        let sni = names::sni(t.port, "", &t.service.hostname);
        if let Some(existing) = res.clusters.iter().position(|c| c.name == name) {
            // A gateway route made it already: it still needs the funnel's TLS.
            res.clusters.remove(existing);
            res.endpoints.retain(|e| e.cluster_name != name);
        }
        let mut cluster = outbound(snapshot, proxy, &t, subset);
        // The hop between clusters is mutual TLS with the shared root unless a
        // DestinationRule says otherwise.
        match explicit_tls_mode(snapshot, proxy, t.service, subset) {
            None | Some(TlsMode::IstioMutual) => {
                cluster.transport_socket = Some(upstream_mtls(
                    &sni,
                    &PeerIdentity::TrustDomain(snapshot.mesh.trust_domain.clone()),
                ));
            }
            Some(_) => {}
        }
        if cluster.eds_cluster_config.is_some() {
            res.endpoints
                .push(load_assignment(snapshot, proxy, &t, &name));
        }
        res.clusters.push(cluster);
        let rc = RouteConfiguration {
            name: format!("funnel|{}|{}", t.port, t.service.hostname),
            virtual_hosts: vec![VirtualHost {
                name: format!("{}:{}", t.service.hostname, t.port),
                domains: vec!["*".into()],
                routes: vec![route_to(route_action::ClusterSpecifier::Cluster(
                    name.clone(),
                ))],
                ..Default::default()
            }],
            validate_clusters: Some(BoolValue { value: false }),
            request_headers_to_add: vec![crate::telemetry::peer_header()],
            ..Default::default()
        };
        chains.push(FilterChain {
            name: format!("funnel|{}||{}", t.port, t.service.hostname),
            filter_chain_match: Some(FilterChainMatch {
                server_names: vec![sni],
                transport_protocol: "tls".into(),
                ..Default::default()
            }),
            filters: vec![http_connection_manager_with(
                &format!("funnel_{}_{}", t.port, t.service.hostname),
                HcmRoute::Inline(Box::new(rc)),
                Some(true),
                authz.http(),
            )],
            transport_socket: Some(downstream_mtls(&snapshot.mesh.trust_domain)),
            ..Default::default()
        });
    }
    if chains.is_empty() {
        return;
    }
    add_sni_chains(res, FUNNEL_PORT, chains);
}
