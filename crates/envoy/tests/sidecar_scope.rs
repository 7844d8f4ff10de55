//! Istio's `Sidecar` egress hosts scope what a sidecar receives: only the services it may
//! reach get clusters, endpoints, listeners and routes.

use isthmus_model::{MeshSnapshot, NodeId, SnapshotInput};
use isthmus_registry::FileRegistry;
use std::path::Path;
use std::sync::Arc;

/// What sleep's sidecar in seed 000's cluster1 gets, with `extra` objects in namespace foo.
fn sleep_resources(extra: &str) -> isthmus_envoy::ProxyResources {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed000/cluster1");
    let mut reg = FileRegistry::new("cluster1", dir);
    reg.reload();
    let mut c = (**reg.current()).clone();
    for r in isthmus_api::load_str(extra, None, "foo").resources {
        c.resources.insert(r.key(), Arc::new(r));
    }
    let snap = MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "cluster1".into(),
            local_network: "network1".into(),
            clusters: vec![std::sync::Arc::new(c)],
            ..Default::default()
        },
        1,
    );
    let proxy = snap.proxy(
        &NodeId::parse("sidecar~127.0.1.1~sleep-0.foo~foo.svc.cluster.local").expect("node"),
        &isthmus_api::NodeMetadata::from_map([("CLUSTER_ID", "cluster1")]),
    );
    isthmus_envoy::generate(&snap, &proxy)
}

fn clusters_of_sleep(extra: &str) -> Vec<String> {
    let res = sleep_resources(extra);
    let routes: Vec<String> = res
        .routes
        .iter()
        .flat_map(|r| r.virtual_hosts.iter().map(|v| v.name.clone()))
        .collect();
    let mut names: Vec<String> = res.clusters.into_iter().map(|c| c.name).collect();
    names.extend(routes);
    names
}

#[test]
fn egress_hosts_limit_what_a_sidecar_receives() {
    let all = clusters_of_sleep("");
    assert!(
        all.iter().any(|n| n == "outbound|8000||httpbin.bar.global"),
        "{all:?}"
    );
    assert!(
        all.iter().any(|n| n == "httpbin.bar.global:8000"),
        "{all:?}"
    );

    let scoped = clusters_of_sleep(
        "apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n  egress:\n  - hosts: [\"./sleep.foo.svc.cluster.local\"]\n",
    );
    assert!(
        scoped
            .iter()
            .any(|n| n == "outbound|80||sleep.foo.svc.cluster.local"),
        "{scoped:?}"
    );
    assert!(
        !scoped.iter().any(|n| n.contains("httpbin.bar.global")),
        "{scoped:?}"
    );

    // A Sidecar selecting other workloads does not apply to sleep.
    let other = clusters_of_sleep(
        "apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: only-web}\nspec:\n  workloadSelector: {labels: {app: web}}\n  egress:\n  - hosts: [\"istio-system/*\"]\n",
    );
    assert!(
        other
            .iter()
            .any(|n| n == "outbound|8000||httpbin.bar.global"),
        "{other:?}"
    );
}

/// The names of sleep's virtual hosts and of the cluster its virtualOutbound listener's
/// catch-all chain forwards to, with `extra`.
fn catch_alls(extra: &str) -> (Vec<String>, String) {
    let res = sleep_resources(extra);
    let vhosts = res
        .routes
        .iter()
        .flat_map(|r| r.virtual_hosts.iter().map(|v| v.name.clone()))
        .collect();
    let outbound = res
        .listeners
        .iter()
        .find(|l| l.name == "virtualOutbound")
        .expect("virtualOutbound");
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
        tcp_proxy::ClusterSpecifier, TcpProxy,
    };
    use prost::Message;
    let Some(ConfigType::TypedConfig(any)) = &outbound.filter_chains[0].filters[0].config_type
    else {
        panic!("no tcp proxy");
    };
    let tcp = TcpProxy::decode(any.value.as_slice()).expect("tcp proxy");
    let Some(ClusterSpecifier::Cluster(target)) = tcp.cluster_specifier else {
        panic!("no cluster");
    };
    (vhosts, target)
}

#[test]
fn registry_only_refuses_what_the_mesh_does_not_know() {
    let (vhosts, target) = catch_alls("");
    assert!(vhosts.iter().any(|v| v == "allow_any"), "{vhosts:?}");
    assert_eq!(target, "PassthroughCluster");
    // A Sidecar with only the policy: everything stays in scope, unknown hosts are refused.
    let (vhosts, target) = catch_alls(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
    );
    assert!(vhosts.iter().any(|v| v == "block_all"), "{vhosts:?}");
    assert!(!vhosts.iter().any(|v| v == "allow_any"), "{vhosts:?}");
    assert!(
        vhosts.iter().any(|v| v == "httpbin.bar.global:8000"),
        "{vhosts:?}"
    );
    assert_eq!(target, "BlackHoleCluster");
}

const MESH_REGISTRY_ONLY: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n";

#[test]
fn the_mesh_configs_outbound_policy_applies_unless_a_sidecar_sets_its_own() {
    let (vhosts, target) = catch_alls(MESH_REGISTRY_ONLY);
    assert!(vhosts.iter().any(|v| v == "block_all"), "{vhosts:?}");
    assert_eq!(target, "BlackHoleCluster");
    let (vhosts, target) = catch_alls(&format!(
        "{MESH_REGISTRY_ONLY}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default}}\nspec:\n  outboundTrafficPolicy: {{mode: ALLOW_ANY}}\n"
    ));
    assert!(vhosts.iter().any(|v| v == "allow_any"), "{vhosts:?}");
    assert_eq!(target, "PassthroughCluster");
}
