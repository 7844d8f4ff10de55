//! Every refusal at the CA is logged once, with its reason and the caller's address, and
//! never with the credential. (Its own test binary: the log is captured by a process-wide
//! subscriber, which no other test shares.)

mod common;
use common::{request, serve};
use isthmus_ca::{workload_csr, CredentialKey};
use std::sync::{Arc, Mutex};

/// Log lines written by the whole process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_refusal_is_logged_once_with_reason_and_peer_and_no_credential() {
    let log = Captured::default();
    let writer = log.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber of this test binary");

    let mut ca = serve("log").await;
    let key = ca.key.clone();

    let (csr, _key) = workload_csr("spiffe://cluster.local/ns/foo/sa/sleep").expect("csr");
    let forged =
        CredentialKey::from_bytes(b"another key, not the CA's own!!!").issue("foo", "sleep", 600);
    let token = key.issue("foo", "sleep", 600);
    let other = key.issue("bar", "httpbin", 600);
    for (req, what) in [
        (request(&csr, None), "no credential"),
        (request(&csr, Some(&forged)), "forged"),
        (request("not a CSR", Some(&token)), "garbage CSR"),
        (request(&csr, Some(&other)), "another identity"),
    ] {
        assert!(
            ca.client.create_certificate(req).await.is_err(),
            "{what} was granted"
        );
    }
    let text = log
        .0
        .lock()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    let refusals: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("refused certificate request"))
        .collect();
    assert_eq!(refusals.len(), 4, "one line per refusal:\n{text}");
    for (line, reason) in refusals.iter().zip([
        "no_credential",
        "bad_signature",
        "bad_csr",
        "identity_mismatch",
    ]) {
        assert!(line.contains(reason), "{reason}: {line}");
        assert!(line.contains("peer=127.0.0.1:"), "names the caller: {line}");
    }
    for secret in [&forged, &token, &other] {
        assert!(
            !text.contains(secret.as_str()),
            "a credential was logged:\n{text}"
        );
    }
}
