//! What the conformance report compares of each resource, read out of Envoy's messages into
//! plain JSON, each resource under its name. Only what decides traffic is kept (the issue's
//! list): for clusters their type, load balancing, circuit breakers, outlier detection, TLS
//! (mode, SNI, SANs, ALPN) and HTTP/2; for endpoints their addresses, weights, localities,
//! priorities and health; for listeners each filter chain's match and where it sends the
//! traffic; for routes each virtual host's domains and each route's match, action, retries and
//! timeout. Order that carries no meaning (domains, endpoints, chains) is sorted; statistics
//! names, version strings and filters only istio-proxy has are not read at all.

use super::fetch::{connection_managers, Fetched};
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, LbPolicy};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, TransportSocket};
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::config::listener::v3::{filter, FilterChainMatch, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, RetryPolicy, RouteConfiguration, RouteMatch,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, CertificateValidationContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The four kinds, as the report names them.
pub const KINDS: [&str; 4] = ["cluster", "endpoints", "listener", "route"];

/// What is compared: kind -> resource name -> its features.
pub type Features = BTreeMap<&'static str, BTreeMap<String, Value>>;

/// The features of everything one proxy received.
pub fn of(fetched: &Fetched) -> Features {
    let mut out = Features::new();
    out.insert(
        KINDS[0],
        fetched
            .clusters
            .iter()
            .map(|c| (c.name.clone(), cluster(c)))
            .collect(),
    );
    // Endpoints by EDS, and those a cluster carries itself (DNS and static clusters), under
    // the cluster's name: where they are sent is not what the comparison is about.
    let inline = fetched.clusters.iter().filter_map(|c| {
        let cla = c.load_assignment.as_ref()?;
        (!cla.endpoints.is_empty()).then(|| (c.name.clone(), endpoints(cla)))
    });
    out.insert(
        KINDS[1],
        inline
            .chain(
                fetched
                    .endpoints
                    .iter()
                    .map(|e| (e.cluster_name.clone(), endpoints(e))),
            )
            .collect(),
    );
    out.insert(
        KINDS[2],
        fetched
            .listeners
            .iter()
            .map(|l| (l.name.clone(), listener(l)))
            .collect(),
    );
    out.insert(
        KINDS[3],
        fetched
            .routes
            .iter()
            .flat_map(route_configuration)
            .collect(),
    );
    out
}

/// `1.5s`, as Envoy's JSON writes a duration; `null` when unset.
fn duration(d: Option<&PbDuration>) -> Value {
    match d {
        None => Value::Null,
        Some(d) if d.nanos == 0 => json!(format!("{}s", d.seconds)),
        Some(d) => json!(format!(
            "{:.3}s",
            d.seconds as f64 + f64::from(d.nanos) / 1e9
        )),
    }
}

fn u32_value(v: Option<&envoy_types::pb::google::protobuf::UInt32Value>) -> Value {
    v.map_or(Value::Null, |v| json!(v.value))
}

/// `exact:spiffe://...`, `prefix:...`: a string matcher as one string.
fn matcher(m: &StringMatcher) -> String {
    let case = if m.ignore_case { " (any case)" } else { "" };
    match &m.match_pattern {
        Some(MatchPattern::Exact(s)) => format!("exact:{s}{case}"),
        Some(MatchPattern::Prefix(s)) => format!("prefix:{s}{case}"),
        Some(MatchPattern::Suffix(s)) => format!("suffix:{s}{case}"),
        Some(MatchPattern::Contains(s)) => format!("contains:{s}{case}"),
        Some(MatchPattern::SafeRegex(r)) => format!("regex:{}", r.regex),
        Some(MatchPattern::Custom(c)) => format!("custom:{}", c.name),
        None => "any".into(),
    }
}

/// The SANs a validation context accepts, sorted.
fn sans(v: &CertificateValidationContext) -> Vec<String> {
    #[allow(deprecated)]
    let old = v.match_subject_alt_names.iter().map(matcher);
    let mut out: Vec<String> = v
        .match_typed_subject_alt_names
        .iter()
        .filter_map(|m| m.matcher.as_ref())
        .map(matcher)
        .chain(old)
        .collect();
    out.sort();
    out
}

/// A transport socket: `plaintext`, or the upstream TLS it makes.
fn transport_socket(t: Option<&TransportSocket>) -> Value {
    let Some(t) = t else {
        return json!("plaintext");
    };
    let Some(SocketConfig::TypedConfig(any)) = &t.config_type else {
        return json!(t.name);
    };
    if !any.type_url.ends_with("UpstreamTlsContext") {
        return json!(any.type_url.rsplit('.').next().unwrap_or(&any.type_url));
    }
    let Ok(tls) = UpstreamTlsContext::decode(any.value.as_slice()) else {
        return json!("undecodable UpstreamTlsContext");
    };
    let common = tls.common_tls_context.unwrap_or_default();
    let (sans, roots) = match &common.validation_context_type {
        Some(ValidationContextType::ValidationContext(v)) => (sans(v), json!("inline")),
        Some(ValidationContextType::CombinedValidationContext(c)) => (
            c.default_validation_context
                .as_ref()
                .map(sans)
                .unwrap_or_default(),
            json!(c
                .validation_context_sds_secret_config
                .as_ref()
                .map_or("inline".to_string(), |s| format!("sds:{}", s.name))),
        ),
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            (Vec::new(), json!(format!("sds:{}", s.name)))
        }
        Some(_) => (Vec::new(), json!("other")),
        None => (Vec::new(), json!("none (not verified)")),
    };
    let certificate: Vec<String> = common
        .tls_certificate_sds_secret_configs
        .iter()
        .map(|s| format!("sds:{}", s.name))
        .chain((!common.tls_certificates.is_empty()).then(|| "inline".to_string()))
        .collect();
    json!({
        "sni": tls.sni,
        "sans": sans,
        "alpn": common.alpn_protocols,
        "client_certificate": certificate,
        "roots": roots,
    })
}

/// How a cluster speaks HTTP upstream.
fn http_protocol(c: &Cluster) -> Value {
    let Some(any) = c
        .typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    else {
        return json!("default (HTTP/1.1)");
    };
    let Ok(o) = HttpProtocolOptions::decode(any.value.as_slice()) else {
        return json!("undecodable");
    };
    let protocol = match o.upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match e.protocol_config {
            Some(ProtocolConfig::Http2ProtocolOptions(_)) => "HTTP/2",
            Some(ProtocolConfig::HttpProtocolOptions(_)) => "HTTP/1.1",
            Some(ProtocolConfig::Http3ProtocolOptions(_)) => "HTTP/3",
            None => "explicit, unset",
        },
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_)) => "as downstream",
        Some(UpstreamProtocolOptions::AutoConfig(_)) => "auto (ALPN)",
        None => "default (HTTP/1.1)",
    };
    let common = o.common_http_protocol_options.unwrap_or_default();
    json!({
        "protocol": protocol,
        "max_requests_per_connection": u32_value(common.max_requests_per_connection.as_ref()),
        "idle_timeout": duration(common.idle_timeout.as_ref()),
    })
}

/// A cluster's features.
pub fn cluster(c: &Cluster) -> Value {
    let kind = match &c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => {
            envoy_types::pb::envoy::config::cluster::v3::cluster::DiscoveryType::try_from(*t)
                .map_or_else(|_| t.to_string(), |d| d.as_str_name().to_string())
        }
        Some(ClusterDiscoveryType::ClusterType(t)) => format!("custom:{}", t.name),
        None => "STATIC".into(),
    };
    let thresholds: Vec<Value> = c
        .circuit_breakers
        .iter()
        .flat_map(|b| b.thresholds.iter())
        .map(|t| {
            json!({
                "priority": t.priority,
                "max_connections": u32_value(t.max_connections.as_ref()),
                "max_pending_requests": u32_value(t.max_pending_requests.as_ref()),
                "max_requests": u32_value(t.max_requests.as_ref()),
                "max_retries": u32_value(t.max_retries.as_ref()),
            })
        })
        .collect();
    let outlier = c.outlier_detection.as_ref().map_or(Value::Null, |o| {
        json!({
            "consecutive_5xx": u32_value(o.consecutive_5xx.as_ref()),
            "consecutive_gateway_failure": u32_value(o.consecutive_gateway_failure.as_ref()),
            "interval": duration(o.interval.as_ref()),
            "base_ejection_time": duration(o.base_ejection_time.as_ref()),
            "max_ejection_percent": u32_value(o.max_ejection_percent.as_ref()),
        })
    });
    // Automatic mTLS, in one form whichever way it is written: istiod matches sidecar
    // endpoints (`tlsMode: istio`) to mTLS and falls back to plain text; Isthmus keeps mTLS
    // as the cluster's socket and matches endpoints without a sidecar (`tlsMode: disabled`)
    // to plain text. What counts is the socket each kind of endpoint gets.
    let default = transport_socket(c.transport_socket.as_ref());
    let matching = |want: Option<&str>| {
        c.transport_socket_matches
            .iter()
            .find(|m| {
                let mode = m.r#match.as_ref().and_then(|s| s.fields.get("tlsMode"));
                match (want, mode) {
                    (None, None) => m.r#match.as_ref().is_none_or(|s| s.fields.is_empty()),
                    (Some(w), Some(v)) => matches!(
                        &v.kind,
                        Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(x)) if x == w
                    ),
                    _ => false,
                }
            })
            .map(|m| transport_socket(m.transport_socket.as_ref()))
    };
    let sidecar = matching(Some("istio")).unwrap_or_else(|| default.clone());
    let without = matching(Some("disabled"))
        .or_else(|| matching(None))
        .unwrap_or_else(|| default.clone());
    let tls = if sidecar == without {
        sidecar
    } else {
        json!({"endpoints with a sidecar": sidecar, "endpoints without a sidecar": without})
    };
    json!({
        "type": kind,
        "eds_service_name": c.eds_cluster_config.as_ref().map(|e| e.service_name.clone()),
        "lb_policy": LbPolicy::try_from(c.lb_policy).map_or_else(|_| c.lb_policy.to_string(), |p| p.as_str_name().to_string()),
        "connect_timeout": duration(c.connect_timeout.as_ref()),
        "circuit_breakers": thresholds,
        "outlier_detection": outlier,
        "tls": tls,
        "http": http_protocol(c),
    })
}

/// `1.2.3.4:80`, `pipe:/path`, or what else an address is.
fn address(a: Option<&Address>) -> String {
    match a.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => match &s.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(p)) => format!("{}:{p}", s.address),
            Some(socket_address::PortSpecifier::NamedPort(p)) => format!("{}:{p}", s.address),
            None => s.address.clone(),
        },
        Some(address::Address::Pipe(p)) => format!("pipe:{}", p.path),
        Some(_) => "other".into(),
        None => "none".into(),
    }
}

/// A cluster's endpoints: each as `address weight priority locality health`, sorted, and
/// the locality weights.
pub fn endpoints(e: &ClusterLoadAssignment) -> Value {
    let mut hosts = Vec::new();
    let mut localities = Vec::new();
    for group in &e.endpoints {
        // No locality and an empty one are the same to Envoy.
        let locality = group
            .locality
            .as_ref()
            .filter(|l| !(l.region.is_empty() && l.zone.is_empty() && l.sub_zone.is_empty()))
            .map_or(String::new(), |l| {
                format!("{}/{}/{}", l.region, l.zone, l.sub_zone)
            });
        // A locality's weight only counts with locality-weighted balancing, where it is
        // kept; the sum of its endpoints' weights (istiod's habit) changes nothing.
        let sum: u32 = group
            .lb_endpoints
            .iter()
            .map(|e| e.load_balancing_weight.as_ref().map_or(1, |w| w.value))
            .sum();
        if let Some(w) = group
            .load_balancing_weight
            .as_ref()
            .filter(|w| w.value != sum)
        {
            localities.push(format!("{locality} weight {}", w.value));
        }
        for lb in &group.lb_endpoints {
            let at = match &lb.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => address(ep.address.as_ref()),
                Some(lb_endpoint::HostIdentifier::EndpointName(n)) => format!("named:{n}"),
                None => "none".into(),
            };
            // Envoy routes to UNKNOWN as to HEALTHY.
            use envoy_types::pb::envoy::config::core::v3::HealthStatus;
            let health = match HealthStatus::try_from(lb.health_status) {
                Ok(HealthStatus::Unknown | HealthStatus::Healthy) => "healthy".to_string(),
                Ok(h) => h.as_str_name().to_string(),
                Err(_) => lb.health_status.to_string(),
            };
            // Which endpoints carry a transport socket match (`tlsMode`) is the cluster's
            // automatic mTLS, compared there as the socket each kind of endpoint gets.
            hosts.push(format!(
                "{at} weight={} priority={} locality={locality} health={health}",
                lb.load_balancing_weight.as_ref().map_or(1, |w| w.value),
                group.priority,
            ));
        }
    }
    hosts.sort();
    localities.sort();
    json!({"endpoints": hosts, "locality_weights": localities})
}

/// A filter chain match as one line (only what is set).
fn chain_match(m: Option<&FilterChainMatch>) -> String {
    let Some(m) = m else {
        return "any".into();
    };
    let mut parts = Vec::new();
    if let Some(p) = &m.destination_port {
        parts.push(format!("port={}", p.value));
    }
    let cidrs = |r: &[envoy_types::pb::envoy::config::core::v3::CidrRange]| {
        r.iter()
            .map(|c| {
                format!(
                    "{}/{}",
                    c.address_prefix,
                    c.prefix_len.as_ref().map_or(0, |l| l.value)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    if !m.prefix_ranges.is_empty() {
        parts.push(format!("destination={}", cidrs(&m.prefix_ranges)));
    }
    if !m.source_prefix_ranges.is_empty() {
        parts.push(format!("source={}", cidrs(&m.source_prefix_ranges)));
    }
    if !m.direct_source_prefix_ranges.is_empty() {
        parts.push(format!(
            "direct_source={}",
            cidrs(&m.direct_source_prefix_ranges)
        ));
    }
    if m.source_type != 0 {
        parts.push(format!("source_type={}", m.source_type));
    }
    if !m.server_names.is_empty() {
        let mut names = m.server_names.clone();
        names.sort();
        parts.push(format!("sni={}", names.join(",")));
    }
    if !m.transport_protocol.is_empty() {
        parts.push(format!("transport={}", m.transport_protocol));
    }
    if !m.application_protocols.is_empty() {
        parts.push(format!("alpn={}", m.application_protocols.join(",")));
    }
    if parts.is_empty() {
        "any".into()
    } else {
        parts.join(" ")
    }
}

/// Where a chain sends its traffic: `rds:NAME`, `tcp:CLUSTER`, or its terminal filter.
fn chain_target(chain: &envoy_types::pb::envoy::config::listener::v3::FilterChain) -> String {
    let one = envoy_types::pb::envoy::config::listener::v3::Listener {
        filter_chains: vec![chain.clone()],
        ..Default::default()
    };
    if let Some(h) = connection_managers(&one).into_iter().next() {
        return match h.route_specifier {
            Some(RouteSpecifier::Rds(r)) => format!("http, routes {}", r.route_config_name),
            Some(RouteSpecifier::RouteConfig(r)) => format!(
                "http, inline routes to {}",
                r.virtual_hosts
                    .iter()
                    .flat_map(|v| v.routes.iter())
                    .filter_map(|r| match &r.action {
                        Some(route::Action::Route(a)) => match &a.cluster_specifier {
                            Some(route_action::ClusterSpecifier::Cluster(c)) => Some(c.clone()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => "http".into(),
        };
    }
    for f in chain.filters.iter().rev() {
        if let Some(filter::ConfigType::TypedConfig(a)) = &f.config_type {
            if a.type_url.ends_with("tcp_proxy.v3.TcpProxy") {
                if let Ok(t) = TcpProxy::decode(a.value.as_slice()) {
                    return match t.cluster_specifier {
                        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => format!("tcp, {c}"),
                        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => format!(
                            "tcp, {}",
                            w.clusters
                                .iter()
                                .map(|c| format!("{} weight {}", c.name, c.weight))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => "tcp".into(),
                    };
                }
            }
        }
    }
    chain
        .filters
        .last()
        .map_or("no filters".into(), |f| f.name.clone())
}

/// A listener's features: where it listens and, per filter chain match, where traffic goes.
pub fn listener(l: &Listener) -> Value {
    let mut chains: Vec<String> = l
        .filter_chains
        .iter()
        .map(|c| {
            format!(
                "{} -> {}",
                chain_match(c.filter_chain_match.as_ref()),
                chain_target(c)
            )
        })
        .collect();
    chains.sort();
    let default = l.default_filter_chain.as_ref().map(chain_target);
    json!({
        "address": address(l.address.as_ref()),
        "use_original_dst": l.use_original_dst.as_ref().is_some_and(|b| b.value),
        "bind_to_port": l.bind_to_port.as_ref().is_none_or(|b| b.value),
        "filter_chains": chains,
        "default_filter_chain": default,
    })
}

fn route_match(m: Option<&RouteMatch>) -> String {
    let Some(m) = m else {
        return "none".into();
    };
    let path = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => format!("prefix {p}"),
        Some(route_match::PathSpecifier::Path(p)) => format!("path {p}"),
        Some(route_match::PathSpecifier::SafeRegex(r)) => format!("regex {}", r.regex),
        Some(route_match::PathSpecifier::PathSeparatedPrefix(p)) => format!("path prefix {p}"),
        Some(_) => "other path match".into(),
        None => "no path".into(),
    };
    let mut out = vec![path];
    for h in &m.headers {
        out.push(format!("header {}", h.name));
    }
    for q in &m.query_parameters {
        out.push(format!("query {}", q.name));
    }
    if m.case_sensitive.as_ref().is_some_and(|c| !c.value) {
        out.push("any case".into());
    }
    out.join(", ")
}

fn retries(r: Option<&RetryPolicy>) -> Value {
    r.map_or(Value::Null, |r| {
        json!({
            "retry_on": r.retry_on,
            "num_retries": u32_value(r.num_retries.as_ref()),
            "per_try_timeout": duration(r.per_try_timeout.as_ref()),
        })
    })
}

/// Each virtual host of a route configuration, named `CONFIG/VHOST`, with its domains and
/// routes.
pub fn route_configuration(rc: &RouteConfiguration) -> Vec<(String, Value)> {
    rc.virtual_hosts
        .iter()
        .map(|v| {
            let mut domains = v.domains.clone();
            domains.sort();
            let routes: Vec<Value> = v
                .routes
                .iter()
                .map(|r| {
                    let action = match &r.action {
                        Some(route::Action::Route(a)) => {
                            let to = match &a.cluster_specifier {
                                Some(route_action::ClusterSpecifier::Cluster(c)) => json!(c),
                                Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                                    json!(w
                                        .clusters
                                        .iter()
                                        .map(|c| format!(
                                            "{} weight {}",
                                            c.name,
                                            u32_value(c.weight.as_ref())
                                        ))
                                        .collect::<Vec<_>>())
                                }
                                Some(route_action::ClusterSpecifier::ClusterHeader(h)) => {
                                    json!(format!("from header {h}"))
                                }
                                _ => json!("other"),
                            };
                            json!({
                                "to": to,
                                "timeout": duration(a.timeout.as_ref()),
                                "retries": retries(a.retry_policy.as_ref()),
                            })
                        }
                        Some(route::Action::Redirect(_)) => json!("redirect"),
                        Some(route::Action::DirectResponse(d)) => {
                            json!(format!("direct response {}", d.status))
                        }
                        Some(_) => json!("other"),
                        None => Value::Null,
                    };
                    json!({"match": route_match(r.r#match.as_ref()), "action": action})
                })
                .collect();
            (
                format!("{}/{}", rc.name, v.name),
                json!({
                    "domains": domains,
                    "routes": routes,
                    "retries": retries(v.retry_policy.as_ref()),
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        DiscoveryType, TransportSocketMatch,
    };
    use envoy_types::pb::envoy::config::core::v3::{Locality, SocketAddress};
    use envoy_types::pb::envoy::config::endpoint::v3::{Endpoint, LbEndpoint, LocalityLbEndpoints};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        CommonTlsContext, SdsSecretConfig, SubjectAltNameMatcher,
    };
    use envoy_types::pb::google::protobuf::{Any, UInt32Value};

    fn tls_socket(sni: &str, san: &str) -> TransportSocket {
        let ctx = UpstreamTlsContext {
            sni: sni.into(),
            common_tls_context: Some(CommonTlsContext {
                alpn_protocols: vec!["istio".into()],
                tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                    name: "default".into(),
                    ..Default::default()
                }],
                validation_context_type: Some(ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                            matcher: Some(StringMatcher {
                                match_pattern: Some(MatchPattern::Exact(san.into())),
                                ignore_case: false,
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            ..Default::default()
        };
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(SocketConfig::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext".into(),
                value: ctx.encode_to_vec(),
            })),
        }
    }

    #[test]
    fn a_cluster_is_read_for_type_tls_by_endpoint_label_and_protocol() {
        let c = Cluster {
            name: "outbound|8000||httpbin.bar.global".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(
                DiscoveryType::StrictDns as i32,
            )),
            lb_policy: LbPolicy::LeastRequest as i32,
            transport_socket_matches: vec![TransportSocketMatch {
                name: "tlsMode-istio".into(),
                r#match: Some(envoy_types::pb::google::protobuf::Struct {
                    fields: [(
                        "tlsMode".to_string(),
                        envoy_types::pb::google::protobuf::Value {
                            kind: Some(
                                envoy_types::pb::google::protobuf::value::Kind::StringValue(
                                    "istio".into(),
                                ),
                            ),
                        },
                    )]
                    .into_iter()
                    .collect(),
                }),
                transport_socket: Some(tls_socket(
                    "outbound_.8000_._.httpbin.bar.global",
                    "spiffe://cluster.local/ns/bar/sa/httpbin",
                )),
            }],
            ..Default::default()
        };
        let f = cluster(&c);
        assert_eq!(f["type"], "STRICT_DNS");
        assert_eq!(f["lb_policy"], "LEAST_REQUEST");
        assert_eq!(f["http"], "default (HTTP/1.1)");
        let tls = &f["tls"]["endpoints with a sidecar"];
        assert_eq!(tls["sni"], "outbound_.8000_._.httpbin.bar.global");
        assert_eq!(
            tls["sans"],
            json!(["exact:spiffe://cluster.local/ns/bar/sa/httpbin"])
        );
        assert_eq!(tls["client_certificate"], json!(["sds:default"]));
        assert_eq!(f["tls"]["endpoints without a sidecar"], "plaintext");
    }

    #[test]
    fn endpoints_are_sorted_with_weight_priority_and_locality() {
        let ep = |ip: &str, w: u32| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: ip.into(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(15443)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value { value: w }),
            ..Default::default()
        };
        let cla = ClusterLoadAssignment {
            cluster_name: "c".into(),
            endpoints: vec![LocalityLbEndpoints {
                locality: Some(Locality {
                    region: "r".into(),
                    zone: "z".into(),
                    sub_zone: String::new(),
                }),
                lb_endpoints: vec![ep("198.18.1.2", 3), ep("10.10.0.11", 1)],
                priority: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            endpoints(&cla)["endpoints"],
            json!([
                "10.10.0.11:15443 weight=1 priority=1 locality=r/z/ health=healthy",
                "198.18.1.2:15443 weight=3 priority=1 locality=r/z/ health=healthy"
            ])
        );
    }
}
