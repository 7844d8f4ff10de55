//! Services and their endpoints as the mesh sees them.

use isthmus_api::enums::{Location, Protocol, Resolution};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a service came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOrigin {
    /// A Kubernetes Service (possibly present in several clusters).
    Kubernetes,
    /// A ServiceEntry, named `namespace/name`.
    ServiceEntry(String),
}

/// A service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Name.
    pub name: String,
    /// The service port.
    pub number: u32,
    /// Protocol.
    pub protocol: Protocol,
}

/// A service: one host name.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Fully qualified host name.
    pub hostname: String,
    /// Namespace of the defining object.
    pub namespace: String,
    /// Name of the defining object.
    pub name: String,
    /// Kubernetes or ServiceEntry.
    pub origin: ServiceOrigin,
    /// Ports.
    pub ports: Vec<Port>,
    /// The virtual IP clients connect to, if any.
    pub vip: Option<String>,
    /// True when the VIP was allocated by the mesh rather than written in `addresses`.
    pub vip_allocated: bool,
    /// Reachable from other clusters through this cluster's east-west gateway.
    pub exported: bool,
    /// How endpoints are found.
    pub resolution: Resolution,
    /// Inside or outside the mesh.
    pub location: Location,
    /// Endpoints.
    pub endpoints: Vec<std::sync::Arc<Endpoint>>,
    /// Identities allowed to serve it (from the ServiceEntry); empty means derive from the
    /// endpoints.
    pub subject_alt_names: Vec<String>,
}

impl Service {
    /// The port with this number.
    pub fn port(&self, number: u32) -> Option<&Port> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// True when sidecars talk mTLS to it by default.
    pub fn mesh_internal(&self) -> bool {
        self.location == Location::MeshInternal
    }
}

/// One endpoint of a service.
///
/// What most endpoints repeat (cluster, network, locality, identity) is one shared
/// [`EndpointOrigin`]: the pods of a namespace differ mostly in their address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// IP address or DNS name (a pod's is shared with the Pod object).
    pub address: Arc<str>,
    /// Service port name to the endpoint's port (shared by the endpoints of a service
    /// whose pods map ports alike).
    pub ports: Arc<BTreeMap<String, u32>>,
    /// Labels.
    pub labels: Arc<BTreeMap<String, String>>,
    /// Where it lives and who answers there.
    pub origin: Arc<EndpointOrigin>,
    /// Load-balancing weight.
    pub weight: u32,
}

/// Where an endpoint lives and who answers there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EndpointOrigin {
    /// The cluster it lives in (empty for ServiceEntry endpoints).
    pub cluster: String,
    /// The network it is on; empty means reachable from everywhere.
    pub network: String,
    /// `region/zone/subzone`.
    pub locality: String,
    /// The SPIFFE identity, when known.
    pub identity: Option<String>,
    /// True when the endpoint speaks mesh mTLS (has a sidecar); only such endpoints may be
    /// reached through a network gateway.
    pub mtls_ready: bool,
}
