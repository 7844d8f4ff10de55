//! The proxy asking for configuration: Istio's node id
//! `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local` plus the metadata the agent sends.

use std::collections::BTreeMap;

pub use isthmus_api::node::{Interception, NodeId, NodeIdError as ProxyError, NodeKind};

/// What a sidecar's workload has asked for (on-demand scoping): the names its pod resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Demand {
    /// Host names the workload resolved (lower case, without the final dot).
    pub names: std::collections::BTreeSet<String>,
    /// Whether every service of the proxy's own namespace is in scope from the start.
    pub namespace: bool,
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
    /// Its locality (`region/zone/subzone`, from its pod's topology labels; empty when
    /// unknown), which orders endpoints by nearness for locality failover.
    pub locality: String,
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
    /// What its workload asked for, when it is scoped on demand (see [`crate::demand`]);
    /// `None`: every service it may see.
    pub demand: Option<std::sync::Arc<Demand>>,
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
