//! What generation produces for one proxy ([`ProxyResources`]), the type URLs of xDS, and
//! each resource packed with its name for the wire.

use crate::pb::{Any, Cluster, ClusterLoadAssignment, Listener, RouteConfiguration};
use prost::{Message, Name};
use std::sync::Arc;

/// Type URL of clusters.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Type URL of endpoints.
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Type URL of listeners.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Type URL of route configurations.
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Type URL of secrets (served by the agent, not the control plane).
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Every resource one proxy gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyResources {
    /// CDS.
    pub clusters: Vec<Cluster>,
    /// EDS, one per EDS cluster.
    pub endpoints: Vec<ClusterLoadAssignment>,
    /// LDS.
    pub listeners: Vec<Listener>,
    /// RDS.
    pub routes: Vec<RouteConfiguration>,
    /// For a sidecar, the service host each outbound cluster (by name) was generated for:
    /// the CDS and EDS resources of that name belong to that service, and are what changes
    /// when only its endpoints move. Recorded as generation makes them (from
    /// [`crate::names::ClusterKey`]), never read back from names.
    pub services: std::collections::HashMap<String, Arc<str>>,
}

/// One resource, encoded, with its name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedResource {
    /// Resource name.
    pub name: String,
    /// The service it was generated for (outbound clusters and their endpoints of a
    /// sidecar), if any.
    pub service: Option<Arc<str>>,
    /// The packed resource.
    pub resource: Any,
}

impl ProxyResources {
    /// The resources of one type URL, packed; unknown type URLs give none.
    pub fn of_type(&self, type_url: &str) -> Vec<NamedResource> {
        fn pack<T: Message + Name>(
            items: &[T],
            name: impl Fn(&T) -> String,
            services: &std::collections::HashMap<String, Arc<str>>,
        ) -> Vec<NamedResource> {
            items
                .iter()
                .map(|i| {
                    let name = name(i);
                    NamedResource {
                        service: services.get(&name).cloned(),
                        name,
                        resource: Any {
                            type_url: T::type_url(),
                            value: i.encode_to_vec(),
                        },
                    }
                })
                .collect()
        }
        let none = std::collections::HashMap::new();
        match type_url {
            CLUSTER_TYPE => pack(&self.clusters, |c| c.name.clone(), &self.services),
            ENDPOINT_TYPE => pack(&self.endpoints, |c| c.cluster_name.clone(), &self.services),
            LISTENER_TYPE => pack(&self.listeners, |l| l.name.clone(), &none),
            ROUTE_TYPE => pack(&self.routes, |r| r.name.clone(), &none),
            _ => Vec::new(),
        }
    }
}
