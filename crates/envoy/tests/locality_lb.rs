//! Locality load balancing on a sidecar's endpoints, as Istio orders and weighs them: with
//! outlier detection, priorities by nearness to the proxy (and `failover`, and
//! `failoverPriority` labels); with `distribute`, weights by locality.

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use std::collections::BTreeMap;

mod common;

const BASE: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: sleep-0
  namespace: foo
  labels: {app: sleep, topology.kubernetes.io/region: region1, topology.kubernetes.io/zone: zone1}
status: {podIP: 10.10.0.30, phase: Running}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: foo}
spec:
  hosts: [api.example.mesh]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: http, number: 80, protocol: HTTP}]
  endpoints:
  - {address: 10.1.0.1, locality: region1/zone1, labels: {tier: gold}}
  - {address: 10.1.0.2, locality: region1/zone2, labels: {tier: gold}}
  - {address: 10.1.0.3, locality: region2/zone3, labels: {tier: silver}}
  - {address: 10.1.0.4, locality: region3/zone4, labels: {tier: gold}}
"#;

/// The sidecar's assignment for api.example.mesh under `rule` (a DestinationRule spec's
/// trafficPolicy), as locality -> (priority, weight).
fn assignment(rule: &str) -> BTreeMap<String, (u32, Option<u32>)> {
    assignment_with("", rule)
}

/// [`assignment`] with `extra` objects (such as the mesh config).
fn assignment_with(extra: &str, rule: &str) -> BTreeMap<String, (u32, Option<u32>)> {
    let cla = generated_with(extra, rule).0;
    cla.endpoints
        .iter()
        .map(|e| {
            let l = e.locality.as_ref().expect("locality");
            (
                format!("{}/{}", l.region, l.zone),
                (e.priority, e.load_balancing_weight.map(|w| w.value)),
            )
        })
        .collect()
}

fn generated(rule: &str) -> (ClusterLoadAssignment, bool) {
    generated_with("", rule)
}

fn generated_with(extra: &str, rule: &str) -> (ClusterLoadAssignment, bool) {
    let yaml = format!(
        "{BASE}{extra}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: api, namespace: foo}}\nspec:\n  host: api.example.mesh\n  trafficPolicy: {rule}\n"
    );
    let snap = common::snapshot(&yaml, "foo", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.30~sleep-0.foo~foo.svc.cluster.local",
        "c1",
        &[],
    );
    assert_eq!(proxy.locality, "region1/zone1");
    let res = isthmus_envoy::generate(&snap, &proxy);
    let name = "outbound|80||api.example.mesh";
    let cla = res
        .endpoints
        .iter()
        .find(|c| c.cluster_name == name)
        .cloned()
        .expect("assignment");
    let weighted = res
        .clusters
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.common_lb_config.as_ref())
        .is_some_and(|c| c.locality_config_specifier.is_some());
    (cla, weighted)
}

fn map(v: &[(&str, (u32, Option<u32>))]) -> BTreeMap<String, (u32, Option<u32>)> {
    v.iter().map(|(l, p)| (l.to_string(), *p)).collect()
}

#[test]
fn without_outlier_detection_every_locality_is_priority_0() {
    let got = assignment("{loadBalancer: {simple: ROUND_ROBIN}}");
    assert!(got.values().all(|(p, w)| *p == 0 && w.is_none()), "{got:?}");
}

#[test]
fn outlier_detection_orders_by_nearness_without_gaps() {
    let got = assignment("{outlierDetection: {consecutive5xxErrors: 1}}");
    // same zone 0, same region 1, other regions 3 -> numbered 0, 1, 2, 2.
    assert_eq!(
        got,
        map(&[
            ("region1/zone1", (0, None)),
            ("region1/zone2", (1, None)),
            ("region2/zone3", (2, None)),
            ("region3/zone4", (2, None)),
        ])
    );
    // Turned off: one priority.
    let off = assignment(
        "{outlierDetection: {consecutive5xxErrors: 1}, loadBalancer: {localityLbSetting: {enabled: false}}}",
    );
    assert!(off.values().all(|(p, _)| *p == 0), "{off:?}");
}

#[test]
fn a_failover_rule_puts_the_regions_it_passes_over_last() {
    let got = assignment(
        "{outlierDetection: {consecutive5xxErrors: 1}, loadBalancer: {localityLbSetting: {failover: [{from: region1, to: region3}]}}}",
    );
    assert_eq!(got["region3/zone4"].0, 2, "{got:?}");
    assert_eq!(got["region2/zone3"].0, 3, "{got:?}");
}

#[test]
fn failover_priority_labels_come_before_nearness() {
    // The sidecar has no `tier` label: the value is given (`tier=gold`).
    let got = assignment(
        "{outlierDetection: {consecutive5xxErrors: 1}, loadBalancer: {localityLbSetting: {failoverPriority: [tier=gold]}}}",
    );
    assert_eq!(
        got,
        map(&[
            ("region1/zone1", (0, None)),
            ("region1/zone2", (1, None)),
            ("region3/zone4", (2, None)),
            // silver: after every gold endpoint, however near.
            ("region2/zone3", (3, None)),
        ])
    );
}

#[test]
fn distribute_weighs_localities_and_drops_those_it_gives_nothing() {
    let rule = "{loadBalancer: {localityLbSetting: {distribute: [{from: region1/zone1/*, to: {region1/*: 80, region2/zone3: 20}}]}}}";
    let got = assignment(rule);
    assert_eq!(
        got,
        map(&[
            ("region1/zone1", (0, Some(40))),
            ("region1/zone2", (0, Some(40))),
            ("region2/zone3", (0, Some(20))),
        ])
    );
    assert!(generated(rule).1, "the cluster weighs by locality");
    // A rule for other callers: no weights, and the cluster does not weigh by locality.
    let other = "{loadBalancer: {localityLbSetting: {distribute: [{from: region9/*, to: {region1/*: 100}}]}}}";
    assert!(assignment(other).values().all(|(_, w)| w.is_none()));
    assert!(!generated(other).1);
}

#[test]
fn the_mesh_configs_locality_setting_applies_where_the_rule_sets_none() {
    let mesh = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    localityLbSetting: {failover: [{from: region1, to: region3}]}\n";
    let got = assignment_with(mesh, "{outlierDetection: {consecutive5xxErrors: 1}}");
    assert_eq!(got["region3/zone4"].0, 2, "{got:?}");
    assert_eq!(got["region2/zone3"].0, 3, "{got:?}");
    // The rule's own setting wins whole, `enabled: false` included.
    let off = assignment_with(
        mesh,
        "{outlierDetection: {consecutive5xxErrors: 1}, loadBalancer: {localityLbSetting: {enabled: false}}}",
    );
    assert!(off.values().all(|(p, _)| *p == 0), "{off:?}");
}
