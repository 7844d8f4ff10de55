//! Requests a workload certificate from the control plane's CA.

use isthmus_ca::grpc::istio_certificate_service_client::IstioCertificateServiceClient;
use isthmus_ca::proto::IstioCertificateRequest;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A TLS channel to the control plane, trusting only the mesh root and checking the
/// control plane's name (`istiod.istio-system.svc`).
pub async fn channel(address: &str, root_pem: &str) -> Result<Channel, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(root_pem))
        .domain_name(isthmus_ca::CONTROL_PLANE_DNS);
    let endpoint = Channel::from_shared(format!("https://{address}"))
        .map_err(|e| format!("control plane address `{address}`: {e}"))?
        .tls_config(tls)
        .map_err(|e| format!("TLS settings: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(3));
    endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach the control plane at {address}: {e}"))
}

/// Sends the CSR with the credential, naming the agent's cluster in `ClusterID` (as Istio's
/// agent does: the CA reviews a Kubernetes token at that cluster's API server); returns the
/// PEM chain (leaf first).
pub async fn request(
    channel: Channel,
    credential: &str,
    cluster: &str,
    csr: &str,
    ttl_secs: i64,
) -> Result<Vec<String>, tonic::Status> {
    let mut client = IstioCertificateServiceClient::new(channel);
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr: csr.to_string(),
        validity_duration: ttl_secs,
    });
    let value = format!("Bearer {}", credential.trim())
        .parse()
        .map_err(|_| {
            tonic::Status::invalid_argument("the credential has characters a header cannot carry")
        })?;
    req.metadata_mut().insert("authorization", value);
    if let Ok(cluster) = cluster.parse() {
        req.metadata_mut().insert("clusterid", cluster);
    }
    Ok(client
        .create_certificate(req)
        .await?
        .into_inner()
        .cert_chain)
}
