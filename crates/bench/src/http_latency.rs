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
    n: usize,
    new_connections: bool,
) -> Result<Vec<Duration>, String> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: isthmus-bench\r\n\r\n");
    let connect = || -> Result<BufReader<TcpStream>, String> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        Ok(BufReader::new(s))
    };
    let mut conn = if new_connections {
        None
    } else {
        Some(connect()?)
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut fresh;
        let r: &mut BufReader<TcpStream> = match conn.as_mut() {
            Some(c) => c,
            None => {
                fresh = connect()?;
                &mut fresh
            }
        };
        r.get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
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
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
        out.push(start.elapsed());
    }
    Ok(out)
}
