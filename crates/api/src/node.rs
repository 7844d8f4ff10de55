//! What a proxy says about itself when it connects, as Istio's agents say it: the node id
//! `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local` and the node metadata keys
//! (`CLUSTER_ID`, `NETWORK`, `INTERCEPTION_MODE`, ...). The agent writes them and the
//! control plane reads them through these types only, so the format and the keys are
//! written once.

use std::collections::BTreeMap;
use std::fmt;

/// The metadata keys, as Istio names them.
pub mod keys {
    /// The cluster the proxy runs in.
    pub const CLUSTER_ID: &str = "CLUSTER_ID";
    /// Its network.
    pub const NETWORK: &str = "NETWORK";
    /// Its namespace.
    pub const NAMESPACE: &str = "NAMESPACE";
    /// How traffic reaches it: `REDIRECT` or `NONE`.
    pub const INTERCEPTION_MODE: &str = "INTERCEPTION_MODE";
    /// Its service account.
    pub const SERVICE_ACCOUNT: &str = "SERVICE_ACCOUNT";
    /// A gateway's mode: `sni-dnat` for a network's east-west gateway.
    pub const ROUTER_MODE: &str = "ROUTER_MODE";
    /// Its pod's labels, as a JSON object (used when the registry does not know the pod).
    pub const LABELS: &str = "LABELS";
    /// Networks whose endpoints it reaches directly, comma-separated.
    pub const REQUESTED_NETWORK_VIEW: &str = "REQUESTED_NETWORK_VIEW";
    /// `true` when its agent answers the pod's DNS (Istio's `ISTIO_META_DNS_CAPTURE`).
    pub const DNS_CAPTURE: &str = "DNS_CAPTURE";
}

/// Sidecar or gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum NodeKind {
    /// A pod's sidecar.
    #[default]
    Sidecar,
    /// A gateway (Istio calls it `router`).
    Router,
}

impl NodeKind {
    /// The node id's first part.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Sidecar => "sidecar",
            NodeKind::Router => "router",
        }
    }
}

/// How traffic reaches the proxy (Istio's `INTERCEPTION_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Interception {
    /// iptables redirect to 15001/15006.
    #[default]
    #[value(name = "REDIRECT")]
    Redirect,
    /// No capture: listeners bind real addresses.
    #[value(name = "NONE")]
    None,
}

impl Interception {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Interception::Redirect => "REDIRECT",
            Interception::None => "NONE",
        }
    }

    /// Reads a metadata value as Istio does: anything but `NONE` is a redirect.
    pub fn from_metadata(s: &str) -> Interception {
        if s.eq_ignore_ascii_case("NONE") {
            Interception::None
        } else {
            Interception::Redirect
        }
    }
}

/// A gateway's mode (Istio's `ROUTER_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum RouterMode {
    /// An ordinary gateway.
    #[default]
    Standard,
    /// A network's east-west gateway: AUTO_PASSTHROUGH on 15443, routing by SNI.
    SniDnat,
}

impl RouterMode {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            RouterMode::Standard => "standard",
            RouterMode::SniDnat => "sni-dnat",
        }
    }

    /// Reads a metadata value as Istio does: anything but `sni-dnat` is standard.
    pub fn from_metadata(s: &str) -> RouterMode {
        if s.eq_ignore_ascii_case("sni-dnat") {
            RouterMode::SniDnat
        } else {
            RouterMode::Standard
        }
    }
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
pub enum NodeIdError {
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
    /// The id an agent announces for a pod: its domain is `NAMESPACE.svc.cluster.local`.
    pub fn of_pod(kind: NodeKind, ip: &str, pod: &str, namespace: &str) -> NodeId {
        NodeId {
            kind,
            ip: ip.to_string(),
            pod: pod.to_string(),
            namespace: namespace.to_string(),
            domain: format!("{namespace}.svc.cluster.local"),
        }
    }

    /// Parses `sidecar~10.0.0.1~sleep-1.foo~foo.svc.cluster.local`.
    pub fn parse(id: &str) -> Result<NodeId, NodeIdError> {
        let bad = |why| NodeIdError::BadNodeId {
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
        write!(
            f,
            "{}~{}~{}.{}~{}",
            self.kind.as_str(),
            self.ip,
            self.pod,
            self.namespace,
            self.domain
        )
    }
}

/// The node metadata a proxy sends, typed. Keys it does not know are kept in `other` and
/// sent on as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMetadata {
    /// `CLUSTER_ID`.
    pub cluster_id: Option<String>,
    /// `NETWORK`.
    pub network: Option<String>,
    /// `NAMESPACE`.
    pub namespace: Option<String>,
    /// `INTERCEPTION_MODE` (REDIRECT when absent).
    pub interception: Interception,
    /// `SERVICE_ACCOUNT`.
    pub service_account: Option<String>,
    /// `ROUTER_MODE`, when sent.
    pub router_mode: Option<RouterMode>,
    /// `LABELS`.
    pub labels: BTreeMap<String, String>,
    /// `REQUESTED_NETWORK_VIEW`.
    pub requested_network_view: Vec<String>,
    /// `DNS_CAPTURE`: its agent answers the pod's DNS, so it can learn what the workload
    /// uses (on-demand scoping).
    pub dns_capture: bool,
    /// Any other key.
    pub other: BTreeMap<String, String>,
}

impl NodeMetadata {
    /// Reads string metadata (what the node's `metadata` struct holds); values that do not
    /// read (labels that are no JSON object) are left out.
    pub fn from_map<K: AsRef<str>, V: AsRef<str>>(
        map: impl IntoIterator<Item = (K, V)>,
    ) -> NodeMetadata {
        let mut md = NodeMetadata::default();
        for (k, v) in map {
            let (k, v) = (k.as_ref(), v.as_ref());
            match k {
                keys::CLUSTER_ID => md.cluster_id = Some(v.to_string()),
                keys::NETWORK => md.network = Some(v.to_string()),
                keys::NAMESPACE => md.namespace = Some(v.to_string()),
                keys::INTERCEPTION_MODE => md.interception = Interception::from_metadata(v),
                keys::SERVICE_ACCOUNT => md.service_account = Some(v.to_string()),
                keys::ROUTER_MODE => md.router_mode = Some(RouterMode::from_metadata(v)),
                keys::LABELS => md.labels = serde_json::from_str(v).unwrap_or_default(),
                keys::DNS_CAPTURE => md.dns_capture = v.eq_ignore_ascii_case("true"),
                keys::REQUESTED_NETWORK_VIEW => {
                    md.requested_network_view = v
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                _ => {
                    md.other.insert(k.to_string(), v.to_string());
                }
            }
        }
        md
    }

    /// The string metadata to send (what [`NodeMetadata::from_map`] reads back).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = self.other.clone();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        if let Some(v) = &self.cluster_id {
            put(keys::CLUSTER_ID, v.clone());
        }
        if let Some(v) = &self.network {
            put(keys::NETWORK, v.clone());
        }
        if let Some(v) = &self.namespace {
            put(keys::NAMESPACE, v.clone());
        }
        put(
            keys::INTERCEPTION_MODE,
            self.interception.as_str().to_string(),
        );
        if let Some(v) = &self.service_account {
            put(keys::SERVICE_ACCOUNT, v.clone());
        }
        if let Some(v) = self.router_mode {
            put(keys::ROUTER_MODE, v.as_str().to_string());
        }
        if !self.labels.is_empty() {
            put(
                keys::LABELS,
                serde_json::to_string(&self.labels).unwrap_or_default(),
            );
        }
        if !self.requested_network_view.is_empty() {
            put(
                keys::REQUESTED_NETWORK_VIEW,
                self.requested_network_view.join(","),
            );
        }
        if self.dns_capture {
            put(keys::DNS_CAPTURE, "true".to_string());
        }
        m
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
        assert_eq!(
            NodeId::of_pod(NodeKind::Sidecar, "10.1.0.5", "sleep-6f8", "foo"),
            n
        );
        assert!(NodeId::parse("router~x~a.b~c").is_err());
        assert!(NodeId::parse("sidecar~10.0.0.1~nopod~c").is_err());
        assert!(NodeId::parse("").is_err());
    }

    #[test]
    fn metadata_round_trips_and_keeps_unknown_keys() {
        let md = NodeMetadata {
            cluster_id: Some("cluster2".into()),
            network: Some("network2".into()),
            namespace: Some("istio-system".into()),
            interception: Interception::None,
            service_account: Some("gw".into()),
            router_mode: Some(RouterMode::SniDnat),
            labels: BTreeMap::from([("istio".into(), "eastwestgateway".into())]),
            requested_network_view: vec!["external".into(), "network2".into()],
            dns_capture: true,
            other: BTreeMap::from([("ISTIO_VERSION".into(), "1.40".into())]),
        };
        let map = md.to_map();
        assert_eq!(map["CLUSTER_ID"], "cluster2");
        assert_eq!(map["INTERCEPTION_MODE"], "NONE");
        assert_eq!(map["ROUTER_MODE"], "sni-dnat");
        assert_eq!(map["LABELS"], r#"{"istio":"eastwestgateway"}"#);
        assert_eq!(map["REQUESTED_NETWORK_VIEW"], "external,network2");
        assert_eq!(map["DNS_CAPTURE"], "true");
        assert_eq!(NodeMetadata::from_map(&map), md);
    }

    #[test]
    fn metadata_reads_values_as_istio_does() {
        let md = NodeMetadata::from_map([
            ("INTERCEPTION_MODE", "TPROXY"),
            ("ROUTER_MODE", "SNI-DNAT"),
            ("LABELS", "not json"),
            ("REQUESTED_NETWORK_VIEW", " a, ,b "),
        ]);
        assert_eq!(md.interception, Interception::Redirect);
        assert_eq!(md.router_mode, Some(RouterMode::SniDnat));
        assert!(md.labels.is_empty());
        assert_eq!(md.requested_network_view, ["a", "b"]);
        assert_eq!(
            NodeMetadata::from_map([("x", "y")]).interception,
            Interception::Redirect
        );
    }
}
