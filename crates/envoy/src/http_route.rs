//! VirtualService HTTP routes to Envoy routes: match (uri exact/prefix/regex, headers,
//! authority, method, query parameters), weighted destinations, rewrite, redirect, retries,
//! timeout, fault injection (delay, abort), mirror and header manipulation.

use crate::names::outbound_cluster;
use crate::pb::*;
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, query_parameter_matcher, redirect_action, retry_policy, HeaderMatcher,
    QueryParameterMatcher, RedirectAction, RetryPolicy,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent};
use isthmus_api::networking::HttpRoute;
use isthmus_model::fqdn;
use prost::Message;
use serde_json::Value;

/// The fault filter's name, also the key of its per-route configuration.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// Parses an Istio duration (`5s`, `100ms`, `1m`, `1.5s`, `2h`).
pub fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))?;
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    if !(0.0..=315_576_000_000.0).contains(&secs) {
        return None;
    }
    Some(Duration {
        seconds: secs.trunc() as i64,
        nanos: ((secs.fract()) * 1e9).round() as i32,
    })
}

fn string_matcher(v: &Value) -> Option<StringMatcher> {
    let pattern = if let Some(e) = v.get("exact").and_then(Value::as_str) {
        string_matcher::MatchPattern::Exact(e.to_string())
    } else if let Some(p) = v.get("prefix").and_then(Value::as_str) {
        string_matcher::MatchPattern::Prefix(p.to_string())
    } else if let Some(r) = v.get("regex").and_then(Value::as_str) {
        string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: r.to_string(),
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

fn header(name: &str, v: &Value) -> Option<HeaderMatcher> {
    Some(HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            string_matcher(v)?,
        )),
        ..Default::default()
    })
}

/// One Istio `HTTPMatchRequest` as an Envoy route match.
fn route_match(m: &Value) -> RouteMatch {
    let mut out = RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..Default::default()
    };
    if let Some(uri) = m.get("uri") {
        if let Some(e) = uri.get("exact").and_then(Value::as_str) {
            out.path_specifier = Some(route_match::PathSpecifier::Path(e.to_string()));
        } else if let Some(p) = uri.get("prefix").and_then(Value::as_str) {
            out.path_specifier = Some(route_match::PathSpecifier::Prefix(p.to_string()));
        } else if let Some(r) = uri.get("regex").and_then(Value::as_str) {
            out.path_specifier = Some(route_match::PathSpecifier::SafeRegex(RegexMatcher {
                regex: r.to_string(),
                ..Default::default()
            }));
        }
    }
    if m.get("ignoreUriCase").and_then(Value::as_bool) == Some(true) {
        out.case_sensitive = Some(BoolValue { value: false });
    }
    if let Some(h) = m.get("headers").and_then(Value::as_object) {
        for (name, v) in h {
            out.headers.extend(header(&name.to_ascii_lowercase(), v));
        }
    }
    if let Some(a) = m.get("authority") {
        out.headers.extend(header(":authority", a));
    }
    if let Some(meth) = m.get("method") {
        out.headers.extend(header(":method", meth));
    }
    if let Some(q) = m.get("queryParams").and_then(Value::as_object) {
        for (name, v) in q {
            if let Some(sm) = string_matcher(v) {
                out.query_parameters.push(QueryParameterMatcher {
                    name: name.clone(),
                    query_parameter_match_specifier: Some(
                        query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(sm),
                    ),
                });
            }
        }
    }
    out
}

fn percent(v: Option<&Value>) -> Option<FractionalPercent> {
    let p = v?.get("value").and_then(Value::as_f64)?;
    Some(FractionalPercent {
        numerator: (p * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    })
}

/// The per-route fault configuration, encoded for `typed_per_filter_config`.
fn fault(f: &Value) -> Option<Any> {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{fault_delay, FaultDelay};
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
        fault_abort, FaultAbort, HttpFault,
    };
    let mut out = HttpFault::default();
    if let Some(d) = f.get("delay") {
        let fixed = d
            .get("fixedDelay")
            .and_then(Value::as_str)
            .and_then(duration)?;
        out.delay = Some(FaultDelay {
            percentage: percent(d.get("percentage")).or(Some(FractionalPercent {
                numerator: 100,
                denominator: 0,
            })),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(fixed)),
        });
    }
    if let Some(a) = f.get("abort") {
        let status = a.get("httpStatus").and_then(Value::as_u64)?;
        out.abort = Some(FaultAbort {
            percentage: percent(a.get("percentage")).or(Some(FractionalPercent {
                numerator: 100,
                denominator: 0,
            })),
            error_type: Some(fault_abort::ErrorType::HttpStatus(status as u32)),
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

fn header_ops(v: Option<&Value>) -> (Vec<HeaderValueOption>, Vec<String>) {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    let Some(v) = v else { return (add, remove) };
    for (key, action) in [
        ("set", HeaderAppendAction::OverwriteIfExistsOrAdd),
        ("add", HeaderAppendAction::AppendIfExistsOrAdd),
    ] {
        if let Some(m) = v.get(key).and_then(Value::as_object) {
            for (k, val) in m {
                add.push(HeaderValueOption {
                    header: Some(HeaderValue {
                        key: k.clone(),
                        value: val.as_str().unwrap_or_default().to_string(),
                        ..Default::default()
                    }),
                    append_action: action as i32,
                    ..Default::default()
                });
            }
        }
    }
    if let Some(r) = v.get("remove").and_then(Value::as_array) {
        remove.extend(r.iter().filter_map(|x| x.as_str().map(str::to_string)));
    }
    (add, remove)
}

fn retries(r: &Value) -> RetryPolicy {
    let attempts = r.get("attempts").and_then(Value::as_u64).unwrap_or(2) as u32;
    let mut p = default_retry_policy();
    p.num_retries = Some(UInt32Value { value: attempts });
    if let Some(on) = r.get("retryOn").and_then(Value::as_str) {
        p.retry_on = on.to_string();
    }
    p.per_try_timeout = r
        .get("perTryTimeout")
        .and_then(Value::as_str)
        .and_then(duration);
    if attempts == 0 {
        p.retry_host_predicate = Vec::<retry_policy::RetryHostPredicate>::new();
    }
    p
}

/// Whether one `HTTPMatchRequest` applies where the routes are built: its `gateways` (when
/// given) must name the context (`mesh` for sidecars, the Gateway for a gateway) and its
/// `port` (when given) must be the port.
fn match_applies(m: &Value, port: u32, ns: &str, gateway: Option<(&str, &str)>) -> bool {
    if let Some(p) = m.get("port").and_then(Value::as_u64) {
        if p != u64::from(port) {
            return false;
        }
    }
    if let Some(gws) = m.get("gateways").and_then(Value::as_array) {
        let names: Vec<String> = gws
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect();
        return match gateway {
            None => names.iter().any(|g| g == "mesh"),
            Some((gw_ns, gw_name)) => isthmus_model::binds_gateway(ns, &names, gw_ns, gw_name),
        };
    }
    true
}

/// The Envoy routes of one Istio HTTP route; `port` is the port the request arrived for,
/// `ns` the VirtualService's namespace (short hosts are relative to it), `gateway` the
/// Gateway (`namespace`, `name`) the routes are for, `None` for sidecars (`mesh`).
pub fn routes(http: &HttpRoute, port: u32, ns: &str, gateway: Option<(&str, &str)>) -> Vec<Route> {
    let applicable: Vec<&Value> = http
        .match_
        .iter()
        .filter(|m| match_applies(m, port, ns, gateway))
        .collect();
    if !http.match_.is_empty() && applicable.is_empty() {
        return Vec::new();
    }
    let other = |k: &str| http.other.get(k);
    let action = if let Some(rd) = other("redirect") {
        let code = match rd.get("redirectCode").and_then(Value::as_u64) {
            Some(302) => redirect_action::RedirectResponseCode::Found,
            Some(303) => redirect_action::RedirectResponseCode::SeeOther,
            Some(307) => redirect_action::RedirectResponseCode::TemporaryRedirect,
            Some(308) => redirect_action::RedirectResponseCode::PermanentRedirect,
            _ => redirect_action::RedirectResponseCode::MovedPermanently,
        };
        route::Action::Redirect(RedirectAction {
            host_redirect: rd
                .get("authority")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            path_rewrite_specifier: rd
                .get("uri")
                .and_then(Value::as_str)
                .map(|u| redirect_action::PathRewriteSpecifier::PathRedirect(u.to_string())),
            response_code: code as i32,
            ..Default::default()
        })
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
                other("retries")
                    .map(retries)
                    .unwrap_or_else(default_retry_policy),
            ),
            ..Default::default()
        };
        if let Some(rw) = other("rewrite") {
            if let Some(u) = rw.get("uri").and_then(Value::as_str) {
                a.prefix_rewrite = u.to_string();
            }
            if let Some(h) = rw.get("authority").and_then(Value::as_str) {
                a.host_rewrite_specifier = Some(
                    route_action::HostRewriteSpecifier::HostRewriteLiteral(h.to_string()),
                );
            }
        }
        if let Some(m) = other("mirror") {
            if let Some(h) = m.get("host").and_then(Value::as_str) {
                let mport = m
                    .get("port")
                    .and_then(|p| p.get("number"))
                    .and_then(Value::as_u64)
                    .map(|p| p as u32)
                    .unwrap_or(port);
                let subset = m.get("subset").and_then(Value::as_str).unwrap_or_default();
                a.request_mirror_policies
                    .push(route_action::RequestMirrorPolicy {
                        cluster: outbound_cluster(mport, subset, &fqdn(h, ns)),
                        runtime_fraction: percent(other("mirrorPercentage")).map(|p| {
                            envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent {
                                default_value: Some(p),
                                ..Default::default()
                            }
                        }),
                        ..Default::default()
                    });
            }
        }
        route::Action::Route(a)
    };
    let (req_add, req_remove) = header_ops(other("headers").and_then(|h| h.get("request")));
    let (resp_add, resp_remove) = header_ops(other("headers").and_then(|h| h.get("response")));
    let per_filter: std::collections::HashMap<String, Any> = other("fault")
        .and_then(fault)
        .map(|f| std::iter::once((FAULT_FILTER.to_string(), f)).collect())
        .unwrap_or_default();
    let matches: Vec<RouteMatch> = if applicable.is_empty() {
        vec![route_match(&Value::Null)]
    } else {
        applicable.into_iter().map(route_match).collect()
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
