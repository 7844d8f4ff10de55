//! Istio's workload metrics, counted from the telemetry lines Envoy writes to its stdout
//! (see [`isthmus_api::telemetry`]) and served with Envoy's own stats on 15020 and 15090
//! (`/stats/prometheus`), as istio-agent and istio-proxy serve them.
//!
//! Labels follow Istio's standard metrics: the proxy's own side from what the agent knows
//! (its cluster, namespace, workload and SPIFFE identity), the peer's identity from the TLS
//! session and its workload, namespace and cluster from the peer header. A value not known
//! is `unknown`, as in Istio. Not derived: `destination_service` at the destination (the
//! inbound cluster names a port, not a service), and the workload of a TCP peer (no header
//! to carry it); the `*_principal` of both sides are always there under mTLS.

use isthmus_api::telemetry::{fields as f, split_peer, MARKER};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Who this proxy is: the labels of its own side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Cluster id.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Workload name (a Deployment's name, not a pod's).
    pub workload: String,
    /// SPIFFE identity (`spiffe://TD/ns/NS/sa/SA`).
    pub principal: String,
}

/// The labels of every workload metric, in order.
const LABELS: [&str; 16] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_cluster",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
];

/// Istio's duration buckets (milliseconds).
const DURATION_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's size buckets (bytes): 1 to 10^9, by powers of ten.
const SIZE_BUCKETS: [f64; 10] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The workload metrics of one proxy.
#[derive(Debug)]
pub struct WorkloadMetrics {
    me: Identity,
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: HistogramVec,
    response_bytes: HistogramVec,
    tcp_sent: IntCounterVec,
    tcp_received: IntCounterVec,
    tcp_opened: IntCounterVec,
    tcp_closed: IntCounterVec,
    /// The label sets seen, by what of a line decides them.
    series: Mutex<HashMap<String, Arc<Series>>>,
}

fn counter(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &LABELS)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        &LABELS,
    )
    .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

/// One telemetry line as Envoy writes it (the keys are [`isthmus_api::telemetry::fields`];
/// a test checks they agree). Strings are borrowed unless JSON escapes them.
#[derive(Debug, serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    peer: Option<Cow<'a, str>>,
    #[serde(borrow)]
    isthmus_telemetry: Cow<'a, str>,
    #[serde(borrow)]
    reporter: Cow<'a, str>,
    #[serde(default)]
    code: u64,
    #[serde(borrow, default)]
    flags: Option<Cow<'a, str>>,
    #[serde(default)]
    duration: u64,
    #[serde(default)]
    rx: u64,
    #[serde(default)]
    tx: u64,
    #[serde(borrow, default)]
    cluster: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    down_peer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    up_peer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    log_type: Option<Cow<'a, str>>,
}

/// A text field's value (`-`, Envoy's empty value, and a missing field are `None`).
fn given<'a>(v: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    v.as_deref().filter(|s| !s.is_empty() && *s != "-")
}

/// The metrics of one label set, resolved once (only its protocol's: a TCP label set has
/// no `istio_requests_total` sample, an HTTP one no `istio_tcp_*`).
#[derive(Debug)]
enum Series {
    Http {
        requests: IntCounter,
        duration: Histogram,
        request_bytes: Histogram,
        response_bytes: Histogram,
    },
    Tcp {
        sent: IntCounter,
        received: IntCounter,
        opened: IntCounter,
        closed: IntCounter,
    },
}

/// How many label sets are kept resolved; beyond it (a client forging peer headers), each
/// line looks its metrics up again.
const SERIES_KEPT: usize = 10_000;

/// The service host of an outbound cluster name (`outbound|80||a.foo.svc.cluster.local`).
fn service_of_cluster(cluster: &str) -> Option<&str> {
    let mut parts = cluster.split('|');
    (parts.next()? == "outbound").then_some(())?;
    let host = parts.nth(2)?;
    (!host.is_empty()).then_some(host)
}

/// A service host's name and namespace (Kubernetes' `NAME.NS.svc.DOMAIN`), else the host
/// and `unknown`.
fn service_name_namespace(host: &str) -> (&str, &str) {
    let mut parts = host.splitn(4, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(ns), Some("svc")) => (name, ns),
        _ => (host, "unknown"),
    }
}

const UNKNOWN: &str = "unknown";

impl WorkloadMetrics {
    /// The metrics of the proxy `me`.
    pub fn new(me: Identity) -> WorkloadMetrics {
        WorkloadMetrics {
            me,
            requests: counter(
                "istio_requests_total",
                "Requests, by source and destination.",
            ),
            duration: histogram(
                "istio_request_duration_milliseconds",
                "Request duration in milliseconds.",
                &DURATION_BUCKETS,
            ),
            request_bytes: histogram(
                "istio_request_bytes",
                "Request body sizes in bytes.",
                &SIZE_BUCKETS,
            ),
            response_bytes: histogram(
                "istio_response_bytes",
                "Response body sizes in bytes.",
                &SIZE_BUCKETS,
            ),
            tcp_sent: counter(
                "istio_tcp_sent_bytes_total",
                "Bytes sent to the downstream over TCP connections.",
            ),
            tcp_received: counter(
                "istio_tcp_received_bytes_total",
                "Bytes received from the downstream over TCP connections.",
            ),
            tcp_opened: counter(
                "istio_tcp_connections_opened_total",
                "TCP connections opened.",
            ),
            tcp_closed: counter(
                "istio_tcp_connections_closed_total",
                "TCP connections closed.",
            ),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Adds every family to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.request_bytes.clone()))?;
        registry.register(Box::new(self.response_bytes.clone()))?;
        registry.register(Box::new(self.tcp_sent.clone()))?;
        registry.register(Box::new(self.tcp_received.clone()))?;
        registry.register(Box::new(self.tcp_opened.clone()))?;
        registry.register(Box::new(self.tcp_closed.clone()))
    }

    /// The label values of a line, in [`LABELS`]' order.
    fn labels(&self, line: &Line<'_>, protocol: &str) -> [String; 16] {
        let me = &self.me;
        let reporter = line.reporter.as_ref();
        let peer = given(&line.peer).and_then(split_peer);
        let (peer_cluster, peer_ns, peer_workload) = peer.unwrap_or((UNKNOWN, UNKNOWN, UNKNOWN));
        let code = line.code.to_string();
        let flags = given(&line.flags).unwrap_or("-").to_string();
        if reporter == "destination" {
            let down = given(&line.down_peer);
            [
                reporter.into(),
                peer_workload.into(),
                peer_ns.into(),
                down.unwrap_or(UNKNOWN).into(),
                peer_cluster.into(),
                me.workload.clone(),
                me.namespace.clone(),
                me.principal.clone(),
                me.cluster.clone(),
                UNKNOWN.into(),
                UNKNOWN.into(),
                UNKNOWN.into(),
                protocol.into(),
                code,
                flags,
                if down.is_some() { "mutual_tls" } else { "none" }.into(),
            ]
        } else {
            let service = given(&line.cluster)
                .and_then(service_of_cluster)
                .unwrap_or(UNKNOWN);
            let (name, ns) = service_name_namespace(service);
            [
                reporter.into(),
                me.workload.clone(),
                me.namespace.clone(),
                me.principal.clone(),
                me.cluster.clone(),
                peer_workload.into(),
                peer_ns.into(),
                given(&line.up_peer).unwrap_or(UNKNOWN).into(),
                peer_cluster.into(),
                service.into(),
                name.into(),
                ns.into(),
                protocol.into(),
                code,
                flags,
                UNKNOWN.into(),
            ]
        }
    }

    /// The metrics of a line's label set: resolved once per set, then kept.
    fn series(&self, line: &Line<'_>, protocol: &str) -> Arc<Series> {
        // What decides the labels (the rest is this proxy's own).
        let mut key = String::with_capacity(160);
        for part in [
            protocol,
            line.reporter.as_ref(),
            given(&line.peer).unwrap_or(""),
            given(&line.flags).unwrap_or(""),
            given(&line.cluster).unwrap_or(""),
            given(&line.down_peer).unwrap_or(""),
            given(&line.up_peer).unwrap_or(""),
        ] {
            key.push_str(part);
            key.push('\u{1f}');
        }
        key.push_str(&line.code.to_string());
        let mut kept = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = kept.get(&key) {
            return s.clone();
        }
        let labels = self.labels(line, protocol);
        let v: Vec<&str> = labels.iter().map(String::as_str).collect();
        let series = Arc::new(if protocol == "tcp" {
            Series::Tcp {
                sent: self.tcp_sent.with_label_values(&v),
                received: self.tcp_received.with_label_values(&v),
                opened: self.tcp_opened.with_label_values(&v),
                closed: self.tcp_closed.with_label_values(&v),
            }
        } else {
            Series::Http {
                requests: self.requests.with_label_values(&v),
                duration: self.duration.with_label_values(&v),
                request_bytes: self.request_bytes.with_label_values(&v),
                response_bytes: self.response_bytes.with_label_values(&v),
            }
        });
        if kept.len() < SERIES_KEPT {
            kept.insert(key, series.clone());
        }
        series
    }

    /// Counts one line of Envoy's stdout; `false` when it is not a telemetry line (the
    /// caller passes it on as it is).
    pub fn record(&self, raw: &str) -> bool {
        if !raw.starts_with('{') || !raw.contains(MARKER) {
            return false;
        }
        let Ok(line) = serde_json::from_str::<Line<'_>>(raw) else {
            return false;
        };
        let tcp = line.isthmus_telemetry == f::TCP;
        match &*self.series(&line, if tcp { "tcp" } else { "http" }) {
            Series::Tcp { opened, .. }
                if given(&line.log_type) == Some("TcpConnectivityEstablished") =>
            {
                opened.inc();
            }
            Series::Tcp {
                sent,
                received,
                closed,
                ..
            } => {
                closed.inc();
                sent.inc_by(line.tx);
                received.inc_by(line.rx);
            }
            Series::Http {
                requests,
                duration,
                request_bytes,
                response_bytes,
            } => {
                requests.inc();
                duration.observe(line.duration as f64);
                request_bytes.observe(line.rx as f64);
                response_bytes.observe(line.tx as f64);
            }
        }
        true
    }
}

/// A Deployment's name from one of its pods' (`NAME-HASH-XXXXX`), a StatefulSet's from
/// `NAME-N`, else the pod's own name: what Istio calls the workload when nothing better is
/// known.
pub fn workload_of_pod(pod: &str) -> &str {
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    let alnum = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    match parts.as_slice() {
        [suffix, hash, name]
            if suffix.len() == 5
                && alnum(suffix)
                && (6..=10).contains(&hash.len())
                && alnum(hash) =>
        {
            name
        }
        [ordinal, ..] if !ordinal.is_empty() && ordinal.chars().all(|c| c.is_ascii_digit()) => {
            pod.rsplit_once('-').map_or(pod, |(name, _)| name)
        }
        _ => pod,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> WorkloadMetrics {
        WorkloadMetrics::new(Identity {
            cluster: "cluster1".into(),
            namespace: "foo".into(),
            workload: "sleep".into(),
            principal: "spiffe://cluster.local/ns/foo/sa/sleep".into(),
        })
    }

    fn encode(m: &WorkloadMetrics) -> String {
        let registry = Registry::new();
        m.register(&registry).expect("register");
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encode")
    }

    #[test]
    fn a_cross_cluster_request_is_counted_with_both_sides_labels() {
        let m = me();
        let line = r#"{"peer":"cluster2;foo;httpbin","isthmus_telemetry":"http","reporter":"source","code":200,"flags":"-","duration":7,"rx":0,"tx":321,"cluster":"outbound|8000||httpbin.foo.svc.cluster.local","down_peer":"-","up_peer":"spiffe://cluster.local/ns/foo/sa/httpbin","protocol":"HTTP/1.1"}"#;
        assert!(m.record(line));
        assert!(m.record(line));
        assert!(!m.record("[2026-12-03 info] not a telemetry line"));
        assert!(!m.record(r#"{"isthmus_telemetry":"http", broken"#));
        let text = encode(&m);
        let sample = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .expect("a sample");
        for label in [
            r#"reporter="source""#,
            r#"source_cluster="cluster1""#,
            r#"source_workload="sleep""#,
            r#"destination_cluster="cluster2""#,
            r#"destination_workload="httpbin""#,
            r#"destination_service="httpbin.foo.svc.cluster.local""#,
            r#"destination_service_name="httpbin""#,
            r#"destination_service_namespace="foo""#,
            r#"destination_principal="spiffe://cluster.local/ns/foo/sa/httpbin""#,
            r#"response_code="200""#,
            r#"request_protocol="http""#,
        ] {
            assert!(sample.contains(label), "{label} in {sample}");
        }
        assert!(sample.ends_with("} 2"), "{sample}");
        assert!(
            text.contains("istio_request_duration_milliseconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("istio_response_bytes_sum{"), "{text}");
    }

    #[test]
    fn the_destination_side_names_its_caller_and_says_whether_it_was_mtls() {
        let m = me();
        for line in [
            r#"{"peer":"cluster2;bar;client","isthmus_telemetry":"http","reporter":"destination","code":503,"flags":"UF","duration":1,"rx":10,"tx":0,"cluster":"inbound|80||","down_peer":"spiffe://cluster.local/ns/bar/sa/client","up_peer":"-","protocol":"HTTP/2"}"#,
            r#"{"peer":"-","isthmus_telemetry":"tcp","reporter":"destination","code":0,"flags":"-","duration":5,"rx":4,"tx":9,"cluster":"inbound|9000||","down_peer":"-","up_peer":"-","log_type":"TcpConnectionEnd"}"#,
            r#"{"peer":"-","isthmus_telemetry":"tcp","reporter":"destination","code":0,"flags":"-","duration":0,"rx":0,"tx":0,"cluster":"inbound|9000||","down_peer":"-","up_peer":"-","log_type":"TcpConnectivityEstablished"}"#,
        ] {
            assert!(m.record(line), "{line}");
        }
        let text = encode(&m);
        let http = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .expect("a request");
        for label in [
            r#"source_workload="client""#,
            r#"source_cluster="cluster2""#,
            r#"source_principal="spiffe://cluster.local/ns/bar/sa/client""#,
            r#"destination_workload="sleep""#,
            r#"connection_security_policy="mutual_tls""#,
            r#"response_flags="UF""#,
        ] {
            assert!(http.contains(label), "{label} in {http}");
        }
        let received = text
            .lines()
            .find(|l| l.starts_with("istio_tcp_received_bytes_total{"))
            .expect("tcp bytes");
        assert!(received.contains(r#"connection_security_policy="none""#));
        assert!(received.ends_with("} 4"), "{received}");
        assert!(text
            .lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total{") && l.ends_with("} 1")));
        assert!(text
            .lines()
            .any(|l| l.starts_with("istio_tcp_connections_closed_total{") && l.ends_with("} 1")));
    }

    #[test]
    fn the_keys_read_are_the_contracts() {
        let raw = serde_json::json!({
            f::PEER: "c;n;w", MARKER: f::TCP, f::REPORTER: "source", f::CODE: 0,
            f::FLAGS: "-", f::DURATION: 1, f::RECEIVED: 2, f::SENT: 3, f::CLUSTER: "x",
            f::DOWNSTREAM_PEER: "-", f::UPSTREAM_PEER: "u", f::LOG_TYPE: "TcpConnectionEnd",
        })
        .to_string();
        let line: Line<'_> = serde_json::from_str(&raw).expect("read");
        assert_eq!(
            (
                line.peer.as_deref(),
                line.isthmus_telemetry.as_ref(),
                line.rx,
                line.tx
            ),
            (Some("c;n;w"), f::TCP, 2, 3)
        );
        assert_eq!(line.log_type.as_deref(), Some("TcpConnectionEnd"));
        assert_eq!(line.up_peer.as_deref(), Some("u"));
        assert_eq!((line.code, line.duration), (0, 1));
    }

    #[test]
    fn a_workload_is_named_after_its_deployment_or_statefulset() {
        assert_eq!(workload_of_pod("sleep-7d4f8b9c5-x2k9q"), "sleep");
        assert_eq!(workload_of_pod("my-app-5c9f7d6b8d-abcde"), "my-app");
        assert_eq!(workload_of_pod("web-0"), "web");
        assert_eq!(workload_of_pod("httpbin"), "httpbin");
        assert_eq!(
            workload_of_pod("istio-eastwestgateway"),
            "istio-eastwestgateway"
        );
    }
}
