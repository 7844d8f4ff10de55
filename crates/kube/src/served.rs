//! Which version of a custom kind an API server serves.
//!
//! Isthmus watches Istio's kinds at `v1`, which Istio's CRDs serve since 1.22; a cluster
//! whose CRDs are older serves the same kinds at `v1beta1` or `v1alpha3` only. Every served
//! version of an Istio kind has the same schema, so such a kind is watched at the version
//! the cluster serves rather than taken for absent: an AuthorizationPolicy served at
//! `v1beta1` only, read as "no policies", would be a hole.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup;
use kube::discovery::ApiResource;
use std::time::Duration;

/// The version of `api`'s kind to read: `api` itself when its version serves the kind, else
/// the group's preferred version, then its other versions as the API server lists them;
/// `None` when no version serves the kind (its CRD is not installed). An API server that
/// has not answered within `within` is an error ([`kube::Error::Service`]), as one that
/// fails: unknown, never taken for "not served".
pub async fn served(
    client: &kube::Client,
    api: &ApiResource,
    within: Duration,
) -> Result<Option<ApiResource>, kube::Error> {
    // The requests boxed: a discovery is rare, and its future in line would take its room
    // (~2 KB) in the future of every task that may ask, for as long as the task lives.
    tokio::time::timeout(within, Box::pin(ask(client, api)))
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::Service(
                format!("no answer within {within:?}").into(),
            ))
        })
}

/// [`served`], without a bound.
async fn ask(client: &kube::Client, api: &ApiResource) -> Result<Option<ApiResource>, kube::Error> {
    let request = http::Request::get(format!("/apis/{}", api.group))
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let group: APIGroup = match client.request(request).await {
        Ok(group) => group,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    for version in candidates(&group, &api.version) {
        let api_version = format!("{}/{version}", api.group);
        let resources = match client.list_api_group_resources(&api_version).await {
            Ok(resources) => resources,
            // Gone between the two requests.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e),
        };
        if resources.resources.iter().any(|r| r.name == api.plural) {
            return Ok(Some(ApiResource {
                version,
                api_version,
                ..api.clone()
            }));
        }
    }
    Ok(None)
}

/// The versions of `group` to look for a kind in: `wanted` first, then the preferred
/// version, then the rest in the API server's order, each once.
fn candidates(group: &APIGroup, wanted: &str) -> Vec<String> {
    let listed = group.versions.iter().map(|v| v.version.as_str());
    let preferred = group.preferred_version.as_ref().map(|v| v.version.as_str());
    let mut out: Vec<String> = Vec::new();
    for v in std::iter::once(wanted).chain(preferred).chain(listed) {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::GroupVersionForDiscovery;

    fn version(v: &str) -> GroupVersionForDiscovery {
        GroupVersionForDiscovery {
            group_version: format!("security.istio.io/{v}"),
            version: v.into(),
        }
    }

    #[tokio::test]
    async fn an_api_server_that_does_not_answer_is_an_error_not_an_absent_kind() {
        // Accepts the connection and never answers (loopback only).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                held.push(c);
            }
        });
        let config = kube::Config::new(url.parse().expect("a URL"));
        let client = kube::Client::try_from(config).expect("a client");
        let api = ApiResource {
            group: "security.istio.io".into(),
            version: "v1".into(),
            api_version: "security.istio.io/v1".into(),
            kind: "AuthorizationPolicy".into(),
            plural: "authorizationpolicies".into(),
        };
        let asked = served(&client, &api, Duration::from_millis(300)).await;
        silent.abort();
        match asked {
            Err(kube::Error::Service(e)) => {
                assert!(e.to_string().contains("no answer within 300ms"), "{e}")
            }
            other => panic!("a silent API server gave {other:?}"),
        }
    }

    #[test]
    fn the_wanted_version_comes_first_then_the_preferred_then_the_rest_once_each() {
        let group = APIGroup {
            name: "security.istio.io".into(),
            preferred_version: Some(version("v1beta1")),
            versions: vec![version("v1beta1"), version("v1alpha1"), version("v1")],
            ..Default::default()
        };
        assert_eq!(candidates(&group, "v1"), ["v1", "v1beta1", "v1alpha1"]);
        let old = APIGroup {
            preferred_version: None,
            versions: vec![version("v1alpha3")],
            ..group
        };
        assert_eq!(candidates(&old, "v1"), ["v1", "v1alpha3"]);
    }
}
