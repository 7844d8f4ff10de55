//! On-demand scoping: a sidecar with a `Demand` gets the services its workload resolved, what
//! their routes send to, and nothing else; a user's `Sidecar` still wins.

mod common;

use isthmus_model::{Demand, MeshSnapshot};
use std::sync::Arc;

const MESH: &str = r#"apiVersion: v1
kind: Service
metadata: {name: front, namespace: foo}
spec:
  clusterIP: 10.96.0.10
  selector: {app: front}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bar}
spec:
  clusterIP: 10.96.0.11
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bar}
spec:
  clusterIP: 10.96.0.12
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: shadow, namespace: bar}
spec:
  clusterIP: 10.96.0.13
  selector: {app: shadow}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: unused, namespace: bar}
spec:
  clusterIP: 10.96.0.14
  selector: {app: unused}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: bar}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: tcp-db, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: bar, labels: {app: db}}
spec: {hostname: db-0, subdomain: db}
status: {podIP: 10.10.0.90, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: sleep-0, namespace: foo, labels: {app: sleep}}
status: {podIP: 10.10.0.5, phase: Running}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bar}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: ratings}
    mirror: {host: shadow}
"#;

fn snapshot() -> MeshSnapshot {
    common::snapshot(MESH, "bar", "c1", "n1")
}

/// The outbound clusters sleep's sidecar gets with `demand`.
fn outbound(snap: &MeshSnapshot, demand: Option<Demand>) -> Vec<String> {
    let mut proxy = common::proxy(
        snap,
        "sidecar~10.10.0.5~sleep-0.foo~foo.svc.cluster.local",
        "c1",
        &[],
    );
    proxy.demand = demand.map(Arc::new);
    let res = isthmus_envoy::generate(snap, &proxy);
    res.clusters
        .into_iter()
        .map(|c| c.name)
        .filter(|n| n.starts_with("outbound|"))
        .collect()
}

fn demand(names: &[&str], namespace: bool) -> Option<Demand> {
    Some(Demand {
        names: names.iter().map(|s| s.to_string()).collect(),
        namespace,
    })
}

#[test]
fn a_sidecar_gets_what_it_resolved_and_what_its_routes_send_to() {
    let snap = snapshot();
    let all = outbound(&snap, None);
    assert_eq!(all.len(), 6, "every service without a demand: {all:?}");

    assert!(outbound(&snap, demand(&[], false)).is_empty());

    // reviews routes to ratings and mirrors to shadow: all three, nothing else.
    let got = outbound(&snap, demand(&["reviews.bar.svc.cluster.local"], false));
    assert_eq!(
        got,
        [
            "outbound|9080||ratings.bar.svc.cluster.local",
            "outbound|9080||reviews.bar.svc.cluster.local",
            "outbound|9080||shadow.bar.svc.cluster.local",
        ]
    );

    // A StatefulSet pod's name brings its headless Service.
    let got = outbound(&snap, demand(&["db-0.db.bar.svc.cluster.local"], false));
    assert_eq!(got, ["outbound|5432||db.bar.svc.cluster.local"]);

    // Its own namespace when asked; unknown names bring nothing.
    let got = outbound(&snap, demand(&["nothing.example.com"], true));
    assert_eq!(got, ["outbound|80||front.foo.svc.cluster.local"]);
}

#[test]
fn a_sidecar_resource_wins_over_the_demand() {
    let yaml = format!(
        "{MESH}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: foo}}\nspec:\n  egress:\n  - hosts: [\"bar/unused.bar.svc.cluster.local\"]\n"
    );
    let snap = common::snapshot(&yaml, "bar", "c1", "n1");
    let got = outbound(&snap, demand(&["reviews.bar.svc.cluster.local"], false));
    assert_eq!(got, ["outbound|9080||unused.bar.svc.cluster.local"]);
}

#[test]
fn routers_are_never_scoped_by_a_demand() {
    let snap = snapshot();
    // A network's east-west gateway: every service's SNI cluster.
    let mut gw = common::proxy(
        &snap,
        "router~10.10.0.7~gw-0.foo~foo.svc.cluster.local",
        "c1",
        &[("ROUTER_MODE", "sni-dnat")],
    );
    let unscoped = isthmus_envoy::generate(&snap, &gw);
    gw.demand = demand(&[], false).map(Arc::new);
    let scoped = isthmus_envoy::generate(&snap, &gw);
    let names = |r: &isthmus_envoy::ProxyResources| -> Vec<String> {
        r.clusters.iter().map(|c| c.name.clone()).collect()
    };
    assert!(!names(&unscoped).is_empty());
    assert_eq!(names(&scoped), names(&unscoped));
}
