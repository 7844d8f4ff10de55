//! The xDS load client: N simulated Envoys, each on its own TLS connection to a real control
//! plane, subscribing to CDS, EDS, LDS and RDS (state of the world or delta) and ACKing every
//! response as Envoy does. It reports when each proxy first held every type, the bytes
//! received, and when each saw a later snapshot version (after a change the caller makes).

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use futures::StreamExt;
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The four types, in Envoy's order.
pub const TYPES: [&str; 4] = [
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
];

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Control plane `host:port`.
    pub address: String,
    /// The mesh root (PEM), to check the control plane.
    pub root_pem: String,
    /// The proxies' workload certificate chain and key (PEM), for the identity of
    /// [`load_identity`].
    pub identity: (String, String),
    /// Number of proxies.
    pub proxies: usize,
    /// Delta instead of state of the world.
    pub delta: bool,
    /// `CLUSTER_ID` the proxies claim.
    pub cluster: String,
    /// Reconnect after a stream ends or fails, as Envoy does (100 ms doubling to 1 s, with
    /// jitter), reporting [`Event::Reset`]; without it a proxy reports [`Event::Failed`] and
    /// stops.
    pub reconnect: bool,
}

/// Something a proxy saw.
#[derive(Debug, Clone)]
pub enum Event {
    /// Proxy `0` holds every type at snapshot version `1`.
    Full(usize, u64, Instant),
    /// Proxy `0` got an EDS response of snapshot version `1`.
    Endpoints(usize, u64, Instant),
    /// Proxy `0`'s stream failed.
    Failed(usize),
    /// Proxy `0`'s stream ended or failed (`1` says why) and it is reconnecting: what it
    /// held counts as gone until its next `Full` (versions start again with a restarted
    /// control plane).
    Reset(usize, Instant, String),
}

/// The running load: events arrive on `events`; `bytes` counts payload bytes received.
pub struct Load {
    /// Events from every proxy.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Response bytes received (encoded protobuf).
    pub bytes: Arc<AtomicU64>,
    /// Responses received.
    pub responses: Arc<AtomicU64>,
}

/// The namespace every simulated proxy's node id names.
pub const LOAD_NAMESPACE: &str = "ns-0";
/// The service account every simulated proxy claims in its metadata.
pub const LOAD_SERVICE_ACCOUNT: &str = "load";

/// The SPIFFE identity the simulated proxies' certificate must carry in `trust_domain`.
pub fn load_identity(trust_domain: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{LOAD_NAMESPACE}/sa/{LOAD_SERVICE_ACCOUNT}")
}

fn node(i: usize, cluster: &str) -> Node {
    let ip = format!("10.200.{}.{}", (i / 250) % 250, i % 250 + 1);
    let mut fields = std::collections::HashMap::new();
    fields.insert(
        "CLUSTER_ID".to_string(),
        Value {
            kind: Some(Kind::StringValue(cluster.to_string())),
        },
    );
    fields.insert(
        "SERVICE_ACCOUNT".to_string(),
        Value {
            kind: Some(Kind::StringValue(LOAD_SERVICE_ACCOUNT.to_string())),
        },
    );
    Node {
        id: format!("sidecar~{ip}~load-{i}.{LOAD_NAMESPACE}~{LOAD_NAMESPACE}.svc.cluster.local"),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

async fn channel(cfg: &LoadConfig) -> Result<Channel, String> {
    let (chain, key) = &cfg.identity;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cfg.root_pem))
        .identity(Identity::from_pem(chain, key))
        .domain_name(isthmus_ca::CONTROL_PLANE_DNS);
    Channel::from_shared(format!("https://{}", cfg.address))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// Starts every proxy; returns at once.
pub fn start(cfg: LoadConfig) -> Load {
    let (tx, events) = mpsc::unbounded_channel();
    let bytes = Arc::new(AtomicU64::new(0));
    let responses = Arc::new(AtomicU64::new(0));
    for i in 0..cfg.proxies {
        let cfg = cfg.clone();
        let tx = tx.clone();
        let bytes = bytes.clone();
        let responses = responses.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                let opened = Instant::now();
                let r = if cfg.delta {
                    delta(i, &cfg, &tx, &bytes, &responses).await
                } else {
                    sotw(i, &cfg, &tx, &bytes, &responses).await
                };
                if !cfg.reconnect {
                    if r.is_err() {
                        let _ = tx.send(Event::Failed(i));
                    }
                    return;
                }
                let why = r
                    .err()
                    .unwrap_or_else(|| "the control plane closed the stream".into());
                if tx.send(Event::Reset(i, Instant::now(), why)).is_err() {
                    return;
                }
                if opened.elapsed() > Duration::from_secs(5) {
                    delay = Duration::from_millis(100);
                }
                let jitter = Duration::from_millis((i as u64 * 7919) % 100);
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        });
    }
    Load {
        events,
        bytes,
        responses,
    }
}

async fn sotw(
    i: usize,
    cfg: &LoadConfig,
    events: &mpsc::UnboundedSender<Event>,
    bytes: &AtomicU64,
    responses: &AtomicU64,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel(16);
    // Clusters, listeners and routes by wildcard; endpoints by the names of the EDS clusters,
    // once the clusters are known, as Envoy does (and every endpoint ACK repeats the names).
    for (k, t) in TYPES.iter().enumerate().filter(|(k, _)| *k != 1) {
        tx.send(LeanRequest {
            node: (k == 0).then(|| node(i, &cfg.cluster)),
            type_url: t.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let mut stream =
        open::<LeanRequest, LeanResponse>(cfg, SOTW_PATH, ReceiverStream::new(rx)).await?;
    let mut versions = [0u64; 4];
    let mut full_at = 0u64;
    let mut eds_names: Vec<prost::bytes::Bytes> = Vec::new();
    let mut eds_nonce = String::new();
    let mut eds_version = String::new();
    while let Some(resp) = stream.next().await {
        let resp = resp.map_err(|e| e.to_string())?;
        let now = Instant::now();
        bytes.fetch_add(resp.encoded_len() as u64, Ordering::Relaxed);
        responses.fetch_add(1, Ordering::Relaxed);
        let version: u64 = resp.version_info.parse().unwrap_or(0);
        let k = TYPES.iter().position(|t| *t == resp.type_url);
        if let Some(k) = k {
            versions[k] = version;
            if k == 1 {
                let _ = events.send(Event::Endpoints(i, version, now));
            }
        }
        let min = versions.iter().copied().min().unwrap_or(0);
        if min > full_at {
            full_at = min;
            let _ = events.send(Event::Full(i, min, now));
        }
        if k == Some(1) {
            eds_nonce.clone_from(&resp.nonce);
            eds_version.clone_from(&resp.version_info);
        }
        tx.send(LeanRequest {
            type_url: resp.type_url.clone(),
            version_info: resp.version_info.clone(),
            response_nonce: resp.nonce.clone(),
            resource_names: if k == Some(1) {
                eds_names.clone()
            } else {
                Vec::new()
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        if k == Some(0) {
            let names: Vec<prost::bytes::Bytes> = eds_cluster_names(&resp.resources)
                .into_iter()
                .map(prost::bytes::Bytes::from)
                .collect();
            if names != eds_names {
                eds_names = names;
                tx.send(LeanRequest {
                    type_url: TYPES[1].to_string(),
                    version_info: eds_version.clone(),
                    response_nonce: eds_nonce.clone(),
                    resource_names: eds_names.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// A `DiscoveryResponse` as the simulated proxy reads it: the resources are left encoded
/// (slices of the received buffer), so that the load client spends its share of the two
/// cores on what it must do (TLS, framing, the names it asks for) and not on copying
/// 3 MB per proxy that nothing looks at. Field tags are Envoy's.
#[derive(Clone, PartialEq, prost::Message)]
struct LeanResponse {
    #[prost(string, tag = "1")]
    version_info: String,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    resources: Vec<prost::bytes::Bytes>,
    #[prost(string, tag = "4")]
    type_url: String,
    #[prost(string, tag = "5")]
    nonce: String,
}

/// A `DiscoveryRequest` as the simulated proxy writes it: the same bytes on the wire, with
/// the names it repeats in every endpoint ACK kept as shared buffers rather than cloned
/// strings (the control plane reads them as strings).
#[derive(Clone, PartialEq, prost::Message)]
struct LeanRequest {
    #[prost(string, tag = "1")]
    version_info: String,
    #[prost(message, optional, tag = "2")]
    node: Option<Node>,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    resource_names: Vec<prost::bytes::Bytes>,
    #[prost(string, tag = "4")]
    type_url: String,
    #[prost(string, tag = "5")]
    response_nonce: String,
}

/// A `DeltaDiscoveryResponse`, read the same way.
#[derive(Clone, PartialEq, prost::Message)]
struct LeanDeltaResponse {
    #[prost(string, tag = "1")]
    system_version_info: String,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    resources: Vec<prost::bytes::Bytes>,
    #[prost(string, tag = "4")]
    type_url: String,
    #[prost(string, tag = "5")]
    nonce: String,
    #[prost(string, repeated, tag = "6")]
    removed_resources: Vec<String>,
}

/// The value of an encoded `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct AnyValue {
    #[prost(bytes = "bytes", tag = "2")]
    value: prost::bytes::Bytes,
}

/// Opens one ADS stream on its own connection.
async fn open<Req, Resp>(
    cfg: &LoadConfig,
    path: &'static str,
    requests: ReceiverStream<Req>,
) -> Result<tonic::Streaming<Resp>, String>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let mut grpc =
        tonic::client::Grpc::new(channel(cfg).await?).max_decoding_message_size(256 << 20);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.streaming(
        tonic::Request::new(requests),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
    .map_err(|e| e.to_string())
}

/// The head of a Cluster: its name, discovery type and EDS service name (other fields are
/// skipped while decoding, so reading 10,000 clusters stays cheap).
#[derive(Clone, PartialEq, prost::Message)]
struct ClusterHead {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, tag = "2")]
    discovery_type: i32,
    #[prost(message, optional, tag = "3")]
    eds: Option<EdsHead>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EdsHead {
    #[prost(string, tag = "2")]
    service_name: String,
}

/// `envoy.config.cluster.v3.Cluster.DiscoveryType.EDS`.
const EDS: i32 = 3;

/// The names Envoy subscribes to for endpoints: each EDS cluster's service name, or its
/// own name when that is empty.
fn eds_cluster_names(clusters: &[prost::bytes::Bytes]) -> Vec<String> {
    clusters
        .iter()
        .filter_map(|a| AnyValue::decode(a.clone()).ok())
        .filter_map(|a| ClusterHead::decode(a.value).ok())
        .filter(|c| c.discovery_type == EDS)
        .map(|c| match c.eds {
            Some(e) if !e.service_name.is_empty() => e.service_name,
            _ => c.name,
        })
        .collect()
}

async fn delta(
    i: usize,
    cfg: &LoadConfig,
    events: &mpsc::UnboundedSender<Event>,
    bytes: &AtomicU64,
    responses: &AtomicU64,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel(16);
    for (k, t) in TYPES.iter().enumerate() {
        // CDS and LDS are wildcard by default; EDS and RDS subscribe to everything.
        let subscribe = if k == 1 || k == 3 {
            vec!["*".to_string()]
        } else {
            Vec::new()
        };
        tx.send(DeltaDiscoveryRequest {
            node: (k == 0).then(|| node(i, &cfg.cluster)),
            type_url: t.to_string(),
            resource_names_subscribe: subscribe,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let mut stream =
        open::<DeltaDiscoveryRequest, LeanDeltaResponse>(cfg, DELTA_PATH, ReceiverStream::new(rx))
            .await?;
    let mut versions = [0u64; 4];
    let mut full_at = 0u64;
    while let Some(resp) = stream.next().await {
        let resp = resp.map_err(|e| e.to_string())?;
        let now = Instant::now();
        bytes.fetch_add(resp.encoded_len() as u64, Ordering::Relaxed);
        responses.fetch_add(1, Ordering::Relaxed);
        let version: u64 = resp.system_version_info.parse().unwrap_or(0);
        if let Some(k) = TYPES.iter().position(|t| *t == resp.type_url) {
            versions[k] = version;
            if k == 1 {
                let _ = events.send(Event::Endpoints(i, version, now));
            }
        }
        let min = versions.iter().copied().min().unwrap_or(0);
        if min > full_at {
            full_at = min;
            let _ = events.send(Event::Full(i, min, now));
        }
        tx.send(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Waits until every proxy holds every type (`Full`), or `timeout`; returns the time each
/// took from `start` (`None` for those that never did) and the version they hold.
pub async fn wait_full(
    load: &mut Load,
    proxies: usize,
    start: Instant,
    timeout: Duration,
) -> (Vec<Option<Duration>>, u64) {
    let mut done: Vec<Option<Duration>> = vec![None; proxies];
    let mut version = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut remaining = proxies;
    while remaining > 0 {
        match tokio::time::timeout_at(deadline, load.events.recv()).await {
            Ok(Some(Event::Full(i, v, at))) if done[i].is_none() => {
                done[i] = Some(at - start);
                version = version.max(v);
                remaining -= 1;
            }
            Ok(Some(Event::Failed(i))) if done[i].is_none() => remaining -= 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    (done, version)
}

/// Waits until every proxy got endpoints of a version above `above`; returns each delay
/// from `changed_at`.
pub async fn wait_endpoints(
    load: &mut Load,
    proxies: usize,
    above: u64,
    changed_at: Instant,
    timeout: Duration,
) -> Vec<Option<Duration>> {
    let mut done: Vec<Option<Duration>> = vec![None; proxies];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut remaining = proxies;
    while remaining > 0 {
        match tokio::time::timeout_at(deadline, load.events.recv()).await {
            Ok(Some(Event::Endpoints(i, v, at))) if v > above && done[i].is_none() => {
                done[i] = Some(at.saturating_duration_since(changed_at));
                remaining -= 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
    };
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::google::protobuf::Any;

    fn any(c: Cluster) -> prost::bytes::Bytes {
        Any {
            type_url: TYPES[0].into(),
            value: c.encode_to_vec(),
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn lean_request_is_a_discovery_request_on_the_wire() {
        let lean = LeanRequest {
            version_info: "2".into(),
            node: Some(node(3, "cluster1")),
            resource_names: vec!["a".into(), "outbound|80||b".into()],
            type_url: TYPES[1].into(),
            response_nonce: "9".into(),
        };
        let got = DiscoveryRequest::decode(lean.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(got.version_info, "2");
        assert_eq!(got.node, lean.node);
        assert_eq!(got.resource_names, ["a", "outbound|80||b"]);
        assert_eq!(got.type_url, TYPES[1]);
        assert_eq!(got.response_nonce, "9");
    }

    #[test]
    fn endpoints_are_asked_for_by_eds_cluster_as_envoy_does() {
        let eds = |name: &str, service: &str| Cluster {
            name: name.into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: service.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let static_cluster = Cluster {
            name: "BlackHoleCluster".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
            ..Default::default()
        };
        let got = eds_cluster_names(&[
            any(eds(
                "outbound|80||a.ns.svc.cluster.local",
                "outbound|80||a.ns.svc.cluster.local",
            )),
            any(static_cluster),
            any(eds("b", "")),
            any(eds("c", "c-service")),
        ]);
        assert_eq!(
            got,
            ["outbound|80||a.ns.svc.cluster.local", "b", "c-service"]
        );
    }
}
