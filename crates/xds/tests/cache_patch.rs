//! When only some services' endpoints move, a sidecar's resources are patched from the
//! previous version instead of generated again; the patched set must be exactly what a full
//! generation gives.

use isthmus_model::{ConfigsUpdated, MeshSnapshot, NodeId, PushRequest, SnapshotInput};
use isthmus_registry::{ClusterConfig, FileRegistry};
use isthmus_xds::cache::ResourceCache;
use isthmus_xds::MeshUpdate;
use std::path::Path;
use std::sync::Arc;

fn registry() -> ClusterConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed000/cluster2");
    let mut reg = FileRegistry::new("cluster2", dir);
    reg.reload();
    (**reg.current()).clone()
}

fn snapshot(c: &ClusterConfig, version: u64) -> MeshSnapshot {
    MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "cluster2".into(),
            local_network: "network2".into(),
            clusters: vec![std::sync::Arc::new(c.clone())],
            ..Default::default()
        },
        version,
    )
}

fn listing(e: &isthmus_xds::cache::Encoded) -> Vec<(String, u64)> {
    isthmus_xds::cache::PUSH_ORDER
        .iter()
        .flat_map(|t| e.of_type(t).iter().map(|r| (r.name.to_string(), r.version)))
        .collect()
}

#[test]
fn a_moved_endpoint_patches_the_sidecar_exactly_as_a_full_generation_would() {
    let before = registry();
    let v1 = MeshUpdate::full(Arc::new(snapshot(&before, 1)));
    // A sidecar in bar that is not itself an endpoint.
    let id = NodeId::parse("sidecar~127.0.9.9~client-0.bar~bar.svc.cluster.local").expect("id");
    let proxy = v1
        .snapshot
        .proxy(&id, &isthmus_api::NodeMetadata::default());
    let cache = ResourceCache::default();
    let first = cache.get(&v1, &proxy);

    let mut after = before.clone();
    let key = after
        .resources
        .keys()
        .find(|k| k.kind == "Pod" && k.namespace == "bar")
        .map(|k| k.to_key())
        .expect("httpbin pod");
    let mut pod = (*after.resources[&key]).clone();
    let mut old_ip = String::new();
    if let isthmus_api::Object::Pod(p) = &mut pod.object {
        old_ip = p
            .status
            .pod_ip()
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        p.status.set_pod_ip(Some([127, 0, 3, 9].into()));
    }
    assert!(!old_ip.is_empty(), "the pod had an address");
    after.resources.insert(key, Arc::new(pod));
    let v2 = Arc::new(snapshot(&after, 2));
    let push = PushRequest::between(&v1.snapshot, &v2, ConfigsUpdated::Unknown);
    assert!(!push.full, "only endpoints moved");
    assert_eq!(
        push.endpoints
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["httpbin.bar.svc.cluster.local"]
    );
    let v2 = MeshUpdate::new(v2, Arc::new(push));

    let patched = cache.get(&v2, &proxy);
    assert_eq!(cache.stats().patched, 1, "{:?}", cache.stats());
    let full = ResourceCache::default().get(&MeshUpdate::full(v2.snapshot.clone()), &proxy);
    assert_eq!(listing(&patched), listing(&full));
    assert_ne!(listing(&patched), listing(&first), "the endpoint did move");
    for t in isthmus_xds::cache::PUSH_ORDER {
        // The patched set's response body is byte for byte the generated one's...
        assert_eq!(patched.whole(t), full.whole(t), "{t}");
        assert_eq!(patched.delta_whole(t), full.delta_whole(t), "{t}");
        // ...and every stream of the same shape gets the same bytes, not a copy.
        let again = cache.get(&v2, &proxy).whole(t);
        assert_eq!(again.as_ptr(), patched.whole(t).as_ptr(), "{t}");
        // A generated set's entries are slices of its whole body, not copies of their own.
        let body = full.whole(t);
        let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        for r in full.of_type(t) {
            assert!(range.contains(&(r.entry.as_ptr() as usize)), "{}", r.name);
            assert!(
                r.to_any().is_some_and(|a| !a.value.is_empty()),
                "{}",
                r.name
            );
        }
    }

    // The cache's index of endpoint addresses was patched too: a proxy at the pod's old
    // address is no longer an endpoint (it shares the plain sidecar's set), one at the new
    // address is (its inbound side makes its own set).
    let at = |ip: &str| {
        let id =
            NodeId::parse(&format!("sidecar~{ip}~client-0.bar~bar.svc.cluster.local")).expect("id");
        v2.snapshot
            .proxy(&id, &isthmus_api::NodeMetadata::default())
    };
    assert!(Arc::ptr_eq(&cache.get(&v2, &at(&old_ip)), &patched));
    assert!(!Arc::ptr_eq(&cache.get(&v2, &at("127.0.3.9")), &patched));
    let fresh = ResourceCache::default();
    let v2_full = MeshUpdate::full(v2.snapshot.clone());
    let plain = fresh.get(&v2_full, &proxy);
    assert!(Arc::ptr_eq(&fresh.get(&v2_full, &at(&old_ip)), &plain));
    assert!(!Arc::ptr_eq(&fresh.get(&v2_full, &at("127.0.3.9")), &plain));

    // Anything else changing (a rule) is not an endpoint-only delta.
    let mut with_rule = after.clone();
    let dr = isthmus_api::load_str(
        "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: d, namespace: bar}\nspec: {host: httpbin}\n",
        None,
        "bar",
    );
    for r in dr.resources {
        with_rule.resources.insert(r.key(), Arc::new(r));
    }
    assert!(
        PushRequest::between(
            &v2.snapshot,
            &snapshot(&with_rule, 3),
            ConfigsUpdated::Unknown
        )
        .full
    );

    // A version that changed nothing a proxy receives keeps every shape's set as it is.
    let v3 = MeshUpdate::new(
        Arc::new(snapshot(&after, 3)),
        Arc::new(PushRequest::between(
            &v2.snapshot,
            &snapshot(&after, 3),
            ConfigsUpdated::Unknown,
        )),
    );
    assert!(v3.push.is_empty(), "{:?}", v3.push);
    let kept = cache.get(&v3, &proxy);
    assert!(Arc::ptr_eq(&kept, &patched), "kept, not generated again");
    for t in isthmus_xds::cache::PUSH_ORDER {
        // A stream holding that set learns at once that nothing differs.
        assert_eq!(kept.changed_since(&patched, t), Some(&[][..]), "{t}");
    }
    assert_eq!(cache.stats().kept, 1, "{:?}", cache.stats());
}
