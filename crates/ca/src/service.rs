//! Istio's `CreateCertificate` gRPC method: the caller's credential (`authorization: Bearer
//! ...`) decides the identity; the CSR must ask for exactly that identity.

use crate::authority::Authority;
use crate::credential::CredentialKey;
use crate::grpc::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use crate::proto::{IstioCertificateRequest, IstioCertificateResponse};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The CA service.
#[derive(Debug, Clone)]
pub struct CaService {
    authority: Arc<Authority>,
    credentials: Arc<CredentialKey>,
    trust_domain: String,
    max_ttl: Duration,
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
        }
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
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer CREDENTIAL`"))?
            .to_string();
        let who = self
            .credentials
            .verify(&token)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let identity = format!("spiffe://{}/ns/{}/sa/{}", self.trust_domain, who.ns, who.sa);
        let req = request.into_inner();
        let ttl = if req.validity_duration > 0 {
            Duration::from_secs(req.validity_duration as u64).min(self.max_ttl)
        } else {
            self.max_ttl
        };
        match self.authority.sign_workload(&req.csr, &identity, ttl) {
            Ok(chain) => {
                tracing::info!(%identity, ttl_secs = ttl.as_secs(), "issued workload certificate");
                Ok(Response::new(IstioCertificateResponse {
                    cert_chain: chain,
                }))
            }
            Err(e @ crate::authority::CaError::IdentityMismatch { .. }) => {
                tracing::warn!(error = %e, "refused certificate request");
                Err(Status::permission_denied(e.to_string()))
            }
            Err(e) => Err(Status::invalid_argument(e.to_string())),
        }
    }
}
