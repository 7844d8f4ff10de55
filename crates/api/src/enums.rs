//! Istio's enumerations. Istio accepts them in any case (`protocol: http` in the seeds), so
//! do we; an unknown value is an error that lists the accepted ones.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! istio_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every accepted spelling, upper case.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            /// Istio's canonical upper-case spelling.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses any case, ignoring surrounding white space.
            pub fn parse(s: &str) -> Option<Self> {
                let up = s.trim().to_ascii_uppercase();
                match up.as_str() { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown {} `{}`, expected one of {}",
                        stringify!($name), s.trim(), $name::ALL.join(", ")
                    ))
                })
            }
        }
    };
}

istio_enum!(
    /// An Istio port protocol.
    Protocol {
        /// HTTP/1.1 (and HTTP/2 with prior knowledge).
        Http => "HTTP",
        /// HTTP over TLS originated by the application.
        Https => "HTTPS",
        /// HTTP/2.
        Http2 => "HTTP2",
        /// gRPC.
        Grpc => "GRPC",
        /// Raw TCP.
        Tcp => "TCP",
        /// TLS, routed by SNI.
        Tls => "TLS",
        /// MongoDB, treated as TCP.
        Mongo => "MONGO",
    }
);

impl Protocol {
    /// True when the sidecar handles the port with an HTTP connection manager.
    pub fn is_http(&self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }

    /// True when the upstream speaks HTTP/2 (gRPC, HTTP2): the sidecar's cluster to it
    /// uses HTTP/2, as Istio's `IsHTTP2`.
    pub fn is_http2(&self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    /// Guesses the protocol from a Kubernetes port name (`http`, `http-web`, `grpc-x`, `tcp`),
    /// as Istio does; unknown prefixes are TCP.
    pub fn from_port_name(name: &str) -> Protocol {
        Protocol::declared_by_port_name(name).unwrap_or(Protocol::Tcp)
    }

    /// The protocol a port name declares by its prefix, `None` when the prefix is not a
    /// protocol (`web`, `metrics`, no name): Istio sniffs such ports.
    pub fn declared_by_port_name(name: &str) -> Option<Protocol> {
        let prefix = name.split('-').next().unwrap_or_default();
        match Protocol::parse(prefix)? {
            Protocol::Https | Protocol::Tls => Some(Protocol::Tls),
            p => Some(p),
        }
    }
}

istio_enum!(
    /// ServiceEntry `location`.
    Location {
        /// Outside the mesh: no mTLS.
        MeshExternal => "MESH_EXTERNAL",
        /// Part of the mesh: mTLS with mesh identities.
        MeshInternal => "MESH_INTERNAL",
    }
);

istio_enum!(
    /// ServiceEntry `resolution`.
    Resolution {
        /// Forward to the original destination.
        None => "NONE",
        /// Endpoints are IP addresses.
        Static => "STATIC",
        /// Endpoints are names resolved by Envoy.
        Dns => "DNS",
        /// Names resolved by Envoy, one connection target at a time.
        DnsRoundRobin => "DNS_ROUND_ROBIN",
    }
);

istio_enum!(
    /// DestinationRule `trafficPolicy.tls.mode`.
    TlsMode {
        /// Plain text.
        Disable => "DISABLE",
        /// TLS originated to an external service.
        Simple => "SIMPLE",
        /// Mutual TLS with certificates given in the rule.
        Mutual => "MUTUAL",
        /// Mutual TLS with the mesh's certificates.
        IstioMutual => "ISTIO_MUTUAL",
    }
);

istio_enum!(
    /// DestinationRule `trafficPolicy.loadBalancer.simple`.
    SimpleLb {
        /// Envoy's default: round robin.
        Unspecified => "UNSPECIFIED",
        /// Pick any endpoint at random.
        Random => "RANDOM",
        /// Forward to the address the caller asked for (no load balancing).
        Passthrough => "PASSTHROUGH",
        /// Round robin.
        RoundRobin => "ROUND_ROBIN",
        /// The endpoint with fewer outstanding requests of two chosen at random.
        LeastRequest => "LEAST_REQUEST",
        /// Deprecated alias of LEAST_REQUEST.
        LeastConn => "LEAST_CONN",
    }
);

istio_enum!(
    /// Sidecar `outboundTrafficPolicy.mode`.
    OutboundTrafficMode {
        /// Calls to hosts the mesh does not know pass through (Istio's default).
        AllowAny => "ALLOW_ANY",
        /// Only hosts the mesh knows are reached; other calls are refused.
        RegistryOnly => "REGISTRY_ONLY",
    }
);

istio_enum!(
    /// DestinationRule `connectionPool.http.h2UpgradePolicy`.
    H2UpgradePolicy {
        /// The mesh default (no upgrade in Isthmus, as in Istio's default mesh config).
        Default => "DEFAULT",
        /// Keep HTTP/1.1 to the upstream.
        DoNotUpgrade => "DO_NOT_UPGRADE",
        /// Speak HTTP/2 to the upstream.
        Upgrade => "UPGRADE",
    }
);

istio_enum!(
    /// Gateway server `tls.mode`.
    ServerTlsMode {
        /// Forward TLS by SNI without terminating it.
        Passthrough => "PASSTHROUGH",
        /// Terminate TLS.
        Simple => "SIMPLE",
        /// Terminate TLS and require client certificates.
        Mutual => "MUTUAL",
        /// Forward mesh mTLS by the SNI Istio encodes (`outbound_.PORT_.SUBSET_.HOST`).
        AutoPassthrough => "AUTO_PASSTHROUGH",
        /// Terminate with mesh certificates.
        IstioMutual => "ISTIO_MUTUAL",
    }
);

istio_enum!(
    /// Peer authentication mode.
    MtlsMode {
        /// Inherit from the parent policy.
        Unset => "UNSET",
        /// Plain text only.
        Disable => "DISABLE",
        /// mTLS and plain text.
        Permissive => "PERMISSIVE",
        /// mTLS only.
        Strict => "STRICT",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_trailing_white_space() {
        assert_eq!(Protocol::parse("http"), Some(Protocol::Http));
        assert_eq!(Protocol::parse("HTTP\t"), Some(Protocol::Http));
        assert_eq!(Protocol::parse("smtp"), None);
        assert_eq!(Protocol::from_port_name("http-web"), Protocol::Http);
        assert_eq!(Protocol::from_port_name("tcp"), Protocol::Tcp);
        assert_eq!(Protocol::from_port_name("metrics"), Protocol::Tcp);
    }

    #[test]
    fn unknown_value_lists_accepted_ones() {
        let err = serde_json::from_str::<Resolution>("\"DNZ\"")
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("unknown Resolution `DNZ`"), "{err}");
        assert!(err.contains("NONE, STATIC, DNS"), "{err}");
    }
}
