//! Gateways. The east-west gateway's AUTO_PASSTHROUGH listener reads the SNI that sidecars
//! send (`outbound_.PORT_.SUBSET_.HOST`) and forwards the still-encrypted connection to the
//! local endpoints of that service: it never terminates the mesh's mTLS. It exists on a
//! router started in `sni-dnat` mode (seeds 000/002) and on any router a `Gateway` with an
//! AUTO_PASSTHROUGH server selects (seed 003). A `NAME.NAMESPACE.global` name arriving at
//! the gateway means the local `NAME.NAMESPACE.svc.cluster.local` service.

use crate::endpoint::{load_assignment, local_assignment};
use crate::names::{self, ports};
use crate::pb::*;
use crate::resources::ProxyResources;
use crate::sni_listener::add_sni_chains;
use crate::target::outbound_targets;
use isthmus_api::enums::{Resolution, ServerTlsMode};
use isthmus_model::{host_matches, MeshSnapshot, Proxy, ServiceOrigin};
use std::collections::BTreeMap;

/// The passthrough servers this router has: port -> host patterns.
pub fn passthrough_servers(snapshot: &MeshSnapshot, proxy: &Proxy) -> BTreeMap<u32, Vec<String>> {
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    if proxy.router_mode_sni_dnat {
        out.entry(ports::EAST_WEST).or_default().push("*".into());
    }
    for g in snapshot.gateways_for(&proxy.labels) {
        for s in &g.rule.spec.servers {
            if s.tls.as_ref().map(|t| t.mode) == Some(ServerTlsMode::AutoPassthrough) {
                let hosts = s
                    .hosts
                    .iter()
                    .map(|h| h.split_once('/').map(|(_, h)| h).unwrap_or(h).to_string());
                out.entry(s.port.number).or_default().extend(hosts);
            }
        }
    }
    out
}

/// Everything a router gets.
pub fn router_resources(snapshot: &MeshSnapshot, proxy: &Proxy) -> ProxyResources {
    let mut res = ProxyResources::default();
    // The AuthorizationPolicies that select this gateway, for every chain it serves.
    let authz = crate::rbac::GatewayAuthz::of(snapshot, proxy);
    let servers = passthrough_servers(snapshot, proxy);
    let targets = outbound_targets(snapshot, proxy);
    let mut chains_by_port: BTreeMap<u32, Vec<FilterChain>> = BTreeMap::new();
    let mut made = std::collections::BTreeSet::new();
    let mut used_names = std::collections::BTreeSet::new();
    for (t, _) in &targets {
        let cluster = names::sni(t.port, &t.subset, &t.service.hostname);
        let kubernetes = t.service.origin == ServiceOrigin::Kubernetes;
        // Export control: a service that is not exported has no filter chain here, so its
        // SNI falls to the refusing default chain.
        if !t.service.exported {
            continue;
        }
        // Kubernetes services: their endpoints in this cluster. Mesh-internal
        // ServiceEntries: their endpoints as this router's network view sees them (an
        // egress gateway with REQUESTED_NETWORK_VIEW=external forwards to the remote
        // gateway a ServiceEntry puts on network `external`).
        let cla = if kubernetes {
            local_assignment(proxy, t, &cluster)
        } else if t.service.mesh_internal() && !proxy.network_views.is_empty() {
            // Only a router that asked for a network view (an egress gateway) relays to
            // other clusters; an east-west gateway serves its own cluster only.
            load_assignment(snapshot, proxy, t, &cluster)
        } else {
            continue;
        };
        if cla.endpoints.is_empty() {
            continue;
        }
        let dns = !kubernetes
            && matches!(
                t.service.resolution,
                Resolution::Dns | Resolution::DnsRoundRobin
            );
        let global = if kubernetes {
            format!("{}.{}.global", t.service.name, t.service.namespace)
        } else {
            t.service.hostname.clone()
        };
        for (port, hosts) in &servers {
            let mut server_names = Vec::new();
            for host in [&t.service.hostname, &global] {
                let sni = names::sni(t.port, &t.subset, host);
                // One SNI, one chain: Envoy refuses overlapping filter chains.
                if hosts.iter().any(|h| host_matches(h, host))
                    && used_names.insert((*port, sni.clone()))
                {
                    server_names.push(sni);
                }
            }
            if server_names.is_empty() {
                continue;
            }
            chains_by_port.entry(*port).or_default().push(FilterChain {
                name: cluster.clone(),
                filter_chain_match: Some(FilterChainMatch {
                    server_names,
                    ..Default::default()
                }),
                filters: authz.tcp_then(tcp_proxy_filter(&cluster, &cluster)),
                ..Default::default()
            });
            if made.insert(cluster.clone()) {
                if dns {
                    res.clusters.push(Cluster {
                        name: cluster.clone(),
                        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                            cluster::DiscoveryType::StrictDns as i32,
                        )),
                        dns_lookup_family: cluster::DnsLookupFamily::V4Only as i32,
                        load_assignment: Some(cla.clone()),
                        connect_timeout: Some(seconds(10)),
                        ..Default::default()
                    });
                } else {
                    res.clusters.push(Cluster {
                        name: cluster.clone(),
                        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                            cluster::DiscoveryType::Eds as i32,
                        )),
                        eds_cluster_config: Some(cluster::EdsClusterConfig {
                            eds_config: Some(ads()),
                            service_name: cluster.clone(),
                        }),
                        connect_timeout: Some(seconds(10)),
                        ..Default::default()
                    });
                    res.endpoints.push(cla.clone());
                }
            }
        }
    }
    for port in servers.into_keys() {
        let chains = chains_by_port.remove(&port).unwrap_or_default();
        add_sni_chains(&mut res, port, chains);
    }
    crate::passthrough::add(snapshot, proxy, &authz, &mut res);
    crate::gateway_http::add(snapshot, proxy, &authz, &mut res);
    crate::funnel::add_gateway(snapshot, proxy, &authz, &mut res);
    res.clusters.push(Cluster {
        name: names::BLACKHOLE.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(seconds(10)),
        ..Default::default()
    });
    res
}
