//! RDS: one route configuration per outbound HTTP port (named by the port, as Istio does),
//! a virtual host per service, routes from VirtualServices or straight to the service.

use crate::http_route::{default_retry_policy, weighted};
use crate::names::{self, outbound_cluster};
use crate::pb::*;
use isthmus_model::{MeshSnapshot, Proxy, Service, ServiceOrigin};
use std::collections::BTreeMap;

/// The port on which sidecars route VirtualService hosts that name no service (Istio
/// does the same: such hosts have no port of their own).
pub const SERVICELESS_PORT: u32 = 80;

/// Route configurations for every HTTP port any service has.
pub fn outbound_routes(snapshot: &MeshSnapshot, proxy: &Proxy) -> Vec<RouteConfiguration> {
    let mut by_port: BTreeMap<u32, Vec<VirtualHost>> = BTreeMap::new();
    let scope = match proxy.id.kind {
        isthmus_model::NodeKind::Sidecar => snapshot.egress_scope(proxy),
        _ => None,
    };
    for svc in snapshot.services_in_scope(&scope) {
        if !snapshot.service_visible(svc, proxy) {
            continue;
        }
        for port in svc.ports.iter().filter(|p| p.carries_http()) {
            by_port.entry(port.number).or_default().push(virtual_host(
                snapshot,
                proxy,
                svc,
                port.number,
            ));
        }
    }
    if proxy.id.kind == isthmus_model::NodeKind::Sidecar {
        for (host, vs) in snapshot.serviceless_mesh_hosts() {
            if !MeshSnapshot::host_in_scope(&scope, &vs.namespace, &host)
                || !snapshot.virtual_service_visible(vs, &proxy.id.namespace)
            {
                continue;
            }
            let port = SERVICELESS_PORT;
            // The listener for this port exists (listener.rs), so its routes must too.
            by_port.entry(port).or_default();
            let mut routes: Vec<Route> = vs
                .rule
                .spec
                .http
                .iter()
                .flat_map(|h| crate::http_route::routes(h, port, &vs.namespace, None))
                .collect();
            if routes.is_empty() {
                continue;
            }
            crate::policy::add_hash_policies(snapshot, proxy, &mut routes);
            by_port.entry(port).or_default().push(VirtualHost {
                name: format!("{host}:{port}"),
                domains: vec![host.clone(), format!("{host}:{port}")],
                routes,
                ..Default::default()
            });
        }
    }
    let registry_only = snapshot.registry_only(proxy);
    by_port
        .into_iter()
        .map(|(port, mut vhosts)| {
            vhosts.push(if registry_only {
                // REGISTRY_ONLY: a Host the mesh does not know gets 502, as Istio's
                // `block_all`.
                VirtualHost {
                    name: "block_all".to_string(),
                    domains: vec!["*".to_string()],
                    routes: vec![Route {
                        r#match: Some(RouteMatch {
                            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                            ..Default::default()
                        }),
                        action: Some(route::Action::DirectResponse(
                            envoy_types::pb::envoy::config::route::v3::DirectResponseAction {
                                status: 502,
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            } else {
                // Requests to hosts outside the mesh are not retried (as istiod's
                // `allow_any` route): a 503 from someone else's server is theirs to retry.
                let mut passthrough =
                    route_to(weighted(vec![(names::PASSTHROUGH.to_string(), 100)]));
                if let Some(route::Action::Route(a)) = &mut passthrough.action {
                    a.retry_policy = None;
                }
                VirtualHost {
                    name: "allow_any".to_string(),
                    domains: vec!["*".to_string()],
                    routes: vec![passthrough],
                    ..Default::default()
                }
            });
            RouteConfiguration {
                name: port.to_string(),
                virtual_hosts: vhosts,
                validate_clusters: Some(BoolValue { value: false }),
                request_headers_to_add: vec![crate::telemetry::peer_header()],
                ..Default::default()
            }
        })
        .collect()
}

/// The names a client may use for `svc` on `port`.
pub fn domains(svc: &Service, port: u32, proxy_ns: &str) -> Vec<String> {
    let mut names = vec![svc.hostname.clone()];
    if svc.origin == ServiceOrigin::Kubernetes {
        names.push(format!("{}.{}", svc.name, svc.namespace));
        names.push(format!("{}.{}.svc", svc.name, svc.namespace));
        if svc.namespace == proxy_ns {
            names.push(svc.name.clone());
        }
    }
    if let Some(vip) = &svc.vip {
        names.push(vip.clone());
    }
    let mut out = Vec::new();
    for n in names {
        out.push(format!("{n}:{port}"));
        out.push(n);
    }
    // The absolute form of the full name (`Host: sleep.foo.svc.cluster.local.`), which a
    // client may send and istiod also routes.
    if svc.hostname.contains('.') && !svc.hostname.starts_with('*') {
        out.push(format!("{}.", svc.hostname));
    }
    out
}

fn virtual_host(snapshot: &MeshSnapshot, proxy: &Proxy, svc: &Service, port: u32) -> VirtualHost {
    let default = || outbound_cluster(port, "", &svc.hostname);
    let mut routes = Vec::new();
    if let Some(vs) = snapshot
        .mesh_virtual_services(&svc.hostname, &proxy.id.namespace)
        .into_iter()
        .next()
    {
        for http in &vs.rule.spec.http {
            routes.extend(crate::http_route::routes(http, port, &vs.namespace, None));
        }
    }
    if routes.is_empty() {
        routes.push(route_to(weighted(vec![(default(), 100)])));
    }
    crate::policy::add_hash_policies(snapshot, proxy, &mut routes);
    VirtualHost {
        name: format!("{}:{port}", svc.hostname),
        domains: domains(svc, port, &proxy.id.namespace),
        routes,
        ..Default::default()
    }
}

/// A catch-all route with this action.
pub fn route_to(spec: route_action::ClusterSpecifier) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(spec),
            timeout: Some(seconds(0)),
            retry_policy: Some(default_retry_policy()),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// An HTTP connection manager. `route` is an RDS name or an inline configuration;
/// `mtls` says whether the connection is mesh mTLS, in which case the caller's identity is
/// forwarded to the application in `x-forwarded-client-cert` (and for plain-text
/// connections any such header a client sent is removed, so it cannot be forged).
pub fn http_connection_manager(
    stat_prefix: &str,
    route: HcmRoute,
    inbound_mtls: Option<bool>,
) -> Filter {
    http_connection_manager_with(stat_prefix, route, inbound_mtls, Vec::new())
}

/// [`http_connection_manager`] with `first` (authorization) ahead of its own filters.
pub fn http_connection_manager_with(
    stat_prefix: &str,
    route: HcmRoute,
    inbound_mtls: Option<bool>,
    first: Vec<HttpFilter>,
) -> Filter {
    use crate::telemetry::Reporter;
    use http_connection_manager::{
        ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
    };
    // An inbound connection manager reports as the destination; outbound and gateway ones
    // as the source.
    let reporter = if inbound_mtls.is_some() {
        Reporter::Destination
    } else {
        Reporter::Source
    };
    let mut hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(match route {
            HcmRoute::Rds(name) => RouteSpecifier::Rds(Rds {
                config_source: Some(ads()),
                route_config_name: name,
            }),
            HcmRoute::Inline(rc) => RouteSpecifier::RouteConfig(*rc),
        }),
        http_filters: [crate::telemetry::peer_filter(reporter)]
            .into_iter()
            .chain(first)
            .chain([
                // Inert unless a route carries a CORS policy (VirtualService `corsPolicy`);
                // ahead of fault injection, as in Istio, so preflights are answered.
                HttpFilter {
                    name: crate::http_route::CORS_FILTER.to_string(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(Any {
                        type_url: "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
                            .into(),
                        value: Vec::new(),
                    })),
                    ..Default::default()
                },
                // Inert unless a route carries a fault (VirtualService `fault`).
                HttpFilter {
                    name: crate::http_route::FAULT_FILTER.to_string(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(Any {
                        type_url:
                            "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
                                .into(),
                        value: Vec::new(),
                    })),
                    ..Default::default()
                },
                HttpFilter {
                    name: "envoy.filters.http.router".to_string(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(Any {
                        type_url:
                            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                .into(),
                        value: Vec::new(),
                    })),
                    ..Default::default()
                },
            ])
            .collect(),
        use_remote_address: Some(BoolValue { value: false }),
        // Istio's default access log for people, and the telemetry line the agent counts.
        access_log: vec![
            stdout_access_log(),
            crate::telemetry::access_log(reporter, isthmus_api::telemetry::fields::HTTP),
        ],
        // WebSocket upgrades pass, as on every Istio HTTP connection manager (without it
        // Envoy answers an Upgrade request with 403).
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    match inbound_mtls {
        Some(true) => {
            hcm.forward_client_cert_details = ForwardClientCertDetails::AppendForward as i32;
            hcm.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
                subject: Some(BoolValue { value: true }),
                uri: true,
                dns: true,
                ..Default::default()
            });
        }
        Some(false) => hcm.forward_client_cert_details = ForwardClientCertDetails::Sanitize as i32,
        None => {}
    }
    network_filter("envoy.filters.network.http_connection_manager", &hcm)
}

/// Access log to stdout in Envoy's default format (close to Istio's): what people read in
/// the agent's log.
pub fn stdout_access_log() -> envoy_types::pb::envoy::config::accesslog::v3::AccessLog {
    use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
    AccessLog {
        name: "envoy.access_loggers.stdout".into(),
        config_type: Some(access_log::ConfigType::TypedConfig(Any {
            type_url:
                "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
                    .into(),
            value: Vec::new(),
        })),
        ..Default::default()
    }
}

/// Where an HTTP connection manager gets its routes.
#[derive(Debug, Clone)]
pub enum HcmRoute {
    /// By RDS name.
    Rds(String),
    /// Inline.
    Inline(Box<RouteConfiguration>),
}
