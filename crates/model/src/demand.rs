//! On-demand scoping: a sidecar is sent only the services its workload has asked for by
//! name (its agent's DNS saw the name), instead of every service in the mesh.
//!
//! A [`Demand`] is what the workload asked for; [`MeshSnapshot::demand_scope`] turns it into
//! the same `namespace/host` patterns a `Sidecar`'s `egress.hosts` gives, so generation has
//! one way of scoping. What a route needs goes in with the host it serves: the destinations
//! and mirrors of the VirtualServices of a wanted host (and theirs, to a fixpoint), a
//! StatefulSet pod's headless Service, the wildcard ServiceEntry a name falls under, and
//! the egress gateway when a wanted service leaves through it.

use crate::host::{fqdn, host_matches};
use crate::snapshot::MeshSnapshot;
use crate::Proxy;
use std::collections::BTreeSet;

/// What a sidecar's workload has asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Demand {
    /// Host names the workload resolved (lower case, without the final dot).
    pub names: BTreeSet<String>,
    /// Whether every service of the proxy's own namespace is in scope from the start.
    pub namespace: bool,
}

impl MeshSnapshot {
    /// The egress patterns (`namespace`, `host`) that `demand` puts in `proxy`'s scope.
    pub fn demand_scope(&self, proxy: &Proxy, demand: &Demand) -> Vec<(String, String)> {
        let mut patterns: Vec<(String, String)> = Vec::new();
        let mut hosts: BTreeSet<String> = BTreeSet::new();
        if demand.namespace {
            patterns.push((proxy.id.namespace.clone(), "*".to_string()));
            hosts.extend(
                self.services
                    .values()
                    .filter(|s| s.namespace == proxy.id.namespace)
                    .map(|s| s.hostname.clone()),
            );
        }
        for name in &demand.names {
            // The name itself: a service's host, or a host only a VirtualService names
            // (seed 004's `*.svc.b.remote`), which scoping matches both ways.
            patterns.push(("*".to_string(), name.clone()));
            hosts.extend(self.services_named(name));
        }
        // What the routes of the hosts in scope send to, until nothing new comes.
        let mut todo: Vec<String> = hosts
            .iter()
            .cloned()
            .chain(demand.names.iter().cloned())
            .collect();
        let mut seen: BTreeSet<String> = todo.iter().cloned().collect();
        while let Some(host) = todo.pop() {
            for vs in &self.virtual_services {
                let spec = &vs.rule.spec;
                if !spec.binds_mesh() || !self.virtual_service_visible(vs, &proxy.id.namespace) {
                    continue;
                }
                let routes_host = spec.hosts.iter().any(|h| {
                    let h = fqdn(h, &vs.namespace);
                    host_matches(&h, &host) || host_matches(&host, &h)
                });
                if !routes_host {
                    continue;
                }
                for dest in route_destinations(spec) {
                    let dest = fqdn(dest, &vs.namespace);
                    for found in self.services_named(&dest) {
                        if seen.insert(found.clone()) {
                            hosts.insert(found.clone());
                            todo.push(found);
                        }
                    }
                }
            }
        }
        // The egress gateway carries a wanted MESH_EXTERNAL service's HTTP.
        if let Some(gw) = &self.egress_gateway {
            let funnelled = hosts.iter().any(|h| {
                self.services.get(h).is_some_and(|svc| {
                    svc.ports
                        .iter()
                        .any(|p| self.funnel_carries(svc, p.number))
                })
            });
            if funnelled {
                hosts.insert(gw.clone());
            }
        }
        patterns.extend(hosts.into_iter().map(|h| ("*".to_string(), h)));
        patterns
    }

    /// The services a resolved name stands for: the service of that host, else the
    /// headless Service a StatefulSet pod's name is under (`web-0.web.ns.svc.cluster.local`),
    /// else the wildcard ServiceEntry hosts it falls under.
    fn services_named(&self, name: &str) -> Vec<String> {
        if self.services.contains_key(name) {
            return vec![name.to_string()];
        }
        if let Some((_, parent)) = name.split_once('.') {
            if self.services.get(parent).is_some_and(|s| s.headless()) {
                return vec![parent.to_string()];
            }
        }
        self.services
            .keys()
            .filter(|h| h.starts_with("*.") && host_matches(h, name))
            .cloned()
            .collect()
    }
}

/// Every destination and mirror host of a VirtualService's routes, as written.
fn route_destinations(spec: &isthmus_api::networking::VirtualServiceSpec) -> Vec<&str> {
    let mut out = Vec::new();
    for http in &spec.http {
        out.extend(http.route.iter().map(|r| r.destination.host.as_str()));
        out.extend(http.mirror.iter().map(|m| m.host.as_str()));
        out.extend(http.mirrors.iter().map(|m| m.destination.host.as_str()));
    }
    for tcp in &spec.tcp {
        out.extend(tcp.route.iter().map(|r| r.destination.host.as_str()));
    }
    for tls in &spec.tls {
        out.extend(tls.route.iter().map(|r| r.destination.host.as_str()));
    }
    out
}
