//! One proxy's configuration as a control plane sends it: an ADS stream (state of the world)
//! opened with the proxy's own node id and metadata, asking as Envoy asks (clusters and
//! listeners by wildcard, then endpoints by the EDS clusters' names and routes by the names the
//! HTTP connection managers give), ACKing every response, until every type is in and the
//! control plane has been quiet for a while.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::protobuf::Any;
use futures::StreamExt;
use prost::Message;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Clusters, endpoints, listeners, routes: Envoy's type URLs, in that order.
pub const TYPES: [&str; 4] = [
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
];

/// The HTTP connection manager's type URL.
const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No stream could be opened before the deadline.
    #[error("could not open an xDS stream to {address} within {secs} s: {last}")]
    Connect {
        /// The control plane.
        address: String,
        /// How long it was tried.
        secs: u64,
        /// The last error.
        last: String,
    },
    /// The stream failed.
    #[error("the xDS stream to {address} failed: {reason}")]
    Stream {
        /// The control plane.
        address: String,
        /// Why.
        reason: String,
    },
    /// The configuration was not complete before the deadline.
    #[error("{address} had not sent every type within {secs} s (received: {received})")]
    Incomplete {
        /// The control plane.
        address: String,
        /// How long it was waited for.
        secs: u64,
        /// Which types came.
        received: String,
    },
    /// A resource could not be decoded.
    #[error("a {type_url} from {address} does not decode: {reason}")]
    Decode {
        /// The control plane.
        address: String,
        /// Its type.
        type_url: String,
        /// Why.
        reason: String,
    },
}

/// Where and as whom to ask.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// `host:port` of the control plane's xDS.
    pub address: String,
    /// TLS: the root to check the control plane with, and the proxy's certificate chain and
    /// key (PEM); `None` for plaintext.
    pub tls: Option<(String, String, String)>,
    /// The TLS server name to check (the control plane's certificate).
    pub server_name: String,
    /// The proxy's node.
    pub node: Node,
    /// How long to keep trying to open the stream (a control plane still starting).
    pub connect_for: Duration,
    /// How long the control plane must stay quiet once every type is in.
    pub quiet: Duration,
}

/// What one proxy received, decoded.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Clusters (CDS).
    pub clusters: Vec<Cluster>,
    /// Endpoints (EDS).
    pub endpoints: Vec<ClusterLoadAssignment>,
    /// Listeners (LDS).
    pub listeners: Vec<Listener>,
    /// Route configurations (RDS).
    pub routes: Vec<RouteConfiguration>,
}

async fn channel(opts: &FetchOptions) -> Result<Channel, String> {
    let Some((root, chain, key)) = &opts.tls else {
        return Channel::from_shared(format!("http://{}", opts.address))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string());
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(root))
        .identity(Identity::from_pem(chain, key))
        .domain_name(opts.server_name.clone());
    Channel::from_shared(format!("https://{}", opts.address))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// The names Envoy asks endpoints for: each EDS cluster's service name, or its name.
pub fn eds_names(clusters: &[Cluster]) -> Vec<String> {
    let mut names: Vec<String> = clusters
        .iter()
        .filter(|c| {
            c.cluster_discovery_type == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
        })
        .map(|c| match &c.eds_cluster_config {
            Some(e) if !e.service_name.is_empty() => e.service_name.clone(),
            _ => c.name.clone(),
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The HTTP connection managers of a listener (every filter chain, and the default one).
pub fn connection_managers(l: &Listener) -> Vec<HttpConnectionManager> {
    l.filter_chains
        .iter()
        .chain(l.default_filter_chain.iter())
        .flat_map(|c| c.filters.iter())
        .filter_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(a)) if a.type_url == HCM => {
                HttpConnectionManager::decode(a.value.as_slice()).ok()
            }
            _ => None,
        })
        .collect()
}

/// The names Envoy asks routes for: every RDS name of the listeners' connection managers.
pub fn route_names(listeners: &[Listener]) -> Vec<String> {
    let mut names: Vec<String> = listeners
        .iter()
        .flat_map(connection_managers)
        .filter_map(|h| match h.route_specifier {
            Some(RouteSpecifier::Rds(r)) => Some(r.route_config_name),
            _ => None,
        })
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn decode_all<M: Message + Default>(
    address: &str,
    resources: &[Any],
) -> Result<Vec<M>, FetchError> {
    resources
        .iter()
        .map(|a| {
            M::decode(a.value.as_slice()).map_err(|e| FetchError::Decode {
                address: address.to_string(),
                type_url: a.type_url.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Fetches what the control plane of `opts` sends the proxy, within `deadline`.
pub async fn fetch(opts: &FetchOptions, deadline: Duration) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let connect_until = started + opts.connect_for;
    let address = opts.address.clone();
    // A control plane that is still starting refuses streams (istiod: "server is not
    // ready"): keep trying until the first response.
    let mut last = String::new();
    loop {
        match attempt(opts, started + deadline).await {
            Ok(f) => return Ok(f),
            Err(Attempt::Retry(why)) if Instant::now() < connect_until => {
                last = why;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(Attempt::Retry(why)) => {
                return Err(FetchError::Connect {
                    address,
                    secs: opts.connect_for.as_secs(),
                    last: if why.is_empty() { last } else { why },
                })
            }
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
}

/// How one attempt ended without a configuration.
enum Attempt {
    /// Before any response: worth another try.
    Retry(String),
    /// After responses came: the error.
    Failed(FetchError),
}

async fn attempt(opts: &FetchOptions, until: Instant) -> Result<Fetched, Attempt> {
    let address = opts.address.clone();
    let channel = channel(opts).await.map_err(Attempt::Retry)?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    for (k, t) in [(0, TYPES[0]), (2, TYPES[2])] {
        let _ = tx
            .send(DiscoveryRequest {
                node: (k == 0).then(|| opts.node.clone()),
                type_url: t.to_string(),
                ..Default::default()
            })
            .await;
    }
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map_err(|s| Attempt::Retry(format!("{}: {}", s.code(), s.message())))?
        .into_inner();
    let mut got: [Option<Vec<Any>>; 4] = Default::default();
    let mut names: [Vec<String>; 4] = Default::default();
    let mut last: [(String, String); 4] = Default::default();
    let mut fetched = Fetched::default();
    let mut first = true;
    loop {
        let complete = got[0].is_some()
            && got[2].is_some()
            && (names[1].is_empty() || got[1].is_some())
            && (names[3].is_empty() || got[3].is_some());
        let wait = if complete {
            opts.quiet
        } else {
            until.saturating_duration_since(Instant::now())
        };
        let next = match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(Ok(r))) => r,
            Ok(Some(Err(s))) => {
                let reason = format!("{}: {}", s.code(), s.message());
                return Err(if first {
                    Attempt::Retry(reason)
                } else {
                    Attempt::Failed(FetchError::Stream { address, reason })
                });
            }
            Ok(None) => {
                let reason = "the control plane closed the stream".to_string();
                return Err(if first {
                    Attempt::Retry(reason)
                } else {
                    Attempt::Failed(FetchError::Stream { address, reason })
                });
            }
            Err(_) if complete => break,
            Err(_) => {
                let received: Vec<&str> = TYPES
                    .iter()
                    .zip(&got)
                    .filter(|(_, g)| g.is_some())
                    .map(|(t, _)| t.rsplit('.').next().unwrap_or(t))
                    .collect();
                return Err(Attempt::Failed(FetchError::Incomplete {
                    address,
                    secs: until.saturating_duration_since(Instant::now()).as_secs(),
                    received: received.join(", "),
                }));
            }
        };
        first = false;
        let Some(k) = TYPES.iter().position(|t| *t == next.type_url) else {
            continue;
        };
        last[k] = (next.version_info.clone(), next.nonce.clone());
        let renamed = match k {
            0 => {
                fetched.clusters =
                    decode_all(&address, &next.resources).map_err(Attempt::Failed)?;
                Some((1, eds_names(&fetched.clusters)))
            }
            2 => {
                fetched.listeners =
                    decode_all(&address, &next.resources).map_err(Attempt::Failed)?;
                Some((3, route_names(&fetched.listeners)))
            }
            1 => {
                fetched.endpoints =
                    decode_all(&address, &next.resources).map_err(Attempt::Failed)?;
                None
            }
            _ => {
                fetched.routes = decode_all(&address, &next.resources).map_err(Attempt::Failed)?;
                None
            }
        }
        .filter(|(t, n)| *n != names[*t]);
        got[k] = Some(next.resources);
        if let Some((t, n)) = &renamed {
            names[*t].clone_from(n);
        }
        let _ = tx
            .send(DiscoveryRequest {
                type_url: next.type_url.clone(),
                version_info: next.version_info.clone(),
                response_nonce: next.nonce.clone(),
                resource_names: names[k].clone(),
                ..Default::default()
            })
            .await;
        if let Some((t, n)) = renamed {
            let _ = tx
                .send(DiscoveryRequest {
                    type_url: TYPES[t].to_string(),
                    version_info: last[t].0.clone(),
                    response_nonce: last[t].1.clone(),
                    resource_names: n,
                    ..Default::default()
                })
                .await;
        }
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::EdsClusterConfig;
    use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds;

    #[test]
    fn endpoints_and_routes_are_asked_for_by_name() {
        let eds = |name: &str, service: &str| Cluster {
            name: name.into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: service.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let dns = Cluster {
            name: "outbound|80||x.example".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(
                DiscoveryType::StrictDns as i32,
            )),
            ..Default::default()
        };
        assert_eq!(
            eds_names(&[eds("b", ""), dns, eds("a", "a-svc"), eds("b", "")]),
            ["a-svc", "b"]
        );
        let hcm = |route: &str| Filter {
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
        };
        let listener = Listener {
            filter_chains: vec![
                FilterChain {
                    filters: vec![hcm("8000")],
                    ..Default::default()
                },
                FilterChain {
                    filters: vec![hcm("80")],
                    ..Default::default()
                },
            ],
            default_filter_chain: Some(FilterChain {
                filters: vec![hcm("8000")],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(route_names(&[listener]), ["80", "8000"]);
    }
}
