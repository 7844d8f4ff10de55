//! Per-workload credentials. The control plane holds a secret key; a credential names one
//! namespace and service account, expires, and is signed with HMAC-SHA256. It plays the
//! part of the Kubernetes service-account token Istio's CA checks: a certificate request is
//! granted only for the identity its credential names, whatever the CSR claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A credential was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Not `PAYLOAD.SIGNATURE` or not base64/JSON.
    #[error("malformed credential")]
    Malformed,
    /// The signature does not match this control plane's key.
    #[error("credential signature is invalid (was it issued with this control plane's key?)")]
    BadSignature,
    /// Expired.
    #[error("credential expired")]
    Expired,
    /// The key file could not be read or written. (The cause is in the message and not
    /// also a source, so that a chain printed whole says it once.)
    #[error("credential key {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: std::io::Error,
    },
}

/// Who a credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadIdentity {
    /// Namespace.
    pub ns: String,
    /// Service account.
    pub sa: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// The signing key.
#[derive(Debug)]
pub struct CredentialKey {
    key: hmac::Key,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CredentialKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        CredentialKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// Reads the key file, creating it with 32 random bytes (mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> Result<Self, CredentialError> {
        if !path.exists() {
            Self::create(path)?;
        }
        Self::load(path)
    }

    /// Reads the key at `path`; a missing file is an error (issuing with a new key would
    /// give credentials no control plane accepts).
    pub fn load(path: &Path) -> Result<Self, CredentialError> {
        let text = std::fs::read_to_string(path).map_err(|reason| CredentialError::Io {
            path: path.display().to_string(),
            reason,
        })?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| CredentialError::Malformed)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Writes a new random key to `path` (mode 0600).
    fn create(path: &Path) -> Result<(), CredentialError> {
        let io = |reason| CredentialError::Io {
            path: path.display().to_string(),
            reason,
        };
        let rng = ring::rand::SystemRandom::new();
        let bytes: [u8; 32] = ring::rand::generate(&rng)
            .map_err(|_| io(std::io::Error::other("no randomness")))?
            .expose();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, URL_SAFE_NO_PAD.encode(bytes)).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        Ok(())
    }

    /// Issues a credential for `ns`/`sa` valid for `ttl_secs`.
    pub fn issue(&self, ns: &str, sa: &str, ttl_secs: u64) -> String {
        let id = WorkloadIdentity {
            ns: ns.into(),
            sa: sa.into(),
            exp: now() + ttl_secs,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&id).unwrap_or_default());
        let sig = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// Checks a credential and returns the identity it names.
    pub fn verify(&self, token: &str) -> Result<WorkloadIdentity, CredentialError> {
        let (payload, sig) = token
            .trim()
            .split_once('.')
            .ok_or(CredentialError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| CredentialError::Malformed)?;
        hmac::verify(&self.key, payload.as_bytes(), &sig)
            .map_err(|_| CredentialError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CredentialError::Malformed)?;
        let id: WorkloadIdentity =
            serde_json::from_slice(&json).map_err(|_| CredentialError::Malformed)?;
        if id.exp < now() {
            return Err(CredentialError::Expired);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_and_tamper() {
        let k = CredentialKey::from_bytes(b"0123456789abcdef0123456789abcdef");
        let t = k.issue("foo", "sleep", 60);
        let id = k.verify(&t).expect("valid");
        assert_eq!((id.ns.as_str(), id.sa.as_str()), ("foo", "sleep"));
        let other = CredentialKey::from_bytes(b"another key another key another k");
        assert!(matches!(
            other.verify(&t),
            Err(CredentialError::BadSignature)
        ));
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"ns":"bar","sa":"httpbin","exp":99999999999}"#),
            t.split_once('.').map(|x| x.1).unwrap_or_default()
        );
        assert!(matches!(
            k.verify(&forged),
            Err(CredentialError::BadSignature)
        ));
        assert!(matches!(
            k.verify("garbage"),
            Err(CredentialError::Malformed)
        ));
    }
}
