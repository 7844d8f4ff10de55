//! What the generation tests share: a mesh snapshot built from YAML as a registry folder
//! would hold it, and the proxy a node id names in it.

use isthmus_model::{MeshSnapshot, NodeId, Proxy, SnapshotInput};
use isthmus_registry::ClusterConfig;
use std::sync::Arc;

/// The snapshot of one cluster `cluster` on network `network` holding `yaml`'s objects
/// (namespace `namespace` where they name none); the objects must load without errors.
pub fn snapshot(yaml: &str, namespace: &str, cluster: &str, network: &str) -> MeshSnapshot {
    let loaded = isthmus_api::load_str(yaml, None, namespace);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let config = ClusterConfig {
        cluster: cluster.into(),
        resources: loaded
            .resources
            .into_iter()
            .map(|r| (r.key(), Arc::new(r)))
            .collect(),
        ..Default::default()
    };
    MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: cluster.into(),
            local_network: network.into(),
            clusters: vec![Arc::new(config)],
            ..Default::default()
        },
        1,
    )
}

/// The proxy of node id `node` in `cluster` (with these extra metadata entries).
pub fn proxy(snap: &MeshSnapshot, node: &str, cluster: &str, metadata: &[(&str, &str)]) -> Proxy {
    let mut md: Vec<(&str, &str)> = vec![("CLUSTER_ID", cluster)];
    md.extend_from_slice(metadata);
    snap.proxy(
        &NodeId::parse(node).expect("node id"),
        &isthmus_api::NodeMetadata::from_map(md),
    )
}
