//! Mesh mTLS: certificates come from the agent over SDS (`default` and `ROOTCA`, the names
//! Istio uses), peers are checked against SPIFFE identities.

use crate::pb::*;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::CombinedCertificateValidationContext;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;

/// The SDS name of the workload certificate.
pub const SDS_DEFAULT: &str = "default";
/// The SDS name of the root certificate.
pub const SDS_ROOT: &str = "ROOTCA";
/// The bootstrap cluster that reaches the agent's SDS server.
pub const SDS_CLUSTER: &str = "sds-grpc";
/// ALPN the sidecar sends to mark mesh traffic.
pub const MESH_ALPN: &str = "istio";

/// The config source for secrets: the agent over gRPC.
pub fn sds_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::ApiConfigSource(ApiConfigSource {
            api_type: 2, // GRPC
            transport_api_version: 2,
            grpc_services: vec![GrpcService {
                target_specifier: Some(
                    envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier::EnvoyGrpc(
                        envoy_types::pb::envoy::config::core::v3::grpc_service::EnvoyGrpc {
                            cluster_name: SDS_CLUSTER.to_string(),
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }],
            set_node_on_first_message_only: true,
            ..Default::default()
        })),
        resource_api_version: 2,
        ..Default::default()
    }
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(sds_source()),
    }
}

/// How a peer's identity is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// One of these exact SPIFFE ids.
    Exact(Vec<String>),
    /// Any id in the trust domain (`spiffe://TD/` prefix).
    TrustDomain(String),
}

fn san_matchers(peer: &PeerIdentity) -> Vec<SubjectAltNameMatcher> {
    let m = |p: string_matcher::MatchPattern| SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(p),
            ..Default::default()
        }),
        ..Default::default()
    };
    match peer {
        PeerIdentity::Exact(ids) => ids
            .iter()
            .map(|id| m(string_matcher::MatchPattern::Exact(id.clone())))
            .collect(),
        PeerIdentity::TrustDomain(td) => vec![m(string_matcher::MatchPattern::Prefix(format!(
            "spiffe://{td}/"
        )))],
    }
}

fn common(peer: &PeerIdentity, alpn: Vec<String>) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(SDS_DEFAULT)],
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: san_matchers(peer),
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(SDS_ROOT)),
                    ..Default::default()
                },
            ),
        ),
        alpn_protocols: alpn,
        ..Default::default()
    }
}

/// Client side of mesh mTLS (ISTIO_MUTUAL) with the SNI the gateway routes by.
pub fn upstream_mtls(sni: &str, peer: &PeerIdentity) -> TransportSocket {
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(common(peer, vec![MESH_ALPN.to_string()])),
        sni: sni.to_string(),
        ..Default::default()
    };
    tls_socket(any(&ctx))
}

/// Server side of mesh mTLS: a client certificate from the mesh is required.
pub fn downstream_mtls(trust_domain: &str) -> TransportSocket {
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(common(
            &PeerIdentity::TrustDomain(trust_domain.to_string()),
            vec![],
        )),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    tls_socket(any(&ctx))
}

/// Wraps a packed TLS context as Envoy's TLS transport socket.
fn tls_socket(ctx: Any) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(
            envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                ctx,
            ),
        ),
    }
}
