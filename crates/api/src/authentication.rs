//! `security.istio.io` RequestAuthentication (v1 and v1beta1), read strictly: which JWTs a
//! workload accepts. A token that is present must be valid (else 401); whether one is
//! required is the AuthorizationPolicy's `requestPrincipals`.

use crate::meta::ObjectMeta;
use crate::security::LabelSelector;
use serde::{Deserialize, Serialize};

/// A `RequestAuthentication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestAuthentication {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: RequestAuthenticationSpec,
}

/// `RequestAuthentication.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthenticationSpec {
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
    /// The issuers accepted.
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

/// One accepted issuer and how its tokens are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The `iss` a token must carry.
    #[serde(default)]
    pub issuer: String,
    /// Accepted `aud` values; any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the public keys (JWKS) are fetched, by the control plane.
    #[serde(default, alias = "jwks_uri", skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The public keys (a JWKS document) inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Headers the token may come in; `Authorization: Bearer` when none of the locations
    /// is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token may come in (`access_token` by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies the token may come in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// A header that gets the verified payload (base64url JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Keep the token in the forwarded request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_token: bool,
    /// Claims copied into request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// How long the control plane waits for the JWKS (5 s when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Claims whose space-separated string is read as a list (`scope` and `permission`
    /// always are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
}

/// Where a rule's keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource<'a> {
    /// A JWKS document given inline.
    Inline(&'a str),
    /// A `jwksUri` the control plane fetches.
    Uri(&'a str),
    /// Nothing given: the control plane reads `jwks_uri` from the issuer's OpenID
    /// configuration (`ISSUER/.well-known/openid-configuration`).
    Discover(&'a str),
}

/// A place the control plane fetches keys from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyLocation {
    /// A JWKS document at this URL.
    Uri(String),
    /// The issuer whose OpenID configuration names the JWKS URL.
    Discover(String),
}

impl std::fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyLocation::Uri(u) => f.write_str(u),
            KeyLocation::Discover(i) => write!(f, "{i}/.well-known/openid-configuration"),
        }
    }
}

impl KeySource<'_> {
    /// Where the control plane must fetch the keys; `None` when they are inline.
    pub fn location(&self) -> Option<KeyLocation> {
        match self {
            KeySource::Inline(_) => None,
            KeySource::Uri(u) => Some(KeyLocation::Uri(u.to_string())),
            KeySource::Discover(i) => Some(KeyLocation::Discover(i.to_string())),
        }
    }
}

impl JwtRule {
    /// Where this rule's keys come from (`jwks` wins over `jwksUri`, as in Istio).
    pub fn key_source(&self) -> KeySource<'_> {
        match (&self.jwks, &self.jwks_uri) {
            (Some(j), _) => KeySource::Inline(j),
            (None, Some(u)) => KeySource::Uri(u),
            (None, None) => KeySource::Discover(&self.issuer),
        }
    }
}

/// A header a token may come in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtHeader {
    /// The header name.
    pub name: String,
    /// A prefix before the token (such as `Bearer `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A claim copied into a header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    /// The header.
    pub header: String,
    /// The claim.
    pub claim: String,
}
