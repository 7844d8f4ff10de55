//! AuthorizationPolicies as Envoy RBAC filters, as Istio builds them
//! (pilot/pkg/security/authz/builder and model): per workload one filter per action, in
//! the order AUDIT (Envoy's LOG), DENY, ALLOW, so a deny always wins; each rule is one
//! Envoy policy named `ns[NS]-policy[NAME]-rule[I]` whose permission is the rule's `to`
//! and destination-side `when`, and whose principal is its `from` and source-side `when`.
//! An ALLOW filter with no policy denies everything: that is what an ALLOW policy without
//! rules means.
//!
//! On a TCP port, HTTP-only fields cannot be checked. Like Istio, an ALLOW rule that uses
//! them matches nothing there (less is allowed), and a DENY or AUDIT rule is kept without
//! them (more is denied): either way a field that cannot be checked never lets more
//! through.

use crate::pb::*;
use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, Permission, Policy, Principal,
};
use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    list_matcher, metadata_matcher, path_matcher, value_matcher, ListMatcher, MetadataMatcher,
    OrMatcher, PathMatcher, RegexMatcher, ValueMatcher,
};
use isthmus_api::authorization::{
    AuthorizationAction, AuthorizationPolicySpec, ConditionKey, Operation, Rule, Source,
};
use isthmus_model::policy::AuthzPolicy;

/// The name of Envoy's HTTP RBAC filter.
pub const HTTP_RBAC_FILTER: &str = "envoy.filters.http.rbac";
/// The name of Envoy's network RBAC filter.
pub const NETWORK_RBAC_FILTER: &str = "envoy.filters.network.rbac";
const HTTP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const NETWORK_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";

/// `envoy.config.rbac.v3.RBAC` with its policies in name order. (The generated type keeps
/// them in a `HashMap`, whose order changes from one encoding to the next; the same
/// policies must give the same bytes, or every proxy would be sent them again.)
#[derive(Clone, PartialEq, prost::Message)]
struct SortedRbac {
    #[prost(int32, tag = "1")]
    action: i32,
    #[prost(message, repeated, tag = "2")]
    policies: Vec<PolicyEntry>,
}

/// One entry of the `policies` map, as a map entry is on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct PolicyEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Policy>,
}

/// `envoy.extensions.filters.http.rbac.v3.RBAC`: the rules only.
#[derive(Clone, PartialEq, prost::Message)]
struct HttpRbac {
    #[prost(message, optional, tag = "1")]
    rules: Option<SortedRbac>,
}

/// `envoy.extensions.filters.network.rbac.v3.RBAC`: the rules and the stat prefix.
#[derive(Clone, PartialEq, prost::Message)]
struct NetworkRbac {
    #[prost(message, optional, tag = "1")]
    rules: Option<SortedRbac>,
    #[prost(string, tag = "3")]
    stat_prefix: String,
}

/// Envoy's RBAC actions.
const ENVOY_ALLOW: i32 = 0;
const ENVOY_DENY: i32 = 1;
const ENVOY_LOG: i32 = 2;

/// The RBAC rule sets for one workload's port: (Envoy action, policies) in filter order;
/// none when no policy applies.
pub fn rule_sets<'a>(
    policies: impl Iterator<Item = &'a AuthzPolicy>,
    http: bool,
) -> Vec<(i32, Vec<(String, Policy)>)> {
    let mut audit = None::<Vec<(String, Policy)>>;
    let mut deny = None::<Vec<(String, Policy)>>;
    let mut allow = None::<Vec<(String, Policy)>>;
    for p in policies {
        let set = match p.spec.action {
            AuthorizationAction::Audit => &mut audit,
            AuthorizationAction::Deny => &mut deny,
            AuthorizationAction::Allow => &mut allow,
            // Refused by validation; never reaches a proxy.
            AuthorizationAction::Custom => continue,
        };
        let list = set.get_or_insert_with(Vec::new);
        list.extend(policy_rules(p, http));
    }
    [(ENVOY_LOG, audit), (ENVOY_DENY, deny), (ENVOY_ALLOW, allow)]
        .into_iter()
        .filter_map(|(a, set)| Some((a, set?)))
        .collect()
}

/// The HTTP filters of `rule_sets`, to go before the router.
pub fn http_filters(sets: &[(i32, Vec<(String, Policy)>)]) -> Vec<HttpFilter> {
    sets.iter()
        .map(|(action, policies)| {
            let config = HttpRbac {
                rules: Some(sorted(*action, policies)),
            };
            HttpFilter {
                name: HTTP_RBAC_FILTER.into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(Any {
                    type_url: HTTP_RBAC_TYPE.into(),
                    value: prost::Message::encode_to_vec(&config),
                })),
                ..Default::default()
            }
        })
        .collect()
}

/// The network filters of `rule_sets`, to go before the TCP proxy.
pub fn network_filters(sets: &[(i32, Vec<(String, Policy)>)]) -> Vec<Filter> {
    sets.iter()
        .map(|(action, policies)| {
            let config = NetworkRbac {
                rules: Some(sorted(*action, policies)),
                stat_prefix: "tcp.".into(),
            };
            Filter {
                name: NETWORK_RBAC_FILTER.into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: NETWORK_RBAC_TYPE.into(),
                    value: prost::Message::encode_to_vec(&config),
                })),
            }
        })
        .collect()
}

/// An RBAC filter's configuration as text, its policies in name order (Envoy's own type
/// keeps them in a map whose order changes); `None` for other types.
pub fn describe(type_url: &str, bytes: &[u8]) -> Option<String> {
    use prost::Message;
    match type_url {
        HTTP_RBAC_TYPE => HttpRbac::decode(bytes).ok().map(|m| format!("{m:#?}")),
        NETWORK_RBAC_TYPE => NetworkRbac::decode(bytes).ok().map(|m| format!("{m:#?}")),
        _ => None,
    }
}

/// The RBAC filters of the policies that select a gateway, for every chain of its
/// listeners (a gateway's listeners all take traffic in): the HTTP filters go into each HTTP
/// connection manager, the network filters ahead of each TCP proxy. On a chain that passes
/// TLS on by SNI (the east-west gateway's 15443) the peer's identity is not known, so a rule
/// about principals or namespaces does not match there, as in Istio.
#[derive(Debug, Clone, Default)]
pub struct GatewayAuthz {
    http: Vec<HttpFilter>,
    tcp: Vec<Filter>,
}

impl GatewayAuthz {
    /// The filters for `proxy`, a router: its RequestAuthentications' `jwt_authn` ahead of
    /// the RBAC filters on HTTP.
    pub fn of(snapshot: &isthmus_model::MeshSnapshot, proxy: &isthmus_model::Proxy) -> Self {
        let policies = snapshot
            .authz
            .for_workload(&proxy.id.namespace, &proxy.labels);
        let mut http: Vec<HttpFilter> = crate::jwt::http_filter(snapshot, proxy)
            .into_iter()
            .collect();
        http.extend(http_filters(&rule_sets(policies.clone(), true)));
        GatewayAuthz {
            http,
            tcp: network_filters(&rule_sets(policies, false)),
        }
    }

    /// The HTTP filters, to go ahead of an HTTP connection manager's own.
    pub fn http(&self) -> Vec<HttpFilter> {
        self.http.clone()
    }

    /// The network filters followed by `last` (the chain's TCP proxy).
    pub fn tcp_then(&self, last: Filter) -> Vec<Filter> {
        let mut filters = self.tcp.clone();
        filters.push(last);
        filters
    }
}

fn sorted(action: i32, policies: &[(String, Policy)]) -> SortedRbac {
    let mut entries: Vec<PolicyEntry> = policies
        .iter()
        .map(|(k, v)| PolicyEntry {
            key: k.clone(),
            value: Some(v.clone()),
        })
        .collect();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    SortedRbac {
        action,
        policies: entries,
    }
}

/// Istio's name of a rule's Envoy policy.
pub fn policy_name(namespace: &str, name: &str, rule: usize) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[{rule}]")
}

/// One Envoy policy per rule the port can check.
fn policy_rules(p: &AuthzPolicy, http: bool) -> Vec<(String, Policy)> {
    let spec: &AuthorizationPolicySpec = &p.spec;
    let lenient = spec.action != AuthorizationAction::Allow;
    spec.rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| {
            let uses_http = rule_uses_http(rule);
            if uses_http && !http && !lenient {
                // An ALLOW rule this port cannot check allows nothing here.
                return None;
            }
            let strip_http = uses_http && !http;
            Some((
                policy_name(&p.namespace, &p.name, i),
                Policy {
                    permissions: vec![rule_permission(rule, strip_http)],
                    principals: vec![rule_principal(rule, strip_http)],
                    ..Default::default()
                },
            ))
        })
        .collect()
}

/// Whether a rule names anything only HTTP requests carry.
pub fn rule_uses_http(rule: &Rule) -> bool {
    rule.to
        .iter()
        .filter_map(|t| t.operation.as_ref())
        .any(|o| {
            !(o.hosts.is_empty()
                && o.not_hosts.is_empty()
                && o.methods.is_empty()
                && o.not_methods.is_empty()
                && o.paths.is_empty()
                && o.not_paths.is_empty())
        })
        || rule
            .when
            .iter()
            .any(|c| ConditionKey::parse(&c.key).is_ok_and(|k| k.is_http_only()))
        || rule
            .from
            .iter()
            .filter_map(|f| f.source.as_ref())
            .any(|s| !(s.request_principals.is_empty() && s.not_request_principals.is_empty()))
}

// ---- permissions (what the request does) ----

fn perm(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}

fn perm_any() -> Permission {
    perm(permission::Rule::Any(true))
}

fn perm_and(mut parts: Vec<Permission>) -> Permission {
    match parts.len() {
        0 => perm_any(),
        1 => parts.remove(0),
        _ => perm(permission::Rule::AndRules(permission::Set { rules: parts })),
    }
}

fn perm_or(mut parts: Vec<Permission>) -> Permission {
    match parts.len() {
        1 => parts.remove(0),
        _ => perm(permission::Rule::OrRules(permission::Set { rules: parts })),
    }
}

fn perm_not(p: Permission) -> Permission {
    perm(permission::Rule::NotRule(Box::new(p)))
}

/// A field of values: any of them (`positive`), or none of them.
fn perm_field(
    values: &[String],
    positive: bool,
    one: impl Fn(&str) -> Permission,
) -> Option<Permission> {
    if values.is_empty() {
        return None;
    }
    let any = perm_or(values.iter().map(|v| one(v)).collect());
    Some(if positive { any } else { perm_not(any) })
}

fn rule_permission(rule: &Rule, strip_http: bool) -> Permission {
    let mut parts = Vec::new();
    let ops: Vec<&Operation> = rule
        .to
        .iter()
        .filter_map(|t| t.operation.as_ref())
        .collect();
    if !ops.is_empty() {
        parts.push(perm_or(
            ops.iter()
                .map(|o| operation_permission(o, strip_http))
                .collect(),
        ));
    }
    for c in &rule.when {
        let Ok(key) = ConditionKey::parse(&c.key) else {
            continue;
        };
        if strip_http && key.is_http_only() {
            continue;
        }
        let one = |v: &str| -> Option<Permission> {
            Some(match &key {
                ConditionKey::RequestHeader(name) => {
                    perm(permission::Rule::Header(header(name, v)))
                }
                ConditionKey::DestinationIp => perm(permission::Rule::DestinationIp(cidr(v))),
                ConditionKey::DestinationPort => {
                    perm(permission::Rule::DestinationPort(v.parse().unwrap_or(0)))
                }
                ConditionKey::ConnectionSni => {
                    perm(permission::Rule::RequestedServerName(pattern(v)))
                }
                _ => return None,
            })
        };
        if one("").is_none() {
            continue; // a source-side condition
        }
        for (vals, positive) in [(&c.values, true), (&c.not_values, false)] {
            if let Some(p) = perm_field(vals, positive, |v| one(v).unwrap_or_else(perm_any)) {
                parts.push(p);
            }
        }
    }
    perm_and(parts)
}

fn operation_permission(o: &Operation, strip_http: bool) -> Permission {
    let mut parts = Vec::new();
    let host = |v: &str| {
        // A Host header may carry the port: `name` or `name:PORT` both match `name`.
        perm_or(vec![
            perm(permission::Rule::Header(header_matching(
                ":authority",
                pattern_ci(v),
            ))),
            perm(permission::Rule::Header(header_matching(
                ":authority",
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                        regex: format!("{}:[0-9]+", host_regex(v)),
                        ..Default::default()
                    })),
                    ignore_case: true,
                },
            ))),
        ])
    };
    let method = |v: &str| perm(permission::Rule::Header(header(":method", v)));
    let path = |v: &str| {
        perm(permission::Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(pattern(v))),
        }))
    };
    let port = |v: &str| perm(permission::Rule::DestinationPort(v.parse().unwrap_or(0)));
    if !strip_http {
        parts.extend(perm_field(&o.hosts, true, host));
        parts.extend(perm_field(&o.not_hosts, false, host));
        parts.extend(perm_field(&o.methods, true, method));
        parts.extend(perm_field(&o.not_methods, false, method));
        parts.extend(perm_field(&o.paths, true, path));
        parts.extend(perm_field(&o.not_paths, false, path));
    }
    parts.extend(perm_field(&o.ports, true, port));
    parts.extend(perm_field(&o.not_ports, false, port));
    perm_and(parts)
}

// ---- principals (who sends it) ----

fn id(identifier: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(identifier),
    }
}

fn id_and(mut parts: Vec<Principal>) -> Principal {
    match parts.len() {
        0 => id(principal::Identifier::Any(true)),
        1 => parts.remove(0),
        _ => id(principal::Identifier::AndIds(principal::Set { ids: parts })),
    }
}

fn id_or(mut parts: Vec<Principal>) -> Principal {
    match parts.len() {
        1 => parts.remove(0),
        _ => id(principal::Identifier::OrIds(principal::Set { ids: parts })),
    }
}

fn id_field(
    values: &[String],
    positive: bool,
    one: impl Fn(&str) -> Principal,
) -> Option<Principal> {
    if values.is_empty() {
        return None;
    }
    let any = id_or(values.iter().map(|v| one(v)).collect());
    Some(if positive {
        any
    } else {
        id(principal::Identifier::NotId(Box::new(any)))
    })
}

fn authenticated(m: StringMatcher) -> Principal {
    id(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: Some(m),
        },
    ))
}

/// `cluster.local/ns/foo/sa/sleep` (or a `*` pattern) against the peer's SPIFFE URI.
fn by_principal(v: &str) -> Principal {
    let m = if v == "*" {
        regex(".+")
    } else if let Some(prefix) = v.strip_suffix('*') {
        prefixed(&format!("spiffe://{prefix}"))
    } else if let Some(suffix) = v.strip_prefix('*') {
        regex(&format!("spiffe://.*{}", regex_escape(suffix)))
    } else {
        exact(&format!("spiffe://{v}"))
    };
    authenticated(m)
}

/// A namespace (or pattern) against the `/ns/NAMESPACE/` part of the peer's identity.
fn by_namespace(v: &str) -> Principal {
    let ns = if v == "*" {
        "[^/]+".to_string()
    } else if let Some(prefix) = v.strip_suffix('*') {
        format!("{}[^/]*", regex_escape(prefix))
    } else if let Some(suffix) = v.strip_prefix('*') {
        format!("[^/]*{}", regex_escape(suffix))
    } else {
        regex_escape(v)
    };
    authenticated(regex(&format!(".*/ns/{ns}/.*")))
}

/// `NAMESPACE/NAME` against the end of the peer's identity.
fn by_service_account(v: &str) -> Principal {
    let (ns, sa) = v.split_once('/').unwrap_or(("", v));
    authenticated(suffixed(&format!("/ns/{ns}/sa/{sa}")))
}

fn rule_principal(rule: &Rule, strip_http: bool) -> Principal {
    let mut parts = Vec::new();
    let sources: Vec<&Source> = rule.from.iter().filter_map(|f| f.source.as_ref()).collect();
    if !sources.is_empty() {
        parts.push(id_or(
            sources
                .iter()
                .map(|s| source_principal(s, strip_http))
                .collect(),
        ));
    }
    for c in &rule.when {
        let Ok(key) = ConditionKey::parse(&c.key) else {
            continue;
        };
        if strip_http && key.is_http_only() {
            continue;
        }
        let one: fn(&str) -> Principal = match key {
            ConditionKey::SourceIp => |v| id(principal::Identifier::DirectRemoteIp(cidr(v))),
            ConditionKey::RemoteIp => |v| id(principal::Identifier::RemoteIp(cidr(v))),
            ConditionKey::SourceNamespace => by_namespace,
            ConditionKey::SourcePrincipal => by_principal,
            ConditionKey::SourceServiceAccount => by_service_account,
            ConditionKey::RequestPrincipal => by_request_principal,
            ConditionKey::RequestAudiences
            | ConditionKey::RequestPresenter
            | ConditionKey::RequestClaim(_) => {
                let path: Vec<String> = match &key {
                    ConditionKey::RequestAudiences => vec!["aud".into()],
                    ConditionKey::RequestPresenter => vec!["azp".into()],
                    ConditionKey::RequestClaim(p) => p.clone(),
                    _ => continue,
                };
                let one = |v: &str| by_claim(&path, v);
                parts.extend(id_field(&c.values, true, one));
                parts.extend(id_field(&c.not_values, false, one));
                continue;
            }
            _ => continue,
        };
        parts.extend(id_field(&c.values, true, one));
        parts.extend(id_field(&c.not_values, false, one));
    }
    id_and(parts)
}

/// A string value of the verified JWT payload, by its path below the payload.
fn jwt_claim(path: &[&str], m: StringMatcher) -> Principal {
    jwt_metadata(
        path,
        ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
        },
    )
}

fn jwt_metadata(path: &[&str], value: ValueMatcher) -> Principal {
    id(principal::Identifier::SourcedMetadata(
        envoy_types::pb::envoy::config::rbac::v3::SourcedMetadata {
            metadata_matcher: Some(MetadataMatcher {
                filter: crate::jwt::JWT_FILTER.into(),
                path: std::iter::once(crate::jwt::PAYLOAD_KEY)
                    .chain(path.iter().copied())
                    .map(|k| metadata_matcher::PathSegment {
                        segment: Some(metadata_matcher::path_segment::Segment::Key(k.into())),
                    })
                    .collect(),
                value: Some(value),
                invert: false,
            }),
            // The dynamic metadata jwt_authn wrote for this request.
            metadata_source: 0,
        },
    ))
}

/// `ISS/SUB` (split at the last `/`), or a pattern of it, against the verified token's
/// `iss` and `sub`, as Istio matches `requestPrincipals` and `request.auth.principal`.
fn by_request_principal(v: &str) -> Principal {
    let any = || regex(".+");
    let (iss, sub) = if v == "*" {
        (any(), any())
    } else if let Some(suffix) = v.strip_prefix('*') {
        match suffix.rsplit_once('/') {
            Some((iss, sub)) => (suffixed(iss), exact(sub)),
            None => (any(), suffixed(suffix)),
        }
    } else if let Some(prefix) = v.strip_suffix('*') {
        match prefix.rsplit_once('/') {
            Some((iss, "")) => (exact(iss), any()),
            Some((iss, sub)) => (exact(iss), prefixed(sub)),
            None => (prefixed(prefix), any()),
        }
    } else {
        match v.rsplit_once('/') {
            Some((iss, sub)) => (exact(iss), exact(sub)),
            // Refused by validation: a request principal is ISS/SUB.
            None => (exact(v), any()),
        }
    };
    id_and(vec![jwt_claim(&["iss"], iss), jwt_claim(&["sub"], sub)])
}

/// A claim (by path) that is the value, or a list holding it, as Istio matches
/// `request.auth.audiences`, `request.auth.presenter` and `request.auth.claims[...]`.
fn by_claim(path: &[String], v: &str) -> Principal {
    let one = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(pattern(v))),
    };
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    jwt_metadata(
        &path,
        ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
                value_matchers: vec![
                    ValueMatcher {
                        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
                            ListMatcher {
                                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(
                                    one.clone(),
                                ))),
                            },
                        ))),
                    },
                    one,
                ],
            })),
        },
    )
}

fn source_principal(s: &Source, strip_http: bool) -> Principal {
    let ip = |v: &str| id(principal::Identifier::DirectRemoteIp(cidr(v)));
    let remote = |v: &str| id(principal::Identifier::RemoteIp(cidr(v)));
    let mut parts = Vec::new();
    if !strip_http {
        parts.extend(id_field(&s.request_principals, true, by_request_principal));
        parts.extend(id_field(
            &s.not_request_principals,
            false,
            by_request_principal,
        ));
    }
    parts.extend(id_field(&s.principals, true, by_principal));
    parts.extend(id_field(&s.not_principals, false, by_principal));
    parts.extend(id_field(&s.namespaces, true, by_namespace));
    parts.extend(id_field(&s.not_namespaces, false, by_namespace));
    parts.extend(id_field(&s.service_accounts, true, by_service_account));
    parts.extend(id_field(&s.not_service_accounts, false, by_service_account));
    parts.extend(id_field(&s.ip_blocks, true, ip));
    parts.extend(id_field(&s.not_ip_blocks, false, ip));
    parts.extend(id_field(&s.remote_ip_blocks, true, remote));
    parts.extend(id_field(&s.not_remote_ip_blocks, false, remote));
    id_and(parts)
}

// ---- matchers ----

fn exact(v: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(v.into())),
        ignore_case: false,
    }
}

fn prefixed(v: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Prefix(v.into())),
        ignore_case: false,
    }
}

fn suffixed(v: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Suffix(v.into())),
        ignore_case: false,
    }
}

fn regex(r: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: r.into(),
            ..Default::default()
        })),
        ignore_case: false,
    }
}

/// Istio's value patterns: `*` (present: not empty), `prefix*`, `*suffix`, or exact.
fn pattern(v: &str) -> StringMatcher {
    if v == "*" {
        regex(".+")
    } else if let Some(prefix) = v.strip_suffix('*') {
        prefixed(prefix)
    } else if let Some(suffix) = v.strip_prefix('*') {
        suffixed(suffix)
    } else {
        exact(v)
    }
}

fn pattern_ci(v: &str) -> StringMatcher {
    StringMatcher {
        ignore_case: true,
        ..pattern(v)
    }
}

/// The regex of a host pattern (for `host:PORT`).
fn host_regex(v: &str) -> String {
    if v == "*" {
        ".*".into()
    } else if let Some(prefix) = v.strip_suffix('*') {
        format!("{}.*", regex_escape(prefix))
    } else if let Some(suffix) = v.strip_prefix('*') {
        format!(".*{}", regex_escape(suffix))
    } else {
        regex_escape(v)
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn header_matching(name: &str, m: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)),
        ..Default::default()
    }
}

fn header(name: &str, v: &str) -> HeaderMatcher {
    header_matching(name, pattern(v))
}

fn cidr(v: &str) -> CidrRange {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, l.parse().ok()),
        None => (v, None),
    };
    let full = if addr.contains(':') { 128 } else { 32 };
    CidrRange {
        address_prefix: addr.into(),
        prefix_len: Some(UInt32Value {
            value: len.unwrap_or(full),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_api::authorization::{Condition, RuleFrom, RuleTo};

    fn policy(action: AuthorizationAction, rules: Vec<Rule>) -> AuthzPolicy {
        AuthzPolicy {
            namespace: "bar".into(),
            name: "p".into(),
            spec: AuthorizationPolicySpec {
                action,
                rules,
                ..Default::default()
            },
        }
    }

    fn get_only(methods: &[&str]) -> Rule {
        Rule {
            to: vec![RuleTo {
                operation: Some(Operation {
                    methods: methods.iter().map(|m| m.to_string()).collect(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn deny_comes_before_allow_and_an_allow_without_rules_denies_all() {
        let deny = policy(AuthorizationAction::Deny, vec![Rule::default()]);
        let allow = policy(AuthorizationAction::Allow, vec![]);
        let sets = rule_sets([&allow, &deny].into_iter(), true);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].0, ENVOY_DENY);
        assert_eq!(sets[1].0, ENVOY_ALLOW);
        assert!(sets[1].1.is_empty(), "no policy: everything denied");
        assert_eq!(sets[0].1[0].0, "ns[bar]-policy[p]-rule[0]");
    }

    #[test]
    fn http_only_fields_on_tcp_never_let_more_through() {
        let allow = policy(AuthorizationAction::Allow, vec![get_only(&["GET"])]);
        let on_tcp = rule_sets([&allow].into_iter(), false);
        assert_eq!(on_tcp[0].0, ENVOY_ALLOW);
        assert!(
            on_tcp[0].1.is_empty(),
            "the ALLOW rule matches nothing on TCP"
        );
        let deny = policy(AuthorizationAction::Deny, vec![get_only(&["GET"])]);
        let on_tcp = rule_sets([&deny].into_iter(), false);
        let (_, p) = &on_tcp[0].1[0];
        assert_eq!(
            p.permissions[0],
            perm_any(),
            "the DENY rule applies without its HTTP fields"
        );
        let on_http = rule_sets([&deny].into_iter(), true);
        assert_ne!(on_http[0].1[0].1.permissions[0], perm_any());
    }

    /// Every JWT payload matcher under `p` as (path keys, `kind:value`), in order.
    fn jwt_matchers(p: &Principal) -> Vec<(Vec<String>, String)> {
        let text = format!("{p:?}");
        let mut out = Vec::new();
        for part in text.split("SourcedMetadata {").skip(1) {
            let keys: Vec<String> = part
                .split("Key(\"")
                .skip(1)
                .map(|k| k.split('"').next().unwrap_or_default().to_string())
                .collect();
            let pattern = [
                ("Exact(\"", "exact"),
                ("Prefix(\"", "prefix"),
                ("Suffix(\"", "suffix"),
                ("regex: \"", "regex"),
            ]
            .iter()
            .filter_map(|(m, kind)| part.find(m).map(|i| (i, m.len(), kind)))
            .min()
            .map(|(i, len, kind)| {
                let value = part[i + len..].split('"').next().unwrap_or_default();
                format!("{kind}:{value}")
            })
            .unwrap_or_default();
            out.push((keys, pattern));
        }
        out
    }

    #[test]
    fn request_principals_and_claims_read_the_verified_payload() {
        let source = |v: &str| Source {
            request_principals: vec![v.into()],
            ..Default::default()
        };
        let m = |v: &str| jwt_matchers(&source_principal(&source(v), false));
        let payload = |k: &str| vec!["payload".to_string(), k.to_string()];
        for (principal, iss, sub) in [
            (
                "https://issuer.example/alice",
                "exact:https://issuer.example",
                "exact:alice",
            ),
            ("lab/*", "exact:lab", "regex:.+"),
            ("lab/ali*", "exact:lab", "prefix:ali"),
            ("*", "regex:.+", "regex:.+"),
            ("*.example/bob", "suffix:.example", "exact:bob"),
            ("*bob", "regex:.+", "suffix:bob"),
        ] {
            assert_eq!(
                m(principal),
                vec![
                    (payload("iss"), iss.to_string()),
                    (payload("sub"), sub.to_string())
                ],
                "{principal}"
            );
        }
        // A claim matches as a value or as a list holding it.
        let rule = Rule {
            when: vec![Condition {
                key: "request.auth.claims[groups]".into(),
                values: vec!["admins".into()],
                not_values: vec![],
            }],
            ..Default::default()
        };
        let text = format!("{:?}", rule_principal(&rule, false));
        assert!(
            text.contains("OrMatch") && text.contains("ListMatch") && text.contains("OneOf"),
            "{text}"
        );
        assert_eq!(
            jwt_matchers(&rule_principal(&rule, false))[0].0,
            payload("groups")
        );
        // On a TCP port a DENY on request principals applies to everyone; an ALLOW on them
        // allows no one.
        let on_tcp = rule_principal(
            &Rule {
                from: vec![RuleFrom {
                    source: Some(source("lab/*")),
                }],
                ..Default::default()
            },
            true,
        );
        assert!(jwt_matchers(&on_tcp).is_empty(), "{on_tcp:?}");
        let allow = AuthzPolicy {
            namespace: "bar".into(),
            name: "jwt".into(),
            spec: AuthorizationPolicySpec {
                rules: vec![Rule {
                    from: vec![RuleFrom {
                        source: Some(source("lab/*")),
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        };
        let sets = rule_sets([&allow].into_iter(), false);
        assert!(
            sets[0].1.is_empty(),
            "an ALLOW on JWTs allows nothing over TCP: {sets:?}"
        );
    }

    #[test]
    fn principals_namespaces_and_conditions_map_to_istios_matchers() {
        let rule = Rule {
            from: vec![RuleFrom {
                source: Some(Source {
                    principals: vec!["cluster.local/ns/foo/sa/sleep".into()],
                    not_namespaces: vec!["prod*".into()],
                    ..Default::default()
                }),
            }],
            when: vec![Condition {
                key: "source.ip".into(),
                values: vec!["10.0.0.0/8".into()],
                not_values: vec![],
            }],
            ..Default::default()
        };
        let p = rule_principal(&rule, false);
        let text = format!("{p:?}");
        assert!(
            text.contains("Exact(\"spiffe://cluster.local/ns/foo/sa/sleep\")"),
            "{text}"
        );
        assert!(
            text.contains(".*/ns/prod[^/]*/.*") && text.contains("NotId"),
            "{text}"
        );
        assert!(
            text.contains("DirectRemoteIp") && text.contains("10.0.0.0"),
            "{text}"
        );
    }

    #[test]
    fn the_same_policies_encode_to_the_same_bytes() {
        let rules: Vec<Rule> = (0..20).map(|_| get_only(&["GET", "POST"])).collect();
        let allow = policy(AuthorizationAction::Allow, rules);
        let a = http_filters(&rule_sets([&allow].into_iter(), true));
        let b = http_filters(&rule_sets([&allow].into_iter(), true));
        assert_eq!(a, b);
        // And they decode as Envoy's own type.
        let Some(http_filter::ConfigType::TypedConfig(any)) = &a[0].config_type else {
            panic!("typed config");
        };
        let decoded = <envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as prost::Message>::decode(any.value.as_slice()).expect("decodes");
        assert_eq!(decoded.rules.map(|r| r.policies.len()), Some(20));
    }
}
