//! VirtualService `tcp` routes on sidecars: where a connection to a TCP port of a service
//! goes. The first route of the service's VirtualService whose match applies picks weighted
//! destinations; without one, the service's own cluster. A sidecar's outbound TCP listener
//! is the service's VIP and port, so every condition is known when the listener is built:
//! the port, the destination subnets (against the VIP), and the caller's labels and
//! namespace (the proxy's), as Istio evaluates them for one sidecar.

use crate::names::outbound_cluster;
use crate::pb::*;
use isthmus_api::networking::{L4Match, TcpRoute};
use isthmus_model::{fqdn, MeshSnapshot, Proxy, Service};
use std::net::IpAddr;

/// The weighted clusters a connection to `port` of `svc` goes to, for `proxy`: the matching
/// TCP route's destinations, else `svc`'s own cluster.
pub fn tcp_destinations(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    svc: &Service,
    port: u32,
) -> Vec<(String, u32)> {
    let own = || vec![(outbound_cluster(port, "", &svc.hostname), 100)];
    let Some(vs) = snapshot
        .mesh_virtual_services(&svc.hostname, &proxy.id.namespace)
        .into_iter()
        .next()
    else {
        return own();
    };
    let vip = svc.vip.as_deref().and_then(|v| v.parse::<IpAddr>().ok());
    vs.rule
        .spec
        .tcp
        .iter()
        .find(|r| route_applies(r, proxy, port, vip))
        .map(|r| {
            r.route
                .iter()
                .map(|d| {
                    let dport = d.destination.port.as_ref().map_or(port, |p| p.number);
                    let subset = d.destination.subset.as_deref().unwrap_or_default();
                    (
                        outbound_cluster(dport, subset, &fqdn(&d.destination.host, &vs.namespace)),
                        d.weight.unwrap_or(100),
                    )
                })
                .collect()
        })
        .unwrap_or_else(own)
}

fn route_applies(r: &TcpRoute, proxy: &Proxy, port: u32, vip: Option<IpAddr>) -> bool {
    r.match_.is_empty() || r.match_.iter().any(|m| match_applies(m, proxy, port, vip))
}

fn match_applies(m: &L4Match, proxy: &Proxy, port: u32, vip: Option<IpAddr>) -> bool {
    m.port.is_none_or(|p| p == port)
        && m.gateways
            .as_ref()
            .is_none_or(|g| g.iter().any(|g| g == "mesh"))
        && m.source_namespace
            .as_ref()
            .is_none_or(|ns| *ns == proxy.id.namespace)
        && m.source_labels
            .iter()
            .all(|(k, v)| proxy.labels.get(k) == Some(v))
        && (m.destination_subnets.is_empty()
            || vip.is_some_and(|ip| m.destination_subnets.iter().any(|s| contains(s, ip))))
}

/// Whether `subnet` (`a.b.c.d` or `a.b.c.d/n`, IPv4 or IPv6) contains `ip`.
pub fn contains(subnet: &str, ip: IpAddr) -> bool {
    let (net, bits) = match subnet.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (subnet, None),
    };
    match (net.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(a)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(a)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// A TCP proxy to `destinations` (one cluster, or weighted clusters), hashed by the
/// caller's address when `hash_by_source`; its statistics under the first cluster's name.
pub fn tcp_proxy(destinations: Vec<(String, u32)>, hash_by_source: bool) -> Filter {
    use envoy_types::pb::envoy::r#type::v3::{hash_policy, HashPolicy};
    let stat_prefix = destinations
        .first()
        .map(|(c, _)| c.clone())
        .unwrap_or_default();
    let cluster_specifier = if destinations.len() == 1 {
        tcp_proxy::ClusterSpecifier::Cluster(stat_prefix.clone())
    } else {
        tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: destinations
                .into_iter()
                .map(
                    |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                        name,
                        weight,
                        ..Default::default()
                    },
                )
                .collect(),
        })
    };
    let hash_policy = if hash_by_source {
        vec![HashPolicy {
            policy_specifier: Some(hash_policy::PolicySpecifier::SourceIp(
                hash_policy::SourceIp {},
            )),
        }]
    } else {
        Vec::new()
    };
    let mut proxy = TcpProxy {
        stat_prefix,
        cluster_specifier: Some(cluster_specifier),
        hash_policy,
        ..Default::default()
    };
    crate::telemetry::log_tcp(&mut proxy, crate::telemetry::Reporter::Source);
    network_filter("envoy.filters.network.tcp_proxy", &proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_contain_their_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(contains("10.96.0.0/16", ip("10.96.3.4")));
        assert!(!contains("10.96.0.0/16", ip("10.97.0.1")));
        assert!(contains("10.96.0.20", ip("10.96.0.20")));
        assert!(!contains("10.96.0.20", ip("10.96.0.21")));
        assert!(contains("0.0.0.0/0", ip("192.0.2.1")));
        assert!(contains("fd00::/8", ip("fd12::1")));
        assert!(!contains("fd00::/8", ip("10.0.0.1")));
    }
}
