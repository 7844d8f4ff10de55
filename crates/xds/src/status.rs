//! What every connected proxy has accepted or rejected, for metrics and `/debug/syncz`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One proxy's sync state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyStatus {
    /// Node id.
    pub node_id: String,
    /// `sotw` or `delta`, or `nds` for an agent's stream of the name table.
    pub protocol: String,
    /// The cluster the proxy says it is in.
    pub cluster: String,
    /// Type URL to the last version sent.
    pub sent: BTreeMap<String, String>,
    /// Type URL to the last version it ACKed.
    pub acked: BTreeMap<String, String>,
    /// Type URL to the last error it reported.
    pub nacked: BTreeMap<String, String>,
}

/// The xDS types Istio's metrics name by their short `type` label (`cds`, `eds`, ...), in
/// the order [`XdsMetrics`] keeps one counter per type; anything else is `other`.
const TYPE_LABELS: [(&str, &str); 6] = [
    ("type.googleapis.com/envoy.config.cluster.v3.Cluster", "cds"),
    (
        "type.googleapis.com/envoy.config.listener.v3.Listener",
        "lds",
    ),
    (
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "rds",
    ),
    (
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "eds",
    ),
    (
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "sds",
    ),
    (isthmus_dns::nds::NDS_TYPE, "nds"),
];

/// Istio's short name of an xDS type (`cds` for clusters, ...), as its metrics label it.
pub fn type_label(type_url: &str) -> &'static str {
    TYPE_LABELS
        .iter()
        .find(|(url, _)| *url == type_url)
        .map_or("other", |(_, short)| short)
}

/// One counter per xDS type (and one for the rest), resolved once so that counting a push
/// costs no label lookup.
#[derive(Debug, Clone)]
struct PerType {
    each: Vec<IntCounter>,
}

impl PerType {
    fn new(family: &IntCounterVec) -> PerType {
        let each = TYPE_LABELS
            .iter()
            .map(|(_, short)| *short)
            .chain(["other"])
            .map(|t| family.with_label_values(&[t]))
            .collect();
        PerType { each }
    }

    fn inc(&self, type_url: &str) {
        let i = TYPE_LABELS
            .iter()
            .position(|(url, _)| *url == type_url)
            .unwrap_or(TYPE_LABELS.len());
        if let Some(c) = self.each.get(i) {
            c.inc();
        }
    }
}

/// The xDS server's metrics: Istio's names where its dashboards and alerts look for them,
/// and ours under `isthmus_*`.
#[derive(Debug, Clone)]
struct XdsMetrics {
    /// `pilot_xds_pushes{type}`: responses sent, by type.
    pushes_by_type: IntCounterVec,
    pushes_by_type_each: PerType,
    /// `pilot_total_xds_rejects{type}`: NACKs, by type.
    rejects_by_type: IntCounterVec,
    rejects_by_type_each: PerType,
    /// `pilot_xds`: connected proxies (set when scraped).
    connected_istio: IntGauge,
    /// `pilot_proxy_convergence_time`: from the change a control plane saw to a proxy being
    /// sent the configuration it made.
    convergence: Histogram,
    connected: IntGauge,
    agents: IntGauge,
    pushes: IntCounter,
    acks: IntCounter,
    nacks: IntCounter,
    refused: IntCounter,
}

impl XdsMetrics {
    fn new() -> XdsMetrics {
        let pushes_by_type = int_counter_vec(
            "pilot_xds_pushes",
            "xDS responses sent, by type (cds, lds, rds, eds, sds, nds).",
        );
        let rejects_by_type = int_counter_vec(
            "pilot_total_xds_rejects",
            "Total number of xDS responses from pilot rejected by proxy, by type.",
        );
        XdsMetrics {
            pushes_by_type_each: PerType::new(&pushes_by_type),
            pushes_by_type,
            rejects_by_type_each: PerType::new(&rejects_by_type),
            rejects_by_type,
            connected_istio: int_gauge(
                "pilot_xds",
                "Number of endpoints connected to this pilot using XDS.",
            ),
            convergence: Histogram::with_opts(
                HistogramOpts::new(
                    "pilot_proxy_convergence_time",
                    "Delay in seconds between config change and a proxy receiving all required configuration.",
                )
                .buckets(vec![0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0]),
            )
            .unwrap_or_else(|e| unreachable!("metric pilot_proxy_convergence_time: {e}")),
            connected: int_gauge("isthmus_xds_connected_proxies", "Proxies with an ADS stream open."),
            agents: int_gauge(
                "isthmus_nds_connected_agents",
                "Agents following the name table (their pods' DNS).",
            ),
            pushes: int_counter("isthmus_xds_pushes_total", "xDS responses sent."),
            acks: int_counter("isthmus_xds_acks_total", "xDS responses proxies accepted."),
            nacks: int_counter("isthmus_xds_nacks_total", "xDS responses proxies rejected."),
            refused: int_counter(
                "isthmus_xds_refused_streams_total",
                "ADS streams refused: no workload certificate, or one for another identity than the node claims.",
            ),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.pushes_by_type.clone()),
            Box::new(self.rejects_by_type.clone()),
            Box::new(self.connected_istio.clone()),
            Box::new(self.convergence.clone()),
            Box::new(self.connected.clone()),
            Box::new(self.agents.clone()),
            Box::new(self.pushes.clone()),
            Box::new(self.acks.clone()),
            Box::new(self.nacks.clone()),
            Box::new(self.refused.clone()),
        ]
    }
}

// The metrics' names, help and buckets are fixed and valid: the constructors below can only
// fail on a programming error, caught by every test that builds an `XdsStatus`.

fn int_counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn int_gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn int_counter_vec(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &["type"])
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

/// Counters and per-stream state shared by all streams.
#[derive(Debug)]
pub struct XdsStatus {
    metrics: XdsMetrics,
    next_stream: AtomicU64,
    streams: Mutex<BTreeMap<u64, ProxyStatus>>,
}

impl Default for XdsStatus {
    fn default() -> Self {
        XdsStatus {
            metrics: XdsMetrics::new(),
            next_stream: AtomicU64::new(0),
            streams: Mutex::new(BTreeMap::new()),
        }
    }
}

/// One stream's handle on the shared [`XdsStatus`].
#[derive(Debug, Clone, Copy)]
pub struct StreamStatus<'a> {
    status: &'a XdsStatus,
    id: u64,
}

impl StreamStatus<'_> {
    /// Records a response of `type_url` at `version` sent to this stream's proxy;
    /// `changed_at` is when the control plane saw the change that made `version` (the first
    /// response of a version to a proxy records its convergence time), `None` for the name
    /// table.
    pub fn sent(&self, type_url: &str, version: &str, changed_at: Option<Instant>) {
        self.status.sent(self.id, type_url, version, changed_at);
    }

    /// Records an ACK of `version`.
    pub fn ack(&self, type_url: &str, version: &str) {
        self.status.ack(self.id, type_url, version);
    }

    /// Records a NACK.
    pub fn nack(&self, type_url: &str, error: &str) {
        self.status.nack(self.id, type_url, error);
    }
}

/// Sets `map[key]` to `value`, reusing the key and the value's room when the key is there
/// (every response and every ACK of every proxy lands here: each type of a change pushed to
/// 1,000 proxies would otherwise allocate and free 4,000 strings).
fn set(map: &mut BTreeMap<String, String>, key: &str, value: &str) {
    match map.get_mut(key) {
        Some(v) => {
            if v != value {
                v.clear();
                v.push_str(value);
            }
        }
        None => {
            map.insert(key.into(), value.into());
        }
    }
}

impl XdsStatus {
    /// Registers a stream and returns its id.
    pub fn open(&self, node_id: &str, cluster: &str, protocol: &str) -> u64 {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.streams.lock() {
            s.insert(
                id,
                ProxyStatus {
                    node_id: node_id.into(),
                    cluster: cluster.into(),
                    protocol: protocol.into(),
                    ..Default::default()
                },
            );
        }
        id
    }

    /// Stream `id`'s view of the status: what it records is its proxy's.
    pub fn stream(&self, id: u64) -> StreamStatus<'_> {
        StreamStatus { status: self, id }
    }

    /// Records a response sent (see [`StreamStatus::sent`]).
    pub fn sent(&self, id: u64, type_url: &str, version: &str, changed_at: Option<Instant>) {
        self.metrics.pushes.inc();
        self.metrics.pushes_by_type_each.inc(type_url);
        if let Ok(mut s) = self.streams.lock() {
            if let Some(p) = s.get_mut(&id) {
                let first_of_version = p.sent.values().all(|v| v != version);
                set(&mut p.sent, type_url, version);
                if let (true, Some(t)) = (first_of_version, changed_at) {
                    self.metrics.convergence.observe(t.elapsed().as_secs_f64());
                }
            }
        }
    }

    /// Records an ADS stream refused because its peer did not prove the node's identity.
    pub fn refused(&self) {
        self.metrics.refused.inc();
    }

    /// Streams refused so far (see [`XdsStatus::refused`]).
    pub fn refused_streams(&self) -> u64 {
        self.metrics.refused.get()
    }

    /// Forgets a stream.
    pub fn close(&self, id: u64) {
        if let Ok(mut s) = self.streams.lock() {
            s.remove(&id);
        }
    }

    /// Records an ACK.
    pub fn ack(&self, id: u64, type_url: &str, version: &str) {
        self.metrics.acks.inc();
        if let Ok(mut s) = self.streams.lock() {
            if let Some(p) = s.get_mut(&id) {
                set(&mut p.acked, type_url, version);
                if !p.nacked.is_empty() {
                    p.nacked.remove(type_url);
                }
            }
        }
    }

    /// Records a NACK.
    pub fn nack(&self, id: u64, type_url: &str, error: &str) {
        self.metrics.nacks.inc();
        self.metrics.rejects_by_type_each.inc(type_url);
        if let Ok(mut s) = self.streams.lock() {
            if let Some(p) = s.get_mut(&id) {
                p.nacked.insert(type_url.into(), error.into());
            }
        }
    }

    /// Every connected proxy.
    pub fn proxies(&self) -> Vec<ProxyStatus> {
        self.streams
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds this server's metrics to `registry` (what a monitoring port gathers).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for c in self.metrics.collectors() {
            registry.register(c)?;
        }
        Ok(())
    }

    /// Sets the gauges that are read from the streams (call before gathering).
    pub fn refresh(&self) {
        let streams = self.proxies();
        let agents = streams.iter().filter(|p| p.protocol == "nds").count();
        let proxies = streams.len() - agents;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.connected.set(count(proxies));
        self.metrics.connected_istio.set(count(proxies));
        self.metrics.agents.set(count(agents));
    }

    /// Prometheus text exposition of this server's metrics alone.
    pub fn metrics(&self) -> String {
        let registry = Registry::new();
        if self.register(&registry).is_err() {
            return String::new();
        }
        self.refresh();
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_metrics_count_by_type_and_time_convergence_once_per_version() {
        let status = XdsStatus::default();
        let id = status.open("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", "c1", "sotw");
        let st = status.stream(id);
        let cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
        let eds = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
        let seen = Instant::now();
        st.sent(cds, "1", Some(seen));
        st.sent(eds, "1", Some(seen));
        st.sent(cds, "2", Some(seen));
        st.nack(eds, "bad");
        st.sent("type.googleapis.com/some.Other", "2", None);
        let text = status.metrics();
        for line in [
            "pilot_xds_pushes{type=\"cds\"} 2",
            "pilot_xds_pushes{type=\"eds\"} 1",
            "pilot_xds_pushes{type=\"other\"} 1",
            "pilot_total_xds_rejects{type=\"eds\"} 1",
            "pilot_total_xds_rejects{type=\"cds\"} 0",
            "# TYPE pilot_xds_pushes counter",
            "# TYPE pilot_proxy_convergence_time histogram",
            // Versions 1 and 2 each reached the proxy once.
            "pilot_proxy_convergence_time_count 2",
            "pilot_xds 1",
            "isthmus_xds_connected_proxies 1",
            "isthmus_xds_pushes_total 4",
            "isthmus_xds_nacks_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(type_label(isthmus_dns::nds::NDS_TYPE), "nds");
        status.close(id);
        assert!(status.metrics().lines().any(|l| l == "pilot_xds 0"));
    }

    #[test]
    fn a_proxys_status_holds_the_latest_version_per_type_and_an_ack_clears_its_nack() {
        let status = XdsStatus::default();
        let id = status.open("sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", "c1", "sotw");
        let st = status.stream(id);
        let (cds, eds) = ("t/cds", "t/eds");
        st.sent(cds, "1", None);
        st.sent(eds, "1", None);
        st.ack(cds, "1");
        st.sent(cds, "12", None);
        st.nack(cds, "bad cluster");
        st.nack(eds, "bad endpoints");
        st.ack(cds, "12");
        st.sent(cds, "3", None);
        let proxies = status.proxies();
        let p = &proxies[0];
        let map = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(map(&p.sent), "t/cds=3 t/eds=1");
        assert_eq!(map(&p.acked), "t/cds=12");
        assert_eq!(map(&p.nacked), "t/eds=bad endpoints");
    }
}
