//! LDS for sidecars: the capture listeners (15001 outbound, 15006 inbound) with per-port
//! listeners behind them, or, without capture (`INTERCEPTION_MODE=NONE`), listeners bound
//! to each service VIP and to the pod's own ports. Inbound chains carry the RBAC filters
//! of the AuthorizationPolicies that select the workload.

use crate::cluster::inbound_ports;
use crate::names::{self, ports};
use crate::pb::*;
use crate::route::{http_connection_manager, http_connection_manager_with, route_to, HcmRoute};
use crate::tls::downstream_mtls;
use isthmus_api::enums::MtlsMode;
use isthmus_model::Interception;
use isthmus_model::{MeshSnapshot, Proxy};
use std::collections::BTreeSet;

/// Every listener of a sidecar.
pub fn sidecar_listeners(snapshot: &MeshSnapshot, proxy: &Proxy) -> Vec<Listener> {
    let capture = proxy.interception == Interception::Redirect;
    let mut out = Vec::new();
    let mut http_ports = BTreeSet::new();
    let scope = snapshot.egress_scope(proxy);
    for svc in snapshot.services_in_scope(&scope) {
        if !snapshot.service_visible(svc, proxy) {
            continue;
        }
        for port in &svc.ports {
            // The TCP side: the VirtualService's TCP route for this port, or the service.
            let tcp = || {
                crate::tcp_route::tcp_proxy(
                    crate::tcp_route::tcp_destinations(snapshot, proxy, svc, port.number),
                    tcp_hash(snapshot, proxy, svc),
                )
            };
            let Some(vip) = &svc.vip else {
                if capture && svc.headless() {
                    // Clients connect to the pods themselves: a listener per pod this
                    // sidecar reaches, to the original destination over the mesh's mTLS
                    // (before, such connections went out in plain text through the
                    // passthrough cluster).
                    out.extend(headless_listeners(proxy, svc, port, tcp));
                } else if capture && port.protocol.is_http() && !port.sniffed {
                    http_ports.insert(port.number);
                }
                continue;
            };
            let forward = if port.sniffed {
                // Its own listener on the VIP, HTTP told from the rest by the first bytes.
                Forward::Sniffed {
                    route: port.number.to_string(),
                    tcp: tcp(),
                }
            } else if port.protocol.is_http() {
                if capture {
                    http_ports.insert(port.number);
                    continue;
                }
                Forward::Http(port.number.to_string())
            } else {
                Forward::Tcp(tcp())
            };
            out.push(outbound_listener(vip, port.number, !capture, forward));
        }
    }
    if capture
        && snapshot.serviceless_mesh_hosts().iter().any(|(h, vs)| {
            MeshSnapshot::host_in_scope(&scope, &vs.namespace, h)
                && snapshot.virtual_service_visible(vs, &proxy.id.namespace)
        })
    {
        http_ports.insert(crate::route::SERVICELESS_PORT);
    }
    // What is not HTTP on a captured HTTP port (TLS or raw TCP to a host outside the mesh
    // that shares the port number) goes where the capture listener would have sent it.
    let unmatched = || {
        if snapshot.registry_only(proxy) {
            tcp_proxy_filter(names::BLACKHOLE, names::BLACKHOLE)
        } else {
            tcp_proxy_filter(names::PASSTHROUGH, names::PASSTHROUGH)
        }
    };
    for port in http_ports {
        out.push(outbound_listener(
            "0.0.0.0",
            port,
            false,
            Forward::HttpElse {
                route: port.to_string(),
                other: unmatched(),
            },
        ));
    }
    if capture {
        out.push(Listener {
            name: names::VIRTUAL_OUTBOUND.into(),
            address: Some(socket("0.0.0.0", ports::OUTBOUND)),
            use_original_dst: Some(BoolValue { value: true }),
            filter_chains: vec![
                FilterChain {
                    // REGISTRY_ONLY: connections to addresses the mesh does not know end in
                    // the black hole instead of passing through.
                    filters: vec![unmatched()],
                    name: names::VIRTUAL_OUTBOUND.into(),
                    ..Default::default()
                },
                loop_guard(ports::OUTBOUND),
            ],
            traffic_direction: 2, // OUTBOUND
            ..Default::default()
        });
    }
    out.extend(inbound_listeners(snapshot, proxy, capture));
    out
}

/// The route of an inbound HTTP chain to the app: no retries, as Istio's inbound routes
/// (the caller's sidecar already retried; a retry here would replay a request, POSTs
/// included, against the same app).
fn inbound_route(cluster: &str) -> Route {
    let mut r = route_to(route_action::ClusterSpecifier::Cluster(cluster.to_string()));
    if let Some(route::Action::Route(a)) = r.action.as_mut() {
        a.retry_policy = None;
    }
    r
}

/// The listeners of one port of a headless service: one per pod this sidecar reaches
/// directly (its own cluster's network), on the pod's address and target port, with the TCP
/// proxy `tcp` (the cluster forwards to the original destination).
fn headless_listeners(
    proxy: &Proxy,
    svc: &isthmus_model::Service,
    port: &isthmus_model::Port,
    tcp: impl Fn() -> Filter,
) -> Vec<Listener> {
    let mut seen = BTreeSet::new();
    svc.endpoints
        .iter()
        .filter(|e| proxy.reaches_directly(&e.origin.network))
        .filter_map(|e| {
            let ip = e.address.ip()?;
            let target = e
                .origin
                .ports
                .get(&port.name)
                .copied()
                .unwrap_or(port.number);
            seen.insert((ip, target))
                .then(|| outbound_listener(&ip.to_string(), target, false, Forward::Tcp(tcp())))
        })
        .collect()
}

/// What an outbound listener does with a connection.
enum Forward {
    /// HTTP, routed by the RDS configuration of this name.
    Http(String),
    /// TCP, with this TCP proxy (the service's cluster or its TCP route's destinations,
    /// hashed by the caller's address when its DestinationRule asks for
    /// `consistentHash.useSourceIp`, Istio's `maybeSetHashPolicy`).
    Tcp(Filter),
    /// Sniffed: HTTP (HTTP/1.x or h2c, by the HTTP inspector) routed by the RDS
    /// configuration `route`, anything else to the TCP proxy `tcp`.
    Sniffed { route: String, tcp: Filter },
    /// A port shared by the HTTP services of the mesh (`0.0.0.0_PORT`): plain-text HTTP/1.1
    /// and h2c (by the HTTP inspector) routed by the RDS configuration `route`, any other
    /// bytes (TLS, another protocol, to a host the mesh does not know) to the default chain
    /// `other` (the passthrough cluster, or the black hole under REGISTRY_ONLY), as istiod's
    /// outbound HTTP listeners.
    HttpElse { route: String, other: Filter },
}

/// How long a sniffed listener waits for the client's first bytes before it gives the
/// connection to the TCP chain (a protocol where the server speaks first, such as MySQL's,
/// sends nothing): Istio's `protocolDetectionTimeout`, whose 0 default makes such clients
/// hang forever.
const PROTOCOL_DETECTION_TIMEOUT: i64 = 5;

/// The ALPN values the HTTP inspector gives HTTP connections.
const SNIFFED_HTTP: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];

/// The HTTP inspector's values that the wildcard HTTP listeners route (istiod's
/// `plaintextHTTPALPNs` without `PILOT_HTTP10`): HTTP/1.0 is not accepted by the connection
/// manager, so such a client passes through to its original destination instead of being
/// answered 426.
const WILDCARD_HTTP: [&str; 2] = ["http/1.1", "h2c"];

fn tcp_hash(snapshot: &MeshSnapshot, proxy: &Proxy, svc: &isthmus_model::Service) -> bool {
    crate::policy::Policy::of(snapshot, proxy, svc, None).tcp_hash_by_source()
}

fn outbound_listener(address: &str, port: u32, bind: bool, forward: Forward) -> Listener {
    let name = format!("{address}_{port}");
    let hcm = |route: String| {
        http_connection_manager(&format!("outbound_{name}"), HcmRoute::Rds(route), None)
    };
    let mut listener = Listener {
        name: name.clone(),
        address: Some(socket(address, port)),
        bind_to_port: Some(BoolValue { value: bind }),
        traffic_direction: 2,
        ..Default::default()
    };
    // The chain HTTP takes when the first bytes say HTTP (the HTTP inspector's ALPN).
    let inspected = |alpns: &[&str], hcm: Filter, name: &str| FilterChain {
        name: name.into(),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "raw_buffer".into(),
            application_protocols: alpns.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }),
        filters: vec![hcm],
        ..Default::default()
    };
    let plain = |filter: Filter| FilterChain {
        filters: vec![filter],
        ..Default::default()
    };
    match forward {
        Forward::Http(route) => listener.filter_chains = vec![plain(hcm(route))],
        Forward::Tcp(tcp) => listener.filter_chains = vec![plain(tcp)],
        Forward::Sniffed { route, tcp } => {
            inspect_http(&mut listener);
            let mut http = inspected(&SNIFFED_HTTP, hcm(route), "sniffed-http");
            if let Some(m) = http.filter_chain_match.as_mut() {
                m.transport_protocol.clear();
            }
            listener.filter_chains = vec![http, plain(tcp)];
        }
        Forward::HttpElse { route, other } => {
            inspect_http(&mut listener);
            listener.filter_chains = vec![inspected(&WILDCARD_HTTP, hcm(route), "http")];
            listener.default_filter_chain = Some(FilterChain {
                name: "non-http".into(),
                filters: vec![other],
                ..Default::default()
            });
        }
    }
    listener
}

/// Puts the HTTP inspector in front of `listener`'s chains, giving up (and taking the
/// chains that do not ask for HTTP) when the client sends nothing for
/// [`PROTOCOL_DETECTION_TIMEOUT`] seconds.
fn inspect_http(listener: &mut Listener) {
    listener.listener_filters = vec![http_inspector()];
    listener.listener_filters_timeout = Some(seconds(PROTOCOL_DETECTION_TIMEOUT));
    listener.continue_on_listener_filters_timeout = true;
}

/// The TCP proxy of an inbound chain to the app, reporting as the destination.
fn inbound_tcp_proxy(cluster: &str) -> Filter {
    let mut proxy = TcpProxy {
        stat_prefix: cluster.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    crate::telemetry::log_tcp(&mut proxy, crate::telemetry::Reporter::Destination);
    network_filter("envoy.filters.network.tcp_proxy", &proxy)
}

/// The ports an inbound chain set serves.
#[derive(Debug, Clone, Copy)]
enum InboundTarget {
    /// A port a Service (or the Sidecar's ingress) declares, to `inbound|PORT||`, matched by
    /// destination port when `match_port` (under capture, where one listener takes every
    /// port).
    Declared {
        port: u32,
        http: bool,
        match_port: bool,
    },
    /// A port no Service declares: the one a port-level PeerAuthentication setting names, or
    /// (`None`) any other. Forwarded to the original destination through
    /// InboundPassthroughCluster; HTTP (told by the HTTP inspector, or by the mesh's HTTP
    /// ALPNs under mTLS) through a connection manager, the rest through a TCP proxy; mesh
    /// mTLS terminated as on a declared port, as istiod's passthrough chains do.
    Undeclared(Option<u32>),
}

/// How a chain treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Plain text (`raw_buffer`).
    Plain,
    /// Mesh mTLS, terminated here (a client certificate of the trust domain required).
    MeshTls,
    /// TLS that is not the mesh's, handed to the app as it is.
    OtherTls,
}

fn inbound_chains(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    target: InboundTarget,
) -> Vec<FilterChain> {
    let (port, cluster, match_port) = match target {
        InboundTarget::Declared {
            port, match_port, ..
        } => (Some(port), names::inbound_cluster(port), match_port),
        InboundTarget::Undeclared(port) => {
            (port, names::INBOUND_PASSTHROUGH.to_string(), port.is_some())
        }
    };
    let mode = snapshot
        .mtls
        .mode_for(&proxy.id.namespace, &proxy.labels, port.unwrap_or(0));
    // The AuthorizationPolicies that select this workload.
    let policies = snapshot
        .authz
        .for_workload(&proxy.id.namespace, &proxy.labels);
    let http_authz = crate::rbac::rule_sets(policies.clone(), true);
    let tcp_authz = crate::rbac::rule_sets(policies, false);
    let base = match (target, port) {
        (InboundTarget::Declared { .. }, _) => cluster.clone(),
        (InboundTarget::Undeclared(_), Some(p)) => format!("{}-{p}", names::VIRTUAL_INBOUND),
        (InboundTarget::Undeclared(_), None) => format!("{}-catchall", names::VIRTUAL_INBOUND),
    };
    let chain = |transport: Transport, http: bool, alpns: &[&str], suffix: &str| {
        let tls = transport == Transport::MeshTls;
        let filters = if http {
            let rc = RouteConfiguration {
                name: cluster.clone(),
                virtual_hosts: vec![VirtualHost {
                    name: format!("inbound|http|{}", port.unwrap_or(0)),
                    domains: vec!["*".into()],
                    routes: vec![inbound_route(&cluster)],
                    ..Default::default()
                }],
                validate_clusters: Some(BoolValue { value: false }),
                response_headers_to_add: vec![crate::telemetry::peer_header()],
                ..Default::default()
            };
            // RequestAuthentications verify tokens before the RBAC filters read them.
            let mut first: Vec<_> = crate::jwt::http_filter(snapshot, proxy)
                .into_iter()
                .collect();
            first.extend(crate::rbac::http_filters(&http_authz));
            vec![http_connection_manager_with(
                &cluster,
                HcmRoute::Inline(Box::new(rc)),
                Some(tls),
                first,
            )]
        } else {
            let mut filters = crate::rbac::network_filters(&tcp_authz);
            filters.push(inbound_tcp_proxy(&cluster));
            filters
        };
        FilterChain {
            name: format!("{base}{suffix}"),
            filter_chain_match: Some(FilterChainMatch {
                destination_port: port
                    .filter(|_| match_port)
                    .map(|value| UInt32Value { value }),
                transport_protocol: match transport {
                    Transport::Plain => "raw_buffer",
                    Transport::MeshTls | Transport::OtherTls => "tls",
                }
                .into(),
                application_protocols: alpns.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            }),
            filters,
            transport_socket: tls.then(|| downstream_mtls(&snapshot.mesh.trust_domain)),
            ..Default::default()
        }
    };
    // PERMISSIVE: mesh mTLS is told apart from a client's own TLS by the ALPN mesh clients
    // send, as Istio does; that other TLS passes through to the app untouched instead of
    // being asked for a mesh client certificate.
    let permissive = matches!(mode, MtlsMode::Permissive | MtlsMode::Unset);
    match target {
        InboundTarget::Declared { http, .. } => {
            let mesh_tls = || {
                chain(
                    Transport::MeshTls,
                    http,
                    if permissive { &MESH_ALPNS[..] } else { &[] },
                    "-mtls",
                )
            };
            let plain = || chain(Transport::Plain, http, &[], "-plaintext");
            let other_tls = || chain(Transport::OtherTls, false, &[], "-tls-passthrough");
            match mode {
                MtlsMode::Strict => vec![mesh_tls()],
                MtlsMode::Disable => vec![plain()],
                MtlsMode::Permissive | MtlsMode::Unset => vec![mesh_tls(), other_tls(), plain()],
            }
        }
        InboundTarget::Undeclared(_) => {
            let mesh_http = || chain(Transport::MeshTls, true, &MESH_HTTP_ALPNS, "-mtls-http");
            let plain = || {
                [
                    chain(Transport::Plain, true, &WILDCARD_HTTP, "-http"),
                    chain(Transport::Plain, false, &[], "-tcp"),
                ]
            };
            let other_tls = || chain(Transport::OtherTls, false, &[], "-tls-passthrough");
            match mode {
                // Only mesh mTLS: plain text and other TLS find no chain and are closed.
                MtlsMode::Strict => vec![
                    mesh_http(),
                    chain(Transport::MeshTls, false, &[], "-mtls-tcp"),
                ],
                MtlsMode::Disable => {
                    let mut out = plain().to_vec();
                    out.push(other_tls());
                    out
                }
                MtlsMode::Permissive | MtlsMode::Unset => {
                    let mut out = vec![
                        mesh_http(),
                        chain(Transport::MeshTls, false, &MESH_TCP_ALPNS, "-mtls-tcp"),
                        other_tls(),
                    ];
                    out.extend(plain());
                    out
                }
            }
        }
    }
}

/// The ALPN values mesh clients send when they carry HTTP over mTLS (Istio's
/// `mtlsHTTPALPNs`): an undeclared port serves them with a connection manager.
const MESH_HTTP_ALPNS: [&str; 3] = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];

/// The ALPN values mesh clients send for TCP over mTLS (Istio's `mtlsTCPWithMxcALPNs`).
const MESH_TCP_ALPNS: [&str; 2] = ["istio-peer-exchange", "istio"];

/// The ALPN values mesh clients send (Istio's `mtlsTCPWithMxcALPNs` and HTTP variants):
/// what tells mesh mTLS from other TLS on a PERMISSIVE port.
pub const MESH_ALPNS: [&str; 5] = [
    "istio-peer-exchange",
    "istio",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// A connection addressed to the capture port itself (15001, 15006) would be redirected to it
/// again and again: it ends in the black hole, as istiod's chains do.
fn loop_guard(port: u32) -> FilterChain {
    FilterChain {
        name: format!("{}-blackhole", port),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value { value: port }),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(names::BLACKHOLE, names::BLACKHOLE)],
        ..Default::default()
    }
}

fn inbound_listeners(snapshot: &MeshSnapshot, proxy: &Proxy, capture: bool) -> Vec<Listener> {
    let inbound = inbound_ports(snapshot, proxy);
    if capture {
        let mut chains: Vec<FilterChain> = inbound
            .iter()
            .flat_map(|(port, p)| {
                inbound_chains(
                    snapshot,
                    proxy,
                    InboundTarget::Declared {
                        port: *port,
                        http: p.http,
                        match_port: true,
                    },
                )
            })
            .collect();
        chains.push(loop_guard(ports::INBOUND));
        // Ports no Service declares: those a port-level PeerAuthentication setting names,
        // each with its own mode, then every other.
        let port_level = snapshot
            .mtls
            .port_level_ports(&proxy.id.namespace, &proxy.labels);
        for port in port_level
            .into_iter()
            .filter(|p| !inbound.contains_key(p) && *p != ports::INBOUND)
        {
            chains.extend(inbound_chains(
                snapshot,
                proxy,
                InboundTarget::Undeclared(Some(port)),
            ));
        }
        chains.extend(inbound_chains(
            snapshot,
            proxy,
            InboundTarget::Undeclared(None),
        ));
        // The HTTP inspector tells HTTP from the rest on undeclared ports only: a declared
        // port's protocol is known, and 15006 is the black hole.
        let mut inspector = http_inspector();
        inspector.filter_disabled = Some(destination_ports(
            inbound.keys().copied().chain([ports::INBOUND]),
        ));
        return vec![Listener {
            name: names::VIRTUAL_INBOUND.into(),
            address: Some(socket("0.0.0.0", ports::INBOUND)),
            listener_filters: vec![original_dst(), tls_inspector(), inspector],
            // A client that sends nothing first (a server-first protocol) is not held for
            // ever: after the timeout its connection takes the plain-text TCP chain.
            listener_filters_timeout: Some(seconds(PROTOCOL_DETECTION_TIMEOUT)),
            continue_on_listener_filters_timeout: true,
            filter_chains: chains,
            traffic_direction: 1, // INBOUND
            ..Default::default()
        }];
    }
    inbound
        .iter()
        .map(|(port, p)| Listener {
            name: format!("{}_{port}", proxy.id.ip),
            address: Some(socket(&proxy.id.ip, *port)),
            listener_filters: vec![tls_inspector()],
            filter_chains: inbound_chains(
                snapshot,
                proxy,
                InboundTarget::Declared {
                    port: *port,
                    http: p.http,
                    match_port: false,
                },
            ),
            traffic_direction: 1,
            ..Default::default()
        })
        .collect()
}
