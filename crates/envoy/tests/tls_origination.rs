//! A DestinationRule's `tls` is what the sidecar does: SIMPLE and MUTUAL originate TLS with
//! the files the rule names (never plain text), DISABLE sends plain text, and without a
//! rule a mesh-internal service gets the mesh's mTLS.

use isthmus_envoy::pb::{Cluster, UpstreamTlsContext};
use isthmus_model::{MeshSnapshot, NodeId, SnapshotInput};
use isthmus_registry::FileRegistry;
use prost::Message;
use std::path::Path;
use std::sync::Arc;

const EXTERNAL: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}]
";

/// The cluster `name` of sleep's sidecar in seed 000's cluster1 plus `extra`.
fn cluster(extra: &str, name: &str) -> Cluster {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed000/cluster1");
    let mut reg = FileRegistry::new("cluster1", dir);
    reg.reload();
    let mut c = (**reg.current()).clone();
    let loaded = isthmus_api::load_str(extra, None, "foo");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    for r in loaded.resources {
        c.resources.insert(r.key(), Arc::new(r));
    }
    let snap = MeshSnapshot::build(
        &SnapshotInput {
            local_cluster: "cluster1".into(),
            local_network: "network1".into(),
            clusters: vec![Arc::new(c)],
            ..Default::default()
        },
        1,
    );
    let proxy = snap.proxy(
        &NodeId::parse("sidecar~127.0.1.1~sleep-0.foo~foo.svc.cluster.local").expect("node"),
        &isthmus_api::NodeMetadata::from_map([("CLUSTER_ID", "cluster1")]),
    );
    isthmus_envoy::generate(&snap, &proxy)
        .clusters
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

fn tls_of(c: &Cluster) -> Option<UpstreamTlsContext> {
    let ts = c.transport_socket.as_ref()?;
    let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
        any,
    )) = &ts.config_type
    else {
        return None;
    };
    UpstreamTlsContext::decode(any.value.as_slice()).ok()
}

#[test]
fn simple_originates_tls_checked_against_the_rules_ca_and_names() {
    let dr = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem, subjectAltNames: [api.example.com]}
";
    let c = cluster(
        &format!("{EXTERNAL}---\n{dr}"),
        "outbound|80||api.example.com",
    );
    let tls = tls_of(&c).expect("TLS, not plain text");
    assert_eq!(
        tls.sni, "api.example.com",
        "the host is the SNI when the rule names none"
    );
    let common = tls.common_tls_context.expect("context");
    assert!(
        common.tls_certificates.is_empty(),
        "SIMPLE presents no certificate"
    );
    let text = format!("{:?}", common.validation_context_type);
    assert!(
        text.contains("/etc/certs/ca.pem") && text.contains("api.example.com"),
        "{text}"
    );
    assert!(
        common.tls_certificate_sds_secret_configs.is_empty(),
        "not the mesh's certificate"
    );
}

#[test]
fn mutual_presents_the_rules_certificate_and_system_roots_check_the_server() {
    let dr = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, clientCertificate: /etc/certs/client.pem, privateKey: /etc/certs/key.pem, sni: edge.example.com}
";
    let c = cluster(
        &format!("{EXTERNAL}---\n{dr}"),
        "outbound|80||api.example.com",
    );
    let tls = tls_of(&c).expect("TLS");
    assert_eq!(tls.sni, "edge.example.com");
    let common = tls.common_tls_context.expect("context");
    let cert = format!("{:?}", common.tls_certificates);
    assert!(
        cert.contains("/etc/certs/client.pem") && cert.contains("/etc/certs/key.pem"),
        "{cert}"
    );
    let text = format!("{:?}", common.validation_context_type);
    assert!(text.contains(isthmus_envoy::tls::SYSTEM_ROOTS), "{text}");
}

#[test]
fn disable_is_plain_text_and_no_rule_is_mesh_mtls() {
    let dr = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.com
  trafficPolicy: {tls: {mode: DISABLE}}
";
    let c = cluster(
        &format!("{EXTERNAL}---\n{dr}"),
        "outbound|80||api.example.com",
    );
    assert!(tls_of(&c).is_none());
    let mesh = cluster("", "outbound|8000||httpbin.bar.global");
    let tls = tls_of(&mesh).expect("ISTIO_MUTUAL");
    assert_eq!(tls.sni, "outbound_.8000_._.httpbin.bar.global");
}
