//! The Kubernetes objects the registries read, in the shape the API server returns them.

use crate::meta::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A `targetPort`: a number or the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A port number.
    Int(u32),
    /// A named container port.
    String(String),
}

/// `v1/Service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ServiceSpec,
    /// Status: a LoadBalancer's public address (how the seeds find a gateway's IP).
    #[serde(default, skip_serializing_if = "ServiceStatus::is_empty")]
    pub status: ServiceStatus,
}

/// `Service.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// The load balancer.
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
}

impl ServiceStatus {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.load_balancer.ingress.is_empty()
    }

    /// The first ingress address (IP, else host name).
    pub fn address(&self) -> Option<&str> {
        self.load_balancer
            .ingress
            .iter()
            .find_map(|i| i.ip.as_deref().or(i.hostname.as_deref()))
    }
}

/// `Service.status.loadBalancer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerStatus {
    /// Ingress points.
    #[serde(default)]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// One ingress point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerIngress {
    /// IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// `Service.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Pod selector; empty for a selector-less service (endpoints given by hand). Shared
    /// with the pods' labels when they are the same map.
    #[serde(default)]
    pub selector: Arc<crate::labels::Labels>,
    /// The cluster IP, when the API server allocated one.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// `ClusterIP`, `NodePort`, `LoadBalancer` or `ExternalName` (shared by the Services a
    /// reader keeps).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<Arc<str>>,
}

/// `Service.spec.ports[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name; Istio derives the protocol from its prefix. Shared, as the protocol and
    /// application protocol are, by the Services a reader keeps: a cluster's Services name
    /// their ports alike (`http`, `grpc`), and each such string would be an allocation of
    /// its own in each.
    #[serde(default)]
    pub name: Arc<str>,
    /// The service port.
    pub port: u32,
    /// The pod port; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// `TCP` (default) or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Arc<str>>,
    /// Explicit application protocol, which wins over the name prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<Arc<str>>,
}

impl ServicePort {
    /// Whether the mesh proxies this port: TCP ports only, as in Istio. A UDP or SCTP port
    /// (a DNS Service's `53/UDP` beside its `53/TCP`) gets no cluster or listener: its
    /// traffic is never captured, and a second `outbound|53||HOST` cluster would make Envoy
    /// refuse the whole update.
    pub fn proxied(&self) -> bool {
        self.protocol
            .as_deref()
            .is_none_or(|p| p.eq_ignore_ascii_case("TCP"))
    }
}

/// `v1/Pod`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec, shared by the pods that are alike (a workload's pods on one node: the same
    /// service account, named ports and node), so that a pod itself is small.
    #[serde(default)]
    pub spec: Arc<PodSpec>,
    /// Status.
    #[serde(default)]
    pub status: PodStatus,
}

/// `Pod.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "PodSpecWire", into = "PodSpecWire")]
pub struct PodSpec {
    /// Service account; `default` when empty (shared by the pods of a file that name the
    /// same one).
    pub service_account_name: Arc<str>,
    /// Containers (boxed: no room kept for more).
    pub containers: Box<[Container]>,
    /// `hostname` and `subdomain` when both are set (a StatefulSet's pods): what names the
    /// pod in DNS under its headless Service. Boxed: one pointer for what most pods lack.
    pub dns_name: Option<Box<PodDnsName>>,
    /// The Node it runs on (`spec.nodeName`), whose topology labels give its locality;
    /// empty before it is scheduled (shared by the pods of one node a reader interns).
    pub node_name: Arc<str>,
}

/// A pod's name in DNS: `HOSTNAME.SUBDOMAIN.NAMESPACE.svc.cluster.local`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PodDnsName {
    /// `spec.hostname` (a StatefulSet's pods: their own name).
    pub hostname: Arc<str>,
    /// `spec.subdomain`: the headless Service that names it.
    pub subdomain: Arc<str>,
}

/// `Pod.spec` as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecWire {
    #[serde(default, skip_serializing_if = "str::is_empty")]
    service_account_name: Arc<str>,
    #[serde(default, skip_serializing_if = "<[Container]>::is_empty")]
    containers: Box<[Container]>,
    #[serde(default, skip_serializing_if = "str::is_empty")]
    hostname: Arc<str>,
    #[serde(default, skip_serializing_if = "str::is_empty")]
    subdomain: Arc<str>,
    #[serde(default, skip_serializing_if = "str::is_empty")]
    node_name: Arc<str>,
    /// Read for its native sidecars, which [`PodSpec`] keeps after the containers (and so
    /// writes back as containers).
    #[serde(default, skip_serializing)]
    init_containers: Vec<InitContainerWire>,
}

/// An init container as written. One with `restartPolicy: Always` is a native sidecar: it
/// runs beside the containers, and a Service's named `targetPort` is looked up in its ports
/// after theirs (the EndpointSlice controller's `FindPort`). Any other has exited by the
/// time the pod serves, and the mesh has nothing to read in it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitContainerWire {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    restart_policy: Option<String>,
}

impl InitContainerWire {
    /// The container it runs as beside the others, when it is a native sidecar.
    fn native_sidecar(self) -> Option<Container> {
        (self.restart_policy.as_deref() == Some("Always")).then_some(Container {
            name: self.name,
            image: self.image,
            ports: self.ports,
            env: self.env,
        })
    }
}

impl From<PodSpecWire> for PodSpec {
    fn from(w: PodSpecWire) -> Self {
        let dns_name = (!w.hostname.is_empty() && !w.subdomain.is_empty()).then(|| {
            Box::new(PodDnsName {
                hostname: w.hostname,
                subdomain: w.subdomain,
            })
        });
        // Native sidecars after the containers; a spec without any keeps its allocation.
        let mut containers = w.containers.into_vec();
        containers.extend(
            w.init_containers
                .into_iter()
                .filter_map(InitContainerWire::native_sidecar),
        );
        PodSpec {
            service_account_name: w.service_account_name,
            containers: containers.into_boxed_slice(),
            dns_name,
            node_name: w.node_name,
        }
    }
}

impl From<PodSpec> for PodSpecWire {
    fn from(s: PodSpec) -> Self {
        let (hostname, subdomain) = s
            .dns_name
            .map(|d| (d.hostname, d.subdomain))
            .unwrap_or_default();
        PodSpecWire {
            service_account_name: s.service_account_name,
            containers: s.containers,
            hostname,
            subdomain,
            node_name: s.node_name,
            init_containers: Vec::new(),
        }
    }
}

/// A container, as far as the mesh cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Image.
    #[serde(default)]
    pub image: String,
    /// Declared ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Environment variables with literal values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// A container environment variable (`valueFrom` is not supported).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Literal value.
    #[serde(default)]
    pub value: String,
}

/// A declared container port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Name, which a service's named `targetPort` refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port.
    pub container_port: u32,
}

/// `Pod.status`: the pod's IP, phase and readiness in 16 bytes.
///
/// An IPv4 address is kept in line and an IPv6 one boxed, so that a stored Pod (with its
/// 40-byte metadata and shared spec) is 64 bytes and its `Arc` takes the allocator's 96-byte
/// block; `Option<IpAddr>` in line took 17 bytes and the 112-byte block. An IPv6 pod pays
/// one 16-byte allocation for its address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PodStatusWire", into = "PodStatusWire")]
pub struct PodStatus {
    /// The IPv4 address, when the pod has one (and no IPv6 one).
    v4: Option<std::net::Ipv4Addr>,
    /// The IPv6 address, when the pod has one.
    v6: Option<Box<std::net::Ipv6Addr>>,
    /// `Running`, `Pending`, ...
    pub phase: Option<PodPhase>,
    /// The `Ready` condition of `status.conditions` (the only one the mesh reads): `None`
    /// when the pod has none (a registry file), else whether it is `True`. A pod that is
    /// not ready is no endpoint, as the EndpointSlice controller decides.
    pub ready: Option<bool>,
}

/// `Pod.status` as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatusWire {
    /// An empty string reads as none; anything else must be an address.
    #[serde(
        default,
        rename = "podIP",
        deserialize_with = "pod_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pod_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<PodPhase>,
    #[serde(
        default,
        rename = "conditions",
        deserialize_with = "ready_condition",
        serialize_with = "ready_conditions",
        skip_serializing_if = "Option::is_none"
    )]
    ready: Option<bool>,
}

impl From<PodStatusWire> for PodStatus {
    fn from(w: PodStatusWire) -> Self {
        PodStatus::new(w.pod_ip, w.phase, w.ready)
    }
}

impl From<PodStatus> for PodStatusWire {
    fn from(s: PodStatus) -> Self {
        PodStatusWire {
            pod_ip: s.pod_ip(),
            phase: s.phase,
            ready: s.ready,
        }
    }
}

impl PodStatus {
    /// A status with the pod's IP (none: not given one yet), phase and readiness.
    pub fn new(pod_ip: Option<IpAddr>, phase: Option<PodPhase>, ready: Option<bool>) -> Self {
        let mut status = PodStatus {
            phase,
            ready,
            ..PodStatus::default()
        };
        status.set_pod_ip(pod_ip);
        status
    }

    /// The pod's IP; a pod without one has no endpoints yet.
    pub fn pod_ip(&self) -> Option<IpAddr> {
        match (&self.v6, self.v4) {
            (Some(v6), _) => Some(IpAddr::V6(**v6)),
            (None, Some(v4)) => Some(IpAddr::V4(v4)),
            (None, None) => None,
        }
    }

    /// Sets the pod's IP.
    pub fn set_pod_ip(&mut self, ip: Option<IpAddr>) {
        (self.v4, self.v6) = match ip {
            Some(IpAddr::V4(v4)) => (Some(v4), None),
            Some(IpAddr::V6(v6)) => (None, Some(Box::new(v6))),
            None => (None, None),
        };
    }

    /// Whether the pod can serve: not finished, and not reported unready.
    pub fn is_serving(&self) -> bool {
        !matches!(self.phase, Some(PodPhase::Succeeded | PodPhase::Failed))
            && self.ready != Some(false)
    }
}

/// One entry of `status.conditions`.
#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    status: String,
}

/// Reads the `Ready` condition out of `status.conditions`.
fn ready_condition<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let conditions = Option::<Vec<Condition>>::deserialize(d)?.unwrap_or_default();
    Ok(conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .map(|c| c.status == "True"))
}

/// Writes `ready` back as a one-entry `status.conditions`.
fn ready_conditions<S: serde::Serializer>(ready: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(1))?;
    if let Some(r) = ready {
        seq.serialize_element(&serde_json::json!({
            "type": "Ready",
            "status": if *r { "True" } else { "False" },
        }))?;
    }
    seq.end()
}

/// `Pod.status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// Reads `status.podIP`, saying what is wrong with a value that is not an address.
fn pod_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!("status.podIP: `{text}` is not an IP address"))
    })
}

/// `v1/Endpoints`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Metadata; the name is the service's.
    pub metadata: ObjectMeta,
    /// Subsets.
    #[serde(default)]
    pub subsets: Vec<EndpointSubset>,
}

/// `Endpoints.subsets[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSubset {
    /// Ready addresses.
    #[serde(default)]
    pub addresses: Vec<EndpointAddress>,
    /// Ports, named as the service's ports.
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

/// An address in `Endpoints`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    /// IP.
    pub ip: String,
    /// The pod behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
}

/// A reference to another object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReference {
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
}

/// A port in `Endpoints` or an `EndpointSlice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPort {
    /// The service port name it serves.
    #[serde(default)]
    pub name: String,
    /// The pod port.
    pub port: u32,
}

/// `discovery.k8s.io/v1/EndpointSlice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Metadata; the `kubernetes.io/service-name` label names the service.
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    #[serde(default)]
    pub address_type: String,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    /// Addresses (Kubernetes uses the first).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Readiness.
    #[serde(default)]
    pub conditions: SliceConditions,
    /// The pod behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
    /// Zone, for locality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Endpoint conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceConditions {
    /// Ready; absent means ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// `v1/Namespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Metadata; `topology.istio.io/network` labels a namespace's network.
    pub metadata: ObjectMeta,
}

/// `v1/Node`: its topology labels (`topology.kubernetes.io/region`, `.../zone`,
/// `topology.istio.io/subzone`) are the locality of the pods it runs, as Istio reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Metadata.
    pub metadata: ObjectMeta,
}

/// `v1/ConfigMap`; the `istio` map in `istio-system` holds the mesh config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMap {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// String data.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// `v1/Secret`: read for remote-registry credentials (label `istio/multiCluster=true`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Base64 values.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Plain values (Kubernetes merges them into `data` on write).
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
}

/// `apps/v1/Deployment` (and its older API groups) or `apps/v1/StatefulSet`, read for the
/// pods it would create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: DeploymentSpec,
}

/// `Deployment.spec` (and a StatefulSet's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Replicas; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// A StatefulSet's headless Service (`serviceName`): its pods are named `NAME-0`,
    /// `NAME-1`, ... in DNS under it. `None` for a Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The pod template.
    #[serde(default)]
    pub template: PodTemplate,
}

/// A pod template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodTemplate {
    /// Labels and annotations of the pods.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Pod spec.
    #[serde(default)]
    pub spec: PodSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_its_metadata_a_shared_spec_and_its_status() {
        // A registry holds one Pod per endpoint, in line in its resource: an IPv4 address,
        // phase and Ready in line (an IPv6 address boxed), and its spec (service account,
        // named ports, node, StatefulSet DNS name: alike for a workload's pods) one shared
        // pointer.
        assert_eq!(std::mem::size_of::<PodStatus>(), 16);
        assert_eq!(std::mem::size_of::<Pod>(), 64);
    }

    #[test]
    fn a_native_sidecars_ports_come_after_the_containers() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}],
            "initContainers": [
                {"name": "setup", "ports": [{"name": "setup", "containerPort": 7}]},
                {"name": "proxy", "restartPolicy": "Always",
                 "ports": [{"name": "http", "containerPort": 15001}, {"name": "admin", "containerPort": 15000}]},
                {"name": "once", "restartPolicy": "OnFailure", "ports": [{"name": "once", "containerPort": 9}]}
            ]
        }))
        .expect("a spec");
        let names: Vec<(&str, Option<&str>, u32)> = spec
            .containers
            .iter()
            .flat_map(|c| {
                c.ports
                    .iter()
                    .map(move |p| (c.name.as_str(), p.name.as_deref(), p.container_port))
            })
            .collect();
        assert_eq!(
            names,
            [
                ("app", Some("http"), 8080),
                ("proxy", Some("http"), 15001),
                ("proxy", Some("admin"), 15000)
            ]
        );
        // Without native sidecars the containers are as written.
        let plain: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "app"}],
            "initContainers": [{"name": "setup", "ports": [{"name": "setup", "containerPort": 7}]}]
        }))
        .expect("a spec");
        assert_eq!(plain.containers.len(), 1);
        assert_eq!(plain.containers[0].name, "app");
    }

    #[test]
    fn a_pods_status_reads_and_writes_either_address_family() {
        for (text, ip) in [
            (r#"{"podIP": "10.1.2.3", "phase": "Running"}"#, "10.1.2.3"),
            (r#"{"podIP": "fd00::1:2", "phase": "Running"}"#, "fd00::1:2"),
        ] {
            let status: PodStatus = serde_json::from_str(text).expect(text);
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(status.pod_ip(), Some(ip), "{text}");
            assert_eq!(status.phase, Some(PodPhase::Running));
            let written = serde_json::to_value(&status).expect("json");
            assert_eq!(written["podIP"], ip.to_string());
            let again: PodStatus = serde_json::from_value(written).expect("read back");
            assert_eq!(again, status);
        }
        let mut status = PodStatus::new(Some("fd00::9".parse().expect("v6")), None, None);
        status.set_pod_ip(Some("10.0.0.9".parse().expect("v4")));
        assert_eq!(status.pod_ip(), Some("10.0.0.9".parse().expect("v4")));
        assert_eq!(
            status,
            PodStatus::new(Some("10.0.0.9".parse().expect("v4")), None, None)
        );
        status.set_pod_ip(None);
        assert_eq!(status.pod_ip(), None);
        assert_eq!(status, PodStatus::default());
        let none: PodStatus = serde_json::from_str(r#"{"podIP": ""}"#).expect("empty");
        assert_eq!(none.pod_ip(), None);
        assert!(serde_json::from_str::<PodStatus>(r#"{"podIP": "x"}"#).is_err());
    }
}
