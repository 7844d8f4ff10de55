//! A DestinationRule's load balancing, connection pool and outlier detection on Envoy's
//! outbound clusters and routes, as Istio applies them (`applyLoadBalancer`,
//! `applyConnectionPool`, `applyOutlierDetection`, and the routes' hash policy): a subset's
//! policy replaces the rule's component by component, never merged field by field.
//!
//! Without a rule, every outbound cluster gets Istio's defaults: `LEAST_REQUEST`, and
//! circuit breakers that do not limit (2^32-1 connections, pending requests, requests and
//! retries, remaining capacity tracked), not Envoy's 1,024 that a busy client hits.

use crate::pb::*;
use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers, cluster as c, CircuitBreakers, OutlierDetection as EnvoyOutlier,
    UpstreamConnectionOptions,
};
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttp, TcpKeepalive,
};
use envoy_types::pb::envoy::config::route::v3::route_action::{hash_policy, HashPolicy};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{
        explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
        UseDownstreamHttpConfig,
    },
    HttpProtocolOptions,
};
use envoy_types::pb::google::protobuf::UInt64Value;
use isthmus_api::enums::{H2UpgradePolicy, SimpleLb};
use isthmus_api::networking::{Subset, TrafficPolicy};
use isthmus_api::policy::{ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection};
use isthmus_model::{MeshSnapshot, Proxy, Service};

/// Istio's default ring size for consistent hashing.
const DEFAULT_RING_SIZE: u64 = 1024;
/// Istio's "no limit" for circuit breakers.
const NO_LIMIT: u32 = u32::MAX;

/// Istio's default thresholds (`DefaultCircuitBreakerThresholds`): no limit. Envoy's own
/// defaults (1,024 connections, pending and active requests, 3 retries) would cap a busy
/// pod's inbound path and the passthrough clusters.
pub fn unlimited_circuit_breakers() -> CircuitBreakers {
    let none = Some(UInt32Value { value: NO_LIMIT });
    CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            max_connections: none,
            max_pending_requests: none,
            max_requests: none,
            max_retries: none,
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}
/// The key of HTTP upstream options in `typed_extension_protocol_options`.
pub const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// What an outbound cluster speaks to its upstream when it carries HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamHttp {
    /// HTTP/1.1 (Envoy's default), unless the rule upgrades.
    Http1,
    /// HTTP/2: gRPC and HTTP2 ports.
    Http2,
    /// What the client spoke: a port whose protocol is sniffed (Istio's
    /// `useDownstreamProtocol` for protocol detection).
    Downstream,
}

/// `region/zone/subzone` levels of a locality (missing levels empty).
pub(crate) fn levels(locality: &str) -> [&str; 3] {
    let mut it = locality.split('/');
    [
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    ]
}

/// Istio's `LocalityMatch`: each level of `pattern` equals the locality's, up to a `*`.
pub fn locality_matches(pattern: &str, locality: &str) -> bool {
    let have = levels(locality);
    for (i, p) in pattern.split('/').enumerate() {
        if p == "*" {
            return true;
        }
        if i >= 3 || have[i] != p {
            return false;
        }
    }
    true
}

/// The policy components that apply to one destination (service and subset) for one proxy.
#[derive(Debug, Default, Clone, Copy)]
pub struct Policy<'a> {
    /// `loadBalancer`.
    pub load_balancer: Option<&'a LoadBalancerSettings>,
    /// `connectionPool`.
    pub connection_pool: Option<&'a ConnectionPoolSettings>,
    /// `outlierDetection`.
    pub outlier_detection: Option<&'a OutlierDetection>,
    /// The mesh config's `localityLbSetting`, for a destination whose rule sets none.
    pub mesh_locality: Option<&'a isthmus_api::policy::LocalityLbSetting>,
}

impl<'a> Policy<'a> {
    /// The policy of `service` (and `subset`) as the DestinationRule `proxy` sees has it:
    /// each component from the subset when it sets one, else from the rule.
    pub fn of(
        snapshot: &'a MeshSnapshot,
        proxy: &Proxy,
        service: &Service,
        subset: Option<&'a Subset>,
    ) -> Policy<'a> {
        let rule = snapshot
            .destination_rule(&service.hostname, &proxy.id.namespace)
            .and_then(|d| d.rule.spec.traffic_policy.as_ref());
        let sub = subset.and_then(|s| s.traffic_policy.as_ref());
        fn pick<'a, T>(
            sub: Option<&'a TrafficPolicy>,
            rule: Option<&'a TrafficPolicy>,
            f: fn(&'a TrafficPolicy) -> Option<&'a T>,
        ) -> Option<&'a T> {
            sub.and_then(f).or_else(|| rule.and_then(f))
        }
        Policy {
            load_balancer: pick(sub, rule, |p| p.load_balancer.as_ref()),
            connection_pool: pick(sub, rule, |p| p.connection_pool.as_ref()),
            outlier_detection: pick(sub, rule, |p| p.outlier_detection.as_ref()),
            mesh_locality: snapshot.mesh.locality_lb_setting.as_ref(),
        }
    }

    /// The policy of an outbound cluster by its name (`outbound|PORT|SUBSET|HOST`), for
    /// routes that name clusters; `None` for other names or unknown services.
    pub fn of_cluster(
        snapshot: &'a MeshSnapshot,
        proxy: &Proxy,
        cluster: &str,
    ) -> Option<Policy<'a>> {
        let mut parts = cluster.splitn(4, '|');
        let (Some("outbound"), Some(_port), Some(subset), Some(host)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let service = snapshot.services.get(host)?;
        Some(Policy::of_subset(snapshot, proxy, service, subset))
    }

    /// The policy of `service` and its subset named `subset` (none when empty).
    pub fn of_subset(
        snapshot: &'a MeshSnapshot,
        proxy: &Proxy,
        service: &Service,
        subset: &str,
    ) -> Policy<'a> {
        let subset = if subset.is_empty() {
            None
        } else {
            snapshot
                .destination_rule(&service.hostname, &proxy.id.namespace)
                .and_then(|d| d.rule.spec.subsets.iter().find(|s| s.name == subset))
        };
        Policy::of(snapshot, proxy, service, subset)
    }

    /// The consistent-hash key of HTTP requests to this destination, if it has one.
    pub fn http_hash(&self) -> Option<HashPolicy> {
        let ch = self.load_balancer?.consistent_hash.as_ref()?;
        let spec = if let Some(h) = &ch.http_header_name {
            hash_policy::PolicySpecifier::Header(hash_policy::Header {
                header_name: h.clone(),
                ..Default::default()
            })
        } else if let Some(k) = &ch.http_cookie {
            hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                name: k.name.clone(),
                ttl: k
                    .ttl
                    .as_deref()
                    .and_then(isthmus_api::duration::parse)
                    .map(pb_duration),
                path: k.path.clone().unwrap_or_default(),
                ..Default::default()
            })
        } else if ch.use_source_ip {
            hash_policy::PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
                source_ip: true,
            })
        } else {
            hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
                name: ch.http_query_parameter_name.clone()?,
            })
        };
        Some(HashPolicy {
            policy_specifier: Some(spec),
            terminal: false,
        })
    }

    /// `loadBalancer.localityLbSetting` if the rule sets it, else the mesh config's (as
    /// Istio's `getLocalityLbSetting`: the rule's wins whole, even with `enabled: false`).
    pub fn locality(&self) -> Option<&'a isthmus_api::policy::LocalityLbSetting> {
        self.load_balancer
            .and_then(|lb| lb.locality_lb_setting.as_ref())
            .or(self.mesh_locality)
    }

    /// Whether TCP connections to this destination are hashed by the caller's address.
    pub fn tcp_hash_by_source(&self) -> bool {
        self.load_balancer
            .and_then(|lb| lb.consistent_hash.as_ref())
            .is_some_and(|c| c.use_source_ip)
    }

    /// Applies the policy to outbound cluster `cluster` of `proxy`: load balancer, circuit
    /// breakers, timeouts, keepalive, HTTP options (HTTP/2 to an `http2` port: gRPC and
    /// HTTP2, or when the rule upgrades) and, when the rule sets it, outlier detection
    /// (replacing whatever the caller put there).
    pub fn apply(&self, cluster: &mut Cluster, proxy: &Proxy, http: UpstreamHttp) {
        self.apply_load_balancer(cluster);
        self.apply_connection_pool(cluster, http);
        // A `distribute` rule for the proxy's locality weighs localities (the assignment
        // carries the weights).
        let distributes = self.locality().is_some_and(|l| {
            l.enabled != Some(false)
                && !proxy.locality.is_empty()
                && l.distribute
                    .iter()
                    .any(|d| locality_matches(&d.from, &proxy.locality))
        });
        if distributes {
            use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config;
            cluster
                .common_lb_config
                .get_or_insert_with(Default::default)
                .locality_config_specifier = Some(
                common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                    common_lb_config::LocalityWeightedLbConfig {},
                ),
            );
        }
        if let Some(od) = self.outlier_detection {
            cluster.outlier_detection = Some(outlier(od));
            // Istio: panic mode only below minHealthPercent (0, never, when unset).
            cluster
                .common_lb_config
                .get_or_insert_with(Default::default)
                .healthy_panic_threshold = Some(envoy_types::pb::envoy::r#type::v3::Percent {
                value: f64::from(od.min_health_percent.unwrap_or(0).clamp(0, 100)),
            });
        }
    }

    fn apply_load_balancer(&self, cluster: &mut Cluster) {
        // The caller's address is the destination: nothing to balance.
        if cluster.lb_policy == c::LbPolicy::ClusterProvided as i32 {
            return;
        }
        let lb = self.load_balancer;
        if let Some(ch) = lb.and_then(|l| l.consistent_hash.as_ref()) {
            if let Some(m) = &ch.maglev {
                cluster.lb_policy = c::LbPolicy::Maglev as i32;
                cluster.lb_config = Some(c::LbConfig::MaglevLbConfig(c::MaglevLbConfig {
                    table_size: m.table_size.map(|value| UInt64Value { value }),
                }));
            } else {
                let size = ch
                    .ring_hash
                    .as_ref()
                    .and_then(|r| r.minimum_ring_size)
                    .or(ch.minimum_ring_size)
                    .unwrap_or(DEFAULT_RING_SIZE);
                cluster.lb_policy = c::LbPolicy::RingHash as i32;
                cluster.lb_config = Some(c::LbConfig::RingHashLbConfig(c::RingHashLbConfig {
                    minimum_ring_size: Some(UInt64Value { value: size }),
                    ..Default::default()
                }));
            }
            return;
        }
        cluster.lb_policy = match lb.and_then(|l| l.simple) {
            Some(SimpleLb::Random) => c::LbPolicy::Random,
            Some(SimpleLb::RoundRobin) => c::LbPolicy::RoundRobin,
            Some(SimpleLb::Passthrough) => {
                // Istio: connect to the address the caller asked for.
                cluster.cluster_discovery_type = Some(c::ClusterDiscoveryType::Type(
                    c::DiscoveryType::OriginalDst as i32,
                ));
                cluster.eds_cluster_config = None;
                cluster.load_assignment = None;
                c::LbPolicy::ClusterProvided
            }
            Some(SimpleLb::LeastRequest | SimpleLb::LeastConn | SimpleLb::Unspecified) | None => {
                c::LbPolicy::LeastRequest
            }
        } as i32;
    }

    /// HTTP/2 to the upstream, with nothing else of a pool (an inbound cluster to an app
    /// port that speaks gRPC or HTTP2).
    pub fn apply_http2(&self, cluster: &mut Cluster) {
        self.apply_http_options(cluster, UpstreamHttp::Http2);
    }

    fn apply_connection_pool(&self, cluster: &mut Cluster, upstream: UpstreamHttp) {
        let pool = self.connection_pool;
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let http = pool.and_then(|p| p.http.as_ref());
        // 0 keeps the default, as in Istio.
        let limit = |v: Option<u32>| {
            Some(UInt32Value {
                value: v.filter(|n| *n > 0).unwrap_or(NO_LIMIT),
            })
        };
        cluster.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: limit(tcp.and_then(|t| t.max_connections)),
                max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
                max_requests: limit(http.and_then(|h| h.http2_max_requests)),
                max_retries: limit(http.and_then(|h| h.max_retries)),
                track_remaining: true,
                ..Default::default()
            }],
            ..Default::default()
        });
        let parse = |d: &Option<String>| d.as_deref().and_then(isthmus_api::duration::parse);
        if let Some(t) = tcp {
            if let Some(d) = parse(&t.connect_timeout) {
                cluster.connect_timeout = Some(pb_duration(d));
            }
            if let Some(k) = &t.tcp_keepalive {
                let secs = |d: &Option<String>| {
                    parse(d).map(|d| UInt32Value {
                        value: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
                    })
                };
                cluster.upstream_connection_options = Some(UpstreamConnectionOptions {
                    tcp_keepalive: Some(TcpKeepalive {
                        keepalive_probes: k
                            .probes
                            .filter(|p| *p > 0)
                            .map(|value| UInt32Value { value }),
                        keepalive_time: secs(&k.time),
                        keepalive_interval: secs(&k.interval),
                    }),
                    ..Default::default()
                });
            }
        }
        self.apply_http_options(cluster, upstream);
    }

    /// The pool's HTTP settings (idle timeout, requests per connection, lifetime) and the
    /// upstream protocol (HTTP/2 for an `http2` port or when the rule upgrades), as the
    /// cluster's HTTP protocol options; nothing when none applies.
    fn apply_http_options(&self, cluster: &mut Cluster, upstream: UpstreamHttp) {
        let pool = self.connection_pool;
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let http = pool.and_then(|p| p.http.as_ref());
        let parse = |d: &Option<String>| d.as_deref().and_then(isthmus_api::duration::parse);
        let idle = http
            .and_then(|h| parse(&h.idle_timeout))
            .or_else(|| tcp.and_then(|t| parse(&t.idle_timeout)));
        let per_connection = http
            .and_then(|h| h.max_requests_per_connection)
            .filter(|n| *n > 0);
        let lifetime = tcp.and_then(|t| parse(&t.max_connection_duration));
        let upgrade = upstream == UpstreamHttp::Http2
            || http.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade);
        let downstream = upstream == UpstreamHttp::Downstream && !upgrade;
        if idle.is_none()
            && per_connection.is_none()
            && lifetime.is_none()
            && !upgrade
            && !downstream
        {
            return;
        }
        let h2 = || Http2ProtocolOptions {
            max_concurrent_streams: http
                .and_then(|h| h.max_concurrent_streams)
                .map(|value| UInt32Value { value }),
            ..Default::default()
        };
        let protocol = if downstream {
            UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(h2()),
                ..Default::default()
            })
        } else if upgrade {
            UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(h2())),
            })
        } else {
            UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                    Http1ProtocolOptions::default(),
                )),
            })
        };
        let options = HttpProtocolOptions {
            common_http_protocol_options: Some(CommonHttp {
                idle_timeout: idle.map(pb_duration),
                max_requests_per_connection: per_connection.map(|value| UInt32Value { value }),
                max_connection_duration: lifetime.map(pb_duration),
                ..Default::default()
            }),
            upstream_protocol_options: Some(protocol),
            ..Default::default()
        };
        cluster
            .typed_extension_protocol_options
            .insert(HTTP_OPTIONS.to_string(), any(&options));
    }
}

/// The passthrough cluster's HTTP options, as istiod's: what the client spoke (HTTP/1.1 or
/// HTTP/2, so that gRPC to a host outside the mesh stays gRPC), connections idle for 5
/// minutes closed.
pub fn apply_passthrough_http(cluster: &mut Cluster) {
    let options = HttpProtocolOptions {
        common_http_protocol_options: Some(CommonHttp {
            idle_timeout: Some(pb_duration(std::time::Duration::from_secs(300))),
            ..Default::default()
        }),
        upstream_protocol_options: Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(Http2ProtocolOptions::default()),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    cluster
        .typed_extension_protocol_options
        .insert(HTTP_OPTIONS.to_string(), any(&options));
}

/// Istio's `applyOutlierDetection`: only what the rule sets, success-rate ejection off.
fn outlier(od: &OutlierDetection) -> EnvoyOutlier {
    let parse = |d: &Option<String>| d.as_deref().and_then(isthmus_api::duration::parse);
    let enforcing = |n: u32| {
        Some(UInt32Value {
            value: if n > 0 { 100 } else { 0 },
        })
    };
    let mut out = EnvoyOutlier {
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        interval: parse(&od.interval).map(pb_duration),
        base_ejection_time: parse(&od.base_ejection_time).map(pb_duration),
        ..Default::default()
    };
    if let Some(n) = od.consecutive_5xx_errors {
        out.consecutive_5xx = Some(UInt32Value { value: n });
        out.enforcing_consecutive_5xx = enforcing(n);
    }
    // The deprecated form: gateway errors only (as Istio read it while it existed).
    if let Some(n) = od.consecutive_errors.and_then(|n| u32::try_from(n).ok()) {
        out.consecutive_gateway_failure = Some(UInt32Value { value: n });
        out.enforcing_consecutive_gateway_failure = enforcing(n);
        if od.consecutive_5xx_errors.is_none() {
            out.enforcing_consecutive_5xx = Some(UInt32Value { value: 0 });
        }
    }
    if let Some(n) = od.consecutive_gateway_errors {
        out.consecutive_gateway_failure = Some(UInt32Value { value: n });
        out.enforcing_consecutive_gateway_failure = enforcing(n);
    }
    if let Some(p) = od.max_ejection_percent.filter(|p| *p > 0) {
        out.max_ejection_percent = Some(UInt32Value {
            value: p.unsigned_abs().min(100),
        });
    }
    if od.split_external_local_origin_errors {
        out.split_external_local_origin_errors = true;
        out.enforcing_local_origin_success_rate = Some(UInt32Value { value: 0 });
        if let Some(n) = od.consecutive_local_origin_failures.filter(|n| *n > 0) {
            out.consecutive_local_origin_failure = Some(UInt32Value { value: n });
            out.enforcing_consecutive_local_origin_failure = Some(UInt32Value { value: 100 });
        }
    }
    out
}

fn pb_duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Adds, to every route of `routes` that goes to outbound clusters, the hash policy of each
/// destination whose rule asks for consistent hashing (Istio's `hashForService` and
/// per-destination hash policies). A route to one hashed destination retries on the same
/// host: the `previous_hosts` predicate would move the key's requests elsewhere.
pub fn add_hash_policies(snapshot: &MeshSnapshot, proxy: &Proxy, routes: &mut [Route]) {
    for r in routes {
        let Some(route::Action::Route(a)) = r.action.as_mut() else {
            continue;
        };
        let clusters: Vec<&str> = match &a.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(name)) => vec![name.as_str()],
            Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                w.clusters.iter().map(|c| c.name.as_str()).collect()
            }
            _ => Vec::new(),
        };
        let single = clusters.len() == 1;
        let mut hashes: Vec<HashPolicy> = Vec::new();
        for name in clusters {
            if let Some(h) = Policy::of_cluster(snapshot, proxy, name).and_then(|p| p.http_hash()) {
                if !hashes.contains(&h) {
                    hashes.push(h);
                }
            }
        }
        if hashes.is_empty() {
            continue;
        }
        if single {
            if let Some(rp) = a.retry_policy.as_mut() {
                rp.retry_host_predicate.clear();
                rp.host_selection_retry_max_attempts = 0;
            }
        }
        a.hash_policy = hashes;
    }
}
