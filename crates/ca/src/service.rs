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
use prometheus::{Gauge, IntCounter, IntCounterVec, Opts, Registry};
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

/// What the CA did, for metrics: Istio's `citadel_server_*` names (counters without a
/// `_total` suffix, as istiod writes them), and refusals by reason under `isthmus_ca_*`.
#[derive(Debug, Clone)]
pub struct CaStats {
    requests: IntCounter,
    issued: IntCounter,
    authentication_failures: IntCounter,
    parse_errors: IntCounter,
    refusals: IntCounterVec,
    refused: Vec<IntCounter>,
    root_expiry: Gauge,
    chain_expiry: Gauge,
}

impl Default for CaStats {
    fn default() -> Self {
        // The names, help and labels are fixed and valid: these cannot fail but on a
        // programming error, which every test building a CA server would catch.
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        };
        let gauge = |name: &str, help: &str| {
            Gauge::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        };
        let refusals = IntCounterVec::new(
            Opts::new(
                "isthmus_ca_refusals_total",
                "Certificate requests refused, by reason.",
            ),
            &["reason"],
        )
        .unwrap_or_else(|e| unreachable!("metric isthmus_ca_refusals_total: {e}"));
        CaStats {
            requests: counter(
                "citadel_server_csr_count",
                "The number of CSRs received by Citadel server.",
            ),
            issued: counter(
                "citadel_server_success_cert_issuance_count",
                "The number of certificates issuances that have succeeded.",
            ),
            authentication_failures: counter(
                "citadel_server_authentication_failure_count",
                "The number of authentication failures: a credential missing, malformed, forged, expired or refused by its API server.",
            ),
            parse_errors: counter(
                "citadel_server_csr_parsing_err_count",
                "The number of errors occurred when parsing the CSR.",
            ),
            refused: RefusalReason::ALL
                .iter()
                .map(|r| refusals.with_label_values(&[r.as_str()]))
                .collect(),
            refusals,
            root_expiry: gauge(
                "citadel_server_root_cert_expiry_timestamp",
                "The unix timestamp, in seconds, when Citadel root cert will expire.",
            ),
            chain_expiry: gauge(
                "citadel_server_cert_chain_expiry_timestamp",
                "The unix timestamp, in seconds, when Citadel cert chain will expire.",
            ),
        }
    }
}

impl CaStats {
    /// Requests refused for `reason` so far.
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused.get(reason as usize).map_or(0, IntCounter::get)
    }

    /// Certificates issued so far.
    pub fn issued(&self) -> u64 {
        self.issued.get()
    }

    /// Records when the root and the signing certificate expire (Unix seconds).
    pub fn set_expiry(&self, expiry: crate::authority::Expiry) {
        self.root_expiry.set(expiry.root as f64);
        self.chain_expiry.set(expiry.signing as f64);
    }

    fn refuse(&self, reason: RefusalReason) {
        if let Some(c) = self.refused.get(reason as usize) {
            c.inc();
        }
        if reason.is_authentication() {
            self.authentication_failures.inc();
        }
        if reason == RefusalReason::BadCsr {
            self.parse_errors.inc();
        }
    }

    /// Adds the CA's metrics to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.issued.clone()))?;
        registry.register(Box::new(self.authentication_failures.clone()))?;
        registry.register(Box::new(self.parse_errors.clone()))?;
        registry.register(Box::new(self.refusals.clone()))?;
        registry.register(Box::new(self.root_expiry.clone()))?;
        registry.register(Box::new(self.chain_expiry.clone()))
    }

    /// Prometheus text of the CA's metrics alone.
    pub fn metrics(&self) -> String {
        let registry = Registry::new();
        if self.register(&registry).is_err() {
            return String::new();
        }
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap_or_default()
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
        self.stats.refuse(reason);
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
        self.stats.requests.inc();
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
                self.stats.issued.inc();
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
