//! Ports that declare no protocol (no `protocol` or `appProtocol`, a name without a
//! protocol prefix) are sniffed as Istio does: the outbound listener on the service's VIP
//! inspects the first bytes, HTTP goes to an HTTP connection manager routed by the port's
//! routes, anything else to the TCP proxy, and the cluster speaks to the upstream what the
//! client spoke. Declared ports keep their own handling.

use envoy_types::pb::envoy::config::listener::v3::{filter::ConfigType, Listener};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::UpstreamProtocolOptions, HttpProtocolOptions,
};
use prost::Message;

mod common;

const MESH: &str = r#"apiVersion: v1
kind: Service
metadata: {name: mixed, namespace: bar}
spec:
  clusterIP: 10.96.0.30
  selector: {app: mixed}
  ports:
  - {name: web, port: 8000}
  - {name: tcp-raw, port: 9000}
  - {name: site, port: 8080, appProtocol: http}
---
apiVersion: v1
kind: Pod
metadata: {name: mixed-0, namespace: bar, labels: {app: mixed}}
status: {podIP: 10.10.0.60, phase: Running}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: unnamed, namespace: bar}
spec:
  hosts: [api.sniffed.example]
  addresses: [240.0.0.9]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: api, number: 7000}]
  endpoints: [{address: 10.1.0.9}]
"#;

fn resources(capture: bool) -> isthmus_envoy::ProxyResources {
    let snap = common::snapshot(MESH, "bar", "c1", "n1");
    let md: &[(&str, &str)] = if capture {
        &[]
    } else {
        &[("INTERCEPTION_MODE", "NONE")]
    };
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.30~sleep-0.foo~foo.svc.cluster.local",
        "c1",
        md,
    );
    isthmus_envoy::generate(&snap, &proxy)
}

fn listener<'a>(res: &'a isthmus_envoy::ProxyResources, name: &str) -> &'a Listener {
    res.listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no listener {name}: {:?}",
                res.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
            )
        })
}

fn filter_names(l: &Listener) -> Vec<Vec<String>> {
    l.filter_chains
        .iter()
        .map(|c| c.filters.iter().map(|f| f.name.clone()).collect())
        .collect()
}

/// The upstream protocol choice of cluster `name`, if it sets one.
fn upstream(res: &isthmus_envoy::ProxyResources, name: &str) -> Option<UpstreamProtocolOptions> {
    let c = res
        .clusters
        .iter()
        .find(|c| c.name == name)
        .expect("cluster");
    let any = c
        .typed_extension_protocol_options
        .get(isthmus_envoy::policy::HTTP_OPTIONS)?;
    HttpProtocolOptions::decode(any.value.as_slice())
        .expect("options decode")
        .upstream_protocol_options
}

#[test]
fn an_undeclared_port_is_sniffed_on_its_vip() {
    for capture in [true, false] {
        let res = resources(capture);
        for (name, route) in [("10.96.0.30_8000", "8000"), ("240.0.0.9_7000", "7000")] {
            let l = listener(&res, name);
            assert_eq!(
                l.listener_filters
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>(),
                ["envoy.filters.listener.http_inspector"],
                "{name}"
            );
            assert!(l.continue_on_listener_filters_timeout, "{name}");
            assert_eq!(l.listener_filters_timeout.map(|d| d.seconds), Some(5));
            assert_eq!(
                filter_names(l),
                [
                    vec!["envoy.filters.network.http_connection_manager".to_string()],
                    vec!["envoy.filters.network.tcp_proxy".to_string()]
                ],
                "{name}: HTTP first, then TCP"
            );
            let m = l.filter_chains[0]
                .filter_chain_match
                .as_ref()
                .expect("the HTTP chain matches");
            assert_eq!(m.application_protocols, ["http/1.0", "http/1.1", "h2c"]);
            assert!(l.filter_chains[1].filter_chain_match.is_none());
            let Some(ConfigType::TypedConfig(hcm)) = &l.filter_chains[0].filters[0].config_type
            else {
                panic!("no HCM config");
            };
            use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
                http_connection_manager::RouteSpecifier, HttpConnectionManager,
            };
            let hcm = HttpConnectionManager::decode(hcm.value.as_slice()).expect("hcm");
            let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier else {
                panic!("RDS");
            };
            assert_eq!(rds.route_config_name, route);
            let rc = res
                .routes
                .iter()
                .find(|r| r.name == route)
                .unwrap_or_else(|| panic!("route configuration {route}"));
            assert!(!rc.virtual_hosts.is_empty(), "{route}");
        }
        assert!(matches!(
            upstream(&res, "outbound|8000||mixed.bar.svc.cluster.local"),
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_))
        ));
    }
}

#[test]
fn declared_ports_are_not_sniffed() {
    let res = resources(true);
    let tcp = listener(&res, "10.96.0.30_9000");
    assert!(tcp.listener_filters.is_empty());
    assert_eq!(
        filter_names(tcp),
        [vec!["envoy.filters.network.tcp_proxy".to_string()]]
    );
    // appProtocol http: the shared HTTP listener of the port, as any HTTP port.
    assert!(res.listeners.iter().any(|l| l.name == "0.0.0.0_8080"));
    assert!(!res.listeners.iter().any(|l| l.name == "10.96.0.30_8080"));
    assert!(upstream(&res, "outbound|9000||mixed.bar.svc.cluster.local").is_none());
}

/// The cluster a chain's TCP proxy forwards to.
fn tcp_cluster(chain: &envoy_types::pb::envoy::config::listener::v3::FilterChain) -> String {
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
        tcp_proxy::ClusterSpecifier, TcpProxy,
    };
    let Some(ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no TCP proxy config");
    };
    match TcpProxy::decode(any.value.as_slice())
        .expect("tcp proxy")
        .cluster_specifier
    {
        Some(ClusterSpecifier::Cluster(c)) => c,
        other => panic!("TCP proxy to {other:?}"),
    }
}

#[test]
fn a_shared_http_port_routes_http_and_passes_other_bytes_through() {
    // A declared HTTP port shared by the mesh (0.0.0.0_8080): plain HTTP/1.1 and h2c go to
    // the port's routes; TLS or another protocol to a host outside the mesh on that port
    // leaves by the default chain, as istiod's outbound HTTP listeners.
    let res = resources(true);
    let l = listener(&res, "0.0.0.0_8080");
    assert_eq!(
        l.listener_filters
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["envoy.filters.listener.http_inspector"]
    );
    assert!(l.continue_on_listener_filters_timeout);
    assert_eq!(
        filter_names(l),
        [vec![
            "envoy.filters.network.http_connection_manager".to_string()
        ]]
    );
    let m = l.filter_chains[0]
        .filter_chain_match
        .as_ref()
        .expect("the HTTP chain matches");
    assert_eq!(m.transport_protocol, "raw_buffer");
    assert_eq!(m.application_protocols, ["http/1.1", "h2c"]);
    let default = l.default_filter_chain.as_ref().expect("a default chain");
    assert_eq!(tcp_cluster(default), "PassthroughCluster");

    // REGISTRY_ONLY: what is not HTTP ends where the capture listener sends it, the black hole.
    let yaml = format!(
        "{MESH}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: foo}}\nspec:\n  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}\n"
    );
    let snap = common::snapshot(&yaml, "bar", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.30~sleep-0.foo~foo.svc.cluster.local",
        "c1",
        &[],
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    let l = listener(&res, "0.0.0.0_8080");
    let default = l.default_filter_chain.as_ref().expect("a default chain");
    assert_eq!(tcp_cluster(default), "BlackHoleCluster");
}
