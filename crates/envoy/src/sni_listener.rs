//! A router's SNI-routed listeners (`0.0.0.0_PORT`), shared by the gateway features that add
//! filter chains to them: AUTO_PASSTHROUGH, TLS PASSTHROUGH servers and the egress funnel.

use crate::names;
use crate::pb::*;
use crate::resources::ProxyResources;

/// Adds SNI-routed filter chains to the router's `0.0.0.0_PORT` listener, creating it (TLS
/// inspector, and a default chain that refuses an unknown SNI rather than guess) if needed.
/// Gateways are not captured: like Istio's, they listen on every address of the pod (the pod
/// IP for in-cluster traffic and the public address for the WAN).
pub(crate) fn add_sni_chains(res: &mut ProxyResources, port: u32, chains: Vec<FilterChain>) {
    let name = format!("0.0.0.0_{port}");
    if let Some(l) = res.listeners.iter_mut().find(|l| l.name == name) {
        l.filter_chains.extend(chains);
        return;
    }
    res.listeners.push(Listener {
        name,
        address: Some(socket("0.0.0.0", port)),
        listener_filters: vec![tls_inspector()],
        filter_chains: chains,
        default_filter_chain: Some(FilterChain {
            name: "unknown-sni".into(),
            filters: vec![tcp_proxy_filter(names::BLACKHOLE, names::BLACKHOLE)],
            ..Default::default()
        }),
        ..Default::default()
    });
}
