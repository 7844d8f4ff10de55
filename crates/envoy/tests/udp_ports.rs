//! A DNS Service exposes 53 twice, over TCP and over UDP (the chart's istiod Service does).
//! Istio proxies TCP ports only; a second `outbound|53||HOST` cluster and `VIP_53` listener
//! for the UDP port made every sidecar's Envoy refuse the whole cluster and listener update.

mod common;

const OBJECTS: &str = r#"apiVersion: v1
kind: Service
metadata: {name: istiod, namespace: istio-system}
spec:
  clusterIP: 10.96.170.234
  selector: {app: istiod}
  ports:
  - {name: grpc-xds, port: 15012}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 15053}
  - {name: dns-udp, port: 53, protocol: UDP, targetPort: 15053}
  - {name: sctp-thing, port: 9999, protocol: SCTP}
---
apiVersion: v1
kind: Pod
metadata: {name: istiod-0, namespace: istio-system, labels: {app: istiod}}
status: {podIP: 10.10.0.11, phase: Running}
"#;

#[test]
fn a_udp_port_beside_a_tcp_port_of_the_same_number_gets_nothing() {
    let snap = common::snapshot(OBJECTS, "istio-system", "local", "network1");
    let svc = &snap.services["istiod.istio-system.svc.cluster.local"];
    let ports: Vec<u32> = svc.ports.iter().map(|p| p.number).collect();
    assert_eq!(ports, vec![15012, 53], "TCP ports only");
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.20~sleep-0.sample~sample.svc.cluster.local",
        "local",
        &[],
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    let count = |name: &str, names: &mut dyn Iterator<Item = &String>| {
        names.filter(|n| n.as_str() == name).count()
    };
    assert_eq!(
        count(
            "outbound|53||istiod.istio-system.svc.cluster.local",
            &mut res.clusters.iter().map(|c| &c.name)
        ),
        1
    );
    assert_eq!(
        count(
            "10.96.170.234_53",
            &mut res.listeners.iter().map(|l| &l.name)
        ),
        1
    );
    assert!(!res.clusters.iter().any(|c| c.name.contains("|9999|")));
}
