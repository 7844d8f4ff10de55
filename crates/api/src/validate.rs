//! Validation of single resources. Each problem names the field at fault; the loader adds
//! the file, the line and the resource. Checks that span several resources (duplicate
//! VIPs, hosts claimed twice) live in the mesh model, which sees them all.

use crate::diagnostic::Diagnostic;
use crate::enums::{Resolution, ServerTlsMode};
use crate::kube::{ConfigMap, Service};
use crate::mesh::{MeshConfig, MeshNetworks};
use crate::networking::{DestinationRule, Gateway, ServiceEntry, WorkloadEntrySpec};
use crate::resource::Object;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

mod policy;
mod routes;

pub use routes::{grpc_status, GRPC_STATUS};

/// The east-west gateway port, reserved for AUTO_PASSTHROUGH.
pub const EAST_WEST_PORT: u32 = 15443;

/// Validates one object.
pub fn validate(object: &Object) -> Vec<Diagnostic> {
    let mut v = Vec::new();
    let meta = object.metadata();
    if let Some(problem) = name_problem(&meta.name, matches!(object, Object::Service(_))) {
        v.push(Diagnostic::error(problem).at("metadata.name"));
    }
    match object {
        Object::Service(s) => service(s, &mut v),
        Object::ServiceEntry(se) => service_entry(se, &mut v),
        // An endpoint of the ServiceEntries (workloadSelector) and Services (selector) of its
        // namespace whose selectors match its labels.
        Object::WorkloadEntry(we) => workload(&we.spec, "spec", None, &mut v),
        Object::DestinationRule(dr) => destination_rule(dr, &mut v),
        Object::VirtualService(vs) => routes::virtual_service(vs, &mut v),
        Object::Gateway(g) => gateway(g, &mut v),
        Object::Sidecar(s) => sidecar(&s.spec, &mut v),
        Object::ConfigMap(cm) => config_map(cm, &mut v),
        Object::AuthorizationPolicy(p) => authorization_policy(&p.spec, &mut v),
        Object::RequestAuthentication(p) => request_authentication(&p.spec, &mut v),
        Object::PeerAuthentication(p) => peer_authentication(&p.spec, &mut v),
        Object::MeshPolicy(p) if &*p.metadata.name != "default" => v.push(
            Diagnostic::error("a MeshPolicy must be named `default`; Istio ignores any other")
                .at("metadata.name"),
        ),
        _ => {}
    }
    v
}

/// An error for a field Istio has that Isthmus does not enforce: the object is refused.
fn unsupported(v: &mut Vec<Diagnostic>, at: &str, message: &str) {
    v.push(Diagnostic::error(message).at(at.to_string()));
}

/// `exportTo`: Isthmus makes every object visible everywhere, so only `*` (Istio's default)
/// is honest; anything narrower is refused instead of exported mesh-wide.
/// An `exportTo` list at `at`: each value `*` (every namespace), `.` (the object's own),
/// `~` (none, and then alone) or a namespace name.
fn export_to(values: &[String], at: &str, v: &mut Vec<Diagnostic>) {
    for (i, e) in values.iter().enumerate() {
        if e != "*" && e != "." && e != "~" && !is_dns_label(e) {
            v.push(
                Diagnostic::error(format!("`{e}` is not `*`, `.`, `~` or a namespace name"))
                    .at(format!("{at}[{i}]")),
            );
        }
    }
    if values.len() > 1 && values.iter().any(|e| e == "~") {
        v.push(
            Diagnostic::error(
                "`~` (exported to no namespace) cannot be combined with other values",
            )
            .at(at.to_string()),
        );
    }
}

/// A Sidecar: `workloadSelector`, `egress[].hosts` and `outboundTrafficPolicy.mode` are
/// enforced.
fn sidecar(spec: &crate::networking::SidecarSpec, v: &mut Vec<Diagnostic>) {
    if spec
        .outbound_traffic_policy
        .as_ref()
        .is_some_and(|o| o.egress_proxy.is_some())
    {
        unsupported(
            v,
            "spec.outboundTrafficPolicy.egressProxy",
            "egressProxy is not supported by Isthmus yet; the Sidecar is refused rather than applied without it",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, ing) in spec.ingress.iter().enumerate() {
        let at = format!("spec.ingress[{i}]");
        port_range(ing.port.number, format!("{at}.port.number"), v);
        if !seen.insert(ing.port.number) {
            v.push(
                Diagnostic::error(format!(
                    "port {} has two ingress listeners",
                    ing.port.number
                ))
                .at(format!("{at}.port.number")),
            );
        }
        if ing.endpoint().is_none() {
            let e = ing.default_endpoint.as_deref().unwrap_or_default();
            if e.starts_with("unix://") {
                unsupported(
                    v,
                    &format!("{at}.defaultEndpoint"),
                    "a Unix socket defaultEndpoint is not supported by Isthmus; use 127.0.0.1:PORT or 0.0.0.0:PORT",
                );
            } else {
                v.push(
                    Diagnostic::error(format!(
                        "`{e}` is not 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT or [::]:PORT"
                    ))
                    .at(format!("{at}.defaultEndpoint")),
                );
            }
        }
        for (field, set) in [
            ("bind", ing.bind.is_some()),
            ("captureMode", ing.capture_mode.is_some()),
            ("tls", ing.tls.is_some()),
            ("connectionPool", ing.connection_pool.is_some()),
            ("port.targetPort", ing.port.target_port.is_some()),
        ] {
            if set {
                unsupported(
                    v,
                    &format!("{at}.{field}"),
                    &format!("ingress {field} is not supported by Isthmus; the Sidecar is refused rather than applied without it"),
                );
            }
        }
    }
    for (field, set) in [(
        "inboundConnectionPool",
        spec.inbound_connection_pool.is_some(),
    )] {
        if set {
            unsupported(
                v,
                &format!("spec.{field}"),
                &format!("{field} is not supported by Isthmus yet; the Sidecar is refused rather than applied without it"),
            );
        }
    }
    for (i, e) in spec.egress.iter().enumerate() {
        for (field, set) in [
            ("port", e.port.is_some()),
            ("bind", e.bind.is_some()),
            ("captureMode", e.capture_mode.is_some()),
        ] {
            if set {
                unsupported(
                    v,
                    &format!("spec.egress[{i}].{field}"),
                    &format!("egress {field} is not supported by Isthmus yet (egress scopes hosts only); the Sidecar is refused"),
                );
            }
        }
        if e.hosts.is_empty() {
            v.push(
                Diagnostic::error("an egress listener needs hosts (`namespace/dnsName`)")
                    .at(format!("spec.egress[{i}].hosts")),
            );
        }
        for (j, h) in e.hosts.iter().enumerate() {
            if h.split_once('/')
                .is_none_or(|(ns, host)| ns.is_empty() || host.is_empty())
            {
                v.push(
                    Diagnostic::error(format!(
                        "`{h}` is not `namespace/dnsName` (such as `./*` or `istio-system/*`)"
                    ))
                    .at(format!("spec.egress[{i}].hosts[{j}]")),
                );
            }
        }
    }
}

/// A RequestAuthentication whose every rule Envoy's jwt_authn filter can check.
fn request_authentication(
    spec: &crate::authentication::RequestAuthenticationSpec,
    v: &mut Vec<Diagnostic>,
) {
    use crate::authentication::KeySource;
    if spec.target_ref.is_some() || !spec.target_refs.is_empty() {
        unsupported(
            v,
            if spec.target_ref.is_some() { "spec.targetRef" } else { "spec.targetRefs" },
            "targetRef/targetRefs attach a policy to Gateway API gateways and waypoints, which are not supported by Isthmus; select the workloads with `selector`",
        );
    }
    let mut issuers = BTreeSet::new();
    for (i, r) in spec.jwt_rules.iter().enumerate() {
        let at = |f: &str| format!("spec.jwtRules[{i}].{f}");
        if r.issuer.is_empty() {
            v.push(Diagnostic::error("issuer is required").at(at("issuer")));
        } else if !issuers.insert(r.issuer.as_str()) {
            v.push(
                Diagnostic::error(format!("issuer `{}` is given twice", r.issuer)).at(at("issuer")),
            );
        }
        match r.key_source() {
            KeySource::Inline(jwks) => {
                let keys = serde_json::from_str::<serde_json::Value>(jwks)
                    .ok()
                    .and_then(|d| d.get("keys").and_then(|k| k.as_array()).map(Vec::len));
                if keys.is_none_or(|n| n == 0) {
                    v.push(
                        Diagnostic::error(
                            "jwks must be a JWKS document: JSON with a non-empty `keys` list",
                        )
                        .at(at("jwks")),
                    );
                }
            }
            KeySource::Uri(uri) => {
                if !is_http_url(uri) {
                    v.push(
                        Diagnostic::error(format!("jwksUri `{uri}` is not an http(s) URL"))
                            .at(at("jwksUri")),
                    );
                }
            }
            KeySource::Discover(issuer) => {
                if !issuer.is_empty() && !is_http_url(issuer) {
                    v.push(
                        Diagnostic::error(format!(
                            "no jwks or jwksUri, and issuer `{issuer}` is not an http(s) URL whose OpenID configuration names the keys"
                        ))
                        .at(at("jwksUri")),
                    );
                }
            }
        }
        if let Some(t) = &r.timeout {
            if crate::duration::parse(t).is_none() {
                v.push(Diagnostic::error(format!("`{t}` is not a duration")).at(at("timeout")));
            }
        }
        let header_name = |h: &str| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        for (j, h) in r.from_headers.iter().enumerate() {
            if !header_name(&h.name) {
                v.push(
                    Diagnostic::error(format!("`{}` is not a header name", h.name))
                        .at(at(&format!("fromHeaders[{j}].name"))),
                );
            }
        }
        for (j, c) in r.output_claim_to_headers.iter().enumerate() {
            if !header_name(&c.header) {
                v.push(
                    Diagnostic::error(format!("`{}` is not a header name", c.header))
                        .at(at(&format!("outputClaimToHeaders[{j}].header"))),
                );
            }
            if c.claim.is_empty() {
                v.push(
                    Diagnostic::error("claim is required")
                        .at(at(&format!("outputClaimToHeaders[{j}].claim"))),
                );
            }
        }
        if let Some(h) = &r.output_payload_to_header {
            if !header_name(h) {
                v.push(
                    Diagnostic::error(format!("`{h}` is not a header name"))
                        .at(at("outputPayloadToHeader")),
                );
            }
        }
    }
}

fn is_http_url(s: &str) -> bool {
    s.strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .is_some_and(|rest| {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host.is_empty() && !host.contains(char::is_whitespace)
        })
}

/// An AuthorizationPolicy that Isthmus can enforce exactly, or errors saying what it cannot
/// (the policy is then not applied, and says so).
fn authorization_policy(
    spec: &crate::authorization::AuthorizationPolicySpec,
    v: &mut Vec<Diagnostic>,
) {
    use crate::authorization::{AuthorizationAction, ConditionKey};
    if spec.action == AuthorizationAction::Custom || spec.provider.is_some() {
        v.push(
            Diagnostic::error(
                "action CUSTOM (an external authorizer named by `provider`) is not supported by Isthmus; the policy is refused, not enforced",
            )
            .at(if spec.provider.is_some() { "spec.provider" } else { "spec.action" }),
        );
    }
    if spec.target_ref.is_some() || !spec.target_refs.is_empty() {
        v.push(
            Diagnostic::error(
                "targetRef/targetRefs attach a policy to Gateway API gateways and waypoints, which are not supported by Isthmus; select the workloads with `selector`",
            )
            .at(if spec.target_ref.is_some() { "spec.targetRef" } else { "spec.targetRefs" }),
        );
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = |f: String| format!("spec.rules[{i}].{f}");
        for (j, from) in rule.from.iter().enumerate() {
            let Some(src) = &from.source else {
                v.push(
                    Diagnostic::error("`source` is required in `from`")
                        .at(at(format!("from[{j}]"))),
                );
                continue;
            };
            let field = |f: &str| at(format!("from[{j}].source.{f}"));
            let fields: [(&str, &Vec<String>); 12] = [
                ("principals", &src.principals),
                ("notPrincipals", &src.not_principals),
                ("requestPrincipals", &src.request_principals),
                ("notRequestPrincipals", &src.not_request_principals),
                ("namespaces", &src.namespaces),
                ("notNamespaces", &src.not_namespaces),
                ("serviceAccounts", &src.service_accounts),
                ("notServiceAccounts", &src.not_service_accounts),
                ("ipBlocks", &src.ip_blocks),
                ("notIpBlocks", &src.not_ip_blocks),
                ("remoteIpBlocks", &src.remote_ip_blocks),
                ("notRemoteIpBlocks", &src.not_remote_ip_blocks),
            ];
            if fields.iter().all(|(_, vals)| vals.is_empty()) {
                v.push(
                    Diagnostic::error("a source must name at least one field")
                        .at(at(format!("from[{j}].source"))),
                );
            }
            for (name, vals) in fields {
                if vals.is_empty() {
                    continue;
                }
                match name {
                    "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
                        for b in vals.iter().filter(|b| !is_ip_or_cidr(b)) {
                            v.push(
                                Diagnostic::error(format!("`{b}` is not an IP address or CIDR"))
                                    .at(field(name)),
                            );
                        }
                    }
                    "requestPrincipals" | "notRequestPrincipals" => {
                        wildcards(vals, &field(name), v);
                        for p in vals.iter().filter(|p| {
                            !p.contains('/') && !p.starts_with('*') && !p.ends_with('*')
                        }) {
                            v.push(
                                Diagnostic::error(format!(
                                    "`{p}` is not ISSUER/SUBJECT (or a `*` pattern of it)"
                                ))
                                .at(field(name)),
                            );
                        }
                    }
                    "serviceAccounts" | "notServiceAccounts" => {
                        for sa in vals
                            .iter()
                            .filter(|sa| sa.split('/').count() != 2 || sa.contains('*'))
                        {
                            v.push(
                                Diagnostic::error(format!("`{sa}` is not NAMESPACE/NAME"))
                                    .at(field(name)),
                            );
                        }
                    }
                    _ => wildcards(vals, &field(name), v),
                }
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let Some(op) = &to.operation else {
                v.push(
                    Diagnostic::error("`operation` is required in `to`").at(at(format!("to[{j}]"))),
                );
                continue;
            };
            let field = |f: &str| at(format!("to[{j}].operation.{f}"));
            let all = [
                &op.hosts,
                &op.not_hosts,
                &op.ports,
                &op.not_ports,
                &op.methods,
                &op.not_methods,
                &op.paths,
                &op.not_paths,
            ];
            if all.iter().all(|vals| vals.is_empty()) {
                v.push(
                    Diagnostic::error("an operation must name at least one field")
                        .at(at(format!("to[{j}].operation"))),
                );
            }
            for (name, vals) in [("ports", &op.ports), ("notPorts", &op.not_ports)] {
                for p in vals
                    .iter()
                    .filter(|p| !p.parse::<u16>().is_ok_and(|n| n > 0))
                {
                    v.push(
                        Diagnostic::error(format!("`{p}` is not a port number (1-65535)"))
                            .at(field(name)),
                    );
                }
            }
            for (name, vals) in [
                ("hosts", &op.hosts),
                ("notHosts", &op.not_hosts),
                ("paths", &op.paths),
                ("notPaths", &op.not_paths),
                ("methods", &op.methods),
                ("notMethods", &op.not_methods),
            ] {
                wildcards(vals, &field(name), v);
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            let field = at(format!("when[{j}]"));
            match ConditionKey::parse(&c.key) {
                Err(e) => v.push(
                    Diagnostic::error(format!("{e}; the policy is refused"))
                        .at(format!("{field}.key")),
                ),
                Ok(key) => {
                    if c.values.is_empty() && c.not_values.is_empty() {
                        v.push(
                            Diagnostic::error("a condition needs `values` or `notValues`")
                                .at(field.clone()),
                        );
                    }
                    let vals = c.values.iter().chain(&c.not_values);
                    match key {
                        ConditionKey::SourceIp
                        | ConditionKey::RemoteIp
                        | ConditionKey::DestinationIp => {
                            for b in vals.filter(|b| !is_ip_or_cidr(b)) {
                                v.push(
                                    Diagnostic::error(format!(
                                        "`{b}` is not an IP address or CIDR"
                                    ))
                                    .at(field.clone()),
                                );
                            }
                        }
                        ConditionKey::DestinationPort => {
                            for p in vals.filter(|p| !p.parse::<u16>().is_ok_and(|n| n > 0)) {
                                v.push(
                                    Diagnostic::error(format!(
                                        "`{p}` is not a port number (1-65535)"
                                    ))
                                    .at(field.clone()),
                                );
                            }
                        }
                        _ => wildcards(
                            &c.values
                                .iter()
                                .chain(&c.not_values)
                                .cloned()
                                .collect::<Vec<_>>(),
                            &field,
                            v,
                        ),
                    }
                }
            }
        }
    }
}

/// Port-level modes need a selector and name real ports (Istio's rules); a key that is not
/// a port would otherwise match nothing, silently.
fn peer_authentication(spec: &crate::security::PeerAuthenticationSpec, v: &mut Vec<Diagnostic>) {
    if !spec.port_level_mtls.is_empty() && spec.selector.is_none() {
        v.push(
            Diagnostic::error(
                "portLevelMtls needs a selector: it applies to the ports of the workloads selected",
            )
            .at("spec.portLevelMtls"),
        );
    }
    for port in spec.port_level_mtls.keys() {
        if !port.parse::<u16>().is_ok_and(|n| n > 0) {
            v.push(
                Diagnostic::error(format!("`{port}` is not a port number (1-65535)"))
                    .at(format!("spec.portLevelMtls.{port}")),
            );
        }
    }
}

/// Istio's string patterns: exact, `*` alone, `prefix*` or `*suffix`; a `*` anywhere else
/// would be taken literally by Envoy, which is never what the writer meant.
fn wildcards(values: &[String], field: &str, v: &mut Vec<Diagnostic>) {
    for s in values {
        // By characters, not bytes: a value may hold any UTF-8 (a fuzzed `ñ*` panicked).
        let middle = s.strip_prefix('*').unwrap_or(s);
        let inner = s.len() > 1 && middle.strip_suffix('*').unwrap_or(middle).contains('*');
        let both = s.len() > 1 && s.starts_with('*') && s.ends_with('*');
        if s.is_empty() || inner || both {
            v.push(
                Diagnostic::error(format!(
                    "`{s}`: a value is exact, `*`, `prefix*` or `*suffix`"
                ))
                .at(field),
            );
        }
    }
}

fn port_range(n: u32, field: String, v: &mut Vec<Diagnostic>) {
    if n == 0 || n > 65535 {
        v.push(Diagnostic::error(format!("port must be between 1 and 65535, got {n}")).at(field));
    }
}

fn placeholder(s: &str) -> bool {
    s.contains("${")
        || (s.starts_with('<') && s.ends_with('>'))
        || s.chars().all(|c| c.is_ascii_uppercase() || c == '_') && s.len() > 3
}

fn service(s: &Service, v: &mut Vec<Diagnostic>) {
    let mut names = BTreeSet::new();
    for (i, p) in s.spec.ports.iter().enumerate() {
        port_range(p.port, format!("spec.ports[{i}].port"), v);
        if s.spec.ports.len() > 1 && p.name.is_empty() {
            v.push(
                Diagnostic::error("a service with several ports must name each")
                    .at(format!("spec.ports[{i}].name")),
            );
        }
        if !p.name.is_empty() && !names.insert(p.name.clone()) {
            v.push(
                Diagnostic::error(format!("duplicate port name `{}`", p.name))
                    .at(format!("spec.ports[{i}].name")),
            );
        }
    }
}

/// True for a DNS name, optionally starting with `*.` (or `*` alone when `allow_star`).
pub fn is_host(h: &str, allow_star: bool) -> bool {
    if h == "*" {
        return allow_star;
    }
    let rest = h.strip_prefix("*.").unwrap_or(h);
    !rest.is_empty() && rest.split('.').all(is_dns_label)
}

/// What is wrong with an object's name, as Kubernetes checks it: a Service's name is a DNS
/// label (at most 63 characters, no dots: it becomes one label of its DNS name), any other
/// a DNS subdomain (at most 253 characters, labels of at most 63). A long name is shown cut.
fn name_problem(name: &str, service: bool) -> Option<String> {
    if name.is_empty() {
        return Some("metadata.name is required".into());
    }
    let shown = if name.chars().count() > 40 {
        format!("{}...", name.chars().take(40).collect::<String>())
    } else {
        name.to_string()
    };
    let len = name.len();
    let (max, what) = if service {
        (63, "a Service name is one DNS label")
    } else {
        (253, "a name is a DNS subdomain")
    };
    if len > max {
        return Some(format!(
            "`{shown}` is {len} characters long: at most {max} ({what})"
        ));
    }
    if let Some(long) = name.split('.').find(|l| l.len() > 63) {
        return Some(format!(
            "`{shown}` has a part of {} characters between dots: at most 63 each",
            long.len()
        ));
    }
    if service && name.contains('.') {
        return Some(format!(
            "`{shown}` is not a valid Service name: no dots ({what})"
        ));
    }
    if !is_dns_subdomain(name) || (service && name.starts_with(|c: char| c.is_ascii_digit())) {
        return Some(format!(
            "`{shown}` is not a valid name: lower case letters, digits and '-'{}, starting{} and ending with a letter or digit",
            if service { "" } else { " (and '.' between parts)" },
            if service { " with a letter" } else { "" }
        ));
    }
    None
}

fn is_dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.')
            .all(|l| is_dns_label(l) && l.chars().all(|c| !c.is_ascii_uppercase()))
}

fn is_ip_or_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((ip, bits)) => ip.parse::<IpAddr>().is_ok_and(|ip| {
            bits.parse::<u8>()
                .is_ok_and(|b| b <= if ip.is_ipv4() { 32 } else { 128 })
        }),
        None => s.parse::<IpAddr>().is_ok(),
    }
}

fn service_entry(se: &ServiceEntry, v: &mut Vec<Diagnostic>) {
    let spec = &se.spec;
    export_to(&spec.export_to, "spec.exportTo", v);
    if let Some(selector) = &spec.workload_selector {
        if !spec.endpoints.is_empty() {
            v.push(
                Diagnostic::error(
                    "only one of workloadSelector or endpoints is allowed in a ServiceEntry",
                )
                .at("spec.workloadSelector"),
            );
        }
        if spec.resolution.unwrap_or(Resolution::None) == Resolution::None {
            v.push(
                Diagnostic::error(
                    "workloadSelector selects endpoints, which resolution NONE does not use; use STATIC (or DNS for WorkloadEntries with host names)",
                )
                .at("spec.resolution"),
            );
        }
        selector_labels(&selector.labels, "spec.workloadSelector.labels", v);
    }
    if spec.hosts.is_empty() {
        v.push(Diagnostic::error("at least one host is required").at("spec.hosts"));
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        if !is_host(h, false) {
            v.push(
                Diagnostic::error(format!("`{h}` is not a valid host name"))
                    .at(format!("spec.hosts[{i}]")),
            );
        }
    }
    for (i, a) in spec.addresses.iter().enumerate() {
        if placeholder(a) {
            v.push(
                Diagnostic::error(format!(
                    "`{a}` looks like a placeholder that was not filled in"
                ))
                .at(format!("spec.addresses[{i}]")),
            );
        } else if !is_ip_or_cidr(a) {
            v.push(
                Diagnostic::error(format!("`{a}` is not an IP address or CIDR"))
                    .at(format!("spec.addresses[{i}]")),
            );
        }
    }
    if spec.ports.is_empty() {
        v.push(Diagnostic::error("at least one port is required").at("spec.ports"));
    }
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        port_range(p.number, format!("spec.ports[{i}].number"), v);
        if p.name.is_empty() {
            v.push(Diagnostic::error("port name is required").at(format!("spec.ports[{i}].name")));
        } else if !names.insert(p.name.as_str()) {
            v.push(
                Diagnostic::error(format!("duplicate port name `{}`", p.name))
                    .at(format!("spec.ports[{i}].name")),
            );
        }
        if !numbers.insert(p.number) {
            v.push(
                Diagnostic::error(format!("duplicate port number {}", p.number))
                    .at(format!("spec.ports[{i}].number")),
            );
        }
        if let Some(t) = p.target_port {
            port_range(t, format!("spec.ports[{i}].targetPort"), v);
        }
    }
    let resolution = spec.resolution.unwrap_or(Resolution::None);
    if resolution == Resolution::None && !spec.endpoints.is_empty() {
        v.push(
            Diagnostic::error(
                "no endpoints should be given with resolution NONE; use STATIC or DNS",
            )
            .at("spec.resolution"),
        );
    }
    if matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
        && spec.endpoints.is_empty()
    {
        for (i, h) in spec.hosts.iter().enumerate() {
            if h.starts_with('*') {
                v.push(
                    Diagnostic::error(
                        "a wildcard host cannot be resolved by DNS without endpoints",
                    )
                    .at(format!("spec.hosts[{i}]")),
                );
            }
        }
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        workload(
            ep,
            &format!("spec.endpoints[{i}]"),
            Some((resolution, &names)),
            v,
        );
    }
}

/// A label selector's keys and values: Kubernetes label syntax, no wildcards.
fn selector_labels(labels: &BTreeMap<String, String>, at: &str, v: &mut Vec<Diagnostic>) {
    for (k, value) in labels {
        if k.is_empty() || k.contains('*') || value.contains('*') {
            v.push(
                Diagnostic::error(format!(
                    "`{k}: {value}`: a selector matches labels exactly; wildcards are not supported"
                ))
                .at(format!("{at}.{k}")),
            );
        }
    }
}

fn workload(
    ep: &WorkloadEntrySpec,
    field: &str,
    within: Option<(Resolution, &BTreeSet<&str>)>,
    v: &mut Vec<Diagnostic>,
) {
    let addr = ep.address.as_str();
    if addr.is_empty() {
        v.push(Diagnostic::error("address is required").at(format!("{field}.address")));
    } else if placeholder(addr) {
        v.push(
            Diagnostic::error(format!(
                "`{addr}` looks like a placeholder that was not filled in"
            ))
            .at(format!("{field}.address")),
        );
    } else if addr.parse::<IpAddr>().is_err() {
        if matches!(within, Some((Resolution::Static, _))) {
            v.push(
                Diagnostic::error(format!(
                    "`{addr}` is not an IP address, which resolution STATIC requires"
                ))
                .at(format!("{field}.address")),
            );
        } else if !addr.starts_with("unix://") && !is_host(addr, false) {
            v.push(
                Diagnostic::error(format!("`{addr}` is neither an IP address nor a host name"))
                    .at(format!("{field}.address")),
            );
        }
    }
    for (name, port) in &ep.ports {
        port_range(*port, format!("{field}.ports.{name}"), v);
        if let Some((_, names)) = within {
            if !names.contains(name.as_str()) {
                // Seed 002's own ServiceEntry maps a `tcp` port its entry does not declare;
                // Istio applies it, so this is a warning and the mapping is ignored.
                v.push(
                    Diagnostic::warning(format!(
                        "`{name}` is not the name of a port of this ServiceEntry; the mapping is ignored"
                    ))
                    .at(format!("{field}.ports.{name}")),
                );
            }
        }
    }
    if let Some(l) = &ep.locality {
        if l.split('/').count() > 3 || l.starts_with('/') {
            v.push(
                Diagnostic::error(format!("locality `{l}` must be region/zone/subzone"))
                    .at(format!("{field}.locality")),
            );
        }
    }
}

fn destination_rule(dr: &DestinationRule, v: &mut Vec<Diagnostic>) {
    if dr.spec.host.is_empty() {
        v.push(Diagnostic::error("host is required").at("spec.host"));
    } else if !is_host(&dr.spec.host, true) {
        v.push(
            Diagnostic::error(format!("`{}` is not a valid host", dr.spec.host)).at("spec.host"),
        );
    }
    export_to(&dr.spec.export_to, "spec.exportTo", v);
    if dr.spec.workload_selector.is_some() {
        v.push(
            Diagnostic::error("workloadSelector is not supported by Isthmus; the rule is refused rather than applied to every workload")
                .at("spec.workloadSelector"),
        );
    }
    if let Some(tp) = &dr.spec.traffic_policy {
        traffic_policy(tp, "spec.trafficPolicy", v);
    }
    for (i, s) in dr.spec.subsets.iter().enumerate() {
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(tp, &format!("spec.subsets[{i}].trafficPolicy"), v);
        }
    }
    let mut names = BTreeSet::new();
    for (i, s) in dr.spec.subsets.iter().enumerate() {
        if !is_dns_label(&s.name) {
            v.push(Diagnostic::error(format!("subset name `{}` must be a DNS label: it becomes part of cluster names and SNI", s.name)).at(format!("spec.subsets[{i}].name")));
        } else if !names.insert(s.name.as_str()) {
            v.push(
                Diagnostic::error(format!("duplicate subset `{}`", s.name))
                    .at(format!("spec.subsets[{i}].name")),
            );
        }
        if s.labels.is_empty() {
            v.push(
                Diagnostic::warning("a subset without labels selects every endpoint")
                    .at(format!("spec.subsets[{i}].labels")),
            );
        }
    }
}

/// A traffic policy Isthmus enforces whole, or errors naming what it cannot.
fn traffic_policy(tp: &crate::networking::TrafficPolicy, at: &str, v: &mut Vec<Diagnostic>) {
    use crate::enums::TlsMode;
    for field in tp.unsupported() {
        v.push(
            Diagnostic::error(format!(
                "{field} is not supported by Isthmus yet; the rule is refused rather than applied without it"
            ))
            .at(format!("{at}.{field}")),
        );
    }
    if let Some(lb) = &tp.load_balancer {
        policy::load_balancer(lb, &format!("{at}.loadBalancer"), v);
    }
    if let Some(cp) = &tp.connection_pool {
        policy::connection_pool(cp, &format!("{at}.connectionPool"), v);
    }
    if let Some(od) = &tp.outlier_detection {
        policy::outlier_detection(od, &format!("{at}.outlierDetection"), v);
    }
    let Some(tls) = &tp.tls else {
        return;
    };
    let at = format!("{at}.tls");
    if tls.credential_name.is_some() {
        v.push(
            Diagnostic::error("credentialName (certificates from a Kubernetes Secret) is not supported by Isthmus in a DestinationRule; name the files with clientCertificate, privateKey and caCertificates")
                .at(format!("{at}.credentialName")),
        );
    }
    if tls.ca_crl.is_some() {
        v.push(Diagnostic::error("caCrl is not supported by Isthmus").at(format!("{at}.caCrl")));
    }
    let files = [
        ("clientCertificate", &tls.client_certificate),
        ("privateKey", &tls.private_key),
        ("caCertificates", &tls.ca_certificates),
    ];
    match tls.mode {
        TlsMode::Mutual => {
            for (name, f) in &files[..2] {
                if f.is_none() && tls.credential_name.is_none() {
                    v.push(
                        Diagnostic::error(format!(
                            "MUTUAL needs {name}: the file the proxy presents"
                        ))
                        .at(format!("{at}.{name}")),
                    );
                }
            }
        }
        TlsMode::Simple => {
            for (name, f) in &files[..2] {
                if f.is_some() {
                    v.push(
                        Diagnostic::error(format!(
                            "{name} is for MUTUAL; SIMPLE presents no client certificate"
                        ))
                        .at(format!("{at}.{name}")),
                    );
                }
            }
        }
        TlsMode::Disable | TlsMode::IstioMutual => {
            for (name, f) in files {
                if f.is_some() {
                    v.push(
                        Diagnostic::error(format!(
                            "{name} has no effect with mode {}: the mesh's own certificates are used, or none",
                            tls.mode.as_str()
                        ))
                        .at(format!("{at}.{name}")),
                    );
                }
            }
        }
    }
    for (name, f) in files {
        if f.as_deref().is_some_and(|p| !p.starts_with('/')) {
            v.push(
                Diagnostic::error(format!(
                    "{name} must be an absolute path in the proxy's file system"
                ))
                .at(format!("{at}.{name}")),
            );
        }
    }
    if tls.insecure_skip_verify
        && (tls.ca_certificates.is_some() || !tls.subject_alt_names.is_empty())
    {
        v.push(
            Diagnostic::error("insecureSkipVerify turns off the checks that caCertificates and subjectAltNames ask for; keep one or the other")
                .at(format!("{at}.insecureSkipVerify")),
        );
    } else if tls.insecure_skip_verify && matches!(tls.mode, TlsMode::Simple | TlsMode::Mutual) {
        // Without caCertificates the server is verified against the system's roots (as
        // Istio does with VERIFY_CERTIFICATE_AT_CLIENT); only this turns verification off.
        v.push(
            Diagnostic::warning(format!(
                "TLS mode {} with insecureSkipVerify: the server's certificate is not verified, so anyone on the path can pose as it",
                tls.mode.as_str()
            ))
            .at(format!("{at}.insecureSkipVerify"))
            .code(&crate::diagnostic::codes::NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL),
        );
    }
}

fn gateway(g: &Gateway, v: &mut Vec<Diagnostic>) {
    if g.spec.servers.is_empty() {
        v.push(Diagnostic::error("at least one server is required").at("spec.servers"));
    }
    for (i, s) in g.spec.servers.iter().enumerate() {
        port_range(s.port.number, format!("spec.servers[{i}].port.number"), v);
        for (field, set) in [
            ("bind", s.bind.is_some()),
            ("defaultEndpoint", s.default_endpoint.is_some()),
            ("port.targetPort", s.port.target_port.is_some()),
        ] {
            if set {
                unsupported(
                    v,
                    &format!("spec.servers[{i}].{field}"),
                    &format!("{field} is not supported by Isthmus yet; the Gateway is refused rather than served without it"),
                );
            }
        }
        if let Some(tls) = &s.tls {
            for field in tls.unsupported() {
                unsupported(
                    v,
                    &format!("spec.servers[{i}].tls.{field}"),
                    &format!("tls.{field} is not supported by Isthmus yet; name one Secret with credentialName, or the PEM files with serverCertificate, privateKey and caCertificates"),
                );
            }
        }
        let served = match (s.port.protocol, s.tls.as_ref().map(|t| t.mode)) {
            (p, _) if p.is_http() => true,
            (crate::enums::Protocol::Https, Some(_)) => true,
            (
                crate::enums::Protocol::Tls,
                Some(ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough),
            ) => true,
            _ => false,
        };
        let reported = s.port.number == EAST_WEST_PORT
            || (s.port.protocol == crate::enums::Protocol::Https && s.tls.is_none());
        if !served && !reported {
            unsupported(
                v,
                &format!("spec.servers[{i}].port.protocol"),
                &format!(
                    "a {} server{} is not supported by Isthmus yet (served: HTTP, HTTP2, GRPC; HTTPS with tls; TLS with PASSTHROUGH or AUTO_PASSTHROUGH); the Gateway is refused rather than served in part",
                    s.port.protocol.as_str(),
                    s.tls.as_ref().map(|t| format!(" with tls.mode {}", t.mode.as_str())).unwrap_or_default()
                ),
            );
        }
        if s.hosts.is_empty() {
            v.push(
                Diagnostic::error("at least one host is required")
                    .at(format!("spec.servers[{i}].hosts")),
            );
        }
        for (j, h) in s.hosts.iter().enumerate() {
            let host = h.split_once('/').map(|(_, h)| h).unwrap_or(h);
            if !is_host(host, true) {
                v.push(
                    Diagnostic::error(format!("`{h}` is not a valid host"))
                        .at(format!("spec.servers[{i}].hosts[{j}]")),
                );
            }
        }
        let mode = s.tls.as_ref().map(|t| t.mode);
        if s.port.number == EAST_WEST_PORT && mode != Some(ServerTlsMode::AutoPassthrough) {
            v.push(Diagnostic::error(
                "port 15443 belongs to the east-west gateway, which passes mesh mTLS through by SNI; \
                 do not create a Gateway for it (seed: \"Do not create a Gateway configuration for port 15443\"), \
                 or set tls.mode AUTO_PASSTHROUGH",
            ).at(format!("spec.servers[{i}].port.number")));
        }
        if let Some(tls) = &s.tls {
            let at = |f: &str| format!("spec.servers[{i}].tls.{f}");
            let credential = tls.credential_name.as_deref();
            if credential == Some("") {
                v.push(Diagnostic::error("credentialName is empty").at(at("credentialName")));
            }
            if credential.is_some() {
                for (field, value) in [
                    ("serverCertificate", &tls.server_certificate),
                    ("privateKey", &tls.private_key),
                    ("caCertificates", &tls.ca_certificates),
                ] {
                    if value.is_some() {
                        v.push(
                            Diagnostic::error(format!(
                                "{field} and credentialName are exclusive: the certificates come from the Secret or from files"
                            ))
                            .at(at(field)),
                        );
                    }
                }
                if !matches!(tls.mode, ServerTlsMode::Simple | ServerTlsMode::Mutual) {
                    v.push(
                        Diagnostic::error(format!(
                            "credentialName is for tls.mode SIMPLE or MUTUAL, not {}",
                            tls.mode.as_str()
                        ))
                        .at(at("credentialName")),
                    );
                }
            } else if matches!(tls.mode, ServerTlsMode::Simple | ServerTlsMode::Mutual) {
                for (field, value) in [
                    ("serverCertificate", &tls.server_certificate),
                    ("privateKey", &tls.private_key),
                ] {
                    if value.as_deref().is_none_or(str::is_empty) {
                        v.push(
                            Diagnostic::error(format!(
                                "tls.mode {} needs {field} (the path of a PEM file the gateway can read) or credentialName (a Secret)",
                                tls.mode.as_str()
                            ))
                            .at(at(field)),
                        );
                    }
                }
            }
            if tls.mode == ServerTlsMode::Mutual
                && credential.is_none()
                && tls.ca_certificates.as_deref().is_none_or(str::is_empty)
            {
                v.push(
                    Diagnostic::error(
                        "tls.mode MUTUAL needs caCertificates: the PEM file client certificates are checked against",
                    )
                    .at(at("caCertificates")),
                );
            }
            if matches!(
                tls.mode,
                ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::IstioMutual
            ) && !matches!(
                s.port.protocol,
                crate::enums::Protocol::Https | crate::enums::Protocol::Tls
            ) {
                v.push(
                    Diagnostic::error(format!(
                        "tls.mode {} terminates TLS: the port's protocol must be HTTPS (or TLS)",
                        tls.mode.as_str()
                    ))
                    .at(format!("spec.servers[{i}].port.protocol")),
                );
            }
        } else if matches!(s.port.protocol, crate::enums::Protocol::Https) {
            v.push(
                Diagnostic::error(
                    "an HTTPS server needs tls (mode SIMPLE, MUTUAL or ISTIO_MUTUAL)",
                )
                .at(format!("spec.servers[{i}].tls")),
            );
        }
        if mode == Some(ServerTlsMode::AutoPassthrough)
            && !matches!(s.port.protocol, crate::enums::Protocol::Tls)
        {
            v.push(
                Diagnostic::error("AUTO_PASSTHROUGH needs protocol TLS")
                    .at(format!("spec.servers[{i}].port.protocol")),
            );
        }
    }
}

fn config_map(cm: &ConfigMap, v: &mut Vec<Diagnostic>) {
    if &*cm.metadata.name != "istio" {
        return;
    }
    if let Some(text) = cm.data.get("meshNetworks") {
        if let Err(e) = MeshNetworks::parse(text) {
            v.push(Diagnostic::error(format!("invalid meshNetworks: {e}")).at("data.meshNetworks"));
        }
    }
    if let Some(text) = cm.data.get("mesh") {
        match MeshConfig::parse(text) {
            Err(e) => {
                v.push(Diagnostic::error(format!("invalid mesh config: {e}")).at("data.mesh"))
            }
            Ok(m) => mesh_config(&m, v),
        }
    }
}

/// The values of the MeshConfig fields Isthmus enforces: only those it can honour.
fn mesh_config(m: &MeshConfig, v: &mut Vec<Diagnostic>) {
    if m.trust_domain.is_empty() || !is_dns_subdomain(&m.trust_domain) {
        v.push(
            Diagnostic::error(format!(
                "`{}` is not a trust domain (a DNS name)",
                m.trust_domain
            ))
            .at("data.mesh.trustDomain"),
        );
    }
    if let Some(root) = m.root_namespace.as_deref().filter(|r| *r != "istio-system") {
        unsupported(
            v,
            "data.mesh.rootNamespace",
            &format!("rootNamespace `{root}` is not supported by Isthmus: the root namespace is istio-system"),
        );
    }
    if m.enable_auto_mtls == Some(false) {
        unsupported(
            v,
            "data.mesh.enableAutoMtls",
            "enableAutoMtls: false is not supported by Isthmus: sidecars always speak mTLS to meshed endpoints (turn it off per destination with a DestinationRule `tls.mode: DISABLE`)",
        );
    }
    if let Some(f) = m.access_log_file.as_deref().filter(|f| *f != "/dev/stdout") {
        unsupported(
            v,
            "data.mesh.accessLogFile",
            &format!("accessLogFile `{f}` is not supported by Isthmus: its proxies always log to /dev/stdout"),
        );
    }
    for (field, values) in [
        ("defaultServiceExportTo", &m.default_service_export_to),
        (
            "defaultVirtualServiceExportTo",
            &m.default_virtual_service_export_to,
        ),
        (
            "defaultDestinationRuleExportTo",
            &m.default_destination_rule_export_to,
        ),
    ] {
        export_to(values, &format!("data.mesh.{field}"), v);
    }
    if let Some(l) = &m.locality_lb_setting {
        policy::locality(l, "data.mesh.localityLbSetting", v);
    }
}

#[cfg(test)]
mod tests {
    use crate::load::load_str;

    fn errors(yaml: &str) -> Vec<String> {
        load_str(yaml, None, "ns")
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn a_service_entry_selects_workloads_or_lists_endpoints_never_both() {
        let se = |extra: &str| {
            errors(&format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: db}}\nspec:\n  hosts: [db.example]\n  location: MESH_INTERNAL\n  ports: [{{name: tcp, number: 5432, protocol: TCP}}]\n{extra}"))
        };
        assert!(se("  resolution: STATIC\n  workloadSelector: {labels: {app: db}}\n").is_empty());
        let both = se("  resolution: STATIC\n  workloadSelector: {labels: {app: db}}\n  endpoints: [{address: 10.0.0.1}]\n");
        assert!(
            both.iter().any(|m| m.contains(
                "spec.workloadSelector: only one of workloadSelector or endpoints is allowed"
            )),
            "{both:?}"
        );
        let none = se("  workloadSelector: {labels: {app: db}}\n");
        assert!(
            none.iter()
                .any(|m| m.contains("spec.resolution: workloadSelector selects endpoints")),
            "{none:?}"
        );
        let wild = se("  resolution: STATIC\n  workloadSelector: {labels: {app: '*'}}\n");
        assert!(
            wild.iter()
                .any(|m| m.contains("spec.workloadSelector.labels.app")
                    && m.contains("wildcards are not supported")),
            "{wild:?}"
        );
        let typo = se("  resolution: STATIC\n  workloadSelector: {label: {app: db}}\n");
        assert!(typo.iter().any(|m| m.contains("label")), "{typo:?}");
        // A WorkloadEntry is an endpoint, read strictly.
        let we = |spec: &str| {
            errors(&format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: vm}}\nspec:\n{spec}"
            ))
        };
        assert!(we("  address: 10.0.0.1\n  labels: {app: db}\n  serviceAccount: db\n").is_empty());
        let e = we("  labels: {app: db}\n");
        assert!(
            e.iter()
                .any(|m| m.contains("spec.address: address is required")),
            "{e:?}"
        );
        let e = we("  address: 10.0.0.1\n  adress: x\n");
        assert!(e.iter().any(|m| m.contains("adress")), "{e:?}");
    }

    #[test]
    fn terminating_gateway_servers_name_the_missing_credential_field() {
        let e = errors("apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata:\n  name: g\nspec:\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.example.com]\n    tls: {mode: MUTUAL, serverCertificate: /c.pem}\n  - port: {number: 8443, name: https2, protocol: HTTPS}\n    hosts: [b.example.com]\n");
        assert!(
            e.iter()
                .any(|m| m
                    .contains("spec.servers[0].tls.privateKey: tls.mode MUTUAL needs privateKey")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("spec.servers[0].tls.caCertificates")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("spec.servers[1].tls: an HTTPS server needs tls")),
            "{e:?}"
        );
        assert!(
            !e.iter().any(|m| m.contains("serverCertificate")),
            "serverCertificate was given: {e:?}"
        );
        // An HTTP server's tls carries only httpsRedirect (mode defaults to PASSTHROUGH).
        let ok = errors("apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata:\n  name: g\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n    tls: {httpsRedirect: true}\n");
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn gateway_on_15443_without_auto_passthrough_is_refused() {
        let e = errors("apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata:\n  name: g\nspec:\n  servers:\n  - port:\n      number: 15443\n      protocol: TLS\n      name: tls\n    hosts: ['*']\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(
                "spec.servers[0].port.number: port 15443 belongs to the east-west gateway"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn seed_003_gateway_is_accepted() {
        let e = errors("apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata:\n  name: cluster-aware-gateway\n  namespace: istio-system\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: 443\n      name: tls\n      protocol: TLS\n    tls:\n      mode: AUTO_PASSTHROUGH\n    hosts:\n    - \"*.local\"\n");
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn unfilled_placeholder_and_unknown_port_name_are_named() {
        let e = errors("apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: s\nspec:\n  hosts: [a.b.global]\n  ports:\n  - name: http1\n    number: 8000\n    protocol: http\n  resolution: DNS\n  endpoints:\n  - address: ${GATEWAY_IP_CLUSTER2}\n    ports:\n      http: 15443\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("line 13: error: ServiceEntry/ns/s: spec.endpoints[0].address: `${GATEWAY_IP_CLUSTER2}` looks like a placeholder"), "{e:?}");
        assert!(e[1].contains("line 15: warning: ServiceEntry/ns/s: spec.endpoints[0].ports.http: `http` is not the name of a port"), "{e:?}");
    }

    #[test]
    fn weights_must_add_up_to_100() {
        let e = errors("apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: v\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination:\n        host: a\n        subset: v1\n      weight: 50\n    - destination:\n        host: a\n        subset: v2\n      weight: 40\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("spec.http[0].route: route weights add up to 90"),
            "{e:?}"
        );
    }

    #[test]
    fn static_endpoints_must_be_ips() {
        let e = errors("apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: s\nspec:\n  hosts: [a.b]\n  ports:\n  - {name: http, number: 80, protocol: HTTP}\n  resolution: STATIC\n  endpoints:\n  - address: gw.example.com\n");
        assert!(e[0].contains("resolution STATIC requires"), "{e:?}");
    }
}
