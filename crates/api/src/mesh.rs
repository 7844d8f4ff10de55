//! Mesh-wide settings: Istio's `istio` ConfigMap keys `mesh` (MeshConfig) and
//! `meshNetworks`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The MeshConfig fields Isthmus enforces. Any other field Istio has (or a misspelt one) is
/// refused by name rather than read and ignored: a mesh-wide setting that silently does
/// nothing is the worst kind of lie.
pub const MESH_FIELDS: &[&str] = &[
    "trustDomain",
    "rootNamespace",
    "outboundTrafficPolicy",
    "localityLbSetting",
    "defaultServiceExportTo",
    "defaultVirtualServiceExportTo",
    "defaultDestinationRuleExportTo",
    "enableAutoMtls",
    "accessLogFile",
];

/// The part of MeshConfig that Isthmus enforces ([`MESH_FIELDS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshConfig {
    /// The SPIFFE trust domain; `cluster.local` by default.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// The namespace whose Sidecar and exported rules apply mesh-wide; only `istio-system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_namespace: Option<String>,
    /// What sidecars do with calls to hosts the mesh does not know, unless their Sidecar
    /// resource says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<MeshOutboundTrafficPolicy>,
    /// Locality load balancing for destinations whose DestinationRule does not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<crate::policy::LocalityLbSetting>,
    /// Default `exportTo` of Services and ServiceEntries without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_service_export_to: Vec<String>,
    /// Default `exportTo` of VirtualServices without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_virtual_service_export_to: Vec<String>,
    /// Default `exportTo` of DestinationRules without one: `*`, `.` or namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_destination_rule_export_to: Vec<String>,
    /// Automatic mutual TLS to meshed endpoints; Isthmus always does it (only `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_mtls: Option<bool>,
    /// Where proxies write access logs; Isthmus proxies log to `/dev/stdout` (only that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_file: Option<String>,
}

/// MeshConfig `outboundTrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshOutboundTrafficPolicy {
    /// `ALLOW_ANY` (Istio's default) or `REGISTRY_ONLY`.
    #[serde(default = "allow_any")]
    pub mode: crate::enums::OutboundTrafficMode,
}

fn allow_any() -> crate::enums::OutboundTrafficMode {
    crate::enums::OutboundTrafficMode::AllowAny
}

fn default_trust_domain() -> String {
    "cluster.local".to_string()
}

impl MeshConfig {
    /// Parses the `mesh` key of Istio's ConfigMap; empty text gives the defaults. A field
    /// outside [`MESH_FIELDS`] is an error naming it.
    pub fn parse(text: &str) -> Result<MeshConfig, String> {
        let first_line = |e: String| e.lines().next().unwrap_or("invalid YAML").to_string();
        let value: serde_json::Value =
            crate::yaml::from_str(text).map_err(|e| first_line(e.to_string()))?;
        let map = match value {
            serde_json::Value::Null => return Ok(MeshConfig::default()),
            serde_json::Value::Object(map) => map,
            _ => return Err("the mesh config is a map of MeshConfig fields".to_string()),
        };
        let refused: Vec<String> = map
            .keys()
            .filter(|k| !MESH_FIELDS.contains(&k.as_str()))
            .map(|k| format!("`{k}`"))
            .collect();
        if !refused.is_empty() {
            return Err(format!(
                "{} {} not supported by Isthmus; the mesh config is refused rather than applied without {} (Isthmus enforces {})",
                refused.join(", "),
                if refused.len() == 1 { "is" } else { "are" },
                if refused.len() == 1 { "it" } else { "them" },
                MESH_FIELDS.join(", ")
            ));
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| first_line(e.to_string()))
    }

    /// The mesh-wide outbound mode (`ALLOW_ANY` unless set).
    pub fn registry_only(&self) -> bool {
        self.outbound_traffic_policy
            .as_ref()
            .is_some_and(|o| o.mode == crate::enums::OutboundTrafficMode::RegistryOnly)
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            trust_domain: default_trust_domain(),
            root_namespace: None,
            outbound_traffic_policy: None,
            locality_lb_setting: None,
            default_service_export_to: Vec::new(),
            default_virtual_service_export_to: Vec::new(),
            default_destination_rule_export_to: Vec::new(),
            enable_auto_mtls: None,
            access_log_file: None,
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
        let value: serde_json::Value = crate::yaml::from_str(text).map_err(|e| e.to_string())?;
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
    fn mesh_config_reads_what_isthmus_enforces_and_refuses_the_rest_by_name() {
        let m = MeshConfig::parse("trustDomain: example.org\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}\nlocalityLbSetting: {failover: [{from: r1, to: r2}]}\ndefaultDestinationRuleExportTo: ['.']\n").expect("enforced fields parse");
        assert_eq!(m.trust_domain, "example.org");
        assert!(m.registry_only());
        assert_eq!(m.default_destination_rule_export_to, ["."]);
        let failover = m.locality_lb_setting.map(|l| l.failover.len());
        assert_eq!(failover, Some(1));
        assert_eq!(MeshConfig::parse("").expect("empty"), MeshConfig::default());
        assert!(!MeshConfig::default().registry_only());
        let e = MeshConfig::parse(
            "trustDomain: a\nenablePrometheusMerge: true\ndefaultConfig: {discoveryAddress: x}\n",
        )
        .expect_err("unenforced fields are refused");
        assert!(
            e.starts_with("`defaultConfig`, `enablePrometheusMerge` are not supported by Isthmus"),
            "{e}"
        );
        let e = MeshConfig::parse("trustDomian: a\n").expect_err("a misspelt field is refused");
        assert!(e.contains("`trustDomian` is not supported"), "{e}");
        let e = MeshConfig::parse("outboundTrafficPolicy: {mode: DENY}\n").expect_err("bad mode");
        assert!(e.contains("DENY"), "{e}");
    }

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
