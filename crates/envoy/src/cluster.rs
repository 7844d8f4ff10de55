//! CDS: outbound clusters per service port and subset, inbound clusters per workload port,
//! and the passthrough and black-hole clusters.

use crate::names;
use crate::pb::*;
use crate::target::{funnel_tls, funnelled, peer_identity, tls_mode, OutboundTarget};
use crate::tls::upstream_mtls;
use isthmus_api::enums::{Resolution, TlsMode};
use isthmus_api::networking::Subset;
use isthmus_model::{Address, MeshSnapshot, Proxy};
use std::collections::BTreeMap;

/// A sidecar's clusters besides the outbound ones: inbound per served port, passthrough
/// and black hole.
pub fn sidecar_local_clusters(snapshot: &MeshSnapshot, proxy: &Proxy) -> Vec<Cluster> {
    let mut out = Vec::new();
    // With capture, as Istio since 1.10: to the pod's own IP (an app listening only there
    // is reached), from 127.0.0.6, which the capture rules let pass instead of redirecting
    // it back to Envoy. Without capture Envoy's listeners are the pod's ports: loopback.
    let capture = proxy.interception == isthmus_model::Interception::Redirect;
    let app = if capture {
        proxy.id.ip.as_str()
    } else {
        "127.0.0.1"
    };
    for (port, p) in inbound_ports(snapshot, proxy) {
        let (address, target) = match p.endpoint {
            Some((Some(loopback), target)) => (loopback.to_string(), target),
            Some((None, target)) => (app.to_string(), target),
            None => (app.to_string(), port),
        };
        let mut c = static_cluster(&names::inbound_cluster(port), &address, target);
        c.circuit_breakers = Some(crate::policy::unlimited_circuit_breakers());
        if capture {
            c.upstream_bind_config = Some(inbound_bind());
        }
        if p.http2 {
            crate::policy::Policy::default().apply_http2(&mut c);
        }
        out.push(c);
    }
    let mut outbound = passthrough(names::PASSTHROUGH);
    crate::policy::apply_passthrough_http(&mut outbound);
    out.push(outbound);
    let mut inbound = passthrough(names::INBOUND_PASSTHROUGH);
    crate::policy::apply_passthrough_http(&mut inbound);
    if capture {
        inbound.upstream_bind_config = Some(inbound_bind());
    }
    out.push(inbound);
    out.push(Cluster {
        name: names::BLACKHOLE.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(seconds(10)),
        ..Default::default()
    });
    out
}

/// The source address of Envoy's connections to its app (Istio's `InboundPassthroughBindIpv4`).
pub const INBOUND_SOURCE: &str = "127.0.0.6";

/// Binds Envoy's connections to its app to [`INBOUND_SOURCE`].
fn inbound_bind() -> envoy_types::pb::envoy::config::core::v3::BindConfig {
    envoy_types::pb::envoy::config::core::v3::BindConfig {
        source_address: Some(SocketAddress {
            address: INBOUND_SOURCE.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The target ports of the services this proxy's pod serves.
pub fn inbound_ports(snapshot: &MeshSnapshot, proxy: &Proxy) -> BTreeMap<u32, InboundPort> {
    if let Some(ingress) = snapshot.sidecar_ingress(proxy) {
        return ingress
            .iter()
            .map(|i| {
                let protocol = i.port.protocol();
                (
                    i.port.number,
                    InboundPort {
                        http: protocol.is_http(),
                        http2: protocol.is_http2(),
                        endpoint: i.endpoint(),
                    },
                )
            })
            .collect();
    }
    let own = Address::parse(&proxy.id.ip);
    let mut out: BTreeMap<u32, InboundPort> = BTreeMap::new();
    for svc in snapshot.services_with_endpoint(&proxy.cluster, &own) {
        for e in svc.endpoints.iter() {
            if e.address != own || *e.origin.cluster != *proxy.cluster {
                continue;
            }
            for (name, target) in e.origin.ports.iter() {
                let entry = out.entry(*target).or_default();
                for p in svc.ports.iter().filter(|p| p.name == *name) {
                    entry.http |= p.protocol.is_http();
                    entry.http2 |= p.protocol.is_http2();
                }
            }
        }
    }
    out
}

/// One inbound port of a sidecar's workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundPort {
    /// A service names it HTTP, HTTP2 or gRPC (or the Sidecar ingress does): an HTTP
    /// connection manager serves it.
    pub http: bool,
    /// The app speaks HTTP/2 there (gRPC, HTTP2).
    pub http2: bool,
    /// Where the app listens, from a Sidecar ingress's `defaultEndpoint`: (the loopback
    /// address, or `None` for the pod's own; port). `None`: the pod, on the same port.
    pub endpoint: Option<(Option<std::net::IpAddr>, u32)>,
}

/// One outbound cluster (`outbound|PORT|SUBSET|HOST`) as `proxy` needs it.
pub fn outbound(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    t: &OutboundTarget<'_>,
    subset: Option<&Subset>,
) -> Cluster {
    let key = t.key();
    let name = key.to_string();
    // gRPC and HTTP2 ports: HTTP/2 to the upstream (HTTP/1.1 would break gRPC's trailers);
    // a sniffed port: what the client spoke.
    let http = match t.service.port(t.port) {
        Some(p) if p.sniffed => crate::policy::UpstreamHttp::Downstream,
        Some(p) if p.protocol.is_http2() => crate::policy::UpstreamHttp::Http2,
        _ => crate::policy::UpstreamHttp::Http1,
    };
    let mut c = Cluster {
        name: name.clone(),
        connect_timeout: Some(seconds(10)),
        ..Default::default()
    };
    if funnelled(snapshot, proxy, t.service, t.port) {
        c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        ));
        c.eds_cluster_config = Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.clone(),
        });
        c.transport_socket = Some(funnel_tls(snapshot, &key.sni()));
        crate::policy::Policy::of(snapshot, proxy, t.service, subset).apply(&mut c, proxy, http);
        return c;
    }
    // A headless Service: to the pod the client connected to, as a resolution NONE entry.
    let resolution = if t.service.headless() {
        Resolution::None
    } else {
        t.service.resolution
    };
    match resolution {
        Resolution::None => {
            c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::OriginalDst as i32,
            ));
            c.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            let kind = if t.service.resolution == Resolution::Dns {
                cluster::DiscoveryType::StrictDns
            } else {
                cluster::DiscoveryType::LogicalDns
            };
            c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(kind as i32));
            c.dns_lookup_family = cluster::DnsLookupFamily::V4Only as i32;
            let mut cla = crate::endpoint::load_assignment(snapshot, proxy, t, &name);
            // A DNS ServiceEntry without endpoints resolves its own host, as in Istio
            // (an empty cluster would answer every call with 503).
            if t.service.endpoints.is_empty() && !t.service.hostname.starts_with('*') {
                cla.endpoints = vec![LocalityLbEndpoints {
                    lb_endpoints: vec![crate::endpoint::lb_endpoint(
                        t.service.hostname.clone(),
                        t.port,
                        1,
                    )],
                    ..Default::default()
                }];
            }
            c.load_assignment = Some(cla);
        }
        Resolution::Static => {
            c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            ));
            c.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: name.clone(),
            });
        }
    }
    // A service reached (partly) through gateways: other networks' endpoints, or
    // ServiceEntry endpoints on the east-west port (other clusters' gateways, as the seeds
    // write them). When a gateway stops answering, give up connecting soon, eject it
    // quickly so that calls go to the endpoints that still work (and let it back after the
    // ejection time); the control plane's probes also mark a silent gateway unhealthy.
    // A ServiceEntry with a single gateway endpoint has nothing to fail over to: it is
    // left as it was.
    let other_networks = t
        .service
        .endpoints
        .iter()
        .any(|e| !e.origin.network.is_empty() && !proxy.reaches_directly(&e.origin.network));
    let gateway_endpoints = t.service.endpoints.len() > 1
        && t.service.endpoints.iter().any(|e| {
            e.origin
                .ports
                .values()
                .any(|p| *p == isthmus_api::validate::EAST_WEST_PORT)
        });
    if other_networks || gateway_endpoints {
        c.connect_timeout = Some(GATEWAY_CONNECT_TIMEOUT);
        c.outlier_detection = Some(
            envoy_types::pb::envoy::config::cluster::v3::OutlierDetection {
                consecutive_5xx: Some(UInt32Value { value: 3 }),
                consecutive_gateway_failure: Some(UInt32Value { value: 3 }),
                enforcing_consecutive_gateway_failure: Some(UInt32Value { value: 100 }),
                interval: Some(seconds(1)),
                base_ejection_time: Some(seconds(5)),
                max_ejection_percent: Some(UInt32Value { value: 100 }),
                ..Default::default()
            },
        );
    }
    match tls_mode(snapshot, proxy, t.service, subset) {
        Some(TlsMode::IstioMutual) => {
            c.transport_socket = Some(upstream_mtls(
                &key.sni(),
                &peer_identity(snapshot, t.service),
            ));
            // Automatic mTLS, as Istio's: endpoints known to have no sidecar (a pod not
            // injected, an address with no pod such as the API server's) are reached in
            // plain text, the app's own bytes untouched. EDS marks them (see
            // `endpoint::PLAINTEXT_MATCH`); the others keep the cluster's mTLS.
            let auto =
                crate::target::explicit_tls_mode(snapshot, proxy, t.service, subset).is_none();
            if auto
                && t.service
                    .endpoints
                    .iter()
                    .any(|e| e.origin.without_sidecar())
            {
                c.transport_socket_matches = vec![crate::endpoint::plaintext_match()];
            }
        }
        Some(TlsMode::Simple | TlsMode::Mutual) => {
            if let Some(tls) = crate::target::explicit_tls(snapshot, proxy, t.service, subset) {
                c.transport_socket =
                    Some(crate::tls::upstream_originated(tls, &t.service.hostname));
            }
        }
        Some(TlsMode::Disable) | None => {}
    }
    // The rule's load balancing, connection pool and outlier detection (replacing the
    // gateway defaults above where it sets them), or Istio's defaults.
    crate::policy::Policy::of(snapshot, proxy, t.service, subset).apply(&mut c, proxy, http);
    c
}

/// How long a connection to another cluster's gateway may take before the next endpoint is
/// tried (Istio's default, 10 s, would hold a call that long on a silent gateway).
pub const GATEWAY_CONNECT_TIMEOUT: Duration = Duration {
    seconds: 1,
    nanos: 0,
};

/// A cluster with one fixed address.
pub fn static_cluster(name: &str, address: &str, port: u32) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(seconds(10)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![crate::endpoint::lb_endpoint(address, port, 1)],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn passthrough(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(seconds(10)),
        circuit_breakers: Some(crate::policy::unlimited_circuit_breakers()),
        ..Default::default()
    }
}
