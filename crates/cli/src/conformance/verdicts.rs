//! Known differences between Isthmus and istiod, each with which side is right and why
//! (citing Istio's code or documentation). A rule names the kind, a pattern of resource names,
//! the field (or that one side alone sends the resource) and, where it holds for one seed
//! scenario only, that scenario. The first matching rule wins.

use super::compare::{Difference, Side};
use serde_json::Value;

/// Who is right about a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Isthmus; istiod is wrong (a known Istio bug or a default that breaks the seed).
    Isthmus,
    /// istiod; Isthmus is wrong (a bug of ours, to be fixed).
    Istiod,
    /// Both: the configurations differ but make the same traffic happen.
    Equivalent,
}

impl Right {
    /// As the report writes it.
    pub fn label(self) -> &'static str {
        match self {
            Right::Isthmus => "Isthmus",
            Right::Istiod => "istiod",
            Right::Equivalent => "equivalent",
        }
    }
}

/// A verdict.
#[derive(Debug)]
pub struct Verdict {
    /// Who is right.
    pub right: Right,
    /// Why, with the source.
    pub why: &'static str,
}

/// How a rule matches resource names.
#[derive(Debug, Clone, Copy)]
enum Name {
    Any,
    Exact(&'static str),
    Prefix(&'static str),
}

impl Name {
    fn matches(self, name: &str) -> bool {
        match self {
            Name::Any => true,
            Name::Exact(n) => name == n,
            Name::Prefix(p) => name.starts_with(p),
        }
    }
}

/// What a rule asks of a difference.
#[derive(Debug, Clone, Copy)]
enum What {
    /// Only this side sends the resource.
    Only(Side),
    /// This field differs.
    Field(&'static str),
    /// This field differs, and the values pass the check.
    FieldWhere(&'static str, fn(&Value, &Value) -> bool),
}

struct Rule {
    scenario: Option<&'static str>,
    kind: &'static str,
    name: Name,
    what: What,
    verdict: Verdict,
}

/// A rule for every scenario.
const fn rule(kind: &'static str, name: Name, what: What, right: Right, why: &'static str) -> Rule {
    Rule {
        scenario: None,
        kind,
        name,
        what,
        verdict: Verdict { right, why },
    }
}

/// istiod's automatic mTLS (a socket per endpoint label) where every endpoint has a
/// sidecar: the socket those endpoints get is Isthmus's one socket.
fn same_for_sidecar_endpoints(ours: &Value, theirs: &Value) -> bool {
    theirs.get("endpoints with a sidecar") == Some(ours)
}

/// The SANs Isthmus checks are the mesh's trust domain where istiod checks none.
fn trust_domain_where_istiod_checks_nothing(ours: &Value, theirs: &Value) -> bool {
    let text = |v: &Value| v.to_string();
    text(ours).contains("\"prefix:spiffe://") && text(theirs).contains("\"sans\":[]")
}

/// One endpoint of weight N where istiod lists the same address N times.
fn same_address_merged(ours: &Value, theirs: &Value) -> bool {
    let (Some(a), Some(b)) = (ours.as_array(), theirs.as_array()) else {
        return false;
    };
    let addr = |v: &Value| {
        v.as_str()
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_default()
            .to_string()
    };
    let mut ours: Vec<String> = a.iter().map(addr).collect();
    let mut theirs: Vec<String> = b.iter().map(addr).collect();
    ours.dedup();
    theirs.dedup();
    ours == theirs && a.len() < b.len()
}

/// virtualInbound's chains are the same, up to the order of ALPN values within a chain, but
/// for Isthmus's chain per declared port that hands a client's own TLS to the app
/// (`port=N transport=tls -> tcp, inbound|N||`).
fn inbound_same_but_own_tls(ours: &Value, theirs: &Value) -> bool {
    let normal = |v: &Value, drop_own_tls: bool| -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|c| {
                !(drop_own_tls
                    && c.starts_with("port=")
                    && c.contains(" transport=tls -> tcp, inbound|"))
            })
            .map(|c| {
                c.split(' ')
                    .map(|w| match w.strip_prefix("alpn=") {
                        Some(list) => {
                            let mut alpns: Vec<&str> = list.split(',').collect();
                            alpns.sort_unstable();
                            format!("alpn={}", alpns.join(","))
                        }
                        None => w.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.sort();
        out
    };
    let (a, b) = (normal(ours, true), normal(theirs, false));
    a == b && a.len() < ours.as_array().map_or(0, Vec::len)
}

/// Isthmus lists `host:port` forms, istiod the FQDN with a trailing dot; the names without a
/// port are the same.
fn domains_port_and_dot_forms(ours: &Value, theirs: &Value) -> bool {
    let plain = |v: &Value| -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|d| !d.ends_with('.'))
            .filter(|d| {
                d.rsplit_once(':')
                    .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            })
            .map(str::to_string)
            .collect();
        out.sort();
        out
    };
    plain(ours) == plain(theirs)
}

/// [`domains_port_and_dot_forms`], with Isthmus's automatically allocated address (Istio's
/// range, 240.240.0.0/16) for a ServiceEntry without one, where istiod lists none or its
/// own allocation from the same range.
fn domains_with_allocated_address(ours: &Value, theirs: &Value) -> bool {
    let allocated = |d: &Value| d.as_str().is_some_and(|d| d.starts_with("240.240."));
    let without = |v: &Value| -> Vec<Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|d| !allocated(d))
            .cloned()
            .collect()
    };
    let ours_without = without(ours);
    ours_without.len() < ours.as_array().map_or(0, Vec::len)
        && domains_port_and_dot_forms(&Value::Array(ours_without), &Value::Array(without(theirs)))
}

/// Whether a route domain is an IPv4 address, with or without `:port`.
fn is_ip(d: &str) -> bool {
    let host = d.rsplit_once(':').map_or(d, |(h, _)| h);
    host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// [`domains_port_and_dot_forms`], with the cluster IP (and its `:port` form) that only
/// Isthmus lists.
fn domains_with_cluster_ip(ours: &Value, theirs: &Value) -> bool {
    let without: Vec<Value> = ours
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| !d.as_str().is_some_and(is_ip))
        .cloned()
        .collect();
    let theirs_have_ip = theirs
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| d.as_str().is_some_and(is_ip));
    !theirs_have_ip
        && without.len() < ours.as_array().map_or(0, Vec::len)
        && domains_port_and_dot_forms(&Value::Array(without), theirs)
}

/// [`domains_port_and_dot_forms`], with the cluster IP (and its `:port` form) on Isthmus's
/// side where istiod lists the address it allocated (240.240.0.0/16).
fn domains_cluster_ip_against_allocated(ours: &Value, theirs: &Value) -> bool {
    let keep = |v: &Value, drop: &dyn Fn(&str) -> bool| -> (Vec<Value>, bool) {
        let all: Vec<Value> = v.as_array().cloned().unwrap_or_default();
        let kept: Vec<Value> = all
            .iter()
            .filter(|d| !d.as_str().is_some_and(drop))
            .cloned()
            .collect();
        let dropped = kept.len() < all.len();
        (kept, dropped)
    };
    let (ours_kept, ours_had_ip) = keep(ours, &is_ip);
    let (theirs_kept, theirs_had_allocated) = keep(theirs, &|d: &str| d.starts_with("240.240."));
    ours_had_ip
        && theirs_had_allocated
        && !theirs_kept.iter().any(|d| d.as_str().is_some_and(is_ip))
        && domains_port_and_dot_forms(&Value::Array(ours_kept), &Value::Array(theirs_kept))
}

/// A rule for one scenario.
const fn scenario_rule(
    scenario: &'static str,
    kind: &'static str,
    name: Name,
    what: What,
    right: Right,
    why: &'static str,
) -> Rule {
    Rule {
        scenario: Some(scenario),
        kind,
        name,
        what,
        verdict: Verdict { right, why },
    }
}

/// The rules, first match wins.
static RULES: &[Rule] = &[
    scenario_rule(
        "s2",
        "listener",
        Name::Exact("0.0.0.0_9090"),
        What::Only(Side::Istiod),
        Right::Isthmus,
        "The seed's ServiceEntry (in ns1) and the replicated Service (in ns2) name the same host, bar.ns2.svc.cluster.local. istiod builds bar from the ServiceEntry, which has no address, so for a proxy that does not announce DNS capture bar's TCP port gets a wildcard listener, 0.0.0.0:9090: every TCP connection this sidecar makes to port 9090, whatever its destination, goes to bar's gateway (the hazard Istio's ServiceEntry reference names for TCP ports without `addresses`). Isthmus keeps the Service's cluster IP, which is what the name resolves to, with the ServiceEntry's endpoints: a listener on that address only. Connections to bar reach the same endpoints (cluster2's gateway) with both.",
    ),
    scenario_rule(
        "s2",
        "listener",
        Name::Prefix("240.240."),
        What::Only(Side::Istiod),
        Right::Isthmus,
        "The seed's ServiceEntry (in ns1) and the replicated Service (in ns2) name the same host, bar.ns2.svc.cluster.local. istiod builds bar from the ServiceEntry, which has no address; the sidecar announces DNS capture (`DNS_CAPTURE`), so istiod gives bar the address its allocator took from 240.240.0.0/16 (`Service.GetAddressForProxy` with `nodeUsesAutoallocatedIPs`: DNS capture and `ENABLE_IP_AUTOALLOCATE`), listens there and has its agent's DNS answer bar's name with it. Isthmus keeps the Service's cluster IP, which its DNS answers, with the ServiceEntry's endpoints. A call by name reaches the same endpoints (cluster2's gateway) with both; a call to the cluster IP reaches them with Isthmus only.",
    ),
    scenario_rule(
        "s2",
        "listener",
        Name::Prefix("10.96."),
        What::Only(Side::Isthmus),
        Right::Isthmus,
        "The other side of the row for bar's istiod listener (240.240.x or 0.0.0.0, on 9090): Isthmus's TCP listener for bar is on the Service's cluster IP, which is what its DNS answers for bar's name.",
    ),
    scenario_rule(
        "s2",
        "route",
        Name::Exact("80/bar.ns2.svc.cluster.local:80"),
        What::FieldWhere("domains", domains_with_cluster_ip),
        Right::Isthmus,
        "The same names. Isthmus also lists bar's cluster IP, which istiod's bar (built from the ServiceEntry, see 0.0.0.0_9090) does not have, so a request to that address by IP reaches bar's routes with Isthmus only. As for other domains, Isthmus also has the `host:port` forms.",
    ),
    scenario_rule(
        "s2",
        "route",
        Name::Exact("80/bar.ns2.svc.cluster.local:80"),
        What::FieldWhere("domains", domains_cluster_ip_against_allocated),
        Right::Isthmus,
        "The same names, each side with the address its DNS answers for bar: Isthmus the Service's cluster IP, istiod the address it allocated to the seed's ServiceEntry for a proxy with DNS capture (see the 240.240 listener). A request to the cluster IP by IP reaches bar's routes with Isthmus only. As for other domains, Isthmus also has the `host:port` forms.",
    ),
    scenario_rule(
        "s3",
        "endpoints",
        Name::Prefix("outbound|"),
        What::Field("endpoints"),
        Right::Isthmus,
        "Split horizon. istiod never applied the seed's meshNetworks: seed 003 writes it in the Helm values form (root key `meshNetworks:`), and istiod's reader of the `istio` ConfigMap takes only a `networks:` root. Its log says `mesh networks configuration: {}`. istiod therefore puts every endpoint on one network and hands the sidecar the remote cluster's pod addresses (10.10.0.31, 10.10.0.32). Those are on another pod network that cannot be reached, and that overlaps this one. Isthmus reads both forms: it sends the local pod, and the remote gateway (198.18.1.2:15443) weighted by the endpoints behind it.",
    ),
    scenario_rule(
        "s4",
        "cluster",
        Name::Exact("outbound|80||ingress.b.remote"),
        What::Field("tls"),
        Right::Isthmus,
        "Seed 004 requires that traffic to the other cluster always goes through the local egress gateway. Isthmus's egress funnel (topology `egressFunnel: true`) makes this cluster's only endpoint A's egress gateway on 15443, over mesh mTLS with the cluster's SNI (crates/envoy/src/funnel.rs). istiod, given only the seed's resources, sends the sidecar straight to B's ingress gateway in plain text, bypassing the egress gateway.",
    ),
    scenario_rule(
        "s4",
        "endpoints",
        Name::Exact("outbound|80||ingress.b.remote"),
        What::Field("endpoints"),
        Right::Isthmus,
        "The same funnel: the sidecar holds A's egress gateway (10.10.0.4:15443), never B's address (198.18.1.2:80), as the seed requires.",
    ),
    rule(
        "route",
        Name::Any,
        What::FieldWhere("domains", domains_with_allocated_address),
        Right::Equivalent,
        "Isthmus also lists the address it allocated to the ServiceEntry, which has none of its own, from Istio's range (240.240.0.0/16). istiod lists its own allocation from that range, a different address, where the proxy announces DNS capture (`Service.GetAddressForProxy`, `nodeUsesAutoallocatedIPs`), and none otherwise. Each side's DNS answers the name with its own address, so a client that resolves the name reaches the same routes with either. Otherwise as for other domains: Isthmus also has the `host:port` forms.",
    ),
    rule(
        "cluster",
        Name::Prefix("inbound|"),
        What::Field("type"),
        Right::Equivalent,
        "Both deliver to the pod's own port. Isthmus names the app's address in a STATIC cluster; istiod uses ORIGINAL_DST, the connection's original destination, which is that same pod address and port (Istio's `buildInboundClusters`).",
    ),
    rule(
        "cluster",
        Name::Prefix("inbound|"),
        What::Field("lb_policy"),
        Right::Equivalent,
        "Follows from the cluster type above: an ORIGINAL_DST cluster must use CLUSTER_PROVIDED; a STATIC cluster of one address balances nothing.",
    ),
    rule(
        "endpoints",
        Name::Prefix("inbound|"),
        What::Only(Side::Isthmus),
        Right::Equivalent,
        "The STATIC inbound cluster carries its one address (the app's port); istiod's ORIGINAL_DST cluster has none to send.",
    ),
    rule(
        "cluster",
        Name::Prefix("outbound|"),
        What::FieldWhere("tls", same_for_sidecar_endpoints),
        Right::Equivalent,
        "Automatic mTLS. istiod always writes a socket per endpoint label (`tlsMode: istio` gets mTLS, other endpoints plain text). Isthmus writes that split only when some endpoint has no sidecar. Every endpoint here has one, so each gets the same mTLS from both.",
    ),
    rule(
        "cluster",
        Name::Prefix("outbound|"),
        What::FieldWhere("tls", trust_domain_where_istiod_checks_nothing),
        Right::Isthmus,
        "The endpoints name no service account (ServiceEntry endpoints, the API server). istiod then sends mTLS with no SAN to check (`buildIstioMutualTLS` with empty `serviceAccounts`), so any certificate the root signed is accepted, from any trust domain sharing the root. Isthmus requires the mesh's trust domain (`spiffe://cluster.local/`).",
    ),
    rule(
        "cluster",
        Name::Prefix("outbound|"),
        What::Field("connect_timeout"),
        Right::Isthmus,
        "Isthmus's default for services reached through other clusters' gateways. A silent gateway holds a call for at most 1 s before the next endpoint is tried, not Istio's 10 s (crates/envoy/src/cluster.rs, `GATEWAY_CONNECT_TIMEOUT`). A DestinationRule's `connectTimeout` still wins.",
    ),
    rule(
        "cluster",
        Name::Prefix("outbound|"),
        What::Field("outlier_detection"),
        Right::Isthmus,
        "Isthmus ejects a failing gateway after 3 errors, for 5 s, so calls fail over to what still answers. Istio leaves fail-over to a user's `outlierDetection`: its locality failover does nothing without one (Istio docs, Locality failover). A DestinationRule's setting still wins.",
    ),
    rule(
        "endpoints",
        Name::Prefix("outbound|"),
        What::FieldWhere("endpoints", same_address_merged),
        Right::Equivalent,
        "The same address is listed once with weight N by Isthmus and N times with weight 1 by istiod (the ServiceEntry endpoints differ only in labels): the same share of traffic.",
    ),
    rule(
        "listener",
        Name::Exact("virtualInbound"),
        What::FieldWhere("filter_chains", inbound_same_but_own_tls),
        Right::Isthmus,
        "The same chains, up to the order of ALPN values: mesh mTLS and plain text to declared ports, and identical passthrough chains for undeclared ones (mesh mTLS terminated, HTTP told by the HTTP inspector or the mesh's HTTP ALPNs, STRICT taking only mTLS). Isthmus adds, per declared PERMISSIVE port, a chain that hands a client's own TLS (not the mesh's ALPNs) to the app as it is. istiod has none for the port, and Envoy prunes chains by destination port first (Envoy's FilterChainMatch docs), so there such a client finds no chain and is closed, although PERMISSIVE is documented as accepting what is not mesh mTLS (Istio docs, PeerAuthentication).",
    ),
    rule(
        "route",
        Name::Any,
        What::FieldWhere("domains", domains_port_and_dot_forms),
        Right::Equivalent,
        "The same names. Isthmus also lists the `host:port` forms, which istiod does not need because its connection manager strips the port. Both list the FQDN with a trailing dot.",
    ),
    rule(
        "route",
        Name::Any,
        What::Only(Side::Istiod),
        Right::Isthmus,
        "istiod gives a VirtualService's host a virtual host on every HTTP port of the proxy, here port 80, which the ServiceEntry (port 8000) does not declare. Port-80 requests for that name then go to `outbound|80|...` clusters that do not exist. Isthmus routes only the ports the service declares; other ports go out through the passthrough route.",
    ),
];

/// The verdict on `d` in scenario `scenario`, if a rule explains it.
pub fn find(scenario: &str, d: &Difference) -> Option<&'static Verdict> {
    RULES
        .iter()
        .find(|r| {
            r.scenario.is_none_or(|s| s == scenario)
                && r.kind == d.kind
                && r.name.matches(&d.name)
                && match r.what {
                    What::Only(side) => d.only() == Some(side),
                    What::Field(f) => d.field.as_deref() == Some(f),
                    What::FieldWhere(f, check) => {
                        d.field.as_deref() == Some(f)
                            && match (&d.isthmus, &d.istiod) {
                                (Some(a), Some(b)) => check(a, b),
                                _ => false,
                            }
                    }
                }
        })
        .map(|r| &r.verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(
        kind: &'static str,
        name: &str,
        field: &str,
        ours: Value,
        theirs: Value,
    ) -> Difference {
        Difference {
            kind,
            name: name.into(),
            field: Some(field.into()),
            isthmus: Some(ours),
            istiod: Some(theirs),
        }
    }

    #[test]
    fn auto_mtls_with_every_endpoint_in_the_mesh_is_equivalent() {
        let mtls =
            json!({"sni": "outbound_.80_._.a", "sans": ["exact:spiffe://cluster.local/ns/a/sa/a"]});
        let d = field(
            "cluster",
            "outbound|80||a",
            "tls",
            mtls.clone(),
            json!({"endpoints with a sidecar": mtls, "endpoints without a sidecar": "plaintext"}),
        );
        assert_eq!(find("s1", &d).map(|v| v.right), Some(Right::Equivalent));
        // A different socket for the sidecar endpoints is not that rule's.
        let other = field(
            "cluster",
            "outbound|80||a",
            "tls",
            json!({"sni": "x"}),
            json!({"endpoints with a sidecar": {"sni": "y"}}),
        );
        assert!(find("s1", &other).is_none());
    }

    #[test]
    fn a_merged_address_is_equivalent_only_when_the_addresses_are_the_same() {
        let merged = field(
            "endpoints",
            "outbound|8000||h",
            "endpoints",
            json!(["198.18.1.2:15443 weight=2"]),
            json!(["198.18.1.2:15443 weight=1", "198.18.1.2:15443 weight=1"]),
        );
        assert_eq!(
            find("s1", &merged).map(|v| v.right),
            Some(Right::Equivalent)
        );
        let moved = field(
            "endpoints",
            "outbound|8000||h",
            "endpoints",
            json!(["198.18.1.3:15443 weight=2"]),
            json!(["198.18.1.2:15443 weight=1", "198.18.1.2:15443 weight=1"]),
        );
        assert!(
            find("s1", &moved).is_none(),
            "a different address is unexplained"
        );
    }

    #[test]
    fn domains_differing_only_in_port_and_dot_forms_are_explained_and_others_are_not() {
        let d = field(
            "route",
            "80/a:80",
            "domains",
            json!(["a", "a:80", "10.96.0.1", "10.96.0.1:80"]),
            json!(["a", "a.", "10.96.0.1"]),
        );
        assert!(find("s1", &d).is_some());
        let missing = field(
            "route",
            "80/a:80",
            "domains",
            json!(["a"]),
            json!(["a", "b"]),
        );
        assert!(find("s1", &missing).is_none());
    }

    #[test]
    fn each_sides_own_allocated_address_is_equivalent() {
        let d = field(
            "route",
            "80/ingress.b.remote:80",
            "domains",
            json!([
                "240.240.21.81",
                "240.240.21.81:80",
                "ingress.b.remote",
                "ingress.b.remote:80"
            ]),
            json!(["240.240.0.1", "ingress.b.remote", "ingress.b.remote."]),
        );
        assert_eq!(find("s4", &d).map(|v| v.right), Some(Right::Equivalent));
        let none = field(
            "route",
            "80/ingress.b.remote:80",
            "domains",
            json!(["240.240.21.81", "ingress.b.remote"]),
            json!(["ingress.b.remote"]),
        );
        assert_eq!(find("s4", &none).map(|v| v.right), Some(Right::Equivalent));
        let other_ip = field(
            "route",
            "80/ingress.b.remote:80",
            "domains",
            json!(["240.240.21.81", "ingress.b.remote"]),
            json!(["10.1.1.1", "ingress.b.remote"]),
        );
        assert!(
            find("s4", &other_ip).is_none(),
            "another address is unexplained"
        );
    }

    #[test]
    fn the_cluster_ip_against_istiods_allocated_address_is_explained_for_s2_only() {
        let ours = json!([
            "10.96.76.96",
            "10.96.76.96:80",
            "bar.ns2",
            "bar.ns2.svc.cluster.local",
            "bar.ns2.svc.cluster.local:80"
        ]);
        let theirs = json!(["240.240.0.1", "bar.ns2", "bar.ns2.svc.cluster.local"]);
        let d = field(
            "route",
            "80/bar.ns2.svc.cluster.local:80",
            "domains",
            ours.clone(),
            theirs,
        );
        assert_eq!(find("s2", &d).map(|v| v.right), Some(Right::Isthmus));
        assert!(find("s1", &d).is_none(), "a rule of S2's");
        // Another name missing on our side is not explained by it.
        let short = field(
            "route",
            "80/bar.ns2.svc.cluster.local:80",
            "domains",
            json!(["10.96.76.96", "bar.ns2.svc.cluster.local"]),
            json!(["240.240.0.1", "bar.ns2", "bar.ns2.svc.cluster.local"]),
        );
        assert!(find("s2", &short).is_none());
        let listener = Difference {
            kind: "listener",
            name: "240.240.0.1_9090".into(),
            field: None,
            isthmus: None,
            istiod: Some(json!({})),
        };
        assert_eq!(find("s2", &listener).map(|v| v.right), Some(Right::Isthmus));
    }

    #[test]
    fn inbound_chains_differing_only_in_alpn_order_and_own_tls_are_explained() {
        let istiod = json!([
            "port=80 transport=tls alpn=istio,istio-peer-exchange -> http, inline routes to inbound|80||",
            "transport=raw_buffer -> tcp, InboundPassthroughCluster"
        ]);
        let ours = json!([
            "port=80 transport=tls -> tcp, inbound|80||",
            "port=80 transport=tls alpn=istio-peer-exchange,istio -> http, inline routes to inbound|80||",
            "transport=raw_buffer -> tcp, InboundPassthroughCluster"
        ]);
        let d = field(
            "listener",
            "virtualInbound",
            "filter_chains",
            ours,
            istiod.clone(),
        );
        assert_eq!(find("s1", &d).map(|v| v.right), Some(Right::Isthmus));
        // Without the undeclared ports' chains, the difference is unexplained.
        let short = json!([
            "port=80 transport=tls -> tcp, inbound|80||",
            "port=80 transport=tls alpn=istio-peer-exchange,istio -> http, inline routes to inbound|80||"
        ]);
        let d = field("listener", "virtualInbound", "filter_chains", short, istiod);
        assert!(find("s1", &d).is_none());
    }
}
