//! Workloads a selector picks: WorkloadEntries (VMs, bare metal) as endpoints of the
//! ServiceEntries (`workloadSelector`) and Services (`selector`) of their namespace, and the
//! pods a ServiceEntry's `workloadSelector` picks.

use crate::labels::INJECT_ANNOTATION;
use crate::pod::{spiffe, ClusterPods};
use crate::service::{Address, Endpoint, EndpointOrigin};
use isthmus_api::kube::{IntOrString, Pod, Service as KubeService};
use isthmus_api::networking::{ServiceEntry, WorkloadEntry, WorkloadEntrySpec};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The label that says whether a workload speaks mesh mTLS (`istio`) or not (`disabled`).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Whether a WorkloadEntry's workload speaks mesh mTLS, as Istio reads it: its
/// `security.istio.io/tlsMode` label when it has one, else whether it names a service
/// account (an entry without one has no identity a client could verify).
pub fn speaks_mtls(we: &WorkloadEntrySpec) -> bool {
    match we.labels.get(TLS_MODE_LABEL) {
        Some(mode) => mode == "istio",
        None => we.service_account.is_some(),
    }
}

/// Whether every label of `selector` is in `labels` with the same value (an empty selector
/// picks every workload of the namespace, as Istio's ServiceEntry selector does).
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The endpoint of WorkloadEntry `we` (written in `namespace` of `cluster`'s configuration)
/// with its ports by service port name.
fn entry_endpoint(
    we: &WorkloadEntrySpec,
    namespace: &str,
    cluster: &str,
    trust_domain: &str,
    ports: BTreeMap<String, u32>,
) -> Endpoint {
    Endpoint {
        address: Address::parse(&we.address),
        origin: Arc::new(EndpointOrigin {
            cluster: cluster.into(),
            network: we.network.as_deref().unwrap_or_default().into(),
            locality: we.locality.as_deref().unwrap_or_default().into(),
            identity: we
                .service_account
                .as_deref()
                .map(|sa| spiffe(trust_domain, namespace, sa).into()),
            mtls_ready: speaks_mtls(we),
            labels: Arc::new(we.labels.clone().into()),
            ports: Arc::new(ports),
            weight: we.weight.filter(|w| *w > 0).unwrap_or(1),
        }),
    }
}

/// The endpoints ServiceEntry `se`'s `workloadSelector` picks: the WorkloadEntries of its
/// namespace among `entries` (of `cluster`'s configuration, which holds the entry) and the
/// pods of its namespace in every cluster of `pods`, each on the entry's ports (an entry's
/// own port of that name, else the `targetPort`, else the port's number). Empty without a
/// selector.
pub fn selected_by_service_entry(
    se: &ServiceEntry,
    entries: &[WorkloadEntry],
    pods: &BTreeMap<String, ClusterPods>,
    cluster: &str,
    trust_domain: &str,
) -> Vec<Endpoint> {
    let Some(selector) = &se.spec.workload_selector else {
        return Vec::new();
    };
    let namespace = &*se.metadata.namespace;
    let port_map = |own: &BTreeMap<String, u32>| -> BTreeMap<String, u32> {
        se.spec
            .ports
            .iter()
            .map(|p| {
                let n = own
                    .get(&p.name)
                    .copied()
                    .or(p.target_port)
                    .unwrap_or(p.number);
                (p.name.clone(), n)
            })
            .collect()
    };
    let mut out: Vec<Endpoint> = entries
        .iter()
        .filter(|we| &*we.metadata.namespace == namespace)
        .filter(|we| selects(&selector.labels, &we.spec.labels))
        .map(|we| {
            entry_endpoint(
                &we.spec,
                namespace,
                cluster,
                trust_domain,
                port_map(&we.spec.ports),
            )
        })
        .collect();
    let no_overrides = BTreeMap::new();
    for (pod_cluster, cluster_pods) in pods {
        for (pod, info) in cluster_pods.in_namespace(namespace, trust_domain) {
            // A pod that is not ready (or has finished) is no endpoint, as for a Service.
            if !pod.status.is_serving()
                || !selector
                    .labels
                    .iter()
                    .all(|(k, v)| info.labels.get(k) == Some(v))
            {
                continue;
            }
            out.push(pod_endpoint(
                pod,
                &info,
                pod_cluster,
                port_map(&no_overrides),
            ));
        }
    }
    out
}

/// A pod's endpoint on `ports` (service port name to the pod's port).
fn pod_endpoint(
    pod: &Pod,
    info: &crate::pod::PodInfo,
    cluster: &str,
    ports: BTreeMap<String, u32>,
) -> Endpoint {
    Endpoint {
        address: info.ip.into(),
        origin: Arc::new(EndpointOrigin {
            cluster: cluster.into(),
            network: info.network.clone(),
            locality: info.locality.clone(),
            identity: Some(info.identity.clone()),
            mtls_ready: pod
                .metadata
                .annotations
                .get(INJECT_ANNOTATION)
                .map(String::as_str)
                != Some("false"),
            labels: info.labels.clone(),
            ports: Arc::new(ports),
            weight: 1,
        }),
    }
}

/// The endpoint a Kubernetes Service `svc` (with a selector) gets from WorkloadEntry `we` of
/// its namespace in `cluster`'s configuration, when the selector matches the entry's labels:
/// each service port goes to the entry's own port of the same name, else to a numeric
/// `targetPort` (or a named one the entry lists), else to the port itself.
pub fn selected_by_service(
    svc: &KubeService,
    we: &WorkloadEntry,
    cluster: &str,
    trust_domain: &str,
) -> Option<Endpoint> {
    if svc.metadata.namespace != we.metadata.namespace
        || svc.spec.selector.is_empty()
        || !svc
            .spec
            .selector
            .iter()
            .all(|(k, v)| we.spec.labels.get(k) == Some(v))
    {
        return None;
    }
    let own = &we.spec.ports;
    let ports = svc
        .spec
        .ports
        .iter()
        .filter_map(|p| {
            let n = match (own.get(&*p.name), &p.target_port) {
                (Some(n), _) => *n,
                (None, None) => p.port,
                (None, Some(IntOrString::Int(n))) => *n,
                (None, Some(IntOrString::String(name))) => *own.get(name)?,
            };
            Some((p.name.to_string(), n))
        })
        .collect();
    Some(entry_endpoint(
        &we.spec,
        &we.metadata.namespace,
        cluster,
        trust_domain,
        ports,
    ))
}

/// The WorkloadEntry of `namespace` at `ip`: how a VM's proxy is found (it has no Pod).
pub fn entry_at<'a>(
    entries: &'a [WorkloadEntry],
    namespace: &str,
    ip: &str,
) -> Option<&'a WorkloadEntry> {
    entries
        .iter()
        .find(|we| &*we.metadata.namespace == namespace && we.spec.address == ip)
}
