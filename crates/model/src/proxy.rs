//! The proxy asking for configuration: Istio's node id
//! `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local` plus the metadata the agent sends.

use std::collections::BTreeMap;
use std::fmt;

/// Sidecar or gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A pod's sidecar.
    Sidecar,
    /// A gateway (Istio calls it `router`).
    Router,
}

/// A parsed node id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// Sidecar or router.
    pub kind: NodeKind,
    /// The pod IP.
    pub ip: String,
    /// Pod name.
    pub pod: String,
    /// Namespace.
    pub namespace: String,
    /// DNS domain (`NAMESPACE.svc.cluster.local`).
    pub domain: String,
}

/// A node id that does not follow Istio's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Wrong shape.
    #[error("node id `{id}` is not TYPE~IP~POD.NAMESPACE~DOMAIN: {why}")]
    BadNodeId {
        /// The id.
        id: String,
        /// What is wrong.
        why: &'static str,
    },
}

impl NodeId {
    /// Parses `sidecar~10.0.0.1~sleep-1.foo~foo.svc.cluster.local`.
    pub fn parse(id: &str) -> Result<NodeId, ProxyError> {
        let bad = |why| ProxyError::BadNodeId {
            id: id.to_string(),
            why,
        };
        let parts: Vec<&str> = id.split('~').collect();
        if parts.len() != 4 {
            return Err(bad("expected four parts separated by ~"));
        }
        let kind = match parts[0] {
            "sidecar" => NodeKind::Sidecar,
            "router" => NodeKind::Router,
            _ => return Err(bad("type must be sidecar or router")),
        };
        if parts[1].parse::<std::net::IpAddr>().is_err() {
            return Err(bad("IP is not an IP address"));
        }
        let Some((pod, ns)) = parts[2].rsplit_once('.') else {
            return Err(bad("third part must be POD.NAMESPACE"));
        };
        if pod.is_empty() || ns.is_empty() {
            return Err(bad("pod and namespace must not be empty"));
        }
        Ok(NodeId {
            kind,
            ip: parts[1].to_string(),
            pod: pod.to_string(),
            namespace: ns.to_string(),
            domain: parts[3].to_string(),
        })
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NodeKind::Sidecar => "sidecar",
            NodeKind::Router => "router",
        };
        write!(
            f,
            "{kind}~{}~{}.{}~{}",
            self.ip, self.pod, self.namespace, self.domain
        )
    }
}

/// Everything generation needs to know about one proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Node id.
    pub id: NodeId,
    /// The cluster it runs in (metadata `CLUSTER_ID`).
    pub cluster: String,
    /// Its network (metadata `NETWORK`); the cluster's network when absent.
    pub network: String,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: String,
    /// `REDIRECT` (iptables capture, listeners not bound) or `NONE` (no capture: service
    /// listeners bind their VIP and port), as Istio's `INTERCEPTION_MODE`.
    pub interception: Interception,
    /// `sni-dnat` makes a router the network's east-west gateway (Istio's
    /// `ISTIO_META_ROUTER_MODE`).
    pub router_mode_sni_dnat: bool,
    /// Networks whose endpoints it reaches directly (Istio's `REQUESTED_NETWORK_VIEW`);
    /// empty means its own network. An egress gateway asking for `external` sees the
    /// endpoints a ServiceEntry puts on network `external`, which sidecars never reach.
    pub network_views: Vec<String>,
}

impl Proxy {
    /// True when an endpoint on `network` is reached directly, not through a gateway.
    pub fn reaches_directly(&self, network: &str) -> bool {
        if self.network_views.is_empty() {
            network.is_empty() || network == self.network
        } else if network.is_empty() {
            self.network_views.iter().any(|v| v == &self.network)
        } else {
            self.network_views.iter().any(|v| v == network)
        }
    }
}

/// How traffic reaches the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interception {
    /// iptables redirect to 15001/15006.
    Redirect,
    /// No capture: listeners bind real addresses.
    None,
}

impl Interception {
    /// Parses Istio's metadata value; unknown values mean REDIRECT.
    pub fn parse(s: &str) -> Interception {
        if s.eq_ignore_ascii_case("NONE") {
            Interception::None
        } else {
            Interception::Redirect
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_node_ids() {
        let n =
            NodeId::parse("sidecar~10.1.0.5~sleep-6f8.foo~foo.svc.cluster.local").expect("valid");
        assert_eq!(n.kind, NodeKind::Sidecar);
        assert_eq!(n.pod, "sleep-6f8");
        assert_eq!(n.namespace, "foo");
        assert_eq!(
            n.to_string(),
            "sidecar~10.1.0.5~sleep-6f8.foo~foo.svc.cluster.local"
        );
        assert!(NodeId::parse("router~x~a.b~c").is_err());
        assert!(NodeId::parse("sidecar~10.0.0.1~nopod~c").is_err());
        assert!(NodeId::parse("").is_err());
    }
}
