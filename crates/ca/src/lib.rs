//! The certificate authority: one shared root, an intermediate CA per cluster (the files of
//! Istio's `cacerts` secret), workload certificates for SPIFFE identities, the per-workload
//! credentials that authenticate certificate requests, and Istio's `CreateCertificate` API.

pub mod authority;
pub mod credential;
pub mod proto;
pub mod service;

pub use authority::{
    create_intermediate, create_root, split_pem, workload_csr, Authority, CaError,
};
pub use credential::{CredentialError, CredentialKey, WorkloadIdentity};
pub use service::{looks_like_jwt, CaService, CaStats, RefusalReason, TokenReviewer};

/// The generated gRPC client and server.
pub mod grpc {
    include!(concat!(
        env!("OUT_DIR"),
        "/istio.v1.auth.IstioCertificateService.rs"
    ));
}

/// The DNS name the control plane's serving certificate carries, as istiod's does.
pub const CONTROL_PLANE_DNS: &str = "istiod.istio-system.svc";
