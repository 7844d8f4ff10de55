//! Who is at the other end of a stream, and whether it may have the configuration it asks
//! for. Every ADS stream must come with a workload certificate from the mesh CA, and the
//! proxy's node id must name the namespace and service account that certificate was
//! issued for (Istio's rule, `pilot/pkg/xds/authentication.go`): a proxy is sent only the
//! configuration of the workload it can prove it is.

use std::fmt;
use std::net::SocketAddr;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

/// A SPIFFE identity as Istio writes it: `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    /// The trust domain (`cluster.local` by default).
    pub trust_domain: String,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The Kubernetes service account.
    pub service_account: String,
}

impl SpiffeId {
    /// Reads an Istio workload identity; anything else (another path shape, an empty part)
    /// is `None`.
    pub fn parse(uri: &str) -> Option<SpiffeId> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let (td, ns_key, ns, sa_key, sa) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() || ns_key != "ns" || sa_key != "sa" {
            return None;
        }
        if td.is_empty() || ns.is_empty() || sa.is_empty() {
            return None;
        }
        Some(SpiffeId {
            trust_domain: td.to_string(),
            namespace: ns.to_string(),
            service_account: sa.to_string(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// What the connection tells about the client. The TLS layer has already checked any
/// certificate against the mesh root; this only reads what it names.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The client's address, when the transport knows it.
    pub addr: Option<SocketAddr>,
    /// Whether the client presented a certificate at all.
    pub presented_certificate: bool,
    /// The SPIFFE URIs of the client's leaf certificate (usually one).
    pub uris: Vec<String>,
}

impl Peer {
    /// Reads the peer of a request served by tonic's transport (TLS or plain TCP).
    pub fn of_request<B>(req: &http::Request<B>) -> Peer {
        let ext = req.extensions();
        if let Some(tls) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
            let certs = tls.peer_certs();
            let leaf = certs.as_ref().and_then(|c| c.first());
            return Peer {
                addr: tls.get_ref().remote_addr(),
                presented_certificate: leaf.is_some(),
                uris: leaf.map(|c| uri_sans(c.as_ref())).unwrap_or_default(),
            };
        }
        Peer {
            addr: ext
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr),
            presented_certificate: false,
            uris: Vec::new(),
        }
    }

    /// The address for log lines (`unknown` when the transport did not say).
    pub fn addr_text(&self) -> String {
        self.addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// The URI subject alternative names of a DER certificate; none when it does not parse.
fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No client certificate: the connection is good only for the CA.
    #[error("no client certificate: xDS needs the workload certificate the mesh CA issued to this proxy")]
    NoCertificate,
    /// A certificate without an Istio workload identity.
    #[error("the client certificate names no workload identity (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT); it has {uris:?}")]
    NoIdentity {
        /// The URIs it does have.
        uris: Vec<String>,
    },
    /// The identity is from another trust domain.
    #[error(
        "the certificate's identity {identity} is not in this mesh's trust domain {trust_domain}"
    )]
    ForeignTrustDomain {
        /// The identity.
        identity: String,
        /// This mesh's.
        trust_domain: String,
    },
    /// The node claims a workload the certificate was not issued for.
    #[error(
        "node {node} runs as {namespace}/{service_account}, but its certificate is for {identity}"
    )]
    Mismatch {
        /// The node id.
        node: String,
        /// The namespace the node claims.
        namespace: String,
        /// The service account the node's workload runs as.
        service_account: String,
        /// The certificate's identity.
        identity: String,
    },
}

impl Refusal {
    /// The gRPC status Istio answers with: no credential is UNAUTHENTICATED, a credential
    /// for someone else is PERMISSION_DENIED.
    pub fn status(&self) -> Status {
        match self {
            Refusal::NoCertificate | Refusal::NoIdentity { .. } => {
                Status::unauthenticated(self.to_string())
            }
            Refusal::ForeignTrustDomain { .. } | Refusal::Mismatch { .. } => {
                Status::permission_denied(self.to_string())
            }
        }
    }
}

/// What a proxy claims to be: its node id, its namespace and the service account its
/// workload runs as (the registry's, else its metadata's).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The node id, for messages.
    pub node: &'a str,
    /// The namespace in the node id.
    pub namespace: &'a str,
    /// The service account.
    pub service_account: &'a str,
}

/// Checks that `peer` holds a workload certificate of `trust_domain` for exactly the
/// namespace and service account of `claim`; returns the identity that matched.
pub fn authorize(peer: &Peer, trust_domain: &str, claim: Claim<'_>) -> Result<SpiffeId, Refusal> {
    if !peer.presented_certificate {
        return Err(Refusal::NoCertificate);
    }
    let ids: Vec<SpiffeId> = peer
        .uris
        .iter()
        .filter_map(|u| SpiffeId::parse(u))
        .collect();
    if ids.is_empty() {
        return Err(Refusal::NoIdentity {
            uris: peer.uris.clone(),
        });
    }
    let ours: Vec<&SpiffeId> = ids
        .iter()
        .filter(|i| i.trust_domain == trust_domain)
        .collect();
    let Some(first) = ours.first() else {
        return Err(Refusal::ForeignTrustDomain {
            identity: ids[0].to_string(),
            trust_domain: trust_domain.to_string(),
        });
    };
    ours.iter()
        .find(|i| i.namespace == claim.namespace && i.service_account == claim.service_account)
        .map(|i| (*i).clone())
        .ok_or_else(|| Refusal::Mismatch {
            node: claim.node.to_string(),
            namespace: claim.namespace.to_string(),
            service_account: claim.service_account.to_string(),
            identity: first.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uris: &[&str]) -> Peer {
        Peer {
            addr: Some("10.0.0.9:40000".parse().expect("addr")),
            presented_certificate: true,
            uris: uris.iter().map(|u| u.to_string()).collect(),
        }
    }

    const NODE: &str = "sidecar~10.0.0.9~sleep-1.foo~foo.svc.cluster.local";

    fn claim<'a>(ns: &'a str, sa: &'a str) -> Claim<'a> {
        Claim {
            node: NODE,
            namespace: ns,
            service_account: sa,
        }
    }

    #[test]
    fn spiffe_ids_parse_only_in_istios_shape() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/foo/sa/sleep").expect("valid");
        assert_eq!(
            (
                id.trust_domain.as_str(),
                id.namespace.as_str(),
                id.service_account.as_str()
            ),
            ("cluster.local", "foo", "sleep")
        );
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/foo/sa/sleep");
        for bad in [
            "spiffe://cluster.local/ns/foo",
            "spiffe://cluster.local/ns/foo/sa/sleep/extra",
            "spiffe://cluster.local/sa/foo/ns/sleep",
            "spiffe:///ns/foo/sa/sleep",
            "spiffe://cluster.local/ns//sa/sleep",
            "https://cluster.local/ns/foo/sa/sleep",
        ] {
            assert_eq!(SpiffeId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_certificate_must_name_the_nodes_namespace_and_account() {
        let ok = authorize(
            &peer(&["spiffe://cluster.local/ns/foo/sa/sleep"]),
            "cluster.local",
            claim("foo", "sleep"),
        )
        .expect("matches");
        assert_eq!(ok.service_account, "sleep");

        let other_ns = authorize(
            &peer(&["spiffe://cluster.local/ns/bar/sa/sleep"]),
            "cluster.local",
            claim("foo", "sleep"),
        )
        .expect_err("another namespace");
        assert_eq!(other_ns.status().code(), tonic::Code::PermissionDenied);
        let text = other_ns.to_string();
        assert!(
            text.contains(NODE) && text.contains("spiffe://cluster.local/ns/bar/sa/sleep"),
            "{text}"
        );

        let other_sa = authorize(
            &peer(&["spiffe://cluster.local/ns/foo/sa/httpbin"]),
            "cluster.local",
            claim("foo", "sleep"),
        );
        assert!(matches!(other_sa, Err(Refusal::Mismatch { .. })));
    }

    #[test]
    fn no_certificate_no_identity_and_other_trust_domains_are_refused() {
        let none = authorize(&Peer::default(), "cluster.local", claim("foo", "sleep"))
            .expect_err("no certificate");
        assert_eq!(none, Refusal::NoCertificate);
        assert_eq!(none.status().code(), tonic::Code::Unauthenticated);

        let server = authorize(&peer(&[]), "cluster.local", claim("foo", "sleep"))
            .expect_err("a certificate without a SPIFFE URI");
        assert!(matches!(server, Refusal::NoIdentity { .. }));

        let foreign = authorize(
            &peer(&["spiffe://other.example/ns/foo/sa/sleep"]),
            "cluster.local",
            claim("foo", "sleep"),
        )
        .expect_err("another mesh");
        assert_eq!(foreign.status().code(), tonic::Code::PermissionDenied);
        assert!(foreign.to_string().contains("other.example"));
    }

    #[test]
    fn a_request_without_transport_info_has_no_certificate() {
        let req = http::Request::new(());
        let p = Peer::of_request(&req);
        assert!(!p.presented_certificate);
        assert_eq!(p.addr_text(), "unknown");
    }
}
