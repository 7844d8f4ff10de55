//! The automation seed 002 says "could be automated": a control plane with read access to
//! other clusters' registries generates, for every service that has pods there, the
//! ServiceEntries a person would otherwise write: `NAME.NAMESPACE.global` and, when the
//! namespace is replicated here, `NAME.NAMESPACE.svc.cluster.local`, with one endpoint per
//! remote cluster: that cluster's east-west gateway on 15443, weighted by the number of
//! pods behind it. Only exported services are generated.

use isthmus_api::enums::{Location, Protocol, Resolution};
use isthmus_api::kube::{PodPhase, Service as KubeService};
use isthmus_api::networking::{ServiceEntry, ServiceEntrySpec, ServicePort, WorkloadEntrySpec};
use isthmus_api::{Object, ObjectMeta, Origin, Resource};
use isthmus_registry::ClusterConfig;
use std::collections::BTreeMap;

/// Label that exports (`"true"`) or hides (`"false"`) a Service from other clusters.
pub const EXPORT_LABEL: &str = "isthmus.io/export";
/// Istio's annotation: `*` exports to everyone, `.` keeps a service in its namespace (and so
/// in its cluster).
pub const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";
/// Annotation on generated ServiceEntries saying where they came from.
pub const GENERATED_ANNOTATION: &str = "isthmus.io/generated-from";

/// Whether services are reachable from other clusters unless they say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportDefault {
    /// Every service is exported unless it opts out (what the seeds expect of 15443).
    #[default]
    Exported,
    /// Only services that opt in are exported.
    Hidden,
}

impl ExportDefault {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportDefault::Exported => "exported",
            ExportDefault::Hidden => "hidden",
        }
    }
}

impl std::str::FromStr for ExportDefault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exported" | "all" => Ok(ExportDefault::Exported),
            "hidden" | "none" => Ok(ExportDefault::Hidden),
            other => Err(format!("`{other}`: expected `exported` or `hidden`")),
        }
    }
}

/// True when `svc` may be reached from other clusters.
pub fn exported(svc: &KubeService, default: ExportDefault) -> bool {
    if let Some(v) = svc.metadata.labels.get(EXPORT_LABEL) {
        return v == "true";
    }
    if let Some(v) = svc.metadata.annotations.get(EXPORT_TO_ANNOTATION) {
        return v.split(',').any(|x| x.trim() == "*");
    }
    default == ExportDefault::Exported
}

/// A generated ServiceEntry and why it exists.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The resource, as if a user had applied it in the local cluster.
    pub resource: Resource,
    /// `cluster2: 3 endpoints via 198.18.1.2:15443; ...`
    pub explanation: String,
}

fn gateway_address(c: &ClusterConfig) -> Option<String> {
    c.resources.values().find_map(|r| match &r.object {
        Object::Service(s)
            if &*s.metadata.namespace == "istio-system"
                && s.metadata.labels.get("istio").map(String::as_str) == Some("ingressgateway") =>
        {
            s.status.address().map(str::to_string)
        }
        _ => None,
    })
}

fn ready_pods(c: &ClusterConfig, svc: &KubeService) -> u32 {
    if svc.spec.selector.is_empty() {
        return 0;
    }
    c.resources
        .values()
        .filter(|r| match &r.object {
            Object::Pod(p) => {
                p.metadata.namespace == svc.metadata.namespace
                    && p.status.pod_ip().is_some()
                    && p.status.phase.unwrap_or(PodPhase::Running) == PodPhase::Running
                    && p.status.ready != Some(false)
                    && svc
                        .spec
                        .selector
                        .iter()
                        .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
            }
            _ => false,
        })
        .count() as u32
}

struct Remote {
    cluster: String,
    gateway: String,
    pods: u32,
}

/// The ServiceEntries `local` needs for the services of `remotes`.
pub fn generate(
    local: &ClusterConfig,
    remotes: &[&ClusterConfig],
    default: ExportDefault,
) -> Vec<Generated> {
    // (namespace, name) -> (the Service, where it has pods)
    let mut found: BTreeMap<(String, String), (KubeService, Vec<Remote>)> = BTreeMap::new();
    for c in remotes {
        let Some(gateway) = gateway_address(c) else {
            continue;
        };
        for r in c.resources.values() {
            let Object::Service(s) = &r.object else {
                continue;
            };
            let ns = &s.metadata.namespace;
            if &**ns == "istio-system" || &**ns == "kube-system" || !exported(s, default) {
                continue;
            }
            let pods = ready_pods(c, s);
            if pods == 0 {
                continue;
            }
            let entry = found
                .entry((ns.to_string(), s.metadata.name.to_string()))
                .or_insert_with(|| ((**s).clone(), Vec::new()));
            entry.1.push(Remote {
                cluster: c.cluster.clone(),
                gateway: gateway.clone(),
                pods,
            });
        }
    }
    let local_namespaces: Vec<&str> = local
        .resources
        .values()
        .filter_map(|r| match &r.object {
            Object::Namespace(n) => Some(&*n.metadata.name),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for ((ns, name), (svc, remotes)) in found {
        let ports: Vec<ServicePort> = svc
            .spec
            .ports
            .iter()
            .filter(|p| p.proxied())
            .map(|p| {
                let name = if p.name.is_empty() {
                    format!("port-{}", p.port)
                } else {
                    p.name.to_string()
                };
                ServicePort {
                    number: p.port,
                    protocol: Some(
                        p.app_protocol
                            .as_deref()
                            .and_then(Protocol::parse)
                            .unwrap_or_else(|| Protocol::from_port_name(&name)),
                    ),
                    name,
                    target_port: None,
                }
            })
            .collect();
        let endpoints: Vec<WorkloadEntrySpec> = remotes
            .iter()
            .map(|r| WorkloadEntrySpec {
                address: r.gateway.clone(),
                ports: ports.iter().map(|p| (p.name.clone(), 15443)).collect(),
                labels: BTreeMap::new(),
                network: None,
                locality: None,
                weight: Some(r.pods),
                service_account: None,
            })
            .collect();
        let explanation = remotes
            .iter()
            .map(|r| {
                format!(
                    "{}: {} endpoint{} via {}:15443",
                    r.cluster,
                    r.pods,
                    if r.pods == 1 { "" } else { "s" },
                    r.gateway
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut hosts = vec![format!("{name}.{ns}.global")];
        if local_namespaces.contains(&ns.as_str()) {
            hosts.push(format!("{name}.{ns}.svc.cluster.local"));
        }
        let resolution = if remotes
            .iter()
            .all(|r| r.gateway.parse::<std::net::IpAddr>().is_ok())
        {
            Resolution::Static
        } else {
            Resolution::Dns
        };
        for host in hosts {
            let se_name = format!("isthmus-{}", host.replace('.', "-"));
            let se = ServiceEntry {
                metadata: ObjectMeta {
                    name: se_name.into(),
                    namespace: ns.as_str().into(),
                    annotations: [(GENERATED_ANNOTATION.to_string(), explanation.clone())].into(),
                    ..Default::default()
                },
                spec: ServiceEntrySpec {
                    hosts: vec![host],
                    ports: ports.clone(),
                    location: Some(Location::MeshInternal),
                    resolution: Some(resolution),
                    endpoints: endpoints.clone(),
                    ..Default::default()
                },
            };
            out.push(Generated {
                resource: Resource {
                    object: Object::ServiceEntry(Box::new(se)),
                    origin: Origin::default(),
                },
                explanation: explanation.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cluster(name: &str, yaml: &str) -> ClusterConfig {
        let loaded = isthmus_api::load_str(yaml, None, "default");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        ClusterConfig {
            cluster: name.into(),
            resources: loaded
                .resources
                .into_iter()
                .map(|r| (r.key(), Arc::new(r)))
                .collect(),
            diagnostics: Vec::new(),
            ..Default::default()
        }
    }

    fn pod(ns: &str, name: &str, app: &str, ip: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\nstatus: {{podIP: {ip}, phase: Running}}\n---\n")
    }

    const GATEWAY: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: istio-ingressgateway, namespace: istio-system, labels: {istio: ingressgateway}}\nspec: {ports: [{name: tls, port: 15443}], selector: {istio: ingressgateway}}\nstatus: {loadBalancer: {ingress: [{ip: 198.18.1.2}]}}\n---\n";

    #[test]
    fn one_entry_per_exported_service_weighted_by_pods() {
        let mut remote = String::from(GATEWAY);
        remote.push_str("apiVersion: v1\nkind: Service\nmetadata: {name: bar, namespace: ns2}\nspec: {ports: [{name: http, port: 80}, {name: tcp, port: 9090}], selector: {app: bar}}\n---\n");
        remote.push_str("apiVersion: v1\nkind: Service\nmetadata: {name: secret, namespace: ns2, annotations: {networking.istio.io/exportTo: \".\"}}\nspec: {ports: [{name: http, port: 80}], selector: {app: secret}}\n---\n");
        remote.push_str("apiVersion: v1\nkind: Service\nmetadata: {name: idle, namespace: ns2}\nspec: {ports: [{name: http, port: 80}], selector: {app: idle}}\n---\n");
        for (i, name) in ["bar-0", "bar-1", "bar-2"].iter().enumerate() {
            remote.push_str(&pod("ns2", name, "bar", &format!("10.10.0.{}", 30 + i)));
        }
        remote.push_str(&pod("ns2", "secret-0", "secret", "10.10.0.40"));
        let remote = cluster("cluster2", &remote);
        let local = cluster(
            "cluster1",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns2}\n",
        );
        let got = generate(&local, &[&remote], ExportDefault::Exported);
        let hosts: Vec<String> = got
            .iter()
            .filter_map(|g| match &g.resource.object {
                Object::ServiceEntry(se) => Some(se.spec.hosts[0].clone()),
                _ => None,
            })
            .collect();
        // ns2 exists locally, so the Kubernetes name is generated too; `secret` is not
        // exported and `idle` has no pods.
        assert_eq!(hosts, vec!["bar.ns2.global", "bar.ns2.svc.cluster.local"]);
        let Object::ServiceEntry(se) = &got[0].resource.object else {
            panic!("not a ServiceEntry")
        };
        assert_eq!(se.spec.endpoints.len(), 1);
        assert_eq!(se.spec.endpoints[0].address, "198.18.1.2");
        assert_eq!(se.spec.endpoints[0].weight, Some(3));
        assert_eq!(se.spec.endpoints[0].ports.get("tcp"), Some(&15443));
        assert_eq!(se.spec.resolution, Some(Resolution::Static));
        assert_eq!(
            got[0].explanation,
            "cluster2: 3 endpoints via 198.18.1.2:15443"
        );

        // With `hidden` as the default, only opted-in services are generated.
        assert!(generate(&local, &[&remote], ExportDefault::Hidden).is_empty());
    }

    #[test]
    fn a_cluster_without_a_gateway_address_contributes_nothing() {
        let mut remote = String::new();
        remote.push_str("apiVersion: v1\nkind: Service\nmetadata: {name: bar, namespace: ns2}\nspec: {ports: [{name: http, port: 80}], selector: {app: bar}}\n---\n");
        remote.push_str(&pod("ns2", "bar-0", "bar", "10.10.0.30"));
        let remote = cluster("cluster2", &remote);
        let local = cluster(
            "cluster1",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
        );
        assert!(generate(&local, &[&remote], ExportDefault::Exported).is_empty());
    }
}
