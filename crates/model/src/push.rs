//! What one snapshot changed from the one before, typed: Istio's `PushRequest`. The
//! [`crate::MeshBuilder`] makes one per snapshot; xDS decides per proxy from it what to send
//! (regenerate, patch some services' clusters and endpoints, or nothing).
//!
//! Whether a change is "endpoints only" is decided by comparing the two snapshots field by
//! field, and the comparisons destructure [`MeshSnapshot`] and [`Service`] without `..`:
//! a field added to either does not compile until it is said here whether it counts, so an
//! endpoints-only push can never go out with configuration it did not look at.

use crate::service::{Endpoints, Service};
use crate::snapshot::MeshSnapshot;
use isthmus_api::ResourceKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A configuration object a change touched, with the cluster whose registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigKey {
    /// The cluster (registry).
    pub cluster: String,
    /// Kind, namespace and name.
    pub key: ResourceKey,
}

impl std::fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.cluster, self.key)
    }
}

/// What the sources said they changed (Istio's `ConfigsUpdated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigsUpdated {
    /// A source gave a complete list, or the set of sources changed: anything may have.
    Unknown,
    /// These objects, and no others.
    Keys(BTreeSet<ConfigKey>),
}

/// How one snapshot differs from the one before.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRequest {
    /// The version this one follows (0 for the first snapshot).
    pub from_version: u64,
    /// The version it describes.
    pub version: u64,
    /// Something besides services' endpoints changed: every proxy's configuration is
    /// generated again.
    pub full: bool,
    /// When not `full`: the services whose endpoints (and nothing else) changed, by host,
    /// with their endpoints as they were at `from_version` (for whoever patches an index
    /// instead of rebuilding). Only the endpoints: the request lives as long as the
    /// snapshot it goes with, and the old services whole would be a second copy of every
    /// service a change touched (all of them when a cluster joins).
    pub endpoints: BTreeMap<String, Endpoints>,
    /// What the sources reported changing (for logs and debugging; the decision above
    /// compares the snapshots, which also covers what the model derives, such as generated
    /// ServiceEntries).
    pub configs_updated: ConfigsUpdated,
}

impl PushRequest {
    /// The first snapshot's request: everything is new.
    pub fn initial(version: u64) -> PushRequest {
        PushRequest {
            from_version: 0,
            version,
            full: true,
            endpoints: BTreeMap::new(),
            configs_updated: ConfigsUpdated::Unknown,
        }
    }

    /// What `next` changed from `prev`.
    pub fn between(
        prev: &MeshSnapshot,
        next: &MeshSnapshot,
        configs_updated: ConfigsUpdated,
    ) -> PushRequest {
        let mut push = PushRequest {
            from_version: prev.version,
            version: next.version,
            full: true,
            endpoints: BTreeMap::new(),
            configs_updated,
        };
        if let Some(endpoints) = endpoints_only(prev, next) {
            push.full = false;
            push.endpoints = endpoints;
        }
        push
    }

    /// The host names whose endpoints changed.
    pub fn endpoint_hosts(&self) -> BTreeSet<String> {
        self.endpoints.keys().cloned().collect()
    }

    /// True when no proxy's configuration can differ (only what proxies never receive
    /// changed, such as a pod that no service selects).
    pub fn is_empty(&self) -> bool {
        !self.full && self.endpoints.is_empty()
    }
}

/// When `next` differs from `prev` only in some services' endpoints, those services' endpoints
/// (as they were in `prev`); `None` otherwise, and when the egress gateway's own endpoints changed
/// (every funnelled cluster depends on them).
fn endpoints_only(prev: &MeshSnapshot, next: &MeshSnapshot) -> Option<BTreeMap<String, Endpoints>> {
    // Every field, named: a new one must be placed on one side or the other.
    let MeshSnapshot {
        // Which snapshot it is, not what it holds.
        version: _,
        // Read by the proxies' own identity (their labels, network), which the per-proxy
        // cache key holds; never sent as such.
        pods: _,
        // The same for VMs: a proxy's own WorkloadEntry gives its labels and identity (the
        // endpoints the entries make are in `services`, compared).
        workload_entries: _,
        // Bookkeeping of the build.
        reuse: _,
        // Derived from `virtual_services` and the services' hosts, both compared.
        serviceless: _,
        local_cluster,
        local_network,
        mesh,
        networks,
        services,
        destination_rules,
        virtual_services,
        gateways,
        sidecars,
        tls_credentials,
        network_gateways,
        mtls,
        authz,
        request_authn,
        jwks,
        gateway_health,
        // Problems change what is reported, not what is sent.
        diagnostics: _,
        egress_gateway,
        // Derived from `services`, compared.
        endpoint_index: _,
    } = next;
    let same_rules = *local_cluster == prev.local_cluster
        && *local_network == prev.local_network
        && *mesh == prev.mesh
        && *networks == prev.networks
        && *network_gateways == prev.network_gateways
        && *mtls == prev.mtls
        && *authz == prev.authz
        && *request_authn == prev.request_authn
        && *jwks == prev.jwks
        && *gateway_health == prev.gateway_health
        && *destination_rules == prev.destination_rules
        && *virtual_services == prev.virtual_services
        && *gateways == prev.gateways
        && *sidecars == prev.sidecars
        && *tls_credentials == prev.tls_credentials
        && *egress_gateway == prev.egress_gateway
        && services.len() == prev.services.len();
    if !same_rules {
        return None;
    }
    let mut changed = BTreeMap::new();
    for (host, svc) in services {
        let old = prev.services.get(host)?;
        if Arc::ptr_eq(svc, old) || svc == old {
            continue;
        }
        if !same_but_endpoints(svc, old) {
            return None;
        }
        changed.insert(host.clone(), old.endpoints.clone());
    }
    if egress_gateway
        .as_ref()
        .is_some_and(|g| changed.contains_key(g))
    {
        return None;
    }
    Some(changed)
}

/// Whether two services differ at most in their endpoints.
fn same_but_endpoints(a: &Service, b: &Service) -> bool {
    // Every field, named: a new one must be placed on one side or the other.
    let Service {
        hostname,
        namespace,
        name,
        origin,
        ports,
        vip,
        vip_allocated,
        exported,
        resolution,
        location,
        endpoints: _,
        subject_alt_names,
        export_to,
        headless,
    } = a;
    *hostname == b.hostname
        && *namespace == b.namespace
        && *name == b.name
        && *origin == b.origin
        && *ports == b.ports
        && *vip == b.vip
        && *vip_allocated == b.vip_allocated
        && *exported == b.exported
        && *resolution == b.resolution
        && *location == b.location
        && *subject_alt_names == b.subject_alt_names
        && *export_to == b.export_to
        && *headless == b.headless
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Port, ServiceOrigin};
    use isthmus_api::enums::{Location, Protocol, Resolution};

    fn service() -> Service {
        Service {
            hostname: "a.ns.svc.cluster.local".into(),
            namespace: "ns".into(),
            name: "a".into(),
            origin: ServiceOrigin::Kubernetes,
            ports: vec![Port {
                number: 80,
                name: "http".into(),
                protocol: Protocol::Http,
                sniffed: false,
            }],
            vip: Some("10.96.0.1".into()),
            vip_allocated: false,
            exported: true,
            resolution: Resolution::Static,
            location: Location::MeshInternal,
            endpoints: Endpoints::default(),
            subject_alt_names: Vec::new(),
            export_to: Vec::new(),
            headless: false,
        }
    }

    fn snapshot(svc: Service, version: u64) -> MeshSnapshot {
        MeshSnapshot {
            version,
            services: BTreeMap::from([(svc.hostname.clone(), Arc::new(svc))]),
            ..Default::default()
        }
    }

    /// Each field of a Service but its endpoints, changed alone, makes a full push; the
    /// destructuring in `same_but_endpoints` makes a new field a compile error until it is
    /// placed, and this test makes a placed-but-not-compared field fail.
    #[test]
    fn any_service_field_but_endpoints_makes_a_full_push() {
        let base = service();
        type Mutation = Box<dyn Fn(&mut Service)>;
        let mutations: Vec<(&str, Mutation)> = vec![
            ("hostname", Box::new(|s| s.hostname.push('x'))),
            ("namespace", Box::new(|s| s.namespace.push('x'))),
            ("name", Box::new(|s| s.name.push('x'))),
            (
                "origin",
                Box::new(|s| s.origin = ServiceOrigin::ServiceEntry("ns/a".into())),
            ),
            ("ports", Box::new(|s| s.ports[0].number = 81)),
            ("vip", Box::new(|s| s.vip = None)),
            ("vip_allocated", Box::new(|s| s.vip_allocated = true)),
            ("exported", Box::new(|s| s.exported = false)),
            ("resolution", Box::new(|s| s.resolution = Resolution::Dns)),
            (
                "location",
                Box::new(|s| s.location = Location::MeshExternal),
            ),
            (
                "subject_alt_names",
                Box::new(|s| s.subject_alt_names.push("spiffe://x".into())),
            ),
            ("export_to", Box::new(|s| s.export_to.push(".".into()))),
            ("headless", Box::new(|s| s.headless = true)),
        ];
        let prev = snapshot(base.clone(), 1);
        for (field, mutate) in &mutations {
            let mut changed = base.clone();
            mutate(&mut changed);
            assert!(
                !same_but_endpoints(&changed, &base),
                "{field} is not compared"
            );
            // Keep the host (the map's key) so that the service is compared, not missed.
            let mut next = snapshot(base.clone(), 2);
            next.services
                .insert(base.hostname.clone(), Arc::new(changed));
            let push = PushRequest::between(&prev, &next, ConfigsUpdated::Unknown);
            assert!(push.full, "a change of {field} must be a full push");
        }
    }

    #[test]
    fn an_endpoint_change_alone_names_the_service_with_its_endpoints_as_they_were() {
        let base = service();
        let prev = snapshot(base.clone(), 1);
        let mut moved = base.clone();
        moved.endpoints = Endpoints::sorted(vec![crate::service::Endpoint {
            address: crate::service::Address::parse("10.0.0.1"),
            origin: Arc::new(crate::service::EndpointOrigin::default()),
        }]);
        let next = snapshot(moved, 2);
        let push = PushRequest::between(&prev, &next, ConfigsUpdated::Keys(BTreeSet::new()));
        assert!(!push.full);
        assert_eq!((push.from_version, push.version), (1, 2));
        let (host, was) = push.endpoints.iter().next().expect("one service");
        assert_eq!(host, "a.ns.svc.cluster.local");
        assert!(was.is_empty(), "the endpoints as they were");
        // The request does not keep the old service itself alive with the new snapshot.
        let old = Arc::downgrade(&prev.services[host]);
        drop(prev);
        assert!(
            old.upgrade().is_none(),
            "the old service went with its snapshot"
        );
        // The same snapshot again: nothing for any proxy.
        let again = PushRequest::between(&next, &next, ConfigsUpdated::Keys(BTreeSet::new()));
        assert!(again.is_empty());
        // A rule changing besides: full.
        let mut ruled = snapshot(base, 3);
        ruled.egress_gateway = Some("egress".into());
        assert!(PushRequest::between(&next, &ruled, ConfigsUpdated::Unknown).full);
    }
}
