//! A Sidecar's `ingress` listeners are the workload's inbound ports, as in Istio: each port
//! gets its inbound cluster to the `defaultEndpoint` (loopback, or the pod's address) and
//! its chains on virtualInbound, with the port's protocol; the services' target ports are
//! no longer configured.

use envoy_types::pb::envoy::config::core::v3::{address, socket_address::PortSpecifier};

mod common;

const MESH: &str = r#"apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: bar}
spec:
  clusterIP: 10.96.0.50
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin-0, namespace: bar, labels: {app: httpbin}}
status: {podIP: 10.10.0.80, phase: Running}
"#;

const INGRESS: &str = r#"---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: httpbin-ingress, namespace: bar}
spec:
  workloadSelector: {labels: {app: httpbin}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http-alt}
    defaultEndpoint: 127.0.0.1:80
  - port: {number: 9443, name: tcp-raw}
    defaultEndpoint: 0.0.0.0:8443
  - port: {number: 80, protocol: HTTP, name: http}
"#;

/// Inbound cluster name -> (address, port), and the ports with an HTTP chain on
/// virtualInbound, for httpbin's sidecar.
fn inbound(yaml: &str) -> (Vec<(String, String, u32)>, Vec<String>) {
    let snap = common::snapshot(yaml, "bar", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.80~httpbin-0.bar~bar.svc.cluster.local",
        "c1",
        &[("LABELS", r#"{"app": "httpbin"}"#)],
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    let clusters = res
        .clusters
        .iter()
        .filter(|c| c.name.starts_with("inbound|"))
        .map(|c| {
            let ep = &c.load_assignment.as_ref().expect("static").endpoints[0].lb_endpoints[0];
            let Some(
                envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(
                    e,
                ),
            ) = &ep.host_identifier
            else {
                panic!("an endpoint");
            };
            let Some(address::Address::SocketAddress(sa)) =
                e.address.as_ref().and_then(|a| a.address.clone())
            else {
                panic!("a socket address");
            };
            let Some(PortSpecifier::PortValue(port)) = sa.port_specifier else {
                panic!("a port");
            };
            (c.name.clone(), sa.address, port)
        })
        .collect();
    let vi = res
        .listeners
        .iter()
        .find(|l| l.name == "virtualInbound")
        .expect("virtualInbound");
    let http_chains = vi
        .filter_chains
        .iter()
        .filter(|c| {
            c.filters
                .iter()
                .any(|f| f.name == "envoy.filters.network.http_connection_manager")
        })
        .map(|c| c.name.clone())
        .collect();
    (clusters, http_chains)
}

#[test]
fn without_ingress_the_services_target_ports() {
    let (clusters, _) = inbound(MESH);
    assert_eq!(
        clusters,
        [("inbound|80||".to_string(), "10.10.0.80".to_string(), 80)]
    );
}

#[test]
fn ingress_listeners_replace_them_each_to_its_default_endpoint() {
    let (clusters, http) = inbound(&format!("{MESH}{INGRESS}"));
    assert_eq!(
        clusters,
        [
            ("inbound|80||".to_string(), "10.10.0.80".to_string(), 80),
            ("inbound|9080||".to_string(), "127.0.0.1".to_string(), 80),
            ("inbound|9443||".to_string(), "10.10.0.80".to_string(), 8443),
        ]
    );
    assert!(
        http.iter().any(|c| c.starts_with("inbound|9080||")),
        "{http:?}"
    );
    assert!(
        http.iter().any(|c| c.starts_with("inbound|80||")),
        "{http:?}"
    );
    assert!(
        !http.iter().any(|c| c.starts_with("inbound|9443||")),
        "tcp: {http:?}"
    );
}
