//! The immutable snapshot and the lookups generation needs.

use crate::host::{fqdn, host_matches, specificity};
use crate::pod::{ClusterPods, PodInfo};
use crate::policy::MtlsPolicies;
use crate::proxy::{Demand, NodeId, Proxy};
use crate::service::Service;
use isthmus_api::mesh::{MeshConfig, MeshNetworks};
use isthmus_api::networking::{DestinationRule, Gateway, VirtualService};
use isthmus_api::Diagnostic;
use isthmus_registry::ClusterConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a snapshot is built from.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInput {
    /// The cluster this control plane runs in; its Istio configuration is the one in force.
    pub local_cluster: String,
    /// The local cluster's network.
    pub local_network: String,
    /// Networks of other clusters given on the command line (meshNetworks `fromRegistry`
    /// also sets them).
    pub cluster_networks: BTreeMap<String, String>,
    /// Every registry's objects (shared with the registries).
    pub clusters: Vec<Arc<ClusterConfig>>,
    /// Where ServiceEntry hosts without `addresses` get their VIP from.
    pub vip_range: VipRange,
    /// Whether services are reachable from other clusters unless they say otherwise.
    pub export_default: crate::automation::ExportDefault,
    /// The egress gateway's service host: sidecars send HTTP traffic for MESH_EXTERNAL
    /// services to it, over mesh mTLS, and it forwards the traffic with mTLS of its own (seed
    /// 004: "traffic from a cluster to a remote cluster always traverses through the local
    /// egress gateway").
    pub egress_gateway: Option<String>,
    /// The JWKS documents fetched for the RequestAuthentications' `jwksUri`s.
    pub jwks: crate::policy::FetchedKeys,
    /// The gateways the control plane's probes found down.
    pub gateway_health: crate::health::GatewayHealth,
}

/// An IPv4 range that automatic VIPs are allocated from (Istio's default: 240.240.0.0/16,
/// a reserved block that is never routed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipRange {
    /// First address of the block.
    pub base: std::net::Ipv4Addr,
    /// Prefix length, 8 to 30.
    pub prefix: u8,
}

impl Default for VipRange {
    fn default() -> Self {
        VipRange {
            base: std::net::Ipv4Addr::new(240, 240, 0, 0),
            prefix: 16,
        }
    }
}

/// A VIP range that could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "VIP range `{0}`: expected an IPv4 CIDR with a prefix from 8 to 30, such as 240.240.0.0/16"
)]
pub struct VipRangeError(String);

impl std::str::FromStr for VipRange {
    type Err = VipRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VipRangeError(s.to_string());
        let (ip, prefix) = s.split_once('/').ok_or_else(err)?;
        let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if !(8..=30).contains(&prefix) {
            return Err(err());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(VipRange {
            base: std::net::Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl VipRange {
    /// Allocates stable addresses for `hosts` (any order), avoiding `taken`: each host
    /// hashes to a slot and probes forward on collision, so a host keeps its address when
    /// others come and go (unless it had collided).
    pub fn allocate<'a>(
        &self,
        hosts: impl IntoIterator<Item = &'a str>,
        taken: &std::collections::BTreeSet<std::net::Ipv4Addr>,
    ) -> BTreeMap<String, std::net::Ipv4Addr> {
        let size = 1u32 << (32 - self.prefix);
        let base = u32::from(self.base);
        let mut used = taken.clone();
        let mut hosts: Vec<&str> = hosts.into_iter().collect();
        hosts.sort_unstable();
        hosts.dedup();
        let mut out = BTreeMap::new();
        for host in hosts {
            // FNV-1a: fixed across releases and platforms, unlike std's hasher.
            let mut h: u32 = 0x811c_9dc5;
            for b in host.bytes() {
                h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
            // Usable offsets are 1..size-1 (no network or broadcast address).
            let usable = size - 2;
            let start = h % usable;
            for i in 0..usable {
                let ip = std::net::Ipv4Addr::from(base + 1 + (start + i) % usable);
                if used.insert(ip) {
                    out.insert(host.to_string(), ip);
                    break;
                }
            }
        }
        out
    }
}

/// Istio's default config root namespace: its rules apply mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// Whether an object of namespace `own` with `export_to` is visible in namespace `to`
/// (empty or `*`: everywhere; `.`: its own namespace; otherwise the namespaces listed).
pub fn exported_to(export_to: &[String], own: &str, to: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == to || (e == "." && own == to))
}

/// A gateway address through which a network is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkGateway {
    /// Address.
    pub address: String,
    /// Port (15443).
    pub port: u32,
    /// Locality.
    pub locality: String,
}

/// A rule with the namespace it was written in.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoped<T> {
    /// Namespace of the rule.
    pub namespace: String,
    /// The rule.
    pub rule: T,
}

/// The whole mesh at one version.
#[derive(Debug, Clone, Default)]
pub struct MeshSnapshot {
    /// Increases on every rebuild.
    pub version: u64,
    /// The control plane's cluster.
    pub local_cluster: String,
    /// The control plane's network.
    pub local_network: String,
    /// Mesh config.
    pub mesh: MeshConfig,
    /// Mesh networks.
    pub networks: MeshNetworks,
    /// Services by host name.
    pub services: BTreeMap<String, Arc<Service>>,
    /// Each cluster's pods, looked up in its registry's objects (no copy per pod).
    pub pods: BTreeMap<String, ClusterPods>,
    /// How much of the previous build this one reused.
    pub reuse: crate::incremental::Reuse,
    /// Mesh VirtualService hosts that name no service, with the index of their
    /// VirtualService (see [`MeshSnapshot::serviceless_mesh_hosts`]).
    pub serviceless: Vec<(String, usize)>,
    /// DestinationRules with their namespaces.
    pub destination_rules: Vec<Scoped<DestinationRule>>,
    /// VirtualServices with their namespaces.
    pub virtual_services: Vec<Scoped<VirtualService>>,
    /// Gateways with their namespaces.
    pub gateways: Vec<Scoped<Gateway>>,
    /// WorkloadEntries of the local cluster (VMs): endpoints of what selects them, and how
    /// a VM's proxy, which has no Pod, is found.
    pub workload_entries: Vec<isthmus_api::networking::WorkloadEntry>,
    /// The Secrets Gateways name in `credentialName` (and their `NAME-cacert` Secrets), by
    /// `namespace/name`, read from the local cluster.
    pub tls_credentials: BTreeMap<String, Arc<crate::credential::TlsCredential>>,
    /// Sidecar resources of the local cluster (egress scoping).
    pub sidecars: Vec<Scoped<isthmus_api::networking::Sidecar>>,
    /// Gateways of each network.
    pub network_gateways: BTreeMap<String, Vec<NetworkGateway>>,
    /// mTLS policies.
    pub mtls: MtlsPolicies,
    /// Authorization policies.
    pub authz: crate::policy::AuthzPolicies,
    /// RequestAuthentications (JWT).
    pub request_authn: crate::policy::JwtPolicies,
    /// The key sets fetched for them.
    pub jwks: crate::policy::FetchedKeys,
    /// The gateways found down: their endpoints are sent UNHEALTHY.
    pub gateway_health: crate::health::GatewayHealth,
    /// Problems found while building (including every registry's).
    pub diagnostics: Vec<Diagnostic>,
    /// The egress gateway's service host, when external HTTP traffic is funnelled through it.
    pub egress_gateway: Option<String>,
    /// Which services each (cluster, address) is an endpoint of, made from `services` the
    /// first time a proxy's inbound side is generated.
    pub endpoint_index: EndpointIndex,
}

/// Every endpoint's (cluster, address) hash with its service, sorted by hash (16 bytes per
/// endpoint): the services a proxy is an endpoint of, found without walking 100,000
/// endpoints per proxy. Made once per snapshot, when first asked.
#[derive(Debug, Clone, Default)]
pub struct EndpointIndex(std::sync::OnceLock<Vec<(u64, Arc<Service>)>>);

fn endpoint_key(cluster: &str, address: &crate::service::Address) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (cluster, address).hash(&mut h);
    h.finish()
}

impl MeshSnapshot {
    /// The certificate a gateway in `namespace` presents for `credentialName: name`, with
    /// the client CA from the same Secret or from `name-cacert`; `None` when the namespace has
    /// no such Secret (Istio's rule: a gateway reads Secrets of its own namespace only).
    pub fn tls_credential(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<crate::credential::TlsCredential> {
        let own = self.tls_credentials.get(&format!("{namespace}/{name}"))?;
        if own.certificate_chain.is_empty() {
            return None;
        }
        let mut c = (**own).clone();
        if c.ca_certificates.is_none() {
            c.ca_certificates = self
                .tls_credentials
                .get(&format!(
                    "{namespace}/{name}{}",
                    crate::credential::CA_SECRET_SUFFIX
                ))
                .and_then(|ca| ca.ca_certificates.clone());
        }
        Some(c)
    }

    /// The SPIFFE identity of a service account.
    pub fn spiffe(&self, namespace: &str, service_account: &str) -> String {
        crate::pod::spiffe(&self.mesh.trust_domain, namespace, service_account)
    }

    /// The pod `name` in `cluster`/`namespace`, if the registry has it with an IP.
    pub fn pod(&self, cluster: &str, namespace: &str, name: &str) -> Option<PodInfo> {
        self.pods
            .get(cluster)?
            .get(namespace, name, &self.mesh.trust_domain)
    }

    /// Finds the proxy for a node id and its metadata. Registry data wins over metadata for
    /// labels, identity and network: a proxy cannot claim to be what it is not.
    pub fn proxy(&self, id: &NodeId, metadata: &isthmus_api::NodeMetadata) -> Proxy {
        let cluster = metadata
            .cluster_id
            .clone()
            .unwrap_or_else(|| self.local_cluster.clone());
        let pod = self.pod(&cluster, &id.namespace, &id.pod);
        // A VM has no Pod: its WorkloadEntry (same namespace, same address) is what the
        // registry knows of it.
        let entry = match &pod {
            None if cluster == self.local_cluster => {
                crate::workload::entry_at(&self.workload_entries, &id.namespace, &id.ip)
                    .map(|we| &we.spec)
            }
            _ => None,
        };
        let labels: BTreeMap<String, String> = match (&pod, entry) {
            (Some(p), _) => p.labels.to_map(),
            (None, Some(we)) => we.labels.clone(),
            (None, None) => metadata.labels.clone(),
        };
        let locality = match (&pod, entry) {
            (Some(p), _) => p.locality.to_string(),
            (None, Some(we)) => we.locality.clone().unwrap_or_default(),
            (None, None) => {
                crate::labels::locality_of(&isthmus_api::Labels::from(metadata.labels.clone()))
            }
        };
        let service_account = pod
            .as_ref()
            .map(|p| p.service_account.to_string())
            .or_else(|| entry.and_then(|we| we.service_account.clone()))
            .or_else(|| metadata.service_account.clone())
            .unwrap_or_else(|| "default".into());
        let network = pod
            .filter(|p| !p.network.is_empty())
            .map(|p| p.network.to_string())
            .or_else(|| entry.and_then(|we| we.network.clone()))
            .or_else(|| metadata.network.clone())
            .unwrap_or_else(|| self.local_network.clone());
        Proxy {
            id: id.clone(),
            cluster,
            network,
            labels,
            locality,
            service_account,
            interception: metadata.interception,
            router_mode_sni_dnat: metadata.router_mode == Some(isthmus_api::RouterMode::SniDnat),
            network_views: metadata.requested_network_view.clone(),
            demand: None,
        }
    }

    /// The DestinationRule for `host` as seen from `proxy_ns`, in Istio's order: the most
    /// specific match among the rules of the proxy's namespace; else among those of the
    /// service's namespace exported to the proxy's; else among those of the root namespace
    /// (`istio-system`) exported to it. A rule in any other namespace does not apply. A rule
    /// without `exportTo` has the mesh config's `defaultDestinationRuleExportTo` (everywhere
    /// when that is empty too).
    pub fn destination_rule(&self, host: &str, proxy_ns: &str) -> Option<&Scoped<DestinationRule>> {
        let matching = |ns: &str, exported_only: bool| {
            self.destination_rules
                .iter()
                .filter(move |d| d.namespace == ns)
                .filter(move |d| {
                    let export_to = match d.rule.spec.export_to.as_slice() {
                        [] => self.mesh.default_destination_rule_export_to.as_slice(),
                        own => own,
                    };
                    !exported_only || exported_to(export_to, &d.namespace, proxy_ns)
                })
                .filter(|d| host_matches(&fqdn(&d.rule.spec.host, &d.namespace), host))
                .max_by_key(|d| specificity(&fqdn(&d.rule.spec.host, &d.namespace)))
        };
        let service_ns = self.services.get(host).map(|s| s.namespace.as_str());
        matching(proxy_ns, false)
            .or_else(|| service_ns.and_then(|ns| matching(ns, true)))
            .or_else(|| matching(ROOT_NAMESPACE, true))
    }

    /// Whether `proxy` sees `svc`: a sidecar sees the services exported to its namespace
    /// (`exportTo`, else the mesh config's `defaultServiceExportTo`). Gateways are not
    /// filtered by namespace: what an east-west gateway serves is decided by the service's
    /// cross-cluster export (a Service annotated `networking.istio.io/exportTo: "."` is not
    /// exported, see `automation::exported`).
    pub fn service_visible(&self, svc: &Service, proxy: &Proxy) -> bool {
        if proxy.id.kind != crate::proxy::NodeKind::Sidecar {
            return true;
        }
        let export_to = match svc.export_to.as_slice() {
            [] => self.mesh.default_service_export_to.as_slice(),
            own => own,
        };
        exported_to(export_to, &svc.namespace, &proxy.id.namespace)
    }

    /// Whether VirtualService `vs` applies to proxies in `proxy_ns`: its `exportTo`, else the
    /// mesh config's `defaultVirtualServiceExportTo`, names that namespace.
    pub fn virtual_service_visible(&self, vs: &Scoped<VirtualService>, proxy_ns: &str) -> bool {
        let export_to = match vs.rule.spec.export_to.as_slice() {
            [] => self.mesh.default_virtual_service_export_to.as_slice(),
            own => own,
        };
        exported_to(export_to, &vs.namespace, proxy_ns)
    }

    /// VirtualServices bound to the mesh (no `gateways`, or `mesh` among them) that match
    /// `host` and are exported to `proxy_ns`, most specific first.
    pub fn mesh_virtual_services(
        &self,
        host: &str,
        proxy_ns: &str,
    ) -> Vec<&Scoped<VirtualService>> {
        let mut v: Vec<_> = self
            .virtual_services
            .iter()
            .filter(|vs| self.virtual_service_visible(vs, proxy_ns))
            .filter(|vs| {
                vs.rule.spec.gateways.is_empty()
                    || vs.rule.spec.gateways.iter().any(|g| g == "mesh")
            })
            .filter(|vs| {
                vs.rule
                    .spec
                    .hosts
                    .iter()
                    .any(|h| host_matches(&fqdn(h, &vs.namespace), host))
            })
            .collect();
        v.sort_by_key(|vs| {
            std::cmp::Reverse(
                vs.rule
                    .spec
                    .hosts
                    .iter()
                    .filter(|h| host_matches(&fqdn(h, &vs.namespace), host))
                    .map(|h| specificity(h))
                    .max()
                    .unwrap_or(0),
            )
        });
        v
    }

    /// VirtualServices bound to the Gateway `gw_namespace/gw_name` by their `gateways` and
    /// exported to `proxy_ns`, the gateway workload's namespace.
    pub fn gateway_virtual_services(
        &self,
        gw_namespace: &str,
        gw_name: &str,
        proxy_ns: &str,
    ) -> Vec<&Scoped<VirtualService>> {
        self.virtual_services
            .iter()
            .filter(|vs| self.virtual_service_visible(vs, proxy_ns))
            .filter(|vs| {
                binds_gateway(&vs.namespace, &vs.rule.spec.gateways, gw_namespace, gw_name)
            })
            .collect()
    }

    /// Hosts of mesh-bound VirtualServices that name no service (seed 004's
    /// `*.svc.b.remote`), with their VirtualService: sidecars route them on port 80, as Istio
    /// does for such hosts.
    pub fn serviceless_mesh_hosts(&self) -> Vec<(String, &Scoped<VirtualService>)> {
        self.serviceless
            .iter()
            .filter_map(|(h, i)| Some((h.clone(), self.virtual_services.get(*i)?)))
            .collect()
    }

    /// Finds the hosts [`MeshSnapshot::serviceless_mesh_hosts`] lists, once per build (the
    /// generation of every sidecar asks for them).
    pub(crate) fn find_serviceless_hosts(&mut self) {
        let mut out: Vec<(String, usize)> = Vec::new();
        for (i, vs) in self.virtual_services.iter().enumerate() {
            let spec = &vs.rule.spec;
            if !(spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh")) {
                continue;
            }
            for h in &spec.hosts {
                let host = fqdn(h, &vs.namespace);
                let named = if host.starts_with('*') {
                    self.services.keys().any(|s| host_matches(&host, s))
                } else {
                    self.services.contains_key(&host)
                };
                if host == "*" || named {
                    continue;
                }
                if !out.iter().any(|(o, _)| o == &host) {
                    out.push((host, i));
                }
            }
        }
        self.serviceless = out;
    }

    /// The `namespace/host` patterns that scope `proxy`'s outbound configuration, from the
    /// Sidecar that applies to it (one selecting its labels, else its namespace's, else the
    /// mesh-wide one in istio-system), or `None` when no Sidecar applies.
    ///
    /// Where no Sidecar applies, a sidecar with a [`crate::proxy::Demand`] (on-demand
    /// scoping) is scoped to what its workload asked for: a user's Sidecar always wins.
    pub fn egress_scope(&self, proxy: &Proxy) -> Option<Vec<(String, String)>> {
        let Some(chosen) = self.sidecar_for(proxy) else {
            let demand = proxy.demand.as_ref()?;
            return (proxy.id.kind == crate::proxy::NodeKind::Sidecar)
                .then(|| self.demand_scope(proxy, demand));
        };
        // A Sidecar without egress listeners scopes nothing (Istio's default `*/*`).
        if chosen.rule.spec.egress.is_empty() {
            return None;
        }
        Some(
            chosen
                .rule
                .spec
                .egress
                .iter()
                .flat_map(|e| e.hosts.iter())
                .filter_map(|h| {
                    let (ns, host) = h.split_once('/')?;
                    let ns = match ns {
                        "." => chosen.namespace.clone(),
                        other => other.to_string(),
                    };
                    Some((ns, host.to_string()))
                })
                .collect(),
        )
    }

    /// Whether the egress gateway carries `port` of `svc` (for any proxy): an HTTP port of
    /// a MESH_EXTERNAL service that has addresses to forward to (not the gateway itself, not
    /// an original-destination one).
    pub fn funnel_carries(&self, svc: &Service, port: u32) -> bool {
        self.egress_gateway.is_some()
            && !svc.mesh_internal()
            && svc.resolution != isthmus_api::enums::Resolution::None
            && self.egress_gateway.as_deref() != Some(svc.hostname.as_str())
            && svc.port(port).is_some_and(|p| p.protocol.is_http())
    }

    /// Whether calls from `proxy` to hosts the mesh does not know are refused instead of
    /// passed through (REGISTRY_ONLY): its Sidecar's `outboundTrafficPolicy` if it sets one,
    /// else the mesh config's.
    pub fn registry_only(&self, proxy: &Proxy) -> bool {
        match self
            .sidecar_for(proxy)
            .and_then(|s| s.rule.spec.outbound_traffic_policy.as_ref())
        {
            Some(o) => o.mode == isthmus_api::enums::OutboundTrafficMode::RegistryOnly,
            None => self.mesh.registry_only(),
        }
    }

    /// The ingress listeners of the Sidecar that applies to `proxy`, when it has any: then
    /// they are the workload's inbound ports.
    pub fn sidecar_ingress(
        &self,
        proxy: &Proxy,
    ) -> Option<&[isthmus_api::networking::SidecarIngress]> {
        self.sidecar_for(proxy)
            .map(|s| s.rule.spec.ingress.as_slice())
            .filter(|i| !i.is_empty())
    }

    /// The Sidecar that applies to `proxy`, as Istio chooses: one of its namespace whose
    /// selector matches it, else its namespace's without a selector, else the root
    /// namespace's without a selector.
    pub fn sidecar_for(&self, proxy: &Proxy) -> Option<&Scoped<isthmus_api::networking::Sidecar>> {
        let selects = |s: &Scoped<isthmus_api::networking::Sidecar>| {
            s.rule.spec.workload_selector.as_ref().is_some_and(|w| {
                !w.labels.is_empty() && w.labels.iter().all(|(k, v)| proxy.labels.get(k) == Some(v))
            })
        };
        let own = |s: &&Scoped<isthmus_api::networking::Sidecar>| s.namespace == proxy.id.namespace;
        let chosen = self
            .sidecars
            .iter()
            .filter(own)
            .find(|s| selects(s))
            .or_else(|| {
                self.sidecars
                    .iter()
                    .filter(own)
                    .find(|s| s.rule.spec.workload_selector.is_none())
            })
            .or_else(|| {
                self.sidecars.iter().find(|s| {
                    s.namespace == ROOT_NAMESPACE && s.rule.spec.workload_selector.is_none()
                })
            });
        chosen
    }

    /// True when `svc` is within `scope` (see [`MeshSnapshot::egress_scope`]).
    pub fn in_scope(scope: &Option<Vec<(String, String)>>, svc: &Service) -> bool {
        match scope {
            None => true,
            Some(patterns) => patterns.iter().any(|(ns, host)| {
                (ns == "*" || ns == &svc.namespace) && host_matches(host, &svc.hostname)
            }),
        }
    }

    /// The services that have an endpoint at `address` in `cluster` (maybe more, on a hash
    /// collision: check each endpoint), each once.
    pub fn services_with_endpoint(
        &self,
        cluster: &str,
        address: &crate::service::Address,
    ) -> Vec<&Arc<Service>> {
        let index = self.endpoint_index.0.get_or_init(|| {
            let mut all: Vec<(u64, Arc<Service>)> = Vec::new();
            for svc in self.services.values() {
                for e in svc.endpoints.iter() {
                    all.push((endpoint_key(&e.origin.cluster, &e.address), svc.clone()));
                }
            }
            all.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.hostname.cmp(&b.1.hostname)));
            all.dedup_by(|a, b| a.0 == b.0 && Arc::ptr_eq(&a.1, &b.1));
            all.shrink_to_fit();
            all
        });
        let key = endpoint_key(cluster, address);
        let start = index.partition_point(|(k, _)| *k < key);
        index[start..]
            .iter()
            .take_while(|(k, _)| *k == key)
            .map(|(_, s)| s)
            .collect()
    }

    /// The services within `scope`, in host order: looked up one by one when every pattern
    /// names an exact host (a sidecar scoped on demand wants a few of 10,000), else every
    /// service tested against the patterns.
    pub fn services_in_scope<'a>(
        &'a self,
        scope: &Option<Vec<(String, String)>>,
    ) -> Vec<&'a Arc<Service>> {
        match scope {
            Some(patterns) if patterns.iter().all(|(_, h)| !h.contains('*')) => {
                let hosts: BTreeSet<&str> = patterns.iter().map(|(_, h)| h.as_str()).collect();
                hosts
                    .into_iter()
                    .filter_map(|h| self.services.get(h))
                    .filter(|svc| MeshSnapshot::in_scope(scope, svc))
                    .collect()
            }
            _ => self
                .services
                .values()
                .filter(|svc| MeshSnapshot::in_scope(scope, svc))
                .collect(),
        }
    }

    /// Whether a host written in `namespace` (a VirtualService host) is within `scope`.
    pub fn host_in_scope(
        scope: &Option<Vec<(String, String)>>,
        namespace: &str,
        host: &str,
    ) -> bool {
        match scope {
            None => true,
            Some(patterns) => patterns.iter().any(|(ns, pattern)| {
                (ns == "*" || ns == namespace)
                    && (host_matches(pattern, host) || host_matches(host, pattern))
            }),
        }
    }

    /// The Gateway resources whose selector matches these pod labels.
    pub fn gateways_for(&self, labels: &BTreeMap<String, String>) -> Vec<&Scoped<Gateway>> {
        self.gateways
            .iter()
            .filter(|g| !g.rule.spec.selector.is_empty())
            .filter(|g| {
                g.rule
                    .spec
                    .selector
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect()
    }
}

/// Whether a VirtualService in `vs_namespace` whose `gateways` are `bindings` is bound to the
/// Gateway `gw_namespace/gw_name` (`NAME` means a Gateway in the VirtualService's namespace,
/// `NAMESPACE/NAME` names it fully).
pub fn binds_gateway(
    vs_namespace: &str,
    bindings: &[String],
    gw_namespace: &str,
    gw_name: &str,
) -> bool {
    bindings.iter().any(|b| match b.split_once('/') {
        Some((ns, name)) => ns == gw_namespace && name == gw_name,
        None => b == gw_name && vs_namespace == gw_namespace,
    })
}

/// On-demand scoping: what a sidecar's workload asked for by name (its agent's DNS saw
/// the name) becomes the same `namespace/host` patterns a `Sidecar`'s `egress.hosts` gives,
/// so generation has one way of scoping. What a route needs goes in with the host it
/// serves: the destinations and mirrors of the VirtualServices of a wanted host (and
/// theirs, to a fixpoint), a StatefulSet pod's headless Service, the wildcard ServiceEntry
/// a name falls under, and the egress gateway when a wanted service leaves through it.
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
                self.services
                    .get(h)
                    .is_some_and(|svc| svc.ports.iter().any(|p| self.funnel_carries(svc, p.number)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn vip_range_parses_and_rejects() {
        let r: VipRange = "240.240.7.9/16".parse().expect("range");
        assert_eq!(r.base, Ipv4Addr::new(240, 240, 0, 0));
        assert_eq!(r, VipRange::default());
        assert!("240.240.0.0".parse::<VipRange>().is_err());
        assert!("240.240.0.0/31".parse::<VipRange>().is_err());
        assert!("nonsense/16".parse::<VipRange>().is_err());
    }

    #[test]
    fn allocation_is_stable_inside_the_range_and_avoids_taken() {
        let r: VipRange = "10.99.0.0/30".parse().expect("range");
        // Two usable addresses: .1 and .2; .1 is taken, so exactly one host gets .2.
        let taken: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(10, 99, 0, 1)].into();
        let got = r.allocate(["a.example", "b.example"], &taken);
        assert_eq!(got.len(), 1);
        assert_eq!(got.values().next(), Some(&Ipv4Addr::new(10, 99, 0, 2)));

        let r = VipRange::default();
        let first = r.allocate(["httpbin.bar.global", "other.ns.global"], &BTreeSet::new());
        let again = r.allocate(
            ["third.ns.global", "other.ns.global", "httpbin.bar.global"],
            &BTreeSet::new(),
        );
        assert_eq!(first["httpbin.bar.global"], again["httpbin.bar.global"]);
        assert_eq!(first["other.ns.global"], again["other.ns.global"]);
        for ip in again.values() {
            assert_eq!(ip.octets()[..2], [240, 240]);
            assert_ne!(ip.octets()[2..], [0, 0]);
            assert_ne!(ip.octets()[2..], [255, 255]);
        }
    }
}
