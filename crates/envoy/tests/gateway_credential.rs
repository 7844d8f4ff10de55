//! Gateway `credentialName`: the certificate, key and client CA come from a Secret of the
//! gateway workload's own namespace (the CA also from `NAME-cacert`), in line in the server's
//! chain; a gateway whose namespace lacks the Secret does not serve that server at all (never
//! in plain text), and the snapshot says why.

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, DownstreamTlsContext,
};
use prost::Message;

mod common;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBserver\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIBkey\n-----END PRIVATE KEY-----\n";
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n";

fn mesh(secrets: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  clusterIP: 10.96.0.20
  selector: {{app: web}}
  ports: [{{name: http, port: 80}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: web-gateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [web.example.com]
    tls: {{mode: SIMPLE, credentialName: web-cert}}
  - port: {{number: 443, name: https-partners, protocol: HTTPS}}
    hosts: [partners.example.com]
    tls: {{mode: MUTUAL, credentialName: partner-cert}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: [web.example.com, partners.example.com]
  gateways: [web-gateway]
  http:
  - route: [{{destination: {{host: web}}}}]
{secrets}"#
    )
}

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n");
    for (k, v) in data {
        s.push_str(&format!("  {k}: {v:?}\n"));
    }
    s
}

/// One HTTPS chain: its name, certificate, key and client CA.
type Chain = (String, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// The server certificate, key and client CA of each HTTPS chain of the gateway in
/// `gateway_ns`, by chain name.
fn chains(yaml: &str, gateway_ns: &str) -> Vec<Chain> {
    let snap = common::snapshot(yaml, "default", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        &format!(
            "router~10.10.0.3~istio-ingressgateway-0.{gateway_ns}~{gateway_ns}.svc.cluster.local"
        ),
        "c1",
        &[("LABELS", r#"{"istio": "ingressgateway"}"#)],
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    let bytes = |d: &Option<envoy_types::pb::envoy::config::core::v3::DataSource>| match d
        .as_ref()
        .and_then(|d| d.specifier.as_ref())
    {
        Some(Specifier::InlineBytes(b)) => b.clone(),
        other => panic!("not in line: {other:?}"),
    };
    res.listeners
        .iter()
        .filter(|l| l.name == "0.0.0.0_443")
        .flat_map(|l| &l.filter_chains)
        .map(|c| {
            let any = match c.transport_socket.as_ref().and_then(|t| t.config_type.as_ref()) {
                Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(a)) => a,
                None => panic!("chain {} has no TLS", c.name),
            };
            let ctx = DownstreamTlsContext::decode(any.value.as_slice()).expect("tls context");
            let common = ctx.common_tls_context.expect("common");
            let cert = &common.tls_certificates[0];
            let ca = match common.validation_context_type {
                Some(ValidationContextType::ValidationContext(v)) => Some(bytes(&v.trusted_ca)),
                _ => None,
            };
            (c.name.clone(), bytes(&cert.certificate_chain), bytes(&cert.private_key), ca)
        })
        .collect()
}

#[test]
fn servers_present_their_secrets_certificate_in_line_and_mutual_checks_the_ca() {
    let yaml = mesh(&format!(
        "{}{}{}",
        secret(
            "istio-system",
            "web-cert",
            &[("tls.crt", CERT), ("tls.key", KEY)]
        ),
        secret(
            "istio-system",
            "partner-cert",
            &[("cert", CERT), ("key", KEY)]
        ),
        secret("istio-system", "partner-cert-cacert", &[("ca.crt", CA)]),
    ));
    let got = chains(&yaml, "istio-system");
    assert_eq!(got.len(), 2, "{got:?}");
    let web = got
        .iter()
        .find(|c| c.0.contains(".https.web-gateway"))
        .expect("web chain");
    assert_eq!(
        (web.1.as_slice(), web.2.as_slice(), &web.3),
        (CERT.as_bytes(), KEY.as_bytes(), &None)
    );
    let partners = got
        .iter()
        .find(|c| c.0.contains("https-partners"))
        .expect("partners chain");
    assert_eq!(
        partners.3.as_deref(),
        Some(CA.as_bytes()),
        "the CA from partner-cert-cacert"
    );
}

#[test]
fn a_gateway_reads_only_its_own_namespaces_secrets_and_never_serves_without_one() {
    // The Secrets are in istio-system; a gateway running in `edge` serves neither server.
    let yaml = mesh(&secret(
        "istio-system",
        "web-cert",
        &[("tls.crt", CERT), ("tls.key", KEY)],
    ));
    assert!(chains(&yaml, "edge").is_empty());
    // MUTUAL without any CA is not served either; SIMPLE is.
    let yaml = mesh(&format!(
        "{}{}",
        secret(
            "istio-system",
            "web-cert",
            &[("tls.crt", CERT), ("tls.key", KEY)]
        ),
        secret(
            "istio-system",
            "partner-cert",
            &[("tls.crt", CERT), ("tls.key", KEY)]
        ),
    ));
    let got = chains(&yaml, "istio-system");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].0.contains(".https.web-gateway"));
}

#[test]
fn a_missing_or_broken_secret_is_reported_without_its_values() {
    let yaml = mesh(&secret(
        "istio-system",
        "web-cert",
        &[("tls.crt", CERT), ("tls.key", "not-pem-secret")],
    ));
    let snap = common::snapshot(&yaml, "default", "c1", "n1");
    let shown: Vec<String> = snap.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|d| d.contains("Secret/istio-system/web-cert")
                && d.contains("`tls.key` is not PEM")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|d| d.contains("spec.servers[1].tls.credentialName")
                && d.contains("no Secret `partner-cert`")),
        "{shown:?}"
    );
    assert!(
        shown.iter().all(|d| !d.contains("not-pem-secret")),
        "{shown:?}"
    );
}
