//! RequestAuthentications as Envoy's `jwt_authn` filter, as Istio builds it
//! (pilot/pkg/security/authn/policy_applier.go): one provider per JWT rule that selects the
//! workload, named `origins-N` after sorting by issuer; keys inline (the control plane fetched
//! any `jwksUri`); the verified payload stored in the filter's dynamic metadata under
//! `payload`, where the RBAC filters read `request.auth.*` and `requestPrincipals`.
//!
//! One requirement covers every path: any provider's token, or none at all. A request
//! without a token passes (an AuthorizationPolicy decides whether one is needed: 403 there),
//! a request whose token does not verify is refused here with 401, as in Istio.

use crate::pb::*;
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider, jwt_requirement, requirement_rule, JwtClaimToHeader, JwtHeader, JwtProvider,
    JwtRequirement, JwtRequirementAndList, JwtRequirementOrList, RequirementRule,
};
use isthmus_api::authentication::{JwtRule, KeySource};
use isthmus_model::{MeshSnapshot, Proxy};

/// The filter's name, also the dynamic metadata namespace of the payloads it verified.
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
/// The metadata key each provider writes the verified payload under (Istio's).
pub const PAYLOAD_KEY: &str = "payload";
const JWT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";

/// Keys that verify no token: an RSA public key whose private key was never kept. A rule
/// whose keys could not be fetched gets these, so its tokens are refused (401) instead of
/// let through, as istiod does.
pub const KEYS_THAT_VERIFY_NOTHING: &str = r#"{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"isthmus-no-keys","e":"AQAB","n":"Z6AO8EgXZXeWSwIA219fy5UgEdzdVx1qoaJD0MAjqfrgccL9xhhRTuQoTICGeXhgILs0amlvvf4E5AzBJjMyfhbH900h7nEa1fAltq6oL1oZL05Wus55v0WCmbNBIbsmZw094wtvnFu55FqZlm18O518fDQrFr7fvyK5m7dTiBHJknk1mS8V8CNBy8LkEc9INcubJ_HpcG1kTyLHdC0zjXRjN7UJUNsT-jvHS47ls8joZ0W5rtR_9ag72GSSt6YedjhRO8uD7vA0F9IGMzbRR3FSa6kBEyuA5i_YSfX4_mC15DjoUuTzziShv0yjQpqFYdiX_hVV0sheR5RHin5euw"}]}"#;

/// `JwtAuthentication` with its providers in name order (the generated type keeps them in
/// a `HashMap`, whose order changes from one encoding to the next).
#[derive(Clone, PartialEq, prost::Message)]
struct SortedJwtAuthentication {
    #[prost(message, repeated, tag = "1")]
    providers: Vec<ProviderEntry>,
    #[prost(message, repeated, tag = "2")]
    rules: Vec<RequirementRule>,
    #[prost(bool, tag = "4")]
    bypass_cors_preflight: bool,
}

/// One entry of the `providers` map, as a map entry is on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct ProviderEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<JwtProvider>,
}

/// The `jwt_authn` filter for `proxy`, to go ahead of its RBAC filters; `None` when no
/// RequestAuthentication selects it.
pub fn http_filter(snapshot: &MeshSnapshot, proxy: &Proxy) -> Option<HttpFilter> {
    let rules = snapshot
        .request_authn
        .rules_for(&proxy.id.namespace, &proxy.labels);
    if rules.is_empty() {
        return None;
    }
    let providers: Vec<ProviderEntry> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| ProviderEntry {
            key: provider_name(i),
            value: Some(provider(snapshot, r)),
        })
        .collect();
    let config = SortedJwtAuthentication {
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(requirement_rule::RequirementType::Requires(requirement(
                providers.len(),
            ))),
        }],
        providers,
        bypass_cors_preflight: true,
    };
    Some(HttpFilter {
        name: JWT_FILTER.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: JWT_TYPE.into(),
            value: prost::Message::encode_to_vec(&config),
        })),
        ..Default::default()
    })
}

/// Istio's provider names.
fn provider_name(i: usize) -> String {
    format!("origins-{i}")
}

fn provider(snapshot: &MeshSnapshot, r: &JwtRule) -> JwtProvider {
    let jwks = match r.key_source() {
        KeySource::Inline(doc) => doc.to_string(),
        source => source
            .location()
            .and_then(|at| snapshot.jwks.by_location.get(&at))
            .and_then(|fetched| fetched.as_ref().ok())
            .cloned()
            .unwrap_or_else(|| KEYS_THAT_VERIFY_NOTHING.to_string()),
    };
    let mut claims: Vec<String> = r.space_delimited_claims.clone();
    claims.extend(["permission".to_string(), "scope".to_string()]);
    claims.sort();
    claims.dedup();
    JwtProvider {
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        forward: r.forward_original_token,
        from_headers: r
            .from_headers
            .iter()
            .map(|h| JwtHeader {
                name: h.name.clone(),
                value_prefix: h.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        from_params: r.from_params.clone(),
        from_cookies: r.from_cookies.clone(),
        forward_payload_header: r.output_payload_to_header.clone().unwrap_or_default(),
        payload_in_metadata: PAYLOAD_KEY.into(),
        normalize_payload_in_metadata: Some(jwt_provider::NormalizePayload {
            space_delimited_claims: claims,
        }),
        claim_to_headers: r
            .output_claim_to_headers
            .iter()
            .map(|c| JwtClaimToHeader {
                header_name: c.header.clone(),
                claim_name: c.claim.clone(),
                ..Default::default()
            })
            .collect(),
        jwks_source_specifier: Some(jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(jwks)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn by_provider(i: usize) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::ProviderName(provider_name(
            i,
        ))),
    }
}

fn allow_missing() -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::AllowMissing(
            envoy_types::pb::google::protobuf::Empty {},
        )),
    }
}

fn any_of(requirements: Vec<JwtRequirement>) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::RequiresAny(
            JwtRequirementOrList { requirements },
        )),
    }
}

/// Istio's requirement: with one provider, its token or none; with several, any provider's
/// token, or every present token valid (a token no provider accepts fails).
fn requirement(providers: usize) -> JwtRequirement {
    if providers == 1 {
        return any_of(vec![by_provider(0), allow_missing()]);
    }
    let mut alternatives: Vec<JwtRequirement> = (0..providers).map(by_provider).collect();
    alternatives.push(JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::RequiresAll(
            JwtRequirementAndList {
                requirements: (0..providers)
                    .map(|i| any_of(vec![by_provider(i), allow_missing()]))
                    .collect(),
            },
        )),
    });
    any_of(alternatives)
}

/// The filter's configuration as text, its providers in name order; `None` for other types.
pub fn describe(type_url: &str, bytes: &[u8]) -> Option<String> {
    use prost::Message;
    (type_url == JWT_TYPE)
        .then(|| SortedJwtAuthentication::decode(bytes).ok())
        .flatten()
        .map(|m| format!("{m:#?}"))
}
