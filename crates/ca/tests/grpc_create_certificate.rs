//! `CreateCertificate` over gRPC, as an agent calls it: the credential decides the identity,
//! and a CSR that asks for another identity is refused with PERMISSION_DENIED. Every
//! refusal is logged once with its reason and the caller, and counted.

mod common;
use common::{request, serve, serve_with};
use isthmus_ca::{workload_csr, CredentialKey, RefusalReason, TokenReviewer};
use std::sync::Arc;

#[tokio::test]
async fn csr_matching_the_credential_is_signed() {
    let mut ca = serve("ok").await;
    let (csr, _key) = workload_csr("spiffe://cluster.local/ns/bar/sa/httpbin").expect("csr");
    let token = ca.key.issue("bar", "httpbin", 600);
    let chain = ca
        .client
        .create_certificate(request(&csr, Some(&token)))
        .await
        .expect("signed")
        .into_inner()
        .cert_chain;
    assert!(
        chain.len() >= 2,
        "leaf and intermediate, got {}",
        chain.len()
    );
    let der = x509_parser::pem::parse_x509_pem(chain[0].as_bytes())
        .expect("pem")
        .1;
    let cert = der.parse_x509().expect("x509");
    let san = cert
        .subject_alternative_name()
        .expect("san ext")
        .expect("san present");
    let uris: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, vec!["spiffe://cluster.local/ns/bar/sa/httpbin"]);
}

#[tokio::test]
async fn csr_for_another_identity_is_permission_denied() {
    let mut ca = serve("mismatch").await;
    // Valid credential for foo/sleep, CSR claiming bar/httpbin.
    let token = ca.key.issue("foo", "sleep", 600);
    let (csr, _key) = workload_csr("spiffe://cluster.local/ns/bar/sa/httpbin").expect("csr");
    let err = ca
        .client
        .create_certificate(request(&csr, Some(&token)))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("spiffe://cluster.local/ns/foo/sa/sleep"),
        "the refusal names the credential's identity: {}",
        err.message()
    );
}

#[tokio::test]
async fn missing_or_forged_credentials_are_unauthenticated() {
    let mut ca = serve("unauth").await;
    let (csr, _key) = workload_csr("spiffe://cluster.local/ns/foo/sa/sleep").expect("csr");
    let err = ca
        .client
        .create_certificate(request(&csr, None))
        .await
        .expect_err("no credential");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let other = CredentialKey::from_bytes(b"another key, not the CA's own!!!");
    let forged = other.issue("foo", "sleep", 600);
    let err = ca
        .client
        .create_certificate(request(&csr, Some(&forged)))
        .await
        .expect_err("forged");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let token = ca.key.issue("foo", "sleep", 600);
    let err = ca
        .client
        .create_certificate(request("not a CSR", Some(&token)))
        .await
        .expect_err("garbage");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let stats = &ca.stats;
    assert_eq!(stats.refused(RefusalReason::NoCredential), 1);
    assert_eq!(stats.refused(RefusalReason::BadSignature), 1);
    assert_eq!(stats.refused(RefusalReason::BadCsr), 1);
    assert_eq!(stats.issued(), 0);
    let metrics = stats.metrics();
    for line in [
        "citadel_server_csr_count 3",
        "citadel_server_authentication_failure_count 2",
        "citadel_server_csr_parsing_err_count 1",
        "isthmus_ca_refusals_total{reason=\"bad_signature\"} 1",
        "# TYPE citadel_server_csr_count counter",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

/// Stands in for an API server's TokenReview: knows one token of cluster2's foo/sleep.
struct OneToken;

const K8S_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Zm9vOnNsZWVwIn0.c2lnbmF0dXJl";

#[tonic::async_trait]
impl TokenReviewer for OneToken {
    async fn review(&self, token: &str, cluster: Option<&str>) -> Result<(String, String), String> {
        match (token, cluster) {
            (K8S_TOKEN, Some("cluster2")) => Ok(("foo".into(), "sleep".into())),
            (_, Some("cluster2")) => Err("the API server did not authenticate the token".into()),
            (_, other) => Err(format!(
                "cluster {other:?} is not one this control plane reads"
            )),
        }
    }
}

/// A Kubernetes service-account token is checked by the reviewer for the cluster the caller
/// names in `ClusterID`, and decides the identity as a credential does; without a reviewer,
/// or when the reviewer refuses, the request is UNAUTHENTICATED and counted.
#[tokio::test]
async fn kubernetes_tokens_are_reviewed_in_the_callers_cluster() {
    let mut ca = serve_with("k8s", Some(Arc::new(OneToken))).await;
    let (csr, _key) = workload_csr("spiffe://cluster.local/ns/foo/sa/sleep").expect("csr");
    let mut req = request(&csr, Some(K8S_TOKEN));
    req.metadata_mut()
        .insert("clusterid", "cluster2".parse().expect("header"));
    let chain = ca
        .client
        .create_certificate(req)
        .await
        .expect("signed")
        .into_inner()
        .cert_chain;
    assert!(chain.len() >= 2);

    let (other_csr, _key) = workload_csr("spiffe://cluster.local/ns/bar/sa/httpbin").expect("csr");
    let mut req = request(&other_csr, Some(K8S_TOKEN));
    req.metadata_mut()
        .insert("clusterid", "cluster2".parse().expect("header"));
    let err = ca
        .client
        .create_certificate(req)
        .await
        .expect_err("the token is foo/sleep's");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let mut req = request(&csr, Some(K8S_TOKEN));
    req.metadata_mut()
        .insert("clusterid", "cluster9".parse().expect("header"));
    let err = ca
        .client
        .create_certificate(req)
        .await
        .expect_err("unknown cluster");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(err.message().contains("cluster9"), "{}", err.message());
    assert_eq!(ca.stats.refused(RefusalReason::TokenRejected), 1);
    assert_eq!(ca.stats.refused(RefusalReason::IdentityMismatch), 1);

    let mut plain = serve("k8s-none").await;
    let err = plain
        .client
        .create_certificate(request(&csr, Some(K8S_TOKEN)))
        .await
        .expect_err("nothing can review it");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(err.message().contains("Kubernetes"), "{}", err.message());
    assert_eq!(plain.stats.refused(RefusalReason::TokenRejected), 1);
}
