//! The SDS server Envoy reads its certificates from: `default` (the workload certificate
//! and key) and `ROOTCA` (the mesh root). A new certificate is pushed on every open stream.

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use envoy_types::pb::google::protobuf::Any;
use futures::{Stream, StreamExt};
use prost::{Message, Name};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The key material served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Material {
    /// Leaf then intermediates (PEM).
    pub chain: String,
    /// Private key (PEM).
    pub key: String,
    /// Root (PEM).
    pub root: String,
    /// Increases on every rotation.
    pub generation: u64,
}

/// The SDS service.
#[derive(Debug, Clone)]
pub struct SdsServer {
    material: watch::Receiver<Arc<Material>>,
}

impl SdsServer {
    /// Serves what `material` holds, following its changes.
    pub fn new(material: watch::Receiver<Arc<Material>>) -> Self {
        SdsServer { material }
    }

    /// The tonic service.
    pub fn into_service(self) -> SecretDiscoveryServiceServer<SdsServer> {
        SecretDiscoveryServiceServer::new(self)
    }
}

fn inline(s: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(s.as_bytes().to_vec())),
        ..Default::default()
    })
}

/// The secret called `name`, if it is one this agent serves.
pub fn secret(name: &str, m: &Material) -> Option<Secret> {
    let r#type = match name {
        "default" => secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&m.chain),
            private_key: inline(&m.key),
            ..Default::default()
        }),
        "ROOTCA" => secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: inline(&m.root),
            ..Default::default()
        }),
        _ => return None,
    };
    Some(Secret {
        name: name.to_string(),
        r#type: Some(r#type),
    })
}

fn response(names: &[String], m: &Material, nonce: u64) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: m.generation.to_string(),
        resources: names
            .iter()
            .filter_map(|n| secret(n, m))
            .map(|s| Any {
                type_url: Secret::type_url(),
                value: s.encode_to_vec(),
            })
            .collect(),
        type_url: Secret::type_url(),
        nonce: nonce.to_string(),
        ..Default::default()
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SecretDiscoveryService for SdsServer {
    type DeltaSecretsStream = BoxStream<DeltaDiscoveryResponse>;
    type StreamSecretsStream = BoxStream<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        _: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "this agent serves SDS as state of the world",
        ))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let mut input = request.into_inner();
        let mut material = self.material.clone();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut names: Vec<String> = Vec::new();
            let mut nonce = 0u64;
            loop {
                tokio::select! {
                    req = input.next() => {
                        let Some(Ok(req)) = req else { return };
                        if let Some(err) = &req.error_detail {
                            tracing::warn!(error = %err.message, "Envoy rejected a secret");
                        }
                        let mut wanted = req.resource_names.clone();
                        wanted.sort();
                        if wanted != names || req.response_nonce.is_empty() {
                            names = wanted;
                            nonce += 1;
                            let m = material.borrow_and_update().clone();
                            if tx.send(Ok(response(&names, &m, nonce))).await.is_err() { return }
                        }
                    }
                    changed = material.changed() => {
                        if changed.is_err() { return }
                        let m = material.borrow_and_update().clone();
                        nonce += 1;
                        tracing::info!(generation = m.generation, "pushing rotated certificate to Envoy");
                        if tx.send(Ok(response(&names, &m, nonce))).await.is_err() { return }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let m = self.material.borrow().clone();
        Ok(Response::new(response(
            &request.into_inner().resource_names,
            &m,
            1,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;

    fn material(generation: u64) -> Arc<Material> {
        Arc::new(Material {
            chain: format!("CHAIN-{generation}"),
            key: format!("KEY-{generation}"),
            root: "ROOT".into(),
            generation,
        })
    }

    fn decode(r: &DiscoveryResponse) -> Vec<Secret> {
        r.resources
            .iter()
            .map(|a| Secret::decode(a.value.as_slice()).expect("a Secret"))
            .collect()
    }

    fn chain_of(s: &Secret) -> Vec<u8> {
        match &s.r#type {
            Some(secret::Type::TlsCertificate(t)) => match &t.certificate_chain {
                Some(DataSource {
                    specifier: Some(data_source::Specifier::InlineBytes(b)),
                    ..
                }) => b.clone(),
                other => panic!("chain not inline: {other:?}"),
            },
            other => panic!("not a certificate: {other:?}"),
        }
    }

    #[test]
    fn serves_default_and_rootca_only() {
        let m = material(1);
        assert!(matches!(
            secret("default", &m).and_then(|s| s.r#type),
            Some(secret::Type::TlsCertificate(_))
        ));
        assert!(matches!(
            secret("ROOTCA", &m).and_then(|s| s.r#type),
            Some(secret::Type::ValidationContext(_))
        ));
        assert!(secret("file-cert:/etc/x", &m).is_none());
    }

    async fn next(s: &mut Streaming<DiscoveryResponse>) -> DiscoveryResponse {
        tokio::time::timeout(std::time::Duration::from_secs(5), s.next())
            .await
            .expect("answer within 5 s")
            .expect("open")
            .expect("ok")
    }

    #[tokio::test]
    async fn stream_answers_requests_and_pushes_rotation() {
        let (tx, rx) = watch::channel(material(1));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SdsServer::new(rx).into_service())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut client = SecretDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (req_tx, req_rx) = mpsc::channel(4);
        let mut stream = client
            .stream_secrets(ReceiverStream::new(req_rx))
            .await
            .expect("stream")
            .into_inner();
        req_tx
            .send(DiscoveryRequest {
                resource_names: vec!["default".into()],
                type_url: Secret::type_url(),
                ..Default::default()
            })
            .await
            .expect("send");
        let first = next(&mut stream).await;
        let secrets = decode(&first);
        assert_eq!(secrets.len(), 1);
        assert_eq!(chain_of(&secrets[0]), b"CHAIN-1");
        assert_eq!(first.version_info, "1");

        // ACK: nothing new is sent.
        req_tx
            .send(DiscoveryRequest {
                resource_names: vec!["default".into()],
                type_url: Secret::type_url(),
                response_nonce: first.nonce.clone(),
                version_info: "1".into(),
                ..Default::default()
            })
            .await
            .expect("ack");
        let quiet =
            tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await;
        assert!(quiet.is_err(), "an ACK must not be answered: {quiet:?}");

        // Rotation: the new certificate is pushed on the open stream.
        tx.send(material(2)).expect("rotate");
        let second = next(&mut stream).await;
        assert_eq!(second.version_info, "2");
        assert_eq!(chain_of(&decode(&second)[0]), b"CHAIN-2");
        assert_ne!(second.nonce, first.nonce);
    }
}
