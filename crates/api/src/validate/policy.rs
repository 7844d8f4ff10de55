//! Validation of a DestinationRule's load balancing, connection pool and outlier detection,
//! as Istio's `validateTrafficPolicy` checks them, plus refusals of what Isthmus does not do.

use crate::diagnostic::Diagnostic;
use crate::policy::{ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection};

fn duration(value: &Option<String>, at: String, min_ms: u64, v: &mut Vec<Diagnostic>) {
    let Some(text) = value else {
        return;
    };
    match crate::duration::parse(text) {
        None => v.push(
            Diagnostic::error(format!(
                "`{text}` is not a duration (a number and a unit: 100ms, 5s, 2m, 1h)"
            ))
            .at(at),
        ),
        Some(d) if d.as_millis() < u128::from(min_ms) => {
            v.push(Diagnostic::error(format!("`{text}` is too short: at least {min_ms}ms")).at(at))
        }
        Some(_) => {}
    }
}

fn percent(value: Option<i32>, at: String, v: &mut Vec<Diagnostic>) {
    if let Some(p) = value {
        if !(0..=100).contains(&p) {
            v.push(Diagnostic::error(format!("{p} is not a percentage (0 to 100)")).at(at));
        }
    }
}

/// `loadBalancer` at `at`.
pub(super) fn load_balancer(lb: &LoadBalancerSettings, at: &str, v: &mut Vec<Diagnostic>) {
    for field in lb.unsupported() {
        v.push(
            Diagnostic::error(format!(
                "{field} is not supported by Isthmus yet; the rule is refused rather than applied without it"
            ))
            .at(format!("{at}.{field}")),
        );
    }
    if let Some(l) = &lb.locality_lb_setting {
        locality(l, &format!("{at}.localityLbSetting"), v);
    }
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        v.push(
            Diagnostic::error("set one of simple and consistentHash, not both")
                .at(format!("{at}.consistentHash")),
        );
    }
    let Some(c) = &lb.consistent_hash else {
        return;
    };
    let at = format!("{at}.consistentHash");
    let keys = [
        c.http_header_name.is_some(),
        c.http_cookie.is_some(),
        c.use_source_ip,
        c.http_query_parameter_name.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if keys != 1 {
        v.push(
            Diagnostic::error(format!(
                "consistentHash needs exactly one key of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName ({keys} set)"
            ))
            .at(at.clone()),
        );
    }
    if c.ring_hash.is_some() && c.maglev.is_some() {
        v.push(
            Diagnostic::error("set one of ringHash and maglev, not both")
                .at(format!("{at}.maglev")),
        );
    }
    if c.minimum_ring_size.is_some() && (c.ring_hash.is_some() || c.maglev.is_some()) {
        v.push(
            Diagnostic::error(
                "minimumRingSize is the deprecated form of ringHash.minimumRingSize; set one",
            )
            .at(format!("{at}.minimumRingSize")),
        );
    }
    if let Some(m) = &c.maglev {
        if m.table_size.is_some_and(|t| !is_prime(t)) {
            v.push(
                Diagnostic::error("maglev.tableSize must be a prime number (Envoy's rule)")
                    .at(format!("{at}.maglev.tableSize")),
            );
        }
    }
    if let Some(cookie) = &c.http_cookie {
        if cookie.name.is_empty() {
            v.push(
                Diagnostic::error("httpCookie needs a name").at(format!("{at}.httpCookie.name")),
            );
        }
        duration(&cookie.ttl, format!("{at}.httpCookie.ttl"), 0, v);
    }
    for (name, value) in [
        ("httpHeaderName", &c.http_header_name),
        ("httpQueryParameterName", &c.http_query_parameter_name),
    ] {
        if value.as_deref().is_some_and(str::is_empty) {
            v.push(Diagnostic::error(format!("{name} is empty")).at(format!("{at}.{name}")));
        }
    }
}

/// A locality pattern: up to three `/`-separated levels, `*` only as a whole last level.
fn locality_pattern(p: &str, at: String, v: &mut Vec<Diagnostic>) {
    let levels: Vec<&str> = p.split('/').collect();
    let bad = p.is_empty()
        || levels.len() > 3
        || levels.iter().any(|l| l.is_empty())
        || levels
            .iter()
            .enumerate()
            .any(|(i, l)| l.contains('*') && (*l != "*" || i + 1 != levels.len()));
    if bad {
        v.push(
            Diagnostic::error(format!(
                "`{p}` is not a locality: region/zone/subzone, with `*` only as a whole last level"
            ))
            .at(at),
        );
    }
}

/// `localityLbSetting` at `at`, as Istio's `validateLocalityLbSetting`.
pub(super) fn locality(l: &crate::policy::LocalityLbSetting, at: &str, v: &mut Vec<Diagnostic>) {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        v.push(
            Diagnostic::error("set one of distribute and failover, not both")
                .at(format!("{at}.failover")),
        );
    }
    for (i, d) in l.distribute.iter().enumerate() {
        let at = format!("{at}.distribute[{i}]");
        locality_pattern(&d.from, format!("{at}.from"), v);
        for to in d.to.keys() {
            locality_pattern(to, format!("{at}.to"), v);
        }
        let sum: u32 = d.to.values().sum();
        if sum != 100 {
            v.push(
                Diagnostic::error(format!("the weights add up to {sum}, not 100"))
                    .at(format!("{at}.to")),
            );
        }
    }
    for (i, f) in l.failover.iter().enumerate() {
        let at = format!("{at}.failover[{i}]");
        if f.from.is_empty() || f.to.is_empty() || f.from.contains('/') || f.to.contains('/') {
            v.push(
                Diagnostic::error(
                    "failover names regions: `from` and `to` are regions, without zones",
                )
                .at(at.clone()),
            );
        }
        if f.from == f.to {
            v.push(Diagnostic::error(format!("failover from `{}` to itself", f.from)).at(at));
        }
    }
    for (i, label) in l.failover_priority.iter().enumerate() {
        if label.split('=').next().is_none_or(str::is_empty) {
            v.push(Diagnostic::error("an empty label").at(format!("{at}.failoverPriority[{i}]")));
        }
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// `connectionPool` at `at`.
pub(super) fn connection_pool(cp: &ConnectionPoolSettings, at: &str, v: &mut Vec<Diagnostic>) {
    if let Some(tcp) = &cp.tcp {
        let at = format!("{at}.tcp");
        duration(&tcp.connect_timeout, format!("{at}.connectTimeout"), 1, v);
        duration(
            &tcp.max_connection_duration,
            format!("{at}.maxConnectionDuration"),
            1,
            v,
        );
        duration(&tcp.idle_timeout, format!("{at}.idleTimeout"), 0, v);
        if let Some(k) = &tcp.tcp_keepalive {
            duration(&k.time, format!("{at}.tcpKeepalive.time"), 1000, v);
            duration(&k.interval, format!("{at}.tcpKeepalive.interval"), 1000, v);
        }
    }
    if let Some(http) = &cp.http {
        let at = format!("{at}.http");
        duration(&http.idle_timeout, format!("{at}.idleTimeout"), 0, v);
        if http.use_client_protocol {
            v.push(
                Diagnostic::error("useClientProtocol is not supported by Isthmus yet; the rule is refused rather than applied without it")
                    .at(format!("{at}.useClientProtocol")),
            );
        }
    }
}

/// `outlierDetection` at `at`.
pub(super) fn outlier_detection(od: &OutlierDetection, at: &str, v: &mut Vec<Diagnostic>) {
    duration(&od.interval, format!("{at}.interval"), 1, v);
    duration(
        &od.base_ejection_time,
        format!("{at}.baseEjectionTime"),
        1,
        v,
    );
    percent(
        od.max_ejection_percent,
        format!("{at}.maxEjectionPercent"),
        v,
    );
    percent(od.min_health_percent, format!("{at}.minHealthPercent"), v);
    if od.consecutive_errors.is_some_and(|n| n < 0) {
        v.push(
            Diagnostic::error("consecutiveErrors cannot be negative")
                .at(format!("{at}.consecutiveErrors")),
        );
    }
    if od.consecutive_local_origin_failures.is_some() && !od.split_external_local_origin_errors {
        v.push(
            Diagnostic::error("consecutiveLocalOriginFailures counts only with splitExternalLocalOriginErrors: true")
                .at(format!("{at}.consecutiveLocalOriginFailures")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(f: impl FnOnce(&mut Vec<Diagnostic>)) -> Vec<String> {
        let mut v = Vec::new();
        f(&mut v);
        v.iter().map(|d| d.to_string()).collect()
    }

    fn lb(yaml: &str) -> LoadBalancerSettings {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn consistent_hash_needs_one_key_and_one_table() {
        assert!(errors(|v| load_balancer(
            &lb("consistentHash: {httpHeaderName: x-user}"),
            "tp.loadBalancer",
            v
        ))
        .is_empty());
        let two = errors(|v| {
            load_balancer(
                &lb("consistentHash: {httpHeaderName: x, useSourceIp: true}"),
                "tp.loadBalancer",
                v,
            )
        });
        assert!(
            two[0].contains("exactly one key") && two[0].contains("(2 set)"),
            "{two:?}"
        );
        let none = errors(|v| load_balancer(&lb("consistentHash: {}"), "tp.loadBalancer", v));
        assert!(none[0].contains("(0 set)"), "{none:?}");
        let both = errors(|v| {
            load_balancer(
                &lb("simple: RANDOM\nconsistentHash: {useSourceIp: true}"),
                "tp.loadBalancer",
                v,
            )
        });
        assert!(both[0].contains("not both"), "{both:?}");
        let maglev = errors(|v| {
            load_balancer(
                &lb("consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}"),
                "tp.loadBalancer",
                v,
            )
        });
        assert!(
            maglev[0].contains("prime")
                && maglev[0].contains("tp.loadBalancer.consistentHash.maglev.tableSize"),
            "{maglev:?}"
        );
        let cookie = errors(|v| {
            load_balancer(
                &lb("consistentHash: {httpCookie: {name: '', ttl: 5}}"),
                "tp.loadBalancer",
                v,
            )
        });
        assert_eq!(cookie.len(), 2, "{cookie:?}");
    }

    #[test]
    fn what_isthmus_does_not_do_is_refused_by_name() {
        let refused = errors(|v| {
            load_balancer(&lb("simple: ROUND_ROBIN\nlocalityLbSetting: {enabled: true}\nwarmupDurationSecs: 10s"), "tp.loadBalancer", v)
        });
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused
                .iter()
                .any(|e| e.contains("tp.loadBalancer.warmupDurationSecs")),
            "{refused:?}"
        );
        let cp: ConnectionPoolSettings =
            serde_saphyr::from_str("http: {useClientProtocol: true}").expect("parses");
        let e = errors(|v| connection_pool(&cp, "tp.connectionPool", v));
        assert!(
            e[0].contains("tp.connectionPool.http.useClientProtocol"),
            "{e:?}"
        );
    }

    #[test]
    fn locality_settings_are_checked_as_istio_does() {
        let ok = lb("localityLbSetting: {distribute: [{from: region1/zone1/*, to: {region1/zone1/*: 80, region2/*: 20}}], failoverPriority: [topology.istio.io/network]}");
        assert!(errors(|v| load_balancer(&ok, "lb", v)).is_empty());
        let e = errors(|v| {
            load_balancer(&lb("localityLbSetting: {distribute: [{from: 'reg*on/zone1', to: {region1: 90}}], failover: [{from: region1, to: region1}]}"), "lb", v)
        });
        assert!(e.iter().any(|e| e.contains("not both")), "{e:?}");
        assert!(
            e.iter()
                .any(|e| e.contains("`reg*on/zone1` is not a locality")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("add up to 90")), "{e:?}");
        assert!(e.iter().any(|e| e.contains("to itself")), "{e:?}");
    }

    #[test]
    fn durations_and_percentages_are_checked() {
        let cp: ConnectionPoolSettings = serde_saphyr::from_str(
            "tcp: {connectTimeout: 10, maxConnections: 1, tcpKeepalive: {time: 100ms}}",
        )
        .expect("parses");
        let e = errors(|v| connection_pool(&cp, "tp.connectionPool", v));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("tp.connectionPool.tcp.connectTimeout")
                && e[0].contains("not a duration"),
            "{e:?}"
        );
        assert!(
            e[1].contains("tcpKeepalive.time") && e[1].contains("at least 1000ms"),
            "{e:?}"
        );
        let od: OutlierDetection = serde_saphyr::from_str("consecutive5xxErrors: 2\ninterval: 1s\nbaseEjectionTime: 30s\nmaxEjectionPercent: 120\nconsecutiveLocalOriginFailures: 1").expect("parses");
        assert_eq!(od.consecutive_5xx_errors, Some(2));
        let e = errors(|v| outlier_detection(&od, "tp.outlierDetection", v));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("maxEjectionPercent") && e[0].contains("120"),
            "{e:?}"
        );
        assert!(e[1].contains("splitExternalLocalOriginErrors"), "{e:?}");
    }
}
