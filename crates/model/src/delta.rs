//! What changed between two snapshots, when the change is one that proxies can take by
//! regenerating only some services' clusters and endpoints: the common case of pods coming,
//! going and moving.

use crate::service::Service;
use crate::snapshot::MeshSnapshot;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Services whose endpoints changed, and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointDelta {
    /// The snapshot version this one differs from.
    pub from_version: u64,
    /// Host names of the services whose endpoints changed.
    pub hosts: BTreeSet<String>,
    /// Those services as they were at `from_version` (for whoever patches an index of
    /// endpoints instead of rebuilding it).
    pub previous: Vec<Arc<Service>>,
}

fn same_but_endpoints(a: &Service, b: &Service) -> bool {
    a.hostname == b.hostname
        && a.namespace == b.namespace
        && a.name == b.name
        && a.origin == b.origin
        && a.ports == b.ports
        && a.vip == b.vip
        && a.vip_allocated == b.vip_allocated
        && a.exported == b.exported
        && a.resolution == b.resolution
        && a.location == b.location
        && a.subject_alt_names == b.subject_alt_names
}

impl MeshSnapshot {
    /// The services whose endpoints differ from `prev`'s, when nothing else differs (same
    /// services, rules, policies, networks and gateways); `None` otherwise, and when the
    /// egress gateway's own endpoints changed (every funnelled cluster depends on them).
    pub fn endpoints_only_change_from(&self, prev: &MeshSnapshot) -> Option<EndpointDelta> {
        let same_rules = self.local_cluster == prev.local_cluster
            && self.local_network == prev.local_network
            && self.mesh == prev.mesh
            && self.networks == prev.networks
            && self.network_gateways == prev.network_gateways
            && self.mtls == prev.mtls
            && self.destination_rules == prev.destination_rules
            && self.virtual_services == prev.virtual_services
            && self.gateways == prev.gateways
            && self.sidecars == prev.sidecars
            && self.egress_gateway == prev.egress_gateway
            && self.services.len() == prev.services.len();
        if !same_rules {
            return None;
        }
        let mut hosts = BTreeSet::new();
        let mut previous = Vec::new();
        for (host, svc) in &self.services {
            let old = prev.services.get(host)?;
            if Arc::ptr_eq(svc, old) || svc == old {
                continue;
            }
            if !same_but_endpoints(svc, old) {
                return None;
            }
            hosts.insert(host.clone());
            previous.push(old.clone());
        }
        if self
            .egress_gateway
            .as_ref()
            .is_some_and(|g| hosts.contains(g))
        {
            return None;
        }
        Some(EndpointDelta {
            from_version: prev.version,
            hosts,
            previous,
        })
    }
}
