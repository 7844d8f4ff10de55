//! VirtualService HTTP routes to Envoy routes: match (uri exact/prefix/regex, headers,
//! authority, method, query parameters), weighted destinations, rewrite, redirect, retries,
//! timeout, fault injection (delay, abort), mirrors, CORS and header manipulation (per route
//! and per destination).

use crate::names::outbound_cluster;
use crate::pb::*;
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, retry_policy, HeaderMatcher,
    QueryParameterMatcher, RedirectAction, RetryPolicy,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent};
use isthmus_api::networking::{
    HeaderOperations, HttpFault, HttpMatchRequest, HttpRedirect, HttpRetry, HttpRoute, Percent,
    StringMatch,
};
use isthmus_model::fqdn;
use prost::Message;

/// The fault filter's name, also the key of its per-route configuration.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// The CORS filter's name, also the key of its per-route configuration.
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

/// Parses an Istio duration (`5s`, `100ms`, `1m`, `1.5s`, `2h`) as a protobuf duration.
pub fn duration(s: &str) -> Option<Duration> {
    let d = isthmus_api::duration::parse(s)?;
    Some(Duration {
        seconds: i64::try_from(d.as_secs()).ok()?,
        nanos: d.subsec_nanos() as i32,
    })
}

/// An Istio `StringMatch` as an Envoy one; `None` when it sets nothing (presence).
fn string_matcher(m: &StringMatch) -> Option<StringMatcher> {
    let pattern = if let Some(e) = &m.exact {
        string_matcher::MatchPattern::Exact(e.clone())
    } else if let Some(p) = &m.prefix {
        string_matcher::MatchPattern::Prefix(p.clone())
    } else if let Some(r) = &m.regex {
        string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: r.clone(),
            ..Default::default()
        })
    } else {
        return None;
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    })
}

/// A header condition; an empty match asks only that the header be present.
fn header(name: &str, m: &StringMatch) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(match string_matcher(m) {
            Some(sm) => header_matcher::HeaderMatchSpecifier::StringMatch(sm),
            None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        }),
        ..Default::default()
    }
}

/// One Istio `HTTPMatchRequest` (or none: every request) as an Envoy route match.
fn route_match(m: Option<&HttpMatchRequest>) -> RouteMatch {
    let mut out = RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..Default::default()
    };
    let Some(m) = m else { return out };
    if let Some(uri) = &m.uri {
        if let Some(e) = &uri.exact {
            out.path_specifier = Some(route_match::PathSpecifier::Path(e.clone()));
        } else if let Some(p) = &uri.prefix {
            out.path_specifier = Some(route_match::PathSpecifier::Prefix(p.clone()));
        } else if let Some(r) = &uri.regex {
            out.path_specifier = Some(route_match::PathSpecifier::SafeRegex(RegexMatcher {
                regex: r.clone(),
                ..Default::default()
            }));
        }
    }
    if m.ignore_uri_case {
        out.case_sensitive = Some(BoolValue { value: false });
    }
    for (name, v) in &m.headers {
        out.headers.push(header(&name.to_ascii_lowercase(), v));
    }
    for (name, v) in [
        (":scheme", &m.scheme),
        (":authority", &m.authority),
        (":method", &m.method),
    ] {
        if let Some(v) = v {
            out.headers.push(header(name, v));
        }
    }
    for (name, v) in &m.query_params {
        out.query_parameters.push(QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match string_matcher(v) {
                Some(sm) => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(sm),
                None => query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        });
    }
    out
}

/// Istio's percentage as Envoy's fraction of a million; `None` when absent.
fn percent(p: Option<Percent>) -> Option<FractionalPercent> {
    let p = p?.value;
    Some(FractionalPercent {
        numerator: (p * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    })
}

/// Every request, when Istio's percentage is absent.
const ALL: FractionalPercent = FractionalPercent {
    numerator: 100,
    denominator: 0,
};

/// The per-route fault configuration, encoded for `typed_per_filter_config`.
fn fault(f: &HttpFault) -> Option<Any> {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{fault_delay, FaultDelay};
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
        fault_abort, FaultAbort, HttpFault as EnvoyFault,
    };
    let mut out = EnvoyFault::default();
    if let Some(d) = &f.delay {
        let fixed = d.fixed_delay.as_deref().and_then(duration)?;
        out.delay = Some(FaultDelay {
            percentage: percent(d.percentage).or(Some(ALL)),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(fixed)),
        });
    }
    if let Some(a) = &f.abort {
        let error_type = match (a.http_status, &a.grpc_status) {
            (Some(status), _) => fault_abort::ErrorType::HttpStatus(status),
            (None, Some(g)) => {
                fault_abort::ErrorType::GrpcStatus(isthmus_api::validate::grpc_status(g)?)
            }
            (None, None) => return None,
        };
        out.abort = Some(FaultAbort {
            percentage: percent(a.percentage).or(Some(ALL)),
            error_type: Some(error_type),
            ..Default::default()
        });
    }
    if out.delay.is_none() && out.abort.is_none() {
        return None;
    }
    Some(Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault".into(),
        value: out.encode_to_vec(),
    })
}

fn header_ops(v: Option<&HeaderOperations>) -> (Vec<HeaderValueOption>, Vec<String>) {
    let mut add = Vec::new();
    let Some(v) = v else {
        return (add, Vec::new());
    };
    for (map, action) in [
        (&v.set, HeaderAppendAction::OverwriteIfExistsOrAdd),
        (&v.add, HeaderAppendAction::AppendIfExistsOrAdd),
    ] {
        for (k, val) in map {
            add.push(HeaderValueOption {
                header: Some(HeaderValue {
                    key: k.clone(),
                    value: val.clone(),
                    ..Default::default()
                }),
                append_action: action as i32,
                ..Default::default()
            });
        }
    }
    (add, v.remove.clone())
}

fn retries(r: &HttpRetry) -> RetryPolicy {
    let mut p = default_retry_policy();
    p.num_retries = Some(UInt32Value { value: r.attempts });
    if let Some(on) = &r.retry_on {
        // Istio puts status codes in retryOn; Envoy takes them apart.
        let (codes, conditions): (Vec<&str>, Vec<&str>) = on
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .partition(|c| c.parse::<u32>().is_ok());
        let mut conditions: Vec<&str> = conditions;
        p.retriable_status_codes = codes.iter().filter_map(|c| c.parse().ok()).collect();
        if !codes.is_empty() && !conditions.contains(&"retriable-status-codes") {
            conditions.push("retriable-status-codes");
        }
        p.retry_on = conditions.join(",");
    }
    p.per_try_timeout = r.per_try_timeout.as_deref().and_then(duration);
    if r.attempts == 0 || r.retry_ignore_previous_hosts == Some(false) {
        p.retry_host_predicate = Vec::<retry_policy::RetryHostPredicate>::new();
    }
    if let Some(base) = r.backoff.as_deref().and_then(duration) {
        p.retry_back_off = Some(retry_policy::RetryBackOff {
            base_interval: Some(base),
            ..Default::default()
        });
    }
    p
}

/// Whether one `HTTPMatchRequest` applies where the routes are built: its `gateways` (when
/// given) must name the context (`mesh` for sidecars, the Gateway for a gateway) and its
/// `port` (when given) must be the port.
fn match_applies(m: &HttpMatchRequest, port: u32, ns: &str, gateway: Option<(&str, &str)>) -> bool {
    if m.port.is_some_and(|p| p != port) {
        return false;
    }
    if let Some(names) = &m.gateways {
        return match gateway {
            None => names.iter().any(|g| g == "mesh"),
            Some((gw_ns, gw_name)) => isthmus_model::binds_gateway(ns, names, gw_ns, gw_name),
        };
    }
    true
}

/// `directResponse`: the status, and the body as text or as the bytes its base64 gives.
fn direct_response(d: &isthmus_api::networking::HttpDirectResponse) -> route::Action {
    use base64::Engine as _;
    use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
    let body = d.body.as_ref().and_then(|b| {
        let specifier = match (&b.string, &b.bytes) {
            (Some(text), _) => Specifier::InlineString(text.clone()),
            (None, Some(b64)) => {
                Specifier::InlineBytes(base64::engine::general_purpose::STANDARD.decode(b64).ok()?)
            }
            (None, None) => return None,
        };
        Some(DataSource {
            specifier: Some(specifier),
            ..Default::default()
        })
    });
    route::Action::DirectResponse(
        envoy_types::pb::envoy::config::route::v3::DirectResponseAction {
            status: d.status,
            body,
            ..Default::default()
        },
    )
}

fn redirect(rd: &HttpRedirect) -> route::Action {
    let code = match rd.redirect_code {
        Some(302) => redirect_action::RedirectResponseCode::Found,
        Some(303) => redirect_action::RedirectResponseCode::SeeOther,
        Some(307) => redirect_action::RedirectResponseCode::TemporaryRedirect,
        Some(308) => redirect_action::RedirectResponseCode::PermanentRedirect,
        _ => redirect_action::RedirectResponseCode::MovedPermanently,
    };
    route::Action::Redirect(RedirectAction {
        host_redirect: rd.authority.clone().unwrap_or_default(),
        port_redirect: rd.port.unwrap_or_default(),
        scheme_rewrite_specifier: rd
            .scheme
            .clone()
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: rd
            .uri
            .clone()
            .map(redirect_action::PathRewriteSpecifier::PathRedirect),
        response_code: code as i32,
        ..Default::default()
    })
}

/// The Envoy routes of one Istio HTTP route; `port` is the port the request arrived for,
/// `ns` the VirtualService's namespace (short hosts are relative to it), `gateway` the
/// Gateway (`namespace`, `name`) the routes are for, `None` for sidecars (`mesh`).
pub fn routes(http: &HttpRoute, port: u32, ns: &str, gateway: Option<(&str, &str)>) -> Vec<Route> {
    let applicable: Vec<&HttpMatchRequest> = http
        .match_
        .iter()
        .filter(|m| match_applies(m, port, ns, gateway))
        .collect();
    if !http.match_.is_empty() && applicable.is_empty() {
        return Vec::new();
    }
    let action = if let Some(rd) = &http.redirect {
        redirect(rd)
    } else if let Some(d) = &http.direct_response {
        direct_response(d)
    } else {
        let dests: Vec<(String, u32)> = http
            .route
            .iter()
            .map(|d| {
                let host = fqdn(&d.destination.host, ns);
                let dport = d
                    .destination
                    .port
                    .as_ref()
                    .map(|p| p.number)
                    .unwrap_or(port);
                let subset = d.destination.subset.clone().unwrap_or_default();
                (
                    outbound_cluster(dport, &subset, &host),
                    d.weight.unwrap_or(100),
                )
            })
            .collect();
        if dests.is_empty() {
            return Vec::new();
        }
        let mut a = RouteAction {
            cluster_specifier: Some(weighted(dests)),
            timeout: Some(
                http.timeout
                    .as_deref()
                    .and_then(duration)
                    .unwrap_or(Duration {
                        seconds: 0,
                        nanos: 0,
                    }),
            ),
            retry_policy: Some(
                http.retries
                    .as_ref()
                    .map(retries)
                    .unwrap_or_else(default_retry_policy),
            ),
            ..Default::default()
        };
        if let Some(rw) = &http.rewrite {
            if let Some(u) = &rw.uri {
                a.prefix_rewrite = u.clone();
            }
            if let Some(rx) = &rw.uri_regex_rewrite {
                a.regex_rewrite = Some(RegexMatchAndSubstitute {
                    pattern: Some(RegexMatcher {
                        regex: rx.match_.clone(),
                        ..Default::default()
                    }),
                    substitution: rx.rewrite.clone(),
                });
            }
            if let Some(h) = &rw.authority {
                a.host_rewrite_specifier = Some(
                    route_action::HostRewriteSpecifier::HostRewriteLiteral(h.clone()),
                );
            }
        }
        let mirrors = http
            .mirror
            .iter()
            .map(|m| (m, http.mirror_percentage))
            .chain(http.mirrors.iter().map(|m| (&m.destination, m.percentage)));
        for (m, share) in mirrors {
            let mport = m.port.as_ref().map(|p| p.number).unwrap_or(port);
            let subset = m.subset.as_deref().unwrap_or_default();
            a.request_mirror_policies
                .push(route_action::RequestMirrorPolicy {
                    cluster: outbound_cluster(mport, subset, &fqdn(&m.host, ns)),
                    runtime_fraction: percent(share).map(|p| {
                        envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent {
                            default_value: Some(p),
                            ..Default::default()
                        }
                    }),
                    ..Default::default()
                });
        }
        route::Action::Route(a)
    };
    let headers = http.headers.as_ref();
    let (mut req_add, mut req_remove) = header_ops(headers.and_then(|h| h.request.as_ref()));
    let (mut resp_add, mut resp_remove) = header_ops(headers.and_then(|h| h.response.as_ref()));
    let mut action = action;
    destination_headers(
        &mut action,
        http,
        [&mut req_add, &mut resp_add],
        [&mut req_remove, &mut resp_remove],
    );
    let mut per_filter: std::collections::HashMap<String, Any> = http
        .fault
        .as_ref()
        .and_then(fault)
        .map(|f| std::iter::once((FAULT_FILTER.to_string(), f)).collect())
        .unwrap_or_default();
    if let Some(c) = &http.cors_policy {
        per_filter.insert(CORS_FILTER.to_string(), cors(c));
    }
    let matches: Vec<RouteMatch> = if applicable.is_empty() {
        vec![route_match(None)]
    } else {
        applicable
            .into_iter()
            .map(|m| route_match(Some(m)))
            .collect()
    };
    matches
        .into_iter()
        .map(|m| Route {
            name: http.name.clone().unwrap_or_default(),
            r#match: Some(m),
            action: Some(action.clone()),
            request_headers_to_add: req_add.clone(),
            request_headers_to_remove: req_remove.clone(),
            response_headers_to_add: resp_add.clone(),
            response_headers_to_remove: resp_remove.clone(),
            typed_per_filter_config: per_filter.clone(),
            ..Default::default()
        })
        .collect()
}

/// Per-destination header changes (`route[].headers`): on each weighted cluster, or, with
/// one destination, after the route's own changes, as Istio does.
fn destination_headers(
    action: &mut route::Action,
    http: &HttpRoute,
    [req_add, resp_add]: [&mut Vec<HeaderValueOption>; 2],
    [req_remove, resp_remove]: [&mut Vec<String>; 2],
) {
    let route::Action::Route(a) = action else {
        return;
    };
    let ops = |d: &isthmus_api::networking::RouteDestination| {
        let h = d.headers.as_ref();
        (
            header_ops(h.and_then(|h| h.request.as_ref())),
            header_ops(h.and_then(|h| h.response.as_ref())),
        )
    };
    match &mut a.cluster_specifier {
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
            for (c, d) in w.clusters.iter_mut().zip(&http.route) {
                let ((qa, qr), (sa, sr)) = ops(d);
                c.request_headers_to_add = qa;
                c.request_headers_to_remove = qr;
                c.response_headers_to_add = sa;
                c.response_headers_to_remove = sr;
            }
        }
        Some(_) => {
            if let Some(d) = http.route.first() {
                let ((qa, qr), (sa, sr)) = ops(d);
                req_add.extend(qa);
                req_remove.extend(qr);
                resp_add.extend(sa);
                resp_remove.extend(sr);
            }
        }
        None => {}
    }
}

/// Istio's translation of `corsPolicy` to Envoy's per-route CORS policy: origins as string
/// matchers, lists joined with commas, the max age in seconds, enabled for every request, and
/// preflights whose origin does not match forwarded unless `unmatchedPreflights: IGNORE`.
fn cors(c: &isthmus_api::networking::CorsPolicy) -> Any {
    use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
    let origins: Vec<StringMatcher> = if c.allow_origins.is_empty() {
        c.allow_origin
            .iter()
            .map(|o| StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(o.clone())),
                ..Default::default()
            })
            .collect()
    } else {
        c.allow_origins.iter().filter_map(string_matcher).collect()
    };
    let policy = CorsPolicy {
        allow_origin_string_match: origins,
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .as_deref()
            .and_then(isthmus_api::duration::parse)
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.map(|value| BoolValue { value }),
        filter_enabled: Some(
            envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent {
                default_value: percent(Some(Percent { value: 100.0 })),
                ..Default::default()
            },
        ),
        forward_not_matching_preflights: Some(BoolValue {
            value: c.unmatched_preflights.as_deref() != Some("IGNORE"),
        }),
        ..Default::default()
    };
    Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy".into(),
        value: policy.encode_to_vec(),
    }
}

/// A route's cluster: the one destination, or the destinations with their weights.
pub(crate) fn weighted(mut dests: Vec<(String, u32)>) -> route_action::ClusterSpecifier {
    if dests.len() == 1 {
        return route_action::ClusterSpecifier::Cluster(dests.remove(0).0);
    }
    route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters: dests
            .into_iter()
            .map(|(name, w)| weighted_cluster::ClusterWeight {
                name,
                weight: Some(UInt32Value { value: w }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// Istio's default retry policy: two retries on connection failures, refused streams and
/// 503s, each on another host, so that one failing endpoint (a stopped gateway) does not fail
/// the call.
pub fn default_retry_policy() -> envoy_types::pb::envoy::config::route::v3::RetryPolicy {
    use envoy_types::pb::envoy::config::route::v3::retry_policy::{
        retry_host_predicate, RetryHostPredicate,
    };
    envoy_types::pb::envoy::config::route::v3::RetryPolicy {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes".into(),
        num_retries: Some(UInt32Value { value: 2 }),
        retriable_status_codes: vec![503],
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate".into(),
                value: Vec::new(),
            })),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(yaml: &str) -> Route {
        let http: HttpRoute = serde_saphyr::from_str(yaml).expect("test route parses");
        let mut r = routes(&http, 8000, "foo", None);
        assert_eq!(r.len(), 1, "{r:?}");
        r.remove(0)
    }

    fn action(r: &Route) -> &RouteAction {
        match &r.action {
            Some(route::Action::Route(a)) => a,
            other => panic!("not a route action: {other:?}"),
        }
    }

    #[test]
    fn cors_policies_are_istios_translation() {
        use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
        let r = route_of("corsPolicy: {allowOrigins: [{exact: 'https://a.example'}, {regex: 'https://.*[.]b'}], allowMethods: [GET, POST], allowHeaders: [x-a, x-b], exposeHeaders: [x-c], maxAge: 24h, allowCredentials: true}\nroute: [{destination: {host: a}}]\n");
        let any = &r.typed_per_filter_config[CORS_FILTER];
        let c = CorsPolicy::decode(any.value.as_slice()).expect("cors policy decodes");
        assert_eq!(c.allow_origin_string_match.len(), 2);
        assert!(matches!(
            &c.allow_origin_string_match[1].match_pattern,
            Some(string_matcher::MatchPattern::SafeRegex(rx)) if rx.regex == "https://.*[.]b"
        ));
        assert_eq!(
            (
                c.allow_methods.as_str(),
                c.allow_headers.as_str(),
                c.expose_headers.as_str(),
                c.max_age.as_str()
            ),
            ("GET,POST", "x-a,x-b", "x-c", "86400")
        );
        assert_eq!(c.allow_credentials, Some(BoolValue { value: true }));
        assert_eq!(
            c.forward_not_matching_preflights,
            Some(BoolValue { value: true })
        );
        let ignore = route_of("corsPolicy: {allowOrigin: ['https://a.example'], unmatchedPreflights: IGNORE}\nroute: [{destination: {host: a}}]\n");
        let c = CorsPolicy::decode(ignore.typed_per_filter_config[CORS_FILTER].value.as_slice())
            .expect("cors policy decodes");
        assert_eq!(
            c.forward_not_matching_preflights,
            Some(BoolValue { value: false })
        );
        assert!(matches!(
            &c.allow_origin_string_match[0].match_pattern,
            Some(string_matcher::MatchPattern::Exact(o)) if o == "https://a.example"
        ));
        assert_eq!((c.allow_credentials, c.max_age.as_str()), (None, ""));
    }

    #[test]
    fn mirrors_each_get_a_policy_with_their_share() {
        let r = route_of("mirrors: [{destination: {host: m1}, percentage: {value: 25}}, {destination: {host: m2.bar.svc.cluster.local, subset: v2, port: {number: 9000}}}]\nroute: [{destination: {host: a}}]\n");
        let m = &action(&r).request_mirror_policies;
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].cluster, "outbound|8000||m1.foo.svc.cluster.local");
        let share = m[0].runtime_fraction.as_ref().and_then(|f| f.default_value);
        assert_eq!(share.map(|p| p.numerator), Some(250_000));
        assert_eq!(m[1].cluster, "outbound|9000|v2|m2.bar.svc.cluster.local");
        assert!(
            m[1].runtime_fraction.is_none(),
            "no percentage mirrors every request"
        );
    }

    #[test]
    fn destination_headers_go_on_their_weighted_cluster_or_after_the_routes() {
        let r = route_of("headers: {request: {set: {x-route: r}}}\nroute: [{destination: {host: a}, weight: 70, headers: {request: {set: {x-d: a}}, response: {remove: [x-secret]}}}, {destination: {host: b}, weight: 30}]\n");
        let Some(route_action::ClusterSpecifier::WeightedClusters(w)) =
            &action(&r).cluster_specifier
        else {
            panic!("two destinations are weighted clusters");
        };
        let key = |h: &[HeaderValueOption]| -> Vec<String> {
            h.iter()
                .filter_map(|o| o.header.as_ref().map(|h| h.key.clone()))
                .collect()
        };
        assert_eq!(key(&w.clusters[0].request_headers_to_add), ["x-d"]);
        assert_eq!(w.clusters[0].response_headers_to_remove, ["x-secret"]);
        assert!(w.clusters[1].request_headers_to_add.is_empty());
        assert_eq!(key(&r.request_headers_to_add), ["x-route"]);
        let one = route_of("headers: {request: {set: {x-route: r}}}\nroute: [{destination: {host: a}, headers: {request: {add: {x-d: a}}, response: {set: {x-p: a}}}}]\n");
        assert_eq!(key(&one.request_headers_to_add), ["x-route", "x-d"]);
        assert_eq!(key(&one.response_headers_to_add), ["x-p"]);
    }

    #[test]
    fn scheme_and_presence_matches_become_header_matchers() {
        let r = route_of("match: [{scheme: {exact: https}, headers: {X-Canary: {}}, queryParams: {debug: {}}}]\nroute: [{destination: {host: a}}]\n");
        let m = r.r#match.expect("match");
        let by_name = |n: &str| m.headers.iter().find(|h| h.name == n).cloned();
        assert_eq!(
            by_name(":scheme").and_then(|h| h.header_match_specifier),
            Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact("https".into())),
                    ..Default::default()
                }
            ))
        );
        assert_eq!(
            by_name("x-canary").and_then(|h| h.header_match_specifier),
            Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
        );
        assert_eq!(
            m.query_parameters[0].query_parameter_match_specifier,
            Some(query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true))
        );
    }

    #[test]
    fn grpc_aborts_regex_rewrites_and_retry_status_codes_are_generated() {
        let r = route_of("fault: {abort: {grpcStatus: UNAVAILABLE}}\nrewrite: {uriRegexRewrite: {match: '^/v1/(.*)', rewrite: '/\\1'}}\nretries: {attempts: 4, retryOn: 'gateway-error,429', backoff: 50ms, retryIgnorePreviousHosts: false}\nroute: [{destination: {host: a}}]\n");
        use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
            fault_abort, HttpFault as EnvoyFault,
        };
        let any = &r.typed_per_filter_config[FAULT_FILTER];
        let f = EnvoyFault::decode(any.value.as_slice()).expect("fault decodes");
        assert_eq!(
            f.abort.and_then(|a| a.error_type),
            Some(fault_abort::ErrorType::GrpcStatus(14))
        );
        let a = action(&r);
        let rx = a.regex_rewrite.as_ref().expect("regex rewrite");
        assert_eq!(
            rx.pattern.as_ref().map(|p| p.regex.as_str()),
            Some("^/v1/(.*)")
        );
        assert_eq!(rx.substitution, "/\\1");
        let p = a.retry_policy.as_ref().expect("retry policy");
        assert_eq!(p.retry_on, "gateway-error,retriable-status-codes");
        assert_eq!(p.retriable_status_codes, vec![429]);
        assert_eq!(p.num_retries, Some(UInt32Value { value: 4 }));
        assert!(p.retry_host_predicate.is_empty());
        assert_eq!(
            p.retry_back_off.as_ref().and_then(|b| b.base_interval),
            Some(Duration {
                seconds: 0,
                nanos: 50_000_000
            })
        );
    }

    #[test]
    fn redirects_carry_scheme_port_and_code() {
        let r = route_of(
            "redirect: {scheme: https, port: 8443, authority: b.example, redirectCode: 308}\n",
        );
        let Some(route::Action::Redirect(rd)) = r.action else {
            panic!("not a redirect: {:?}", r.action);
        };
        assert_eq!(rd.port_redirect, 8443);
        assert_eq!(rd.host_redirect, "b.example");
        assert_eq!(
            rd.scheme_rewrite_specifier,
            Some(redirect_action::SchemeRewriteSpecifier::SchemeRedirect(
                "https".into()
            ))
        );
        assert_eq!(
            rd.response_code,
            redirect_action::RedirectResponseCode::PermanentRedirect as i32
        );
    }

    #[test]
    fn direct_responses_answer_with_their_status_and_body() {
        use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
        let r = route_of("directResponse: {status: 503, body: {string: down for maintenance}}\n");
        let Some(route::Action::DirectResponse(d)) = r.action else {
            panic!("not a direct response: {:?}", r.action);
        };
        assert_eq!(d.status, 503);
        assert_eq!(
            d.body.and_then(|b| b.specifier),
            Some(Specifier::InlineString("down for maintenance".into()))
        );
        let r = route_of("directResponse: {status: 200, body: {bytes: aGk=}}\n");
        let Some(route::Action::DirectResponse(d)) = r.action else {
            panic!("not a direct response");
        };
        assert_eq!(
            d.body.and_then(|b| b.specifier),
            Some(Specifier::InlineBytes(b"hi".to_vec()))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration("5s"),
            Some(Duration {
                seconds: 5,
                nanos: 0
            })
        );
        assert_eq!(
            duration("100ms"),
            Some(Duration {
                seconds: 0,
                nanos: 100_000_000
            })
        );
        assert_eq!(
            duration("1.5s"),
            Some(Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            duration("2m"),
            Some(Duration {
                seconds: 120,
                nanos: 0
            })
        );
        assert_eq!(duration("5"), None);
        assert_eq!(duration("5x"), None);
    }
}
