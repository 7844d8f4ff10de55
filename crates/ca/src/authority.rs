//! Roots, intermediates and leaf certificates, in the files Istio's `cacerts` secret holds:
//! `ca-cert.pem` (this cluster's intermediate), `ca-key.pem` (its key), `root-cert.pem`
//! (the shared root) and `cert-chain.pem` (intermediate then root).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Something went wrong creating or using a CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written. (The cause is in the message and not also a
    /// source, so that a chain printed whole says it once.)
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// Certificate machinery failed.
    #[error("{what}: {reason}")]
    Cert {
        /// What was being done.
        what: String,
        /// Why.
        reason: rcgen::Error,
    },
    /// `ca-key.pem` is not the key of `ca-cert.pem`: every certificate signed with it would
    /// fail to verify, so the CA does not start.
    #[error("{dir}: ca-key.pem is not the private key of ca-cert.pem (the files come from different CAs); certificates signed with it would be rejected by every proxy")]
    KeyMismatch {
        /// The `cacerts` directory.
        dir: PathBuf,
    },
    /// The CSR asks for an identity the credential does not grant.
    #[error("the CSR asks for {requested:?} but the credential grants only {granted}")]
    IdentityMismatch {
        /// Identities in the CSR.
        requested: Vec<String>,
        /// The identity of the credential.
        granted: String,
    },
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|reason| CaError::Io {
        path: path.to_path_buf(),
        reason,
    })
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), CaError> {
    let io = |reason| CaError::Io {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> CaError + '_ {
    move |reason| CaError::Cert {
        what: what.to_string(),
        reason,
    }
}

fn ca_params(cn: &str, years: i64, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Isthmus");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(365 * years);
    p
}

/// Creates the shared root in `dir`: `root-cert.pem` and `root-key.pem`.
pub fn create_root(dir: &Path) -> Result<(), CaError> {
    let key = KeyPair::generate().map_err(cert_err("generate root key"))?;
    let cert = ca_params("Isthmus Root CA", 10, None)
        .self_signed(&key)
        .map_err(cert_err("sign root"))?;
    write(&dir.join("root-cert.pem"), &cert.pem(), false)?;
    write(&dir.join("root-key.pem"), &key.serialize_pem(), true)?;
    Ok(())
}

/// Creates `cluster`'s intermediate CA in `out`, signed by the root in `root_dir`, with the
/// four `cacerts` files.
pub fn create_intermediate(root_dir: &Path, cluster: &str, out: &Path) -> Result<(), CaError> {
    let root_cert = read(&root_dir.join("root-cert.pem"))?;
    let root_key = KeyPair::from_pem(&read(&root_dir.join("root-key.pem"))?)
        .map_err(cert_err("read root key"))?;
    let issuer = Issuer::from_ca_cert_pem(&root_cert, root_key)
        .map_err(cert_err("read root certificate"))?;
    let key = KeyPair::generate().map_err(cert_err("generate intermediate key"))?;
    let cert = ca_params(&format!("Isthmus Intermediate CA {cluster}"), 5, Some(0))
        .signed_by(&key, &issuer)
        .map_err(cert_err("sign intermediate"))?;
    write(&out.join("ca-cert.pem"), &cert.pem(), false)?;
    write(&out.join("ca-key.pem"), &key.serialize_pem(), true)?;
    write(&out.join("root-cert.pem"), &root_cert, false)?;
    write(
        &out.join("cert-chain.pem"),
        &format!("{}{}", cert.pem(), root_cert),
        false,
    )?;
    Ok(())
}

/// A loaded intermediate CA that signs workload and server certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    chain: Vec<String>,
    root: String,
    expiry: Expiry,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("chain_len", &self.chain.len())
            .finish()
    }
}

/// Splits concatenated PEM certificates.
pub fn split_pem(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            cur.clear();
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Whether `key` is the private key of the certificate `cert_pem` (their public keys agree);
/// a certificate that does not parse is left to the caller to report.
fn key_matches(cert_pem: &str, key: &KeyPair) -> bool {
    use rcgen::PublicKeyData;
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
        return true;
    };
    let Ok(cert) = pem.parse_x509() else {
        return true;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.der_bytes()
}

/// When a CA's certificates expire (Unix seconds): what `citadel_server_*_expiry_timestamp`
/// report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The root certificate's `notAfter`.
    pub root: i64,
    /// The signing (intermediate) certificate's `notAfter`.
    pub signing: i64,
}

/// A PEM certificate's `notAfter` in Unix seconds, if it parses.
fn not_after(cert_pem: &str) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

impl Authority {
    /// When the root and the signing certificate expire (0 for one whose validity cannot be
    /// read).
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// Loads a `cacerts` directory; a key that is not the certificate's is an error.
    pub fn load(dir: &Path) -> Result<Authority, CaError> {
        let cert = read(&dir.join("ca-cert.pem"))?;
        let key = KeyPair::from_pem(&read(&dir.join("ca-key.pem"))?)
            .map_err(cert_err("read ca-key.pem"))?;
        let root = read(&dir.join("root-cert.pem"))?;
        let chain = split_pem(&read(&dir.join("cert-chain.pem"))?);
        if !key_matches(&cert, &key) {
            return Err(CaError::KeyMismatch {
                dir: dir.to_path_buf(),
            });
        }
        let expiry = Expiry {
            root: not_after(&root).unwrap_or_default(),
            signing: not_after(&cert).unwrap_or_default(),
        };
        let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(cert_err("read ca-cert.pem"))?;
        Ok(Authority {
            issuer,
            chain,
            root,
            expiry,
        })
    }

    /// The root certificate (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root
    }

    /// Signs a workload CSR for exactly `identity` (a SPIFFE URI). The CSR must ask for that
    /// identity and nothing else; its subject and other names are ignored.
    pub fn sign_workload(
        &self,
        csr_pem: &str,
        identity: &str,
        ttl: std::time::Duration,
    ) -> Result<Vec<String>, CaError> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(cert_err("parse CSR"))?;
        let requested: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|s| match s {
                SanType::URI(u) => u.as_str().to_string(),
                SanType::DnsName(d) => format!("DNS:{}", d.as_str()),
                other => format!("{other:?}"),
            })
            .collect();
        if requested.len() != 1 || requested[0] != identity {
            return Err(CaError::IdentityMismatch {
                requested,
                granted: identity.to_string(),
            });
        }
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(
            identity.try_into().map_err(cert_err("identity"))?,
        )];
        p.distinguished_name = DistinguishedName::new();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::minutes(1);
        p.not_after = now + Duration::seconds(ttl.as_secs().max(10) as i64);
        let cert = p
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(cert_err("sign workload certificate"))?;
        let mut chain = vec![cert.pem()];
        chain.extend(self.chain.iter().cloned());
        Ok(chain)
    }

    /// Makes a key and signs a workload certificate for `identity` in one step, for tools
    /// that hold the CA themselves (tests, benchmarks): (chain PEM, key PEM).
    pub fn issue_workload(
        &self,
        identity: &str,
        ttl: std::time::Duration,
    ) -> Result<(String, String), CaError> {
        let (csr, key) = workload_csr(identity)?;
        let chain = self.sign_workload(&csr, identity, ttl)?;
        Ok((chain.concat(), key))
    }

    /// Issues the control plane's serving certificate for `dns_names`: (chain PEM, key PEM).
    pub fn issue_server(&self, dns_names: &[String]) -> Result<(String, String), CaError> {
        let key = KeyPair::generate().map_err(cert_err("generate server key"))?;
        let mut p = CertificateParams::new(dns_names.to_vec()).map_err(cert_err("server names"))?;
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::minutes(1);
        p.not_after = now + Duration::days(365);
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(cert_err("sign server certificate"))?;
        Ok((
            format!("{}{}", cert.pem(), self.chain.concat()),
            key.serialize_pem(),
        ))
    }
}

/// Makes a key and a CSR for a SPIFFE identity: (CSR PEM, key PEM).
pub fn workload_csr(identity: &str) -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(cert_err("generate workload key"))?;
    let mut p = CertificateParams::default();
    p.subject_alt_names = vec![SanType::URI(
        identity.try_into().map_err(cert_err("identity"))?,
    )];
    p.distinguished_name = DistinguishedName::new();
    let csr = p.serialize_request(&key).map_err(cert_err("make CSR"))?;
    Ok((
        csr.pem().map_err(cert_err("encode CSR"))?,
        key.serialize_pem(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("isthmus-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_key_from_another_ca_is_refused_at_load() {
        let root = tmp("mismatch-root");
        let (c1, c2) = (tmp("mismatch-c1"), tmp("mismatch-c2"));
        create_root(&root).expect("root");
        create_intermediate(&root, "cluster1", &c1).expect("c1");
        create_intermediate(&root, "cluster2", &c2).expect("c2");
        std::fs::copy(c2.join("ca-key.pem"), c1.join("ca-key.pem")).expect("swap key");
        let err = Authority::load(&c1).expect_err("mismatched key");
        assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("ca-key.pem is not the private key of ca-cert.pem"));
        assert!(Authority::load(&c2).is_ok());
    }

    #[test]
    fn expiry_is_read_from_the_root_and_the_signing_certificate() {
        let root = tmp("expiry-root");
        let c1 = tmp("expiry-c1");
        create_root(&root).expect("root");
        create_intermediate(&root, "cluster1", &c1).expect("c1");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let e = Authority::load(&c1).expect("load").expiry();
        assert!(e.root > now + 364 * 86_400, "{e:?}");
        assert!(e.signing > now + 364 * 86_400, "{e:?}");
        assert!(
            e.signing <= e.root,
            "an intermediate outlives its root: {e:?}"
        );
    }

    #[test]
    fn root_intermediate_and_workload_chain() {
        let root = tmp("root");
        let c1 = tmp("c1");
        create_root(&root).expect("root");
        create_intermediate(&root, "cluster1", &c1).expect("intermediate");
        for f in [
            "ca-cert.pem",
            "ca-key.pem",
            "root-cert.pem",
            "cert-chain.pem",
        ] {
            assert!(c1.join(f).exists(), "{f}");
        }
        let ca = Authority::load(&c1).expect("load");
        let id = "spiffe://cluster.local/ns/foo/sa/sleep";
        let (csr, _key) = workload_csr(id).expect("csr");
        let chain = ca
            .sign_workload(&csr, id, std::time::Duration::from_secs(3600))
            .expect("sign");
        assert_eq!(chain.len(), 3, "leaf, intermediate, root");
        assert_eq!(chain[2].trim(), ca.root_pem().trim());
        let der = rustls_der(&chain[0]);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let san = cert.subject_alternative_name().expect("ext").expect("san");
        assert!(format!("{:?}", san.value.general_names).contains(id));
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&c1);
    }

    #[test]
    fn csr_for_another_identity_is_refused() {
        let root = tmp("root2");
        let c1 = tmp("c2");
        create_root(&root).expect("root");
        create_intermediate(&root, "cluster1", &c1).expect("intermediate");
        let ca = Authority::load(&c1).expect("load");
        let (csr, _) = workload_csr("spiffe://cluster.local/ns/bar/sa/httpbin").expect("csr");
        let err = ca
            .sign_workload(
                &csr,
                "spiffe://cluster.local/ns/foo/sa/sleep",
                std::time::Duration::from_secs(60),
            )
            .expect_err("must refuse");
        assert!(matches!(err, CaError::IdentityMismatch { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&c1);
    }

    fn rustls_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    }
}
