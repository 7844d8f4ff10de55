//! Golden tests of the Envoy resources generated for the seed 000 configuration
//! (`testdata/seed000`) and seed 004's cluster A (`testdata/seed004`: custom suffix,
//! gateway HTTP/HTTPS servers, the egress funnel). The files under `tests/golden/` were reviewed by a person once;
//! a change to generation shows up as a diff here. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p isthmus-envoy --test golden_seed000` and review the diff.

use isthmus_model::{MeshSnapshot, NodeId, SnapshotInput};
use isthmus_registry::FileRegistry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn snapshot_with(
    dataset: &str,
    cluster: &str,
    network: &str,
    egress_gateway: Option<&str>,
) -> MeshSnapshot {
    let mut reg = FileRegistry::new(cluster, root().join("testdata").join(dataset).join(cluster));
    reg.reload();
    assert!(
        reg.current().diagnostics.is_empty(),
        "{:?}",
        reg.current().diagnostics
    );
    let input = SnapshotInput {
        local_cluster: cluster.into(),
        local_network: network.into(),
        cluster_networks: BTreeMap::new(),
        clusters: vec![reg.current().clone()],
        egress_gateway: egress_gateway.map(str::to_string),
        ..Default::default()
    };
    MeshSnapshot::build(&input, 1)
}

fn check(name: &str, cluster: &str, network: &str, node: &str, metadata: &[(&str, &str)]) {
    check_in("seed000", name, cluster, network, node, metadata)
}

fn check_in(
    dataset: &str,
    name: &str,
    cluster: &str,
    network: &str,
    node: &str,
    metadata: &[(&str, &str)],
) {
    check_with(dataset, name, cluster, network, node, metadata, None)
}

fn check_with(
    dataset: &str,
    name: &str,
    cluster: &str,
    network: &str,
    node: &str,
    metadata: &[(&str, &str)],
    egress_gateway: Option<&str>,
) {
    let snap = snapshot_with(dataset, cluster, network, egress_gateway);
    let md = isthmus_api::NodeMetadata::from_map(metadata.iter().copied());
    let proxy = snap.proxy(&NodeId::parse(node).expect("node id"), &md);
    let text = isthmus_envoy::render::render(&isthmus_envoy::generate(&snap, &proxy));
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&file)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", file.display()));
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{name}: generated config differs from {} at line {}:\n want: {}\n  got: {}\n(UPDATE_GOLDEN=1 regenerates; review the diff)",
            file.display(),
            first + 1,
            want.lines().nth(first).unwrap_or("<end>"),
            text.lines().nth(first).unwrap_or("<end>")
        );
    }
}

#[test]
fn sleep_sidecar_with_capture() {
    check(
        "sleep-sidecar-redirect",
        "cluster1",
        "network1",
        "sidecar~127.0.1.1~sleep-0.foo~foo.svc.cluster.local",
        &[("CLUSTER_ID", "cluster1")],
    );
}

#[test]
fn sleep_sidecar_without_capture() {
    check(
        "sleep-sidecar-none",
        "cluster1",
        "network1",
        "sidecar~127.0.1.1~sleep-0.foo~foo.svc.cluster.local",
        &[("CLUSTER_ID", "cluster1"), ("INTERCEPTION_MODE", "NONE")],
    );
}

#[test]
fn cluster2_east_west_gateway() {
    check(
        "cluster2-eastwest-gateway",
        "cluster2",
        "network2",
        "router~127.0.2.1~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local",
        &[("CLUSTER_ID", "cluster2"), ("ROUTER_MODE", "sni-dnat")],
    );
}

#[test]
fn httpbin_sidecar() {
    check(
        "httpbin-sidecar",
        "cluster2",
        "network2",
        "sidecar~127.0.3.1~httpbin-0.bar~bar.svc.cluster.local",
        &[("CLUSTER_ID", "cluster2")],
    );
}

/// Seed 000's cluster2 with AuthorizationPolicies (`testdata/seed000-authz`): httpbin's
/// inbound chains carry the RBAC filters AUDIT (Envoy's LOG), DENY, ALLOW in that order,
/// with the mesh-wide DENY of the root namespace, compared by hand with the shapes of
/// Istio's pilot/pkg/security/authz/builder tests (allow-full-rule, deny-and-allow).
#[test]
fn httpbin_sidecar_with_authorization_policies() {
    check_in(
        "seed000-authz",
        "httpbin-sidecar-authz",
        "cluster2",
        "network2",
        "sidecar~127.0.3.1~httpbin-0.bar~bar.svc.cluster.local",
        &[("CLUSTER_ID", "cluster2")],
    );
}

/// Seed 000's cluster2 with RequestAuthentications (`testdata/seed000-jwt`): httpbin's
/// inbound HTTP chains carry `jwt_authn` (one provider per rule, sorted by issuer, the
/// unfetched `jwksUri` given keys that verify nothing) ahead of the RBAC filter that reads
/// the verified payload.
#[test]
fn httpbin_sidecar_with_request_authentication() {
    check_in(
        "seed000-jwt",
        "httpbin-sidecar-jwt",
        "cluster2",
        "network2",
        "sidecar~127.0.3.1~httpbin-0.bar~bar.svc.cluster.local",
        &[("CLUSTER_ID", "cluster2")],
    );
}

/// Seed 000's egress variant: the sidecar reaches httpbin.bar.global only through the egress
/// gateway (the remote gateway sits on network `external`, which it cannot reach), and the
/// egress gateway, asking for the `external` view, forwards by SNI to the remote gateway.
#[test]
fn cluster1_sleep_with_egress_serviceentry() {
    check_in(
        "seed000-egress",
        "sleep-sidecar-egress",
        "cluster1",
        "network1",
        "sidecar~10.10.0.11~sleep-0.foo~foo.svc.cluster.local",
        &[("CLUSTER_ID", "cluster1")],
    );
}

#[test]
fn cluster1_egress_gateway() {
    check_in(
        "seed000-egress",
        "cluster1-egress-gateway",
        "cluster1",
        "network1",
        "router~10.10.0.4~istio-egressgateway-0.istio-system~istio-system.svc.cluster.local",
        &[
            ("CLUSTER_ID", "cluster1"),
            ("ROUTER_MODE", "sni-dnat"),
            ("REQUESTED_NETWORK_VIEW", "external"),
        ],
    );
}

/// Split-horizon EDS (seed 003): sleep in `local` (network1) gets helloworld v1's pod
/// directly and, for network2, the remote gateway weighted by the v2 pods behind it: with one
/// v2 pod and with three. Only the EDS is compared: it is what split horizon changes.
fn split_horizon_eds(remote_pods: usize) -> String {
    let data = root().join("testdata/split-horizon");
    let mut local = FileRegistry::new("local", data.join("local"));
    local.reload();
    let mut remote = FileRegistry::new("remote_kubecfg", data.join("remote"));
    remote.reload();
    let mut remote_cfg = (**remote.current()).clone();
    let keep: Vec<String> = (0..remote_pods)
        .map(|i| format!("helloworld-v2-{i}"))
        .collect();
    remote_cfg.resources.retain(|k, _| {
        k.kind != "Pod" || !k.name.starts_with("helloworld-v2-") || keep.iter().any(|n| n == k.name)
    });
    let snap = MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "local".into(),
            local_network: "network1".into(),
            clusters: vec![local.current().clone(), std::sync::Arc::new(remote_cfg)],
            ..Default::default()
        },
        1,
    );
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let md = isthmus_api::NodeMetadata::from_map([("CLUSTER_ID", "local")]);
    let proxy = snap.proxy(
        &NodeId::parse("sidecar~10.10.0.12~sleep-0.sample~sample.svc.cluster.local")
            .expect("node id"),
        &md,
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    let eds: Vec<_> = res
        .endpoints
        .into_iter()
        .filter(|c| c.cluster_name.contains("helloworld"))
        .collect();
    format!("{eds:#?}\n")
}

fn compare(name: &str, text: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&file)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", file.display()));
    assert_eq!(
        want,
        text,
        "{name} differs from {} (UPDATE_GOLDEN=1 regenerates; review the diff)",
        file.display()
    );
}

#[test]
fn split_horizon_eds_one_remote_pod() {
    let text = split_horizon_eds(1);
    assert!(text.contains("198.18.1.2"), "{text}");
    compare("split-horizon-eds-1", &text);
}

#[test]
fn split_horizon_eds_three_remote_pods() {
    let text = split_horizon_eds(3);
    compare("split-horizon-eds-3", &text);
}

/// Every VirtualService HTTP feature (match on uri exact/prefix/regex, headers, authority,
/// method; fault abort and delay; redirect; rewrite; header set/add/remove; timeout;
/// retries; mirror) as sleep's route configuration for port 8000. The lab scenario
/// `examples/gateway-connected/vs-features.yaml` checks the same routes in a real Envoy.
#[test]
fn virtual_service_http_features_rds() {
    let mut reg = FileRegistry::new("cluster1", root().join("testdata/seed000-vs/cluster1"));
    reg.reload();
    assert!(
        reg.current().diagnostics.is_empty(),
        "{:?}",
        reg.current().diagnostics
    );
    let snap = MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "cluster1".into(),
            local_network: "network1".into(),
            clusters: vec![reg.current().clone()],
            ..Default::default()
        },
        1,
    );
    let md = isthmus_api::NodeMetadata::from_map([("CLUSTER_ID", "cluster1")]);
    let proxy = snap.proxy(
        &NodeId::parse("sidecar~127.0.1.1~sleep-0.foo~foo.svc.cluster.local").expect("node"),
        &md,
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    let rds: Vec<_> = res
        .routes
        .into_iter()
        .filter(|r| r.name == "8000")
        .collect();
    let text = format!("{rds:#?}\n");
    assert!(text.contains("prefix_rewrite: \"/headers\""), "{text}");
    assert!(text.contains("envoy.filters.http.fault"), "{text}");
    assert!(text.contains("request_mirror_policies: [\n"), "{text}");
    compare("vs-http-features-rds", &text);
}

const EGRESS: &str = "istio-egressgateway.istio-system.svc.cluster.local";

/// Seed 004: `*.svc.b.remote` (a VirtualService host that names no service) routed on port 80
/// to `ingress.b.remote`, whose only endpoint for the sidecar is the egress gateway on 15443
/// over mTLS; the mesh-bound routes of the `bookinfo` VirtualService without its
/// gateway-only matches.
#[test]
fn seed004_productpage_sidecar() {
    check_with(
        "seed004",
        "seed004-productpage-sidecar",
        "a",
        "network-a",
        "sidecar~10.10.0.11~productpage-v1-0.default~default.svc.cluster.local",
        &[("INTERCEPTION_MODE", "REDIRECT")],
        Some(EGRESS),
    );
}

/// Seed 004: the ingress gateway's port 80 (mTLS or plain text, `*.svc.a.remote` mapped to
/// local services by Host), HTTPS 443 with SIMPLE and MUTUAL servers (certificates from
/// files) routed by the bound VirtualService's gateway matches, and 8080 redirecting to HTTPS.
#[test]
fn seed004_ingress_gateway() {
    check_with(
        "seed004",
        "seed004-ingress-gateway",
        "a",
        "network-a",
        "router~10.10.0.2~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local",
        &[],
        Some(EGRESS),
    );
}

/// Seed 004: the egress gateway terminates the sidecars' mTLS on 15443 by SNI and forwards
/// to B's ingress gateway (198.18.1.2:80) with mTLS of its own.
#[test]
fn seed004_egress_gateway() {
    check_with(
        "seed004",
        "seed004-egress-gateway",
        "a",
        "network-a",
        "router~10.10.0.3~istio-egressgateway-0.istio-system~istio-system.svc.cluster.local",
        &[],
        Some(EGRESS),
    );
}

/// A root-namespace AuthorizationPolicy applies to gateways too: every chain of cluster2's
/// east-west gateway starts with the network RBAC filter (its default chain, which refuses
/// an unknown SNI, needs none).
#[test]
fn gateway_chains_carry_the_policies_that_select_the_gateway() {
    let snap = snapshot_with("seed000-authz", "cluster2", "network2", None);
    let md = isthmus_api::NodeMetadata::from_map([
        ("CLUSTER_ID", "cluster2"),
        ("ROUTER_MODE", "sni-dnat"),
    ]);
    let node =
        "router~127.0.2.1~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local";
    let proxy = snap.proxy(&NodeId::parse(node).expect("node id"), &md);
    let res = isthmus_envoy::generate(&snap, &proxy);
    let chains: Vec<_> = res
        .listeners
        .iter()
        .flat_map(|l| l.filter_chains.iter())
        .collect();
    assert!(!chains.is_empty());
    for c in chains {
        assert_eq!(
            c.filters.first().map(|f| f.name.as_str()),
            Some(isthmus_envoy::rbac::NETWORK_RBAC_FILTER),
            "chain {}",
            c.name
        );
    }
    let plain = snapshot_with("seed000", "cluster2", "network2", None);
    let proxy = plain.proxy(&NodeId::parse(node).expect("node id"), &md);
    let res = isthmus_envoy::generate(&plain, &proxy);
    assert!(res
        .listeners
        .iter()
        .flat_map(|l| l.filter_chains.iter())
        .all(|c| c
            .filters
            .iter()
            .all(|f| f.name != isthmus_envoy::rbac::NETWORK_RBAC_FILTER)));
}

/// A VM (`testdata/vm`): its sidecar, found by its WorkloadEntry's address, serves the
/// inbound port its ServiceEntry and Kubernetes Service select it for, with the entry's
/// labels and account. `examples/gateway-connected/vm.yaml` runs it on real Envoy.
#[test]
fn vm_sidecar_from_its_workload_entry() {
    check_in(
        "vm",
        "vm-sidecar",
        "cluster1",
        "network1",
        "sidecar~192.168.100.10~db-vm.vm~vm.svc.cluster.local",
        &[
            ("CLUSTER_ID", "cluster1"),
            ("INTERCEPTION_MODE", "REDIRECT"),
        ],
    );
}

/// The ingress gateway of `testdata/vm`: a MUTUAL HTTPS server whose certificate, key and
/// client CA come from Secrets (`credentialName`), in line; the route to the VM's service.
#[test]
fn gateway_server_with_secret_credentials() {
    check_in(
        "vm",
        "vm-credential-gateway",
        "cluster1",
        "network1",
        "router~10.10.0.3~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local",
        &[
            ("CLUSTER_ID", "cluster1"),
            ("LABELS", r#"{"istio": "ingressgateway"}"#),
        ],
    );
}
