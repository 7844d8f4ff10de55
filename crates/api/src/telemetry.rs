//! The contract between the access log the control plane configures on every proxy and the
//! agent that turns it into Istio's workload metrics (`istio_requests_total`, ...).
//!
//! Upstream Envoy has no `istio.stats` filter, so the metrics are derived from what it can
//! give: each HTTP connection manager and TCP proxy writes one JSON line per request or
//! connection to stdout ([`fields`]), which the agent reads from its Envoy's stdout. The
//! peer's identity comes from the TLS session (`%DOWNSTREAM_PEER_URI_SAN%`,
//! `%UPSTREAM_PEER_URI_SAN%`); its workload, namespace and cluster from the
//! [`PEER_HEADER`] each side adds (a client on its requests, a server on its responses)
//! with the value of [`PEER_ENV`] that its agent sets in Envoy's environment, and that the
//! other side moves into dynamic metadata ([`PEER_METADATA`]) and removes, so the app never
//! sees it (Istio's metadata exchange does the same with `x-envoy-peer-metadata`).

/// The key every telemetry line has (its value is [`fields::HTTP`] or [`fields::TCP`]);
/// lines without it are Envoy's other output.
pub const MARKER: &str = "isthmus_telemetry";

/// The header carrying a proxy's `CLUSTER;NAMESPACE;WORKLOAD` to its peer.
pub const PEER_HEADER: &str = "x-isthmus-peer";

/// The environment variable of Envoy that holds this proxy's `CLUSTER;NAMESPACE;WORKLOAD`.
pub const PEER_ENV: &str = "ISTHMUS_PEER";

/// The dynamic metadata namespace and key the received [`PEER_HEADER`] is moved to.
pub const PEER_METADATA: (&str, &str) = ("isthmus.peer", "id");

/// The keys of a telemetry line.
pub mod fields {
    /// [`super::MARKER`]'s value for an HTTP request.
    pub const HTTP: &str = "http";
    /// [`super::MARKER`]'s value for a TCP connection.
    pub const TCP: &str = "tcp";
    /// `source` (the proxy sent the request) or `destination` (it received it).
    pub const REPORTER: &str = "reporter";
    /// Response code (0 when there was none).
    pub const CODE: &str = "code";
    /// Envoy's response flags (`-` when none).
    pub const FLAGS: &str = "flags";
    /// Milliseconds from the first byte received to the last sent.
    pub const DURATION: &str = "duration";
    /// Bytes received from the downstream (request body, or a connection's bytes in).
    pub const RECEIVED: &str = "rx";
    /// Bytes sent to the downstream.
    pub const SENT: &str = "tx";
    /// The upstream cluster (`outbound|PORT|SUBSET|HOST`, `inbound|PORT||`).
    pub const CLUSTER: &str = "cluster";
    /// The downstream's certificate URI (its SPIFFE identity), `-` without mTLS.
    pub const DOWNSTREAM_PEER: &str = "down_peer";
    /// The upstream's certificate URI, `-` without mTLS.
    pub const UPSTREAM_PEER: &str = "up_peer";
    /// The peer's `CLUSTER;NAMESPACE;WORKLOAD` from [`super::PEER_HEADER`], `-` if absent.
    pub const PEER: &str = "peer";
    /// `HTTP/1.1`, `HTTP/2`, ... (HTTP only).
    pub const PROTOCOL: &str = "protocol";
    /// The `:authority` the client asked for (HTTP only).
    pub const AUTHORITY: &str = "authority";
    /// Envoy's `%ACCESS_LOG_TYPE%` (a TCP line is written when the upstream connection is
    /// established, `TcpConnectivityEstablished`, and when it ends).
    pub const LOG_TYPE: &str = "log_type";
}

/// Splits a `CLUSTER;NAMESPACE;WORKLOAD` peer value; `None` for anything else (`-`, a
/// forged or truncated value).
pub fn split_peer(value: &str) -> Option<(&str, &str, &str)> {
    let mut parts = value.splitn(3, ';');
    let cluster = parts.next().filter(|s| !s.is_empty())?;
    let namespace = parts.next().filter(|s| !s.is_empty())?;
    let workload = parts.next().filter(|s| !s.is_empty() && !s.contains(';'))?;
    Some((cluster, namespace, workload))
}

/// A proxy's own peer value.
pub fn peer_value(cluster: &str, namespace: &str, workload: &str) -> String {
    format!("{cluster};{namespace};{workload}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_value_round_trips_and_anything_else_is_refused() {
        let v = peer_value("cluster2", "foo", "httpbin");
        assert_eq!(split_peer(&v), Some(("cluster2", "foo", "httpbin")));
        for bad in ["-", "", "a;b", "a;;c", ";b;c", "a;b;"] {
            assert_eq!(split_peer(bad), None, "{bad:?}");
        }
    }
}
