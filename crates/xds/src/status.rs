//! What every connected proxy has accepted or rejected, for metrics and `/debug/syncz`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

/// Counters and per-stream state shared by all streams.
#[derive(Debug, Default)]
pub struct XdsStatus {
    /// NACKs received.
    pub nacks: AtomicU64,
    /// Responses sent.
    pub pushes: AtomicU64,
    /// ACKs received.
    pub acks: AtomicU64,
    /// Streams refused because the peer's certificate did not prove the proxy's identity.
    pub refused: AtomicU64,
    next_stream: AtomicU64,
    streams: Mutex<BTreeMap<u64, ProxyStatus>>,
}

/// One stream's handle on the shared [`XdsStatus`].
#[derive(Debug, Clone, Copy)]
pub struct StreamStatus<'a> {
    status: &'a XdsStatus,
    id: u64,
}

impl StreamStatus<'_> {
    /// Records a response of `type_url` at `version` sent to this stream's proxy.
    pub fn sent(&self, type_url: &str, version: &str) {
        self.status.sent(self.id, type_url, version);
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

    /// Records a response sent.
    pub fn sent(&self, id: u64, type_url: &str, version: &str) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.streams.lock() {
            if let Some(p) = s.get_mut(&id) {
                p.sent.insert(type_url.into(), version.into());
            }
        }
    }

    /// Forgets a stream.
    pub fn close(&self, id: u64) {
        if let Ok(mut s) = self.streams.lock() {
            s.remove(&id);
        }
    }

    /// Records an ACK.
    pub fn ack(&self, id: u64, type_url: &str, version: &str) {
        self.acks.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.streams.lock() {
            if let Some(p) = s.get_mut(&id) {
                p.acked.insert(type_url.into(), version.into());
                p.nacked.remove(type_url);
            }
        }
    }

    /// Records a NACK.
    pub fn nack(&self, id: u64, type_url: &str, error: &str) {
        self.nacks.fetch_add(1, Ordering::Relaxed);
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

    /// Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let streams = self.proxies();
        let agents = streams.iter().filter(|p| p.protocol == "nds").count();
        let n = streams.len() - agents;
        format!(
            "# TYPE isthmus_xds_connected_proxies gauge\nisthmus_xds_connected_proxies {n}\n\
             # HELP isthmus_nds_connected_agents Agents following the name table (their pods' DNS).\n\
             # TYPE isthmus_nds_connected_agents gauge\nisthmus_nds_connected_agents {agents}\n\
             # TYPE isthmus_xds_pushes_total counter\nisthmus_xds_pushes_total {}\n\
             # TYPE isthmus_xds_acks_total counter\nisthmus_xds_acks_total {}\n\
             # TYPE isthmus_xds_nacks_total counter\nisthmus_xds_nacks_total {}\n\
             # HELP isthmus_xds_refused_streams_total ADS streams refused: no workload certificate, or one for another identity than the node claims.\n\
             # TYPE isthmus_xds_refused_streams_total counter\nisthmus_xds_refused_streams_total {}\n",
            self.pushes.load(Ordering::Relaxed),
            self.acks.load(Ordering::Relaxed),
            self.nacks.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed)
        )
    }
}
