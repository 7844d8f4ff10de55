//! HTTP request latency from inside a pod: sequential GETs over one kept-alive connection, or
//! each on a new connection, timed one by one. Run through the lab (`ip netns exec`) on both
//! the mesh path and a direct baseline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Latencies of `n` requests.
pub fn run(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[String],
    n: usize,
    new_connections: bool,
) -> Result<Vec<Duration>, String> {
    let request = get_request(host, path, headers);
    let mut conn = if new_connections {
        None
    } else {
        Some(connect(addr)?)
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut fresh;
        let r: &mut BufReader<TcpStream> = match conn.as_mut() {
            Some(c) => c,
            None => {
                fresh = connect(addr)?;
                &mut fresh
            }
        };
        one_request(r, request.as_bytes())?;
        out.push(start.elapsed());
    }
    Ok(out)
}

/// A GET with `headers` (`Name: value` each) after Host and User-Agent.
fn get_request(host: &str, path: &str, headers: &[String]) -> String {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: isthmus-bench\r\n{extra}\r\n")
}

/// A kept-alive connection with Nagle off and a 10 s read timeout.
fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    Ok(BufReader::new(s))
}

/// The outcome of a fixed-rate run.
#[derive(Debug, Clone, Default)]
pub struct RateResult {
    /// Latency of each completed request, measured from when it was due (so that a stall
    /// delays every request behind it, instead of hiding them).
    pub latencies: Vec<Duration>,
    /// Requests that failed.
    pub errors: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RateResult {
    /// Completed requests per second.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn one_request(r: &mut BufReader<TcpStream>, request: &[u8]) -> Result<(), String> {
    r.get_mut().write_all(request).map_err(|e| e.to_string())?;
    let mut status = String::new();
    r.read_line(&mut status).map_err(|e| e.to_string())?;
    if !status.contains(" 200 ") {
        return Err(format!("unexpected status: {}", status.trim()));
    }
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())
}

/// Open-loop load: `rate` requests per second for `seconds`, spread over `connections`
/// kept-alive connections (each its own thread, sending on a fixed schedule).
pub fn run_rate(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[String],
    rate: f64,
    seconds: f64,
    connections: usize,
) -> Result<RateResult, String> {
    let request = get_request(host, path, headers);
    let connections = connections.max(1);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|k| {
            let request = request.clone();
            std::thread::spawn(move || -> Result<(Vec<Duration>, usize), String> {
                let mut r = connect(addr)?;
                let (mut lat, mut errors) = (Vec::new(), 0usize);
                for i in 0u64.. {
                    let due = start
                        + Duration::from_secs_f64(
                            (i as f64 * connections as f64 + k as f64) / rate,
                        );
                    if due >= end {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    match one_request(&mut r, request.as_bytes()) {
                        Ok(()) => lat.push(due.elapsed()),
                        Err(_) => {
                            errors += 1;
                            // Start over on a new connection.
                            r = connect(addr)?;
                        }
                    }
                }
                Ok((lat, errors))
            })
        })
        .collect();
    let mut out = RateResult::default();
    for w in workers {
        let (lat, errors) = w
            .join()
            .map_err(|_| "a load thread panicked".to_string())??;
        out.latencies.extend(lat);
        out.errors += errors;
    }
    out.elapsed = Instant::now().saturating_duration_since(start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_headers_go_between_the_fixed_ones_and_the_blank_line() {
        assert_eq!(
            get_request("h", "/ip", &["Authorization: Bearer t".into(), "X-A: b".into()]),
            "GET /ip HTTP/1.1\r\nHost: h\r\nUser-Agent: isthmus-bench\r\nAuthorization: Bearer t\r\nX-A: b\r\n\r\n"
        );
    }

    #[test]
    fn a_fixed_rate_run_sends_about_rate_times_seconds_requests() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s);
                    loop {
                        let mut line = String::new();
                        loop {
                            line.clear();
                            match r.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line.trim().is_empty() => break,
                                Ok(_) => {}
                            }
                        }
                        let _ = r
                            .get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    }
                });
            }
        });
        let res = run_rate(addr, "x", "/", &[], 200.0, 0.5, 4).expect("run");
        assert_eq!(res.errors, 0);
        // 100 requests are due; the schedule, not the server, sets the count.
        assert!(
            (95..=100).contains(&res.latencies.len()),
            "{}",
            res.latencies.len()
        );
    }
}
