//! VirtualService validation: what Isthmus turns into Envoy routes is checked, and what
//! Istio has but Isthmus does not enforce yet refuses the object by name.

use super::{port_range, unsupported};
use crate::diagnostic::Diagnostic;
use crate::duration;
use crate::networking::{
    CorsPolicy, Destination, Headers, HttpFault, HttpMatchRequest, HttpRoute, RouteDestination,
    StringMatch, TcpRoute, TlsRoute, VirtualService, VirtualServiceSpec,
};
use std::net::IpAddr;

/// gRPC status names, in code order, as Istio's `grpcStatus` takes them.
pub const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The gRPC status code of an Istio `grpcStatus` (a name such as `UNAVAILABLE`, or a number).
pub fn grpc_status(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().filter(|c| *c <= 16).map(|c| c as u32),
        serde_json::Value::String(s) => {
            if let Ok(c) = s.parse::<u32>() {
                return (c <= 16).then_some(c);
            }
            GRPC_STATUS
                .iter()
                .position(|n| n.eq_ignore_ascii_case(s))
                .map(|i| i as u32)
        }
        _ => None,
    }
}

pub(super) fn virtual_service(vs: &VirtualService, v: &mut Vec<Diagnostic>) {
    let spec = &vs.spec;
    if spec.hosts.is_empty() {
        // A delegate: routes another VirtualService hands over, HTTP only.
        if !spec.gateways.is_empty() {
            v.push(
                Diagnostic::error("a delegate VirtualService (one without hosts) takes its gateways from the root that delegates to it; remove `gateways`")
                    .at("spec.gateways"),
            );
        }
        if !spec.tcp.is_empty() || !spec.tls.is_empty() {
            v.push(
                Diagnostic::error("a delegate VirtualService (one without hosts) has HTTP routes only; give it hosts to route TCP or TLS")
                    .at(if spec.tcp.is_empty() { "spec.tls" } else { "spec.tcp" }),
            );
        }
        if spec.http.is_empty() {
            v.push(Diagnostic::error("at least one host is required").at("spec.hosts"));
        }
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        if !super::is_host(h, true) && h.parse::<IpAddr>().is_err() {
            v.push(
                Diagnostic::error(format!("`{h}` is not a valid host"))
                    .at(format!("spec.hosts[{i}]")),
            );
        }
    }
    super::export_to(&spec.export_to, "spec.exportTo", v);
    for (i, r) in spec.http.iter().enumerate() {
        http_route(r, &format!("spec.http[{i}]"), v);
    }
    for (i, r) in spec.tcp.iter().enumerate() {
        tcp_route(r, spec, &format!("spec.tcp[{i}]"), v);
    }
    for (i, r) in spec.tls.iter().enumerate() {
        tls_route(r, spec.binds_mesh(), &format!("spec.tls[{i}]"), v);
    }
}

fn http_route(r: &HttpRoute, at: &str, v: &mut Vec<Diagnostic>) {
    if let Some(d) = &r.delegate {
        if d.name.is_empty() {
            v.push(Diagnostic::error("a delegate needs a name").at(format!("{at}.delegate.name")));
        }
    }
    if r.mirror_percent.is_some() {
        unsupported(
            v,
            &format!("{at}.mirrorPercent"),
            "mirrorPercent is deprecated and not supported by Isthmus; use mirrorPercentage: {value: N}",
        );
    }
    for (j, m) in r.match_.iter().enumerate() {
        http_match(m, &format!("{at}.match[{j}]"), v);
    }
    let actions = usize::from(r.redirect.is_some())
        + usize::from(!r.route.is_empty())
        + usize::from(r.direct_response.is_some())
        + usize::from(r.delegate.is_some());
    match actions {
        0 => v.push(
            Diagnostic::error(
                "an HTTP route needs `route` (destinations), `redirect`, `directResponse` or `delegate`",
            )
            .at(format!("{at}.route")),
        ),
        1 => {}
        _ => v.push(
            Diagnostic::error(
                "a route has one of `route`, `redirect`, `directResponse` and `delegate`, not several",
            )
            .at(format!("{at}.redirect")),
        ),
    }
    if let Some(d) = &r.direct_response {
        if !(200..=599).contains(&d.status) {
            v.push(
                Diagnostic::error(format!("{} is not an HTTP status (200 to 599)", d.status))
                    .at(format!("{at}.directResponse.status")),
            );
        }
        if let Some(b) = &d.body {
            use base64::Engine as _;
            match (&b.string, &b.bytes) {
                (Some(_), Some(_)) => v.push(
                    Diagnostic::error("a body is `string` or `bytes`, not both")
                        .at(format!("{at}.directResponse.body")),
                ),
                (None, Some(bytes))
                    if base64::engine::general_purpose::STANDARD
                        .decode(bytes)
                        .is_err() =>
                {
                    v.push(
                        Diagnostic::error("`bytes` is not base64")
                            .at(format!("{at}.directResponse.body.bytes")),
                    )
                }
                _ => {}
            }
        }
    }
    if let Some(rd) = &r.redirect {
        if rd.derive_port.is_some() {
            unsupported(
                v,
                &format!("{at}.redirect.derivePort"),
                "derivePort is not supported by Isthmus yet; give the port",
            );
        }
        if let Some(p) = rd.port {
            port_range(p, format!("{at}.redirect.port"), v);
        }
        if let Some(code) = rd.redirect_code {
            if ![301, 302, 303, 307, 308].contains(&code) {
                v.push(
                    Diagnostic::error(format!(
                        "redirectCode {code} is not a redirect: use 301, 302, 303, 307 or 308"
                    ))
                    .at(format!("{at}.redirect.redirectCode")),
                );
            }
        }
    }
    destinations(&r.route, true, at, v);
    if let Some(rw) = &r.rewrite {
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            v.push(
                Diagnostic::error("rewrite has either `uri` or `uriRegexRewrite`, not both")
                    .at(format!("{at}.rewrite")),
            );
        }
    }
    duration_field(r.timeout.as_deref(), &format!("{at}.timeout"), v);
    if let Some(rt) = &r.retries {
        duration_field(
            rt.per_try_timeout.as_deref(),
            &format!("{at}.retries.perTryTimeout"),
            v,
        );
        duration_field(rt.backoff.as_deref(), &format!("{at}.retries.backoff"), v);
        if rt.retry_remote_localities.is_some() {
            unsupported(
                v,
                &format!("{at}.retries.retryRemoteLocalities"),
                "retryRemoteLocalities is not supported by Isthmus yet",
            );
        }
    }
    if let Some(f) = &r.fault {
        fault(f, &format!("{at}.fault"), v);
    }
    if let Some(m) = &r.mirror {
        destination(m, &format!("{at}.mirror"), v);
    }
    if let Some(p) = r.mirror_percentage {
        percentage(p.value, &format!("{at}.mirrorPercentage.value"), v);
    }
    if !r.mirrors.is_empty() {
        if r.mirror.is_some() {
            v.push(
                Diagnostic::error("a route has `mirror` or `mirrors`, not both")
                    .at(format!("{at}.mirrors")),
            );
        }
        if r.mirror_percentage.is_some() {
            v.push(
                Diagnostic::error(
                    "mirrorPercentage is the share of `mirror`; give each of `mirrors` its own `percentage`",
                )
                .at(format!("{at}.mirrorPercentage")),
            );
        }
    }
    for (j, m) in r.mirrors.iter().enumerate() {
        destination(&m.destination, &format!("{at}.mirrors[{j}].destination"), v);
        if let Some(p) = m.percentage {
            percentage(p.value, &format!("{at}.mirrors[{j}].percentage.value"), v);
        }
    }
    if let Some(c) = &r.cors_policy {
        cors(c, &format!("{at}.corsPolicy"), v);
    }
    if let Some(h) = &r.headers {
        headers(h, &format!("{at}.headers"), v);
    }
}

/// Istio's `CorsPolicy`: origins as string matches, a max age that is a duration, methods
/// and header names that are tokens.
fn cors(c: &CorsPolicy, at: &str, v: &mut Vec<Diagnostic>) {
    for (j, o) in c.allow_origins.iter().enumerate() {
        string_match(o, false, &format!("{at}.allowOrigins[{j}]"), v);
    }
    if !c.allow_origins.is_empty() && !c.allow_origin.is_empty() {
        v.push(
            Diagnostic::error(
                "allowOrigin is the deprecated form of allowOrigins; give one of them",
            )
            .at(format!("{at}.allowOrigin")),
        );
    }
    for (field, list) in [
        ("allowMethods", &c.allow_methods),
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (j, name) in list.iter().enumerate() {
            if !is_token(name) {
                v.push(
                    Diagnostic::error(format!("`{name}` is not an HTTP token"))
                        .at(format!("{at}.{field}[{j}]")),
                );
            }
        }
    }
    duration_field(c.max_age.as_deref(), &format!("{at}.maxAge"), v);
    if let Some(u) = &c.unmatched_preflights {
        if !["UNSPECIFIED", "FORWARD", "IGNORE"].contains(&u.as_str()) {
            v.push(
                Diagnostic::error(format!(
                    "`{u}` is not an unmatchedPreflights value: FORWARD or IGNORE"
                ))
                .at(format!("{at}.unmatchedPreflights")),
            );
        }
    }
}

/// Header names set, added or removed are tokens, and never pseudo-headers nor `Host`
/// (Envoy refuses those, and would NACK the whole route table).
fn headers(h: &Headers, at: &str, v: &mut Vec<Diagnostic>) {
    for (side, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        let names = ops
            .set
            .keys()
            .map(|k| ("set", k))
            .chain(ops.add.keys().map(|k| ("add", k)))
            .chain(ops.remove.iter().map(|k| ("remove", k)));
        for (op, name) in names {
            if !is_token(name) || name.eq_ignore_ascii_case("host") {
                v.push(
                    Diagnostic::error(format!(
                        "`{name}` cannot be changed: a header name is a token, and not `Host` or a pseudo-header"
                    ))
                    .at(format!("{at}.{side}.{op}")),
                );
            }
        }
    }
}

/// An HTTP token (RFC 9110): what method and header names are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn http_match(m: &HttpMatchRequest, at: &str, v: &mut Vec<Diagnostic>) {
    for (field, set) in [
        ("sourceLabels", m.source_labels.is_some()),
        ("withoutHeaders", m.without_headers.is_some()),
        ("sourceNamespace", m.source_namespace.is_some()),
        ("statPrefix", m.stat_prefix.is_some()),
    ] {
        if set {
            unsupported(
                v,
                &format!("{at}.{field}"),
                &format!("{field} is not supported by Isthmus yet; the VirtualService is refused rather than matching without it"),
            );
        }
    }
    for (field, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(sm, false, &format!("{at}.{field}"), v);
        }
    }
    for (field, map) in [("headers", &m.headers), ("queryParams", &m.query_params)] {
        for (name, sm) in map {
            string_match(sm, true, &format!("{at}.{field}.{name}"), v);
        }
    }
    if let Some(p) = m.port {
        port_range(p, format!("{at}.port"), v);
    }
}

fn string_match(sm: &StringMatch, presence: bool, at: &str, v: &mut Vec<Diagnostic>) {
    match sm.set_count() {
        0 if !presence => {
            v.push(Diagnostic::error("give one of exact, prefix or regex").at(at.to_string()))
        }
        0 | 1 => {}
        _ => {
            v.push(Diagnostic::error("give only one of exact, prefix or regex").at(at.to_string()))
        }
    }
}

fn fault(f: &HttpFault, at: &str, v: &mut Vec<Diagnostic>) {
    if f.delay.is_none() && f.abort.is_none() {
        v.push(Diagnostic::error("a fault needs a delay or an abort").at(at.to_string()));
    }
    if let Some(d) = &f.delay {
        if d.exponential_delay.is_some() {
            unsupported(
                v,
                &format!("{at}.delay.exponentialDelay"),
                "exponentialDelay is not supported by Isthmus (nor by Istio); use fixedDelay",
            );
        }
        if d.percent.is_some() {
            unsupported(
                v,
                &format!("{at}.delay.percent"),
                "percent is deprecated and not supported by Isthmus; use percentage: {value: N}",
            );
        }
        match &d.fixed_delay {
            None => v.push(
                Diagnostic::error("a delay needs fixedDelay").at(format!("{at}.delay.fixedDelay")),
            ),
            Some(_) => duration_field(
                d.fixed_delay.as_deref(),
                &format!("{at}.delay.fixedDelay"),
                v,
            ),
        }
        if let Some(p) = d.percentage {
            percentage(p.value, &format!("{at}.delay.percentage.value"), v);
        }
    }
    if let Some(a) = &f.abort {
        if a.http2_error.is_some() {
            unsupported(
                v,
                &format!("{at}.abort.http2Error"),
                "http2Error is not supported by Isthmus (nor by Istio); use httpStatus or grpcStatus",
            );
        }
        match (a.http_status, &a.grpc_status) {
            (Some(_), Some(_)) => v.push(
                Diagnostic::error("an abort has either httpStatus or grpcStatus, not both")
                    .at(format!("{at}.abort")),
            ),
            (None, None) if a.http2_error.is_none() => v.push(
                Diagnostic::error("an abort needs httpStatus or grpcStatus")
                    .at(format!("{at}.abort")),
            ),
            (Some(s), None) if !(200..=599).contains(&s) => v.push(
                Diagnostic::error(format!("httpStatus {s} is not an HTTP status (200-599)"))
                    .at(format!("{at}.abort.httpStatus")),
            ),
            (None, Some(g)) if grpc_status(g).is_none() => v.push(
                Diagnostic::error(format!(
                    "grpcStatus {g} is not a gRPC status (a name such as UNAVAILABLE, or 0-16)"
                ))
                .at(format!("{at}.abort.grpcStatus")),
            ),
            _ => {}
        }
        if let Some(p) = a.percentage {
            percentage(p.value, &format!("{at}.abort.percentage.value"), v);
        }
    }
}

/// A TCP route: sidecars only (Isthmus's gateways serve no TCP servers), matches on what a
/// sidecar knows of a connection (destination subnet, port, the caller's labels and
/// namespace).
fn tcp_route(r: &TcpRoute, spec: &VirtualServiceSpec, at: &str, v: &mut Vec<Diagnostic>) {
    if !spec.binds_mesh() {
        unsupported(
            v,
            at,
            "TCP routes on gateways are not supported by Isthmus (nor TCP Gateway servers); bind the VirtualService to `mesh`",
        );
    }
    for (j, m) in r.match_.iter().enumerate() {
        let at = format!("{at}.match[{j}]");
        if m.source_subnet.is_some() {
            unsupported(
                v,
                &format!("{at}.sourceSubnet"),
                "sourceSubnet is deprecated and not supported by Isthmus (Istio ignores it)",
            );
        }
        if let Some(g) = m
            .gateways
            .as_ref()
            .filter(|g| g.iter().any(|g| g != "mesh"))
        {
            unsupported(
                v,
                &format!("{at}.gateways"),
                &format!(
                    "TCP matches for gateways ({}) are not supported by Isthmus; use `mesh`",
                    g.join(", ")
                ),
            );
        }
        for (k, s) in m.destination_subnets.iter().enumerate() {
            if !super::is_ip_or_cidr(s) {
                v.push(
                    Diagnostic::error(format!("`{s}` is not an IP address or CIDR"))
                        .at(format!("{at}.destinationSubnets[{k}]")),
                );
            }
        }
        if let Some(p) = m.port {
            port_range(p, format!("{at}.port"), v);
        }
    }
    if r.route.is_empty() {
        v.push(
            Diagnostic::error("a route needs at least one destination").at(format!("{at}.route")),
        );
    }
    destinations(&r.route, false, at, v);
}

fn tls_route(r: &TlsRoute, binds_mesh: bool, at: &str, v: &mut Vec<Diagnostic>) {
    if binds_mesh {
        unsupported(
            v,
            at,
            "TLS routes for sidecars (gateways empty or `mesh`) are not supported by Isthmus yet; bind the VirtualService to a PASSTHROUGH Gateway",
        );
    }
    if r.match_.is_empty() {
        v.push(
            Diagnostic::error("a TLS route needs a match with sniHosts").at(format!("{at}.match")),
        );
    }
    for (j, m) in r.match_.iter().enumerate() {
        let at = format!("{at}.match[{j}]");
        if m.sni_hosts.is_empty() {
            v.push(Diagnostic::error("sniHosts is required").at(format!("{at}.sniHosts")));
        }
        for (field, set) in [
            ("destinationSubnets", m.destination_subnets.is_some()),
            ("sourceLabels", m.source_labels.is_some()),
            ("sourceNamespace", m.source_namespace.is_some()),
        ] {
            if set {
                unsupported(
                    v,
                    &format!("{at}.{field}"),
                    &format!("{field} is not supported by Isthmus yet; the VirtualService is refused rather than matching without it"),
                );
            }
        }
        if let Some(p) = m.port {
            port_range(p, format!("{at}.port"), v);
        }
    }
    if r.route.is_empty() {
        v.push(
            Diagnostic::error("a route needs at least one destination").at(format!("{at}.route")),
        );
    }
    if r.route.len() > 1 {
        unsupported(
            v,
            &format!("{at}.route"),
            "weighted TLS routes (more than one destination) are not supported by Isthmus yet",
        );
    }
    destinations(&r.route, false, at, v);
}

/// Weighted destinations; `http` says whether they may carry header changes.
fn destinations(route: &[RouteDestination], http: bool, at: &str, v: &mut Vec<Diagnostic>) {
    for (j, d) in route.iter().enumerate() {
        destination(&d.destination, &format!("{at}.route[{j}].destination"), v);
        match &d.headers {
            Some(h) if http => headers(h, &format!("{at}.route[{j}].headers"), v),
            Some(_) => v.push(
                Diagnostic::error("headers are changed on HTTP routes only")
                    .at(format!("{at}.route[{j}].headers")),
            ),
            None => {}
        }
    }
    if route.len() > 1 {
        let total: u32 = route.iter().map(|d| d.weight.unwrap_or(0)).sum();
        if total != 100 {
            v.push(
                Diagnostic::error(format!(
                    "route weights add up to {total}, they must add up to 100"
                ))
                .at(format!("{at}.route")),
            );
        }
    }
}

fn destination(d: &Destination, at: &str, v: &mut Vec<Diagnostic>) {
    if d.host.is_empty() {
        v.push(Diagnostic::error("destination host is required").at(format!("{at}.host")));
    }
    if let Some(p) = &d.port {
        port_range(p.number, format!("{at}.port.number"), v);
    }
}

fn duration_field(d: Option<&str>, at: &str, v: &mut Vec<Diagnostic>) {
    if let Some(d) = d {
        if duration::parse(d).is_none() {
            v.push(
                Diagnostic::error(format!(
                    "`{d}` is not a duration (a number and a unit: ms, s, m, h)"
                ))
                .at(at.to_string()),
            );
        }
    }
}

fn percentage(p: f64, at: &str, v: &mut Vec<Diagnostic>) {
    if !(0.0..=100.0).contains(&p) {
        v.push(Diagnostic::error(format!("{p} is not a percentage (0-100)")).at(at.to_string()));
    }
}
