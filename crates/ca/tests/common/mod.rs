//! What the CA's gRPC tests share: the request an agent sends.

use isthmus_ca::proto::IstioCertificateRequest;

/// A `CreateCertificate` request for `csr`, with `authorization: Bearer TOKEN` when given.
pub fn request(csr: &str, token: Option<&str>) -> tonic::Request<IstioCertificateRequest> {
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr: csr.into(),
        validity_duration: 3600,
    });
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header value"),
        );
    }
    req
}
