//! Peer authentication: `security.istio.io` PeerAuthentication and the older
//! `authentication.istio.io/v1alpha1` MeshPolicy / Policy that seed 002 uses.

use crate::enums::MtlsMode;
use crate::meta::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A `PeerAuthentication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerAuthentication {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: PeerAuthenticationSpec,
}

/// `PeerAuthentication.spec`, read strictly (a misspelt field is an error, never dropped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    /// Workloads it applies to; all in the namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<PeerMtls>,
    /// Per-port modes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_level_mtls: BTreeMap<String, PeerMtls>,
}

/// A workload selector (Istio's has `matchLabels` only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels to match.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// An mTLS mode setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerMtls {
    /// The mode; `UNSET` (inherit) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}

/// The v1alpha1 `MeshPolicy` (mesh-wide) or `Policy` (namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthnPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: AuthnPolicySpec,
}

/// `MeshPolicy.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthnPolicySpec {
    /// Peer methods; an `mtls` entry turns mTLS on (STRICT unless it says PERMISSIVE).
    #[serde(default)]
    pub peers: Vec<PeerMethod>,
    /// Services it targets (namespace Policy only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<serde_json::Value>,
}

/// A v1alpha1 peer method.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerMethod {
    /// mTLS settings; `mtls: {}` or `mtls: null` mean STRICT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Option<PeerMtls>>,
}

impl AuthnPolicySpec {
    /// The mode this policy sets: STRICT for a bare `mtls`, PERMISSIVE when it says so,
    /// DISABLE when it has no mTLS peer method.
    pub fn mode(&self) -> MtlsMode {
        for peer in &self.peers {
            if let Some(m) = &peer.mtls {
                return match m.as_ref().and_then(|m| m.mode) {
                    Some(MtlsMode::Permissive) => MtlsMode::Permissive,
                    _ => MtlsMode::Strict,
                };
            }
        }
        MtlsMode::Disable
    }
}
