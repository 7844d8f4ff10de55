//! A DestinationRule's loadBalancer, connectionPool and outlierDetection on the clusters,
//! routes and TCP listeners a sidecar gets, as Istio generates them; a subset's policy
//! replaces the rule's component by component.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{LbConfig, LbPolicy};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::route::v3::route;
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use prost::Message;

mod common;

const OBJECTS: &str = r#"apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: 10.96.0.11
  selector: {app: db}
  ports: [{name: tcp-db, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: shop}
spec:
  clusterIP: 10.96.0.12
  selector: {app: greeter}
  ports: [{name: grpc-api, port: 50051, targetPort: 9000}]
---
apiVersion: v1
kind: Pod
metadata: {name: greeter-0, namespace: shop, labels: {app: greeter}}
status: {podIP: 10.10.0.23, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews, version: v1}}
status: {podIP: 10.10.0.21, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
status: {podIP: 10.10.0.22, phase: Running}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 250ms, tcpKeepalive: {time: 60s, interval: 5s, probes: 3}}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 9, maxRetries: 2, maxRequestsPerConnection: 1, idleTimeout: 30s}
    outlierDetection:
      consecutive5xxErrors: 2
      consecutiveGatewayErrors: 0
      interval: 2s
      baseEjectionTime: 15s
      maxEjectionPercent: 50
      minHealthPercent: 20
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: shop}
spec:
  host: db.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        useSourceIp: true
        maglev: {tableSize: 65537}
"#;

fn generated() -> isthmus_envoy::ProxyResources {
    generated_for("sidecar~10.10.0.30~sleep-0.shop~shop.svc.cluster.local")
}

fn generated_for(node: &str) -> isthmus_envoy::ProxyResources {
    let snap = common::snapshot(OBJECTS, "shop", "c1", "n1");
    let proxy = common::proxy(&snap, node, "c1", &[]);
    isthmus_envoy::generate(&snap, &proxy)
}

fn cluster<'a>(res: &'a isthmus_envoy::ProxyResources, name: &str) -> &'a Cluster {
    res.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

#[test]
fn the_rules_policy_is_on_the_cluster_and_a_subset_replaces_its_load_balancer() {
    let res = generated();
    let all = cluster(&res, "outbound|9080||reviews.shop.svc.cluster.local");
    assert_eq!(all.lb_policy, LbPolicy::RingHash as i32);
    let Some(LbConfig::RingHashLbConfig(ring)) = &all.lb_config else {
        panic!("no ring: {:?}", all.lb_config);
    };
    assert_eq!(ring.minimum_ring_size.map(|v| v.value), Some(1024));
    let t = &all.circuit_breakers.as_ref().expect("breakers").thresholds[0];
    assert_eq!(
        (
            t.max_connections.map(|v| v.value),
            t.max_pending_requests.map(|v| v.value),
            t.max_requests.map(|v| v.value),
            t.max_retries.map(|v| v.value),
            t.track_remaining
        ),
        (Some(7), Some(1), Some(9), Some(2), true)
    );
    let timeout = all.connect_timeout.expect("timeout");
    assert_eq!((timeout.seconds, timeout.nanos), (0, 250_000_000));
    let keepalive = all
        .upstream_connection_options
        .as_ref()
        .and_then(|o| o.tcp_keepalive)
        .expect("keepalive");
    assert_eq!(
        (
            keepalive.keepalive_probes.map(|v| v.value),
            keepalive.keepalive_time.map(|v| v.value),
            keepalive.keepalive_interval.map(|v| v.value)
        ),
        (Some(3), Some(60), Some(5))
    );
    let options = all
        .typed_extension_protocol_options
        .get(isthmus_envoy::policy::HTTP_OPTIONS)
        .expect("HTTP options");
    let options =
        envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions::decode(
            options.value.as_slice(),
        )
        .expect("decodes");
    let common = options.common_http_protocol_options.expect("common");
    assert_eq!(common.max_requests_per_connection.map(|v| v.value), Some(1));
    assert_eq!(common.idle_timeout.map(|d| d.seconds), Some(30));
    let od = all.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!(od.consecutive_5xx.map(|v| v.value), Some(2));
    assert_eq!(od.enforcing_consecutive_5xx.map(|v| v.value), Some(100));
    // consecutiveGatewayErrors: 0 turns that detector off.
    assert_eq!(
        od.enforcing_consecutive_gateway_failure.map(|v| v.value),
        Some(0)
    );
    assert_eq!(od.enforcing_success_rate.map(|v| v.value), Some(0));
    assert_eq!(od.interval.map(|d| d.seconds), Some(2));
    assert_eq!(od.base_ejection_time.map(|d| d.seconds), Some(15));
    assert_eq!(od.max_ejection_percent.map(|v| v.value), Some(50));
    let panic_at = all
        .common_lb_config
        .as_ref()
        .and_then(|c| c.healthy_panic_threshold)
        .map(|p| p.value);
    assert_eq!(panic_at, Some(20.0));

    // The subset sets only loadBalancer: RANDOM there, the rest from the rule.
    let v1 = cluster(&res, "outbound|9080|v1|reviews.shop.svc.cluster.local");
    assert_eq!(v1.lb_policy, LbPolicy::Random as i32);
    assert!(v1.lb_config.is_none());
    assert_eq!(v1.outlier_detection, all.outlier_detection);
    assert_eq!(v1.circuit_breakers, all.circuit_breakers);

    // No rule: Istio's defaults.
    let db = cluster(&res, "outbound|5432||db.shop.svc.cluster.local");
    assert_eq!(db.lb_policy, LbPolicy::Maglev as i32);
    let Some(LbConfig::MaglevLbConfig(m)) = &db.lb_config else {
        panic!("no maglev table");
    };
    assert_eq!(m.table_size.map(|v| v.value), Some(65537));
    let t = &db.circuit_breakers.as_ref().expect("breakers").thresholds[0];
    assert_eq!(t.max_connections.map(|v| v.value), Some(u32::MAX));
    assert!(db.outlier_detection.is_none());
}

#[test]
fn routes_hash_by_the_rules_key_and_retry_on_the_same_host() {
    let res = generated();
    let rc = res
        .routes
        .iter()
        .find(|r| r.name == "9080")
        .expect("routes for 9080");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.name == "reviews.shop.svc.cluster.local:9080")
        .expect("reviews' virtual host");
    let Some(route::Action::Route(a)) = &vh.routes[0].action else {
        panic!("not a route");
    };
    assert_eq!(a.hash_policy.len(), 1);
    match &a.hash_policy[0].policy_specifier {
        Some(PolicySpecifier::Header(h)) => assert_eq!(h.header_name, "x-user"),
        other => panic!("hash by {other:?}"),
    }
    let retry = a.retry_policy.as_ref().expect("retries");
    assert!(
        retry.retry_host_predicate.is_empty(),
        "a retry of a hashed key goes to the same host"
    );
}

#[test]
fn a_tcp_service_hashed_by_source_ip_gets_it_on_its_tcp_proxy() {
    let res = generated();
    let l = res
        .listeners
        .iter()
        .find(|l| l.name == "10.96.0.11_5432")
        .expect("db's listener");
    let f = &l.filter_chains[0].filters[0];
    let Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any)) =
        &f.config_type
    else {
        panic!("no config");
    };
    let tcp = TcpProxy::decode(any.value.as_slice()).expect("tcp proxy");
    assert_eq!(tcp.hash_policy.len(), 1, "{tcp:?}");
}

fn speaks_http2(c: &Cluster) -> bool {
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
    };
    let Some(any) = c
        .typed_extension_protocol_options
        .get(isthmus_envoy::policy::HTTP_OPTIONS)
    else {
        return false;
    };
    let o = envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions::decode(
        any.value.as_slice(),
    )
    .expect("decodes");
    matches!(
        o.upstream_protocol_options,
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e))
            if matches!(e.protocol_config, Some(ProtocolConfig::Http2ProtocolOptions(_)))
    )
}

#[test]
fn grpc_ports_speak_http2_to_the_upstream_on_both_sides() {
    let client = generated();
    assert!(speaks_http2(cluster(
        &client,
        "outbound|50051||greeter.shop.svc.cluster.local"
    )));
    assert!(!speaks_http2(cluster(
        &client,
        "outbound|5432||db.shop.svc.cluster.local"
    )));
    // The greeter's own sidecar: HTTP/2 to the app's target port.
    let server = generated_for("sidecar~10.10.0.23~greeter-0.shop~shop.svc.cluster.local");
    let inbound = cluster(&server, "inbound|9000||");
    assert!(speaks_http2(inbound));
    // To the pod's IP from 127.0.0.6 (which capture lets pass), as Istio.
    let rendered = format!("{inbound:?}");
    assert!(rendered.contains("address: \"10.10.0.23\""), "{rendered}");
    let bind = inbound.upstream_bind_config.as_ref().expect("bound");
    assert!(format!("{bind:?}").contains("127.0.0.6"), "{bind:?}");
}
