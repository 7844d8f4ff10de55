//! Mesh-wide settings: Istio's `istio` ConfigMap keys `mesh` (MeshConfig) and
//! `meshNetworks`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The part of MeshConfig that Isthmus reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// The SPIFFE trust domain; `cluster.local` by default.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Default for `exportTo`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_service_export_to: Vec<String>,
}

fn default_trust_domain() -> String {
    "cluster.local".to_string()
}

impl MeshConfig {
    /// Parses the `mesh` key of Istio's ConfigMap; empty text gives the defaults.
    pub fn parse(text: &str) -> Result<MeshConfig, String> {
        let parsed: Option<MeshConfig> = serde_saphyr::from_str(text).map_err(|e| {
            e.to_string()
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .to_string()
        })?;
        Ok(parsed.unwrap_or_default())
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            trust_domain: default_trust_domain(),
            default_service_export_to: Vec::new(),
        }
    }
}

/// `meshNetworks`: which endpoints are on which network, and each network's gateways.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshNetworks {
    /// Network name to its definition.
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
}

impl MeshNetworks {
    /// Parses the `meshNetworks` text in either of the forms users write: Istio's
    /// `networks: {...}` or the helm values form with the networks at the top level
    /// (seed 003).
    pub fn parse(text: &str) -> Result<MeshNetworks, String> {
        let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let value = match value {
            serde_json::Value::Null => return Ok(MeshNetworks::default()),
            serde_json::Value::Object(ref m) if m.contains_key("networks") => value,
            serde_json::Value::Object(ref m) if m.contains_key("meshNetworks") => {
                serde_json::json!({ "networks": m["meshNetworks"] })
            }
            other => serde_json::json!({ "networks": other }),
        };
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// A network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// How endpoints are recognised as being on this network.
    #[serde(default)]
    pub endpoints: Vec<NetworkEndpoints>,
    /// The gateways other networks use to reach it.
    #[serde(default)]
    pub gateways: Vec<NetworkGateway>,
}

/// One rule placing endpoints on a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkEndpoints {
    /// Every endpoint of this registry (cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_registry: Option<String>,
    /// Every endpoint in this CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_cidr: Option<String>,
}

/// A network gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkGateway {
    /// A fixed address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A service whose load-balancer address is the gateway's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_service_name: Option<String>,
    /// Port; 15443 by convention.
    #[serde(default = "default_gateway_port")]
    pub port: u32,
    /// Locality of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
}

fn default_gateway_port() -> u32 {
    15443
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_003_helm_form_and_istio_form() {
        let seed = "network2:\n  endpoints:\n  - fromRegistry: remote_kubecfg\n  gateways:\n  - address: 0.0.0.0\n    port: 15443\n";
        let n = MeshNetworks::parse(seed).expect("seed form");
        let net = &n.networks["network2"];
        assert_eq!(
            net.endpoints[0].from_registry.as_deref(),
            Some("remote_kubecfg")
        );
        assert_eq!(net.gateways[0].address.as_deref(), Some("0.0.0.0"));
        assert_eq!(net.gateways[0].port, 15443);
        let istio = format!(
            "networks:\n{}",
            seed.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        assert_eq!(MeshNetworks::parse(&istio).expect("istio form"), n);
    }
}
