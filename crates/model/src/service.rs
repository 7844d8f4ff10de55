//! Services and their endpoints as the mesh sees them.

use isthmus_api::enums::{Location, Protocol, Resolution};
use std::collections::BTreeMap;
use std::net::IpAddr;
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
    /// Protocol (TCP when sniffed).
    pub protocol: Protocol,
    /// No protocol declared (no `protocol`/`appProtocol`, a name without a protocol
    /// prefix): the sidecar sniffs the first bytes, HTTP is routed as HTTP and anything else
    /// goes as TCP (Istio's protocol detection).
    pub sniffed: bool,
}

impl Port {
    /// Whether the sidecar may handle this port with an HTTP connection manager: declared
    /// HTTP, HTTP2 or gRPC, or sniffed.
    pub fn carries_http(&self) -> bool {
        self.protocol.is_http() || self.sniffed
    }
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
    /// Endpoints, in (cluster, address) order.
    pub endpoints: Endpoints,
    /// Identities allowed to serve it (from the ServiceEntry); empty means derive from the
    /// endpoints.
    pub subject_alt_names: Vec<String>,
    /// The namespaces whose sidecars see it: the ServiceEntry's `exportTo`, or the Service's
    /// `networking.istio.io/exportTo` annotation (`*`, `.`, `~` or namespace names); empty
    /// means the mesh config's `defaultServiceExportTo`.
    pub export_to: Vec<String>,
    /// A Kubernetes Service with `clusterIP: None` (as StatefulSets have): clients connect
    /// to its pods' addresses.
    pub headless: bool,
}

impl Service {
    /// The port with this number.
    pub fn port(&self, number: u32) -> Option<&Port> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// A Kubernetes Service without a cluster IP (`clusterIP: None`, as StatefulSets have):
    /// clients connect to its pods' addresses, so sidecars forward to the original
    /// destination, per pod, instead of balancing.
    pub fn headless(&self) -> bool {
        self.headless && self.vip.is_none()
    }

    /// True when sidecars talk mTLS to it by default.
    pub fn mesh_internal(&self) -> bool {
        self.location == Location::MeshInternal
    }
}

/// One endpoint of a service: an address, and what it shares with the other pods of its
/// workload.
///
/// All that endpoints repeat (cluster, network, locality, identity, labels, port map and
/// weight) is one shared [`EndpointOrigin`]: the pods of a workload differ only in their
/// address, so an endpoint takes 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// IP address or DNS name.
    pub address: Address,
    /// Where it lives, who answers there, its labels, ports and weight.
    pub origin: Arc<EndpointOrigin>,
}

impl Endpoint {
    /// Its load-balancing weight (its origin's).
    pub fn weight(&self) -> u32 {
        self.origin.weight
    }
}

/// Where an endpoint answers: an IP address, kept in line (a pod's costs no allocation), or
/// a DNS name. IP addresses order before names, and by number (`10.0.0.9` before
/// `10.0.0.10`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name (a ServiceEntry endpoint may be one).
    Name(Arc<str>),
}

impl Address {
    /// `text` as an IP address when it is one, as a name otherwise.
    pub fn parse(text: &str) -> Self {
        text.parse()
            .map(Address::Ip)
            .unwrap_or_else(|_| Address::Name(text.into()))
    }

    /// The IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ip(ip) => Some(*ip),
            Address::Name(_) => None,
        }
    }
}

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        Address::Ip(ip)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(ip) => ip.fmt(f),
            Address::Name(n) => f.write_str(n),
        }
    }
}

/// Equal to the text of the same address (`10.0.0.1` equals `Ip(10.0.0.1)`).
impl PartialEq<str> for Address {
    fn eq(&self, text: &str) -> bool {
        match self {
            Address::Ip(ip) => text.parse::<IpAddr>().is_ok_and(|t| t == *ip),
            Address::Name(n) => **n == *text,
        }
    }
}

/// What the endpoints of one workload share: where they live, who answers there, their
/// labels, how the service's ports map to theirs, and their load-balancing weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointOrigin {
    /// The cluster it lives in (empty for ServiceEntry endpoints).
    pub cluster: Arc<str>,
    /// The network it is on; empty means reachable from everywhere.
    pub network: Arc<str>,
    /// `region/zone/subzone`.
    pub locality: Arc<str>,
    /// The SPIFFE identity, when known.
    pub identity: Option<Arc<str>>,
    /// True when the endpoint speaks mesh mTLS (has a sidecar); only such endpoints may be
    /// reached through a network gateway.
    pub mtls_ready: bool,
    /// Labels (a pod's own map).
    pub labels: Arc<isthmus_api::Labels>,
    /// Service port name to the endpoint's port.
    pub ports: Arc<BTreeMap<String, u32>>,
    /// Load-balancing weight (at least 1): a pod's is 1; a ServiceEntry's or WorkloadEntry's
    /// endpoint may give another. Here rather than in each [`Endpoint`], as the endpoints of
    /// one origin nearly always have the same (pods: all of them).
    pub weight: u32,
}

/// Nowhere in particular, weight 1.
impl Default for EndpointOrigin {
    fn default() -> Self {
        EndpointOrigin {
            cluster: Arc::default(),
            network: Arc::default(),
            locality: Arc::default(),
            identity: None,
            mtls_ready: false,
            labels: Arc::default(),
            ports: Arc::default(),
            weight: 1,
        }
    }
}

impl EndpointOrigin {
    /// Whether this endpoint is known to have no sidecar: a pod of a Kubernetes cluster that
    /// is not injected, or an address there with no pod (the API server's). ServiceEntry
    /// endpoints are not known either way and are treated as the entry's location says.
    pub fn without_sidecar(&self) -> bool {
        !self.cluster.is_empty() && !self.mtls_ready
    }
}

/// A service's endpoints in (cluster, address) order, held as runs: a run is one cluster's
/// endpoints of the service, shared with the per-cluster build it came from. A service seen
/// in five clusters holds five pointers rather than a copy (or a pointer) per endpoint, and
/// each endpoint is stored once, in line.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    runs: Vec<Arc<[Endpoint]>>,
    len: usize,
}

impl Endpoints {
    /// No endpoints.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many endpoints.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The endpoints, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Endpoint> + Clone + '_ {
        self.runs.iter().flat_map(|r| r.iter())
    }

    /// The `i`th endpoint.
    pub fn get(&self, mut i: usize) -> Option<&Endpoint> {
        for run in &self.runs {
            match run.get(i) {
                Some(e) => return Some(e),
                None => i -= run.len(),
            }
        }
        None
    }

    /// The runs they are held in.
    pub fn runs(&self) -> &[Arc<[Endpoint]>] {
        &self.runs
    }

    /// One cluster's endpoints as a run, put in address order (a stable sort: endpoints of
    /// one address keep the order given), taken out of `scratch`: the vector keeps its room
    /// for the next run, so that a build of many runs allocates only what it keeps.
    pub fn run(scratch: &mut Vec<Endpoint>) -> Arc<[Endpoint]> {
        scratch.sort_by(|a, b| a.address.cmp(&b.address));
        scratch.drain(..).collect()
    }

    /// The endpoints of several runs, each already in address order and each of one
    /// distinct cluster (as [`Endpoints::run`] makes them): the runs are put in cluster
    /// order and shared, not copied.
    pub fn from_runs(mut runs: Vec<Arc<[Endpoint]>>) -> Self {
        runs.retain(|r| !r.is_empty());
        runs.sort_by(|a, b| a[0].origin.cluster.cmp(&b[0].origin.cluster));
        debug_assert!(
            runs.windows(2)
                .all(|w| w[0][0].origin.cluster != w[1][0].origin.cluster),
            "two runs of one cluster"
        );
        let len = runs.iter().map(|r| r.len()).sum();
        Endpoints { runs, len }
    }

    /// `endpoints` put in (cluster, address) order, as one run (a stable sort: what was
    /// first among equals stays first).
    pub fn sorted(mut endpoints: Vec<Endpoint>) -> Self {
        endpoints
            .sort_by(|a, b| (&a.origin.cluster, &a.address).cmp(&(&b.origin.cluster, &b.address)));
        endpoints.into_iter().collect()
    }

    /// Adds `more` and puts the whole in (cluster, address) order, as [`Endpoints::sorted`].
    pub fn add(&mut self, more: impl IntoIterator<Item = Endpoint>) {
        *self = Self::sorted(self.iter().cloned().chain(more).collect());
    }
}

/// The endpoints in the order given, as one run.
impl FromIterator<Endpoint> for Endpoints {
    fn from_iter<I: IntoIterator<Item = Endpoint>>(iter: I) -> Self {
        let run: Arc<[Endpoint]> = iter.into_iter().collect();
        let len = run.len();
        Endpoints {
            runs: if len == 0 { Vec::new() } else { vec![run] },
            len,
        }
    }
}

impl<'a> IntoIterator for &'a Endpoints {
    type Item = &'a Endpoint;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Arc<[Endpoint]>>,
        &'a [Endpoint],
        fn(&'a Arc<[Endpoint]>) -> &'a [Endpoint],
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.runs.iter().flat_map(|r| &**r)
    }
}

impl std::ops::Index<usize> for Endpoints {
    type Output = Endpoint;

    fn index(&self, i: usize) -> &Endpoint {
        match self.get(i) {
            Some(e) => e,
            None => panic!("endpoint {i} of {}", self.len),
        }
    }
}

/// Equal when they hold equal endpoints in the same order, however they are split in runs.
impl PartialEq for Endpoints {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && (self
                .runs
                .iter()
                .zip(&other.runs)
                .all(|(a, b)| Arc::ptr_eq(a, b))
                && self.runs.len() == other.runs.len()
                || self.iter().eq(other.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(cluster: &str, address: &str, weight: u32) -> Endpoint {
        Endpoint {
            address: Address::parse(address),
            origin: Arc::new(EndpointOrigin {
                cluster: cluster.into(),
                weight,
                ..EndpointOrigin::default()
            }),
        }
    }

    fn listed(e: &Endpoints) -> Vec<(String, String, u32)> {
        e.iter()
            .map(|e| {
                (
                    e.origin.cluster.to_string(),
                    e.address.to_string(),
                    e.weight(),
                )
            })
            .collect()
    }

    #[test]
    fn runs_are_shared_in_cluster_order_and_read_as_one_list() {
        let b = Endpoints::run(&mut vec![ep("b", "10.0.0.9", 1), ep("b", "10.0.0.1", 1)]);
        let a = Endpoints::run(&mut vec![ep("a", "10.0.0.5", 1)]);
        let empty = Endpoints::run(&mut Vec::new());
        let all = Endpoints::from_runs(vec![b.clone(), empty, a.clone()]);
        assert_eq!(all.len(), 3);
        assert_eq!(all.runs().len(), 2);
        assert!(Arc::ptr_eq(&all.runs()[0], &a) && Arc::ptr_eq(&all.runs()[1], &b));
        let want = vec![
            ("a".to_string(), "10.0.0.5".to_string(), 1),
            ("b".to_string(), "10.0.0.1".to_string(), 1),
            ("b".to_string(), "10.0.0.9".to_string(), 1),
        ];
        assert_eq!(listed(&all), want);
        assert_eq!(all[2].address, *"10.0.0.9");
        assert!(all.get(3).is_none());
        assert_eq!((&all).into_iter().count(), 3);
    }

    #[test]
    fn equal_endpoints_are_equal_however_they_are_split() {
        let runs = Endpoints::from_runs(vec![
            Endpoints::run(&mut vec![ep("a", "1", 1)]),
            Endpoints::run(&mut vec![ep("b", "2", 1)]),
        ]);
        let one: Endpoints = vec![ep("a", "1", 1), ep("b", "2", 1)].into_iter().collect();
        assert_eq!(runs, one);
        let other: Endpoints = vec![ep("a", "1", 1), ep("b", "2", 7)].into_iter().collect();
        assert_ne!(runs, other);
        assert_ne!(runs, Endpoints::new());
        assert_eq!(runs.clone(), runs);
    }

    #[test]
    fn adding_keeps_cluster_address_order_and_the_first_of_equals_first() {
        let mut e = Endpoints::from_runs(vec![Endpoints::run(&mut vec![ep("b", "2", 1)])]);
        e.add([ep("a", "9", 1), ep("b", "2", 5), ep("b", "1", 1)]);
        assert_eq!(
            listed(&e),
            vec![
                ("a".to_string(), "9".to_string(), 1),
                ("b".to_string(), "1".to_string(), 1),
                ("b".to_string(), "2".to_string(), 1),
                ("b".to_string(), "2".to_string(), 5),
            ]
        );
    }

    #[test]
    fn addresses_order_ips_by_number_before_names_and_equal_their_text() {
        let mut a = ["b.example", "10.0.0.10", "a.example", "::1", "10.0.0.9"].map(Address::parse);
        a.sort();
        let text: Vec<String> = a.iter().map(Address::to_string).collect();
        assert_eq!(
            text,
            ["10.0.0.9", "10.0.0.10", "::1", "a.example", "b.example"]
        );
        assert_eq!(a[0].ip(), Some(IpAddr::from([10, 0, 0, 9])));
        assert_eq!(a[3].ip(), None);
        assert!(a[2] == *"0:0::1" && a[2] != *"::2" && a[3] == *"a.example");
    }

    #[test]
    fn an_endpoint_is_an_address_and_a_shared_origin() {
        // A cluster holds one per pod: its weight is in the shared origin, so that ten
        // endpoints fill 336 bytes, not 416.
        assert_eq!(std::mem::size_of::<Address>(), 24);
        assert_eq!(std::mem::size_of::<Endpoint>(), 32);
        assert_eq!(ep("c", "10.0.0.1", 3).weight(), 3);
        assert_eq!(EndpointOrigin::default().weight, 1, "a pod's");
    }
}
