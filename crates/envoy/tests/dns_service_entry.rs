//! A `resolution: DNS` ServiceEntry without endpoints resolves its own host (Istio's
//! behaviour); with endpoints, those are resolved instead.

mod common;

const OBJECTS: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: foo}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{name: https, number: 443, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pinned, namespace: foo}
spec:
  hosts: [pinned.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{name: https, number: 443, protocol: TLS}]
  endpoints: [{address: mirror.example.net}]
"#;

fn endpoint_hosts(res: &isthmus_envoy::ProxyResources, cluster: &str) -> Vec<String> {
    let c = res
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .unwrap_or_else(|| panic!("no {cluster}"));
    let text = format!("{:?}", c.load_assignment);
    [
        "api.example.com",
        "mirror.example.net",
        "pinned.example.com",
    ]
    .into_iter()
    .filter(|h| text.contains(&format!("address: \"{h}\"")))
    .map(str::to_string)
    .collect()
}

#[test]
fn a_dns_entry_without_endpoints_resolves_its_host() {
    let snap = common::snapshot(OBJECTS, "foo", "c1", "n1");
    let proxy = common::proxy(
        &snap,
        "sidecar~10.10.0.30~sleep-0.foo~foo.svc.cluster.local",
        "c1",
        &[],
    );
    let res = isthmus_envoy::generate(&snap, &proxy);
    assert_eq!(
        endpoint_hosts(&res, "outbound|443||api.example.com"),
        vec!["api.example.com"]
    );
    assert_eq!(
        endpoint_hosts(&res, "outbound|443||pinned.example.com"),
        vec!["mirror.example.net"]
    );
}
