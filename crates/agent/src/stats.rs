//! The proxy's metrics ports, as Istio's: 15090 serves Envoy's stats with the workload
//! metrics (what istio-proxy's own Prometheus listener serves), 15020 the same merged with
//! the agent's and the application's (what istio-agent's `/stats/prometheus` serves).

use crate::telemetry::WorkloadMetrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Prometheus's text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the merged page reads its parts.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Envoy's admin address.
    pub admin: SocketAddr,
    /// The application's metrics, `HOST:PORT` and path, if it has any.
    pub app: Option<(SocketAddr, String)>,
    /// The workload metrics.
    pub workload: Arc<WorkloadMetrics>,
}

/// The body of `GET path` at `addr`, within 5 s; `None` unless it answers 200. HTTP/1.1
/// (Envoy's admin refuses 1.0), so a chunked body is put together.
pub async fn fetch(addr: SocketAddr, path: &str) -> Option<String> {
    let get = async {
        let mut sock = tokio::net::TcpStream::connect(addr).await.ok()?;
        sock.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut raw = Vec::new();
        sock.read_to_end(&mut raw).await.ok()?;
        body_of(&raw)
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .ok()
        .flatten()
}

/// The body of a whole HTTP/1.1 response that answered 200.
fn body_of(raw: &[u8]) -> Option<String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    lines
        .next()?
        .split_whitespace()
        .nth(1)
        .filter(|c| *c == "200")?;
    let chunked = lines.any(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("transfer-encoding:")
            .is_some_and(|v| v.trim() == "chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    String::from_utf8(body).ok()
}

/// A chunked body's bytes.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// The workload metrics in Prometheus's text format.
fn workload_text(m: &WorkloadMetrics) -> String {
    let registry = prometheus::Registry::new();
    if m.register(&registry).is_err() {
        return String::new();
    }
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_default()
}

/// Envoy's stats and the workload metrics; with `merged`, the application's too.
async fn page(s: &Sources, merged: bool) -> String {
    let mut out = fetch(s.admin, "/stats/prometheus")
        .await
        .unwrap_or_else(|| {
            "# Envoy's admin port did not answer: its stats are missing from this scrape\n".into()
        });
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&workload_text(&s.workload));
    if let (true, Some((addr, path))) = (merged, &s.app) {
        match fetch(*addr, path).await {
            Some(app) => {
                out.push_str(&app);
                if !app.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(&format!(
                "# the application's metrics at {addr}{path} did not answer\n"
            )),
        }
    }
    out
}

/// Serves `/stats/prometheus` on `addr` (merged with the application's when `merged`);
/// a port already taken is reported once and left alone (several agents sharing one
/// network namespace, as in the loopback tests, cannot all have it).
pub async fn serve(addr: SocketAddr, sources: Sources, merged: bool) {
    use axum::routing::get;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "metrics port not served");
            return;
        }
    };
    let sources = Arc::new(sources);
    let routes = axum::Router::new().route(
        "/stats/prometheus",
        get(move || {
            let sources = sources.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, PROMETHEUS_TEXT)],
                    page(&sources, merged).await,
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, routes).await {
        tracing::error!(%addr, error = %e, "metrics port stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_read_whole_or_from_its_chunks_and_only_from_a_200() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
        assert_eq!(body_of(plain).as_deref(), Some("abc"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nenvo\r\n2\r\ny\n\r\n0\r\n\r\n";
        assert_eq!(body_of(chunked).as_deref(), Some("envoy\n"));
        assert_eq!(body_of(b"HTTP/1.1 426 Upgrade Required\r\n\r\nno"), None);
        assert_eq!(
            body_of(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
            None
        );
    }
}
