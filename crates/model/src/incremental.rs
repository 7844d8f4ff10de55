//! The part of a snapshot build that grows with the number of pods (pod records and the
//! endpoints that selector-based Services get from them) is computed per (cluster, namespace)
//! and kept in a [`BuildCache`]: while a namespace's Pods and Services are the same objects
//! (the registry keeps unchanged objects as the same `Arc`) and the context they were
//! computed in is unchanged, the next build reuses them, and a Service whose per-cluster parts
//! are all reused is reused whole. A one-pod change rebuilds one namespace of one cluster and
//! the Services in it, not the mesh.
//!
//! Reuse compares strong references (`Arc::ptr_eq` on values the cache itself holds), never
//! bare addresses, so a freed and reallocated object cannot be mistaken for the old one.

use crate::automation::ExportDefault;
use crate::host::CLUSTER_DOMAIN;
use crate::labels::INJECT_ANNOTATION;
use crate::objects::{patch_objects, sort_objects, ClusterObjects};
use crate::pod::PodInfo;
use crate::service::{Endpoint, EndpointOrigin, Endpoints, Port, Service, ServiceOrigin};
use isthmus_api::enums::{Location, Protocol, Resolution};
use isthmus_api::kube::IntOrString;
use isthmus_api::shared::Interner;
use isthmus_api::{Object, Resource};
use isthmus_registry::ClusterConfig;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};

/// What a namespace's results depend on besides its own objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceContext {
    /// The cluster.
    pub cluster: String,
    /// The namespace.
    pub namespace: String,
    /// Whether the cluster is the control plane's own (its Services' ClusterIPs and export
    /// settings count).
    pub is_local: bool,
    /// The mesh's trust domain (endpoint identities).
    pub trust_domain: String,
    /// Export default of the local cluster's Services.
    pub export_default: ExportDefault,
    /// The namespace's `topology.istio.io/network` label.
    pub namespace_network: Option<String>,
    /// The cluster's network (meshNetworks `fromRegistry` or the command line).
    pub cluster_network: String,
    /// meshNetworks `fromCidr` rules, in order: (CIDR, network).
    pub cidrs: Vec<(String, String)>,
    /// The cluster's Nodes' localities (its pods' unless they carry their own).
    pub node_localities: Arc<BTreeMap<String, Arc<str>>>,
}

/// One cluster's view of one Service: its definition there and the endpoints its selector
/// picks among that namespace's pods.
///
/// The definition (host, ports, headless, `exportTo`) is what every cluster that has the
/// Service repeats: it is shared with another cluster's equal one, so that a remote cluster
/// adds its endpoints and little else. What differs by cluster is beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFragment {
    /// Whether it comes from the local cluster.
    pub local: bool,
    /// The Service as this cluster defines it, without endpoints, VIP or export setting
    /// (those of an empty Service).
    pub definition: Arc<Service>,
    /// This cluster's endpoints, one run in address order ([`Endpoints::run`]): the merged
    /// Service shares it. One pointer, where an [`Endpoints`] would be a list of runs of its
    /// own, with an allocation, for the one run a fragment ever has.
    pub endpoints: Arc<[Endpoint]>,
    /// The local cluster's ClusterIP (none elsewhere).
    pub vip: Option<String>,
    /// A remote cluster has a ClusterIP for it: the mesh allocates one, if no local one.
    pub vip_allocated: bool,
    /// Reachable from other clusters (the local cluster's export setting; true elsewhere).
    pub exported: bool,
}

/// The results for one (cluster, namespace).
#[derive(Debug, Default)]
pub struct NamespaceBuild {
    /// Its Services.
    pub services: Vec<Arc<ServiceFragment>>,
}

struct GroupEntry {
    context: NamespaceContext,
    /// The namespace's objects, shared with the cluster's sorted objects.
    objects: Arc<Vec<Arc<Resource>>>,
    built: Arc<NamespaceBuild>,
}

struct MergedEntry {
    fragments: Vec<Arc<ServiceFragment>>,
    merged: Arc<Service>,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<(String, String), GroupEntry>,
    merged: HashMap<String, MergedEntry>,
    /// Each cluster's objects sorted by namespace, for the registry version they came from
    /// (a weak reference: it keeps that version's address from being reused but lets the
    /// registry move on without copying).
    clusters: HashMap<String, (Weak<ClusterConfig>, u64, Arc<ClusterObjects>)>,
    /// The last build's output, with the groups it came from in order.
    last: Option<LastBuild>,
}

/// What [`pods_and_services`] returned last time.
struct LastBuild {
    groups: Vec<(String, String)>,
    services: BTreeMap<String, Arc<Service>>,
}

/// `c`'s Pods and Services by namespace: from the cache while the registry still serves
/// the same version, sorted afresh otherwise.
pub fn cluster_objects(cache: Option<&BuildCache>, c: &Arc<ClusterConfig>) -> Arc<ClusterObjects> {
    let Some(mut g) = cache.and_then(|c| c.inner.lock().ok()) else {
        return Arc::new(sort_objects(c));
    };
    let mut patched = None;
    if let Some((weak, revision, objects)) = g.clusters.get(&c.cluster) {
        if weak.upgrade().is_some_and(|w| Arc::ptr_eq(&w, c)) {
            return objects.clone();
        }
        patched = c
            .last_change
            .as_ref()
            .filter(|ch| ch.from_revision == *revision && c.revision != *revision)
            .and_then(|ch| patch_objects(objects, c, ch));
    }
    let objects = Arc::new(patched.unwrap_or_else(|| sort_objects(c)));
    g.clusters.insert(
        c.cluster.clone(),
        (Arc::downgrade(c), c.revision, objects.clone()),
    );
    objects
}

/// Results of earlier builds, kept by whoever rebuilds (the control plane); cheap to share.
#[derive(Default)]
pub struct BuildCache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for BuildCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (g, m) = self
            .inner
            .lock()
            .map(|i| (i.groups.len(), i.merged.len()))
            .unwrap_or_default();
        write!(f, "BuildCache {{ namespaces: {g}, services: {m} }}")
    }
}

fn same(a: &Arc<Vec<Arc<Resource>>>, b: &Arc<Vec<Arc<Resource>>>) -> bool {
    if Arc::ptr_eq(a, b) {
        return true;
    }
    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| Arc::ptr_eq(x, y))
}

fn same_fragments(a: &[Arc<ServiceFragment>], b: &[Arc<ServiceFragment>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

/// Reuse statistics of one build.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Namespaces computed afresh.
    pub namespaces_built: usize,
    /// Namespaces reused.
    pub namespaces_reused: usize,
    /// Services merged afresh.
    pub services_built: usize,
    /// Services reused.
    pub services_reused: usize,
}

/// Builds (or reuses) every namespace's results and merges the Services across clusters.
/// `groups` lists, per cluster in input order, its namespaces with their Pods and Services.
pub fn pods_and_services(
    cache: Option<&BuildCache>,
    groups: Vec<(NamespaceContext, Arc<Vec<Arc<Resource>>>)>,
) -> (BTreeMap<String, Arc<Service>>, Reuse) {
    let mut guard = cache.and_then(|c| c.inner.lock().ok());
    let mut reuse = Reuse::default();
    let mut built_groups: Vec<((String, String), Arc<NamespaceBuild>)> = Vec::new();
    // (host, namespace) of every Service in a namespace built afresh, before and after.
    let mut dirty: BTreeSet<(String, String)> = BTreeSet::new();
    for (ctx, objects) in groups {
        let key = (ctx.cluster.clone(), ctx.namespace.clone());
        let cached = guard.as_ref().and_then(|g| {
            g.groups
                .get(&key)
                .filter(|e| e.context == ctx && same(&e.objects, &objects))
                .map(|e| e.built.clone())
        });
        let built = match cached {
            Some(b) => {
                reuse.namespaces_reused += 1;
                b
            }
            None => {
                reuse.namespaces_built += 1;
                // Services of the namespace that come out the same keep their old object
                // (so that their merged Service is reused too), and the others share the
                // definition of the other clusters' fragments, or of their own last build
                // (only endpoints, VIP or export changed): as each is built, so that what
                // is not kept is freed at once and its room taken by the next.
                let old = guard.as_ref().and_then(|g| g.groups.get(&key));
                if let Some(old) = old {
                    for f in &old.built.services {
                        dirty.insert((
                            f.definition.hostname.clone(),
                            f.definition.namespace.clone(),
                        ));
                    }
                }
                let sharing = Sharing::new(
                    old.map(|o| &*o.built),
                    built_groups
                        .iter()
                        .filter(|(k, _)| k.1 == key.1)
                        .flat_map(|(_, g)| g.services.iter()),
                );
                let b = namespace_build(&ctx, &objects, &sharing);
                for f in &b.services {
                    dirty.insert((
                        f.definition.hostname.clone(),
                        f.definition.namespace.clone(),
                    ));
                }
                let b = Arc::new(b);
                if let Some(g) = guard.as_mut() {
                    g.groups.insert(
                        key.clone(),
                        GroupEntry {
                            context: ctx.clone(),
                            objects: objects.clone(),
                            built: b.clone(),
                        },
                    );
                }
                b
            }
        };
        built_groups.push((key, built));
    }
    let keys: Vec<(String, String)> = built_groups.iter().map(|(k, _)| k.clone()).collect();
    let last = guard
        .as_mut()
        .and_then(|g| g.last.take())
        .filter(|l| l.groups == keys);
    let services = match last {
        // The same namespaces as last time: only the Services of the rebuilt ones are merged
        // again (walking every Service of the mesh cost more than the change itself).
        Some(last) => {
            let mut services = last.services;
            for (host, namespace) in &dirty {
                let frags: Vec<Arc<ServiceFragment>> = built_groups
                    .iter()
                    .filter(|(k, _)| &k.1 == namespace)
                    .flat_map(|(_, b)| b.services.iter())
                    .filter(|f| &f.definition.hostname == host)
                    .cloned()
                    .collect();
                if frags.is_empty() {
                    services.remove(host);
                    if let Some(g) = guard.as_mut() {
                        g.merged.remove(host);
                    }
                    continue;
                }
                let merged = merged_service(guard.as_deref_mut(), &mut reuse, host, frags);
                services.insert(host.clone(), merged);
            }
            reuse.services_reused = services.len().saturating_sub(reuse.services_built);
            services
        }
        None => {
            let mut fragments: BTreeMap<String, Vec<Arc<ServiceFragment>>> = BTreeMap::new();
            for (_, built) in &built_groups {
                for f in &built.services {
                    fragments
                        .entry(f.definition.hostname.clone())
                        .or_default()
                        .push(f.clone());
                }
            }
            let mut services = BTreeMap::new();
            for (host, frags) in fragments {
                let merged = merged_service(guard.as_deref_mut(), &mut reuse, &host, frags);
                services.insert(host, merged);
            }
            if let Some(g) = guard.as_mut() {
                // What is gone from the registries goes from the cache.
                let seen: HashSet<&(String, String)> = keys.iter().collect();
                g.groups.retain(|k, _| seen.contains(k));
                g.merged.retain(|h, _| services.contains_key(h));
            }
            services
        }
    };
    if let Some(g) = guard.as_mut() {
        g.clusters.retain(|_, (weak, _, _)| weak.strong_count() > 0);
        g.last = Some(LastBuild {
            groups: keys,
            services: services.clone(),
        });
    }
    (services, reuse)
}

/// The merged Service of `host`: the cached one while its fragments are the same objects,
/// merged afresh (and cached) otherwise.
fn merged_service(
    g: Option<&mut Inner>,
    reuse: &mut Reuse,
    host: &str,
    frags: Vec<Arc<ServiceFragment>>,
) -> Arc<Service> {
    let Some(g) = g else {
        reuse.services_built += 1;
        return Arc::new(merge(&frags));
    };
    if let Some(e) = g
        .merged
        .get(host)
        .filter(|e| same_fragments(&e.fragments, &frags))
    {
        reuse.services_reused += 1;
        return e.merged.clone();
    }
    reuse.services_built += 1;
    let m = Arc::new(merge(&frags));
    g.merged.insert(
        host.to_string(),
        MergedEntry {
            fragments: frags,
            merged: m.clone(),
        },
    );
    m
}

/// One Service from its clusters' fragments: the definition of the first cluster that has
/// it, the local cluster's ClusterIP and export setting, every cluster's endpoints, ordered.
fn merge(frags: &[Arc<ServiceFragment>]) -> Service {
    let mut out = frags
        .first()
        .map(|f| (*f.definition).clone())
        .unwrap_or_else(|| empty_service(String::new(), String::new(), String::new()));
    // Each fragment is one cluster's, its endpoints one run in address order.
    out.endpoints = Endpoints::from_runs(frags.iter().map(|f| f.endpoints.clone()).collect());
    out.exported = true;
    out.vip = None;
    // Only another cluster has it: a VIP is allocated here (see the fragments' build).
    out.vip_allocated = frags.iter().any(|f| f.vip_allocated);
    if let Some(local) = frags.iter().find(|f| f.local) {
        out.exported = local.exported;
        out.vip = local.vip.clone();
        out.vip_allocated = false;
    }
    out
}

/// What a namespace's build may share instead of keeping a copy: the namespace's last build
/// (a fragment that comes out the same keeps its old object) and the definitions of the
/// namespace's Services in other clusters' fragments, then in that last build (a Service
/// defined alike in every cluster is kept once).
#[derive(Default)]
pub struct Sharing<'a> {
    /// The last build's fragments, by host (one per host in a namespace).
    previous: HashMap<&'a str, &'a Arc<ServiceFragment>>,
    definitions: HashMap<&'a str, Vec<&'a Arc<Service>>>,
}

impl<'a> Sharing<'a> {
    /// Shares with `previous` (the namespace's last build) and the fragments of `others`.
    pub fn new(
        previous: Option<&'a NamespaceBuild>,
        others: impl Iterator<Item = &'a Arc<ServiceFragment>>,
    ) -> Self {
        let previous_fragments = || previous.into_iter().flat_map(|p| p.services.iter());
        let mut definitions: HashMap<&str, Vec<&Arc<Service>>> = HashMap::new();
        for f in others.chain(previous_fragments()) {
            definitions
                .entry(f.definition.hostname.as_str())
                .or_default()
                .push(&f.definition);
        }
        Sharing {
            previous: previous_fragments()
                .map(|f| (f.definition.hostname.as_str(), f))
                .collect(),
            definitions,
        }
    }

    /// `svc`, or the first equal definition known.
    fn definition(&self, svc: Service) -> Arc<Service> {
        match self
            .definitions
            .get(svc.hostname.as_str())
            .and_then(|seen| seen.iter().find(|d| ****d == svc))
        {
            Some(d) => Arc::clone(d),
            None => Arc::new(svc),
        }
    }

    /// `fragment`, or the equal one of the last build.
    fn fragment(&self, fragment: ServiceFragment) -> Arc<ServiceFragment> {
        match self
            .previous
            .get(fragment.definition.hostname.as_str())
            .filter(|p| ****p == fragment)
        {
            Some(p) => Arc::clone(p),
            None => Arc::new(fragment),
        }
    }
}

fn empty_service(hostname: String, namespace: String, name: String) -> Service {
    Service {
        hostname,
        namespace,
        name,
        origin: ServiceOrigin::Kubernetes,
        ports: Vec::new(),
        vip: None,
        vip_allocated: false,
        exported: true,
        resolution: Resolution::Static,
        location: Location::MeshInternal,
        endpoints: Endpoints::new(),
        subject_alt_names: Vec::new(),
        export_to: Vec::new(),
        headless: false,
    }
}

/// Computes one namespace's pods and Services from its objects.
///
/// What is not kept is freed as soon as it is built (a fragment or definition equal to one
/// `sharing` knows, a port map seen before), so that its room is taken by what follows
/// instead of staying as holes between the objects kept.
pub fn namespace_build(
    ctx: &NamespaceContext,
    objects: &[Arc<Resource>],
    sharing: &Sharing,
) -> NamespaceBuild {
    // The namespace's pods with an IP, in name order, and the strings they repeat shared.
    let pod_count = objects
        .iter()
        .filter(|r| matches!(r.object, Object::Pod(_)))
        .count();
    let mut pods: Vec<(PodInfo, &isthmus_api::kube::Pod)> = Vec::with_capacity(pod_count);
    let mut shared: Interner<str> = Interner::default();
    // The origin the endpoints with the same network, locality, identity and mTLS share.
    let mut origins: HashMap<OriginKey, Arc<EndpointOrigin>> = HashMap::new();
    let mut port_maps: Interner<BTreeMap<String, u32>> = Interner::default();
    let mut identities: HashMap<Arc<str>, Arc<str>> = HashMap::new();
    // The origins share these strings with the build's pods, and the cluster's name.
    let cluster: Arc<str> = ctx.cluster.as_str().into();
    let rules = crate::pod::NetworkRules {
        namespace_network: ctx.namespace_network.as_deref(),
        cluster_network: &ctx.cluster_network,
        cidrs: &ctx.cidrs,
    };
    for r in objects {
        let Object::Pod(p) = &r.object else { continue };
        // A pod that is not ready (or has finished) is no endpoint, as in an EndpointSlice.
        let Some(ip) = p.status.pod_ip().filter(|_| p.status.is_serving()) else {
            continue;
        };
        let network = shared.get(crate::pod::network(p, ip, &rules));
        let locality = shared.get(&crate::pod::locality(p, &ctx.node_localities));
        let service_account = shared.get(crate::pod::service_account(p));
        let identity = identities
            .entry(service_account.clone())
            .or_insert_with(|| {
                crate::pod::spiffe(&ctx.trust_domain, &ctx.namespace, &service_account).into()
            })
            .clone();
        let info = PodInfo {
            ip,
            labels: p.metadata.labels.clone(),
            service_account,
            identity,
            network,
            locality,
        };
        pods.push((info, p));
    }
    // The pods by label map (alike pods share one, as the reader interns them), so that a
    // selector is matched once per distinct map rather than once per pod.
    let mut labelled: Vec<(&Arc<isthmus_api::Labels>, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<ById<isthmus_api::Labels>, usize> = HashMap::new();
    for (i, (info, _)) in pods.iter().enumerate() {
        let g = *group_of
            .entry(ById(info.labels.clone()))
            .or_insert_with(|| {
                labelled.push((&info.labels, Vec::new()));
                labelled.len() - 1
            });
        labelled[g].1.push(i);
    }
    drop(group_of);
    let mut services = Vec::with_capacity(objects.len() - pod_count);
    // One Service's endpoints as they are picked, and the pods it selects (in name order),
    // their room reused by the next.
    let mut picked: Vec<Endpoint> = Vec::new();
    let mut selected: Vec<usize> = Vec::new();
    for r in objects {
        let Object::Service(s) = &r.object else {
            continue;
        };
        let hostname = format!(
            "{}.{}.{CLUSTER_DOMAIN}",
            s.metadata.name, s.metadata.namespace
        );
        let mut svc = empty_service(
            hostname,
            s.metadata.namespace.to_string(),
            s.metadata.name.to_string(),
        );
        svc.ports = s
            .spec
            .ports
            .iter()
            .filter(|p| p.proxied())
            .map(|p| {
                let declared = p
                    .app_protocol
                    .as_deref()
                    .and_then(Protocol::parse)
                    .or_else(|| Protocol::declared_by_port_name(&p.name));
                Port {
                    name: p.name.to_string(),
                    number: p.port,
                    protocol: declared.unwrap_or(Protocol::Tcp),
                    sniffed: declared.is_none(),
                }
            })
            .collect();
        svc.headless = s.spec.cluster_ip.as_deref() == Some("None");
        svc.export_to = s
            .metadata
            .annotations
            .get(crate::automation::EXPORT_TO_ANNOTATION)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let has_cluster_ip = s
            .spec
            .cluster_ip
            .as_ref()
            .is_some_and(|ip| ip.parse::<IpAddr>().is_ok());
        let (exported, vip, vip_allocated) = if ctx.is_local {
            let vip = s.spec.cluster_ip.clone().filter(|_| has_cluster_ip);
            let exported = crate::automation::exported(s, ctx.export_default);
            (exported, vip, false)
        } else {
            // Another cluster's ClusterIP means nothing here (and may be taken by a local
            // Service): a Service with one there, and none here, is given a VIP from the
            // mesh's range when the snapshot is built, as a ServiceEntry without addresses
            // is, so that the pods here resolve its name (headless ones keep none).
            (true, None, has_cluster_ip)
        };
        let mut endpoints = no_endpoints();
        if !s.spec.selector.is_empty() {
            // The ports every pod maps alike (no port targets a container port by name),
            // made once for the Service, at its first pod.
            let by_name = s
                .spec
                .ports
                .iter()
                .any(|p| matches!(p.target_port, Some(IntOrString::String(_))));
            let mut alike: Option<Arc<BTreeMap<String, u32>>> = None;
            selected.clear();
            for (labels, members) in &labelled {
                if labels.matches(&s.spec.selector) {
                    selected.extend_from_slice(members);
                }
            }
            selected.sort_unstable();
            for (info, pod) in selected.iter().map(|i| &pods[*i]) {
                let ports = match &alike {
                    Some(ports) => ports.clone(),
                    None => {
                        // Services often have the same ports: one map for each distinct one
                        // in the namespace.
                        let ports = port_maps.intern(pod_ports(s, pod));
                        if !by_name {
                            alike = Some(ports.clone());
                        }
                        ports
                    }
                };
                let mtls_ready = pod
                    .metadata
                    .annotations
                    .get(INJECT_ANNOTATION)
                    .map(String::as_str)
                    != Some("false");
                let origin = origins
                    .entry(OriginKey {
                        network: ById(info.network.clone()),
                        locality: ById(info.locality.clone()),
                        identity: ById(info.identity.clone()),
                        mtls_ready,
                        labels: ById(info.labels.clone()),
                        ports: ById(ports),
                    })
                    .or_insert_with_key(|k| {
                        Arc::new(EndpointOrigin {
                            cluster: cluster.clone(),
                            network: k.network.0.clone(),
                            locality: k.locality.0.clone(),
                            identity: Some(k.identity.0.clone()),
                            mtls_ready: k.mtls_ready,
                            labels: k.labels.0.clone(),
                            ports: k.ports.0.clone(),
                            weight: 1,
                        })
                    })
                    .clone();
                picked.push(Endpoint {
                    address: info.ip.into(),
                    origin,
                });
            }
            if !picked.is_empty() {
                endpoints = Endpoints::run(&mut picked);
            }
        }
        services.push(sharing.fragment(ServiceFragment {
            local: ctx.is_local,
            definition: sharing.definition(svc),
            endpoints,
            vip,
            vip_allocated,
            exported,
        }));
    }
    NamespaceBuild { services }
}

/// How `pod` maps the ports of Service `s`: port name to the pod's port (a port that
/// targets a container port by a name the pod does not have is left out).
fn pod_ports(
    s: &isthmus_api::kube::Service,
    pod: &isthmus_api::kube::Pod,
) -> BTreeMap<String, u32> {
    s.spec
        .ports
        .iter()
        .filter_map(|p| {
            let target = match &p.target_port {
                None => Some(p.port),
                Some(IntOrString::Int(n)) => Some(*n),
                Some(IntOrString::String(name)) => pod
                    .spec
                    .containers
                    .iter()
                    .flat_map(|c| &c.ports)
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .map(|cp| cp.container_port),
            }?;
            Some((p.name.to_string(), target))
        })
        .collect()
}

/// The endpoints of a fragment that has none, shared (a Service without a selector, or
/// whose pods are elsewhere, takes no allocation for them).
fn no_endpoints() -> Arc<[Endpoint]> {
    static NONE: std::sync::LazyLock<Arc<[Endpoint]>> =
        std::sync::LazyLock::new(|| Arc::from(Vec::new()));
    NONE.clone()
}

/// What makes an endpoint's origin in a namespace build: the parts are the build's own
/// shared values (or the pod's label map), so equal parts are the same object and compare
/// by address; the key holds them, so no address is reused while it is in the map.
#[derive(PartialEq, Eq, Hash)]
struct OriginKey {
    network: ById<str>,
    locality: ById<str>,
    identity: ById<str>,
    mtls_ready: bool,
    labels: ById<isthmus_api::Labels>,
    ports: ById<BTreeMap<String, u32>>,
}

/// A shared value that hashes and compares by which object it is.
struct ById<T: ?Sized>(Arc<T>);

impl<T: ?Sized> PartialEq for ById<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T: ?Sized> Eq for ById<T> {}

impl<T: ?Sized> std::hash::Hash for ById<T> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        Arc::as_ptr(&self.0).cast::<()>().hash(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_registry::KeyChange;

    const OBJECTS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a-0, namespace: a}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: a}\nspec: {ports: [{port: 80}], selector: {app: a}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b-0, namespace: b}\nstatus: {podIP: 10.0.0.2}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {topology.istio.io/network: n2}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: ''}\n";

    fn config(yaml: &str, revision: u64) -> ClusterConfig {
        ClusterConfig {
            revision,
            ..ClusterConfig::with_resources(
                "c1",
                isthmus_api::load_str(yaml, None, "default").resources,
            )
        }
    }

    fn same_objects(a: &ClusterObjects, b: &ClusterObjects) {
        assert_eq!(a.namespace_networks, b.namespace_networks);
        assert_eq!(
            a.by_namespace.keys().collect::<Vec<_>>(),
            b.by_namespace.keys().collect::<Vec<_>>()
        );
        for (ns, objs) in &a.by_namespace {
            assert!(same(objs, &b.by_namespace[ns]), "{ns}");
        }
        assert!(same(&a.endpoints, &b.endpoints));
        assert!(same(&a.rules, &b.rules));
    }

    /// `c` with `key`'s object replaced by `yaml`'s, as the registry's `apply` makes it.
    fn changed(c: &ClusterConfig, yaml: &str, revision: u64) -> ClusterConfig {
        let mut next = c.clone();
        let mut keys = BTreeSet::new();
        for r in isthmus_api::load_str(yaml, None, "default").resources {
            keys.insert(r.key());
            next.resources.insert(r.key(), Arc::new(r));
        }
        next.last_change = Some(KeyChange {
            from_revision: c.revision,
            keys,
        });
        next.revision = revision;
        next
    }

    #[test]
    fn a_pod_change_patches_its_namespace_and_equals_a_full_sort() {
        let cache = BuildCache::default();
        let v1 = Arc::new(config(OBJECTS, 10));
        let first = cluster_objects(Some(&cache), &v1);
        same_objects(&first, &sort_objects(&v1));
        assert_eq!(
            first.by_namespace["a"].len(),
            2,
            "the Pod, then the Service"
        );

        let v2 = Arc::new(changed(
            &v1,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a-1, namespace: a}\nstatus: {podIP: 10.0.0.3}\n",
            11,
        ));
        let second = cluster_objects(Some(&cache), &v2);
        same_objects(&second, &sort_objects(&v2));
        assert_eq!(second.by_namespace["a"].len(), 3);
        // Patched: the untouched namespace and the other lists are the same vectors.
        assert!(Arc::ptr_eq(
            &first.by_namespace["b"],
            &second.by_namespace["b"]
        ));
        assert!(Arc::ptr_eq(&first.rules, &second.rules));

        // A change of another kind sorts everything again (and still equals a full sort).
        let v3 = Arc::new(changed(
            &v2,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {topology.istio.io/network: n3}}\n",
            12,
        ));
        let third = cluster_objects(Some(&cache), &v3);
        same_objects(&third, &sort_objects(&v3));
        assert_eq!(
            third.namespace_networks.get("a").map(String::as_str),
            Some("n3")
        );
        assert!(!Arc::ptr_eq(
            &second.by_namespace["b"],
            &third.by_namespace["b"]
        ));

        // A change made from a revision the cache does not hold is not patched from it.
        let stale = Arc::new(changed(&v1, "apiVersion: v1\nkind: Pod\nmetadata: {name: b-1, namespace: b}\nstatus: {podIP: 10.0.0.4}\n", 13));
        let fourth = cluster_objects(Some(&cache), &stale);
        same_objects(&fourth, &sort_objects(&stale));
    }

    #[test]
    fn a_namespace_endpoints_share_what_they_repeat() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: a}\nspec: {ports: [{name: http, port: 80}], selector: {app: a}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-0, namespace: a, labels: {app: a}}\nspec: {serviceAccountName: sa}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-1, namespace: a, labels: {app: a}}\nspec: {serviceAccountName: sa}\nstatus: {podIP: 10.0.0.2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-2, namespace: a, labels: {app: a}}\nstatus: {podIP: 10.0.0.3}\n";
        let objects = read(yaml);
        let ctx = context("c1");
        let built = namespace_build(&ctx, &objects, &Sharing::default());
        let eps = &built.services[0].endpoints;
        assert_eq!(eps.len(), 3);
        assert_eq!(
            eps.iter()
                .map(|e| e.address.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(
            eps[0].origin.identity.as_deref(),
            Some("spiffe://cluster.local/ns/a/sa/sa")
        );
        assert_eq!(
            eps[2].origin.identity.as_deref(),
            Some("spiffe://cluster.local/ns/a/sa/default")
        );
        // One origin for the endpoints that share cluster, network, locality and identity.
        assert!(Arc::ptr_eq(&eps[0].origin, &eps[1].origin));
        assert!(!Arc::ptr_eq(&eps[0].origin, &eps[2].origin));
        assert_eq!(
            (&*eps[2].origin.cluster, &*eps[2].origin.network),
            ("c1", "n1")
        );
        assert!(Arc::ptr_eq(
            &eps[2].origin.labels,
            &objects[3].object.metadata().labels
        ));
        let Object::Pod(a2) = &objects[3].object else {
            panic!("a-2 is the fourth object");
        };
        assert_eq!(a2.status.pod_ip(), eps[2].address.ip());
    }

    fn context(cluster: &str) -> NamespaceContext {
        NamespaceContext {
            cluster: cluster.into(),
            namespace: "a".into(),
            is_local: cluster == "c1",
            trust_domain: "cluster.local".into(),
            export_default: ExportDefault::Exported,
            namespace_network: None,
            cluster_network: "n1".into(),
            cidrs: Vec::new(),
            node_localities: Default::default(),
        }
    }

    fn read(yaml: &str) -> Vec<Arc<Resource>> {
        isthmus_api::load_str(yaml, None, "a")
            .resources
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    #[test]
    fn a_services_pods_come_in_name_order_whatever_their_label_maps() {
        let pod = |name: &str, v: &str, ip: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: a, labels: {{app: a, v: '{v}'}}}}\nstatus: {{podIP: {ip}}}\n")
        };
        // a-0 and a-2 share one label map (one file), a-1 has another; all three on one
        // address (host-network pods): their endpoints keep the pods' name order. a-3 has
        // a-0's labels read from another file: an equal map, not the same object.
        let mut objects = read(&[
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: a}\nspec: {ports: [{name: http, port: 80}], selector: {app: a}}\n".to_string(),
            pod("a-0", "1", "10.0.0.5"),
            pod("a-1", "2", "10.0.0.5"),
            pod("a-2", "1", "10.0.0.5"),
        ]
        .join("---\n"));
        objects.extend(read(&pod("a-3", "1", "10.0.0.4")));
        let built = namespace_build(&context("c1"), &objects, &Sharing::default());
        let got: Vec<(String, String)> = built.services[0]
            .endpoints
            .iter()
            .map(|e| {
                let v = e.origin.labels.get("v").cloned().unwrap_or_default();
                (e.address.to_string(), v)
            })
            .collect();
        let want = [
            ("10.0.0.4", "1"),
            ("10.0.0.5", "1"),
            ("10.0.0.5", "2"),
            ("10.0.0.5", "1"),
        ];
        assert_eq!(got, want.map(|(a, v)| (a.to_string(), v.to_string())));
    }

    #[test]
    fn a_rebuilt_namespace_keeps_the_old_fragment_of_a_service_that_did_not_change() {
        let objects = |b_ip: &str| -> Arc<Vec<Arc<Resource>>> {
            Arc::new(read(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: a, namespace: a}}\nspec: {{ports: [{{name: http, port: 80}}], selector: {{app: a}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: b, namespace: a}}\nspec: {{ports: [{{name: http, port: 80}}], selector: {{app: b}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: a-0, namespace: a, labels: {{app: a}}}}\nstatus: {{podIP: 10.0.0.1}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b-0, namespace: a, labels: {{app: b}}}}\nstatus: {{podIP: {b_ip}}}\n")))
        };
        let cache = BuildCache::default();
        let (before, _) =
            pods_and_services(Some(&cache), vec![(context("c1"), objects("10.0.0.2"))]);
        let fragment = |host: &str| {
            let inner = cache.inner.lock().expect("lock");
            inner.merged[host].fragments[0].clone()
        };
        let (a, b) = (
            fragment("a.a.svc.cluster.local"),
            fragment("b.a.svc.cluster.local"),
        );
        // b's pod moves: the namespace is built again; a comes out the same and keeps its
        // fragment, so its merged Service is reused; b's is new.
        let (after, reuse) =
            pods_and_services(Some(&cache), vec![(context("c1"), objects("10.0.0.3"))]);
        assert_eq!((reuse.namespaces_built, reuse.services_built), (1, 1));
        assert!(Arc::ptr_eq(&fragment("a.a.svc.cluster.local"), &a));
        assert!(Arc::ptr_eq(
            &before["a.a.svc.cluster.local"],
            &after["a.a.svc.cluster.local"]
        ));
        let b_now = fragment("b.a.svc.cluster.local");
        assert!(!Arc::ptr_eq(&b_now, &b));
        // Its definition did not change: the new fragment shares the old one's.
        assert!(Arc::ptr_eq(&b_now.definition, &b.definition));
    }

    #[test]
    fn pods_map_a_named_target_port_each_their_own_way_and_numbered_ones_alike() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: named, namespace: a}\nspec: {ports: [{name: http, port: 80, targetPort: web}, {name: grpc, port: 90, targetPort: 9090}], selector: {app: a}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: numbered, namespace: a}\nspec: {ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp, port: 91}], selector: {app: a}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-0, namespace: a, labels: {app: a}}\nspec: {containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-1, namespace: a, labels: {app: a}}\nspec: {containers: [{name: c, ports: [{name: web, containerPort: 8081}]}]}\nstatus: {podIP: 10.0.0.2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-2, namespace: a, labels: {app: a}}\nstatus: {podIP: 10.0.0.3}\n";
        let objects = read(yaml);
        let ctx = context("c1");
        let built = namespace_build(&ctx, &objects, &Sharing::default());
        let ports = |service: usize| -> Vec<Vec<(String, u32)>> {
            built.services[service]
                .endpoints
                .iter()
                .map(|e| {
                    e.origin
                        .ports
                        .iter()
                        .map(|(n, p)| (n.clone(), *p))
                        .collect()
                })
                .collect()
        };
        let own = |pairs: &[(&str, u32)]| -> Vec<(String, u32)> {
            pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
        };
        // By name: each pod's own container port; a pod without it has only the other port.
        assert_eq!(
            ports(0),
            [
                own(&[("grpc", 9090), ("http", 8080)]),
                own(&[("grpc", 9090), ("http", 8081)]),
                own(&[("grpc", 9090)]),
            ]
        );
        // By number (or none, the port itself): every pod alike, one map for them all.
        let alike = own(&[("http", 8080), ("tcp", 91)]);
        assert_eq!(ports(1), [alike.clone(), alike.clone(), alike]);
        let eps = &built.services[1].endpoints;
        assert!(Arc::ptr_eq(&eps[0].origin.ports, &eps[2].origin.ports));
    }

    #[test]
    fn a_service_defined_alike_in_several_clusters_is_kept_once() {
        let objects = |ip: &str, cluster_ip: &str, ports: &str| -> Arc<Vec<Arc<Resource>>> {
            let yaml = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: a, namespace: a}}\nspec: {{clusterIP: {cluster_ip}, ports: [{ports}], selector: {{app: a}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: a-0, namespace: a, labels: {{app: a}}}}\nstatus: {{podIP: {ip}}}\n");
            Arc::new(
                isthmus_api::load_str(&yaml, None, "a")
                    .resources
                    .into_iter()
                    .map(Arc::new)
                    .collect(),
            )
        };
        let ctx = |cluster: &str| NamespaceContext {
            cluster_network: cluster.into(),
            ..context(cluster)
        };
        let http = "{name: http, port: 80}";
        let c2 = objects("10.1.0.1", "10.97.0.9", http);
        let groups = vec![
            (ctx("c1"), objects("10.0.0.1", "10.96.0.1", http)),
            // Another ClusterIP: not part of the definition.
            (ctx("c2"), c2.clone()),
            // Another port: a definition of its own.
            (
                ctx("c3"),
                objects(
                    "10.2.0.1",
                    "10.98.0.9",
                    "{name: http, port: 80}, {name: grpc, port: 90}",
                ),
            ),
        ];
        let cache = BuildCache::default();
        let (services, _) = pods_and_services(Some(&cache), groups);
        let host = "a.a.svc.cluster.local";
        let inner = cache.inner.lock().expect("lock");
        let frags = &inner.merged[host].fragments;
        assert_eq!(frags.len(), 3);
        assert!(Arc::ptr_eq(&frags[0].definition, &frags[1].definition));
        assert!(!Arc::ptr_eq(&frags[0].definition, &frags[2].definition));
        assert_eq!(frags[2].definition.ports.len(), 2);
        // What differs by cluster stays each cluster's.
        assert_eq!(frags[0].vip.as_deref(), Some("10.96.0.1"));
        assert_eq!(frags[1].vip, None);
        assert!(frags[1].vip_allocated);
        let merged = &services[host];
        assert_eq!(merged.vip.as_deref(), Some("10.96.0.1"));
        assert!(!merged.vip_allocated);
        assert_eq!(merged.ports.len(), 1, "the first cluster's definition");
        assert_eq!(
            merged
                .endpoints
                .iter()
                .map(|e| e.address.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.1", "10.1.0.1", "10.2.0.1"]
        );
        let shared = frags[1].definition.clone();
        drop(inner);
        // The local pod moves: the local namespace is built again, the other cluster's is
        // reused, and the definition they share stays one object.
        let groups = vec![
            (ctx("c1"), objects("10.0.0.7", "10.96.0.1", http)),
            (ctx("c2"), c2),
        ];
        let (services, _) = pods_and_services(Some(&cache), groups);
        let inner = cache.inner.lock().expect("lock");
        let frags = &inner.merged[host].fragments;
        assert!(Arc::ptr_eq(&frags[0].definition, &shared));
        assert!(Arc::ptr_eq(&frags[1].definition, &shared));
        assert_eq!(services[host].endpoints.len(), 2);
    }

    #[test]
    fn pods_that_are_not_ready_or_finished_are_no_endpoints() {
        let pod = |name: &str, ip: &str, status: &str| {
            format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: a, labels: {{app: a}}}}\nstatus: {{podIP: {ip}{status}}}\n")
        };
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: a, namespace: a}}\nspec: {{ports: [{{name: http, port: 80}}], selector: {{app: a}}}}\n{}{}{}{}{}",
            pod("ready", "10.0.0.1", ", conditions: [{type: Ready, status: \"True\"}]"),
            pod("starting", "10.0.0.2", ", conditions: [{type: PodScheduled, status: \"True\"}, {type: Ready, status: \"False\"}]"),
            pod("no-conditions", "10.0.0.3", ""),
            pod("done", "10.0.0.4", ", phase: Succeeded"),
            pod("failed", "10.0.0.5", ", phase: Failed"),
        );
        let objects = read(&yaml);
        let ctx = context("c1");
        let built = namespace_build(&ctx, &objects, &Sharing::default());
        let got: Vec<String> = built.services[0]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.1", "10.0.0.3"]);
    }
}
