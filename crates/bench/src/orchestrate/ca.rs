//! `isthmus bench ca`: workload certificates signed per second beside raw ECDSA P-256
//! signatures.

use crate::ca::{self, CaReport};
use crate::error::BenchError;

/// What `bench ca` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaOptions {
    /// Certificates to sign.
    pub count: u32,
}

/// Signs, then prints both rates and their ratio.
pub fn run(opts: &CaOptions) -> Result<(), BenchError> {
    let r = ca::run(opts.count).map_err(BenchError::Measure)?;
    for line in report(&r) {
        println!("{line}");
    }
    Ok(())
}

/// Both rates and their ratio.
fn report(r: &CaReport) -> [String; 3] {
    [
        format!(
            "CA: {} workload certificates in {:.2}s = {:.0} certificates/s",
            r.certificates,
            r.sign_time.as_secs_f64(),
            r.certs_per_sec()
        ),
        format!(
            "ring ECDSA P-256: {} signatures in {:.2}s = {:.0} signatures/s",
            r.signatures,
            r.raw_time.as_secs_f64(),
            r.sigs_per_sec()
        ),
        format!(
            "ratio: the CA signs at {:.0}% of the raw signature rate",
            100.0 * r.certs_per_sec() / r.sigs_per_sec()
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_report_gives_both_rates_and_the_ratio() {
        let r = CaReport {
            certificates: 2000,
            sign_time: Duration::from_millis(800),
            signatures: 2000,
            raw_time: Duration::from_millis(200),
        };
        assert_eq!(
            report(&r),
            [
                "CA: 2000 workload certificates in 0.80s = 2500 certificates/s",
                "ring ECDSA P-256: 2000 signatures in 0.20s = 10000 signatures/s",
                "ratio: the CA signs at 25% of the raw signature rate",
            ]
        );
    }
}
