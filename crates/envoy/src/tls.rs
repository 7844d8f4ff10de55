//! Mesh mTLS: certificates come from the agent over SDS (`default` and `ROOTCA`, the names
//! Istio uses), peers are checked against SPIFFE identities. Also the TLS a DestinationRule
//! originates to a service outside the mesh (SIMPLE, MUTUAL) with the files it names.

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
/// The ALPN Istio's clients offer first (metadata exchange; offered, never required).
pub const PEER_EXCHANGE_ALPN: &str = "istio-peer-exchange";

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
        // What a PERMISSIVE server tells mesh mTLS by (Istio's clients send the same).
        common_tls_context: Some(common(
            peer,
            vec![PEER_EXCHANGE_ALPN.to_string(), MESH_ALPN.to_string()],
        )),
        sni: sni.to_string(),
        ..Default::default()
    };
    tls_socket(any(&ctx))
}

/// The CA bundle a proxy checks external servers with when a rule names none (Debian's and
/// Istio's proxy image's system roots).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS a sidecar originates as a DestinationRule's `tls` says (SIMPLE, MUTUAL): the
/// certificate files it names, the server checked against `caCertificates` (the system's
/// roots when absent) and `subjectAltNames` unless `insecureSkipVerify`; the SNI is the
/// rule's, else `default_sni`.
pub fn upstream_originated(
    tls: &isthmus_api::networking::ClientTls,
    default_sni: &str,
) -> TransportSocket {
    use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::TlsCertificate;
    let file = |path: &str| DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    };
    let certificate = match (&tls.client_certificate, &tls.private_key) {
        (Some(cert), Some(key)) => vec![TlsCertificate {
            certificate_chain: Some(file(cert)),
            private_key: Some(file(key)),
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    let validation = (!tls.insecure_skip_verify).then(|| {
        common_tls_context::ValidationContextType::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(file(tls.ca_certificates.as_deref().unwrap_or(SYSTEM_ROOTS))),
            match_typed_subject_alt_names: tls
                .subject_alt_names
                .iter()
                .flat_map(|name| {
                    // A name may be a DNS name or a URI; either kind of SAN may carry it.
                    [SanType::Dns, SanType::Uri].map(|kind| SubjectAltNameMatcher {
                        san_type: kind as i32,
                        matcher: Some(StringMatcher {
                            match_pattern: Some(string_matcher::MatchPattern::Exact(name.clone())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                })
                .collect(),
            ..Default::default()
        })
    });
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: certificate,
            validation_context_type: validation,
            ..Default::default()
        }),
        sni: tls
            .sni
            .clone()
            .unwrap_or_else(|| default_sni.trim_start_matches("*.").to_string()),
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
