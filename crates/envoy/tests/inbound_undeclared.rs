//! Ports of a workload that no Service declares, under capture (virtualInbound): mesh mTLS
//! is terminated there as on a declared port and forwarded in plain text to the original
//! destination, HTTP told from the rest, the workload's AuthorizationPolicies enforced, and
//! the PeerAuthentication mode applied: STRICT takes nothing but mesh mTLS, and a port-level
//! setting gives its port its own chains, as istiod's passthrough chains do.

use envoy_types::pb::envoy::config::listener::v3::{
    listener_filter_chain_match_predicate::Rule, FilterChain, Listener,
};

mod common;

const APP: &str = r#"apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: bar}
spec:
  clusterIP: 10.96.0.40
  selector: {app: httpbin}
  ports:
  - {name: http, port: 8000, targetPort: 80}
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin-0, namespace: bar, labels: {app: httpbin}}
status: {podIP: 10.10.0.40, phase: Running}
"#;

fn virtual_inbound(extra: &str) -> Listener {
    let snap = common::snapshot(&format!("{APP}{extra}"), "bar", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.40~httpbin-0.bar~bar.svc.cluster.local",
        "c1",
        &[],
    );
    isthmus_envoy::generate(&snap, &proxy)
        .listeners
        .into_iter()
        .find(|l| l.name == "virtualInbound")
        .expect("virtualInbound")
}

/// A chain as `port transport [alpns] filters tls`, for the chains that match no declared
/// port (port 80 is httpbin's).
fn undeclared(l: &Listener) -> Vec<String> {
    l.filter_chains
        .iter()
        .filter(|c| {
            let port = c
                .filter_chain_match
                .as_ref()
                .and_then(|m| m.destination_port)
                .map(|p| p.value);
            port != Some(80) && port != Some(15006)
        })
        .map(describe)
        .collect()
}

fn describe(c: &FilterChain) -> String {
    let m = c.filter_chain_match.clone().unwrap_or_default();
    format!(
        "{} {} [{}] {} {}",
        m.destination_port
            .map_or("any".to_string(), |p| p.value.to_string()),
        m.transport_protocol,
        m.application_protocols.join(","),
        c.filters
            .iter()
            .map(|f| f.name.trim_start_matches("envoy.filters.network."))
            .collect::<Vec<_>>()
            .join("+"),
        if c.transport_socket.is_some() {
            "terminates-mtls"
        } else {
            "as-is"
        }
    )
}

#[test]
fn permissive_terminates_mesh_mtls_and_passes_the_rest() {
    let l = virtual_inbound("");
    assert_eq!(
        undeclared(&l),
        [
            "any tls [istio-http/1.0,istio-http/1.1,istio-h2] http_connection_manager terminates-mtls",
            "any tls [istio-peer-exchange,istio] tcp_proxy terminates-mtls",
            "any tls [] tcp_proxy as-is",
            "any raw_buffer [http/1.1,h2c] http_connection_manager as-is",
            "any raw_buffer [] tcp_proxy as-is",
        ]
    );
    // The HTTP inspector runs for undeclared ports only.
    let names: Vec<_> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    let disabled = l.listener_filters[2]
        .filter_disabled
        .as_ref()
        .and_then(|p| p.rule.clone());
    let Some(Rule::OrMatch(set)) = disabled else {
        panic!("the inspector is disabled for declared ports: {disabled:?}");
    };
    let ranges: Vec<_> = set
        .rules
        .iter()
        .map(|r| match &r.rule {
            Some(Rule::DestinationPortRange(r)) => (r.start, r.end),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ranges, [(80, 81), (15006, 15007)]);
    assert!(l.continue_on_listener_filters_timeout);
}

#[test]
fn strict_takes_only_mesh_mtls_on_undeclared_ports() {
    let l = virtual_inbound(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bar}\nspec:\n  mtls: {mode: STRICT}\n",
    );
    assert_eq!(
        undeclared(&l),
        [
            "any tls [istio-http/1.0,istio-http/1.1,istio-h2] http_connection_manager terminates-mtls",
            "any tls [] tcp_proxy terminates-mtls",
        ]
    );
}

#[test]
fn a_port_level_setting_gives_an_undeclared_port_its_own_mode() {
    let l = virtual_inbound(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: httpbin, namespace: bar}\nspec:\n  selector: {matchLabels: {app: httpbin}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    9090: {mode: DISABLE}\n",
    );
    assert_eq!(
        undeclared(&l),
        [
            "9090 raw_buffer [http/1.1,h2c] http_connection_manager as-is",
            "9090 raw_buffer [] tcp_proxy as-is",
            "9090 tls [] tcp_proxy as-is",
            "any tls [istio-http/1.0,istio-http/1.1,istio-h2] http_connection_manager terminates-mtls",
            "any tls [] tcp_proxy terminates-mtls",
        ]
    );
}

#[test]
fn authorization_policies_hold_on_undeclared_ports() {
    let l = virtual_inbound(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: bar}\nspec: {}\n",
    );
    let catchall: Vec<_> = l
        .filter_chains
        .iter()
        .filter(|c| {
            c.filter_chain_match
                .as_ref()
                .is_some_and(|m| m.destination_port.is_none())
        })
        .collect();
    assert_eq!(catchall.len(), 5);
    for c in catchall {
        let rbac = c
            .filters
            .iter()
            .any(|f| f.name == "envoy.filters.network.rbac")
            || c.filters.iter().any(|f| {
                use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
                use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
                use prost::Message;
                let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                    return false;
                };
                f.name == "envoy.filters.network.http_connection_manager"
                    && HttpConnectionManager::decode(any.value.as_slice())
                        .expect("hcm")
                        .http_filters
                        .iter()
                        .any(|h| h.name == "envoy.filters.http.rbac")
            });
        assert!(rbac, "{} has no RBAC filter", describe(c));
    }
}
