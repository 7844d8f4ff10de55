//! Kubernetes service-account tokens, as Istio's CA and agents use them: an agent presents
//! a bound token for the audience `istio-ca` (what a kubelet projects into the pod), and
//! the CA asks the API server who it is with a TokenReview.

use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

/// The audience Istio's agents ask their tokens for and its CA reviews them with.
pub const ISTIO_CA_AUDIENCE: &str = "istio-ca";

/// The workload a token authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountName {
    /// Its namespace.
    pub namespace: String,
    /// Its service account.
    pub service_account: String,
}

/// A token was not accepted, or could not be made. The messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The API server says the token does not authenticate anyone (forged, expired, for
    /// a deleted pod, or signed by another cluster).
    #[error("the API server did not authenticate the token: {0}")]
    NotAuthenticated(String),
    /// The token is a user's, not a service account's.
    #[error("the token authenticates {0}, which is not a service account")]
    NotServiceAccount(String),
    /// The token is for other audiences.
    #[error("the token is not for the audience {ISTIO_CA_AUDIENCE} (it is for {0:?})")]
    WrongAudience(Vec<String>),
    /// The API server could not be asked.
    #[error("{what} at the API server failed: {source}")]
    Api {
        /// TokenReview or TokenRequest.
        what: &'static str,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// Asks the API server of `client` who `token` is, for the audience `istio-ca`.
pub async fn review(client: &kube::Client, token: &str) -> Result<ServiceAccountName, TokenError> {
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: Some(vec![ISTIO_CA_AUDIENCE.to_string()]),
        },
        ..Default::default()
    };
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .map_err(|source| TokenError::Api {
            what: "TokenReview",
            source,
        })?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(TokenError::NotAuthenticated(
            status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "no reason given".into()),
        ));
    }
    if let Some(aud) = status.audiences.filter(|a| !a.is_empty()) {
        if !aud.iter().any(|a| a == ISTIO_CA_AUDIENCE) {
            return Err(TokenError::WrongAudience(aud));
        }
    }
    let username = status.user.and_then(|u| u.username).unwrap_or_default();
    parse_service_account_user(&username).ok_or(TokenError::NotServiceAccount(username))
}

/// `system:serviceaccount:NAMESPACE:NAME`, the user name of a service account.
pub fn parse_service_account_user(username: &str) -> Option<ServiceAccountName> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, sa) = rest.split_once(':')?;
    if ns.is_empty() || sa.is_empty() || sa.contains(':') {
        return None;
    }
    Some(ServiceAccountName {
        namespace: ns.to_string(),
        service_account: sa.to_string(),
    })
}

/// The pod a token is bound to: the token stops working when the pod goes.
#[derive(Debug, Clone, Copy)]
pub struct BoundPod<'a> {
    /// Pod name.
    pub name: &'a str,
    /// Pod uid.
    pub uid: &'a str,
}

/// A token the TokenRequest API issued.
#[derive(Clone)]
pub struct IssuedToken {
    /// The token (empty if the API server answered without one).
    pub token: String,
    /// When it expires, in seconds since the epoch, as the API server says.
    pub expires: Option<i64>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("IssuedToken")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Asks the TokenRequest API for a token of `namespace`/`service_account` as `spec` says
/// (audiences, expiry, the object it is bound to).
pub async fn request_token(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
    spec: TokenRequestSpec,
) -> Result<IssuedToken, TokenError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(spec),
        ..Default::default()
    };
    let answer = accounts
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .map_err(|source| TokenError::Api {
            what: "TokenRequest",
            source,
        })?;
    let status = answer.status.unwrap_or_default();
    Ok(IssuedToken {
        token: status.token.unwrap_or_default(),
        expires: status.expiration_timestamp.map(|t| t.0.as_second()),
    })
}

/// Asks the API server for a token of `namespace`/`service_account` for the audience
/// `istio-ca`, valid `ttl_secs` and bound to `pod`, as a kubelet projects one into a pod.
pub async fn request(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
    pod: BoundPod<'_>,
    ttl_secs: i64,
) -> Result<String, TokenError> {
    let spec = TokenRequestSpec {
        audiences: Some(vec![ISTIO_CA_AUDIENCE.to_string()]),
        expiration_seconds: Some(ttl_secs),
        bound_object_ref: Some(BoundObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.to_string()),
            uid: Some(pod.uid.to_string()),
        }),
        ..Default::default()
    };
    Ok(request_token(client, namespace, service_account, spec)
        .await?
        .token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_user_names() {
        assert_eq!(
            parse_service_account_user("system:serviceaccount:foo:sleep"),
            Some(ServiceAccountName {
                namespace: "foo".into(),
                service_account: "sleep".into()
            })
        );
        for bad in [
            "system:serviceaccount:foo",
            "system:serviceaccount::sleep",
            "system:serviceaccount:foo:",
            "system:serviceaccount:foo:a:b",
            "admin",
            "system:node:lab",
        ] {
            assert_eq!(parse_service_account_user(bad), None, "{bad}");
        }
    }
}
