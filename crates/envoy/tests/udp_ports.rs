//! A DNS Service exposes 53 twice, over TCP and over UDP (the chart's istiod Service does).
//! Istio proxies TCP ports only; a second `outbound|53||HOST` cluster and `VIP_53` listener
//! for the UDP port made every sidecar's Envoy refuse the whole cluster and listener update.

use isthmus_model::{MeshSnapshot, NodeId, SnapshotInput};
use isthmus_registry::ClusterConfig;
use std::sync::Arc;

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
    let loaded = isthmus_api::load_str(OBJECTS, None, "istio-system");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let config = ClusterConfig {
        cluster: "local".into(),
        resources: loaded
            .resources
            .into_iter()
            .map(|r| (r.key(), Arc::new(r)))
            .collect(),
        ..Default::default()
    };
    let snap = MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "local".into(),
            local_network: "network1".into(),
            clusters: vec![Arc::new(config)],
            ..Default::default()
        },
        1,
    );
    let svc = &snap.services["istiod.istio-system.svc.cluster.local"];
    let ports: Vec<u32> = svc.ports.iter().map(|p| p.number).collect();
    assert_eq!(ports, vec![15012, 53], "TCP ports only");
    let proxy = snap.proxy(
        &NodeId::parse("sidecar~10.10.0.20~sleep-0.sample~sample.svc.cluster.local").expect("node"),
        &isthmus_api::NodeMetadata::from_map([("CLUSTER_ID", "local")]),
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
