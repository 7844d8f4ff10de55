//! What the CA's gRPC tests share: a CA on a loopback port and the request an agent sends.
#![allow(dead_code)] // each test binary uses part of it

use isthmus_ca::grpc::istio_certificate_service_client::IstioCertificateServiceClient;
use isthmus_ca::proto::IstioCertificateRequest;
use isthmus_ca::{
    create_intermediate, create_root, Authority, CaService, CaStats, CredentialKey, TokenReviewer,
};
use std::sync::Arc;
use tonic::transport::Channel;

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

/// A CA served on a loopback port, with a client; its directory goes when it is dropped.
pub struct Ca {
    /// A client of it.
    pub client: IstioCertificateServiceClient<Channel>,
    /// The key its credentials are signed with.
    pub key: Arc<CredentialKey>,
    /// What it did.
    pub stats: Arc<CaStats>,
    dir: std::path::PathBuf,
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA (cluster2's intermediate under a fresh root) named `tag` for its directory.
pub async fn serve(tag: &str) -> Ca {
    serve_with(tag, None).await
}

/// [`serve`], reviewing Kubernetes tokens with `reviewer`.
pub async fn serve_with(tag: &str, reviewer: Option<Arc<dyn TokenReviewer>>) -> Ca {
    let dir = std::env::temp_dir().join(format!("isthmus-ca-grpc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    create_root(&dir.join("root")).expect("root");
    create_intermediate(&dir.join("root"), "cluster2", &dir.join("cacerts")).expect("intermediate");
    let authority = Arc::new(Authority::load(&dir.join("cacerts")).expect("load"));
    let key = Arc::new(CredentialKey::from_bytes(
        b"a test key of thirty-two bytes!!",
    ));
    let mut svc = CaService::new(authority, key.clone(), "cluster.local".into());
    if let Some(r) = reviewer {
        svc = svc.with_token_reviewer(r);
    }
    let stats = svc.stats();
    let svc = svc.into_service();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let client = IstioCertificateServiceClient::new(channel);
    Ca {
        client,
        key,
        stats,
        dir,
    }
}
