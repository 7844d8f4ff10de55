//! The egress funnel (seed 004: "traffic from a cluster to a remote cluster always traverses
//! through the local egress gateway"). With an egress gateway configured, a sidecar's cluster
//! for an HTTP port of a MESH_EXTERNAL service (`outbound|80||ingress.b.remote`) has the
//! egress gateway's pods as its endpoints, on port 15443, over mesh mTLS with the SNI
//! `outbound_.80_._.ingress.b.remote`. The egress gateway terminates that mTLS (a mesh
//! client certificate is required), routes by the SNI to its own cluster of the same name and
//! opens mutual TLS of its own to the service's real endpoints (another cluster's ingress
//! gateway, which trusts the same root). The sidecar never holds the remote address.

use crate::cluster::{explicit_tls_mode, outbound, outbound_targets, peer_identity};
use crate::endpoint::{lb_endpoint, load_assignment};
use crate::names::{self, ports};
use crate::pb::*;
use crate::route::{http_connection_manager, route_to, HcmRoute};
use crate::tls::{downstream_mtls, upstream_mtls, PeerIdentity};
use crate::ProxyResources;
use isthmus_api::enums::{Resolution, TlsMode};
use isthmus_model::{Address, MeshSnapshot, NodeKind, Proxy, Service};

/// The egress gateway's port for funnelled traffic (the `tls` port Istio's egress gateway
/// Service has).
pub const FUNNEL_PORT: u32 = ports::EAST_WEST;

fn gateway_service(snapshot: &MeshSnapshot) -> Option<&Service> {
    let host = snapshot.egress_gateway.as_deref()?;
    snapshot.services.get(host).map(|s| s.as_ref())
}

/// Whether `proxy` (a sidecar) sends `port` of `svc` through the egress gateway.
pub fn funnelled(snapshot: &MeshSnapshot, proxy: &Proxy, svc: &Service, port: u32) -> bool {
    proxy.id.kind == NodeKind::Sidecar && carries(snapshot, svc, port)
}

/// Whether the funnel carries `port` of `svc`: an HTTP port of a MESH_EXTERNAL service that
/// has addresses to forward to (not the gateway itself, not an original-destination one).
fn carries(snapshot: &MeshSnapshot, svc: &Service, port: u32) -> bool {
    snapshot.egress_gateway.is_some()
        && !svc.mesh_internal()
        && svc.resolution != Resolution::None
        && snapshot.egress_gateway.as_deref() != Some(svc.hostname.as_str())
        && svc.port(port).is_some_and(|p| p.protocol.is_http())
}

/// The sidecar's view of a funnelled cluster: the egress gateway's pods in this cluster.
pub fn sidecar_assignment(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    cluster_name: &str,
) -> ClusterLoadAssignment {
    let mut lb_endpoints = Vec::new();
    if let Some(gw) = gateway_service(snapshot) {
        for e in gw
            .endpoints
            .iter()
            .filter(|e| *e.origin.cluster == *proxy.cluster || e.origin.cluster.is_empty())
        {
            lb_endpoints.push(lb_endpoint(e.address.to_string(), FUNNEL_PORT, e.weight));
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

/// The mTLS a sidecar uses towards the egress gateway for `sni`.
pub fn sidecar_tls(snapshot: &MeshSnapshot, sni: &str) -> TransportSocket {
    let peer = gateway_service(snapshot)
        .map(|g| peer_identity(snapshot, g))
        .unwrap_or_else(|| PeerIdentity::TrustDomain(snapshot.mesh.trust_domain.clone()));
    upstream_mtls(sni, &peer)
}

/// Whether `proxy` is one of the egress gateway's pods.
pub fn is_gateway(snapshot: &MeshSnapshot, proxy: &Proxy) -> bool {
    let own = Address::parse(&proxy.id.ip);
    proxy.id.kind == NodeKind::Router
        && gateway_service(snapshot).is_some_and(|g| {
            g.endpoints.iter().any(|e| {
                e.address == own
                    && (*e.origin.cluster == *proxy.cluster || e.origin.cluster.is_empty())
            })
        })
}

/// Adds the funnel's listener chains and clusters to the egress gateway's resources.
pub fn add_gateway(snapshot: &MeshSnapshot, proxy: &Proxy, res: &mut ProxyResources) {
    if !is_gateway(snapshot, proxy) {
        return;
    }
    let mut chains = Vec::new();
    for (t, subset) in outbound_targets(snapshot, proxy) {
        if !t.subset.is_empty() || !carries(snapshot, t.service, t.port) {
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
            ..Default::default()
        };
        chains.push(FilterChain {
            name: format!("funnel|{}||{}", t.port, t.service.hostname),
            filter_chain_match: Some(FilterChainMatch {
                server_names: vec![sni],
                transport_protocol: "tls".into(),
                ..Default::default()
            }),
            filters: vec![http_connection_manager(
                &format!("funnel_{}_{}", t.port, t.service.hostname),
                HcmRoute::Inline(Box::new(rc)),
                Some(true),
            )],
            transport_socket: Some(downstream_mtls(&snapshot.mesh.trust_domain)),
            ..Default::default()
        });
    }
    if chains.is_empty() {
        return;
    }
    crate::gateway::add_sni_chains(res, FUNNEL_PORT, chains);
}
