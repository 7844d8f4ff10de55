//! `security.istio.io` AuthorizationPolicy (v1 and v1beta1), read strictly: a field this
//! type does not know is an error with its path, never dropped, because a policy that is
//! read wrong is enforced wrong.

use crate::meta::ObjectMeta;
use crate::security::LabelSelector;
use serde::{Deserialize, Serialize};

/// An `AuthorizationPolicy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: AuthorizationPolicySpec,
}

/// What a policy does with the requests its rules match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationAction {
    /// Only matched requests are allowed (once any ALLOW policy applies to a workload).
    #[default]
    Allow,
    /// Matched requests are denied.
    Deny,
    /// Matched requests are logged as audited; nothing is decided.
    Audit,
    /// An external authorizer decides (not supported by Isthmus).
    Custom,
}

impl AuthorizationAction {
    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationAction::Allow => "ALLOW",
            AuthorizationAction::Deny => "DENY",
            AuthorizationAction::Audit => "AUDIT",
            AuthorizationAction::Custom => "CUSTOM",
        }
    }
}

/// `AuthorizationPolicy.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// Workloads it applies to; every workload of its namespace (of the mesh, in the root
    /// namespace) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Gateway API attachment (refused: Isthmus runs no waypoints or Gateway API gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<serde_json::Value>,
    /// Gateway API attachments (refused, as `targetRef`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<serde_json::Value>,
    /// ALLOW when absent.
    #[serde(default)]
    pub action: AuthorizationAction,
    /// The external authorizer of a CUSTOM policy (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<serde_json::Value>,
    /// The rules; a request matches the policy when it matches any rule. None (or an empty
    /// list) matches nothing: an ALLOW policy without rules denies everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// One rule: it matches when every part that is present matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Sources: any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    /// Operations: any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
    /// Conditions: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// `rules[].from[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source.
    #[serde(default)]
    pub source: Option<Source>,
}

/// `rules[].to[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation.
    #[serde(default)]
    pub operation: Option<Operation>,
}

/// Who sends the request: every field present must match (a field matches when any of its
/// values does; a `not` field when none does).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities (`cluster.local/ns/foo/sa/sleep`), `*`-prefix/suffix patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Peer identities that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// JWT principals (`iss/sub` of a token a RequestAuthentication verified).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// JWT principals that must not match (refused, as `requestPrincipals`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// The peer's namespace (from its identity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Service accounts, `NAMESPACE/NAME` (from the peer's identity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// Service accounts that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// The connection's peer address (IP or CIDR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// Peer addresses that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// The original client address (X-Forwarded-For aware).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    /// Original client addresses that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
}

/// What the request does: every field present must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// Host header values (HTTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Hosts that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Ports that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// HTTP methods (HTTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Methods that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// URL paths without the query (HTTP only), `*`-prefix/suffix patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Paths that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// `rules[].when[]`: an attribute and the values it may (or must not) have.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute, such as `request.headers[x-token]` or `source.ip`.
    pub key: String,
    /// Values, any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values none of which may match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// What a `when` key reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `request.headers[NAME]` (HTTP only).
    RequestHeader(String),
    /// `source.ip`: the connection's peer address.
    SourceIp,
    /// `remote.ip`: the original client address.
    RemoteIp,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.principal`.
    SourcePrincipal,
    /// `source.serviceAccount` (`NAMESPACE/NAME`).
    SourceServiceAccount,
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
    /// `request.auth.principal`: the verified JWT's `iss/sub` (HTTP only).
    RequestPrincipal,
    /// `request.auth.audiences`: its `aud` (HTTP only).
    RequestAudiences,
    /// `request.auth.presenter`: its `azp` (HTTP only).
    RequestPresenter,
    /// `request.auth.claims[NAME]` (or `[NAME][NESTED]...`): a claim by path (HTTP only).
    RequestClaim(Vec<String>),
}

impl ConditionKey {
    /// Reads a key; the error says why it cannot be enforced.
    pub fn parse(key: &str) -> Result<ConditionKey, String> {
        if let Some(rest) = key.strip_prefix("request.headers[") {
            let name = rest.strip_suffix(']').unwrap_or_default();
            if name.is_empty() {
                return Err(format!("`{key}`: a header key is `request.headers[NAME]`"));
            }
            return Ok(ConditionKey::RequestHeader(name.to_ascii_lowercase()));
        }
        Ok(match key {
            "source.ip" => ConditionKey::SourceIp,
            "remote.ip" => ConditionKey::RemoteIp,
            "source.namespace" => ConditionKey::SourceNamespace,
            "source.principal" => ConditionKey::SourcePrincipal,
            "source.serviceAccount" => ConditionKey::SourceServiceAccount,
            "destination.ip" => ConditionKey::DestinationIp,
            "destination.port" => ConditionKey::DestinationPort,
            "connection.sni" => ConditionKey::ConnectionSni,
            "request.auth.principal" => ConditionKey::RequestPrincipal,
            "request.auth.audiences" => ConditionKey::RequestAudiences,
            "request.auth.presenter" => ConditionKey::RequestPresenter,
            k if k.starts_with("request.auth.claims[") => {
                let mut path = Vec::new();
                let mut rest = &k["request.auth.claims".len()..];
                while let Some(inner) = rest.strip_prefix('[') {
                    let Some((name, after)) = inner.split_once(']') else {
                        break;
                    };
                    path.push(name.to_string());
                    rest = after;
                }
                if path.is_empty() || path.iter().any(String::is_empty) || !rest.is_empty() {
                    return Err(format!(
                        "`{k}`: a claim key is `request.auth.claims[NAME]` (or `[NAME][NESTED]`)"
                    ));
                }
                ConditionKey::RequestClaim(path)
            }
            k if k.starts_with("request.auth.") => {
                return Err(format!("unknown condition key `{k}`"))
            }
            k if k.starts_with("experimental.") => {
                return Err(format!("`{k}` is not supported by Isthmus"))
            }
            k => return Err(format!("unknown condition key `{k}`")),
        })
    }

    /// Whether only HTTP requests carry it.
    pub fn is_http_only(&self) -> bool {
        matches!(
            self,
            ConditionKey::RequestHeader(_)
                | ConditionKey::RequestPrincipal
                | ConditionKey::RequestAudiences
                | ConditionKey::RequestPresenter
                | ConditionKey::RequestClaim(_)
        )
    }
}
