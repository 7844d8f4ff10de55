//! The xDS load client: N simulated Envoys, each on its own connection (TLS with a workload
//! certificate, or plaintext for istiod's port 15010) to a real control plane, subscribing to
//! CDS, EDS, LDS and RDS (state of the world or delta) as Envoy does: clusters and listeners
//! by wildcard, endpoints by the names of the EDS clusters, routes by the names the HTTP
//! connection managers give, ACKing every response. It reports when each proxy first held
//! every type, the bytes received, and when each saw a later snapshot version (after a
//! change the caller makes).
//!
//! Versions: Isthmus's are numbers; istiod's are strings such as `2026-12-04T02:40:03Z/12`.
//! A version that is not a number is given an ordinal in the order the load first saw it
//! ([`VersionOrder`]), so "a version above the one held" means the same for both.

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

/// The TLS side of a connection to the control plane.
#[derive(Debug, Clone)]
pub struct LoadTls {
    /// The mesh root (PEM), to check the control plane.
    pub root_pem: String,
    /// The proxies' workload certificate chain and key (PEM), for the identity of
    /// [`load_identity`].
    pub identity: (String, String),
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Control plane `host:port`.
    pub address: String,
    /// TLS with a workload certificate (Isthmus's port 15012), or `None` for plaintext
    /// (istiod's port 15010, which asks for no credential).
    pub tls: Option<LoadTls>,
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
    /// On-demand scoping: per proxy, the names its pod resolved. Each proxy then announces
    /// DNS capture; its agent's stream, naming them, is opened by [`start_agents`] before.
    pub wanted: Option<Arc<Vec<Vec<String>>>>,
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

/// Orders snapshot versions: a number is itself; any other string gets the next ordinal the
/// first time a proxy sees it (istiod's versions are timestamps with a push counter, first
/// seen in the order they were made).
#[derive(Debug, Default)]
pub struct VersionOrder(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl VersionOrder {
    /// The order of `version`: above every version seen before it.
    pub fn ordinal(&self, version: &str) -> u64 {
        if let Ok(n) = version.parse() {
            return n;
        }
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let next = seen.len() as u64 + 1;
        *seen.entry(version.to_string()).or_insert(next)
    }
}

/// The running load: events arrive on `events`; `bytes` counts payload bytes received.
pub struct Load {
    /// Events from every proxy.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Response bytes received (encoded protobuf).
    pub bytes: Arc<AtomicU64>,
    /// Responses received.
    pub responses: Arc<AtomicU64>,
    /// Streams that ended or were refused and were opened again (with `reconnect`).
    pub resets: Arc<AtomicU64>,
}

/// The namespace every simulated proxy's node id names.
pub const LOAD_NAMESPACE: &str = "ns-0";
/// The service account every simulated proxy claims in its metadata.
pub const LOAD_SERVICE_ACCOUNT: &str = "load";

/// The SPIFFE identity the simulated proxies' certificate must carry in `trust_domain`.
pub fn load_identity(trust_domain: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{LOAD_NAMESPACE}/sa/{LOAD_SERVICE_ACCOUNT}")
}

fn node(i: usize, cluster: &str, dns_capture: bool) -> Node {
    let ip = format!("10.200.{}.{}", (i / 250) % 250, i % 250 + 1);
    let mut fields = std::collections::HashMap::new();
    if dns_capture {
        fields.insert(
            "DNS_CAPTURE".to_string(),
            Value {
                kind: Some(Kind::StringValue("true".to_string())),
            },
        );
    }
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
    // What istio-proxy's agent also sends, so that istiod treats the node as a current
    // sidecar in its namespace (Isthmus reads the namespace from the node id).
    for (k, v) in [("NAMESPACE", LOAD_NAMESPACE), ("ISTIO_VERSION", "1.31.0")] {
        fields.insert(
            k.to_string(),
            Value {
                kind: Some(Kind::StringValue(v.to_string())),
            },
        );
    }
    Node {
        id: format!("sidecar~{ip}~load-{i}.{LOAD_NAMESPACE}~{LOAD_NAMESPACE}.svc.cluster.local"),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

/// The ring provider with the TLS 1.3 cipher suites in the order Envoy offers them
/// (BoringSSL's, on a machine with AES instructions): AES-128-GCM, AES-256-GCM, then
/// ChaCha20-Poly1305. rustls's own order puts AES-256-GCM first; a server that follows the
/// client's order (rustls's default, Isthmus's port 15012) would then pay for 14 AES rounds
/// where a real proxy's connection pays for 10.
fn envoy_cipher_order() -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite as S;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        S::TLS13_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384 => 1,
        S::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        _ => 3,
    });
    provider
}

/// Makes [`envoy_cipher_order`] the process's provider, which tonic's client TLS takes,
/// once; a provider some other part of the process installed first stays (and is said).
fn offer_ciphers_as_envoy() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::install_default(envoy_cipher_order()).is_err() {
            eprintln!("a TLS provider was installed before the load client's: the simulated proxies offer its cipher order, not Envoy's");
        }
    });
}

async fn channel(cfg: &LoadConfig) -> Result<Channel, String> {
    let Some(t) = &cfg.tls else {
        return Channel::from_shared(format!("http://{}", cfg.address))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string());
    };
    offer_ciphers_as_envoy();
    let (chain, key) = &t.identity;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&t.root_pem))
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

/// What every proxy of one load shares: the counters and the order of versions.
struct Shared {
    events: mpsc::UnboundedSender<Event>,
    resets: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    responses: Arc<AtomicU64>,
    versions: Arc<VersionOrder>,
}

/// Starts every proxy; returns at once.
pub fn start(cfg: LoadConfig) -> Load {
    let (tx, events) = mpsc::unbounded_channel();
    let bytes = Arc::new(AtomicU64::new(0));
    let responses = Arc::new(AtomicU64::new(0));
    let versions = Arc::new(VersionOrder::default());
    let resets = Arc::new(AtomicU64::new(0));
    for i in 0..cfg.proxies {
        let cfg = cfg.clone();
        let shared = Shared {
            events: tx.clone(),
            resets: resets.clone(),
            bytes: bytes.clone(),
            responses: responses.clone(),
            versions: versions.clone(),
        };
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                let opened = Instant::now();
                let r = if cfg.delta {
                    delta(i, &cfg, &shared).await
                } else {
                    sotw(i, &cfg, &shared).await
                };
                if !cfg.reconnect {
                    if r.is_err() {
                        let _ = shared.events.send(Event::Failed(i));
                    }
                    return;
                }
                let why = r
                    .err()
                    .unwrap_or_else(|| "the control plane closed the stream".into());
                shared.resets.fetch_add(1, Ordering::Relaxed);
                if shared
                    .events
                    .send(Event::Reset(i, Instant::now(), why))
                    .is_err()
                {
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
        resets,
    }
}

/// The types asked for by name, and the type whose resources name them: endpoints by the
/// clusters, routes by the listeners.
const NAMED: [(usize, usize); 2] = [(1, 0), (3, 2)];

/// Which snapshot version a proxy holds of each type, and when it first held them all.
#[derive(Default)]
struct Held {
    versions: [u64; 4],
    full_at: u64,
}

impl Held {
    /// Records a response of type `k` at `version`; reports endpoints and a newly complete
    /// set. A named type with no names (no EDS clusters, no RDS listeners) is held at the
    /// version of the type that names nothing.
    fn record(
        &mut self,
        i: usize,
        k: usize,
        version: u64,
        empty: [bool; 4],
        now: Instant,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        self.versions[k] = version;
        if k == 1 {
            let _ = events.send(Event::Endpoints(i, version, now));
        }
        let held = |k: usize| match NAMED.iter().find(|(t, _)| *t == k) {
            Some((_, by)) if empty[k] => self.versions[*by],
            _ => self.versions[k],
        };
        let min = (0..4).map(held).min().unwrap_or(0);
        if min > self.full_at {
            self.full_at = min;
            let _ = events.send(Event::Full(i, min, now));
        }
    }
}

/// The simulated proxies' agents (on-demand scoping), each on its own stream.
pub struct Agents {
    agents: Vec<Agent>,
}

/// One agent: its stream's sender, the names it has sent, and the names the control plane
/// says are in force, as they come.
struct Agent {
    tx: mpsc::Sender<Outgoing<LeanRequest>>,
    names: Vec<String>,
    in_force: mpsc::UnboundedReceiver<(Instant, Vec<String>)>,
}

/// Opens every proxy's agent stream (on-demand scoping, `cfg.wanted`), 50 at a time, as
/// agents do before their Envoy connects: each names what its pod resolved (without the name
/// table, which an agent with DNS capture takes in every mode) and is answered at once. The
/// streams stay open while the returned agents live.
pub async fn start_agents(cfg: &LoadConfig) -> Result<Agents, String> {
    let opened = futures::stream::iter(0..cfg.proxies)
        .map(|i| async move { agent(i, cfg).await.map(|a| (i, a)) })
        .buffer_unordered(50);
    let mut opened = std::pin::pin!(opened);
    let mut agents: Vec<Option<Agent>> = (0..cfg.proxies).map(|_| None).collect();
    while let Some(r) = opened.next().await {
        let (i, a) = r?;
        agents[i] = Some(a);
    }
    Ok(Agents {
        agents: agents.into_iter().flatten().collect(),
    })
}

impl Agents {
    /// Each agent `i` of `lookups` resolves its name (one it had not), all sent at once:
    /// per lookup, the time until the control plane said the agent's Envoy holds the service
    /// (what the pod's lookup waits), or `None` after `limit`.
    pub async fn resolve_all(
        &mut self,
        lookups: &[(usize, String)],
        limit: Duration,
    ) -> Vec<Option<Duration>> {
        let started = Instant::now();
        for (i, name) in lookups {
            let Some(a) = self.agents.get_mut(*i) else {
                continue;
            };
            while a.in_force.try_recv().is_ok() {}
            a.names.push(name.clone());
            let request = LeanRequest {
                type_url: isthmus_dns::demand::DEMAND_TYPE.to_string(),
                resource_names: a
                    .names
                    .iter()
                    .cloned()
                    .map(prost::bytes::Bytes::from)
                    .collect(),
                ..Default::default()
            };
            let _ = a.tx.send(Outgoing::from(request)).await;
        }
        let deadline = tokio::time::Instant::from_std(started + limit);
        let mut out = Vec::with_capacity(lookups.len());
        for (i, name) in lookups {
            let Some(a) = self.agents.get_mut(*i) else {
                out.push(None);
                continue;
            };
            let held = tokio::time::timeout_at(deadline, async {
                while let Some((at, held)) = a.in_force.recv().await {
                    if held.iter().any(|n| n == name) {
                        return Some(at.duration_since(started));
                    }
                }
                None
            })
            .await;
            out.push(held.ok().flatten());
        }
        out
    }
}

/// Proxy `i`'s agent stream: names what its pod resolved and waits for the first answer;
/// then a task passes on every answer's names.
async fn agent(i: usize, cfg: &LoadConfig) -> Result<Agent, String> {
    let names = cfg
        .wanted
        .as_ref()
        .and_then(|w| w.get(i).cloned())
        .unwrap_or_default();
    let (tx, rx) = mpsc::channel(4);
    tx.send(Outgoing::from(LeanRequest {
        node: Some(node(i, &cfg.cluster, true)),
        type_url: isthmus_dns::demand::DEMAND_TYPE.to_string(),
        resource_names: names
            .iter()
            .cloned()
            .map(prost::bytes::Bytes::from)
            .collect(),
        ..Default::default()
    }))
    .await
    .map_err(|e| e.to_string())?;
    let mut stream =
        open::<LeanRequest, LeanResponse>(cfg, SOTW_PATH, ReceiverStream::new(rx)).await?;
    match stream.next().await {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("the agent stream closed".into()),
    }
    let (held_tx, in_force) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(resp)) = stream.next().await {
            if resp.type_url != isthmus_dns::demand::DEMAND_TYPE {
                continue;
            }
            let names: Vec<String> = resp
                .resources
                .iter()
                .filter_map(|r| AnyValue::decode(r.clone()).ok())
                .filter_map(|a| isthmus_dns::demand::decode_names(&a.value).ok())
                .flatten()
                .collect();
            if held_tx.send((Instant::now(), names)).is_err() {
                return;
            }
        }
    });
    Ok(Agent {
        tx,
        names,
        in_force,
    })
}

async fn sotw(i: usize, cfg: &LoadConfig, shared: &Shared) -> Result<(), String> {
    let (tx, rx) = mpsc::channel(16);
    // Clusters and listeners by wildcard, as Envoy starts; endpoints and routes by the names
    // the clusters and listeners give, once they arrive (every ACK repeats the names).
    for k in [0, 2] {
        tx.send(Outgoing::from(LeanRequest {
            node: (k == 0).then(|| node(i, &cfg.cluster, cfg.wanted.is_some())),
            type_url: TYPES[k].to_string(),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    }
    let mut stream =
        open::<LeanRequest, LeanResponse>(cfg, SOTW_PATH, ReceiverStream::new(rx)).await?;
    let mut held = Held::default();
    // Per type, the names asked for and their encoding, which every ACK repeats.
    let mut names: [Vec<String>; 4] = Default::default();
    let mut wire: [prost::bytes::Bytes; 4] = Default::default();
    // The last version and nonce of each type, which a changed subscription carries.
    let mut last: [(String, String); 4] = Default::default();
    while let Some(resp) = stream.next().await {
        let resp = resp.map_err(|e| e.to_string())?;
        let now = Instant::now();
        shared
            .bytes
            .fetch_add(resp.encoded_len() as u64, Ordering::Relaxed);
        shared.responses.fetch_add(1, Ordering::Relaxed);
        let Some(k) = TYPES.iter().position(|t| *t == resp.type_url) else {
            continue;
        };
        last[k] = (resp.version_info.clone(), resp.nonce.clone());
        let renamed = match k {
            0 => Some((1, eds_cluster_names(&resp.resources))),
            2 => Some((3, route_names(&resp.resources))),
            _ => None,
        }
        .filter(|(t, n)| *n != names[*t]);
        if let Some((t, n)) = renamed.as_ref() {
            wire[*t] = encoded_names(n);
            names[*t].clone_from(n);
        }
        let empty = [false, names[1].is_empty(), false, names[3].is_empty()];
        held.record(
            i,
            k,
            shared.versions.ordinal(&resp.version_info),
            empty,
            now,
            &shared.events,
        );
        tx.send(Outgoing {
            message: LeanRequest {
                type_url: resp.type_url.clone(),
                version_info: resp.version_info.clone(),
                response_nonce: resp.nonce.clone(),
                ..Default::default()
            },
            tail: wire[k].clone(),
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Some((t, _)) = renamed {
            tx.send(Outgoing {
                message: LeanRequest {
                    type_url: TYPES[t].to_string(),
                    version_info: last[t].0.clone(),
                    response_nonce: last[t].1.clone(),
                    ..Default::default()
                },
                tail: wire[t].clone(),
            })
            .await
            .map_err(|e| e.to_string())?;
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

/// A request as the simulated proxy sends it: a message, then fields already encoded (the
/// endpoint names that every SotW ACK repeats, encoded once per change of names and shared
/// by the ACKs that follow, as one buffer sent without a copy). Protobuf lets a repeated
/// field come after the others, so the bytes on the wire are a `DiscoveryRequest`.
struct Outgoing<M> {
    message: M,
    tail: prost::bytes::Bytes,
}

impl<M> From<M> for Outgoing<M> {
    fn from(message: M) -> Self {
        Outgoing {
            message,
            tail: prost::bytes::Bytes::new(),
        }
    }
}

impl<M: Message> Outgoing<M> {
    /// The gRPC body frames: an uncompressed flag, a big-endian length and the message, then
    /// the tail.
    fn into_frames(self) -> Vec<prost::bytes::Bytes> {
        let len = self.message.encoded_len() + self.tail.len();
        let mut head = Vec::with_capacity(5 + self.message.encoded_len());
        head.push(0);
        head.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        self.message.encode_raw(&mut head);
        let mut frames = vec![prost::bytes::Bytes::from(head)];
        if !self.tail.is_empty() {
            frames.push(self.tail);
        }
        frames
    }
}

/// `names` as `DiscoveryRequest.resource_names` entries (field 3), encoded.
fn encoded_names(names: &[String]) -> prost::bytes::Bytes {
    let mut buf = Vec::new();
    for n in names {
        prost::encoding::string::encode(3, n, &mut buf);
    }
    prost::bytes::Bytes::from(buf)
}

/// Opens one ADS stream on its own connection.
///
/// The responses are read by [`isthmus_xds::incoming::Requests`] (it frames gRPC messages
/// itself and lets a large message's buffer go with it), not by `tonic::Streaming`, which
/// keeps its read buffer as large as the largest message a stream carried: with 10,000
/// services each simulated proxy kept 7-8 MB, and 1,000 of them 7.7 GB, which left a 24 GB
/// machine without room for the control plane under test.
async fn open<Req, Resp>(
    cfg: &LoadConfig,
    path: &'static str,
    requests: ReceiverStream<Outgoing<Req>>,
) -> Result<isthmus_xds::incoming::Requests<Resp>, String>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    use tonic::codegen::{http, Service};
    let mut channel = channel(cfg).await?;
    let frames = requests.flat_map(|o| {
        futures::stream::iter(
            o.into_frames()
                .into_iter()
                .map(|b| Ok::<_, tonic::Status>(http_body::Frame::data(b))),
        )
    });
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            frames,
        )))
        .map_err(|e| e.to_string())?;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| e.to_string())?;
    let response = channel.call(request).await.map_err(|e| e.to_string())?;
    // A refused stream (istiod's limit on new streams) is answered with its status in the
    // headers and no body.
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let grpc_status = header("grpc-status");
    if !response.status().is_success() || !(grpc_status.is_empty() || grpc_status == "0") {
        return Err(format!(
            "stream refused: HTTP {}, grpc-status {grpc_status}: {}",
            response.status(),
            header("grpc-message")
        ));
    }
    Ok(isthmus_xds::incoming::Requests::new(
        response.into_body(),
        decode::<Resp>,
        256 << 20,
    ))
}

/// Decodes one response message.
fn decode<T: Message + Default>(message: prost::bytes::Bytes) -> Result<T, tonic::Status> {
    T::decode(message).map_err(|e| tonic::Status::internal(format!("undecodable response: {e}")))
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

/// The values of encoded `google.protobuf.Any`s (a state-of-the-world response's resources).
fn any_values(anys: &[prost::bytes::Bytes]) -> Vec<prost::bytes::Bytes> {
    anys.iter()
        .filter_map(|a| AnyValue::decode(a.clone()).ok())
        .map(|a| a.value)
        .collect()
}

/// The names Envoy subscribes to for endpoints: each EDS cluster's service name, or its
/// own name when that is empty.
fn eds_cluster_names(clusters: &[prost::bytes::Bytes]) -> Vec<String> {
    eds_names_of(&any_values(clusters))
}

/// [`eds_cluster_names`] of encoded Clusters.
fn eds_names_of(clusters: &[prost::bytes::Bytes]) -> Vec<String> {
    clusters
        .iter()
        .filter_map(|c| ClusterHead::decode(c.clone()).ok())
        .filter(|c| c.discovery_type == EDS)
        .map(|c| match c.eds {
            Some(e) if !e.service_name.is_empty() => e.service_name,
            _ => c.name,
        })
        .collect()
}

/// The route configurations Envoy subscribes to: the `rds.route_config_name` of every HTTP
/// connection manager of the listeners, each once, sorted.
fn route_names(listeners: &[prost::bytes::Bytes]) -> Vec<String> {
    route_names_of(&any_values(listeners))
}

/// The type of the HTTP connection manager's configuration.
const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// [`route_names`] of encoded Listeners.
fn route_names_of(listeners: &[prost::bytes::Bytes]) -> Vec<String> {
    let mut names: Vec<String> = listeners
        .iter()
        .filter_map(|l| ListenerHead::decode(l.clone()).ok())
        .flat_map(|l| l.filter_chains.into_iter().chain(l.default_filter_chain))
        .flat_map(|c| c.filters)
        .filter_map(|f| f.typed_config)
        .filter(|a| a.type_url == HCM)
        .filter_map(|a| HcmHead::decode(a.value).ok())
        .filter_map(|h| h.rds)
        .map(|r| r.route_config_name)
        .filter(|n| !n.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The head of a Listener: its filter chains (other fields are skipped while decoding).
#[derive(Clone, PartialEq, prost::Message)]
struct ListenerHead {
    #[prost(message, repeated, tag = "3")]
    filter_chains: Vec<FilterChainHead>,
    #[prost(message, optional, tag = "25")]
    default_filter_chain: Option<FilterChainHead>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FilterChainHead {
    #[prost(message, repeated, tag = "3")]
    filters: Vec<FilterHead>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FilterHead {
    #[prost(message, optional, tag = "4")]
    typed_config: Option<AnyHead>,
}

/// A `google.protobuf.Any` with its type.
#[derive(Clone, PartialEq, prost::Message)]
struct AnyHead {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "bytes", tag = "2")]
    value: prost::bytes::Bytes,
}

/// An HTTP connection manager's RDS settings (`route_specifier.rds`).
#[derive(Clone, PartialEq, prost::Message)]
struct HcmHead {
    #[prost(message, optional, tag = "3")]
    rds: Option<RdsHead>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RdsHead {
    #[prost(string, tag = "2")]
    route_config_name: String,
}

/// A delta response's `Resource`: its name and the resource (`google.protobuf.Any`).
#[derive(Clone, PartialEq, prost::Message)]
struct ResourceHead {
    #[prost(message, optional, tag = "2")]
    resource: Option<AnyValue>,
    #[prost(string, tag = "3")]
    name: String,
}

async fn delta(i: usize, cfg: &LoadConfig, shared: &Shared) -> Result<(), String> {
    let (tx, rx) = mpsc::channel(16);
    // Clusters and listeners are wildcard (no names); endpoints and routes are subscribed by
    // name as the clusters and listeners that name them come and go.
    for k in [0, 2] {
        tx.send(Outgoing::from(DeltaDiscoveryRequest {
            node: (k == 0).then(|| node(i, &cfg.cluster, cfg.wanted.is_some())),
            type_url: TYPES[k].to_string(),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    }
    let mut stream =
        open::<DeltaDiscoveryRequest, LeanDeltaResponse>(cfg, DELTA_PATH, ReceiverStream::new(rx))
            .await?;
    let mut held = Held::default();
    // Per naming type (CDS, LDS): each resource's names (EDS service, RDS route names).
    let mut naming: [std::collections::BTreeMap<String, Vec<String>>; 4] = Default::default();
    let mut subscribed: [std::collections::BTreeSet<String>; 4] = Default::default();
    while let Some(resp) = stream.next().await {
        let resp = resp.map_err(|e| e.to_string())?;
        let now = Instant::now();
        shared
            .bytes
            .fetch_add(resp.encoded_len() as u64, Ordering::Relaxed);
        shared.responses.fetch_add(1, Ordering::Relaxed);
        let Some(k) = TYPES.iter().position(|t| *t == resp.type_url) else {
            continue;
        };
        let mut change = None;
        if let Some(&(t, _)) = NAMED.iter().find(|(_, by)| *by == k) {
            for name in &resp.removed_resources {
                naming[k].remove(name);
            }
            for r in &resp.resources {
                let Ok(head) = ResourceHead::decode(r.clone()) else {
                    continue;
                };
                let value = head.resource.map(|a| a.value).unwrap_or_default();
                let one = std::slice::from_ref(&value);
                let named = if k == 0 {
                    eds_names_of(one)
                } else {
                    route_names_of(one)
                };
                naming[k].insert(head.name, named);
            }
            let want: std::collections::BTreeSet<String> =
                naming[k].values().flatten().cloned().collect();
            if want != subscribed[t] {
                let subscribe = want.difference(&subscribed[t]).cloned().collect();
                let unsubscribe = subscribed[t].difference(&want).cloned().collect();
                subscribed[t] = want;
                change = Some((t, subscribe, unsubscribe));
            }
        }
        let empty = [
            false,
            subscribed[1].is_empty(),
            false,
            subscribed[3].is_empty(),
        ];
        held.record(
            i,
            k,
            shared.versions.ordinal(&resp.system_version_info),
            empty,
            now,
            &shared.events,
        );
        tx.send(Outgoing::from(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
        if let Some((t, subscribe, unsubscribe)) = change {
            tx.send(Outgoing::from(DeltaDiscoveryRequest {
                type_url: TYPES[t].to_string(),
                resource_names_subscribe: subscribe,
                resource_names_unsubscribe: unsubscribe,
                ..Default::default()
            }))
            .await
            .map_err(|e| e.to_string())?;
        }
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
            Ok(Some(Event::Full(i, v, at))) if done.get(i).is_some_and(Option::is_none) => {
                done[i] = Some(at - start);
                version = version.max(v);
                remaining -= 1;
            }
            Ok(Some(Event::Failed(i))) if done.get(i).is_some_and(Option::is_none) => {
                remaining -= 1
            }
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
            Ok(Some(Event::Endpoints(i, v, at)))
                if v > above && done.get(i).is_some_and(Option::is_none) =>
            {
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

    #[test]
    fn the_simulated_proxies_offer_tls_1_3_ciphers_in_envoys_order() {
        use rustls::CipherSuite as S;
        let offered: Vec<S> = envoy_cipher_order()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            offered[..3],
            [
                S::TLS13_AES_128_GCM_SHA256,
                S::TLS13_AES_256_GCM_SHA384,
                S::TLS13_CHACHA20_POLY1305_SHA256
            ]
        );
        // Nothing dropped: only the order changes.
        assert_eq!(
            offered.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }

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
            node: Some(node(3, "cluster1", false)),
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
    fn an_ack_with_encoded_names_is_one_grpc_framed_discovery_request() {
        let names = [
            "outbound|80||a.ns.svc.cluster.local".to_string(),
            "b".into(),
        ];
        let ack = Outgoing {
            message: LeanRequest {
                version_info: "7".into(),
                type_url: TYPES[1].into(),
                response_nonce: "12".into(),
                ..Default::default()
            },
            tail: encoded_names(&names),
        };
        let frames = ack.into_frames();
        assert_eq!(frames.len(), 2, "the names go as their own shared buffer");
        let body: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        assert_eq!(body[0], 0, "uncompressed");
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert_eq!(len, body.len() - 5);
        let got = DiscoveryRequest::decode(&body[5..]).expect("decodes");
        assert_eq!(got.version_info, "7");
        assert_eq!(got.resource_names, names);
        assert_eq!(got.type_url, TYPES[1]);
        assert_eq!(got.response_nonce, "12");
        // Without names, one frame.
        assert_eq!(
            Outgoing::from(LeanRequest::default()).into_frames().len(),
            1
        );
    }

    fn hcm_listener(name: &str, routes: &[&str]) -> prost::bytes::Bytes {
        use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
        use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
            http_connection_manager::RouteSpecifier, HttpConnectionManager, Rds,
        };
        let chain = |route: &str| FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: HCM.into(),
                    value: HttpConnectionManager {
                        route_specifier: Some(RouteSpecifier::Rds(Rds {
                            route_config_name: route.into(),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                })),
            }],
            ..Default::default()
        };
        // A TCP proxy's filter has field 3 too: it must not be read as RDS.
        let tcp = FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.tcp_proxy".into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url:
                        "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
                            .into(),
                    value: Rds {
                        route_config_name: "not-a-route".into(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                })),
            }],
            ..Default::default()
        };
        let mut chains: Vec<FilterChain> = routes.iter().map(|r| chain(r)).collect();
        chains.push(tcp);
        Any {
            type_url: TYPES[2].into(),
            value: Listener {
                name: name.into(),
                filter_chains: chains,
                ..Default::default()
            }
            .encode_to_vec(),
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn routes_are_asked_for_by_the_names_the_connection_managers_give() {
        let got = route_names(&[
            hcm_listener("0.0.0.0_8080", &["8080", "8080"]),
            hcm_listener("0.0.0.0_9080", &["9080"]),
            hcm_listener("tcp-only", &[]),
        ]);
        assert_eq!(got, ["8080", "9080"]);
    }

    #[test]
    fn delta_resources_are_read_by_name_and_content() {
        use envoy_types::pb::envoy::service::discovery::v3::Resource;
        let listener = AnyValue::decode(hcm_listener("l", &["80"])).expect("any");
        let encoded = Resource {
            name: "l".into(),
            version: "v".into(),
            resource: Some(Any {
                type_url: TYPES[2].into(),
                value: listener.value.to_vec(),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let head = ResourceHead::decode(encoded.as_slice()).expect("decodes");
        assert_eq!(head.name, "l");
        let value = head.resource.map(|a| a.value).unwrap_or_default();
        assert_eq!(route_names_of(&[value]), ["80"]);
    }

    #[test]
    fn versions_that_are_not_numbers_are_ordered_as_first_seen() {
        let order = VersionOrder::default();
        assert_eq!(order.ordinal("17"), 17);
        let a = order.ordinal("2026-12-04T02:40:03Z/3");
        let b = order.ordinal("2026-12-04T02:40:05Z/4");
        assert!(b > a, "{b} > {a}");
        assert_eq!(order.ordinal("2026-12-04T02:40:03Z/3"), a);
    }

    #[test]
    fn a_named_type_without_names_is_held_with_the_type_that_names_it() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut held = Held::default();
        let now = Instant::now();
        // Clusters and listeners name no endpoints and no routes.
        let empty = [false, true, false, true];
        held.record(0, 0, 4, empty, now, &tx);
        assert!(rx.try_recv().is_err(), "listeners are not there yet");
        held.record(0, 2, 4, empty, now, &tx);
        assert!(matches!(rx.try_recv(), Ok(Event::Full(0, 4, _))));
        // With routes named, the proxy is complete only once they arrive.
        let mut held = Held::default();
        let named = [false, true, false, false];
        held.record(1, 0, 5, named, now, &tx);
        held.record(1, 2, 5, named, now, &tx);
        assert!(rx.try_recv().is_err(), "routes are missing");
        held.record(1, 3, 5, named, now, &tx);
        assert!(matches!(rx.try_recv(), Ok(Event::Full(1, 5, _))));
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
