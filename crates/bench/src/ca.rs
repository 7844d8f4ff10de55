//! CA throughput: workload certificates signed per second (parse and check the CSR, build
//! and sign an ECDSA P-256 certificate) beside the raw ECDSA P-256 signing rate of `ring`
//! on the same machine.

use std::time::{Duration, Instant};

/// Results.
#[derive(Debug, Clone)]
pub struct CaReport {
    /// Certificates signed.
    pub certificates: u32,
    /// Wall time signing them.
    pub sign_time: Duration,
    /// Raw signatures made.
    pub signatures: u32,
    /// Wall time for those.
    pub raw_time: Duration,
}

impl CaReport {
    /// Certificates per second.
    pub fn certs_per_sec(&self) -> f64 {
        f64::from(self.certificates) / self.sign_time.as_secs_f64()
    }

    /// Raw signatures per second.
    pub fn sigs_per_sec(&self) -> f64 {
        f64::from(self.signatures) / self.raw_time.as_secs_f64()
    }
}

/// Signs `n` workload certificates and `n` raw signatures.
pub fn run(n: u32) -> Result<CaReport, String> {
    let dir = std::env::temp_dir().join(format!("isthmus-bench-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    isthmus_ca::create_root(&dir.join("root")).map_err(|e| e.to_string())?;
    isthmus_ca::create_intermediate(&dir.join("root"), "cluster1", &dir.join("c1"))
        .map_err(|e| e.to_string())?;
    let ca = isthmus_ca::Authority::load(&dir.join("c1")).map_err(|e| e.to_string())?;
    let identity = "spiffe://cluster.local/ns/foo/sa/sleep";
    let csrs: Vec<String> = (0..n)
        .map(|_| isthmus_ca::workload_csr(identity).map(|(csr, _)| csr))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    for csr in &csrs {
        ca.sign_workload(csr, identity, Duration::from_secs(3600))
            .map_err(|e| e.to_string())?;
    }
    let sign_time = start.elapsed();

    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .map_err(|_| "key generation failed".to_string())?;
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .map_err(|_| "key load failed".to_string())?;
    // About the size of a workload certificate's to-be-signed part.
    let tbs = vec![0x5au8; 450];
    let start = Instant::now();
    for _ in 0..n {
        key.sign(&rng, &tbs)
            .map_err(|_| "sign failed".to_string())?;
    }
    let raw_time = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(CaReport {
        certificates: n,
        sign_time,
        signatures: n,
        raw_time,
    })
}
