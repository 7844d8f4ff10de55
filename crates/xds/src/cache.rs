//! Resources encoded once per snapshot version and shared by every stream whose proxy
//! generates the same bytes: the cache key is a [`ProxyShape`], what of a proxy can
//! influence its resources (Istio's `clusterCache` key). What a stream gets at a new version
//! is decided from the version's push request ([`PushRequest`], Istio's `ProxyNeedsPush`):
//! generated again, patched (a sidecar after an endpoints-only change: those services'
//! clusters and endpoints generated again), or kept (nothing a proxy receives changed).

use crate::update::MeshUpdate;
use bytes::{Bytes, BytesMut};
use envoy_types::pb::google::protobuf::Any;
use isthmus_envoy::{generate, sidecar_service_resources, ProxyResources};
use isthmus_model::Interception;
use isthmus_model::{Address, MeshSnapshot, NodeId, NodeKind, Proxy, PushRequest};
use prost::Message;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

/// The order in which types are pushed after a change, so that Envoy sees clusters before
/// the endpoints and listeners that use them.
pub const PUSH_ORDER: [&str; 4] = [
    isthmus_envoy::CLUSTER_TYPE,
    isthmus_envoy::ENDPOINT_TYPE,
    isthmus_envoy::LISTENER_TYPE,
    isthmus_envoy::ROUTE_TYPE,
];

/// One encoded resource.
#[derive(Debug, Clone)]
pub struct EncodedResource {
    /// Its name (shared with the streams that remember having sent it).
    pub name: Arc<str>,
    /// Its `resources` entry as a response carries it (see [`crate::wire`]): shared by every
    /// stream that sends it, and usually a slice of its type's whole set.
    pub entry: Bytes,
    /// Where the encoded `Any` starts in `entry`.
    any_at: usize,
    /// The service it was generated for (a sidecar's outbound clusters and endpoints).
    pub service: Option<Arc<str>>,
    /// A hash of the bytes (the delta protocol's resource version, in hex on the wire).
    pub version: u64,
}

impl EncodedResource {
    /// The encoded `Any` (shared, not copied).
    pub fn any_bytes(&self) -> Bytes {
        self.entry.slice(self.any_at..)
    }

    /// A resource with no bytes (tests of the set comparisons).
    #[cfg(test)]
    pub(crate) fn named(name: &str, version: u64) -> EncodedResource {
        EncodedResource {
            name: Arc::from(name),
            entry: Bytes::new(),
            any_at: 0,
            service: None,
            version,
        }
    }

    /// The resource decoded (for tools and tests; streams send the bytes).
    pub fn to_any(&self) -> Option<Any> {
        Any::decode(self.any_bytes()).ok()
    }
}

/// A proxy's resources, per type in [`PUSH_ORDER`].
#[derive(Debug, Default)]
pub struct Encoded {
    by_type: [Vec<EncodedResource>; 4],
    /// Per type, every entry concatenated in order: the body of a response carrying the
    /// whole set, built once and shared by every stream that sends it.
    whole: [OnceLock<Bytes>; 4],
    /// The same for delta responses (each resource with its name and version).
    delta_whole: [OnceLock<Bytes>; 4],
    /// Per type, every resource's name in order: the list a SotW stream keeps when its
    /// proxy names every resource of the type (as Envoy names every EDS cluster), shared by
    /// those streams instead of one copy each.
    names: [OnceLock<Arc<[Arc<str>]>>; 4],
    patch: Option<Patch>,
}

/// How an [`Encoded`] differs from the one it was patched from.
#[derive(Debug)]
struct Patch {
    /// The set it was made from (weak: versions do not chain up in memory).
    from: std::sync::Weak<Encoded>,
    /// Per type, the names whose bytes changed, appeared or disappeared.
    names: [Vec<String>; 4],
}

/// Where `type_url` stands in [`PUSH_ORDER`] (and in an [`Encoded`]'s per-type arrays).
fn type_index(type_url: &str) -> Option<usize> {
    PUSH_ORDER.iter().position(|t| *t == type_url)
}

/// Encodes `type_url`'s resources into one buffer; each resource's entry is a slice of it.
fn encode(res: &ProxyResources, type_url: &str) -> (Vec<EncodedResource>, Bytes) {
    let mut list = res.of_type(type_url);
    // Sorted by name: streams look resources up and compare sets by merging.
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let size = list
        .iter()
        .map(|r| crate::wire::resource_entry_len(&r.resource))
        .sum();
    let mut buf = BytesMut::with_capacity(size);
    let mut spans = Vec::with_capacity(list.len());
    for r in list {
        let start = buf.len();
        let any_at = crate::wire::put_resource_entry(&mut buf, &r.resource);
        let mut h = DefaultHasher::new();
        r.resource.value.hash(&mut h);
        spans.push((
            Arc::<str>::from(r.name),
            r.service,
            start..buf.len(),
            any_at,
            h.finish(),
        ));
    }
    let whole = buf.freeze();
    let list = spans
        .into_iter()
        .map(|(name, service, span, any_at, hash)| EncodedResource {
            name,
            entry: whole.slice(span),
            any_at,
            service,
            version: hash,
        })
        .collect();
    (list, whole)
}

impl Encoded {
    fn new(snapshot: &MeshSnapshot, proxy: &Proxy) -> Encoded {
        let res = generate(snapshot, proxy);
        let mut by_type: [Vec<EncodedResource>; 4] = Default::default();
        let whole: [OnceLock<Bytes>; 4] = Default::default();
        for (i, t) in PUSH_ORDER.iter().enumerate() {
            let (list, all) = encode(&res, t);
            by_type[i] = list;
            let _ = whole[i].set(all);
        }
        Encoded {
            by_type,
            whole,
            delta_whole: Default::default(),
            names: Default::default(),
            patch: None,
        }
    }

    /// `prev` with the clusters and endpoints of `hosts` generated again: what a sidecar
    /// needs after a change that only moved those services' endpoints.
    fn patched(
        prev: &Arc<Encoded>,
        snapshot: &MeshSnapshot,
        proxy: &Proxy,
        hosts: &BTreeSet<String>,
    ) -> Encoded {
        let part = sidecar_service_resources(snapshot, proxy, hosts);
        let mut by_type = prev.by_type.clone();
        let mut names: [Vec<String>; 4] = Default::default();
        for (i, t) in PUSH_ORDER.iter().enumerate() {
            if *t != isthmus_envoy::CLUSTER_TYPE && *t != isthmus_envoy::ENDPOINT_TYPE {
                continue;
            }
            let mut old: HashMap<Arc<str>, u64> = HashMap::new();
            by_type[i].retain(|r| {
                let hit = r.service.as_deref().is_some_and(|s| hosts.contains(s));
                if hit {
                    old.insert(r.name.clone(), r.version);
                }
                !hit
            });
            let (fresh, _) = encode(&part, t);
            for r in &fresh {
                if old.remove(&r.name) != Some(r.version) {
                    names[i].push(r.name.to_string());
                }
            }
            names[i].extend(old.into_keys().map(|n| n.to_string()));
            by_type[i].extend(fresh);
            by_type[i].sort_by(|a, b| a.name.cmp(&b.name));
        }
        Encoded {
            by_type,
            whole: Default::default(),
            delta_whole: Default::default(),
            names: Default::default(),
            patch: Some(Patch {
                from: Arc::downgrade(prev),
                names,
            }),
        }
    }

    /// The names of `type_url` that differ from `base`: none when this set is `base` (kept),
    /// those it changed, added or removed when it was patched from `base`; `None` otherwise
    /// (compare everything).
    pub fn changed_since(&self, base: &Arc<Encoded>, type_url: &str) -> Option<&[String]> {
        // The same set (kept at a version that changed nothing it holds): nothing differs.
        if std::ptr::eq(self, Arc::as_ptr(base)) {
            return Some(&[]);
        }
        let patch = self.patch.as_ref()?;
        let from = patch.from.upgrade()?;
        if !Arc::ptr_eq(&from, base) {
            return None;
        }
        let i = type_index(type_url)?;
        Some(patch.names[i].as_slice())
    }

    /// The resource `name` of `type_url`.
    pub fn find(&self, type_url: &str, name: &str) -> Option<&EncodedResource> {
        let list = self.of_type(type_url);
        list.binary_search_by(|r| r.name.as_ref().cmp(name))
            .ok()
            .map(|i| &list[i])
    }

    /// `names` (sorted, the strings found in this set) as a shared list: this set's own
    /// list of `type_url`'s names when `names` is exactly that, so that the streams of
    /// proxies asking for every resource hold one list between them; `names` otherwise.
    pub fn share_names(&self, type_url: &str, names: Vec<Arc<str>>) -> Arc<[Arc<str>]> {
        let Some(i) = type_index(type_url) else {
            return names.into();
        };
        let list = &self.by_type[i];
        let same = list.len() == names.len()
            && list
                .iter()
                .zip(&names)
                .all(|(r, n)| Arc::ptr_eq(&r.name, n));
        if !same {
            return names.into();
        }
        self.names[i]
            .get_or_init(|| list.iter().map(|r| r.name.clone()).collect())
            .clone()
    }

    /// Every resource of `type_url` as one response body (see [`crate::wire`]), shared.
    pub fn whole(&self, type_url: &str) -> Bytes {
        let Some(i) = type_index(type_url) else {
            return Bytes::new();
        };
        self.whole[i]
            .get_or_init(|| {
                let list = &self.by_type[i];
                let mut buf = BytesMut::with_capacity(list.iter().map(|r| r.entry.len()).sum());
                for r in list {
                    buf.extend_from_slice(&r.entry);
                }
                buf.freeze()
            })
            .clone()
    }

    /// Every resource of `type_url` as one delta response body (see
    /// [`crate::wire::delta_body`]), shared.
    pub fn delta_whole(&self, type_url: &str) -> Bytes {
        let Some(i) = type_index(type_url) else {
            return Bytes::new();
        };
        self.delta_whole[i]
            .get_or_init(|| {
                let entries: Vec<crate::wire::DeltaEntry<'_>> = self.by_type[i]
                    .iter()
                    .map(|r| crate::wire::DeltaEntry {
                        name: &r.name,
                        version: r.version,
                        any: r.any_bytes(),
                    })
                    .collect();
                crate::wire::delta_body(&entries)
            })
            .clone()
    }

    /// The resources of `type_url`.
    pub fn of_type(&self, type_url: &str) -> &[EncodedResource] {
        type_index(type_url)
            .map(|i| self.by_type[i].as_slice())
            .unwrap_or_default()
    }

    /// Encoded bytes held.
    pub fn bytes(&self) -> usize {
        self.by_type.iter().flatten().map(|r| r.entry.len()).sum()
    }
}

/// Pairs each resource of `current` with the version `held` has under its name (`None`
/// when it has none), by merging: both are sorted by name.
pub fn held_versions<'a>(
    current: &'a [&'a EncodedResource],
    held: &'a [EncodedResource],
) -> impl Iterator<Item = (&'a EncodedResource, Option<u64>)> + 'a {
    let mut j = 0;
    current.iter().map(move |r| {
        while j < held.len() && *held[j].name < *r.name {
            j += 1;
        }
        let v = held.get(j).filter(|h| h.name == r.name).map(|h| h.version);
        (*r, v)
    })
}

type Cell = Arc<std::sync::OnceLock<Arc<Encoded>>>;

/// What of a proxy can influence the resources generated for it: the per-proxy cache key
/// (Istio's `clusterCache` key). Made from a [`Proxy`] by naming every field, so a field
/// added to `Proxy` or [`NodeId`] does not compile until it is placed here or said not to
/// matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyShape {
    /// Sidecar or router.
    pub kind: NodeKind,
    /// Its namespace (Sidecar scoping, DestinationRule lookup).
    pub namespace: String,
    /// Its pod's labels (Gateway selectors, Sidecar selectors).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its locality (endpoint priorities under locality failover).
    pub locality: String,
    /// Its cluster.
    pub cluster: String,
    /// Its network.
    pub network: String,
    /// The networks it reaches directly.
    pub network_views: Vec<String>,
    /// How traffic reaches it.
    pub interception: Interception,
    /// Whether it is a network's east-west gateway.
    pub router_mode_sni_dnat: bool,
    /// Its IP, only when that IP changes the output: when it is an endpoint of the snapshot
    /// (inbound listeners and clusters) or when listeners bind it (no capture).
    pub ip: Option<String>,
    /// What its workload asked for (on-demand scoping): proxies that asked for the same
    /// names share their resources.
    pub demand: Option<Arc<isthmus_model::Demand>>,
}

impl ProxyShape {
    /// The shape of `proxy`; `ip_is_endpoint` says whether its IP is one of the snapshot's
    /// endpoints in its cluster.
    pub fn of(proxy: &Proxy, ip_is_endpoint: bool) -> ProxyShape {
        let Proxy {
            id:
                NodeId {
                    kind,
                    ip,
                    // Names of the pod, read only to find it in the registry.
                    pod: _,
                    namespace,
                    domain: _,
                },
            cluster,
            network,
            labels,
            locality,
            // Identity is the workload certificate's business, not its configuration's.
            service_account: _,
            interception,
            router_mode_sni_dnat,
            network_views,
            demand,
        } = proxy;
        let ip_matters = *interception == Interception::None || ip_is_endpoint;
        ProxyShape {
            kind: *kind,
            namespace: namespace.clone(),
            labels: labels.clone(),
            locality: locality.clone(),
            cluster: cluster.clone(),
            network: network.clone(),
            network_views: network_views.clone(),
            interception: *interception,
            router_mode_sni_dnat: *router_mode_sni_dnat,
            ip: ip_matters.then(|| ip.clone()),
            demand: demand.clone(),
        }
    }
}

/// What a proxy shape gets at a new version, from the version's push request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Generated again from the snapshot.
    Generate,
    /// The previous version's resources with the clusters and endpoints of the services
    /// whose endpoints moved generated again.
    Patch,
    /// The previous version's resources as they are: nothing it receives changed.
    Keep,
}

impl Refresh {
    /// Istio's `ProxyNeedsPush` for one shape: a full push regenerates; an endpoints-only
    /// push patches a sidecar whose own IP is not an endpoint (one that is has inbound
    /// configuration from endpoints) and regenerates the rest; a push that changed nothing
    /// proxies receive keeps what they have.
    pub fn for_shape(push: &PushRequest, shape: &ProxyShape) -> Refresh {
        if push.full {
            Refresh::Generate
        } else if push.endpoints.is_empty() {
            Refresh::Keep
        } else if shape.kind == NodeKind::Sidecar && shape.ip.is_none() {
            Refresh::Patch
        } else {
            Refresh::Generate
        }
    }
}

#[derive(Default)]
struct Generation {
    version: u64,
    /// Every endpoint's (cluster, address).
    endpoint_ips: EndpointIps,
    entries: HashMap<ProxyShape, Cell>,
    /// The previous version's entries, kept while the current version changed no more than
    /// some services' endpoints: they are patched or kept, not generated again.
    previous: HashMap<ProxyShape, Cell>,
    /// The hosts whose endpoints the current version moved.
    moved: Arc<BTreeSet<String>>,
}

fn ip_hash(cluster: &str, address: &Address) -> u64 {
    let mut h = DefaultHasher::new();
    (cluster, address).hash(&mut h);
    h.finish()
}

/// How many endpoints each (cluster, address) hash has: built once, then patched with the
/// services a change moved (rebuilding it took 20-30 ms per change at 100,000 endpoints,
/// before any stream could be served).
#[derive(Debug, Default)]
struct EndpointIps(HashMap<u64, u32>);

impl EndpointIps {
    fn of(snapshot: &MeshSnapshot) -> EndpointIps {
        let mut ips = EndpointIps::default();
        for svc in snapshot.services.values() {
            ips.add(&svc.endpoints);
        }
        ips
    }

    fn add(&mut self, endpoints: &isthmus_model::Endpoints) {
        for e in endpoints {
            *self
                .0
                .entry(ip_hash(&e.origin.cluster, &e.address))
                .or_default() += 1;
        }
    }

    fn remove(&mut self, endpoints: &isthmus_model::Endpoints) {
        for e in endpoints {
            let h = ip_hash(&e.origin.cluster, &e.address);
            if let Some(n) = self.0.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    self.0.remove(&h);
                }
            }
        }
    }

    /// From the index of the snapshot before to that of `after`, where only the hosts of
    /// `before` changed (from `before`, their endpoints as they were).
    fn apply(
        &mut self,
        before: &std::collections::BTreeMap<String, isthmus_model::Endpoints>,
        after: &MeshSnapshot,
    ) {
        for endpoints in before.values() {
            self.remove(endpoints);
        }
        for host in before.keys() {
            if let Some(svc) = after.services.get(host) {
                self.add(&svc.endpoints);
            }
        }
    }

    fn contains(&self, cluster: &str, address: &str) -> bool {
        self.0
            .contains_key(&ip_hash(cluster, &Address::parse(address)))
    }
}

/// The cache; cheap to clone.
#[derive(Clone, Default)]
pub struct ResourceCache {
    inner: Arc<Mutex<Generation>>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    generated: std::sync::atomic::AtomicU64,
    patched: std::sync::atomic::AtomicU64,
    kept: std::sync::atomic::AtomicU64,
}

/// How a cache made the resource sets it served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Generated from scratch.
    pub generated: u64,
    /// Patched from the previous version (only some services' endpoints moved).
    pub patched: u64,
    /// Kept from the previous version (nothing the shape receives changed).
    pub kept: u64,
}

impl std::fmt::Debug for ResourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResourceCache")
    }
}

impl ResourceCache {
    /// The encoded resources of `proxy` at `update`, made by the first stream that asks
    /// (generated, patched or kept as the update's push request says for its shape) and
    /// shared with every stream of the same shape.
    pub fn get(&self, update: &MeshUpdate, proxy: &Proxy) -> Arc<Encoded> {
        let snapshot = &update.snapshot;
        let push = &update.push;
        let (cell, base, refresh, moved) = {
            let Ok(mut g) = self.inner.lock() else {
                return Arc::new(Encoded::new(snapshot, proxy));
            };
            if g.version != snapshot.version {
                let started = std::time::Instant::now();
                // A new snapshot: the old entries go (streams keep what they hold), or stay
                // as the base to patch or keep when no more than endpoints moved since.
                let follows = !push.full && push.from_version == g.version && g.version != 0;
                let old = std::mem::take(&mut g.entries);
                g.previous = if follows { old } else { HashMap::new() };
                g.version = snapshot.version;
                let how = if follows {
                    g.endpoint_ips.apply(&push.endpoints, snapshot);
                    g.moved = Arc::new(push.endpoint_hosts());
                    "patched"
                } else {
                    g.endpoint_ips = EndpointIps::of(snapshot);
                    g.moved = Arc::default();
                    "built"
                };
                tracing::debug!(
                    version = snapshot.version,
                    ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
                    "new snapshot version: {how} the index of endpoint addresses"
                );
            }
            // A hash collision only makes the key more specific, never wrong.
            let ip_is_endpoint = g.endpoint_ips.contains(&proxy.cluster, &proxy.id.ip);
            let shape = ProxyShape::of(proxy, ip_is_endpoint);
            let refresh = Refresh::for_shape(push, &shape);
            let base = match refresh {
                Refresh::Generate => None,
                Refresh::Patch | Refresh::Keep => {
                    g.previous.get(&shape).and_then(|c| c.get().cloned())
                }
            };
            let moved = g.moved.clone();
            (
                g.entries.entry(shape).or_default().clone(),
                base,
                refresh,
                moved,
            )
        };
        cell.get_or_init(|| {
            let started = std::time::Instant::now();
            use std::sync::atomic::Ordering::Relaxed;
            let (e, how) = match (base, refresh) {
                (Some(prev), Refresh::Keep) => {
                    self.counts.kept.fetch_add(1, Relaxed);
                    return prev;
                }
                (Some(prev), Refresh::Patch) => {
                    self.counts.patched.fetch_add(1, Relaxed);
                    (
                        Encoded::patched(&prev, snapshot, proxy, &moved),
                        "patched the changed services of",
                    )
                }
                _ => {
                    self.counts.generated.fetch_add(1, Relaxed);
                    (Encoded::new(snapshot, proxy), "generated and encoded")
                }
            };
            tracing::debug!(
                version = snapshot.version,
                node = %proxy.id,
                bytes = e.bytes(),
                ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
                "{how} a proxy shape's resources"
            );
            Arc::new(e)
        })
        .clone()
    }

    /// How many resource sets were generated and how many patched so far.
    pub fn stats(&self) -> CacheStats {
        use std::sync::atomic::Ordering::Relaxed;
        CacheStats {
            generated: self.counts.generated.load(Relaxed),
            patched: self.counts.patched.load(Relaxed),
            kept: self.counts.kept.load(Relaxed),
        }
    }

    /// Distinct resource sets held for the current version.
    pub fn entries(&self) -> usize {
        self.inner.lock().map(|g| g.entries.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_model::{ConfigsUpdated, NodeId};
    use std::collections::BTreeMap;

    fn proxy(id: &str, interception: Interception) -> Proxy {
        Proxy {
            id: NodeId::parse(id).expect("node id"),
            cluster: "c1".into(),
            network: "n1".into(),
            labels: BTreeMap::from([("app".into(), "sleep".into())]),
            locality: String::new(),
            service_account: "sleep".into(),
            interception,
            router_mode_sni_dnat: false,
            network_views: Vec::new(),
            demand: None,
        }
    }

    fn service(host: &str) -> isthmus_model::Service {
        isthmus_model::Service {
            hostname: host.into(),
            namespace: "ns".into(),
            name: "a".into(),
            origin: isthmus_model::ServiceOrigin::Kubernetes,
            ports: Vec::new(),
            vip: None,
            vip_allocated: false,
            exported: true,
            resolution: isthmus_api::enums::Resolution::Static,
            location: isthmus_api::enums::Location::MeshInternal,
            endpoints: Default::default(),
            subject_alt_names: Vec::new(),
            export_to: Vec::new(),
            headless: false,
        }
    }

    fn push(full: bool, moved: &[&str]) -> PushRequest {
        PushRequest {
            from_version: 1,
            version: 2,
            full,
            endpoints: moved
                .iter()
                .map(|h| (h.to_string(), service(h).endpoints))
                .collect(),
            configs_updated: ConfigsUpdated::Unknown,
        }
    }

    #[test]
    fn streams_naming_every_resource_share_one_name_list() {
        let eds = isthmus_envoy::ENDPOINT_TYPE;
        let i = type_index(eds).expect("EDS");
        let mut by_type: [Vec<EncodedResource>; 4] = Default::default();
        by_type[i] = vec![
            EncodedResource::named("outbound|80||a", 1),
            EncodedResource::named("outbound|80||b", 2),
        ];
        let set = Encoded {
            by_type,
            whole: Default::default(),
            delta_whole: Default::default(),
            names: Default::default(),
            patch: None,
        };
        let asked =
            || -> Vec<Arc<str>> { set.of_type(eds).iter().map(|r| r.name.clone()).collect() };
        let one = set.share_names(eds, asked());
        let two = set.share_names(eds, asked());
        assert!(Arc::ptr_eq(&one, &two), "one list for every such stream");
        assert_eq!(one.len(), 2);
        // A subset, or equal strings that are not the set's own, stay the stream's.
        let part = set.share_names(eds, asked()[..1].to_vec());
        assert_eq!(part.len(), 1);
        assert!(!Arc::ptr_eq(&part, &one));
        let copies: Vec<Arc<str>> = asked().iter().map(|n| Arc::from(&**n)).collect();
        let own = set.share_names(eds, copies);
        assert_eq!(own, one, "the same names");
        assert!(!Arc::ptr_eq(&own, &one));
    }

    #[test]
    fn a_shape_holds_the_ip_only_when_it_changes_the_output() {
        let a = proxy(
            "sidecar~10.0.0.1~sleep-0.foo~foo.svc.cluster.local",
            Interception::Redirect,
        );
        let b = proxy(
            "sidecar~10.0.0.2~sleep-1.foo~foo.svc.cluster.local",
            Interception::Redirect,
        );
        // Two pods of one workload, neither an endpoint: one shape (shared resources).
        assert_eq!(ProxyShape::of(&a, false), ProxyShape::of(&b, false));
        // An endpoint has inbound configuration of its own.
        assert_ne!(ProxyShape::of(&a, true), ProxyShape::of(&b, true));
        assert_eq!(ProxyShape::of(&a, true).ip.as_deref(), Some("10.0.0.1"));
        // Without capture, listeners bind the IP.
        let bound = proxy(
            "sidecar~10.0.0.1~sleep-0.foo~foo.svc.cluster.local",
            Interception::None,
        );
        assert!(ProxyShape::of(&bound, false).ip.is_some());
        // The service account does not change the output; the labels do.
        let mut other_sa = a.clone();
        other_sa.service_account = "x".into();
        assert_eq!(ProxyShape::of(&a, false), ProxyShape::of(&other_sa, false));
        let mut relabelled = a.clone();
        relabelled.labels.insert("version".into(), "v2".into());
        assert_ne!(
            ProxyShape::of(&a, false),
            ProxyShape::of(&relabelled, false)
        );
    }

    #[test]
    fn each_shape_is_refreshed_as_the_push_request_says() {
        let sidecar = ProxyShape::of(
            &proxy(
                "sidecar~10.0.0.1~sleep-0.foo~foo.svc.cluster.local",
                Interception::Redirect,
            ),
            false,
        );
        let endpoint = ProxyShape {
            ip: Some("10.0.0.1".into()),
            ..sidecar.clone()
        };
        let router = ProxyShape {
            kind: NodeKind::Router,
            ..sidecar.clone()
        };
        let moved = push(false, &["a.ns.svc.cluster.local"]);
        assert_eq!(
            Refresh::for_shape(&push(true, &[]), &sidecar),
            Refresh::Generate
        );
        assert_eq!(Refresh::for_shape(&moved, &sidecar), Refresh::Patch);
        assert_eq!(Refresh::for_shape(&moved, &endpoint), Refresh::Generate);
        assert_eq!(Refresh::for_shape(&moved, &router), Refresh::Generate);
        for shape in [&sidecar, &endpoint, &router] {
            assert_eq!(Refresh::for_shape(&push(false, &[]), shape), Refresh::Keep);
        }
    }
}
