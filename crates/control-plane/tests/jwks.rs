//! The JWKS resolver against an HTTP server made in the test, on loopback: a `jwksUri` and
//! an issuer's OpenID configuration are fetched; every way a location can fail is an error
//! that says what failed (the snapshot then carries keys that verify nothing); a location is
//! fetched once, then served from memory, and forgotten when no rule names it.

use isthmus_api::authentication::KeyLocation;
use isthmus_control_plane::jwks::JwksResolver;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

/// Serves fixed answers by path; `/slow` never answers. Returns the base URL and a request
/// counter.
async fn serve() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let (b, c) = (base.clone(), count.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (base, count) = (b.clone(), c.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                count.fetch_add(1, Ordering::SeqCst);
                let (status, body) = match path.as_str() {
                    "/keys" => ("200 OK", JWKS.to_string()),
                    "/issuer/.well-known/openid-configuration" => (
                        "200 OK",
                        format!(r#"{{"issuer":"{base}/issuer","jwks_uri":"{base}/keys"}}"#),
                    ),
                    "/no-keys" => ("200 OK", r#"{"keys":[]}"#.to_string()),
                    "/html" => ("200 OK", "<html>login</html>".to_string()),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    _ => ("404 Not Found", "not here".to_string()),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (base, count)
}

fn wanted(locations: &[KeyLocation]) -> BTreeMap<KeyLocation, Duration> {
    locations
        .iter()
        .map(|l| (l.clone(), Duration::from_millis(500)))
        .collect()
}

#[tokio::test]
async fn keys_are_fetched_by_uri_and_by_discovery_and_failures_say_why() {
    let (base, _) = serve().await;
    let resolver = JwksResolver::new(Arc::new(Notify::new())).expect("client");
    let uri = KeyLocation::Uri(format!("{base}/keys"));
    let discover = KeyLocation::Discover(format!("{base}/issuer"));
    let missing = KeyLocation::Uri(format!("{base}/gone"));
    let empty = KeyLocation::Uri(format!("{base}/no-keys"));
    let html = KeyLocation::Uri(format!("{base}/html"));
    let slow = KeyLocation::Uri(format!("{base}/slow"));
    let refused = KeyLocation::Uri("http://127.0.0.1:1/keys".to_string());
    let all = [
        uri.clone(),
        discover.clone(),
        missing.clone(),
        empty.clone(),
        html.clone(),
        slow.clone(),
        refused.clone(),
    ];
    let started = std::time::Instant::now();
    let keys = resolver.resolve(&wanted(&all)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fetched together, each within its timeout: {:?}",
        started.elapsed()
    );
    let got = |l: &KeyLocation| {
        keys.by_location
            .get(l)
            .cloned()
            .expect("every location has a result")
    };
    let doc: serde_json::Value =
        serde_json::from_str(&got(&uri).expect("jwksUri fetched")).expect("json");
    assert_eq!(doc["keys"][0]["crv"], "P-256");
    assert!(
        got(&discover).is_ok(),
        "discovery follows jwks_uri: {:?}",
        got(&discover)
    );
    for (l, want) in [
        (&missing, "answered 404"),
        (&empty, "is not a JWKS document"),
        (&html, "is not JSON"),
        (&slow, "no answer within"),
        (&refused, "127.0.0.1:1"),
    ] {
        let e = got(l).expect_err("must fail");
        assert!(e.contains(want), "{l}: want {want:?} in {e:?}");
    }
}

#[tokio::test]
async fn a_location_is_fetched_once_and_forgotten_when_unused() {
    let (base, count) = serve().await;
    let resolver = JwksResolver::new(Arc::new(Notify::new())).expect("client");
    let uri = KeyLocation::Uri(format!("{base}/keys"));
    let first = resolver.resolve(&wanted(std::slice::from_ref(&uri))).await;
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let again = resolver.resolve(&wanted(std::slice::from_ref(&uri))).await;
    assert_eq!(first, again);
    assert_eq!(count.load(Ordering::SeqCst), 1, "served from memory");
    let none = resolver.resolve(&BTreeMap::new()).await;
    assert!(none.by_location.is_empty());
    resolver.resolve(&wanted(std::slice::from_ref(&uri))).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "forgotten, so fetched again"
    );
}
