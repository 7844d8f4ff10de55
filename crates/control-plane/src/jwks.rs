//! The RequestAuthentications' public keys, fetched by the control plane as istiod does
//! (its default, `PILOT_JWT_ENABLE_REMOTE_JWKS=false`): each `jwksUri` (or the `jwks_uri` of
//! the issuer's OpenID configuration) is fetched once when a rule first names it, within the
//! rule's `timeout`, and then again every [`REFRESH`] (every [`RETRY`] after a failure). The
//! documents go into the snapshot inline, so proxies never reach out for keys; a location
//! that cannot be read gives keys that verify no token (see `isthmus_envoy::jwt`).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use isthmus_api::authentication::KeyLocation;
use isthmus_model::policy::FetchedKeys;
use isthmus_model::SnapshotInput;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often a key set that was read is read again (Istio's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`).
pub const REFRESH: Duration = Duration::from_secs(20 * 60);
/// How soon a location that keeps failing is tried again (Istio's retry interval); the
/// first retries come sooner (1 s, then doubling), so that an issuer that was not up yet
/// when its rule arrived is read within seconds.
pub const RETRY: Duration = Duration::from_secs(60);
/// The fetch timeout when a rule gives none (Istio's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest document accepted.
const MAX_BODY: usize = 1 << 20;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// One location's last result.
#[derive(Debug, Clone)]
struct Entry {
    result: Result<String, String>,
    fetched: Instant,
    timeout: Duration,
    /// Failed fetches in a row.
    failures: u32,
}

impl Entry {
    /// When it is due again: [`REFRESH`] after a success, 1 s, 2 s, 4 s ... up to [`RETRY`]
    /// after failures.
    fn due_after(&self) -> Duration {
        if self.result.is_ok() {
            return REFRESH;
        }
        let backoff = Duration::from_secs(1u64 << self.failures.saturating_sub(1).min(6));
        backoff.min(RETRY)
    }
}

/// Fetches and keeps the key sets; shared by the build loop and the refresh task.
pub struct JwksResolver {
    client: HttpsClient,
    entries: Mutex<BTreeMap<KeyLocation, Entry>>,
    /// Woken when a refresh changed a key set, so that the build loop pushes it.
    changed: Arc<Notify>,
}

impl std::fmt::Debug for JwksResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwksResolver")
    }
}

/// Every key location the local cluster's RequestAuthentications name, with the longest
/// timeout a rule gives it.
pub fn wanted(input: &SnapshotInput) -> BTreeMap<KeyLocation, Duration> {
    let mut out = BTreeMap::new();
    for c in input
        .clusters
        .iter()
        .filter(|c| c.cluster == input.local_cluster)
    {
        for r in c.of_kind("RequestAuthentication") {
            let isthmus_api::Object::RequestAuthentication(ra) = &r.object else {
                continue;
            };
            for rule in &ra.spec.jwt_rules {
                let Some(at) = rule.key_source().location() else {
                    continue;
                };
                let timeout = rule
                    .timeout
                    .as_deref()
                    .and_then(isthmus_api::duration::parse)
                    .unwrap_or(DEFAULT_TIMEOUT);
                let t = out.entry(at).or_insert(timeout);
                *t = (*t).max(timeout);
            }
        }
    }
    out
}

impl JwksResolver {
    /// A resolver that trusts the system's roots for `https` (plain `http` works too, as
    /// Istio allows); `changed` is notified when a refresh changes a key set.
    pub fn new(changed: Arc<Notify>) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system root certificates: a jwksUri over https cannot be verified, only http works");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        Ok(JwksResolver {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
            entries: Mutex::new(BTreeMap::new()),
            changed,
        })
    }

    /// The key sets for `wanted`: locations not seen before are fetched now (together, each
    /// within its timeout); locations no rule names any more are forgotten.
    pub async fn resolve(&self, wanted: &BTreeMap<KeyLocation, Duration>) -> FetchedKeys {
        let new: Vec<(KeyLocation, Duration)> = {
            let mut entries = self.lock();
            entries.retain(|k, _| wanted.contains_key(k));
            wanted
                .iter()
                .filter(|(k, _)| !entries.contains_key(*k))
                .map(|(k, t)| (k.clone(), *t))
                .collect()
        };
        let fetched = futures::future::join_all(
            new.iter()
                .map(|(at, timeout)| fetch(&self.client, at, *timeout)),
        )
        .await;
        let mut entries = self.lock();
        for ((at, timeout), result) in new.into_iter().zip(fetched) {
            log_result(&at, &result, None);
            entries.insert(
                at,
                Entry {
                    failures: u32::from(result.is_err()),
                    result,
                    fetched: Instant::now(),
                    timeout,
                },
            );
        }
        // Timeouts may have changed with the rules.
        for (k, t) in wanted {
            if let Some(e) = entries.get_mut(k) {
                e.timeout = *t;
            }
        }
        current(&entries)
    }

    /// Fetches again what is due, forever; notifies `changed` when a key set changed.
    pub async fn refresh_forever(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let due: Vec<(KeyLocation, Duration)> = {
                let entries = self.lock();
                entries
                    .iter()
                    .filter(|(_, e)| e.fetched.elapsed() >= e.due_after())
                    .map(|(k, e)| (k.clone(), e.timeout))
                    .collect()
            };
            let mut changed = false;
            for (at, timeout) in due {
                let result = fetch(&self.client, &at, timeout).await;
                let mut entries = self.lock();
                let Some(e) = entries.get_mut(&at) else {
                    continue; // no rule names it any more
                };
                e.fetched = Instant::now();
                e.failures = if result.is_ok() { 0 } else { e.failures + 1 };
                if e.result == result {
                    continue;
                }
                if let (Err(error), Ok(_)) = (&result, &e.result) {
                    // A failed refresh keeps serving the keys last read, as istiod does:
                    // an issuer's brief outage must not fail every request.
                    tracing::warn!(location = %at, %error, "JWKS refresh failed: the keys last read stay in use");
                    continue;
                }
                log_result(&at, &result, Some(&e.result));
                e.result = result;
                changed = true;
            }
            if changed {
                self.changed.notify_one();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<KeyLocation, Entry>> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn current(entries: &BTreeMap<KeyLocation, Entry>) -> FetchedKeys {
    FetchedKeys {
        by_location: entries
            .iter()
            .map(|(k, e)| (k.clone(), e.result.clone()))
            .collect(),
    }
}

fn log_result(
    at: &KeyLocation,
    result: &Result<String, String>,
    before: Option<&Result<String, String>>,
) {
    match (result, before) {
        (Ok(_), None | Some(Err(_))) => tracing::info!(location = %at, "JWKS fetched"),
        (Ok(_), Some(Ok(_))) => tracing::info!(location = %at, "JWKS changed"),
        (Err(e), _) => tracing::warn!(
            location = %at,
            error = %e,
            "JWKS could not be fetched: tokens of this issuer are refused until it can"
        ),
    }
}

/// Fetches one location's key set: the JWKS document, checked to hold keys.
async fn fetch(
    client: &HttpsClient,
    at: &KeyLocation,
    timeout: Duration,
) -> Result<String, String> {
    let work = async {
        match at {
            KeyLocation::Uri(u) => get_jwks(client, u).await,
            KeyLocation::Discover(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc = get_json(client, &url).await?;
                let jwks_uri = doc
                    .get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("{url} names no jwks_uri"))?;
                get_jwks(client, jwks_uri).await
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

async fn get_jwks(client: &HttpsClient, url: &str) -> Result<String, String> {
    let doc = get_json(client, url).await?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .map(Vec::len)
        .unwrap_or(0);
    if keys == 0 {
        return Err(format!("{url} is not a JWKS document (no `keys`)"));
    }
    Ok(doc.to_string())
}

async fn get_json(client: &HttpsClient, url: &str) -> Result<serde_json::Value, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let response = client
        .get(uri)
        .await
        .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not JSON: {e}"))
}

/// An error with its causes, once each.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_locations_are_retried_soon_then_every_minute() {
        let entry = |result: Result<String, String>, failures| Entry {
            result,
            fetched: Instant::now(),
            timeout: DEFAULT_TIMEOUT,
            failures,
        };
        let failed = |n| entry(Err("down".into()), n).due_after();
        assert_eq!(failed(1), Duration::from_secs(1));
        assert_eq!(failed(2), Duration::from_secs(2));
        assert_eq!(failed(4), Duration::from_secs(8));
        assert_eq!(failed(7), RETRY);
        assert_eq!(failed(40), RETRY);
        assert_eq!(entry(Ok("{}".into()), 0).due_after(), REFRESH);
    }
}
