//! `exportTo` on ServiceEntries, Services (the `networking.istio.io/exportTo` annotation) and
//! VirtualServices, and the mesh config's defaults: a sidecar gets only the services and
//! routes exported to its namespace; gateways follow cross-cluster export instead.

mod common;

const SERVICES: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private-api, namespace: shop}
spec:
  hosts: [private.example.mesh]
  exportTo: ["."]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: http, number: 80, protocol: HTTP}]
  endpoints: [{address: 10.1.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hidden-api, namespace: shop}
spec:
  hosts: [hidden.example.mesh]
  exportTo: ["~"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: http, number: 80, protocol: HTTP}]
  endpoints: [{address: 10.1.0.2}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: public-api, namespace: shop}
spec:
  hosts: [public.example.mesh]
  exportTo: [frontend, "."]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: http, number: 80, protocol: HTTP}]
  endpoints: [{address: 10.1.0.3}]
---
apiVersion: v1
kind: Service
metadata:
  name: ledger
  namespace: shop
  annotations: {networking.istio.io/exportTo: "."}
spec:
  clusterIP: 10.96.0.20
  selector: {app: ledger}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  clusterIP: 10.96.0.21
  selector: {app: catalog}
  ports: [{name: http, port: 8080}]
"#;

const PRIVATE_VS: &str = r#"---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog-maintenance, namespace: shop}
spec:
  hosts: [catalog.shop.svc.cluster.local]
  exportTo: ["."]
  http:
  - directResponse: {status: 503}
"#;

/// The outbound cluster names and the direct-response routes of a proxy in `ns`.
fn seen_from(node: &str, yaml: &str) -> (Vec<String>, usize) {
    let snap = common::snapshot(yaml, "default", "c1", "n1");
    let labels = [("LABELS", r#"{"istio": "eastwestgateway"}"#)];
    let metadata: &[(&str, &str)] = if node.starts_with("router~") {
        &labels
    } else {
        &[]
    };
    let proxy = common::proxy(&snap, node, "c1", metadata);
    let res = isthmus_envoy::generate(&snap, &proxy);
    let clusters = res
        .clusters
        .iter()
        .map(|c| c.name.clone())
        .filter(|n| n.starts_with("outbound"))
        .collect();
    let direct = res
        .routes
        .iter()
        .flat_map(|r| &r.virtual_hosts)
        .flat_map(|v| &v.routes)
        .filter(|r| {
            matches!(
                r.action,
                Some(envoy_types::pb::envoy::config::route::v3::route::Action::DirectResponse(_))
            )
        })
        .count();
    (clusters, direct)
}

fn sidecar(ns: &str) -> String {
    format!("sidecar~10.10.0.30~client-0.{ns}~{ns}.svc.cluster.local")
}

/// Whether a cluster for `host` is among `clusters` (`outbound|PORT||HOST`, or a gateway's
/// `outbound_.PORT_._.HOST`).
fn has(clusters: &[String], host: &str) -> bool {
    clusters
        .iter()
        .any(|c| c.ends_with(&format!("|{host}")) || c.ends_with(&format!("_.{host}")))
}

#[test]
fn sidecars_get_only_the_services_exported_to_their_namespace() {
    let (shop, _) = seen_from(&sidecar("shop"), SERVICES);
    for host in [
        "private.example.mesh",
        "public.example.mesh",
        "ledger.shop.svc.cluster.local",
        "catalog.shop.svc.cluster.local",
    ] {
        assert!(has(&shop, host), "shop sees {host}: {shop:?}");
    }
    assert!(!has(&shop, "hidden.example.mesh"), "`~` hides it from all");

    let (frontend, _) = seen_from(&sidecar("frontend"), SERVICES);
    assert!(has(&frontend, "public.example.mesh"), "{frontend:?}");
    assert!(has(&frontend, "catalog.shop.svc.cluster.local"));
    for host in [
        "private.example.mesh",
        "hidden.example.mesh",
        "ledger.shop.svc.cluster.local",
    ] {
        assert!(!has(&frontend, host), "frontend must not see {host}");
    }

    let (other, _) = seen_from(&sidecar("other"), SERVICES);
    assert!(
        !has(&other, "public.example.mesh"),
        "exported to frontend only"
    );
}

#[test]
fn gateways_follow_cross_cluster_export_not_namespaces() {
    let gateway = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: ledger-0, namespace: shop, labels: {app: ledger}}\nstatus: {podIP: 10.10.0.50, phase: Running}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: catalog-0, namespace: shop, labels: {app: catalog}}\nstatus: {podIP: 10.10.0.51, phase: Running}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: cross-network-gateway, namespace: istio-system}\nspec:\n  selector: {istio: eastwestgateway}\n  servers:\n  - port: {number: 15443, name: tls, protocol: TLS}\n    tls: {mode: AUTO_PASSTHROUGH}\n    hosts: ['*']\n";
    let (gw, _) = seen_from(
        "router~10.10.0.40~istio-eastwestgateway-0.istio-system~istio-system.svc.cluster.local",
        &format!("{SERVICES}{gateway}"),
    );
    // What the east-west gateway serves is decided by cross-cluster export: every Service
    // unless annotated otherwise; one kept to its namespace (`.`) stays in its cluster too.
    assert!(has(&gw, "catalog.shop.svc.cluster.local"), "{gw:?}");
    assert!(!has(&gw, "ledger.shop.svc.cluster.local"), "{gw:?}");
}

#[test]
fn a_virtual_service_applies_only_where_it_is_exported() {
    let yaml = format!("{SERVICES}{PRIVATE_VS}");
    assert_eq!(seen_from(&sidecar("shop"), &yaml).1, 1);
    assert_eq!(seen_from(&sidecar("frontend"), &yaml).1, 0);
}

#[test]
fn the_mesh_configs_defaults_apply_to_objects_without_export_to() {
    let mesh = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    defaultServiceExportTo: ['.']\n    defaultVirtualServiceExportTo: ['.']\n";
    let vs = PRIVATE_VS.replace("  exportTo: [\".\"]\n", "");
    let yaml = format!("{SERVICES}{mesh}{vs}");
    let (frontend, direct) = seen_from(&sidecar("frontend"), &yaml);
    assert!(
        !has(&frontend, "catalog.shop.svc.cluster.local"),
        "{frontend:?}"
    );
    assert!(
        has(&frontend, "public.example.mesh"),
        "its own exportTo wins"
    );
    assert_eq!(direct, 0);
    let (shop, direct) = seen_from(&sidecar("shop"), &yaml);
    assert!(has(&shop, "catalog.shop.svc.cluster.local"));
    assert_eq!(direct, 1);
}
