//! A headless Service (`clusterIP: None`, as StatefulSets have): clients connect to the pods
//! themselves, so a sidecar gets a listener per pod it reaches (the pod's address and target
//! port) and a cluster to the original destination over the mesh's mTLS, instead of sending
//! such connections out in plain text through the passthrough cluster.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};

mod common;

const MESH: &str = r#"apiVersion: v1
kind: Service
metadata: {name: web, namespace: db}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: tcp-db, port: 5432, targetPort: 15432}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: db, labels: {app: web}}
status: {podIP: 10.10.0.90, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: db, labels: {app: web}}
status: {podIP: 10.10.0.91, phase: Running}
"#;

#[test]
fn each_pod_gets_a_listener_and_the_cluster_keeps_the_destination_over_mtls() {
    let snap = common::snapshot(MESH, "db", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.30~sleep-0.foo~foo.svc.cluster.local",
        "c1",
        &[],
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    for name in ["10.10.0.90_15432", "10.10.0.91_15432"] {
        let l = res
            .listeners
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no listener {name}: {:?}",
                    res.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
                )
            });
        assert_eq!(l.bind_to_port.map(|b| b.value), Some(false));
        assert_eq!(
            l.filter_chains[0].filters[0].name,
            "envoy.filters.network.tcp_proxy"
        );
    }
    let c = res
        .clusters
        .iter()
        .find(|c| c.name == "outbound|5432||web.db.svc.cluster.local")
        .expect("web's cluster");
    assert_eq!(
        c.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32
        ))
    );
    assert_eq!(c.lb_policy, LbPolicy::ClusterProvided as i32);
    let tls = c.transport_socket.as_ref().expect("mesh mTLS to the pods");
    assert_eq!(tls.name, "envoy.transport_sockets.tls");
}
