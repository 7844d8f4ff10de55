//! Which DestinationRule applies to a destination, in Istio's order: the proxy's namespace,
//! then the service's (if exported to the proxy's), then the root namespace (if exported);
//! a rule in an unrelated namespace never applies.

use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
mod common;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews}}
status: {podIP: 10.10.0.21, phase: Running}
"#;

fn rule(ns: &str, lb: &str, export_to: &str) -> String {
    format!("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r-{ns}, namespace: {ns}}}\nspec:\n  host: reviews.shop.svc.cluster.local\n  exportTo: {export_to}\n  trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}\n")
}

/// The lb policy of reviews' cluster for a sidecar in `proxy_ns`, with `rules`.
fn lb_seen_from(proxy_ns: &str, rules: &[String]) -> i32 {
    let yaml = format!("{SERVICE}{}", rules.concat());
    let snap = common::snapshot(&yaml, "default", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        &format!("sidecar~10.10.0.30~client-0.{proxy_ns}~{proxy_ns}.svc.cluster.local"),
        "c1",
        &[],
    );
    isthmus_envoy::generate(&snap, &proxy)
        .clusters
        .iter()
        .find(|c| c.name == "outbound|9080||reviews.shop.svc.cluster.local")
        .map(|c| c.lb_policy)
        .expect("reviews' cluster")
}

const RANDOM: i32 = LbPolicy::Random as i32;
const ROUND_ROBIN: i32 = LbPolicy::RoundRobin as i32;
const DEFAULT: i32 = LbPolicy::LeastRequest as i32;

#[test]
fn a_rule_in_an_unrelated_namespace_does_not_apply() {
    assert_eq!(
        lb_seen_from("frontend", &[rule("elsewhere", "RANDOM", "['*']")]),
        DEFAULT
    );
}

#[test]
fn the_proxys_namespace_then_the_services_then_the_root() {
    let all = [
        rule("frontend", "RANDOM", "['*']"),
        rule("shop", "ROUND_ROBIN", "['*']"),
        rule("istio-system", "LEAST_REQUEST", "['*']"),
    ];
    assert_eq!(lb_seen_from("frontend", &all), RANDOM);
    assert_eq!(lb_seen_from("other", &all), ROUND_ROBIN);
    assert_eq!(lb_seen_from("other", &all[2..]), DEFAULT);
    assert_eq!(
        lb_seen_from("other", &[rule("istio-system", "RANDOM", "['*']")]),
        RANDOM
    );
}

#[test]
fn export_to_limits_who_sees_the_services_rule() {
    let private = [rule("shop", "RANDOM", "['.']")];
    assert_eq!(lb_seen_from("shop", &private), RANDOM);
    assert_eq!(lb_seen_from("frontend", &private), DEFAULT);
    let listed = [rule("shop", "ROUND_ROBIN", "[frontend]")];
    assert_eq!(lb_seen_from("frontend", &listed), ROUND_ROBIN);
    assert_eq!(lb_seen_from("other", &listed), DEFAULT);
}

const MESH_EXPORTS_RULES_TO_OWN_NAMESPACE: &str = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    defaultDestinationRuleExportTo: ['.']\n";

#[test]
fn a_rule_without_export_to_has_the_mesh_configs_default() {
    let unexported = rule("shop", "RANDOM", "[]");
    assert_eq!(
        lb_seen_from("frontend", std::slice::from_ref(&unexported)),
        RANDOM
    );
    let private_by_default = [MESH_EXPORTS_RULES_TO_OWN_NAMESPACE.to_string(), unexported];
    assert_eq!(lb_seen_from("shop", &private_by_default), RANDOM);
    assert_eq!(lb_seen_from("frontend", &private_by_default), DEFAULT);
    // A rule's own exportTo wins over the mesh's default.
    let exported = [
        MESH_EXPORTS_RULES_TO_OWN_NAMESPACE.to_string(),
        rule("shop", "RANDOM", "['*']"),
    ];
    assert_eq!(lb_seen_from("frontend", &exported), RANDOM);
}
