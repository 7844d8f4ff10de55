//! Istio's `CreateCertificate` gRPC method: the caller's credential (`authorization: Bearer
//! ...`) decides the identity; the CSR must ask for exactly that identity. The credential is
//! either this control plane's own (see [`crate::credential`]) or, as in Istio, a Kubernetes
//! service-account token, which a [`TokenReviewer`] checks with the API server of the
//! cluster the caller names in its `ClusterID` header. Every refusal is
//! logged once, with its reason and the caller's address (never the credential), and
//! counted by reason.

use crate::authority::Authority;
use crate::credential::CredentialKey;
use crate::grpc::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use crate::proto::{IstioCertificateRequest, IstioCertificateResponse};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Why a certificate request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// No `authorization: Bearer` header.
    NoCredential,
    /// A credential that is not one (bad encoding).
    MalformedCredential,
    /// A credential not signed with this control plane's key (forged, or another mesh's).
    BadSignature,
    /// An expired credential.
    ExpiredCredential,
    /// A CSR for another identity than the credential grants.
    IdentityMismatch,
    /// A CSR that cannot be read or signed.
    BadCsr,
    /// A Kubernetes token its API server did not accept (or that no API server can review).
    TokenRejected,
}

impl RefusalReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [RefusalReason; 7] = [
        RefusalReason::NoCredential,
        RefusalReason::MalformedCredential,
        RefusalReason::BadSignature,
        RefusalReason::ExpiredCredential,
        RefusalReason::IdentityMismatch,
        RefusalReason::BadCsr,
        RefusalReason::TokenRejected,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NoCredential => "no_credential",
            RefusalReason::MalformedCredential => "malformed_credential",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::ExpiredCredential => "expired_credential",
            RefusalReason::IdentityMismatch => "identity_mismatch",
            RefusalReason::BadCsr => "bad_csr",
            RefusalReason::TokenRejected => "token_rejected",
        }
    }

    fn of_credential(e: &crate::credential::CredentialError) -> RefusalReason {
        use crate::credential::CredentialError as E;
        match e {
            E::Malformed | E::Io { .. } => RefusalReason::MalformedCredential,
            E::BadSignature => RefusalReason::BadSignature,
            E::Expired => RefusalReason::ExpiredCredential,
        }
    }

    /// Whether the caller failed to prove who it is (Istio's authentication failures).
    fn is_authentication(self) -> bool {
        !matches!(
            self,
            RefusalReason::IdentityMismatch | RefusalReason::BadCsr
        )
    }
}

/// What the CA did, for metrics.
#[derive(Debug, Default)]
pub struct CaStats {
    requests: AtomicU64,
    issued: AtomicU64,
    refused: [AtomicU64; 7],
}

impl CaStats {
    /// Requests refused for `reason` so far.
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused[reason as usize].load(Ordering::Relaxed)
    }

    /// Certificates issued so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Prometheus text: Istio's `citadel_server_*` counters, and refusals by reason.
    pub fn metrics(&self) -> String {
        let auth_failures: u64 = RefusalReason::ALL
            .iter()
            .filter(|r| r.is_authentication())
            .map(|r| self.refused(*r))
            .sum();
        let mut out = format!(
            "# HELP citadel_server_csr_count Certificate signing requests received.\n\
             # TYPE citadel_server_csr_count counter\ncitadel_server_csr_count {}\n\
             # HELP citadel_server_success_cert_issuance_count Certificates issued.\n\
             # TYPE citadel_server_success_cert_issuance_count counter\ncitadel_server_success_cert_issuance_count {}\n\
             # HELP citadel_server_authentication_failure_count Requests whose credential was missing, malformed, forged or expired.\n\
             # TYPE citadel_server_authentication_failure_count counter\ncitadel_server_authentication_failure_count {auth_failures}\n\
             # HELP citadel_server_csr_parsing_err_count Requests whose CSR could not be read or signed.\n\
             # TYPE citadel_server_csr_parsing_err_count counter\ncitadel_server_csr_parsing_err_count {}\n\
             # HELP isthmus_ca_refusals_total Certificate requests refused, by reason.\n\
             # TYPE isthmus_ca_refusals_total counter\n",
            self.requests.load(Ordering::Relaxed),
            self.issued(),
            self.refused(RefusalReason::BadCsr),
        );
        for r in RefusalReason::ALL {
            out.push_str(&format!(
                "isthmus_ca_refusals_total{{reason=\"{}\"}} {}\n",
                r.as_str(),
                self.refused(r)
            ));
        }
        out
    }
}

/// Checks Kubernetes service-account tokens (a TokenReview at an API server).
#[tonic::async_trait]
pub trait TokenReviewer: Send + Sync + 'static {
    /// The namespace and service account `token` authenticates in `cluster` (the
    /// `ClusterID` the caller names; `None` for the control plane's own cluster), or why
    /// not. The reason must never contain the token.
    async fn review(&self, token: &str, cluster: Option<&str>) -> Result<(String, String), String>;
}

/// Whether a bearer credential has the shape of a JSON Web Token (three base64url parts,
/// as Kubernetes service-account tokens); this control plane's own credentials have two.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.trim().split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The CA service.
#[derive(Clone)]
pub struct CaService {
    authority: Arc<Authority>,
    credentials: Arc<CredentialKey>,
    trust_domain: String,
    max_ttl: Duration,
    stats: Arc<CaStats>,
    reviewer: Option<Arc<dyn TokenReviewer>>,
}

impl std::fmt::Debug for CaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaService")
            .field("trust_domain", &self.trust_domain)
            .field("max_ttl", &self.max_ttl)
            .field("reviews_kubernetes_tokens", &self.reviewer.is_some())
            .finish_non_exhaustive()
    }
}

impl CaService {
    /// A service signing with `authority` for identities in `trust_domain`.
    pub fn new(
        authority: Arc<Authority>,
        credentials: Arc<CredentialKey>,
        trust_domain: String,
    ) -> Self {
        CaService {
            authority,
            credentials,
            trust_domain,
            max_ttl: Duration::from_secs(24 * 3600),
            stats: Arc::default(),
            reviewer: None,
        }
    }

    /// Also accepts Kubernetes service-account tokens, checked by `reviewer`.
    pub fn with_token_reviewer(mut self, reviewer: Arc<dyn TokenReviewer>) -> Self {
        self.reviewer = Some(reviewer);
        self
    }

    /// Counts into `stats` (made before the service, so that metrics can be served first).
    pub fn with_stats(mut self, stats: Arc<CaStats>) -> Self {
        self.stats = stats;
        self
    }

    /// What this service has done, for metrics.
    pub fn stats(&self) -> Arc<CaStats> {
        self.stats.clone()
    }

    /// Logs and counts a refusal, and gives the status to answer with.
    fn refuse(
        &self,
        peer: &str,
        reason: RefusalReason,
        identity: Option<&str>,
        detail: &str,
        status: fn(String) -> Status,
    ) -> Status {
        self.stats.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            %peer,
            reason = reason.as_str(),
            identity = identity.unwrap_or("-"),
            detail,
            "refused certificate request"
        );
        status(detail.to_string())
    }

    /// The tonic service.
    pub fn into_service(self) -> IstioCertificateServiceServer<CaService> {
        IstioCertificateServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl IstioCertificateService for CaService {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let Some(token) = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
        else {
            return Err(self.refuse(
                &peer,
                RefusalReason::NoCredential,
                None,
                "missing `authorization: Bearer CREDENTIAL`",
                Status::unauthenticated,
            ));
        };
        let (ns, sa) = if looks_like_jwt(&token) {
            let cluster = request
                .metadata()
                .get("clusterid")
                .and_then(|v| v.to_str().ok())
                .filter(|c| !c.is_empty())
                .map(str::to_string);
            let Some(reviewer) = &self.reviewer else {
                return Err(self.refuse(
                    &peer,
                    RefusalReason::TokenRejected,
                    None,
                    "a Kubernetes service-account token, but this control plane reads no Kubernetes API server that could review it",
                    Status::unauthenticated,
                ));
            };
            reviewer
                .review(&token, cluster.as_deref())
                .await
                .map_err(|e| {
                    self.refuse(
                        &peer,
                        RefusalReason::TokenRejected,
                        None,
                        &format!(
                            "Kubernetes token of cluster {}: {e}",
                            cluster.as_deref().unwrap_or("(this control plane's own)")
                        ),
                        Status::unauthenticated,
                    )
                })?
        } else {
            let who = self.credentials.verify(&token).map_err(|e| {
                self.refuse(
                    &peer,
                    RefusalReason::of_credential(&e),
                    None,
                    &e.to_string(),
                    Status::unauthenticated,
                )
            })?;
            (who.ns, who.sa)
        };
        let identity = format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain);
        let req = request.into_inner();
        let ttl = if req.validity_duration > 0 {
            Duration::from_secs(req.validity_duration as u64).min(self.max_ttl)
        } else {
            self.max_ttl
        };
        match self.authority.sign_workload(&req.csr, &identity, ttl) {
            Ok(chain) => {
                self.stats.issued.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, %identity, ttl_secs = ttl.as_secs(), "issued workload certificate");
                Ok(Response::new(IstioCertificateResponse {
                    cert_chain: chain,
                }))
            }
            Err(e @ crate::authority::CaError::IdentityMismatch { .. }) => Err(self.refuse(
                &peer,
                RefusalReason::IdentityMismatch,
                Some(&identity),
                &e.to_string(),
                Status::permission_denied,
            )),
            Err(e) => Err(self.refuse(
                &peer,
                RefusalReason::BadCsr,
                Some(&identity),
                &e.to_string(),
                Status::invalid_argument,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape_tells_kubernetes_tokens_from_credentials() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(
            !looks_like_jwt("eyJucyI6ImZvbyJ9.c2ln"),
            "a credential has two parts"
        );
        assert!(!looks_like_jwt("a..b"));
        assert!(!looks_like_jwt("a.b.c d"));
    }
}
