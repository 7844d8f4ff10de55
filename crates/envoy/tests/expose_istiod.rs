//! Istio's samples/multicluster/expose-istiod.yaml on an east-west gateway: TLS
//! PASSTHROUGH on 15012 and 15017 with `sniHosts: ["*"]`. Envoy refuses a bare `*` in
//! `server_names` (and with it the whole listener update), so such a chain matches any SNI
//! by having none.

mod common;

const OBJECTS: &str = r#"apiVersion: v1
kind: Service
metadata: {name: istiod, namespace: istio-system}
spec:
  selector: {app: istiod}
  ports:
  - {name: grpc-xds, port: 15012}
  - {name: https-webhook, port: 443, targetPort: 15017}
---
apiVersion: v1
kind: Pod
metadata: {name: istiod-0, namespace: istio-system, labels: {app: istiod}}
status: {podIP: 10.10.0.11, phase: Running}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istiod-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15012, name: tls-istiod, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: ["*"]
  - port: {number: 15017, name: tls-istiodwebhook, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: istiod-vs, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [istiod-gateway]
  tls:
  - match: [{port: 15012, sniHosts: ["*"]}]
    route: [{destination: {host: istiod.istio-system.svc.cluster.local, port: {number: 15012}}}]
  - match: [{port: 15017, sniHosts: ["*"]}]
    route: [{destination: {host: istiod.istio-system.svc.cluster.local, port: {number: 443}}}]
"#;

#[test]
fn expose_istiod_passes_any_sni_through_without_a_bare_star() {
    let snap = common::snapshot(OBJECTS, "istio-system", "local", "network1");
    let proxy = common::proxy(
        &snap,
        "router~10.10.0.3~gw-0.istio-system~istio-system.svc.cluster.local",
        "local",
        &[("LABELS", r#"{"istio": "eastwestgateway"}"#)],
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    for (port, cluster) in [
        (
            15012,
            "outbound_.15012_._.istiod.istio-system.svc.cluster.local",
        ),
        (
            15017,
            "outbound_.443_._.istiod.istio-system.svc.cluster.local",
        ),
    ] {
        let listener = res
            .listeners
            .iter()
            .find(|l| l.name == format!("0.0.0.0_{port}"))
            .unwrap_or_else(|| {
                panic!(
                    "no listener on {port}: {:?}",
                    res.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
                )
            });
        let chain = listener
            .filter_chains
            .iter()
            .find(|c| c.name == format!("{cluster}-passthrough"))
            .unwrap_or_else(|| panic!("no chain to {cluster}"));
        let names = &chain
            .filter_chain_match
            .as_ref()
            .expect("a match")
            .server_names;
        assert!(names.is_empty(), "any SNI, no bare `*`: {names:?}");
        assert!(res.clusters.iter().any(|c| c.name == cluster), "{cluster}");
    }
}
