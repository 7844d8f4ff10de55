//! Istio's names for generated resources.

/// What an outbound cluster is for: one port of one service, all its endpoints or one
/// subset. Generation makes names from it (never the other way round): its `Display` is the
/// cluster name `outbound|PORT|SUBSET|HOST`, [`ClusterKey::sni`] the SNI.
/// It borrows its parts, so making one costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterKey<'a> {
    /// The service port.
    pub port: u32,
    /// The subset, empty for all endpoints.
    pub subset: &'a str,
    /// The service's host name.
    pub host: &'a str,
}

impl ClusterKey<'_> {
    /// The SNI sidecars send for this cluster: `outbound_.PORT_.SUBSET_.HOST`.
    pub fn sni(&self) -> String {
        sni(self.port, self.subset, self.host)
    }
}

impl std::fmt::Display for ClusterKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "outbound|{}|{}|{}", self.port, self.subset, self.host)
    }
}

/// `outbound|PORT|SUBSET|HOST`.
pub fn outbound_cluster(port: u32, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// `inbound|PORT||`.
pub fn inbound_cluster(port: u32) -> String {
    format!("inbound|{port}||")
}

/// The SNI sidecars send and gateways route by: `outbound_.PORT_.SUBSET_.HOST`; the gateway
/// uses the same string as its cluster name.
pub fn sni(port: u32, subset: &str, host: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{host}")
}

/// The virtual outbound (15001) listener.
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
/// The virtual inbound (15006) listener.
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
/// Forwards to the original destination.
pub const PASSTHROUGH: &str = "PassthroughCluster";
/// Drops traffic.
pub const BLACKHOLE: &str = "BlackHoleCluster";
/// Forwards inbound traffic to the original destination.
pub const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";

/// Istio's well-known ports.
pub mod ports {
    /// Outbound capture.
    pub const OUTBOUND: u32 = 15001;
    /// Inbound capture.
    pub const INBOUND: u32 = 15006;
    /// Envoy admin.
    pub const ADMIN: u32 = 15000;
    /// East-west gateway (AUTO_PASSTHROUGH).
    pub const EAST_WEST: u32 = 15443;
    /// xDS and CA over TLS.
    pub const XDS: u32 = 15012;
    /// Mesh DNS.
    pub const DNS: u32 = 15053;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_key_names_its_cluster_and_sni() {
        let k = ClusterKey {
            port: 8000,
            subset: "v1",
            host: "httpbin.bar.global",
        };
        assert_eq!(
            k.to_string(),
            outbound_cluster(8000, "v1", "httpbin.bar.global")
        );
        assert_eq!(k.to_string(), "outbound|8000|v1|httpbin.bar.global");
        assert_eq!(k.sni(), "outbound_.8000_.v1_.httpbin.bar.global");
    }

    #[test]
    fn names_are_istios() {
        assert_eq!(
            outbound_cluster(8000, "", "httpbin.bar.global"),
            "outbound|8000||httpbin.bar.global"
        );
        assert_eq!(
            sni(8000, "", "httpbin.bar.global"),
            "outbound_.8000_._.httpbin.bar.global"
        );
        assert_eq!(
            sni(80, "v2", "reviews.default.svc.cluster.local"),
            "outbound_.80_.v2_.reviews.default.svc.cluster.local"
        );
        assert_eq!(inbound_cluster(9080), "inbound|9080||");
    }
}
