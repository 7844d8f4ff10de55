//! Automatic mTLS as Istio's: a service with endpoints known to have no sidecar (a pod whose
//! injection is off, an address with no pod behind it, such as the API server's) keeps mTLS
//! for the endpoints with sidecars and reaches the others in plain text, so that an app's own
//! bytes (its TLS to the API server) arrive untouched. A service whose endpoints all have
//! sidecars is unchanged.

use envoy_types::pb::google::protobuf::value::Kind;

mod common;

const MESH: &str = r#"apiVersion: v1
kind: Service
metadata: {name: web, namespace: db}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: db, labels: {app: web}}
status: {podIP: 10.10.0.90, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: db, labels: {app: web}, annotations: {sidecar.istio.io/inject: "false"}}
status: {podIP: 10.10.0.91, phase: Running}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: db}
spec:
  selector: {app: api}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: db, labels: {app: api}}
status: {podIP: 10.10.0.92, phase: Running}
"#;

#[test]
fn endpoints_without_a_sidecar_are_reached_in_plain_text_the_others_over_mtls() {
    let snap = common::snapshot(MESH, "db", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.30~sleep-0.foo~foo.svc.cluster.local",
        "c1",
        &[],
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    let cluster = |name: &str| {
        res.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    };
    let web = cluster("outbound|80||web.db.svc.cluster.local");
    assert!(web.transport_socket.is_some(), "mTLS stays the default");
    assert_eq!(web.transport_socket_matches.len(), 1);
    let m = &web.transport_socket_matches[0];
    let fields = &m.r#match.as_ref().expect("a match").fields;
    assert_eq!(
        fields["tlsMode"].kind,
        Some(Kind::StringValue("disabled".into()))
    );
    assert_eq!(
        m.transport_socket.as_ref().map(|t| t.name.as_str()),
        Some("envoy.transport_sockets.raw_buffer")
    );
    // EDS marks the pod without a sidecar, and only it.
    let cla = res
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|80||web.db.svc.cluster.local")
        .expect("web's endpoints");
    let marked: Vec<(String, bool)> = cla
        .endpoints
        .iter()
        .flat_map(|l| l.lb_endpoints.iter())
        .map(|e| {
            let address = format!("{:?}", e.host_identifier);
            let plain = e.metadata.as_ref().is_some_and(|m| {
                m.filter_metadata
                    .contains_key("envoy.transport_socket_match")
            });
            (address, plain)
        })
        .collect();
    assert_eq!(marked.len(), 2, "{marked:?}");
    for (address, plain) in &marked {
        assert_eq!(*plain, address.contains("10.10.0.91"), "{address}");
    }
    // Every endpoint of api has a sidecar: its cluster is as before.
    let api = cluster("outbound|8080||api.db.svc.cluster.local");
    assert!(api.transport_socket.is_some());
    assert!(api.transport_socket_matches.is_empty());
}
