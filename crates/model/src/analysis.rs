//! Checks across resources, as `istioctl analyze` makes them, each reported with Istio's
//! code: what one resource names that no other defines (a Gateway, a host, a subset, a
//! gateway's workload), a Gateway port its workload does not expose, and VirtualServices that
//! claim one host for the mesh. Run on the input the control plane builds from, together with
//! the problems building it reports, so that `isthmus analyze` says everything the control
//! plane would.

use crate::host::{fqdn, host_matches};
use crate::snapshot::{MeshSnapshot, SnapshotInput};
use isthmus_api::diagnostic::codes;
use isthmus_api::kube::IntOrString;
use isthmus_api::load::place;
use isthmus_api::networking::{Destination, Gateway, VirtualService};
use isthmus_api::{Diagnostic, Labels, Object, Resource};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Every cross-resource problem of `input`, whose snapshot is `snapshot`.
pub fn analyze(input: &SnapshotInput, snapshot: &MeshSnapshot) -> Vec<Diagnostic> {
    let resources: Vec<&Arc<Resource>> = input
        .clusters
        .iter()
        .flat_map(|c| c.resources.values())
        .collect();
    let mut out = Vec::new();
    let gateways: BTreeSet<(String, String)> = resources
        .iter()
        .filter_map(|r| match &r.object {
            Object::Gateway(g) => Some((
                g.metadata.namespace.to_string(),
                g.metadata.name.to_string(),
            )),
            _ => None,
        })
        .collect();
    let subsets = subsets_by_host(&resources);
    let mut mesh_hosts: BTreeMap<String, Vec<&Arc<Resource>>> = BTreeMap::new();
    for r in &resources {
        if let Object::VirtualService(vs) = &r.object {
            virtual_service(r, vs, &gateways, snapshot, &subsets, &mut out);
            if vs.spec.binds_mesh() {
                let ns = &vs.metadata.namespace;
                for h in &vs.spec.hosts {
                    mesh_hosts.entry(fqdn(h, ns)).or_default().push(r);
                }
            }
        }
    }
    for (host, claimants) in mesh_hosts.iter().filter(|(_, v)| v.len() > 1) {
        let names: Vec<String> = claimants.iter().map(|r| r.key().to_string()).collect();
        for r in claimants {
            out.push(place(
                Diagnostic::error(format!(
                    "the VirtualServices {} bound to the mesh gateway define the same host {host}, which makes which one applies undefined",
                    names.join(", ")
                ))
                .at("spec.hosts")
                .code(&codes::CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS),
                r,
            ));
        }
    }
    gateway_workloads(&resources, &mut out);
    out
}

/// The subsets DestinationRules define, by (fully qualified) host pattern.
fn subsets_by_host(resources: &[&Arc<Resource>]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in resources {
        if let Object::DestinationRule(dr) = &r.object {
            let host = fqdn(&dr.spec.host, &dr.metadata.namespace);
            out.entry(host)
                .or_default()
                .extend(dr.spec.subsets.iter().map(|s| s.name.clone()));
        }
    }
    out
}

/// The gateways, hosts and subsets a VirtualService names.
fn virtual_service(
    r: &Arc<Resource>,
    vs: &VirtualService,
    gateways: &BTreeSet<(String, String)>,
    snapshot: &MeshSnapshot,
    subsets: &BTreeMap<String, BTreeSet<String>>,
    out: &mut Vec<Diagnostic>,
) {
    let ns = vs.metadata.namespace.to_string();
    for (i, g) in vs.spec.gateways.iter().enumerate() {
        if g == "mesh" {
            continue;
        }
        let (gns, name) = g.split_once('/').unwrap_or((&ns, g));
        if !gateways.contains(&(gns.to_string(), name.to_string())) {
            out.push(place(
                Diagnostic::error(format!("Referenced gateway not found: \"{g}\""))
                    .at(format!("spec.gateways[{i}]"))
                    .code(&codes::REFERENCED_RESOURCE_NOT_FOUND),
                r,
            ));
        }
    }
    let mut destinations: Vec<(String, &Destination)> = Vec::new();
    for (i, h) in vs.spec.http.iter().enumerate() {
        for (j, d) in h.route.iter().enumerate() {
            destinations.push((
                format!("spec.http[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
        if let Some(m) = &h.mirror {
            destinations.push((format!("spec.http[{i}].mirror"), m));
        }
    }
    for (i, t) in vs.spec.tcp.iter().enumerate() {
        for (j, d) in t.route.iter().enumerate() {
            destinations.push((
                format!("spec.tcp[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
    }
    for (i, t) in vs.spec.tls.iter().enumerate() {
        for (j, d) in t.route.iter().enumerate() {
            destinations.push((
                format!("spec.tls[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
    }
    for (at, d) in destinations {
        let host = fqdn(&d.host, &ns);
        let known = snapshot
            .services
            .keys()
            .any(|s| s == &host || host_matches(s, &host));
        if !known {
            out.push(place(
                Diagnostic::error(format!("Referenced host not found: \"{}\"", d.host))
                    .at(format!("{at}.host"))
                    .code(&codes::REFERENCED_RESOURCE_NOT_FOUND),
                r,
            ));
            continue;
        }
        if let Some(subset) = &d.subset {
            let defined = subsets
                .iter()
                .any(|(pattern, names)| host_matches(pattern, &host) && names.contains(subset));
            if !defined {
                out.push(place(
                    Diagnostic::error(format!(
                        "Referenced host+subset in destinationrule not found: \"{}+{subset}\"",
                        d.host
                    ))
                    .at(format!("{at}.subset"))
                    .code(&codes::REFERENCED_RESOURCE_NOT_FOUND),
                    r,
                ));
            }
        }
    }
}

/// The labels of every workload (pods, and the pod templates of Deployments and
/// StatefulSets) by namespace.
fn workloads<'a>(resources: &[&'a Arc<Resource>]) -> Vec<(&'a str, &'a Labels)> {
    resources
        .iter()
        .filter_map(|r| match &r.object {
            Object::Pod(p) => Some((&*p.metadata.namespace, &*p.metadata.labels)),
            Object::Deployment(d) => {
                Some((&*d.metadata.namespace, &*d.spec.template.metadata.labels))
            }
            _ => None,
        })
        .collect()
}

/// A Gateway's selector picks workloads (any namespace, as Istio's default
/// `PILOT_SCOPE_GATEWAY_TO_NAMESPACE=false`), and its server ports are ports those
/// workloads' Services send to. Only checked when the input has workloads at all: files
/// without the gateway's Deployment say nothing about it.
fn gateway_workloads(resources: &[&Arc<Resource>], out: &mut Vec<Diagnostic>) {
    let all = workloads(resources);
    if all.is_empty() {
        return;
    }
    for r in resources {
        let Object::Gateway(g) = &r.object else {
            continue;
        };
        let selector = Labels::from_iter(g.spec.selector.clone());
        let picked: Vec<(&str, &Labels)> = all
            .iter()
            .filter(|(_, l)| !selector.is_empty() && l.matches(&selector))
            .copied()
            .collect();
        if picked.is_empty() {
            out.push(place(
                Diagnostic::error(format!(
                    "Referenced selector not found: \"{}\"",
                    selector_text(g)
                ))
                .at("spec.selector")
                .code(&codes::REFERENCED_RESOURCE_NOT_FOUND),
                r,
            ));
            continue;
        }
        // A named targetPort cannot be checked without the pods' container ports.
        let Some(ports) = service_ports(resources, &picked) else {
            continue;
        };
        for (i, s) in g.spec.servers.iter().enumerate() {
            if !ports.contains(&s.port.number) {
                out.push(place(
                    Diagnostic::warning(format!(
                        "The gateway refers to a port that is not exposed on the workload (pod selector {}; port {})",
                        selector_text(g),
                        s.port.number
                    ))
                    .at(format!("spec.servers[{i}].port.number"))
                    .code(&codes::GATEWAY_PORT_NOT_ON_WORKLOAD),
                    r,
                ));
            }
        }
    }
}

/// The ports on the pods (`targetPort`, else `port`) of the Services selecting `picked`;
/// `None` when one is a named port.
fn service_ports(
    resources: &[&Arc<Resource>],
    picked: &[(&str, &Labels)],
) -> Option<BTreeSet<u32>> {
    let mut ports = BTreeSet::new();
    for r in resources {
        let Object::Service(svc) = &r.object else {
            continue;
        };
        let selector = &svc.spec.selector;
        let selects = !selector.is_empty()
            && picked
                .iter()
                .any(|(ns, l)| *ns == &*svc.metadata.namespace && l.matches(selector));
        if !selects {
            continue;
        }
        for p in &svc.spec.ports {
            ports.insert(match &p.target_port {
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(_)) => return None,
                None => p.port,
            });
        }
    }
    Some(ports)
}

fn selector_text(g: &Gateway) -> String {
    g.spec
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
