//! `isthmus bench http` (run inside a pod by `bench datapath`): sequential GETs, or open-loop
//! load at a fixed rate; prints bare numbers for the caller to read.

use crate::error::BenchError;
use crate::http_latency::{self, RateResult};
use crate::stats::percentile;
use std::net::SocketAddr;
use std::time::Duration;

/// What `bench http` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// IP:PORT to connect to.
    pub addr: SocketAddr,
    /// Host header.
    pub host: String,
    /// Path.
    pub path: String,
    /// Further request headers, `Name: value` each.
    pub headers: Vec<String>,
    /// Requests (closed loop).
    pub requests: usize,
    /// A new TCP connection for every request (closed loop).
    pub new_connections: bool,
    /// Open loop instead: this many requests per second.
    pub rate: Option<f64>,
    /// Seconds of open-loop load.
    pub seconds: f64,
    /// Kept-alive connections for open-loop load.
    pub connections: usize,
}

/// Runs the requests and prints `p50 p90 p99` in microseconds; with a rate, also completed
/// requests per second and errors.
pub fn run(opts: &HttpOptions) -> Result<(), BenchError> {
    let line = match opts.rate {
        Some(rate) => {
            let mut r = http_latency::run_rate(
                opts.addr,
                &opts.host,
                &opts.path,
                &opts.headers,
                rate,
                opts.seconds,
                opts.connections,
            )
            .map_err(BenchError::Measure)?;
            open_loop_line(&mut r)
        }
        None => {
            let mut lat = http_latency::run(
                opts.addr,
                &opts.host,
                &opts.path,
                &opts.headers,
                opts.requests,
                opts.new_connections,
            )
            .map_err(BenchError::Measure)?;
            closed_loop_line(&mut lat)
        }
    };
    println!("{line}");
    Ok(())
}

fn us(d: Duration) -> u128 {
    d.as_micros()
}

/// `p50 p90 p99` in microseconds.
fn closed_loop_line(lat: &mut [Duration]) -> String {
    format!(
        "{} {} {}",
        us(percentile(lat, 50.0)),
        us(percentile(lat, 90.0)),
        us(percentile(lat, 99.0))
    )
}

/// `p50 p90 p99` in microseconds, completed requests per second, errors.
fn open_loop_line(r: &mut RateResult) -> String {
    let throughput = r.throughput();
    format!(
        "{} {} {} {:.0} {}",
        us(percentile(&mut r.latencies, 50.0)),
        us(percentile(&mut r.latencies, 90.0)),
        us(percentile(&mut r.latencies, 99.0)),
        throughput,
        r.errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_prints_three_percentiles_in_microseconds() {
        let mut lat: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(closed_loop_line(&mut lat), "51000 90000 99000");
        assert_eq!(closed_loop_line(&mut []), "0 0 0");
    }

    #[test]
    fn open_loop_adds_throughput_and_errors() {
        let mut r = RateResult {
            latencies: (1..=100).map(Duration::from_micros).collect(),
            errors: 7,
            elapsed: Duration::from_millis(400),
        };
        assert_eq!(open_loop_line(&mut r), "51 90 99 250 7");
    }
}
