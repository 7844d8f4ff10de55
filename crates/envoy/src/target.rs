//! What a proxy's outbound clusters are for and how each is reached: the outbound targets
//! (service port x subset) a proxy sees, the TLS mode and peer identity of each, and the egress
//! funnel's decision (whether a sidecar sends a target through the egress gateway, and the
//! mTLS it uses towards it; the gateway's side of the funnel is in [`crate::funnel`]).

use crate::names;
use crate::pb::TransportSocket;
use crate::tls::{upstream_mtls, PeerIdentity};
use isthmus_api::enums::TlsMode;
use isthmus_api::networking::{Subset, TrafficPolicy};
use isthmus_model::{MeshSnapshot, NodeKind, Proxy, Service};
use std::collections::{BTreeMap, BTreeSet};

/// Which endpoints and TLS one outbound cluster has.
#[derive(Debug, Clone)]
pub struct OutboundTarget<'a> {
    /// The service.
    pub service: &'a Service,
    /// The port number.
    pub port: u32,
    /// Subset name, empty for all endpoints.
    pub subset: String,
    /// Subset labels.
    pub labels: BTreeMap<String, String>,
}

impl OutboundTarget<'_> {
    /// The cluster this target is generated as.
    pub fn key(&self) -> names::ClusterKey<'_> {
        names::ClusterKey {
            port: self.port,
            subset: &self.subset,
            host: &self.service.hostname,
        }
    }
}

/// Every outbound target (service port x subset) visible to `proxy`, by the name of the
/// cluster it is generated as: how a gateway finds the target of a cluster its routes name,
/// without reading names back.
pub type TargetsByName<'a> =
    std::collections::HashMap<String, (OutboundTarget<'a>, Option<&'a Subset>)>;

/// [`outbound_targets`] by cluster name.
pub fn targets_by_name<'a>(snapshot: &'a MeshSnapshot, proxy: &Proxy) -> TargetsByName<'a> {
    outbound_targets(snapshot, proxy)
        .into_iter()
        .map(|(t, subset)| (t.key().to_string(), (t, subset)))
        .collect()
}

/// The TLS mode a DestinationRule sets for a target (subset policy, then rule policy), if
/// any.
pub fn explicit_tls_mode(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    service: &Service,
    subset: Option<&Subset>,
) -> Option<TlsMode> {
    let dr = snapshot.destination_rule(&service.hostname, &proxy.id.namespace);
    let from = |p: Option<&TrafficPolicy>| p.and_then(|p| p.tls.as_ref()).map(|t| t.mode);
    from(subset.and_then(|s| s.traffic_policy.as_ref()))
        .or_else(|| from(dr.and_then(|d| d.rule.spec.traffic_policy.as_ref())))
}

/// The `tls` a DestinationRule sets for a target (subset policy, then rule policy), if any.
pub fn explicit_tls<'a>(
    snapshot: &'a MeshSnapshot,
    proxy: &Proxy,
    service: &Service,
    subset: Option<&'a Subset>,
) -> Option<&'a isthmus_api::networking::ClientTls> {
    let dr = snapshot.destination_rule(&service.hostname, &proxy.id.namespace);
    let from = |p: Option<&'a TrafficPolicy>| p.and_then(|p| p.tls.as_ref());
    from(subset.and_then(|s| s.traffic_policy.as_ref()))
        .or_else(|| from(dr.and_then(|d| d.rule.spec.traffic_policy.as_ref())))
}

/// The TLS mode for a target: subset policy, then rule policy, then ISTIO_MUTUAL for
/// mesh-internal services (auto mTLS), plain text otherwise.
pub fn tls_mode(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    service: &Service,
    subset: Option<&Subset>,
) -> Option<TlsMode> {
    match explicit_tls_mode(snapshot, proxy, service, subset) {
        Some(TlsMode::Disable) => None,
        Some(m) => Some(m),
        None if service.mesh_internal() => Some(TlsMode::IstioMutual),
        None => None,
    }
}

/// The identities the peer may present.
pub fn peer_identity(snapshot: &MeshSnapshot, service: &Service) -> PeerIdentity {
    if !service.subject_alt_names.is_empty() {
        return PeerIdentity::Exact(service.subject_alt_names.clone());
    }
    let ids: BTreeSet<String> = service
        .endpoints
        .iter()
        .filter_map(|e| e.origin.identity.as_deref().map(str::to_string))
        .collect();
    if !ids.is_empty()
        && service
            .endpoints
            .iter()
            .all(|e| e.origin.identity.is_some())
    {
        PeerIdentity::Exact(ids.into_iter().collect())
    } else {
        PeerIdentity::TrustDomain(snapshot.mesh.trust_domain.clone())
    }
}

/// Every outbound target (service port x subset) visible to sidecars.
pub fn outbound_targets<'a>(
    snapshot: &'a MeshSnapshot,
    proxy: &Proxy,
) -> Vec<(OutboundTarget<'a>, Option<&'a Subset>)> {
    let mut out = Vec::new();
    // A Sidecar's egress hosts limit what a sidecar gets; routers serve everything.
    let scope = match proxy.id.kind {
        NodeKind::Sidecar => snapshot.egress_scope(proxy),
        _ => None,
    };
    for svc in snapshot.services_in_scope(&scope) {
        if !snapshot.service_visible(svc, proxy) {
            continue;
        }
        let dr = snapshot.destination_rule(&svc.hostname, &proxy.id.namespace);
        for port in &svc.ports {
            out.push((
                OutboundTarget {
                    service: svc,
                    port: port.number,
                    subset: String::new(),
                    labels: BTreeMap::new(),
                },
                None,
            ));
            for subset in dr
                .map(|d| d.rule.spec.subsets.as_slice())
                .unwrap_or_default()
            {
                out.push((
                    OutboundTarget {
                        service: svc,
                        port: port.number,
                        subset: subset.name.clone(),
                        labels: subset.labels.clone(),
                    },
                    Some(subset),
                ));
            }
        }
    }
    out
}

/// The egress gateway's service, if one is configured and known.
pub fn egress_gateway_service(snapshot: &MeshSnapshot) -> Option<&Service> {
    let host = snapshot.egress_gateway.as_deref()?;
    snapshot.services.get(host).map(|s| s.as_ref())
}

/// Whether `proxy` (a sidecar) sends `port` of `svc` through the egress gateway.
pub fn funnelled(snapshot: &MeshSnapshot, proxy: &Proxy, svc: &Service, port: u32) -> bool {
    proxy.id.kind == NodeKind::Sidecar && funnel_carries(snapshot, svc, port)
}

/// Whether the funnel carries `port` of `svc` (for any proxy): an HTTP port of a
/// MESH_EXTERNAL service that has addresses to forward to (not the gateway itself, not an
/// original-destination one).
pub fn funnel_carries(snapshot: &MeshSnapshot, svc: &Service, port: u32) -> bool {
    snapshot.funnel_carries(svc, port)
}

/// The mTLS a sidecar uses towards the egress gateway for `sni`.
pub fn funnel_tls(snapshot: &MeshSnapshot, sni: &str) -> TransportSocket {
    let peer = egress_gateway_service(snapshot)
        .map(|g| peer_identity(snapshot, g))
        .unwrap_or_else(|| PeerIdentity::TrustDomain(snapshot.mesh.trust_domain.clone()));
    upstream_mtls(sni, &peer)
}
