//! `isthmus bench dns`: dnsperf against the mesh DNS and, with the same names, against
//! unbound; prints them side by side.

use crate::dns::{self, DnsFigures};
use crate::error::BenchError;
use crate::stats::ms;

/// What `bench dns` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsOptions {
    /// Names in the table.
    pub names: u32,
    /// Seconds per server.
    pub seconds: u32,
    /// dnsperf clients.
    pub clients: u32,
}

/// Runs both servers and prints the table and the ratio.
pub fn run(opts: &DnsOptions) -> Result<(), BenchError> {
    let (ours, peer) =
        dns::run(opts.names, opts.seconds, opts.clients).map_err(BenchError::Measure)?;
    for line in report(&ours, &peer) {
        println!("{line}");
    }
    Ok(())
}

/// The table (ours, then the peer) and how our rate compares.
fn report(ours: &DnsFigures, peer: &DnsFigures) -> Vec<String> {
    let mut lines = vec![
        "| server | queries/s | p50 | p99 | sent | lost |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];
    for (name, f) in [
        ("isthmus mesh DNS (UDP fast path)", ours),
        ("unbound (local-data)", peer),
    ] {
        lines.push(format!(
            "| {name} | {:.0} | {} | {} | {} | {} |",
            f.qps,
            ms(f.p50),
            ms(f.p99),
            f.sent,
            f.lost
        ));
    }
    lines.push(format!(
        "ratio: {:.2}x the peer's rate",
        ours.qps / peer.qps.max(1.0)
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_report_puts_ours_first_and_divides_by_the_peer() {
        let ours = DnsFigures {
            qps: 150_000.4,
            p50: Duration::from_micros(250),
            p99: Duration::from_micros(1_500),
            sent: 1_500_004,
            lost: 3,
        };
        let peer = DnsFigures {
            qps: 100_000.0,
            ..ours.clone()
        };
        assert_eq!(
            report(&ours, &peer),
            [
                "| server | queries/s | p50 | p99 | sent | lost |",
                "|---|---|---|---|---|---|",
                "| isthmus mesh DNS (UDP fast path) | 150000 | 0.25 ms | 1.50 ms | 1500004 | 3 |",
                "| unbound (local-data) | 100000 | 0.25 ms | 1.50 ms | 1500004 | 3 |",
                "ratio: 1.50x the peer's rate",
            ]
        );
        // A peer that answered nothing does not divide by zero.
        let silent = DnsFigures::default();
        assert_eq!(
            report(&ours, &silent).last().map(String::as_str),
            Some("ratio: 150000.40x the peer's rate")
        );
    }
}
