//! EDS with split horizon: a proxy gets the endpoints of its own network directly and, for
//! each other network, that network's gateways weighted by the number of mTLS-capable
//! endpoints behind them (per locality). Endpoints that cannot take mTLS are never sent
//! through a gateway, and a network without a gateway is unreachable.

use crate::locality::LocalityLb;
use crate::pb::*;
use crate::policy::Policy;
use crate::target::OutboundTarget;
use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use isthmus_model::{Address, Endpoint, MeshSnapshot, Proxy};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The `envoy.transport_socket_match` value that picks plain text for an endpoint without a
/// sidecar (Istio's `tlsMode: disabled`).
pub const PLAINTEXT_MATCH: (&str, &str) = ("tlsMode", "disabled");

/// The transport socket match of a cluster with automatic mTLS: endpoints marked
/// [`PLAINTEXT_MATCH`] get raw bytes, every other endpoint the cluster's mTLS.
pub fn plaintext_match(
) -> envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch {
    use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
    use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value};
    envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch {
        name: "tlsMode-disabled".into(),
        r#match: Some(Struct {
            fields: [(
                PLAINTEXT_MATCH.0.to_string(),
                Value {
                    kind: Some(Kind::StringValue(PLAINTEXT_MATCH.1.into())),
                },
            )]
            .into_iter()
            .collect(),
        }),
        transport_socket: Some(TransportSocket {
            name: "envoy.transport_sockets.raw_buffer".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                type_url:
                    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
                        .into(),
                value: Vec::new(),
            })),
        }),
    }
}

/// Marks an endpoint to be reached in plain text ([`plaintext_match`]).
fn mark_plaintext(e: &mut LbEndpoint) {
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let fields = [(
        PLAINTEXT_MATCH.0.to_string(),
        Value {
            kind: Some(Kind::StringValue(PLAINTEXT_MATCH.1.into())),
        },
    )]
    .into_iter()
    .collect();
    e.metadata
        .get_or_insert_with(Metadata::default)
        .filter_metadata
        .insert("envoy.transport_socket_match".into(), Struct { fields });
}

/// One weighted address.
pub fn lb_endpoint(address: impl Into<String>, port: u32, weight: u32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(socket(address, port)),
            ..Default::default()
        })),
        load_balancing_weight: Some(UInt32Value {
            value: weight.max(1),
        }),
        ..Default::default()
    }
}

fn selected<'a>(t: &'a OutboundTarget<'_>) -> impl Iterator<Item = &'a Endpoint> + 'a {
    t.service.endpoints.iter().filter(move |e| {
        t.labels
            .iter()
            .all(|(k, v)| e.origin.labels.get(k) == Some(v))
    })
}

/// The endpoints of `t` as `proxy` should see them: its own network's directly, other
/// networks' as their gateways; grouped by locality, and with locality load balancing
/// (priorities by nearness and labels, or weights by locality) when the destination's
/// DestinationRule asks for it.
pub fn load_assignment(
    snapshot: &MeshSnapshot,
    proxy: &Proxy,
    t: &OutboundTarget<'_>,
    cluster_name: &str,
) -> ClusterLoadAssignment {
    let Some(port) = t.service.port(t.port) else {
        return ClusterLoadAssignment {
            cluster_name: cluster_name.to_string(),
            ..Default::default()
        };
    };
    let policy = Policy::of_subset(snapshot, proxy, t.service, &t.subset);
    let lb = LocalityLb::new(proxy, &policy);
    // (locality, label priority) -> (address, port) -> weight
    // Endpoints' addresses are borrowed; the few gateways' are parsed.
    // (address, port, without a sidecar) -> weight
    type Group<'e> = BTreeMap<(Cow<'e, Address>, u32, bool), u32>;
    let mut by_group: BTreeMap<(&str, u32), Group<'_>> = BTreeMap::new();
    // (network, locality, label priority) -> number of endpoints behind that network's
    // gateways
    let mut remote: BTreeMap<(&str, &str, u32), u32> = BTreeMap::new();
    for e in selected(t) {
        let Some(ep_port) = e.origin.ports.get(&port.name).copied() else {
            continue;
        };
        let label_priority = lb.label_priority(&e.origin);
        if proxy.reaches_directly(&e.origin.network) {
            *by_group
                .entry((&e.origin.locality, label_priority))
                .or_default()
                .entry((
                    Cow::Borrowed(&e.address),
                    ep_port,
                    e.origin.without_sidecar(),
                ))
                .or_default() += e.weight();
        } else if e.origin.mtls_ready && !e.origin.network.is_empty() {
            *remote
                .entry((&e.origin.network, &e.origin.locality, label_priority))
                .or_default() += e.weight();
        }
    }
    for ((network, locality, label_priority), count) in remote {
        let gateways = snapshot
            .network_gateways
            .get(network)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if gateways.is_empty() {
            continue;
        }
        let n = gateways.len() as u32;
        for (i, gw) in gateways.iter().enumerate() {
            // Split evenly; the first gateways take the remainder so the total stays exact.
            let share = count / n + u32::from((i as u32) < count % n);
            if share == 0 {
                continue;
            }
            let loc = if gw.locality.is_empty() {
                locality
            } else {
                &gw.locality
            };
            *by_group
                .entry((loc, label_priority))
                .or_default()
                .entry((Cow::Owned(Address::parse(&gw.address)), gw.port, false))
                .or_default() += share;
        }
    }
    // A gateway found down leaves rotation only when something else is left to take its
    // traffic: with every endpoint down there is nothing to fail over to.
    let all_down = !snapshot.gateway_health.down.is_empty()
        && by_group
            .values()
            .flat_map(|eps| eps.keys())
            .all(|(a, p, _)| snapshot.gateway_health.is_down(&a.to_string(), *p));
    let localities: Vec<&str> = by_group.keys().map(|(l, _)| *l).collect();
    let priorities = crate::locality::dense(
        &by_group
            .keys()
            .map(|(l, lp)| lb.priority(l, *lp))
            .collect::<Vec<_>>(),
    );
    let mut endpoints = Vec::with_capacity(by_group.len());
    for (((locality, _), eps), priority) in by_group.into_iter().zip(priorities) {
        let weight = if lb.distributes() {
            // A locality the rule gives nothing gets no traffic.
            let Some(w) = lb.weight(locality, &localities) else {
                continue;
            };
            Some(UInt32Value { value: w })
        } else {
            None
        };
        endpoints.push(LocalityLbEndpoints {
            locality: locality_pb(locality),
            lb_endpoints: eps
                .into_iter()
                .map(|((a, p, plaintext), w)| {
                    let address = a.to_string();
                    let down = !all_down && snapshot.gateway_health.is_down(&address, p);
                    let mut e = lb_endpoint(address, p, w);
                    if plaintext {
                        mark_plaintext(&mut e);
                    }
                    if down {
                        // The control plane's probes found this gateway silent.
                        e.health_status = HealthStatus::Unhealthy as i32;
                    }
                    e
                })
                .collect(),
            load_balancing_weight: weight,
            priority: if lb.prioritizes() { priority } else { 0 },
            ..Default::default()
        });
    }
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints,
        ..Default::default()
    }
}

/// Local endpoints only (what a gateway forwards to).
pub fn local_assignment(
    proxy: &Proxy,
    t: &OutboundTarget<'_>,
    cluster_name: &str,
) -> ClusterLoadAssignment {
    let port_name = t
        .service
        .port(t.port)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let mut by_locality: BTreeMap<&str, Vec<LbEndpoint>> = BTreeMap::new();
    for e in selected(t) {
        if *e.origin.cluster != *proxy.cluster
            && !(e.origin.cluster.is_empty() && *e.origin.network == *proxy.network)
        {
            continue;
        }
        if let Some(p) = e.origin.ports.get(&port_name) {
            by_locality
                .entry(&e.origin.locality)
                .or_default()
                .push(lb_endpoint(e.address.to_string(), *p, e.weight()));
        }
    }
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints: by_locality
            .into_iter()
            .map(|(l, eps)| LocalityLbEndpoints {
                locality: locality_pb(l),
                lb_endpoints: eps,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn locality_pb(l: &str) -> Option<Locality> {
    if l.is_empty() {
        return None;
    }
    let mut parts = l.splitn(3, '/');
    Some(Locality {
        region: parts.next().unwrap_or_default().to_string(),
        zone: parts.next().unwrap_or_default().to_string(),
        sub_zone: parts.next().unwrap_or_default().to_string(),
    })
}
