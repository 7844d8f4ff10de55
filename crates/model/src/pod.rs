//! What the mesh reads from a Pod: its network, service account and identity, and where a
//! cluster's pods are found again when a proxy connects.
//!
//! A snapshot keeps no per-pod record: the registry already holds every Pod, so a proxy's
//! pod is looked up there (one binary search) and read with the same rules the endpoint
//! build uses.

use crate::labels::NETWORK_LABEL;
use crate::objects::ClusterObjects;
use isthmus_api::kube::Pod;
use isthmus_api::{KeyRef, Object};
use std::net::IpAddr;
use std::sync::Arc;

/// A pod the registries know, as the mesh reads it: a proxy's labels and identity, an
/// endpoint's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// IP.
    pub ip: std::net::IpAddr,
    /// Labels (the Pod object's own map).
    pub labels: Arc<isthmus_api::Labels>,
    /// Service account (`default` when the pod names none).
    pub service_account: Arc<str>,
    /// The SPIFFE identity of that service account.
    pub identity: Arc<str>,
    /// Network.
    pub network: Arc<str>,
    /// Locality (`region/zone/subzone`; empty when unknown).
    pub locality: Arc<str>,
}

/// What a pod's network is resolved against, besides its own label.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetworkRules<'a> {
    /// The namespace's `topology.istio.io/network` label.
    pub namespace_network: Option<&'a str>,
    /// The cluster's network (meshNetworks `fromRegistry` or the command line).
    pub cluster_network: &'a str,
    /// meshNetworks `fromCidr` rules, in order: (CIDR, network).
    pub cidrs: &'a [(String, String)],
}

/// The network of pod `p` at `ip`, in Istio's order: pod label, namespace label,
/// `fromRegistry`, `fromCidr`; empty when none says.
pub(crate) fn network<'a>(p: &'a Pod, ip: IpAddr, rules: &NetworkRules<'a>) -> &'a str {
    if let Some(n) = p.metadata.labels.get(NETWORK_LABEL) {
        return n;
    }
    if let Some(n) = rules.namespace_network {
        return n;
    }
    if !rules.cluster_network.is_empty() {
        return rules.cluster_network;
    }
    rules
        .cidrs
        .iter()
        .find(|(c, _)| cidr_contains(c, ip))
        .map(|(_, n)| n.as_str())
        .unwrap_or_default()
}

/// Whether `ip` is inside `cidr` (`10.30.0.0/16`).
fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

/// The pod's service account (`default` when it names none).
pub(crate) fn service_account(p: &Pod) -> &str {
    match &*p.spec.service_account_name {
        "" => "default",
        sa => sa,
    }
}

/// The SPIFFE identity of a service account.
/// The locality of pod `p`, in Istio's order: its own labels (`istio-locality`, or the
/// topology labels the lab puts on pods), else the topology labels of the Node it runs on.
pub(crate) fn locality<'a>(
    p: &Pod,
    node_localities: &'a std::collections::BTreeMap<String, Arc<str>>,
) -> std::borrow::Cow<'a, str> {
    let own = crate::labels::locality_of(&p.metadata.labels);
    if !own.is_empty() {
        return own.into();
    }
    node_localities
        .get(&*p.spec.node_name)
        .map(|l| std::borrow::Cow::Borrowed(&**l))
        .unwrap_or_default()
}

pub(crate) fn spiffe(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// One cluster's pods, as a snapshot finds them: the registry's objects sorted by namespace
/// (shared with the build cache) and the rules their networks follow.
#[derive(Debug, Clone)]
pub struct ClusterPods {
    /// The cluster's objects.
    pub objects: Arc<ClusterObjects>,
    /// The cluster's network (meshNetworks `fromRegistry` or the command line).
    pub network: String,
    /// meshNetworks `fromCidr` rules, in order: (CIDR, network).
    pub cidrs: Arc<[(String, String)]>,
}

impl ClusterPods {
    /// The pod `name` in `namespace`, if it has an IP.
    pub fn get(&self, namespace: &str, name: &str, trust_domain: &str) -> Option<PodInfo> {
        let in_ns = self.objects.by_namespace.get(namespace)?;
        // A namespace's objects are in key order: kind, then name.
        let key = KeyRef {
            kind: "Pod",
            namespace,
            name,
        };
        let i = in_ns.binary_search_by(|r| KeyRef::of(r).cmp(&key)).ok()?;
        let Object::Pod(p) = &in_ns[i].object else {
            return None;
        };
        self.info(p, trust_domain)
    }

    /// Every pod with an IP, by namespace and name.
    pub fn iter<'a>(
        &'a self,
        trust_domain: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str, PodInfo)> + 'a {
        self.pods().filter_map(move |p| {
            let info = self.info(p, trust_domain)?;
            Some((&*p.metadata.namespace, &*p.metadata.name, info))
        })
    }

    /// The pods of `namespace` that have an IP, with what the mesh reads from them.
    pub fn in_namespace<'a>(
        &'a self,
        namespace: &str,
        trust_domain: &'a str,
    ) -> impl Iterator<Item = (&'a Pod, PodInfo)> + 'a {
        self.objects
            .by_namespace
            .get(namespace)
            .into_iter()
            .flat_map(|in_ns| in_ns.iter())
            .filter_map(move |r| match &r.object {
                Object::Pod(p) => Some((p, self.info(p, trust_domain)?)),
                _ => None,
            })
    }

    /// The pods with a host name and a subdomain (a StatefulSet's): (namespace, hostname,
    /// subdomain, IP), what names them in DNS.
    pub fn named_in_dns(&self) -> impl Iterator<Item = (&str, &str, &str, IpAddr)> + '_ {
        self.pods().filter_map(|p| {
            let ip = p.status.pod_ip()?;
            let d = p.spec.dns_name.as_deref()?;
            Some((&*p.metadata.namespace, &*d.hostname, &*d.subdomain, ip))
        })
    }

    /// The pod whose IP is `ip`, if any (a walk over the cluster's pods).
    pub fn by_ip(&self, ip: &str, trust_domain: &str) -> Option<PodInfo> {
        let ip: IpAddr = ip.parse().ok()?;
        self.pods()
            .find(|p| p.status.pod_ip() == Some(ip))
            .and_then(|p| self.info(p, trust_domain))
    }

    fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.objects
            .by_namespace
            .values()
            .flat_map(|in_ns| in_ns.iter())
            .filter_map(|r| match &r.object {
                Object::Pod(p) => Some(p),
                _ => None,
            })
    }

    fn info(&self, p: &Pod, trust_domain: &str) -> Option<PodInfo> {
        let ip = p.status.pod_ip()?;
        let namespace = &*p.metadata.namespace;
        let rules = NetworkRules {
            namespace_network: self
                .objects
                .namespace_networks
                .get(namespace)
                .map(String::as_str),
            cluster_network: &self.network,
            cidrs: &self.cidrs,
        };
        let service_account = service_account(p);
        Some(PodInfo {
            ip,
            labels: p.metadata.labels.clone(),
            service_account: service_account.into(),
            identity: spiffe(trust_domain, namespace, service_account).into(),
            network: network(p, ip, &rules).into(),
            locality: locality(p, &self.objects.node_localities).into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_registry::ClusterConfig;

    fn pods(yaml: &str, network: &str, cidrs: &[(&str, &str)]) -> ClusterPods {
        let config = Arc::new(ClusterConfig::with_resources(
            "c1",
            isthmus_api::load_str(yaml, None, "default").resources,
        ));
        ClusterPods {
            objects: Arc::new(crate::objects::sort_objects(&config)),
            network: network.into(),
            cidrs: cidrs
                .iter()
                .map(|(c, n)| (c.to_string(), n.to_string()))
                .collect(),
        }
    }

    const OBJECTS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {topology.istio.io/network: nb}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: a}\nspec: {selector: {app: a}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-1, namespace: a, labels: {app: a}}\nspec: {serviceAccountName: sa}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-0, namespace: a, labels: {app: a, topology.istio.io/network: own}}\nstatus: {podIP: 10.0.0.2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a-2, namespace: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: z, namespace: a}\nstatus: {podIP: 10.9.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b-0, namespace: b}\nstatus: {podIP: 10.0.1.1}\n";

    #[test]
    fn finds_a_pod_by_name_or_ip_and_reads_it_as_the_build_does() {
        let pods = pods(OBJECTS, "", &[("10.9.0.0/16", "n9")]);
        let a1 = pods.get("a", "a-1", "td").expect("a-1");
        assert_eq!(a1.ip.to_string(), "10.0.0.1");
        assert_eq!(a1.labels.get("app").map(String::as_str), Some("a"));
        assert_eq!(&*a1.service_account, "sa");
        assert_eq!(&*a1.identity, "spiffe://td/ns/a/sa/sa");
        assert_eq!(&*a1.network, "", "no label, no cluster network, no CIDR");
        // The pod label wins; then the namespace label; then the CIDR rules.
        assert_eq!(&*pods.get("a", "a-0", "td").expect("a-0").network, "own");
        assert_eq!(&*pods.get("b", "b-0", "td").expect("b-0").network, "nb");
        assert_eq!(&*pods.get("a", "z", "td").expect("z").network, "n9");
        assert_eq!(
            &*pods.get("a", "z", "td").expect("z").service_account,
            "default"
        );
        // No IP, no such pod, a Service's name, another namespace: nothing.
        assert!(pods.get("a", "a-2", "td").is_none());
        assert!(pods.get("a", "a-3", "td").is_none());
        assert!(pods.get("a", "a", "td").is_none());
        assert!(pods.get("c", "a-1", "td").is_none());
        assert_eq!(
            pods.by_ip("10.0.1.1", "td").map(|p| p.identity),
            Some("spiffe://td/ns/b/sa/default".into())
        );
        assert!(pods.by_ip("10.0.0.9", "td").is_none());
        let in_a: Vec<_> = pods
            .in_namespace("a", "td")
            .map(|(p, _)| &*p.metadata.name)
            .collect();
        assert_eq!(in_a, ["a-0", "a-1", "z"], "a-2 has no IP");
        assert_eq!(pods.in_namespace("c", "td").count(), 0);
        let all: Vec<_> = pods.iter("td").map(|(ns, n, _)| (ns, n)).collect();
        assert_eq!(all, [("a", "a-0"), ("a", "a-1"), ("a", "z"), ("b", "b-0")]);
        // The cluster's own network comes before the CIDR rules.
        let with_network = self::pods(OBJECTS, "n1", &[("10.9.0.0/16", "n9")]);
        assert_eq!(&*with_network.get("a", "z", "td").expect("z").network, "n1");
    }
}
