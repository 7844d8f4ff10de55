//! Folding every registry into one [`MeshSnapshot`].

use crate::host::{fqdn, CLUSTER_DOMAIN};
use crate::policy::{MtlsPolicies, MtlsPolicy, ROOT_NAMESPACE};
use crate::service::{Address, Endpoint, EndpointOrigin, Endpoints, Port, Service, ServiceOrigin};
use crate::snapshot::{MeshSnapshot, NetworkGateway, Scoped, SnapshotInput};
use isthmus_api::diagnostic::codes;
use isthmus_api::enums::{Location, MtlsMode, Protocol, Resolution};
use isthmus_api::load::place;
use isthmus_api::mesh::{MeshConfig, MeshNetworks};
use isthmus_api::{Diagnostic, Object, Resource};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// What makes two ServiceEntry endpoints' origins equal: network, locality, service
/// account, labels, port overrides and weight.
type OriginKey<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a BTreeMap<String, String>,
    &'a BTreeMap<String, u32>,
    u32,
);

impl MeshSnapshot {
    /// Builds a snapshot afresh. Problems are collected in `diagnostics`; a resource that
    /// conflicts with another (a duplicate VIP) is left out whole, never half-applied.
    /// [`crate::MeshBuilder`] builds one after another, reusing what it can.
    pub fn build(input: &SnapshotInput, version: u64) -> MeshSnapshot {
        Self::build_cached(input, version, None)
    }

    /// [`MeshSnapshot::build`], reusing from `cache` what earlier builds computed.
    pub(crate) fn build_cached(
        input: &SnapshotInput,
        version: u64,
        cache: Option<&crate::incremental::BuildCache>,
    ) -> MeshSnapshot {
        let mut snap = MeshSnapshot {
            version,
            local_cluster: input.local_cluster.clone(),
            local_network: input.local_network.clone(),
            egress_gateway: input.egress_gateway.clone(),
            ..Default::default()
        };
        for c in &input.clusters {
            snap.diagnostics.extend(c.diagnostics.iter().cloned());
        }
        // Each cluster's objects sorted by what the build does with them (cached per registry
        // version): the rules of the local cluster are a short list, not every object.
        let sorted: Vec<_> = input
            .clusters
            .iter()
            .map(|c| crate::incremental::cluster_objects(cache, c))
            .collect();
        let local_resources: Vec<&Arc<Resource>> = input
            .clusters
            .iter()
            .zip(&sorted)
            .find(|(c, _)| c.cluster == input.local_cluster)
            .map(|(_, o)| o.rules.iter().collect())
            .unwrap_or_default();

        read_mesh_config(&mut snap, &local_resources);
        let cluster_network = |cluster: &str| -> String {
            if cluster == input.local_cluster {
                return input.local_network.clone();
            }
            for (name, net) in &snap.networks.networks {
                if net
                    .endpoints
                    .iter()
                    .any(|e| e.from_registry.as_deref() == Some(cluster))
                {
                    return name.clone();
                }
            }
            input
                .cluster_networks
                .get(cluster)
                .cloned()
                .unwrap_or_default()
        };
        let cidrs: Vec<(String, String)> = snap
            .networks
            .networks
            .iter()
            .flat_map(|(name, net)| {
                net.endpoints
                    .iter()
                    .filter_map(|e| e.from_cidr.clone())
                    .map(move |c| (c, name.clone()))
            })
            .collect();

        // Pods, and the endpoints selector-based Services get from them, per (cluster,
        // namespace): reused from the cache where nothing they depend on changed.
        let mut groups = Vec::new();
        let shared_cidrs: Arc<[(String, String)]> = cidrs.clone().into();
        for (c, objects) in input.clusters.iter().zip(&sorted) {
            let network = cluster_network(&c.cluster);
            snap.pods.insert(
                c.cluster.clone(),
                crate::pod::ClusterPods {
                    objects: objects.clone(),
                    network: network.clone(),
                    cidrs: shared_cidrs.clone(),
                },
            );
            for (ns, in_ns) in &objects.by_namespace {
                groups.push((
                    crate::incremental::NamespaceContext {
                        cluster: c.cluster.clone(),
                        namespace: ns.clone(),
                        is_local: c.cluster == input.local_cluster,
                        trust_domain: snap.mesh.trust_domain.clone(),
                        export_default: input.export_default,
                        namespace_network: objects.namespace_networks.get(ns).cloned(),
                        cluster_network: network.clone(),
                        cidrs: cidrs.clone(),
                        node_localities: objects.node_localities.clone(),
                    },
                    in_ns.clone(),
                ));
            }
        }
        let (mut services, reuse) = crate::incremental::pods_and_services(cache, groups);
        snap.reuse = reuse;

        /// An address and its ports by name.
        type AddressPorts = (String, Vec<(String, u32)>);
        // Selector-less services take their endpoints from Endpoints objects and from the
        // EndpointSlices a user wrote: (address, ports) of each ready address.
        for (c, objects) in input.clusters.iter().zip(&sorted) {
            for r in objects.endpoints.iter() {
                let (service, addresses): (&str, Vec<AddressPorts>) = match &r.object {
                    Object::Endpoints(e) => (
                        &e.metadata.name,
                        e.subsets
                            .iter()
                            .flat_map(|subset| {
                                let ports: Vec<(String, u32)> = subset
                                    .ports
                                    .iter()
                                    .map(|p| (p.name.clone(), p.port))
                                    .collect();
                                subset
                                    .addresses
                                    .iter()
                                    .map(move |a| (a.ip.to_string(), ports.clone()))
                            })
                            .collect(),
                    ),
                    Object::EndpointSlice(s) => {
                        let Some(service) = s.metadata.labels.get("kubernetes.io/service-name")
                        else {
                            continue;
                        };
                        let ports: Vec<(String, u32)> =
                            s.ports.iter().map(|p| (p.name.clone(), p.port)).collect();
                        (
                            service.as_str(),
                            s.endpoints
                                .iter()
                                .filter(|e| e.conditions.ready != Some(false))
                                .filter_map(|e| e.addresses.first())
                                .map(|a| (a.clone(), ports.clone()))
                                .collect(),
                        )
                    }
                    _ => continue,
                };
                let hostname = format!(
                    "{}.{}.{CLUSTER_DOMAIN}",
                    service,
                    r.object.metadata().namespace
                );
                let Some(svc) = services.get_mut(&hostname) else {
                    continue;
                };
                let svc = Arc::make_mut(svc);
                let mut added: Vec<Endpoint> = Vec::new();
                for (ip, ports) in addresses {
                    let pod = snap
                        .pods
                        .get(&c.cluster)
                        .and_then(|pods| pods.by_ip(&ip, &snap.mesh.trust_domain));
                    if svc
                        .endpoints
                        .iter()
                        .chain(&added)
                        .any(|ep| ep.address == *ip && *ep.origin.cluster == *c.cluster)
                    {
                        continue;
                    }
                    added.push(Endpoint {
                        address: Address::parse(&ip),
                        origin: Arc::new(EndpointOrigin {
                            cluster: c.cluster.as_str().into(),
                            network: pod
                                .as_ref()
                                .map(|p| p.network.clone())
                                .unwrap_or_else(|| cluster_network(&c.cluster).into()),
                            locality: "".into(),
                            identity: pod.as_ref().map(|p| p.identity.clone()),
                            mtls_ready: pod.is_some(),
                            labels: pod.as_ref().map(|p| p.labels.clone()).unwrap_or_default(),
                            ports: ports.into_iter().collect::<BTreeMap<String, u32>>().into(),
                            weight: 1,
                        }),
                    });
                }
                svc.endpoints.add(added);
            }
        }

        // WorkloadEntries (VMs): endpoints of the local Services whose selectors match them,
        // and below of the ServiceEntries whose workloadSelectors do.
        snap.workload_entries = local_resources
            .iter()
            .filter_map(|r| match &r.object {
                Object::WorkloadEntry(we) => Some((**we).clone()),
                _ => None,
            })
            .collect();
        let local_objects = input
            .clusters
            .iter()
            .zip(&sorted)
            .find(|(c, _)| c.cluster == input.local_cluster)
            .map(|(_, o)| o);
        for we in &snap.workload_entries {
            let Some(in_ns) =
                local_objects.and_then(|o| o.by_namespace.get(&*we.metadata.namespace))
            else {
                continue;
            };
            for r in in_ns.iter() {
                let Object::Service(s) = &r.object else {
                    continue;
                };
                let Some(ep) = crate::workload::selected_by_service(
                    s,
                    we,
                    &input.local_cluster,
                    &snap.mesh.trust_domain,
                ) else {
                    continue;
                };
                let host = fqdn(&s.metadata.name, &s.metadata.namespace);
                if let Some(svc) = services.get_mut(&host) {
                    Arc::make_mut(svc).endpoints.add(vec![ep]);
                }
            }
        }

        // ServiceEntries and Istio rules: the local cluster's configuration.
        let mut vips: BTreeMap<String, String> = services
            .values()
            .filter_map(|s| s.vip.clone().map(|v| (v, s.hostname.clone())))
            .collect();
        // The resource of each VirtualService, for what delegation reports.
        let mut vs_resources = Vec::new();
        for r in &local_resources {
            match &r.object {
                Object::ServiceEntry(se) => {
                    let key = format!("{}/{}", se.metadata.namespace, se.metadata.name);
                    let vip = se
                        .spec
                        .addresses
                        .iter()
                        .find(|a| a.parse::<IpAddr>().is_ok())
                        .cloned();
                    if let Some(v) = &vip {
                        if let Some(owner) = vips.get(v).filter(|o| !se.spec.hosts.contains(o)) {
                            let d = Diagnostic::error(format!(
                                "address {v} is already the VIP of {owner}; each service needs its own address within a cluster"
                            ))
                            .at("spec.addresses[0]")
                            .code(&codes::CONFLICTING_SERVICE_ADDRESSES);
                            snap.diagnostics.push(place(d, r));
                            continue;
                        }
                    }
                    let resolution = se.spec.resolution.unwrap_or(Resolution::None);
                    let ports: Vec<Port> = se
                        .spec
                        .ports
                        .iter()
                        .map(|p| Port {
                            name: p.name.clone(),
                            number: p.number,
                            protocol: p
                                .protocol
                                .unwrap_or_else(|| Protocol::from_port_name(&p.name)),
                            sniffed: p.protocol.is_none()
                                && Protocol::declared_by_port_name(&p.name).is_none(),
                        })
                        .collect();
                    // Endpoints alike (network, locality, service account, labels, ports
                    // and weight: usually all of an entry's) share one origin, so that an entry's
                    // endpoint costs what a pod's does.
                    let mut origins: HashMap<OriginKey<'_>, Arc<EndpointOrigin>> = HashMap::new();
                    let mut endpoints: Vec<Endpoint> = se
                        .spec
                        .endpoints
                        .iter()
                        .map(|ep| {
                            let key = (
                                ep.network.as_deref(),
                                ep.locality.as_deref(),
                                ep.service_account.as_deref(),
                                &ep.labels,
                                &ep.ports,
                                ep.weight.filter(|w| *w > 0).unwrap_or(1),
                            );
                            let origin = origins
                                .entry(key)
                                .or_insert_with_key(|key| {
                                    Arc::new(EndpointOrigin {
                                        cluster: "".into(),
                                        network: ep.network.as_deref().unwrap_or_default().into(),
                                        locality: ep.locality.as_deref().unwrap_or_default().into(),
                                        identity: ep.service_account.as_ref().map(|sa| {
                                            snap.spiffe(&se.metadata.namespace, sa).into()
                                        }),
                                        mtls_ready: se.spec.location
                                            == Some(Location::MeshInternal),
                                        labels: Arc::new(ep.labels.clone().into()),
                                        ports: se
                                            .spec
                                            .ports
                                            .iter()
                                            .map(|p| {
                                                let n = ep
                                                    .ports
                                                    .get(&p.name)
                                                    .copied()
                                                    .or(p.target_port)
                                                    .unwrap_or(p.number);
                                                (p.name.clone(), n)
                                            })
                                            .collect::<BTreeMap<String, u32>>()
                                            .into(),
                                        weight: key.5,
                                    })
                                })
                                .clone();
                            Endpoint {
                                address: Address::parse(&ep.address),
                                origin,
                            }
                        })
                        .collect();
                    // Or the WorkloadEntries and pods its workloadSelector picks (validation
                    // allows one of the two).
                    endpoints.extend(crate::workload::selected_by_service_entry(
                        se,
                        &snap.workload_entries,
                        &snap.pods,
                        &input.local_cluster,
                        &snap.mesh.trust_domain,
                    ));
                    for host in &se.spec.hosts {
                        if let Some(v) = &vip {
                            vips.insert(v.clone(), host.clone());
                        }
                        match services.get_mut(host) {
                            // A ServiceEntry for a Kubernetes host adds endpoints (seed 002:
                            // the remote gateway beside local pods).
                            Some(existing) if existing.origin == ServiceOrigin::Kubernetes => {
                                let existing = Arc::make_mut(existing);
                                let mut added = Vec::with_capacity(endpoints.len());
                                for ep in &endpoints {
                                    let mut ep = ep.clone();
                                    let origin = Arc::make_mut(&mut ep.origin);
                                    origin.ports = existing
                                        .ports
                                        .iter()
                                        .filter_map(|p| {
                                            let se_port =
                                                ports.iter().find(|sp| sp.number == p.number)?;
                                            Some((
                                                p.name.clone(),
                                                origin.ports.get(&se_port.name).copied()?,
                                            ))
                                        })
                                        .collect::<BTreeMap<String, u32>>()
                                        .into();
                                    added.push(ep);
                                }
                                existing.endpoints.add(added);
                            }
                            Some(_) => {
                                let d = Diagnostic::error(format!(
                                    "host {host} is already defined by another ServiceEntry"
                                ))
                                .at("spec.hosts")
                                .code(&codes::CONFLICTING_SERVICE_ENTRY_HOSTS);
                                snap.diagnostics.push(place(d, r));
                            }
                            None => {
                                let svc = Service {
                                    hostname: host.clone(),
                                    namespace: se.metadata.namespace.to_string(),
                                    name: se.metadata.name.to_string(),
                                    origin: ServiceOrigin::ServiceEntry(key.clone()),
                                    ports: ports.clone(),
                                    vip: vip.clone(),
                                    vip_allocated: false,
                                    exported: true,
                                    resolution,
                                    location: se.spec.location.unwrap_or(Location::MeshExternal),
                                    endpoints: Endpoints::sorted(endpoints.clone()),
                                    subject_alt_names: se.spec.subject_alt_names.clone(),
                                    export_to: se.spec.export_to.clone(),
                                    headless: false,
                                };
                                services.insert(host.clone(), Arc::new(svc));
                            }
                        }
                    }
                }
                Object::DestinationRule(dr) => snap.destination_rules.push(Scoped {
                    namespace: dr.metadata.namespace.to_string(),
                    rule: (**dr).clone(),
                }),
                Object::VirtualService(vs) => {
                    snap.virtual_services.push(Scoped {
                        namespace: vs.metadata.namespace.to_string(),
                        rule: (**vs).clone(),
                    });
                    vs_resources.push(r);
                }
                Object::Gateway(g) => snap.gateways.push(Scoped {
                    namespace: g.metadata.namespace.to_string(),
                    rule: (**g).clone(),
                }),
                Object::Sidecar(sc) => snap.sidecars.push(Scoped {
                    namespace: sc.metadata.namespace.to_string(),
                    rule: (**sc).clone(),
                }),
                _ => {}
            }
        }
        read_tls_credentials(&mut snap, &local_resources);
        snap.mtls = read_policies(&local_resources);
        snap.authz = read_authz(&local_resources);
        snap.request_authn = read_request_authn(&local_resources);
        snap.jwks = input.jwks.clone();
        snap.gateway_health = input.gateway_health.clone();
        for net in snap.networks.networks.iter() {
            let gws = net
                .1
                .gateways
                .iter()
                .filter_map(|g| {
                    let address = g.address.clone().or_else(|| {
                        let svc = g.registry_service_name.as_deref()?;
                        let s = services.get(&fqdn(svc, ROOT_NAMESPACE))?;
                        s.vip.clone()
                    })?;
                    Some(NetworkGateway {
                        address,
                        port: g.port,
                        locality: g.locality.clone().unwrap_or_default(),
                    })
                })
                .collect();
            snap.network_gateways.insert(net.0.clone(), gws);
        }
        // ServiceEntry hosts without an address get one, so that DNS can answer them and
        // sidecars capture them by VIP (Istio's DNS auto-allocation).
        let taken: std::collections::BTreeSet<std::net::Ipv4Addr> = services
            .values()
            .filter_map(|s| s.vip.as_deref()?.parse().ok())
            .collect();
        let wanting: Vec<String> = services
            .values()
            .filter(|s| {
                s.vip.is_none()
                    && !s.hostname.contains('*')
                    && match s.origin {
                        ServiceOrigin::ServiceEntry(_) => true,
                        // A Service of other clusters only (marked when merged).
                        ServiceOrigin::Kubernetes => s.vip_allocated,
                    }
            })
            .map(|s| s.hostname.clone())
            .collect();
        for (host, ip) in input
            .vip_range
            .allocate(wanting.iter().map(String::as_str), &taken)
        {
            if let Some(s) = services.get_mut(&host) {
                let s = Arc::make_mut(s);
                s.vip = Some(ip.to_string());
                s.vip_allocated = true;
            }
        }
        // A Service that wanted a VIP and found the range full has none.
        for s in services.values_mut() {
            if s.vip.is_none() && s.vip_allocated {
                Arc::make_mut(s).vip_allocated = false;
            }
        }
        // Delegating routes replaced by their delegates' routes.
        let (resolved, unresolved) = crate::delegate::resolve(&snap.virtual_services);
        for (vs, route, message) in unresolved {
            if let Some(r) = vs_resources.get(vs) {
                let d = Diagnostic::warning(message)
                    .at(format!("spec.http[{route}].delegate"))
                    .code(&codes::REFERENCED_RESOURCE_NOT_FOUND);
                snap.diagnostics.push(place(d, r));
            }
        }
        snap.virtual_services = resolved;
        snap.services = services;
        snap.find_serviceless_hosts();
        snap
    }
}

/// The Secrets the Gateways' servers name in `credentialName` (and their `-cacert`
/// Secrets), read into `snap.tls_credentials`; a Secret that gives no credential is an
/// error on it, and a name no namespace has a Secret for is a warning on the Gateway (its
/// server is not served until the Secret exists, as in Istio).
fn read_tls_credentials(snap: &mut MeshSnapshot, resources: &[&Arc<Resource>]) {
    use crate::credential::{ca_of, from_secret, TlsCredential, CA_SECRET_SUFFIX};
    let wanted: std::collections::BTreeSet<&str> = snap
        .gateways
        .iter()
        .flat_map(|g| &g.rule.spec.servers)
        .filter_map(|s| s.tls.as_ref()?.credential_name.as_deref())
        .collect();
    if wanted.is_empty() {
        return;
    }
    let mut found = std::collections::BTreeSet::new();
    for r in resources {
        let Object::Secret(secret) = &r.object else {
            continue;
        };
        let name = &*secret.metadata.name;
        let key = format!("{}/{name}", secret.metadata.namespace);
        let read = if wanted.contains(name) {
            from_secret(secret).inspect(|_| {
                found.insert(name.to_string());
            })
        } else if name
            .strip_suffix(CA_SECRET_SUFFIX)
            .is_some_and(|base| wanted.contains(base))
        {
            ca_of(secret).map(|ca| TlsCredential {
                ca_certificates: ca,
                ..Default::default()
            })
        } else {
            continue;
        };
        match read {
            Ok(c) => {
                snap.tls_credentials.insert(key, Arc::new(c));
            }
            Err(e) => {
                let d = Diagnostic::error(format!(
                    "a Gateway's credentialName names this Secret, but it gives no certificate: {e}"
                ))
                .at("data")
                .code(&codes::INVALID_CREDENTIAL_SECRET);
                snap.diagnostics.push(place(d, r));
            }
        }
    }
    for r in resources {
        let Object::Gateway(g) = &r.object else {
            continue;
        };
        for (i, s) in g.spec.servers.iter().enumerate() {
            let Some(name) = s.tls.as_ref().and_then(|t| t.credential_name.as_deref()) else {
                continue;
            };
            if !found.contains(name) {
                let d = Diagnostic::warning(format!(
                    "no Secret `{name}` with a certificate and key in any namespace the control plane reads (on Kubernetes: istio-system); the server is not served until the gateway's namespace has one"
                ))
                .at(format!("spec.servers[{i}].tls.credentialName"))
                .code(&codes::REFERENCED_RESOURCE_NOT_FOUND);
                snap.diagnostics.push(place(d, r));
            }
        }
    }
}

fn read_mesh_config(snap: &mut MeshSnapshot, resources: &[&Arc<Resource>]) {
    for r in resources {
        let Object::ConfigMap(cm) = &r.object else {
            continue;
        };
        if &*cm.metadata.name != "istio" || &*cm.metadata.namespace != ROOT_NAMESPACE {
            continue;
        }
        if let Some(text) = cm.data.get("mesh") {
            if let Ok(m) = MeshConfig::parse(text) {
                snap.mesh = m;
            }
        }
        if let Some(text) = cm.data.get("meshNetworks") {
            if let Ok(n) = MeshNetworks::parse(text) {
                snap.networks = n;
            }
        }
    }
}

/// The policies `spec` finds among `resources`, by namespace and name.
fn read_named<S: Clone>(
    resources: &[&Arc<Resource>],
    spec: impl Fn(&Object) -> Option<&S>,
) -> Vec<crate::policy::NamedPolicy<S>> {
    let mut policies: Vec<crate::policy::NamedPolicy<S>> = resources
        .iter()
        .filter_map(|r| {
            let spec = spec(&r.object)?.clone();
            let meta = r.object.metadata();
            Some(crate::policy::NamedPolicy {
                namespace: meta.namespace.to_string(),
                name: meta.name.to_string(),
                spec,
            })
        })
        .collect();
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    policies
}

fn read_authz(resources: &[&Arc<Resource>]) -> crate::policy::AuthzPolicies {
    crate::policy::AuthzPolicies {
        policies: read_named(resources, |o| match o {
            Object::AuthorizationPolicy(p) => Some(&p.spec),
            _ => None,
        }),
    }
}

fn read_request_authn(resources: &[&Arc<Resource>]) -> crate::policy::JwtPolicies {
    crate::policy::JwtPolicies {
        policies: read_named(resources, |o| match o {
            Object::RequestAuthentication(p) => Some(&p.spec),
            _ => None,
        }),
    }
}

fn read_policies(resources: &[&Arc<Resource>]) -> MtlsPolicies {
    let mut out = MtlsPolicies::default();
    for r in resources {
        match &r.object {
            Object::PeerAuthentication(pa) => out.policies.push(MtlsPolicy {
                namespace: pa.metadata.namespace.to_string(),
                selector: pa
                    .spec
                    .selector
                    .clone()
                    .map(|s| s.match_labels)
                    .unwrap_or_default(),
                mode: pa
                    .spec
                    .mtls
                    .as_ref()
                    .and_then(|m| m.mode)
                    .unwrap_or(MtlsMode::Unset),
                ports: pa
                    .spec
                    .port_level_mtls
                    .iter()
                    .filter_map(|(p, m)| Some((p.parse().ok()?, m.mode.unwrap_or(MtlsMode::Unset))))
                    .collect(),
            }),
            Object::MeshPolicy(p) => out.policies.push(MtlsPolicy {
                namespace: ROOT_NAMESPACE.into(),
                selector: BTreeMap::new(),
                mode: p.spec.mode(),
                ports: BTreeMap::new(),
            }),
            Object::AuthnPolicy(p) if p.spec.targets.is_empty() => out.policies.push(MtlsPolicy {
                namespace: p.metadata.namespace.to_string(),
                selector: BTreeMap::new(),
                mode: p.spec.mode(),
                ports: BTreeMap::new(),
            }),
            _ => {}
        }
    }
    // Workload policies first, so lookups find the most specific.
    out.policies.sort_by_key(|p| p.selector.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_registry::ClusterConfig;

    fn cluster(name: &str, yaml: &str) -> ClusterConfig {
        let loaded = isthmus_api::load_str(yaml, None, "default");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        ClusterConfig {
            cluster: name.into(),
            resources: loaded
                .resources
                .into_iter()
                .map(|r| (r.key(), Arc::new(r)))
                .collect(),
            diagnostics: vec![],
            ..Default::default()
        }
    }

    const HTTPBIN: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: bar}\nspec:\n  ports:\n  - {name: http, port: 8000, targetPort: 80}\n  selector: {app: httpbin}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: httpbin-1, namespace: bar, labels: {app: httpbin, version: v1}}\nspec: {serviceAccountName: httpbin}\nstatus: {podIP: 10.10.0.5}\n";

    /// Every pod of a snapshot, as (cluster, namespace, name, what the mesh reads).
    fn pods(snap: &MeshSnapshot) -> Vec<(String, String, String, crate::pod::PodInfo)> {
        snap.pods
            .iter()
            .flat_map(|(c, pods)| {
                pods.iter(&snap.mesh.trust_domain)
                    .map(move |(ns, name, info)| {
                        (c.clone(), ns.to_string(), name.to_string(), info)
                    })
            })
            .collect()
    }

    #[test]
    fn a_cached_rebuild_redoes_only_the_changed_namespace_and_equals_a_fresh_build() {
        let sleep = "apiVersion: v1\nkind: Service\nmetadata: {name: sleep, namespace: foo}\nspec:\n  ports:\n  - {name: http, port: 80}\n  selector: {app: sleep}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: sleep-0, namespace: foo, labels: {app: sleep}}\nstatus: {podIP: 10.10.0.9}\n";
        let before = cluster("c1", &format!("{HTTPBIN}---\n{sleep}"));
        let remote = cluster("c2", HTTPBIN);
        let cache = crate::incremental::BuildCache::default();
        let input = |c: &ClusterConfig| SnapshotInput {
            local_cluster: "c1".into(),
            local_network: "n1".into(),
            cluster_networks: BTreeMap::from([("c2".to_string(), "n2".to_string())]),
            clusters: vec![Arc::new(c.clone()), Arc::new(remote.clone())],
            ..Default::default()
        };
        let first = MeshSnapshot::build_cached(&input(&before), 1, Some(&cache));
        assert_eq!(first.reuse.namespaces_built, 3);
        assert_eq!(first.reuse.services_built, 2);

        // httpbin-1 in c1 moves to another IP: one object replaced, the rest the same Arcs.
        let mut after = before.clone();
        let key = after
            .resources
            .keys()
            .find(|k| k.kind == "Pod" && k.name == "httpbin-1")
            .map(|k| k.to_key())
            .expect("pod");
        let mut moved = (*after.resources[&key]).clone();
        if let isthmus_api::Object::Pod(p) = &mut moved.object {
            p.status.set_pod_ip(Some([10, 10, 0, 6].into()));
        }
        after.resources.insert(key, Arc::new(moved));

        let cached = MeshSnapshot::build_cached(&input(&after), 2, Some(&cache));
        let fresh = MeshSnapshot::build(&input(&after), 2);
        let httpbin_1 = cached.pod("c1", "bar", "httpbin-1").expect("pod");
        assert_eq!(
            (
                httpbin_1.ip.to_string().as_str(),
                &*httpbin_1.network,
                &*httpbin_1.identity
            ),
            (
                "10.10.0.6",
                "n1",
                "spiffe://cluster.local/ns/bar/sa/httpbin"
            )
        );
        assert_eq!(pods(&cached).len(), 3);
        assert_eq!(
            cached.reuse,
            crate::incremental::Reuse {
                namespaces_built: 1,
                namespaces_reused: 2,
                services_built: 1,
                services_reused: 1,
            }
        );
        assert_eq!(cached.services, fresh.services);
        assert_eq!(pods(&cached), pods(&fresh));
        let httpbin = &cached.services["httpbin.bar.svc.cluster.local"];
        assert!(httpbin
            .endpoints
            .iter()
            .any(|e| e.address == *"10.10.0.6" && &*e.origin.cluster == "c1"));
        assert!(!httpbin
            .endpoints
            .iter()
            .any(|e| e.address == *"10.10.0.5" && &*e.origin.cluster == "c1"));
        // The untouched service is the very same object as before.
        assert!(Arc::ptr_eq(
            &first.services["sleep.foo.svc.cluster.local"],
            &cached.services["sleep.foo.svc.cluster.local"]
        ));
        // A namespace that disappears leaves the cache.
        let mut gone = after.clone();
        gone.resources.retain(|k, _| k.namespace != "foo");
        let third = MeshSnapshot::build_cached(&input(&gone), 3, Some(&cache));
        assert!(!third.services.contains_key("sleep.foo.svc.cluster.local"));
        assert!(format!("{cache:?}").contains("namespaces: 2"), "{cache:?}");

        // With the same namespaces as the build before, only the rebuilt namespace's Services
        // are merged again; the result still equals a fresh build, also when a Service goes
        // while its namespace stays (the sleep Pod remains).
        let mut no_sleep_svc = after.clone();
        no_sleep_svc
            .resources
            .retain(|k, _| !(k.kind == "Service" && k.name == "sleep"));
        let b4 = MeshSnapshot::build_cached(&input(&after), 4, Some(&cache));
        let b5 = MeshSnapshot::build_cached(&input(&no_sleep_svc), 5, Some(&cache));
        let fresh5 = MeshSnapshot::build(&input(&no_sleep_svc), 5);
        assert!(b4.services.contains_key("sleep.foo.svc.cluster.local"));
        assert_eq!(b5.services, fresh5.services);
        assert_eq!(pods(&b5), pods(&fresh5));
        assert_eq!(
            (
                b5.reuse.namespaces_built,
                b5.reuse.services_built,
                b5.reuse.services_reused
            ),
            (1, 0, 1),
            "{:?}",
            b5.reuse
        );
        // And back: the Service returns.
        let b6 = MeshSnapshot::build_cached(&input(&after), 6, Some(&cache));
        assert_eq!(b6.services, fresh.services);
        assert_eq!(pods(&b6), pods(&fresh));
    }

    #[test]
    fn endpoints_with_the_same_ports_share_one_port_map() {
        let second = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: httpbin-2, namespace: bar, labels: {app: httpbin}}\nspec: {serviceAccountName: httpbin}\nstatus: {podIP: 10.10.0.7}\n";
        // A second service of the namespace with the same ports, and a third with others.
        let twin = "---\napiVersion: v1\nkind: Service\nmetadata: {name: twin, namespace: bar}\nspec: {ports: [{name: http, port: 8000, targetPort: 80}], selector: {app: twin}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: twin-0, namespace: bar, labels: {app: twin}}\nstatus: {podIP: 10.10.0.8}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: bar}\nspec: {ports: [{name: http, port: 8000}], selector: {app: twin}}\n";
        let input = SnapshotInput {
            local_cluster: "cluster2".into(),
            local_network: "network2".into(),
            clusters: vec![Arc::new(cluster(
                "cluster2",
                &format!("{HTTPBIN}{second}{twin}"),
            ))],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        let eps = &snap.services["httpbin.bar.svc.cluster.local"].endpoints;
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].origin.ports["http"], 80);
        assert!(Arc::ptr_eq(&eps[0].origin.ports, &eps[1].origin.ports));
        let twin = &snap.services["twin.bar.svc.cluster.local"].endpoints[0];
        assert!(
            Arc::ptr_eq(&eps[0].origin.ports, &twin.origin.ports),
            "same ports, one map"
        );
        let other = &snap.services["other.bar.svc.cluster.local"].endpoints[0];
        assert_eq!(other.origin.ports["http"], 8000);
        // Labels are the parsed Pod's own map, not a copy.
        let pod_labels = input.clusters[0]
            .resources
            .values()
            .find_map(|r| match &r.object {
                Object::Pod(p) if p.status.pod_ip() == eps[0].address.ip() => {
                    Some(p.metadata.labels.clone())
                }
                _ => None,
            })
            .expect("the endpoint's pod");
        assert!(Arc::ptr_eq(&eps[0].origin.labels, &pod_labels));
    }

    #[test]
    fn a_service_of_other_clusters_only_gets_a_vip_here_and_a_local_one_keeps_its_own() {
        let svc = |name: &str, ns: &str, cluster_ip: &str| {
            format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{clusterIP: {cluster_ip}, ports: [{{name: http, port: 80}}], selector: {{app: {name}}}}}\n")
        };
        let remote = format!(
            "{}{}{}",
            svc("foo", "ns1", "10.96.0.20"),
            svc("web", "ns1", "None"),
            svc("bar", "ns2", "10.96.0.30")
        );
        let input = SnapshotInput {
            local_cluster: "cluster2".into(),
            local_network: "network2".into(),
            clusters: vec![
                Arc::new(cluster("cluster1", &remote)),
                Arc::new(cluster("cluster2", &svc("bar", "ns2", "10.96.0.40"))),
            ],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        let foo = &snap.services["foo.ns1.svc.cluster.local"];
        let vip: std::net::Ipv4Addr = foo.vip.as_deref().expect("a VIP").parse().expect("IPv4");
        let range = &input.vip_range;
        let mask = u32::MAX << (32 - range.prefix);
        assert_eq!(
            u32::from(vip) & mask,
            u32::from(range.base),
            "{vip} is from the mesh's range, not cluster1's ClusterIP"
        );
        assert!(foo.vip_allocated);
        let web = &snap.services["web.ns1.svc.cluster.local"];
        assert_eq!(web.vip, None, "a headless Service stays headless");
        assert!(!web.vip_allocated);
        let bar = &snap.services["bar.ns2.svc.cluster.local"];
        assert_eq!(
            bar.vip.as_deref(),
            Some("10.96.0.40"),
            "the local ClusterIP"
        );
        assert!(!bar.vip_allocated);
        // The same build again gives the same VIP.
        let again = MeshSnapshot::build(&input, 2);
        assert_eq!(again.services["foo.ns1.svc.cluster.local"].vip, foo.vip);
    }

    #[test]
    fn service_entry_endpoints_alike_share_one_origin() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: bar}\nspec:\n  hosts: [db.example]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{name: tcp, number: 5432, protocol: TCP}]\n  endpoints:\n  - address: 10.1.0.1\n  - address: 10.1.0.2\n  - address: 10.1.0.3\n    labels: {version: v2}\n  - address: 10.1.0.4\n    ports: {tcp: 6432}\n  - address: 10.1.0.5\n    weight: 3\n  - address: 10.1.0.6\n    weight: 3\n  - address: 10.1.0.7\n    weight: 0\n";
        let input = SnapshotInput {
            local_cluster: "c1".into(),
            local_network: "n1".into(),
            clusters: vec![Arc::new(cluster("c1", yaml))],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        let eps = &snap.services["db.example"].endpoints;
        assert_eq!(eps.len(), 7);
        let at = |ip: &str| {
            eps.iter()
                .find(|e| e.address == Address::parse(ip))
                .expect("endpoint")
        };
        assert!(Arc::ptr_eq(&at("10.1.0.1").origin, &at("10.1.0.2").origin));
        assert!(!Arc::ptr_eq(&at("10.1.0.1").origin, &at("10.1.0.3").origin));
        assert_eq!(
            at("10.1.0.3")
                .origin
                .labels
                .get("version")
                .map(String::as_str),
            Some("v2")
        );
        assert_eq!(at("10.1.0.4").origin.ports["tcp"], 6432);
        assert_eq!(at("10.1.0.1").origin.ports["tcp"], 5432);
        // The weight is the origin's: endpoints of another weight have another one; no
        // weight (or 0) is 1.
        let weights: Vec<u32> = eps.iter().map(|e| e.weight()).collect();
        assert_eq!(weights, [1, 1, 1, 1, 3, 3, 1]);
        assert!(Arc::ptr_eq(&at("10.1.0.5").origin, &at("10.1.0.6").origin));
        assert!(!Arc::ptr_eq(&at("10.1.0.1").origin, &at("10.1.0.5").origin));
        assert!(Arc::ptr_eq(&at("10.1.0.1").origin, &at("10.1.0.7").origin));
    }

    #[test]
    fn kubernetes_service_endpoints_carry_identity_network_and_target_port() {
        let input = SnapshotInput {
            local_cluster: "cluster2".into(),
            local_network: "network2".into(),
            clusters: vec![Arc::new(cluster("cluster2", HTTPBIN))],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        let svc = &snap.services["httpbin.bar.svc.cluster.local"];
        assert_eq!(svc.endpoints.len(), 1);
        let ep = &svc.endpoints[0];
        assert_eq!(ep.origin.ports["http"], 80);
        assert_eq!(&*ep.origin.network, "network2");
        assert_eq!(
            ep.origin.identity.as_deref(),
            Some("spiffe://cluster.local/ns/bar/sa/httpbin")
        );
    }

    /// A VM (WorkloadEntry) and a pod in namespace `vm`, a ServiceEntry selecting `app: db`
    /// there, a Kubernetes Service selecting the same, and a WorkloadEntry elsewhere.
    const VM: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: db-vm, namespace: vm}\nspec:\n  address: 192.168.100.10\n  labels: {app: db, version: vm}\n  serviceAccount: db\n  network: network1\n  locality: r1/z1\n  ports: {tcp: 5433}\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: plain-vm, namespace: vm}\nspec:\n  address: 192.168.100.11\n  labels: {app: db}\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: other-ns, namespace: foo}\nspec:\n  address: 192.168.100.12\n  labels: {app: db}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-0, namespace: vm, labels: {app: db}}\nspec: {serviceAccountName: db}\nstatus: {podIP: 10.10.0.40}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-1, namespace: vm, labels: {app: db}}\nstatus: {podIP: 10.10.0.41, conditions: [{type: Ready, status: 'False'}]}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: vm}\nspec:\n  hosts: [db.vm.example]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{name: tcp, number: 5432, protocol: TCP}, {name: http, number: 8080, protocol: HTTP, targetPort: 80}]\n  workloadSelector: {labels: {app: db}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: db-k8s, namespace: vm}\nspec:\n  ports: [{name: tcp, port: 5432, targetPort: 6000}, {name: http, port: 8080}]\n  selector: {app: db}\n";

    #[test]
    fn workload_entries_are_endpoints_of_what_selects_them_in_their_namespace() {
        let input = SnapshotInput {
            local_cluster: "cluster1".into(),
            local_network: "network1".into(),
            clusters: vec![Arc::new(cluster("cluster1", VM))],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
        let se = &snap.services["db.vm.example"];
        let by_addr = |svc: &Service| -> BTreeMap<String, Endpoint> {
            svc.endpoints
                .iter()
                .map(|e| (e.address.to_string(), e.clone()))
                .collect()
        };
        let eps = by_addr(se);
        // Both entries of `vm` and its ready pod; not the entry of `foo`, not a pod that is
        // not ready.
        assert_eq!(
            eps.keys().map(String::as_str).collect::<Vec<_>>(),
            ["10.10.0.40", "192.168.100.10", "192.168.100.11"]
        );
        let vm = &eps["192.168.100.10"].origin;
        assert_eq!(vm.ports["tcp"], 5433, "the entry's own port wins");
        assert_eq!(vm.ports["http"], 80, "else the targetPort");
        assert_eq!(
            vm.identity.as_deref(),
            Some("spiffe://cluster.local/ns/vm/sa/db")
        );
        assert!(vm.mtls_ready, "a service account means a sidecar");
        assert_eq!(
            (&*vm.cluster, &*vm.network, &*vm.locality),
            ("cluster1", "network1", "r1/z1")
        );
        assert_eq!(vm.labels.get("version").map(String::as_str), Some("vm"));
        let plain = &eps["192.168.100.11"].origin;
        assert!(
            !plain.mtls_ready && plain.identity.is_none(),
            "no account, no tlsMode label: plaintext, as Istio"
        );
        assert_eq!(plain.ports["tcp"], 5432);
        let pod = &eps["10.10.0.40"].origin;
        assert_eq!(
            pod.identity.as_deref(),
            Some("spiffe://cluster.local/ns/vm/sa/db")
        );
        assert_eq!((&*pod.cluster, pod.ports["http"]), ("cluster1", 80));

        // The Kubernetes Service gets its pod and both entries of its namespace.
        let k8s = by_addr(&snap.services["db-k8s.vm.svc.cluster.local"]);
        assert_eq!(
            k8s.keys().map(String::as_str).collect::<Vec<_>>(),
            ["10.10.0.40", "192.168.100.10", "192.168.100.11"]
        );
        let vm = &k8s["192.168.100.10"].origin;
        assert_eq!(
            (vm.ports["tcp"], vm.ports["http"]),
            (5433, 8080),
            "own port, else the service port"
        );
        assert_eq!(
            k8s["192.168.100.11"].origin.ports["tcp"], 6000,
            "else the targetPort"
        );

        // The VM's proxy is found by its entry: labels, account, network and locality.
        let id =
            crate::proxy::NodeId::parse("sidecar~192.168.100.10~db-vm.vm~vm.svc.cluster.local")
                .expect("node id");
        let proxy = snap.proxy(
            &id,
            &isthmus_api::NodeMetadata {
                cluster_id: Some("cluster1".into()),
                service_account: Some("claimed".into()),
                ..Default::default()
            },
        );
        assert_eq!(proxy.labels.get("version").map(String::as_str), Some("vm"));
        assert_eq!(
            (&*proxy.service_account, &*proxy.network, &*proxy.locality),
            ("db", "network1", "r1/z1")
        );
    }

    #[test]
    fn a_selector_picks_nothing_outside_its_labels_and_an_entry_change_is_seen() {
        let yaml = VM.replace(
            "workloadSelector: {labels: {app: db}}",
            "workloadSelector: {labels: {app: db, version: vm}}",
        );
        let input = SnapshotInput {
            local_cluster: "cluster1".into(),
            clusters: vec![Arc::new(cluster("cluster1", &yaml))],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        let eps: Vec<String> = snap.services["db.vm.example"]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(eps, ["192.168.100.10"]);
        // The entry moves: the endpoint moves with it.
        let moved = yaml.replace("address: 192.168.100.10", "address: 192.168.100.20");
        let input = SnapshotInput {
            local_cluster: "cluster1".into(),
            clusters: vec![Arc::new(cluster("cluster1", &moved))],
            ..Default::default()
        };
        let next = MeshSnapshot::build(&input, 2);
        let eps: Vec<String> = next.services["db.vm.example"]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(eps, ["192.168.100.20"]);
    }

    #[test]
    fn selectorless_services_read_endpoints_and_user_slices_not_the_controllers() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: bar}\nspec:\n  ports: [{name: tcp, port: 5432}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: db-1, namespace: bar, labels: {kubernetes.io/service-name: db}}\naddressType: IPv4\nports: [{name: tcp, port: 6432}]\nendpoints:\n- addresses: [10.1.0.1]\n- addresses: [10.1.0.2]\n  conditions: {ready: false}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: db-2, namespace: bar, labels: {kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}}\naddressType: IPv4\nports: [{name: tcp, port: 6432}]\nendpoints:\n- addresses: [10.1.0.3]\n";
        let input = SnapshotInput {
            local_cluster: "c1".into(),
            local_network: "n1".into(),
            clusters: vec![Arc::new(cluster("c1", yaml))],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        let svc = &snap.services["db.bar.svc.cluster.local"];
        let got: Vec<(String, u32)> = svc
            .endpoints
            .iter()
            .map(|e| (e.address.to_string(), e.origin.ports["tcp"]))
            .collect();
        assert_eq!(got, [("10.1.0.1".to_string(), 6432)]);
    }

    #[test]
    fn duplicate_vip_rejects_the_second_entry_whole() {
        let se = |name: &str, host: &str| {
            format!("apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: foo}}\nspec:\n  hosts: [{host}]\n  addresses: [127.255.0.2]\n  location: MESH_INTERNAL\n  resolution: DNS\n  ports: [{{name: http1, number: 8000, protocol: http}}]\n  endpoints:\n  - address: 198.18.0.2\n    ports: {{http1: 15443}}\n")
        };
        let yaml = format!(
            "{}---\n{}",
            se("a", "httpbin.bar.global"),
            se("b", "other.bar.global")
        );
        let input = SnapshotInput {
            local_cluster: "cluster1".into(),
            local_network: "network1".into(),
            clusters: vec![Arc::new(cluster("cluster1", &yaml))],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        assert!(snap.services.contains_key("httpbin.bar.global"));
        assert!(!snap.services.contains_key("other.bar.global"));
        assert_eq!(snap.diagnostics.len(), 1);
        let d = snap.diagnostics[0].to_string();
        assert!(d.contains("ServiceEntry/foo/b: spec.addresses[0]: address 127.255.0.2 is already the VIP of httpbin.bar.global"), "{d}");
    }

    #[test]
    fn mesh_networks_from_registry_and_cidr() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  meshNetworks: |\n    networks:\n      network2:\n        endpoints:\n        - fromRegistry: remote\n        gateways:\n        - address: 198.18.0.9\n          port: 15443\n      network3:\n        endpoints:\n        - fromCidr: 10.30.0.0/16\n";
        let remote_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nstatus: {podIP: 10.10.0.7}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: q, namespace: x, labels: {topology.istio.io/network: net9}}\nstatus: {podIP: 10.10.0.8}\n";
        let third = "apiVersion: v1\nkind: Pod\nmetadata: {name: r, namespace: x}\nstatus: {podIP: 10.30.1.1}\n";
        let input = SnapshotInput {
            local_cluster: "local".into(),
            local_network: "network1".into(),
            clusters: vec![
                Arc::new(cluster("local", cm)),
                Arc::new(cluster("remote", remote_pod)),
                Arc::new(cluster("third", third)),
            ],
            ..Default::default()
        };
        let snap = MeshSnapshot::build(&input, 1);
        assert_eq!(
            &*snap.pod("remote", "x", "p").expect("pod").network,
            "network2"
        );
        assert_eq!(&*snap.pod("remote", "x", "q").expect("pod").network, "net9");
        assert_eq!(
            &*snap.pod("third", "x", "r").expect("pod").network,
            "network3"
        );
        assert_eq!(snap.network_gateways["network2"][0].address, "198.18.0.9");
    }
}
