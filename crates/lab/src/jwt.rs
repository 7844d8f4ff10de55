//! Signing keys and tokens a scenario makes for itself, so that RequestAuthentication is
//! proven with keys no one else has: ES256 (ECDSA P-256, SHA-256) keys generated when the
//! scenario starts, their public halves as a JWKS document, and tokens signed with them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The key id of every key a scenario makes.
pub const KEY_ID: &str = "isthmus-scenario";

/// A scenario's `jwt:` section: keys by name, and tokens to make with them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// Names of keys to generate; `${JWKS_NAME}` is each one's public JWKS document.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Tokens by variable name: `${JWT_NAME}`.
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenSpec>,
}

/// One token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// The key it is signed with.
    pub key: String,
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`, when given.
    #[serde(default)]
    pub audience: Option<String>,
    /// Further claims.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// A generated signing key.
pub struct TestKey {
    kid: String,
    pair: EcdsaKeyPair,
}

/// Why keys or tokens could not be made.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The system's randomness or ring failed.
    #[error("generating an ES256 key: {0}")]
    Crypto(String),
    /// A token names a key the section does not list.
    #[error("token {token} is signed with key `{key}`, which `jwt.keys` does not list")]
    UnknownKey {
        /// The token's variable.
        token: String,
        /// The key it names.
        key: String,
    },
}

impl TestKey {
    /// A new P-256 key with key id `kid`.
    pub fn generate(kid: &str) -> Result<TestKey, JwtError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| JwtError::Crypto(e.to_string()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| JwtError::Crypto(e.to_string()))?;
        Ok(TestKey {
            kid: kid.to_string(),
            pair,
        })
    }

    /// The public key as a one-line JWKS document.
    pub fn jwks(&self) -> String {
        // An uncompressed point: 0x04, then x and y of 32 bytes each.
        let point = self.pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
        .to_string()
    }

    /// A compact JWS of `claims`, valid for an hour from now.
    pub fn sign(
        &self,
        mut claims: serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, JwtError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        claims.entry("iat").or_insert(now.into());
        claims.entry("exp").or_insert((now + 3600).into());
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::Value::Object(claims).to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|e| JwtError::Crypto(e.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

/// The variables a `jwt:` section defines: `JWKS_KEY` per key, `JWT_NAME` per token (names
/// upper-cased, `-` as `_`).
pub fn variables(spec: &JwtSpec) -> Result<Vec<(String, String)>, JwtError> {
    let var = |s: &str| s.to_ascii_uppercase().replace('-', "_");
    let mut keys = BTreeMap::new();
    let mut out = Vec::new();
    for name in &spec.keys {
        // One key id for every key: a token of another key then names a key id the JWKS
        // has, and is refused for its signature, not for a missing key.
        let key = TestKey::generate(KEY_ID)?;
        out.push((format!("JWKS_{}", var(name)), key.jwks()));
        keys.insert(name.clone(), key);
    }
    for (name, t) in &spec.tokens {
        let key = keys.get(&t.key).ok_or_else(|| JwtError::UnknownKey {
            token: name.clone(),
            key: t.key.clone(),
        })?;
        let mut claims = t.claims.clone();
        claims.insert("iss".into(), t.issuer.clone().into());
        claims.insert("sub".into(), t.subject.clone().into());
        if let Some(aud) = &t.audience {
            claims.insert("aud".into(), aud.clone().into());
        }
        out.push((format!("JWT_{}", var(name)), key.sign(claims)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn tokens_verify_with_their_own_jwks_and_not_with_another() {
        let good = TestKey::generate("good").expect("key");
        let other = TestKey::generate("other").expect("key");
        let token = good.sign(serde_json::Map::new()).expect("sign");
        let (input, sig) = token.rsplit_once('.').expect("three parts");
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64url");
        let public = |k: &TestKey| -> Vec<u8> {
            let doc: serde_json::Value = serde_json::from_str(&k.jwks()).expect("json");
            let jwk = &doc["keys"][0];
            let part = |n: &str| {
                URL_SAFE_NO_PAD
                    .decode(jwk[n].as_str().expect("coord"))
                    .expect("b64")
            };
            [vec![4u8], part("x"), part("y")].concat()
        };
        let verify = |k: &TestKey| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public(k))
                .verify(input.as_bytes(), &sig)
                .is_ok()
        };
        assert!(verify(&good), "the JWKS verifies its own key's tokens");
        assert!(!verify(&other), "another key's JWKS does not");
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').nth(1).expect("payload"))
                .expect("b64"),
        )
        .expect("json");
        assert!(claims["exp"].as_u64() > claims["iat"].as_u64());
    }

    #[test]
    fn a_token_needs_a_listed_key() {
        let mut spec = JwtSpec::default();
        spec.tokens.insert(
            "t".into(),
            TokenSpec {
                key: "nope".into(),
                issuer: "i".into(),
                subject: "s".into(),
                audience: None,
                claims: Default::default(),
            },
        );
        assert!(matches!(variables(&spec), Err(JwtError::UnknownKey { .. })));
    }
}
