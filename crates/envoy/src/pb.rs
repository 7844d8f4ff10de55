//! Short names for the Envoy protobuf types generation uses.

pub use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
pub use envoy_types::pb::envoy::config::core::v3::Locality;
pub use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiConfigSource,
    ConfigSource, GrpcService, SocketAddress, TransportSocket,
};
pub use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
pub use envoy_types::pb::envoy::config::listener::v3::{
    filter, listener_filter, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
pub use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, weighted_cluster, Route, RouteAction, RouteConfiguration,
    RouteMatch, VirtualHost, WeightedCluster,
};
pub use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
pub use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy, TcpProxy,
};
pub use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CertificateValidationContext, CommonTlsContext, DownstreamTlsContext,
    SdsSecretConfig, SubjectAltNameMatcher, UpstreamTlsContext,
};
pub use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
pub use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, UInt32Value};

use prost::{Message, Name};

/// Packs a message into an `Any`.
pub fn any<T: Message + Name>(msg: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// A socket address (taking an owned address as it is, without a second copy).
pub fn socket(address: impl Into<String>, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// The ADS config source (`ads: {}`, v3).
pub fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: 2, // V3
        ..Default::default()
    }
}

/// A duration in seconds.
pub fn seconds(s: i64) -> Duration {
    Duration {
        seconds: s,
        nanos: 0,
    }
}

/// A network filter with a typed config.
pub fn network_filter<T: Message + Name>(name: &str, config: &T) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any(config))),
    }
}

/// A TCP proxy filter to one cluster.
pub fn tcp_proxy_filter(stat_prefix: &str, cluster: &str) -> Filter {
    network_filter(
        "envoy.filters.network.tcp_proxy",
        &TcpProxy {
            stat_prefix: stat_prefix.to_string(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
            ..Default::default()
        },
    )
}

/// A listener filter with an empty typed config of the given type URL.
pub fn listener_filter(name: &str, type_url: &str) -> ListenerFilter {
    ListenerFilter {
        name: name.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(Any {
            type_url: type_url.to_string(),
            value: Vec::new(),
        })),
        ..Default::default()
    }
}

/// The TLS inspector, which reads SNI and tells TLS from plain text.
pub fn tls_inspector() -> ListenerFilter {
    listener_filter(
        "envoy.filters.listener.tls_inspector",
        "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    )
}

/// The HTTP inspector, which tells HTTP/1.x and h2c from other bytes for filter chain
/// matching (`application_protocols` `http/1.1`, `http/1.0`, `h2c`).
pub fn http_inspector() -> ListenerFilter {
    listener_filter(
        "envoy.filters.listener.http_inspector",
        "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    )
}

/// A listener filter predicate that holds for connections to any of `ports` (their original
/// destination port), as `filter_disabled` uses it; `ports` must not be empty.
pub fn destination_ports(
    ports: impl IntoIterator<Item = u32>,
) -> envoy_types::pb::envoy::config::listener::v3::ListenerFilterChainMatchPredicate {
    use envoy_types::pb::envoy::config::listener::v3::{
        listener_filter_chain_match_predicate::{MatchSet, Rule},
        ListenerFilterChainMatchPredicate as Predicate,
    };
    use envoy_types::pb::envoy::r#type::v3::Int32Range;
    let mut rules: Vec<Predicate> = ports
        .into_iter()
        .map(|p| {
            let start = i32::try_from(p).unwrap_or(i32::MAX);
            Predicate {
                rule: Some(Rule::DestinationPortRange(Int32Range {
                    start,
                    end: start.saturating_add(1),
                })),
            }
        })
        .collect();
    // Envoy wants at least two rules in a set.
    if rules.len() == 1 {
        return rules.remove(0);
    }
    Predicate {
        rule: Some(Rule::OrMatch(MatchSet { rules })),
    }
}

/// The original destination filter, which restores the address iptables redirected.
pub fn original_dst() -> ListenerFilter {
    listener_filter(
        "envoy.filters.listener.original_dst",
        "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
    )
}
