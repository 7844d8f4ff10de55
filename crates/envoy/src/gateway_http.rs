//! HTTP and HTTPS servers of a `Gateway`: one listener per port with an HTTP connection
//! manager whose routes (`http.PORT`, `https.PORT.PORTNAME.GATEWAY.NAMESPACE`, Istio's
//! names) come from the VirtualServices bound to the Gateway by `gateways`.
//!
//! A plain HTTP server also accepts mesh mutual TLS on the same port (a client certificate of
//! the mesh is then required): that is how one cluster's egress gateway reaches another's
//! ingress gateway over mTLS with the shared root while the seed's `Gateway` says HTTP.
//!
//! A server host `*.svc.SUFFIX` (seed 004's `*.svc.a.remote`) that no bound VirtualService
//! routes maps `NAME.NAMESPACE.svc.SUFFIX` to the local service
//! `NAME.NAMESPACE.svc.cluster.local` by the Host header.

use crate::cluster::outbound;
use crate::endpoint::load_assignment;
use crate::http_route::weighted;
use crate::names::outbound_cluster;
use crate::pb::*;
use crate::resources::ProxyResources;
use crate::route::{http_connection_manager_with, route_to, HcmRoute};
use crate::target::targets_by_name;
use crate::tls::downstream_mtls;
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::config::route::v3::virtual_host::TlsRequirementType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    subject_alt_name_matcher::SanType, TlsCertificate,
};
use isthmus_api::enums::ServerTlsMode;
use isthmus_api::networking::{Gateway, Server};
use isthmus_model::snapshot::Scoped;
use isthmus_model::{fqdn, host_matches, MeshSnapshot, Proxy, ServiceOrigin};
use std::collections::{BTreeMap, BTreeSet};

/// One server of one Gateway.
type GatewayServer<'a> = (&'a Scoped<Gateway>, &'a Server);

/// Splits a server host `NAMESPACE/HOST` into the namespace restriction and the host
/// (`./HOST` means the Gateway's namespace, `*/HOST` and `HOST` any).
fn server_host<'a>(raw: &'a str, gw_namespace: &'a str) -> (Option<&'a str>, &'a str) {
    match raw.split_once('/') {
        Some((".", h)) => (Some(gw_namespace), h),
        Some(("*", h)) => (None, h),
        Some((ns, h)) => (Some(ns), h),
        None => (None, raw),
    }
}

/// Virtual hosts being built, by domain, in the order they were first seen.
#[derive(Default)]
struct VirtualHosts {
    order: Vec<String>,
    routes: BTreeMap<String, Vec<Route>>,
    require_tls: BTreeSet<String>,
}

impl VirtualHosts {
    fn add(&mut self, domain: &str, routes: Vec<Route>) {
        if !self.routes.contains_key(domain) {
            self.order.push(domain.to_string());
        }
        self.routes
            .entry(domain.to_string())
            .or_default()
            .extend(routes);
    }

    fn into_route_config(self, name: String, port: u32) -> RouteConfiguration {
        let mut used = BTreeSet::new();
        let mut virtual_hosts = Vec::new();
        for domain in self.order {
            let routes = self.routes.get(&domain).cloned().unwrap_or_default();
            // Envoy refuses a domain listed twice in one route configuration.
            let domains: Vec<String> = if domain == "*" {
                vec!["*".into()]
            } else {
                vec![domain.clone(), format!("{domain}:{port}")]
            }
            .into_iter()
            .filter(|d| used.insert(d.clone()))
            .collect();
            if domains.is_empty() || routes.is_empty() {
                continue;
            }
            virtual_hosts.push(VirtualHost {
                name: format!("{domain}:{port}"),
                domains,
                require_tls: if self.require_tls.contains(&domain) {
                    TlsRequirementType::All as i32
                } else {
                    TlsRequirementType::None as i32
                },
                routes,
                ..Default::default()
            });
        }
        RouteConfiguration {
            name,
            virtual_hosts,
            validate_clusters: Some(BoolValue { value: false }),
            request_headers_to_add: vec![crate::telemetry::peer_header()],
            ..Default::default()
        }
    }
}

/// Adds the virtual hosts of one server to `vhosts`.
fn server_routes(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    (gw, server): GatewayServer<'_>,
    port: u32,
    vhosts: &mut VirtualHosts,
) {
    let gw_name = &*gw.rule.metadata.name;
    let bound = snapshot.gateway_virtual_services(&gw.namespace, gw_name, &proxy.id.namespace);
    let redirect = server.tls.as_ref().is_some_and(|t| t.https_redirect);
    for raw in &server.hosts {
        let (only_ns, pattern) = server_host(raw, &gw.namespace);
        let mut routed = false;
        for vs in &bound {
            if only_ns.is_some_and(|ns| ns != vs.namespace) {
                continue;
            }
            for h in &vs.rule.spec.hosts {
                let host = fqdn(h, &vs.namespace);
                let domain = if host_matches(pattern, &host) {
                    host
                } else if host_matches(&host, pattern) {
                    pattern.to_string()
                } else {
                    continue;
                };
                let mut routes: Vec<Route> = vs
                    .rule
                    .spec
                    .http
                    .iter()
                    .flat_map(|r| {
                        crate::http_route::routes(
                            r,
                            port,
                            &vs.namespace,
                            Some((&gw.namespace, gw_name)),
                        )
                    })
                    .collect();
                if routes.is_empty() {
                    continue;
                }
                crate::policy::add_hash_policies(snapshot, proxy, &mut routes);
                routed = true;
                if redirect {
                    vhosts.require_tls.insert(domain.clone());
                }
                vhosts.add(&domain, routes);
            }
        }
        if routed {
            continue;
        }
        // `*.svc.SUFFIX` with no VirtualService: NAME.NAMESPACE.svc.SUFFIX is the local
        // service NAME.NAMESPACE.svc.cluster.local.
        let Some(suffix) = pattern.strip_prefix("*.") else {
            continue;
        };
        if !suffix.starts_with("svc.") || suffix == isthmus_model::host::CLUSTER_DOMAIN {
            continue;
        }
        for svc in snapshot.services.values() {
            if svc.origin != ServiceOrigin::Kubernetes
                || only_ns.is_some_and(|ns| ns != svc.namespace)
            {
                continue;
            }
            let target_port = svc
                .port(port)
                .filter(|p| p.protocol.is_http())
                .or_else(|| svc.ports.iter().find(|p| p.protocol.is_http()));
            let Some(target_port) = target_port else {
                continue;
            };
            let domain = format!("{}.{}.{suffix}", svc.name, svc.namespace);
            if redirect {
                vhosts.require_tls.insert(domain.clone());
            }
            vhosts.add(
                &domain,
                vec![route_to(weighted(vec![(
                    outbound_cluster(target_port.number, "", &svc.hostname),
                    100,
                )]))],
            );
        }
    }
}

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    })
}

/// PEM bytes in line (a Secret's, for `credentialName`).
fn inline(bytes: &[u8]) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    }
}

/// The TLS a terminating HTTPS server presents on a gateway of namespace `gateway_ns`;
/// `None` when it has no certificate to present (a `credentialName` whose Secret that
/// namespace lacks, or MUTUAL without a client CA): the server is then not served.
fn server_tls(
    snapshot: &MeshSnapshot,
    gateway_ns: &str,
    server: &Server,
) -> Option<TransportSocket> {
    let tls = server.tls.as_ref()?;
    // The certificate, key and client CA: the Secret's in line (Envoy's config dump
    // redacts the key), or the files'.
    let (certificate_chain, private_key, ca) = match &tls.credential_name {
        Some(name) => {
            let c = snapshot.tls_credential(gateway_ns, name)?;
            (
                Some(inline(&c.certificate_chain)),
                Some(inline(&c.private_key)),
                c.ca_certificates.as_deref().map(inline),
            )
        }
        None => (
            tls.server_certificate.as_deref().and_then(file),
            tls.private_key.as_deref().and_then(file),
            tls.ca_certificates.as_deref().and_then(file),
        ),
    };
    let ctx = match tls.mode {
        ServerTlsMode::IstioMutual => return Some(downstream_mtls(&snapshot.mesh.trust_domain)),
        ServerTlsMode::Simple | ServerTlsMode::Mutual => {
            let mutual = tls.mode == ServerTlsMode::Mutual;
            if mutual && ca.is_none() {
                return None;
            }
            let validation = mutual.then(|| {
                common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: ca,
                        match_typed_subject_alt_names: tls
                            .subject_alt_names
                            .iter()
                            .map(|san| SubjectAltNameMatcher {
                                san_type: if san.starts_with("spiffe://") {
                                    SanType::Uri as i32
                                } else {
                                    SanType::Dns as i32
                                },
                                matcher: Some(StringMatcher {
                                    match_pattern: Some(string_matcher::MatchPattern::Exact(
                                        san.clone(),
                                    )),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    },
                )
            });
            DownstreamTlsContext {
                common_tls_context: Some(CommonTlsContext {
                    tls_certificates: vec![TlsCertificate {
                        certificate_chain,
                        private_key,
                        ..Default::default()
                    }],
                    validation_context_type: validation,
                    alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                    ..Default::default()
                }),
                require_client_certificate: Some(BoolValue { value: mutual }),
                ..Default::default()
            }
        }
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough => return None,
    };
    Some(TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(
            envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                any(&ctx),
            ),
        ),
    })
}

/// The clusters a route configuration sends to.
fn referenced_clusters(rc: &RouteConfiguration, out: &mut BTreeSet<String>) {
    for vh in &rc.virtual_hosts {
        for r in &vh.routes {
            let Some(route::Action::Route(a)) = &r.action else {
                continue;
            };
            match &a.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => {
                    out.insert(c.clone());
                }
                Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                    out.extend(w.clusters.iter().map(|c| c.name.clone()));
                }
                _ => {}
            }
            out.extend(a.request_mirror_policies.iter().map(|m| m.cluster.clone()));
        }
    }
}

/// Adds the HTTP and HTTPS servers of the Gateways selecting `proxy` (a router) to `res`.
pub fn add(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    authz: &crate::rbac::GatewayAuthz,
    res: &mut ProxyResources,
) {
    let mut http: BTreeMap<u32, Vec<GatewayServer<'_>>> = BTreeMap::new();
    let mut https: BTreeMap<u32, Vec<GatewayServer<'_>>> = BTreeMap::new();
    for g in snapshot.gateways_for(&proxy.labels) {
        for s in &g.rule.spec.servers {
            // HTTP servers ignore tls.mode (it only carries httpsRedirect there).
            if s.port.protocol.is_http() {
                http.entry(s.port.number).or_default().push((g, s));
                continue;
            }
            match s.tls.as_ref().map(|t| t.mode) {
                Some(
                    ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::IstioMutual,
                ) if s.port.protocol == isthmus_api::enums::Protocol::Https => {
                    https.entry(s.port.number).or_default().push((g, s));
                }
                _ => {}
            }
        }
    }
    // A port another kind of server already holds (passthrough) keeps it.
    let taken: BTreeSet<String> = res.listeners.iter().map(|l| l.name.clone()).collect();
    let mut clusters = BTreeSet::new();
    let mut listeners: BTreeMap<u32, Vec<FilterChain>> = BTreeMap::new();
    for (port, servers) in &http {
        if taken.contains(&format!("0.0.0.0_{port}")) {
            continue;
        }
        let mut vhosts = VirtualHosts::default();
        for s in servers {
            server_routes(snapshot, proxy, *s, *port, &mut vhosts);
        }
        let rc = vhosts.into_route_config(format!("http.{port}"), *port);
        referenced_clusters(&rc, &mut clusters);
        let stat = format!("outbound_0.0.0.0_{port}");
        // Mesh mTLS (a mesh client certificate required) and plain text, same routes.
        let chain = |mtls: bool| FilterChain {
            name: format!("http.{port}{}", if mtls { "-mtls" } else { "" }),
            filter_chain_match: Some(FilterChainMatch {
                transport_protocol: if mtls { "tls" } else { "raw_buffer" }.into(),
                ..Default::default()
            }),
            filters: vec![http_connection_manager_with(
                &stat,
                HcmRoute::Rds(rc.name.clone()),
                Some(mtls),
                authz.http(),
            )],
            transport_socket: mtls.then(|| downstream_mtls(&snapshot.mesh.trust_domain)),
            ..Default::default()
        };
        listeners
            .entry(*port)
            .or_default()
            .extend([chain(true), chain(false)]);
        res.routes.push(rc);
    }
    for (port, servers) in &https {
        if taken.contains(&format!("0.0.0.0_{port}")) || http.contains_key(port) {
            continue;
        }
        let mut used_names: BTreeSet<String> = BTreeSet::new();
        let mut catch_all = false;
        for (g, s) in servers {
            let Some(transport) = server_tls(snapshot, &proxy.id.namespace, s) else {
                continue;
            };
            let hosts: Vec<&str> = s
                .hosts
                .iter()
                .map(|h| server_host(h, &g.namespace).1)
                .collect();
            // Envoy refuses two chains with the same match: the first server keeps a name.
            let server_names: Vec<String> = if hosts.contains(&"*") {
                if std::mem::replace(&mut catch_all, true) {
                    continue;
                }
                Vec::new()
            } else {
                let names: Vec<String> = hosts
                    .iter()
                    .filter(|h| used_names.insert(h.to_string()))
                    .map(|h| h.to_string())
                    .collect();
                if names.is_empty() {
                    continue;
                }
                names
            };
            let name = format!(
                "https.{port}.{}.{}.{}",
                s.port.name, g.rule.metadata.name, g.namespace
            );
            let mut vhosts = VirtualHosts::default();
            server_routes(snapshot, proxy, (g, s), *port, &mut vhosts);
            let rc = vhosts.into_route_config(name.clone(), *port);
            referenced_clusters(&rc, &mut clusters);
            listeners.entry(*port).or_default().push(FilterChain {
                name: name.clone(),
                filter_chain_match: Some(FilterChainMatch {
                    server_names,
                    transport_protocol: "tls".into(),
                    ..Default::default()
                }),
                filters: vec![http_connection_manager_with(
                    &format!("outbound_0.0.0.0_{port}"),
                    HcmRoute::Rds(name),
                    Some(s.tls.as_ref().map(|t| t.mode) != Some(ServerTlsMode::Simple)),
                    authz.http(),
                )],
                transport_socket: Some(transport),
                ..Default::default()
            });
            res.routes.push(rc);
        }
    }
    for (port, chains) in listeners {
        if chains.is_empty() {
            continue;
        }
        res.listeners.push(Listener {
            name: format!("0.0.0.0_{port}"),
            address: Some(socket("0.0.0.0", port)),
            listener_filters: vec![tls_inspector()],
            filter_chains: chains,
            traffic_direction: 2,
            ..Default::default()
        });
    }
    if clusters.is_empty() {
        return;
    }
    // By the names generation gives them, not by reading names back.
    let targets = targets_by_name(snapshot, proxy);
    for name in clusters {
        if res.clusters.iter().any(|c| c.name == name) {
            continue;
        }
        let Some((t, sub)) = targets.get(&name) else {
            // A destination no registry knows: Envoy answers 503 (no cluster), as Istio does.
            continue;
        };
        let cluster = outbound(snapshot, proxy, t, *sub);
        if cluster.eds_cluster_config.is_some() {
            res.endpoints
                .push(load_assignment(snapshot, proxy, t, &name));
        }
        res.clusters.push(cluster);
    }
}
