//! Gateway server certificates from Kubernetes Secrets (Istio's `credentialName`): the
//! certificate chain and key of a Secret, and the CA client certificates are checked
//! against, in the keys Istio reads.

use isthmus_api::kube::Secret;
use std::fmt;

/// A gateway server's certificate, key and (for MUTUAL) client CA, as PEM bytes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TlsCredential {
    /// The certificate chain (`tls.crt` or `cert`).
    pub certificate_chain: Vec<u8>,
    /// The private key (`tls.key` or `key`).
    pub private_key: Vec<u8>,
    /// The CA client certificates must chain to (`ca.crt` or `cacert`), if the Secret has one.
    pub ca_certificates: Option<Vec<u8>>,
}

/// Never prints the key.
impl fmt::Debug for TlsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCredential")
            .field("certificate_chain", &self.certificate_chain.len())
            .field("private_key", &"[redacted]")
            .field(
                "ca_certificates",
                &self.ca_certificates.as_ref().map(Vec::len),
            )
            .finish()
    }
}

/// The suffix of the Secret that holds a MUTUAL server's client CA apart from its
/// certificate (Istio's `NAME-cacert`).
pub const CA_SECRET_SUFFIX: &str = "-cacert";

/// Why a Secret gives no credential. Never holds the Secret's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A key is missing.
    #[error("Secret has no `{0}` (or `{1}`)")]
    Missing(&'static str, &'static str),
    /// A value is not base64.
    #[error("`data.{0}` is not base64")]
    NotBase64(String),
    /// A value is not PEM.
    #[error("`{0}` is not PEM (no -----BEGIN line)")]
    NotPem(String),
}

/// The value of `key` in `secret` (`stringData` as written, `data` decoded), if present.
fn value(secret: &Secret, key: &str) -> Result<Option<Vec<u8>>, CredentialError> {
    use base64::Engine as _;
    if let Some(v) = secret.string_data.get(key) {
        return Ok(Some(v.as_bytes().to_vec()));
    }
    let Some(v) = secret.data.get(key) else {
        return Ok(None);
    };
    let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map(Some)
        .map_err(|_| CredentialError::NotBase64(key.to_string()))
}

/// The first of `keys` that `secret` has, checked to be PEM.
fn pem(secret: &Secret, keys: [&'static str; 2]) -> Result<Option<Vec<u8>>, CredentialError> {
    for key in keys {
        if let Some(v) = value(secret, key)? {
            if !v.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err(CredentialError::NotPem(key.to_string()));
            }
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The client CA a Secret holds (`ca.crt` or `cacert`), if any.
pub fn ca_of(secret: &Secret) -> Result<Option<Vec<u8>>, CredentialError> {
    pem(secret, ["ca.crt", "cacert"])
}

/// A server credential from a Secret: `tls.crt`/`tls.key` (type `kubernetes.io/tls`) or
/// `cert`/`key` (a generic Secret), and the CA if it holds one.
pub fn from_secret(secret: &Secret) -> Result<TlsCredential, CredentialError> {
    let certificate_chain =
        pem(secret, ["tls.crt", "cert"])?.ok_or(CredentialError::Missing("tls.crt", "cert"))?;
    let private_key =
        pem(secret, ["tls.key", "key"])?.ok_or(CredentialError::Missing("tls.key", "key"))?;
    Ok(TlsCredential {
        certificate_chain,
        private_key,
        ca_certificates: ca_of(secret)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nsecret-bytes\n-----END PRIVATE KEY-----\n";

    fn secret(data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Secret {
        let b64 = base64::engine::general_purpose::STANDARD;
        Secret {
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), b64.encode(v)))
                .collect(),
            string_data: string_data
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_tls_and_generic_secrets_and_their_ca() {
        let tls = from_secret(&secret(
            &[("tls.crt", CERT), ("tls.key", KEY), ("ca.crt", CERT)],
            &[],
        ))
        .expect("tls secret");
        assert_eq!(tls.certificate_chain, CERT.as_bytes());
        assert_eq!(tls.private_key, KEY.as_bytes());
        assert_eq!(tls.ca_certificates.as_deref(), Some(CERT.as_bytes()));
        let generic = from_secret(&secret(&[], &[("cert", CERT), ("key", KEY)])).expect("generic");
        assert_eq!(generic.ca_certificates, None);
        assert_eq!(generic.private_key, KEY.as_bytes());
    }

    #[test]
    fn errors_name_the_key_and_never_print_the_values() {
        assert_eq!(
            from_secret(&secret(&[("tls.crt", CERT)], &[])),
            Err(CredentialError::Missing("tls.key", "key"))
        );
        let mut s = secret(&[("tls.crt", CERT)], &[]);
        s.data.insert("tls.key".into(), "%%%".into());
        assert_eq!(
            from_secret(&s),
            Err(CredentialError::NotBase64("tls.key".into()))
        );
        let e = from_secret(&secret(
            &[("tls.crt", CERT), ("tls.key", "secret-bytes")],
            &[],
        ))
        .expect_err("not PEM");
        assert!(!e.to_string().contains("secret-bytes"), "{e}");
        let shown = format!(
            "{:?}",
            from_secret(&secret(&[("tls.crt", CERT), ("tls.key", KEY)], &[]))
        );
        assert!(
            !shown.contains("secret-bytes") && shown.contains("[redacted]"),
            "{shown}"
        );
    }
}
