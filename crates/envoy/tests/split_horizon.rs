//! Split-horizon EDS rules, on hand-written registries: each remote network's endpoints
//! become its gateways, weighted by the mTLS-capable endpoints behind them, counted per
//! locality (Istio counted only the first zone: istio/istio#56355) and split evenly when a
//! network has several gateways; endpoints without a sidecar never go through a gateway.

use isthmus_model::{MeshSnapshot, NodeId, SnapshotInput};
use isthmus_registry::ClusterConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

fn cluster(name: &str, yaml: &str) -> ClusterConfig {
    let loaded = isthmus_api::load_str(yaml, None, "sample");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    ClusterConfig {
        cluster: name.into(),
        resources: loaded
            .resources
            .into_iter()
            .map(|r| (r.key(), Arc::new(r)))
            .collect(),
        diagnostics: Vec::new(),
        ..Default::default()
    }
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: hello}\nspec: {ports: [{name: http, port: 5000}], selector: {app: hello}}\n---\n";

fn pod(name: &str, ip: &str, zone: &str, sidecar: bool) -> String {
    let annotations = if sidecar {
        "{}"
    } else {
        "{sidecar.istio.io/inject: \"false\"}"
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: hello, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: {zone}}}, annotations: {annotations}}}\nstatus: {{podIP: {ip}, phase: Running}}\n---\n"
    )
}

/// (locality, address, port) -> weight of the `hello` assignment sleep sees.
fn weights() -> BTreeMap<(String, String, u32), u32> {
    let local = cluster(
        "local",
        &format!(
            "{SERVICE}{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  meshNetworks: |\n    networks:\n      network2:\n        endpoints:\n        - fromRegistry: remote\n        gateways:\n        - address: 198.18.1.2\n          port: 15443\n        - address: 198.18.1.3\n          port: 15443\n",
            pod("hello-local-0", "10.10.0.11", "za", true)
        ),
    );
    let mut remote = String::from(SERVICE);
    // Three pods in zone za, two in zone zb, one without a sidecar (never via a gateway).
    for (i, zone) in ["za", "za", "za", "zb", "zb"].iter().enumerate() {
        remote.push_str(&pod(
            &format!("hello-{i}"),
            &format!("10.20.0.{}", 10 + i),
            zone,
            true,
        ));
    }
    remote.push_str(&pod("hello-plain", "10.20.0.99", "za", false));
    let snap = MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "local".into(),
            local_network: "network1".into(),
            clusters: vec![
                std::sync::Arc::new(local),
                std::sync::Arc::new(cluster("remote", &remote)),
            ],
            ..Default::default()
        },
        1,
    );
    let proxy = snap.proxy(
        &NodeId::parse("sidecar~10.10.0.12~sleep-0.sample~sample.svc.cluster.local").expect("node"),
        &isthmus_api::NodeMetadata::from_map([("CLUSTER_ID", "local")]),
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    let cla = res
        .endpoints
        .iter()
        .find(|c| c.cluster_name == "outbound|5000||hello.sample.svc.cluster.local")
        .expect("hello's assignment");
    let mut out = BTreeMap::new();
    for l in &cla.endpoints {
        let loc = l
            .locality
            .as_ref()
            .map(|x| format!("{}/{}", x.region, x.zone))
            .unwrap_or_default();
        for e in &l.lb_endpoints {
            let Some(
                envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(
                    ep,
                ),
            ) = &e.host_identifier
            else {
                continue;
            };
            let Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(sa)) =
                ep.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                continue;
            };
            let port = match sa.port_specifier {
                Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => p,
                _ => 0,
            };
            out.insert(
                (loc.clone(), sa.address.clone(), port),
                e.load_balancing_weight
                    .as_ref()
                    .map(|w| w.value)
                    .unwrap_or(1),
            );
        }
    }
    out
}

#[test]
fn gateways_weighted_per_locality_split_evenly_and_never_for_plain_endpoints() {
    let w = weights();
    let get = |loc: &str, addr: &str, port: u32| {
        w.get(&(loc.to_string(), addr.to_string(), port)).copied()
    };
    // The local pod, directly.
    assert_eq!(get("r1/za", "10.10.0.11", 5000), Some(1), "{w:?}");
    // Zone za: 3 mTLS pods behind two gateways -> 2 + 1; zone zb: 2 pods -> 1 + 1.
    assert_eq!(get("r1/za", "198.18.1.2", 15443), Some(2), "{w:?}");
    assert_eq!(get("r1/za", "198.18.1.3", 15443), Some(1), "{w:?}");
    assert_eq!(get("r1/zb", "198.18.1.2", 15443), Some(1), "{w:?}");
    assert_eq!(get("r1/zb", "198.18.1.3", 15443), Some(1), "{w:?}");
    // No remote pod address leaks into a local proxy's endpoints.
    assert!(w.keys().all(|(_, a, _)| !a.starts_with("10.20.")), "{w:?}");
    // The total through gateways counts only the five pods with sidecars.
    let through: u32 = w
        .iter()
        .filter(|((_, a, _), _)| a.starts_with("198.18."))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(through, 5);
}
