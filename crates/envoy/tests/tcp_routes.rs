//! VirtualService `tcp` routes on sidecars: the first route whose match applies to the
//! proxy (port, destination subnets against the VIP, the caller's labels and namespace)
//! picks the weighted destinations of the service's TCP listener; otherwise the service's
//! own cluster.

use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};
use prost::Message;

mod common;

const MESH: &str = r#"apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec:
  clusterIP: 10.96.0.40
  selector: {app: db}
  ports: [{name: tcp-postgres, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: data, labels: {app: db, version: v1}}
status: {podIP: 10.10.0.70, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: data, labels: {app: db, version: v2}}
status: {podIP: 10.10.0.71, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: sleep-0, namespace: foo, labels: {app: sleep}}
status: {podIP: 10.10.0.30, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: other-0, namespace: foo, labels: {app: other}}
status: {podIP: 10.10.0.31, phase: Running}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: data}
spec:
  host: db.data.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: data}
spec:
  hosts: [db.data.svc.cluster.local]
  tcp:
  - match: [{destinationSubnets: [10.200.0.0/16]}]
    route: [{destination: {host: db.data.svc.cluster.local, subset: v2}}]
  - match: [{port: 5432, sourceLabels: {app: sleep}}]
    route:
    - {destination: {host: db.data.svc.cluster.local, subset: v1}, weight: 80}
    - {destination: {host: db.data.svc.cluster.local, subset: v2}, weight: 20}
  - match: [{destinationSubnets: [10.96.0.0/24], sourceNamespace: bar}]
    route: [{destination: {host: db.data.svc.cluster.local, subset: v2}}]
"#;

/// The TCP proxy's cluster choice on db's listener for the sidecar of `pod` in `ns`.
fn db_target(node: &str) -> ClusterSpecifier {
    let snap = common::snapshot(MESH, "default", "c1", "n1");
    let proxy = common::proxy(&snap, node, "c1", &[]);
    let res = isthmus_envoy::generate(&snap, &proxy);
    let l = res
        .listeners
        .iter()
        .find(|l| l.name == "10.96.0.40_5432")
        .expect("db's listener");
    assert_eq!(l.filter_chains.len(), 1);
    let Some(ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type else {
        panic!("no tcp proxy");
    };
    TcpProxy::decode(any.value.as_slice())
        .expect("tcp proxy")
        .cluster_specifier
        .expect("a cluster")
}

#[test]
fn the_first_route_matching_the_caller_picks_weighted_subsets() {
    let ClusterSpecifier::WeightedClusters(w) =
        db_target("sidecar~10.10.0.30~sleep-0.foo~foo.svc.cluster.local")
    else {
        panic!("sleep gets the weighted route");
    };
    let got: Vec<(String, u32)> = w.clusters.into_iter().map(|c| (c.name, c.weight)).collect();
    assert_eq!(
        got,
        [
            ("outbound|5432|v1|db.data.svc.cluster.local".to_string(), 80),
            ("outbound|5432|v2|db.data.svc.cluster.local".to_string(), 20)
        ]
    );
}

#[test]
fn without_a_matching_route_the_service_itself() {
    assert_eq!(
        db_target("sidecar~10.10.0.31~other-0.foo~foo.svc.cluster.local"),
        ClusterSpecifier::Cluster("outbound|5432||db.data.svc.cluster.local".into())
    );
}

#[test]
fn destination_subnets_are_matched_against_the_vip_and_namespaces_against_the_caller() {
    assert_eq!(
        db_target("sidecar~10.10.0.32~client-0.bar~bar.svc.cluster.local"),
        ClusterSpecifier::Cluster("outbound|5432|v2|db.data.svc.cluster.local".into())
    );
}
