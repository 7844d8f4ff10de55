//! TLS PASSTHROUGH servers of a `Gateway`, routed by a bound `VirtualService`'s `tls` routes
//! on SNI, without terminating TLS: how the seeds' remote cluster reaches the control plane
//! through the local gateway (Istio's meshExpansion gateway for istio-pilot).

use crate::endpoint::local_assignment;
use crate::names;
use crate::pb::*;
use crate::resources::ProxyResources;
use crate::sni_listener::add_sni_chains;
use crate::target::outbound_targets;
use isthmus_api::enums::ServerTlsMode;
use isthmus_model::{fqdn, MeshSnapshot, Proxy};
use std::collections::{BTreeMap, BTreeSet};

/// One SNI route: the names, the port they arrive on, and the destination.
struct SniRoute {
    port: u32,
    sni: Vec<String>,
    host: String,
    dest_port: Option<u32>,
    subset: String,
}

/// Adds the passthrough listeners and clusters of `proxy` (a router) to `res`.
pub fn add(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    authz: &crate::rbac::GatewayAuthz,
    res: &mut ProxyResources,
) {
    let mut routes: Vec<SniRoute> = Vec::new();
    for g in snapshot.gateways_for(&proxy.labels) {
        for server in &g.rule.spec.servers {
            if server.tls.as_ref().map(|t| t.mode) != Some(ServerTlsMode::Passthrough)
                || server.port.protocol.is_http()
            {
                continue;
            }
            let port = server.port.number;
            for vs in &snapshot.virtual_services {
                if !isthmus_model::binds_gateway(
                    &vs.namespace,
                    &vs.rule.spec.gateways,
                    &g.namespace,
                    &g.rule.metadata.name,
                ) {
                    continue;
                }
                for tls in &vs.rule.spec.tls {
                    let Some(dest) = tls.route.first() else {
                        continue;
                    };
                    for m in &tls.match_ {
                        if m.port.is_some_and(|p| p != port)
                            || m.gateways.as_ref().is_some_and(|names| {
                                !isthmus_model::binds_gateway(
                                    &vs.namespace,
                                    names,
                                    &g.namespace,
                                    &g.rule.metadata.name,
                                )
                            })
                        {
                            continue;
                        }
                        let sni = m.sni_hosts.clone();
                        if sni.is_empty() {
                            continue;
                        }
                        routes.push(SniRoute {
                            port,
                            sni,
                            host: fqdn(&dest.destination.host, &vs.namespace),
                            dest_port: dest.destination.port.as_ref().map(|p| p.number),
                            subset: dest.destination.subset.clone().unwrap_or_default(),
                        });
                    }
                }
            }
        }
    }
    if routes.is_empty() {
        return;
    }
    let targets = outbound_targets(snapshot, proxy);
    let mut by_port: BTreeMap<u32, Vec<FilterChain>> = BTreeMap::new();
    let mut used: BTreeSet<(u32, String)> = BTreeSet::new();
    let mut made: BTreeSet<String> = res.clusters.iter().map(|c| c.name.clone()).collect();
    for r in routes {
        let Some((t, _)) = targets.iter().find(|(t, _)| {
            t.service.hostname == r.host
                && t.subset == r.subset
                && r.dest_port.is_none_or(|p| p == t.port)
        }) else {
            continue;
        };
        let cluster = names::sni(t.port, &t.subset, &t.service.hostname);
        let server_names: Vec<String> = r
            .sni
            .into_iter()
            .filter(|s| used.insert((r.port, s.clone())))
            .collect();
        if server_names.is_empty() {
            continue;
        }
        // `sniHosts: ["*"]` (Istio's expose-istiod) matches any SNI: Envoy takes no bare
        // `*` in `server_names` (it refuses the whole listener), so the chain gets none.
        let server_names = if server_names.iter().any(|s| s == "*") {
            Vec::new()
        } else {
            server_names
        };
        if made.insert(cluster.clone()) {
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
            res.endpoints.push(local_assignment(proxy, t, &cluster));
        }
        by_port.entry(r.port).or_default().push(FilterChain {
            name: format!("{cluster}-passthrough"),
            filter_chain_match: Some(FilterChainMatch {
                server_names,
                ..Default::default()
            }),
            filters: authz.tcp_then(tcp_proxy_filter(&cluster, &cluster)),
            ..Default::default()
        });
    }
    for (port, chains) in by_port {
        add_sni_chains(res, port, chains);
    }
}
