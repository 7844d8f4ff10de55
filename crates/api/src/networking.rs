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

/// `ServiceEntry.spec`, read strictly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    /// Selects the entry's endpoints instead of listing them: the WorkloadEntries and pods
    /// of the entry's namespace whose labels match (VMs joining the mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces whose sidecars see the entry: `*`, `.`, `~` or names; empty means the mesh
    /// config's `defaultServiceExportTo` (everywhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Identities the endpoints' certificates must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// A ServiceEntry port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
/// reach. `egress.hosts` scopes the configuration each proxy receives; the other fields
/// Istio has are kept so that validation refuses them by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: SidecarSpec,
}

/// `Sidecar.spec`, read strictly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarSpec {
    /// The workloads it applies to; all of its namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Egress listeners; their `hosts` (`namespace/dnsName`) are what the proxies see.
    #[serde(default)]
    pub egress: Vec<SidecarEgress>,
    /// Inbound listeners: when given, the workload's inbound ports are these (instead of
    /// its services' target ports), each forwarded to its `defaultEndpoint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<SidecarIngress>,
    /// ALLOW_ANY (the default) or REGISTRY_ONLY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Inbound connection pool (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_connection_pool: Option<serde_json::Value>,
}

/// Sidecar `outboundTrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// What happens to calls to hosts the mesh does not know.
    #[serde(default = "allow_any")]
    pub mode: crate::enums::OutboundTrafficMode,
    /// Where ALLOW_ANY traffic goes instead of passing through (not supported by Isthmus
    /// yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<serde_json::Value>,
}

fn allow_any() -> crate::enums::OutboundTrafficMode {
    crate::enums::OutboundTrafficMode::AllowAny
}

/// One ingress listener of a Sidecar.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarIngress {
    /// The port traffic arrives on, and its protocol.
    pub port: SidecarPort,
    /// Where the app listens: `127.0.0.1:PORT` (loopback) or `0.0.0.0:PORT` (the pod's
    /// address); the pod's address and the ingress port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint: Option<String>,
    /// An address to bind (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<serde_json::Value>,
    /// How traffic is captured (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_mode: Option<serde_json::Value>,
    /// TLS terminated by the sidecar for this port (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<serde_json::Value>,
    /// A connection pool of its own (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<serde_json::Value>,
}

/// A Sidecar listener's port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarPort {
    /// The port number.
    pub number: u32,
    /// Its protocol; from the name's prefix when absent, else TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The deprecated target port (refused: use `defaultEndpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<serde_json::Value>,
}

impl SidecarPort {
    /// The port's protocol: `protocol`, else the name's prefix, else TCP.
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or_else(|| {
            self.name
                .as_deref()
                .map(Protocol::from_port_name)
                .unwrap_or(Protocol::Tcp)
        })
    }
}

impl SidecarIngress {
    /// Where the app listens: (`None` for the pod's own address, else the loopback address;
    /// port), from `defaultEndpoint`; `None` when it is not one of those forms.
    pub fn endpoint(&self) -> Option<(Option<std::net::IpAddr>, u32)> {
        let Some(e) = self.default_endpoint.as_deref() else {
            return Some((None, self.port.number));
        };
        let addr: std::net::SocketAddr = e.parse().ok()?;
        let port = u32::from(addr.port());
        if port == 0 {
            return None;
        }
        match addr.ip() {
            ip if ip.is_unspecified() => Some((None, port)),
            ip if ip.is_loopback() => Some((Some(ip), port)),
            _ => None,
        }
    }
}

/// One egress listener of a Sidecar.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarEgress {
    /// `namespace/dnsName`: namespace `*`, `.` (the Sidecar's) or a name; dnsName `*`,
    /// `*.suffix` or exact.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A port of its own (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<serde_json::Value>,
    /// An address to bind (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<serde_json::Value>,
    /// How traffic is captured (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_mode: Option<serde_json::Value>,
}

/// Selects workloads by label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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

/// A traffic policy: TLS, load balancing, connection pool and outlier detection are
/// enforced; the other fields Istio has are kept so that validation refuses them by name
/// instead of ignoring them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Upstream TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// Load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<crate::policy::LoadBalancerSettings>,
    /// Connection limits and timeouts (Envoy's circuit breakers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<crate::policy::ConnectionPoolSettings>,
    /// Ejection of failing endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<crate::policy::OutlierDetection>,
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

/// `VirtualService.spec`, read strictly as Istio's schema: a field Istio does not have is an
/// error with its name; one Istio has and Isthmus does not enforce is kept so that validation
/// refuses the object by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    /// TCP routes (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// TLS routes by SNI.
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// Namespaces whose proxies the routes apply to: `*`, `.`, `~` or names; empty means the
    /// mesh config's `defaultVirtualServiceExportTo` (everywhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

impl VirtualServiceSpec {
    /// Whether the routes apply to sidecars (`gateways` empty or naming `mesh`).
    pub fn binds_mesh(&self) -> bool {
        self.gateways.is_empty() || self.gateways.iter().any(|g| g == "mesh")
    }
}

/// An HTTP route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions, any of which selects the route; every request when empty.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer directly with this status and body, without forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand the route to a delegate VirtualService (one without hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite the path or authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout such as `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Retries; Istio's default policy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFault>,
    /// Mirror requests to another destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Several mirrors, each with its own share of requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// The share of requests mirrored; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// The deprecated integer form of `mirrorPercentage` (refused: use mirrorPercentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<serde_json::Value>,
    /// Cross-origin resource sharing: preflights answered by the proxy, CORS headers added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// A `Delegate`: the VirtualService whose routes replace a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegate {
    /// Its name.
    pub name: String,
    /// Its namespace; the root's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One `HTTPMatchRequest`: all of its conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Name, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// The scheme (`:scheme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// The method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// The authority (Host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Request headers; an empty match means the header is present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// The port the request was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels of the calling workload (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<serde_json::Value>,
    /// Gateways (or `mesh`) this match is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Query parameters; an empty match means the parameter is present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Compare the path without case.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_uri_case: bool,
    /// Headers that must not match (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_headers: Option<serde_json::Value>,
    /// The calling workload's namespace (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<serde_json::Value>,
    /// A stat prefix for the route (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_prefix: Option<serde_json::Value>,
}

/// Istio's `StringMatch`: exactly one of `exact`, `prefix`, `regex` (RE2), or none, which
/// means "present" where Istio allows it (headers, query parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    /// The whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// A prefix of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// An RE2 regular expression the whole value matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    /// How many of `exact`, `prefix` and `regex` are set (Istio allows one).
    pub fn set_count(&self) -> usize {
        [
            self.exact.is_some(),
            self.prefix.is_some(),
            self.regex.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count()
    }
}

/// `directResponse`: the answer a route gives itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// The HTTP status.
    pub status: u32,
    /// The body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// A `directResponse` body: text, or bytes in base64.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBody {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Bytes, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
}

/// An HTTP redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// The new path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The new authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// The new port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Derive the port from the scheme (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive_port: Option<serde_json::Value>,
    /// The new scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_code: Option<u32>,
}

/// A rewrite of the forwarded request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replaces the matched path prefix (or the whole path for exact matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Replaces the authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Rewrites the path with a regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// A regular-expression path rewrite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 pattern.
    #[serde(rename = "match", default)]
    pub match_: String,
    /// Substitution, with `\\1`-style groups.
    #[serde(default)]
    pub rewrite: String,
}

/// A retry policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Attempts after the first; 0 disables retries.
    #[serde(default)]
    pub attempts: u32,
    /// Timeout of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Envoy retry conditions, comma separated (status codes allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
    /// Retry in other localities (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<serde_json::Value>,
    /// Retry on the same host as before; Istio's default (absent) avoids it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// Fault injection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFault {
    /// Delay requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Abort requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// A fault delay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// How long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<String>,
    /// Exponential delay (not supported by Isthmus: refused, as by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<serde_json::Value>,
    /// The share of requests delayed; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
    /// The deprecated integer form (refused: use percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<serde_json::Value>,
}

/// A fault abort.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// The HTTP status to answer with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u32>,
    /// The gRPC status (name such as `UNAVAILABLE`, or its number) to answer with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<serde_json::Value>,
    /// An HTTP/2 error (not supported by Isthmus: refused, as by Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<serde_json::Value>,
    /// The share of requests aborted; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// One of `mirrors`: a destination that gets a copy of a share of the requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Where the copies go.
    pub destination: Destination,
    /// The share of requests copied; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// Istio's `CorsPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Origins allowed, as string matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    /// The deprecated exact-origin list (used when `allowOrigins` is absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origin: Vec<String>,
    /// Methods allowed (`Access-Control-Allow-Methods`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Request headers allowed (`Access-Control-Allow-Headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may read (`Access-Control-Expose-Headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long a preflight's answer may be cached (`Access-Control-Max-Age`), e.g. `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// `Access-Control-Allow-Credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// What to do with a preflight whose origin does not match: `FORWARD` (the default) to
    /// the application, or `IGNORE` (answered by the proxy without CORS headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched_preflights: Option<String>,
}

/// A percentage (`value: 12.5`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    /// 0 to 100.
    #[serde(default)]
    pub value: f64,
}

/// Request and response header changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    /// On the forwarded request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// On the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Header changes: set (overwrite), add (append), remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite or add.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A TCP route: the first whose match applies picks the connection's destinations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRoute {
    /// Match conditions, any of which selects the route; every connection when empty.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<L4Match>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// One `L4MatchAttributes`: all of its conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4Match {
    /// The destination address is in one of these (`a.b.c.d` or `a.b.c.d/n`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// The port the connection is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// The calling workload has these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways (or `mesh`) this match is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// The calling workload's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// The deprecated source subnet (refused, as Istio ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_subnet: Option<String>,
}

/// A TLS route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRoute {
    /// Match conditions.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<TlsMatch>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// One `TLSMatchAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatch {
    /// SNI values (wildcards allowed).
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    /// Destination subnets (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_subnets: Option<serde_json::Value>,
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels of the caller (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<serde_json::Value>,
    /// Gateways this match is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Namespace of the caller (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<serde_json::Value>,
}

/// A weighted destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to send.
    pub destination: Destination,
    /// Relative weight; absent means 100 for a single destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Header changes made only when this destination is picked (HTTP routes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// A destination: host, subset, port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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

/// `Gateway.spec`, read strictly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Port.
    pub port: GatewayPort,
    /// The server's name, unique across the gateway (only a label: nothing depends on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address to bind to (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<serde_json::Value>,
    /// Where unmatched traffic goes (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint: Option<serde_json::Value>,
    /// Hosts exposed.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
}

/// A gateway server port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayPort {
    /// Number.
    pub number: u32,
    /// Protocol.
    pub protocol: Protocol,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// The deprecated target port (not supported by Isthmus: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<serde_json::Value>,
}

impl Default for GatewayPort {
    fn default() -> Self {
        GatewayPort {
            number: 0,
            protocol: Protocol::Tcp,
            name: String::new(),
            target_port: None,
        }
    }
}

/// Server-side TLS settings of a gateway server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    /// SIMPLE/MUTUAL: the Secret, in the gateway workload's namespace, holding the
    /// certificate and key (`tls.crt`/`tls.key`, or `cert`/`key`) and for MUTUAL the CA
    /// (`ca.crt`/`cacert`, in it or in a Secret named `NAME-cacert`); instead of the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Several Secrets (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_names: Option<serde_json::Value>,
    /// Several certificate files (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificates: Option<serde_json::Value>,
    /// Pinned client key hashes (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_certificate_spki: Option<serde_json::Value>,
    /// Pinned client certificate hashes (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_certificate_hash: Option<serde_json::Value>,
    /// The lowest TLS version (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<serde_json::Value>,
    /// The highest TLS version (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<serde_json::Value>,
    /// Cipher suites (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suites: Option<serde_json::Value>,
    /// A certificate revocation list (not supported by Isthmus yet: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<serde_json::Value>,
}

impl ServerTls {
    /// The fields set that Isthmus does not enforce, by their YAML names.
    pub fn unsupported(&self) -> Vec<&'static str> {
        [
            ("credentialNames", self.credential_names.is_some()),
            ("tlsCertificates", self.tls_certificates.is_some()),
            (
                "verifyCertificateSpki",
                self.verify_certificate_spki.is_some(),
            ),
            (
                "verifyCertificateHash",
                self.verify_certificate_hash.is_some(),
            ),
            ("minProtocolVersion", self.min_protocol_version.is_some()),
            ("maxProtocolVersion", self.max_protocol_version.is_some()),
            ("cipherSuites", self.cipher_suites.is_some()),
            ("caCrl", self.ca_crl.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

fn passthrough() -> ServerTlsMode {
    ServerTlsMode::Passthrough
}
