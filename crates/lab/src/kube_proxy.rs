//! The lab's kube-proxy: ClusterIPs are DNAT-ed to pods by each cluster's router (the
//! lab's node), from the Services the API server holds and the pods that run.

use crate::api_server::ApiServer;
use crate::error::LabError;
use crate::netns;
use crate::state::{ClusterState, PodState};
use isthmus_api::kube::{IntOrString, Service};

/// The router's NAT set-up, made once with the router: every packet goes through the
/// `ISTHMUS-SERVICES` chain, and hairpinned connections are masqueraded so that replies
/// come back through the router.
pub const ROUTER_NAT: &str = "*nat\n:ISTHMUS-SERVICES - [0:0]\n-A PREROUTING -j ISTHMUS-SERVICES\n-A POSTROUTING -o pods -m conntrack --ctstate DNAT -j MASQUERADE\nCOMMIT\n";

/// Sets up the router namespace `router_netns` for ClusterIPs (see [`ROUTER_NAT`]).
pub fn install(router_netns: &str) -> Result<(), LabError> {
    netns::restore(router_netns, ROUTER_NAT)
}

/// The `ISTHMUS-SERVICES` chain for `services` and `pods`, as `iptables-restore` input:
/// one DNAT per endpoint and port, spread evenly with the `statistic` match as kube-proxy
/// does. A Service without a ClusterIP (or headless) or without a selector gets no rules.
pub fn rules(services: &[Service], pods: &[PodState]) -> String {
    let mut rules = String::from("*nat\n:ISTHMUS-SERVICES - [0:0]\n");
    for svc in services {
        // Headless (`None`): clients reach the pods themselves, no rules.
        let Some(cip) = svc.spec.cluster_ip.as_deref().filter(|c| *c != "None") else {
            continue;
        };
        let pods: Vec<&PodState> = pods
            .iter()
            .filter(|p| *p.namespace == *svc.metadata.namespace)
            .filter(|p| {
                !svc.spec.selector.is_empty()
                    && svc
                        .spec
                        .selector
                        .iter()
                        .all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .collect();
        for port in &svc.spec.ports {
            let target = match &port.target_port {
                Some(IntOrString::Int(n)) => *n,
                _ => port.port,
            };
            let targets: Vec<(&str, u32)> = pods.iter().map(|p| (p.ip.as_str(), target)).collect();
            spread(&mut rules, cip, port.port, &targets);
        }
    }
    rules.push_str("COMMIT\n");
    rules
}

/// Appends one DNAT per `(address, port)` of `targets` for `cip:port`, spread evenly with the
/// `statistic` match as kube-proxy does (each rule takes 1/remaining of what reaches it).
fn spread(rules: &mut String, cip: &str, port: impl std::fmt::Display, targets: &[(&str, u32)]) {
    spread_proto(rules, "tcp", cip, port, targets)
}

/// [`spread`] for protocol `proto` (`tcp` or `udp`).
fn spread_proto(
    rules: &mut String,
    proto: &str,
    cip: &str,
    port: impl std::fmt::Display,
    targets: &[(&str, u32)],
) {
    let n = targets.len();
    for (i, (ip, target)) in targets.iter().enumerate() {
        let remaining = n - i;
        let pick = if remaining > 1 {
            format!(
                "-m statistic --mode random --probability {:.5} ",
                1.0 / remaining as f64
            )
        } else {
            String::new()
        };
        rules.push_str(&format!(
            "-A ISTHMUS-SERVICES -d {cip}/32 -p {proto} --dport {port} {pick}-j DNAT --to-destination {ip}:{target}\n"
        ));
    }
}

/// The `ISTHMUS-SERVICES` chain from the API server's Services and EndpointSlices (the
/// Kubernetes-mode lab, as kube-proxy reads them): for each ClusterIP and TCP or UDP port, one DNAT
/// per ready endpoint to the slice's port of the same name, spread evenly.
pub fn rules_from_slices(
    services: &[&k8s_openapi::api::core::v1::Service],
    slices: &[&k8s_openapi::api::discovery::v1::EndpointSlice],
) -> String {
    let mut rules = String::from("*nat\n:ISTHMUS-SERVICES - [0:0]\n");
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let Some(cip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| *ip != "None" && !ip.is_empty())
        else {
            continue;
        };
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let own: Vec<&&k8s_openapi::api::discovery::v1::EndpointSlice> = slices
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        .map(String::as_str)
                        == Some(name)
            })
            .collect();
        for port in spec.ports.iter().flatten() {
            // TCP and UDP (a DNS Service); SCTP is not forwarded.
            let proto = match port.protocol.as_deref() {
                None | Some("TCP") => "tcp",
                Some("UDP") => "udp",
                Some(_) => continue,
            };
            let port_name = port.name.clone().unwrap_or_default();
            // (address, target port) of every ready endpoint.
            let mut targets: Vec<(String, i32)> = Vec::new();
            for slice in &own {
                let Some(target) = slice
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.clone().unwrap_or_default() == port_name)
                    .and_then(|p| p.port)
                else {
                    continue;
                };
                for e in slice.endpoints.iter().flatten() {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    if let (true, Some(a)) = (ready, e.addresses.first()) {
                        targets.push((a.clone(), target));
                    }
                }
            }
            targets.sort();
            targets.dedup();
            let targets: Vec<(&str, u32)> = targets
                .iter()
                .map(|(ip, t)| (ip.as_str(), u32::try_from(*t).unwrap_or_default()))
                .collect();
            spread_proto(&mut rules, proto, cip, port.port, &targets);
        }
    }
    rules.push_str("COMMIT\n");
    rules
}

/// Rewrites `cluster`'s ClusterIP rules in its router from the Services `api` holds and
/// the cluster's pods.
pub fn sync(api: &ApiServer, cluster: &ClusterState) -> Result<(), LabError> {
    let rules = rules(&api.services()?, &cluster.pods);
    netns::restore(&cluster.router_netns, &rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_give_one_dnat_per_ready_endpoint_to_the_named_port() {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "foo"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        })).expect("service");
        let headless: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "db", "namespace": "foo"},
                "spec": {"clusterIP": "None", "ports": [{"name": "tcp", "port": 5432}]}
            }))
            .expect("service");
        let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "foo", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.10.0.12"], "conditions": {"ready": true}},
                {"addresses": ["10.10.0.11"]},
                {"addresses": ["10.10.0.13"], "conditions": {"ready": false}}
            ]
        })).expect("slice");
        let other_ns: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-x", "namespace": "bar", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9999}],
            "endpoints": [{"addresses": ["10.10.0.99"]}]
        })).expect("slice");
        let rules = rules_from_slices(&[&svc, &headless], &[&slice, &other_ns]);
        assert_eq!(
            rules,
            "*nat\n:ISTHMUS-SERVICES - [0:0]\n\
             -A ISTHMUS-SERVICES -d 10.96.0.20/32 -p tcp --dport 80 -m statistic --mode random --probability 0.50000 -j DNAT --to-destination 10.10.0.11:8080\n\
             -A ISTHMUS-SERVICES -d 10.96.0.20/32 -p tcp --dport 80 -j DNAT --to-destination 10.10.0.12:8080\n\
             COMMIT\n"
        );
        // A DNS Service: UDP and TCP on 53 to the pod's 15053; SCTP is not forwarded.
        let dns: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "istiod", "namespace": "istio-system"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "sctp", "port": 9, "protocol": "SCTP"}
            ]}
        }))
        .expect("service");
        let dns_slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "istiod-a", "namespace": "istio-system", "labels": {"kubernetes.io/service-name": "istiod"}},
            "addressType": "IPv4",
            "ports": [{"name": "dns-udp", "port": 15053, "protocol": "UDP"}, {"name": "dns-tcp", "port": 15053}, {"name": "sctp", "port": 9}],
            "endpoints": [{"addresses": ["10.10.0.20"]}]
        })).expect("slice");
        assert_eq!(
            rules_from_slices(&[&dns], &[&dns_slice]),
            "*nat\n:ISTHMUS-SERVICES - [0:0]\n\
             -A ISTHMUS-SERVICES -d 10.96.0.10/32 -p udp --dport 53 -j DNAT --to-destination 10.10.0.20:15053\n\
             -A ISTHMUS-SERVICES -d 10.96.0.10/32 -p tcp --dport 53 -j DNAT --to-destination 10.10.0.20:15053\n\
             COMMIT\n"
        );
    }
    use crate::state::testing::pod;
    use isthmus_api::kube::{ServicePort, ServiceSpec};
    use isthmus_api::{Labels, ObjectMeta};
    use std::sync::Arc;

    fn service(
        namespace: &str,
        name: &str,
        cluster_ip: Option<&str>,
        selector: &[(&str, &str)],
        ports: &[(u32, Option<IntOrString>)],
    ) -> Service {
        Service {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: namespace.into(),
                ..Default::default()
            },
            spec: ServiceSpec {
                cluster_ip: cluster_ip.map(str::to_string),
                selector: Arc::new(Labels::from_iter(
                    selector.iter().map(|(k, v)| (k.to_string(), v.to_string())),
                )),
                ports: ports
                    .iter()
                    .map(|(port, target)| ServicePort {
                        name: format!("p{port}").into(),
                        port: *port,
                        target_port: target.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            status: Default::default(),
        }
    }

    #[test]
    fn no_services_is_an_empty_chain() {
        assert_eq!(rules(&[], &[]), "*nat\n:ISTHMUS-SERVICES - [0:0]\nCOMMIT\n");
    }

    #[test]
    fn endpoints_are_picked_evenly_and_the_last_one_unconditionally() {
        let svc = service(
            "foo",
            "web",
            Some("10.96.0.10"),
            &[("app", "web")],
            &[(80, None)],
        );
        let pods = [
            pod("foo", "web-0", "10.10.0.31", &[("app", "web"), ("v", "1")]),
            pod("foo", "web-1", "10.10.0.32", &[("app", "web")]),
            pod("foo", "web-2", "10.10.0.33", &[("app", "web")]),
            pod("foo", "db-0", "10.10.0.34", &[("app", "db")]),
            pod("bar", "web-0", "10.10.0.35", &[("app", "web")]),
        ];
        assert_eq!(
            rules(&[svc], &pods),
            "*nat\n:ISTHMUS-SERVICES - [0:0]\n\
             -A ISTHMUS-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -m statistic --mode random --probability 0.33333 -j DNAT --to-destination 10.10.0.31:80\n\
             -A ISTHMUS-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -m statistic --mode random --probability 0.50000 -j DNAT --to-destination 10.10.0.32:80\n\
             -A ISTHMUS-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -j DNAT --to-destination 10.10.0.33:80\n\
             COMMIT\n"
        );
    }

    #[test]
    fn numeric_target_ports_are_used_and_named_ones_fall_back_to_the_port() {
        let svc = service(
            "foo",
            "web",
            Some("10.96.0.10"),
            &[("app", "web")],
            &[
                (80, Some(IntOrString::Int(8080))),
                (443, Some(IntOrString::String("https".into()))),
            ],
        );
        let pods = [pod("foo", "web-0", "10.10.0.31", &[("app", "web")])];
        let got = rules(&[svc], &pods);
        assert!(
            got.contains("--dport 80 -j DNAT --to-destination 10.10.0.31:8080\n"),
            "{got}"
        );
        assert!(
            got.contains("--dport 443 -j DNAT --to-destination 10.10.0.31:443\n"),
            "{got}"
        );
    }

    #[test]
    fn services_without_cluster_ip_or_selector_get_no_rules() {
        let pods = [pod("foo", "web-0", "10.10.0.31", &[("app", "web")])];
        let headless = service("foo", "a", None, &[("app", "web")], &[(80, None)]);
        let selectorless = service("foo", "b", Some("10.96.0.11"), &[], &[(80, None)]);
        assert_eq!(
            rules(&[headless, selectorless], &pods),
            "*nat\n:ISTHMUS-SERVICES - [0:0]\nCOMMIT\n"
        );
    }
}
