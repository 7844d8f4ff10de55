//! The mesh page on the monitoring port (`/`, its data at `/debug/mesh`): clusters,
//! networks, gateways, services, each proxy's sync state, and the live request rate, error
//! rate and p99 between workloads, from Istio's workload metrics that the control plane
//! scrapes from its proxies' 15090 ports while someone looks at the page. The page is one
//! file built into the binary: no outside script or style.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use isthmus_model::MeshSnapshot;
use isthmus_xds::XdsStatus;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The page.
pub const PAGE: &str = include_str!("mesh_page.html");

/// The largest metrics page read from one proxy.
const MAX_BODY: usize = 16 << 20;

/// A workload: `cluster/namespace/workload`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    /// Cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Workload name.
    pub workload: String,
}

/// One edge's counts so far (cumulative, as the counters are).
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    requests: f64,
    errors: f64,
    /// Duration bucket upper bound (ms) -> cumulative count.
    buckets: BTreeMap<u64, f64>,
}

/// An edge: who called whom, for which service.
type EdgeKey = (Workload, Workload, String);

/// One edge as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    /// The caller.
    pub source: Workload,
    /// The called.
    pub destination: Workload,
    /// The service host called.
    pub service: String,
    /// Requests per second over the last scrape interval.
    pub rps: f64,
    /// The share of them answered 5xx (0 to 1).
    pub error_rate: f64,
    /// The 99th percentile of their duration (ms), from the histogram's buckets.
    pub p99_ms: Option<f64>,
}

/// Reads a Prometheus label set (`{a="x",b="y\"z"}`), escapes undone.
fn labels(text: &str) -> Option<HashMap<String, String>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = HashMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').trim().to_string();
        if key.is_empty() {
            return Some(out);
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key, value);
    }
}

fn workload(l: &HashMap<String, String>, side: &str) -> Workload {
    let get = |k: &str| {
        l.get(&format!("{side}_{k}"))
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    };
    Workload {
        cluster: get("cluster"),
        namespace: get("workload_namespace"),
        workload: get("workload"),
    }
}

/// Adds one proxy's `istio_requests_total` and duration buckets to `into`, by edge. A
/// request reported by both sides is counted once: as its source reported it, or, when
/// the source is not a proxy of `own` clusters, as its destination did.
fn add_scrape(text: &str, own: &BTreeSet<String>, into: &mut HashMap<EdgeKey, Totals>) {
    for line in text.lines() {
        let (name, rest) = match line.split_once('{') {
            Some((n, r)) => (n, r),
            None => continue,
        };
        let is_requests = name == "istio_requests_total";
        let is_bucket = name == "istio_request_duration_milliseconds_bucket";
        if !is_requests && !is_bucket {
            continue;
        }
        let Some((set, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(l) = labels(&format!("{{{set}}}")) else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let source = workload(&l, "source");
        let counted = match l.get("reporter").map(String::as_str) {
            Some("source") => true,
            Some("destination") => !own.contains(&source.cluster),
            _ => false,
        };
        if !counted {
            continue;
        }
        let key = (
            source,
            workload(&l, "destination"),
            l.get("destination_service")
                .cloned()
                .unwrap_or_else(|| "unknown".into()),
        );
        let t = into.entry(key).or_default();
        if is_requests {
            t.requests += value;
            if l.get("response_code").is_some_and(|c| c.starts_with('5')) {
                t.errors += value;
            }
        } else if let Some(le) = l.get("le") {
            let bound = if le == "+Inf" {
                u64::MAX
            } else {
                le.parse::<f64>().map_or(u64::MAX, |b| b as u64)
            };
            *t.buckets.entry(bound).or_default() += value;
        }
    }
}

/// The 99th percentile from cumulative bucket counts: the upper bound of the first bucket
/// that holds 99 % of them (`None` without requests; the largest finite bound when it is
/// the +Inf bucket).
fn p99(buckets: &BTreeMap<u64, f64>) -> Option<f64> {
    let total = buckets
        .get(&u64::MAX)
        .copied()
        .or_else(|| buckets.values().last().copied())?;
    if total <= 0.0 {
        return None;
    }
    let finite_max = buckets.keys().filter(|b| **b != u64::MAX).max().copied();
    buckets
        .iter()
        .find(|(_, c)| **c >= 0.99 * total)
        .map(|(b, _)| if *b == u64::MAX { finite_max.unwrap_or(0) } else { *b } as f64)
}

/// The edges between two scrapes `dt` apart (counters that went down, a restarted proxy,
/// count from zero).
fn edges(before: &HashMap<EdgeKey, Totals>, now: &HashMap<EdgeKey, Totals>, dt: f64) -> Vec<Edge> {
    let mut out: Vec<Edge> = now
        .iter()
        .map(|(key, t)| {
            let prev = before.get(key).cloned().unwrap_or_default();
            let reset = t.requests < prev.requests;
            let base = if reset { Totals::default() } else { prev };
            let requests = t.requests - base.requests;
            let errors = (t.errors - base.errors).max(0.0);
            let buckets: BTreeMap<u64, f64> = t
                .buckets
                .iter()
                .map(|(b, c)| {
                    (
                        *b,
                        (c - base.buckets.get(b).copied().unwrap_or(0.0)).max(0.0),
                    )
                })
                .collect();
            Edge {
                source: key.0.clone(),
                destination: key.1.clone(),
                service: key.2.clone(),
                rps: if dt > 0.0 { requests / dt } else { 0.0 },
                error_rate: if requests > 0.0 {
                    errors / requests
                } else {
                    0.0
                },
                p99_ms: p99(&buckets),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.source, &a.destination, &a.service).cmp(&(&b.source, &b.destination, &b.service))
    });
    out
}

/// The last two scrapes.
#[derive(Debug, Default)]
struct Scrapes {
    at: Option<Instant>,
    totals: HashMap<EdgeKey, Totals>,
    edges: Vec<Edge>,
    targets: usize,
    failed: usize,
}

/// Scrapes the proxies for the page, at most every [`MeshView::INTERVAL`].
pub struct MeshView {
    client: Client<HttpConnector, Empty<Bytes>>,
    scrapes: tokio::sync::Mutex<Scrapes>,
    last: Mutex<Option<Instant>>,
}

impl Default for MeshView {
    fn default() -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(1)));
        MeshView {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(http),
            scrapes: tokio::sync::Mutex::new(Scrapes::default()),
            last: Mutex::new(None),
        }
    }
}

/// The body of `GET url` within 2 s, if it answers 2xx.
async fn get(client: Client<HttpConnector, Empty<Bytes>>, url: String) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    let work = async move {
        let resp = client.get(uri).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .ok()?;
        String::from_utf8(body.to_bytes().to_vec()).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .ok()
        .flatten()
}

/// The address a proxy's metrics are scraped at: its node id's IP, port 15090.
fn metrics_url(node_id: &str) -> Option<String> {
    let ip: std::net::IpAddr = node_id.split('~').nth(1)?.parse().ok()?;
    Some(match ip {
        std::net::IpAddr::V4(v4) => format!("http://{v4}:15090/stats/prometheus"),
        std::net::IpAddr::V6(v6) => format!("http://[{v6}]:15090/stats/prometheus"),
    })
}

impl MeshView {
    /// How often the proxies are scraped at most.
    pub const INTERVAL: Duration = Duration::from_secs(2);

    /// Scrapes every connected proxy, unless the last scrape is more recent than
    /// [`Self::INTERVAL`].
    async fn refresh(&self, status: &XdsStatus) {
        {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < Self::INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let proxies = status.proxies();
        let own: BTreeSet<String> = proxies.iter().map(|p| p.cluster.clone()).collect();
        let urls: BTreeSet<String> = proxies
            .iter()
            .filter(|p| p.protocol != "nds")
            .filter_map(|p| metrics_url(&p.node_id))
            .collect();
        use futures::StreamExt;
        let client = self.client.clone();
        let pages: Vec<Option<String>> = futures::stream::iter(urls.clone())
            .map(move |u| get(client.clone(), u))
            .buffer_unordered(32)
            .collect()
            .await;
        let mut totals = HashMap::new();
        let failed = pages.iter().filter(|p| p.is_none()).count();
        for page in pages.iter().flatten() {
            add_scrape(page, &own, &mut totals);
        }
        let now = Instant::now();
        let mut s = self.scrapes.lock().await;
        let dt = s.at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        s.edges = if s.at.is_some() {
            edges(&s.totals, &totals, dt)
        } else {
            Vec::new()
        };
        s.at = Some(now);
        s.totals = totals;
        s.targets = urls.len();
        s.failed = failed;
    }

    /// The page's data.
    pub async fn data(&self, snapshot: &MeshSnapshot, status: &XdsStatus) -> MeshData {
        self.refresh(status).await;
        let s = self.scrapes.lock().await;
        MeshData::new(snapshot, status, &s)
    }
}

/// A proxy's sync state per type, as `proxy-status` shows it.
#[derive(Debug, Serialize)]
pub struct ProxyRow {
    /// Node id.
    pub node_id: String,
    /// Its cluster.
    pub cluster: String,
    /// `cds` -> `SYNCED`, `STALE` (sent, not yet acknowledged) or `NACKED`.
    pub sync: BTreeMap<&'static str, &'static str>,
}

/// A service and the clusters that have its endpoints.
#[derive(Debug, Serialize)]
pub struct ServiceRow {
    /// Host.
    pub host: String,
    /// Clusters with endpoints.
    pub clusters: Vec<String>,
    /// Endpoints.
    pub endpoints: usize,
}

/// A network gateway.
#[derive(Debug, Serialize)]
pub struct GatewayRow {
    /// Network.
    pub network: String,
    /// Address and port.
    pub address: String,
    /// In rotation.
    pub up: bool,
}

/// What `/debug/mesh` answers.
#[derive(Debug, Serialize)]
pub struct MeshData {
    /// The control plane's cluster and network.
    pub cluster: String,
    /// Its network.
    pub network: String,
    /// Snapshot version.
    pub version: u64,
    /// Clusters by network.
    pub networks: BTreeMap<String, BTreeSet<String>>,
    /// Gateways.
    pub gateways: Vec<GatewayRow>,
    /// Services.
    pub services: Vec<ServiceRow>,
    /// Edges with traffic, with their rates.
    pub edges: Vec<Edge>,
    /// Connected proxies.
    pub proxies: Vec<ProxyRow>,
    /// Proxies scraped, and how many of them did not answer.
    pub scraped: (usize, usize),
    /// True until two scrapes give rates.
    pub measuring: bool,
}

impl MeshData {
    fn new(snapshot: &MeshSnapshot, status: &XdsStatus, s: &Scrapes) -> MeshData {
        let mut networks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let services: Vec<ServiceRow> = snapshot
            .services
            .values()
            .map(|svc| {
                let mut clusters = BTreeSet::new();
                for e in svc.endpoints.iter() {
                    clusters.insert(e.origin.cluster.to_string());
                    networks
                        .entry(e.origin.network.to_string())
                        .or_default()
                        .insert(e.origin.cluster.to_string());
                }
                ServiceRow {
                    host: svc.hostname.clone(),
                    clusters: clusters.into_iter().collect(),
                    endpoints: svc.endpoints.iter().count(),
                }
            })
            .collect();
        networks
            .entry(snapshot.local_network.clone())
            .or_default()
            .insert(snapshot.local_cluster.clone());
        // meshNetworks names the clusters of each network even when none of their
        // endpoints is known here.
        for (name, net) in &snapshot.networks.networks {
            let clusters = networks.entry(name.clone()).or_default();
            clusters.extend(net.endpoints.iter().filter_map(|e| e.from_registry.clone()));
        }
        networks.retain(|n, _| !n.is_empty());
        let mut gateways: Vec<GatewayRow> = snapshot
            .network_gateways
            .iter()
            .flat_map(|(net, gws)| {
                gws.iter().map(move |g| GatewayRow {
                    network: net.clone(),
                    address: format!("{}:{}", g.address, g.port),
                    up: !snapshot.gateway_health.is_down(&g.address, g.port),
                })
            })
            .collect();
        // Gateways the endpoints of ServiceEntries go through (Istio's `*.global` style):
        // endpoints of other networks, by address.
        let mut seen: BTreeSet<String> = gateways.iter().map(|g| g.address.clone()).collect();
        for svc in snapshot.services.values() {
            for e in svc.endpoints.iter() {
                let net = &e.origin.network;
                if net.is_empty() || **net == *snapshot.local_network {
                    continue;
                }
                let address = e.address.to_string();
                if seen.insert(address.clone()) {
                    gateways.push(GatewayRow {
                        network: net.to_string(),
                        up: true,
                        address,
                    });
                }
            }
        }
        let proxies = status
            .proxies()
            .into_iter()
            .filter(|p| p.protocol != "nds")
            .map(|p| {
                let sync = p
                    .sent
                    .iter()
                    .map(|(t, v)| {
                        let state = if p.nacked.contains_key(t) {
                            "NACKED"
                        } else if p.acked.get(t) == Some(v) {
                            "SYNCED"
                        } else {
                            "STALE"
                        };
                        (isthmus_xds::status::type_label(t), state)
                    })
                    .collect();
                ProxyRow {
                    node_id: p.node_id,
                    cluster: p.cluster,
                    sync,
                }
            })
            .collect();
        MeshData {
            cluster: snapshot.local_cluster.clone(),
            network: snapshot.local_network.clone(),
            version: snapshot.version,
            networks,
            gateways,
            services,
            edges: s.edges.clone(),
            proxies,
            scraped: (s.targets, s.failed),
            measuring: s.at.is_none() || s.edges.is_empty() && s.totals.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = concat!(
        "# TYPE istio_requests_total counter\n",
        "istio_requests_total{destination_cluster=\"cluster2\",destination_service=\"httpbin.bar.global\",destination_workload=\"httpbin\",destination_workload_namespace=\"bar\",reporter=\"source\",response_code=\"200\",source_cluster=\"cluster1\",source_workload=\"sleep\",source_workload_namespace=\"foo\"} 90\n",
        "istio_requests_total{destination_cluster=\"cluster2\",destination_service=\"httpbin.bar.global\",destination_workload=\"httpbin\",destination_workload_namespace=\"bar\",reporter=\"source\",response_code=\"503\",source_cluster=\"cluster1\",source_workload=\"sleep\",source_workload_namespace=\"foo\"} 10\n",
        "istio_requests_total{destination_cluster=\"cluster1\",destination_service=\"unknown\",destination_workload=\"sleep\",destination_workload_namespace=\"foo\",reporter=\"destination\",response_code=\"200\",source_cluster=\"cluster1\",source_workload=\"other\",source_workload_namespace=\"foo\"} 5\n",
        "istio_request_duration_milliseconds_bucket{destination_cluster=\"cluster2\",destination_service=\"httpbin.bar.global\",destination_workload=\"httpbin\",destination_workload_namespace=\"bar\",reporter=\"source\",response_code=\"200\",source_cluster=\"cluster1\",source_workload=\"sleep\",source_workload_namespace=\"foo\",le=\"5\"} 80\n",
        "istio_request_duration_milliseconds_bucket{destination_cluster=\"cluster2\",destination_service=\"httpbin.bar.global\",destination_workload=\"httpbin\",destination_workload_namespace=\"bar\",reporter=\"source\",response_code=\"200\",source_cluster=\"cluster1\",source_workload=\"sleep\",source_workload_namespace=\"foo\",le=\"25\"} 90\n",
        "istio_request_duration_milliseconds_bucket{destination_cluster=\"cluster2\",destination_service=\"httpbin.bar.global\",destination_workload=\"httpbin\",destination_workload_namespace=\"bar\",reporter=\"source\",response_code=\"200\",source_cluster=\"cluster1\",source_workload=\"sleep\",source_workload_namespace=\"foo\",le=\"+Inf\"} 90\n",
    );

    #[test]
    fn rates_error_share_and_p99_come_from_two_scrapes_and_each_request_counts_once() {
        let own: BTreeSet<String> = ["cluster1".to_string()].into();
        let mut before = HashMap::new();
        let mut now = HashMap::new();
        add_scrape(SCRAPE, &own, &mut now);
        // Ten seconds earlier, nothing had been sent.
        let e = edges(&before, &now, 10.0);
        assert_eq!(
            e.len(),
            1,
            "the destination's own report of a local call is not counted again: {e:?}"
        );
        assert_eq!(e[0].source.workload, "sleep");
        assert_eq!(e[0].destination.cluster, "cluster2");
        assert!((e[0].rps - 10.0).abs() < 1e-9, "{e:?}");
        assert!((e[0].error_rate - 0.1).abs() < 1e-9, "{e:?}");
        assert_eq!(e[0].p99_ms, Some(25.0));
        // A proxy that restarted reports less than before: counted from zero.
        before = now.clone();
        let mut restarted = HashMap::new();
        add_scrape(
            &SCRAPE
                .replace("} 90\n", "} 9\n")
                .replace("} 10\n", "} 1\n")
                .replace("} 80\n", "} 8\n"),
            &own,
            &mut restarted,
        );
        let e = edges(&before, &restarted, 1.0);
        assert!((e[0].rps - 10.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn labels_with_escapes_are_read_and_node_ids_give_metrics_urls() {
        let l = labels(r#"{a="x",b="q\"uote",c="back\\slash"}"#).expect("labels");
        assert_eq!(l["b"], "q\"uote");
        assert_eq!(l["c"], "back\\slash");
        assert_eq!(
            metrics_url("sidecar~10.10.0.11~sleep-0.foo~foo.svc.cluster.local").as_deref(),
            Some("http://10.10.0.11:15090/stats/prometheus")
        );
        assert_eq!(metrics_url("nonsense"), None);
    }
}
