//! What the control plane learnt by probing: the gateways that do not answer. Their
//! endpoints are sent UNHEALTHY, so proxies stop choosing them (Envoy still uses every
//! endpoint when too few are healthy: its panic threshold).

use std::collections::BTreeSet;

/// The gateways (address, port) found down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayHealth {
    /// Down gateways.
    pub down: BTreeSet<(String, u32)>,
}

impl GatewayHealth {
    /// Whether `address:port` is a gateway found down.
    pub fn is_down(&self, address: &str, port: u32) -> bool {
        !self.down.is_empty() && self.down.contains(&(address.to_string(), port))
    }
}
