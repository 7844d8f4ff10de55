//! The topology file: clusters, their networks and address ranges, and which run a control
//! plane and an east-west gateway.

use crate::error::{io, LabError};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::Path;

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an IPv4 CIDR such as 10.10.0.0/16");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=28).contains(&prefix) {
            return Err(format!("`{s}`: the prefix must be between 8 and 28"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        format!("{}/{}", c.addr, c.prefix)
    }
}

impl Cidr {
    /// The `n`th address of the block (n = 1 is the first host).
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u32 << (32 - self.prefix);
        (n > 0 && n < size - 1).then(|| Ipv4Addr::from(u32::from(self.addr) + n))
    }
}

/// One cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// Name (`cluster1`); its manifests are in the folder of that name.
    pub name: String,
    /// Network name (`network1`).
    pub network: String,
    /// Pod addresses.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Cidr,
    /// ClusterIP addresses.
    #[serde(rename = "serviceCIDR", default = "default_service_cidr")]
    pub service_cidr: Cidr,
    /// Runs its own control plane; without one, its proxies use the first cluster's that
    /// has one, through that cluster's east-west gateway.
    #[serde(default = "yes")]
    pub control_plane: bool,
    /// The cluster id its proxies announce (`CLUSTER_ID`), when the control plane knows the
    /// cluster by another name (seed 003: `remote_kubecfg`, the credential Secret's key).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Has an east-west gateway on the WAN (port 15443, AUTO_PASSTHROUGH).
    #[serde(default = "yes")]
    pub east_west_gateway: bool,
    /// `sni-dnat` (default): the east-west gateway passes 15443 through by SNI on its own
    /// (seeds 000/002's install); `standard`: only `Gateway` resources configure it (seed
    /// 003's `helloworld-gateway`).
    #[serde(default)]
    pub east_west_gateway_mode: Option<String>,
    /// Has an egress gateway (`istio-egressgateway`, 15443 SNI passthrough, network view
    /// `external`): the one pod that talks to other clusters' gateways when a ServiceEntry
    /// says so (seed 000's egress variant).
    #[serde(default)]
    pub egress_gateway: bool,
    /// With `egressGateway`: sidecars' HTTP traffic to MESH_EXTERNAL services goes through
    /// the egress gateway over mTLS, and on from it with mTLS (seed 004: "traffic from a
    /// cluster to a remote cluster always traverses through the local egress gateway").
    #[serde(default)]
    pub egress_funnel: bool,
}

fn yes() -> bool {
    true
}

fn default_service_cidr() -> Cidr {
    Cidr {
        addr: Ipv4Addr::new(10, 96, 0, 0),
        prefix: 16,
    }
}

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    /// A name for the lab.
    pub name: String,
    /// SPIFFE trust domain.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Clusters.
    pub clusters: Vec<ClusterSpec>,
    /// DNS template suffixes, `SUFFIX=IPV4`.
    #[serde(default)]
    pub dns_templates: Vec<String>,
    /// Every control plane reads the other clusters' registries and generates the
    /// ServiceEntries for their services (seed 002's automation): no hand-written ones.
    #[serde(default)]
    pub automation: bool,
    /// `exported` (default) or `hidden`: whether services without an export label or
    /// annotation are reachable from other clusters.
    #[serde(default)]
    pub export_default: Option<String>,
    /// Every cluster runs a real Kubernetes control plane (etcd, kube-apiserver,
    /// kube-controller-manager, kube-scheduler) that the mesh watches; `lab up --kubernetes`
    /// sets it too.
    #[serde(default)]
    pub kubernetes: bool,
    /// Whether control planes scope sidecars on demand (`--scoping on-demand`, the
    /// product's default when this is left out): each gets only the services its pod
    /// resolved or called; `false` sends every sidecar everything. `lab up --scoping` sets
    /// it too.
    #[serde(default)]
    pub on_demand_scoping: Option<bool>,
    /// With `onDemandScoping`: a name a pod has not resolved for this many seconds, whose
    /// services carry no connection, leaves its sidecar's scope (the agents'
    /// `--scope-idle`); 0: never. `lab up --scope-idle` sets it too.
    #[serde(default)]
    pub scope_idle_seconds: u64,
}

/// A cluster name as it stands in a placeholder variable: upper case, `_` for anything
/// else than letters and digits (`cluster-2` -> `CLUSTER_2`).
pub fn variable_part(name: &str) -> String {
    name.chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn default_trust_domain() -> String {
    "cluster.local".into()
}

/// The WAN block (RFC 2544 benchmarking addresses, never routed on the internet).
pub const WAN: Cidr = Cidr {
    addr: Ipv4Addr::new(198, 18, 0, 0),
    prefix: 15,
};

impl Topology {
    /// Whether sidecars are scoped on demand (the product's default unless the topology
    /// says `onDemandScoping: false`).
    pub fn on_demand(&self) -> bool {
        self.on_demand_scoping.unwrap_or(true)
    }

    /// Reads `DIR/topology.yaml`.
    pub fn load(dir: &Path) -> Result<Topology, LabError> {
        let file = dir.join("topology.yaml");
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        let t: Topology = isthmus_api::yaml::from_str(&text)
            .map_err(|e| LabError::Invalid(format!("{}: {e}", file.display())))?;
        t.check()
            .map_err(|m| LabError::Invalid(format!("{}: {m}", file.display())))?;
        Ok(t)
    }

    fn check(&self) -> Result<(), String> {
        if self.clusters.is_empty() {
            return Err("clusters: at least one cluster is needed".into());
        }
        for (i, c) in self.clusters.iter().enumerate() {
            let ok = !c.name.is_empty()
                && c.name.len() <= 20
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
            if !ok {
                return Err(format!(
                    "clusters[{i}].name: `{}` must be 1-20 lowercase letters, digits or `-`",
                    c.name
                ));
            }
            if self.clusters[..i].iter().any(|o| o.name == c.name) {
                return Err(format!("clusters[{i}].name: `{}` appears twice", c.name));
            }
        }
        for (i, c) in self.clusters.iter().enumerate() {
            if let Some(m) = &c.east_west_gateway_mode {
                if m != "sni-dnat" && m != "standard" {
                    return Err(format!(
                        "clusters[{i}].eastWestGatewayMode: `{m}` must be `sni-dnat` or `standard`"
                    ));
                }
            }
        }
        if let Some(d) = &self.export_default {
            d.parse::<isthmus_control_plane::config::ExportDefault>()
                .map_err(|e| format!("exportDefault: {e}"))?;
        }
        for (i, t) in self.dns_templates.iter().enumerate() {
            t.parse::<isthmus_control_plane::config::Template>()
                .map_err(|e| format!("dnsTemplates[{i}]: {e}"))?;
        }
        if !self.clusters.iter().any(|c| c.control_plane) {
            // On Kubernetes a lab without the lab's mesh is where a user installs one
            // (`isthmus install` or the Helm chart), as on a fresh cluster.
            if !self.kubernetes {
                return Err("clusters: no cluster runs a control plane (on Kubernetes, `kubernetes: true`, a lab without one is for installing the mesh yourself)".into());
            }
            if let Some(c) = self
                .clusters
                .iter()
                .find(|c| c.east_west_gateway || c.egress_gateway)
            {
                return Err(format!(
                    "clusters: {}: the lab's gateways need the lab's control plane, and no cluster runs one",
                    c.name
                ));
            }
        }
        Ok(())
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Result<&ClusterSpec, LabError> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                LabError::NotFound(format!(
                    "no cluster `{name}` in the lab (it has {})",
                    self.clusters
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The router's WAN address of cluster number `i`.
    pub fn router_wan(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 1 + i as u8)
    }

    /// The public address of cluster number `i`'s Kubernetes API server (a managed
    /// cluster's API endpoint).
    pub fn api_server_wan(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 2, 1 + i as u8)
    }

    /// The east-west gateway's public address of cluster number `i`.
    pub fn gateway_wan(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 1, 1 + i as u8)
    }

    /// Placeholder variables the seeds use, filled from the topology:
    /// `GATEWAY_IP_CLUSTER2`, `CLUSTER2_GW_ADDR`, `LOCAL_GW_ADDR`, ...
    pub fn variables(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (i, c) in self.clusters.iter().enumerate() {
            let up = variable_part(&c.name);
            if c.east_west_gateway {
                let ip = Self::gateway_wan(i).to_string();
                v.push((format!("GATEWAY_IP_{up}"), ip.clone()));
                v.push((format!("{up}_GW_ADDR"), ip.clone()));
                // Seed 002 writes `<IPofCluster2IngressGateway>`.
                let mut cap = c.name.clone();
                if let Some(f) = cap.get_mut(0..1) {
                    f.make_ascii_uppercase();
                }
                v.push((format!("IPof{}IngressGateway", cap.replace('-', "")), ip));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_topology_parses_with_one_pod_cidr_twice() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway-connected");
        let t = Topology::load(&dir).expect("topology");
        assert_eq!(t.clusters.len(), 2);
        assert_eq!(t.clusters[0].pod_cidr, t.clusters[1].pod_cidr);
        let vars = t.variables();
        assert!(vars.contains(&("GATEWAY_IP_CLUSTER2".into(), "198.18.1.2".into())));
        assert!(vars.contains(&("CLUSTER2_GW_ADDR".into(), "198.18.1.2".into())));
        assert!(vars.contains(&("IPofCluster2IngressGateway".into(), "198.18.1.2".into())));
    }

    #[test]
    fn bad_topologies_name_the_field() {
        let bad = |text: &str| {
            let t: Result<Topology, _> = serde_saphyr::from_str(text);
            match t {
                Err(e) => e.to_string(),
                Ok(t) => t.check().expect_err("should fail"),
            }
        };
        assert!(
            bad("name: x\nclusters:\n- {name: c1, network: n, podCIDR: 10.0.0.0/33}\n")
                .contains("prefix")
        );
        assert!(
            bad("name: x\nclusters:\n- {name: C1, network: n, podCIDR: 10.0.0.0/16}\n")
                .contains("clusters[0].name")
        );
        assert!(bad("name: x\nclusters:\n- {name: c1, network: n, podCIDR: 10.0.0.0/16, controlPlane: false}\n")
            .contains("no cluster runs a control plane"));
        assert!(bad("name: x\nkubernetes: true\nclusters:\n- {name: c1, network: n, podCIDR: 10.0.0.0/16, controlPlane: false, eastWestGateway: true}\n")
            .contains("c1: the lab's gateways need the lab's control plane"));
        assert!(bad(
            "name: x\nclusters:\n- {name: c1, network: n, podCIDR: 10.0.0.0/16, color: red}\n"
        )
        .contains("color"));
        let export = bad("name: x\nexportDefault: some\nclusters:\n- {name: c1, network: n, podCIDR: 10.0.0.0/16}\n");
        assert!(
            export.contains("exportDefault") && export.contains("`some`"),
            "{export}"
        );
        let template = bad("name: x\ndnsTemplates: [remote]\nclusters:\n- {name: c1, network: n, podCIDR: 10.0.0.0/16}\n");
        assert!(template.contains("dnsTemplates[0]"), "{template}");
    }

    #[test]
    fn cidr_hosts() {
        let c = Cidr::try_from("10.10.0.0/16".to_string()).expect("cidr");
        assert_eq!(c.host(1), Some(Ipv4Addr::new(10, 10, 0, 1)));
        assert_eq!(c.host(0), None);
        assert_eq!(c.host(65535), None);
    }
}
