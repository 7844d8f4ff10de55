//! The one place snapshots are made: a [`MeshBuilder`] owns the build cache, the version
//! counter and the last snapshot, and turns each change of the stores into a new snapshot
//! and the typed [`PushRequest`] that says what it changed.

use crate::incremental::BuildCache;
use crate::push::{ConfigsUpdated, PushRequest};
use crate::snapshot::{MeshSnapshot, SnapshotInput};
use std::sync::Arc;

/// Makes snapshots one after another, reusing what an earlier build computed.
#[derive(Debug, Default)]
pub struct MeshBuilder {
    cache: BuildCache,
    last: Option<Arc<MeshSnapshot>>,
}

impl MeshBuilder {
    /// A builder that has built nothing yet.
    pub fn new() -> Self {
        MeshBuilder::default()
    }

    /// The last snapshot [`MeshBuilder::apply`] made.
    pub fn last(&self) -> Option<&Arc<MeshSnapshot>> {
        self.last.as_ref()
    }

    /// Builds the next version from `input`, reusing what earlier builds computed, and says what it changed from the last one; `configs_updated` is what the
    /// sources reported.
    pub fn apply(
        &mut self,
        input: &SnapshotInput,
        configs_updated: ConfigsUpdated,
    ) -> (Arc<MeshSnapshot>, Arc<PushRequest>) {
        let version = self.last.as_ref().map_or(1, |s| s.version + 1);
        let next = Arc::new(self.build(input, version));
        let push = match &self.last {
            Some(prev) => PushRequest::between(prev, &next, configs_updated),
            None => PushRequest::initial(version),
        };
        self.last = Some(next.clone());
        (next, Arc::new(push))
    }

    /// Builds from `input` at the last version without making it the last snapshot: what a
    /// read that changed nothing in force reports (its problems), without a push.
    pub fn check(&self, input: &SnapshotInput) -> MeshSnapshot {
        self.build(input, self.last.as_ref().map_or(0, |s| s.version))
    }

    fn build(&self, input: &SnapshotInput, version: u64) -> MeshSnapshot {
        MeshSnapshot::build_cached(input, version, Some(&self.cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_registry::ClusterConfig;

    fn input(yaml: &str) -> SnapshotInput {
        let loaded = isthmus_api::load_str(yaml, None, "ns");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        SnapshotInput {
            local_cluster: "c1".into(),
            local_network: "n1".into(),
            clusters: vec![Arc::new(ClusterConfig::with_resources(
                "c1",
                loaded.resources,
            ))],
            ..Default::default()
        }
    }

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  selector: {app: a}\n  ports: [{name: http, port: 80}]\n";

    fn pod(ip: &str) -> String {
        format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: a-1, labels: {{app: a}}}}\nstatus: {{podIP: {ip}}}\n")
    }

    #[test]
    fn versions_advance_and_each_push_says_what_changed() {
        let mut b = MeshBuilder::new();
        let (first, push) = b.apply(
            &input(&format!("{SVC}{}", pod("10.0.0.1"))),
            ConfigsUpdated::Unknown,
        );
        assert_eq!(first.version, 1);
        assert!(push.full && push.from_version == 0);

        let (second, push) = b.apply(
            &input(&format!("{SVC}{}", pod("10.0.0.2"))),
            ConfigsUpdated::Unknown,
        );
        assert_eq!(second.version, 2);
        assert!(!push.full, "{push:?}");
        assert_eq!(
            push.endpoint_hosts().into_iter().collect::<Vec<_>>(),
            ["a.ns.svc.cluster.local"]
        );
        assert_eq!(push.from_version, 1);

        let other_port = SVC.replace("port: 80", "port: 81");
        let (_, push) = b.apply(
            &input(&format!("{other_port}{}", pod("10.0.0.2"))),
            ConfigsUpdated::Unknown,
        );
        assert!(push.full, "a port change is not an endpoint change");

        // A check builds at the last version and changes nothing.
        let checked = b.check(&input(SVC));
        assert_eq!(checked.version, 3);
        assert_eq!(b.last().map(|s| s.version), Some(3));
    }

    #[test]
    fn pods_are_where_their_nodes_are_unless_they_say_otherwise() {
        let nodes = |zone2: &str| {
            format!("apiVersion: v1\nkind: Node\nmetadata: {{name: n1, labels: {{topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: z1, topology.istio.io/subzone: s1}}}}\n---\napiVersion: v1\nkind: Node\nmetadata: {{name: n2, labels: {{topology.kubernetes.io/region: r2, topology.kubernetes.io/zone: {zone2}}}}}\n---\napiVersion: v1\nkind: Node\nmetadata: {{name: bare}}\n---\n")
        };
        let pods = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: bar}\nspec:\n  ports: [{name: http, port: 80}]\n  selector: {app: web}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: bar, labels: {app: web}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-2, namespace: bar, labels: {app: web}}\nspec: {nodeName: n2}\nstatus: {podIP: 10.0.0.2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-3, namespace: bar, labels: {app: web, istio-locality: own.zone}}\nspec: {nodeName: n2}\nstatus: {podIP: 10.0.0.3}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-4, namespace: bar, labels: {app: web}}\nspec: {nodeName: bare}\nstatus: {podIP: 10.0.0.4}\n";
        let localities = |snap: &MeshSnapshot| -> Vec<(String, String)> {
            snap.services["web.bar.svc.cluster.local"]
                .endpoints
                .iter()
                .map(|e| (e.address.to_string(), e.origin.locality.to_string()))
                .collect()
        };
        let mut builder = MeshBuilder::new();
        let input = |zone2: &str| input(&format!("{}{pods}", nodes(zone2)));
        let snap = builder.apply(&input("z2"), ConfigsUpdated::Unknown).0;
        let want = |z: &str| {
            vec![
                ("10.0.0.1".to_string(), "r1/z1/s1".to_string()),
                ("10.0.0.2".into(), format!("r2/{z}")),
                ("10.0.0.3".into(), "own/zone".into()),
                ("10.0.0.4".into(), String::new()),
            ]
        };
        assert_eq!(localities(&snap), want("z2"));
        let id = crate::proxy::NodeId::parse("sidecar~10.0.0.1~web-1.bar~bar.svc.cluster.local")
            .expect("node id");
        let md = isthmus_api::NodeMetadata {
            cluster_id: Some("c1".into()),
            ..Default::default()
        };
        assert_eq!(snap.proxy(&id, &md).locality, "r1/z1/s1");
        // A Node relabelled moves its pods, though their namespace did not change.
        let next = builder.apply(&input("z9"), ConfigsUpdated::Unknown).0;
        assert_eq!(localities(&next), want("z9"));
    }
}
