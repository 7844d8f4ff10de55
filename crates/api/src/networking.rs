//! `networking.istio.io` resources: ServiceEntry, WorkloadEntry, DestinationRule,
//! VirtualService and Gateway, in the versions the seeds use (`v1alpha3`) and today's
//! (`v1beta1`, `v1`). The fields a later feature will read are kept as JSON so that nothing
//! a user writes is lost.

use crate::enums::{Location, Protocol, Resolution, ServerTlsMode, TlsMode};
use crate::meta::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A `ServiceEntry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ServiceEntrySpec,
}

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// Host names.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual IPs (or CIDRs) of the service.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh; `MESH_EXTERNAL` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How endpoints are found; `NONE` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntrySpec>,
    /// Selects WorkloadEntries (or pods) as endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces that see this entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Identities the endpoints' certificates must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// A ServiceEntry port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port number.
    pub number: u32,
    /// Protocol; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Port name, which endpoint `ports` maps refer to.
    #[serde(default)]
    pub name: String,
    /// The endpoints' port when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// `networking.istio.io` Sidecar: what a namespace's (or selected workloads') proxies may
/// reach. Only `egress.hosts` is read: it scopes the configuration each proxy receives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: SidecarSpec,
}

/// `Sidecar.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// The workloads it applies to; all of its namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Egress listeners; their `hosts` (`namespace/dnsName`) are what the proxies see.
    #[serde(default)]
    pub egress: Vec<SidecarEgress>,
}

/// One egress listener of a Sidecar.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SidecarEgress {
    /// `namespace/dnsName`: namespace `*`, `.` (the Sidecar's) or a name; dnsName `*`,
    /// `*.suffix` or exact.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// Selects workloads by label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSelector {
    /// Labels to match.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A `WorkloadEntry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadEntry {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: WorkloadEntrySpec,
}

/// A workload endpoint: `WorkloadEntry.spec` and `ServiceEntry.spec.endpoints[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    /// IP address or DNS name.
    #[serde(default)]
    pub address: String,
    /// Port name to port number, overriding the service port.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    /// Labels, which DestinationRule subsets select.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The network the endpoint is on; a different network than the proxy's means it is
    /// reached through that network's gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `region/zone/subzone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Load-balancing weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Service account of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// A `DestinationRule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationRule {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: DestinationRuleSpec,
}

/// `DestinationRule.spec`, read strictly: a field Istio does not have is an error with its
/// name (`unknown field`), one Istio has and Isthmus does not enforce yet is kept so that
/// validation refuses the rule with "not supported by Isthmus".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRuleSpec {
    /// The host the rule applies to; may be a wildcard such as `*.local` or `*.global`.
    #[serde(default)]
    pub host: String,
    /// The policy for every subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named subsets by label.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Namespaces that see this rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Workloads the rule applies to (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<serde_json::Value>,
}

/// A traffic policy. Only `tls` is enforced; the other fields Istio has are kept so that
/// validation refuses them by name instead of ignoring them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Upstream TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// Load balancer settings (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<serde_json::Value>,
    /// Connection pool settings (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<serde_json::Value>,
    /// Outlier detection settings (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<serde_json::Value>,
    /// Per-port policies (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_level_settings: Option<serde_json::Value>,
    /// HTTP CONNECT tunnelling (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<serde_json::Value>,
    /// PROXY protocol to the upstream (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<serde_json::Value>,
    /// Retry budget (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<serde_json::Value>,
}

impl TrafficPolicy {
    /// The fields set that Isthmus does not enforce, by their YAML names.
    pub fn unsupported(&self) -> Vec<&'static str> {
        [
            ("loadBalancer", self.load_balancer.is_some()),
            ("connectionPool", self.connection_pool.is_some()),
            ("outlierDetection", self.outlier_detection.is_some()),
            ("portLevelSettings", self.port_level_settings.is_some()),
            ("tunnel", self.tunnel.is_some()),
            ("proxyProtocol", self.proxy_protocol.is_some()),
            ("retryBudget", self.retry_budget.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// Client-side TLS settings: the mesh's own mTLS (ISTIO_MUTUAL), or TLS originated with the
/// certificate files it names (SIMPLE, MUTUAL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTls {
    /// The mode.
    pub mode: TlsMode,
    /// SNI to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Identities to accept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// MUTUAL: the client certificate file (PEM) in the proxy's file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// MUTUAL: the client key file (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// The CA file (PEM) that verifies the server; the system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// A Kubernetes Secret with the files (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// A certificate revocation list (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A DestinationRule subset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Name, used in cluster names and SNI.
    #[serde(default)]
    pub name: String,
    /// Endpoint labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides the rule's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// A `VirtualService`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualService {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: VirtualServiceSpec,
}

/// `VirtualService.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// Hosts the routes apply to (wildcards allowed).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `mesh` and/or gateway names; `mesh` when empty.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// HTTP routes.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// TCP routes.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// TLS routes by SNI.
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// Namespaces that see this service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

/// An HTTP route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions (read by a later feature; kept whole).
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<serde_json::Value>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
    /// Request timeout such as `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Everything else (retries, rewrite, fault, ...) for later features.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A TCP route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// Match conditions.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<serde_json::Value>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// A TLS route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    /// Match conditions.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<serde_json::Value>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// A weighted destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDestination {
    /// Where to send.
    pub destination: Destination,
    /// Relative weight; absent means 100 for a single destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// A destination: host, subset, port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Service host.
    #[serde(default)]
    pub host: String,
    /// DestinationRule subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Port, when the service has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// Selects a port by number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSelector {
    /// Number.
    pub number: u32,
}

/// A `Gateway`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gateway {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: GatewaySpec,
}

/// `Gateway.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySpec {
    /// Labels of the gateway pods this configures.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Servers.
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// A gateway server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// Port.
    pub port: GatewayPort,
    /// Hosts exposed.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
}

/// A gateway server port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPort {
    /// Number.
    pub number: u32,
    /// Protocol.
    pub protocol: Protocol,
    /// Name.
    #[serde(default)]
    pub name: String,
}

impl Default for GatewayPort {
    fn default() -> Self {
        GatewayPort {
            number: 0,
            protocol: Protocol::Tcp,
            name: String::new(),
        }
    }
}

/// Server-side TLS settings of a gateway server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTls {
    /// The mode (Istio's default, PASSTHROUGH, when absent; HTTP servers ignore it).
    #[serde(default = "passthrough")]
    pub mode: ServerTlsMode,
    /// SIMPLE/MUTUAL: path of the server certificate (PEM) the gateway presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// SIMPLE/MUTUAL: path of the server's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// MUTUAL: path of the CA certificates (PEM) that client certificates must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Client SANs accepted (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// A plain-HTTP server answers every request with a redirect to HTTPS.
    #[serde(default)]
    pub https_redirect: bool,
}

fn passthrough() -> ServerTlsMode {
    ServerTlsMode::Passthrough
}
