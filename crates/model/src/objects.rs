//! One cluster's registry objects sorted for the build: Pods and Services by namespace (what
//! the per-namespace build and pod lookups read), its `Endpoints`, and the rest.

use crate::labels::NETWORK_LABEL;
use isthmus_api::{Object, Resource};
use isthmus_registry::ClusterConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One cluster's objects sorted for the build: Pods and Services by namespace, its
/// namespaces' network labels, its `Endpoints`, and everything else (the rules), each in key
/// order.
#[derive(Debug, Default)]
pub struct ClusterObjects {
    /// Namespace -> `topology.istio.io/network` label.
    pub namespace_networks: BTreeMap<String, String>,
    /// Node name -> the locality its topology labels give (Nodes that give one).
    pub node_localities: Arc<BTreeMap<String, Arc<str>>>,
    /// Namespace -> its Pods and Services, in key order.
    pub by_namespace: BTreeMap<String, Arc<Vec<Arc<Resource>>>>,
    /// `Endpoints` objects (selector-less Services).
    pub endpoints: Arc<Vec<Arc<Resource>>>,
    /// Every other object (Namespaces, ConfigMaps, Istio resources, Secrets).
    pub rules: Arc<Vec<Arc<Resource>>>,
}

/// Whether a slice is the EndpointSlice controller's (label
/// `endpointslice.kubernetes.io/managed-by`), which mirrors Pods the build reads itself.
pub(crate) fn controller_managed(s: &isthmus_api::kube::EndpointSlice) -> bool {
    s.metadata
        .labels
        .get("endpointslice.kubernetes.io/managed-by")
        .is_some_and(|m| m == "endpointslice-controller.k8s.io")
}

/// `c`'s objects sorted for the build.
pub(crate) fn sort_objects(c: &ClusterConfig) -> ClusterObjects {
    let mut namespace_networks = BTreeMap::new();
    let mut node_localities = BTreeMap::new();
    let mut by_namespace: BTreeMap<String, Vec<Arc<Resource>>> = BTreeMap::new();
    let mut endpoints = Vec::new();
    let mut rules = Vec::new();
    // Keys sort by kind, then namespace: Pods (and Services) of one namespace come in a run,
    // which goes into the map with one lookup instead of one per object.
    let mut run: Vec<Arc<Resource>> = Vec::new();
    let flush = |run: &mut Vec<Arc<Resource>>, map: &mut BTreeMap<String, Vec<Arc<Resource>>>| {
        let Some(first) = run.first() else {
            return;
        };
        let ns = first.object.metadata().namespace.to_string();
        map.entry(ns).or_default().append(run);
    };
    for r in c.resources.values() {
        match &r.object {
            Object::Pod(_) | Object::Service(_) => {
                let ns = &r.object.metadata().namespace;
                if run
                    .first()
                    .is_some_and(|f| &f.object.metadata().namespace != ns)
                {
                    flush(&mut run, &mut by_namespace);
                }
                run.push(r.clone());
                continue;
            }
            Object::Namespace(n) => {
                if let Some(l) = n.metadata.labels.get(NETWORK_LABEL) {
                    namespace_networks.insert(n.metadata.name.to_string(), l.clone());
                }
                rules.push(r.clone());
            }
            Object::Node(n) => {
                let locality = crate::labels::locality_of(&n.metadata.labels);
                if !locality.is_empty() {
                    node_localities.insert(n.metadata.name.to_string(), Arc::from(locality));
                }
            }
            Object::Endpoints(_) => endpoints.push(r.clone()),
            // Slices a user wrote (for a Service without a selector) are read like
            // Endpoints; the controller's mirror the Pods, whose addresses and Ready
            // condition the build reads itself.
            Object::EndpointSlice(s) if !controller_managed(s) => endpoints.push(r.clone()),
            Object::EndpointSlice(_) => {}
            _ => rules.push(r.clone()),
        }
        flush(&mut run, &mut by_namespace);
    }
    flush(&mut run, &mut by_namespace);
    ClusterObjects {
        namespace_networks,
        node_localities: Arc::new(node_localities),
        by_namespace: by_namespace
            .into_iter()
            .map(|(ns, mut v)| {
                // A namespace's Services are appended after its Pods: drop the room the
                // second run left.
                v.shrink_to_fit();
                (ns, Arc::new(v))
            })
            .collect(),
        endpoints: Arc::new(endpoints),
        rules: Arc::new(rules),
    }
}

/// `prev` (the objects of revision `change.from_revision`) with the namespaces of the
/// changed Pods and Services read again from `c`: what a one-pod change costs is one
/// namespace, not a walk of every object of the cluster (a cache miss or two per object:
/// 20 ms at 22,000 objects). `None` when the change touched other kinds.
pub(crate) fn patch_objects(
    prev: &ClusterObjects,
    c: &ClusterConfig,
    change: &isthmus_registry::KeyChange,
) -> Option<ClusterObjects> {
    // A pod change on a real API server comes with its EndpointSlice's change, which the
    // build does not read (a slice a user wrote is read: a change of one sorts again).
    let patchable = |k: &isthmus_api::ResourceKey| match k.kind.as_str() {
        "Pod" | "Service" => true,
        "EndpointSlice" => c.resources.get(k).is_some_and(|r| match &r.object {
            Object::EndpointSlice(s) => controller_managed(s),
            _ => false,
        }),
        _ => false,
    };
    if !change.keys.iter().all(patchable) {
        return None;
    }
    let namespaces: BTreeSet<&str> = change
        .keys
        .iter()
        .filter(|k| k.kind != "EndpointSlice")
        .map(|k| k.namespace.as_str())
        .collect();
    let mut by_namespace = prev.by_namespace.clone();
    for ns in namespaces {
        let objects: Vec<Arc<Resource>> = c
            .of_kind_in("Pod", ns)
            .chain(c.of_kind_in("Service", ns))
            .cloned()
            .collect();
        if objects.is_empty() {
            by_namespace.remove(ns);
        } else {
            by_namespace.insert(ns.to_string(), Arc::new(objects));
        }
    }
    Some(ClusterObjects {
        namespace_networks: prev.namespace_networks.clone(),
        node_localities: prev.node_localities.clone(),
        by_namespace,
        endpoints: prev.endpoints.clone(),
        rules: prev.rules.clone(),
    })
}
