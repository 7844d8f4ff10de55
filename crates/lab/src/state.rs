//! What a running lab is made of, saved as JSON in the state directory so that every
//! `isthmus lab ...` command (and the next `up`, after a crash) knows it.

use crate::error::{io, LabError};
use crate::topology::Topology;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What runs in a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodRole {
    /// The cluster's control plane (xDS, CA, DNS).
    ControlPlane,
    /// A gateway running Envoy as a router: the east-west (ingress) or the egress gateway.
    Gateway,
    /// A demo application, with or without a sidecar.
    App,
    /// The cluster's Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager
    /// and kube-scheduler.
    Kubernetes,
    /// A virtual machine on the cluster's VM subnet, outside every pod network, with a
    /// sidecar (see [`crate::vm`]); it has no Pod object.
    Vm,
}

/// One pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The Deployment (or StatefulSet) that made it.
    pub deployment: Option<String>,
    /// A StatefulSet's pod: the headless Service it is named under in DNS
    /// (`spec.subdomain`, with its own name as `spec.hostname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// Role.
    pub role: PodRole,
    /// Pod IP.
    pub ip: String,
    /// Public (WAN) address, for gateways.
    pub public_ip: Option<String>,
    /// Network namespace.
    pub netns: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: String,
    /// Container image (demo app selector).
    pub image: Option<String>,
    /// Has an Envoy (sidecar or gateway).
    pub proxy: bool,
    /// Pids of its processes.
    pub pids: Vec<u32>,
    /// Working directory (logs, agent files).
    pub workdir: PathBuf,
    /// Run by the node agent for a Pod of the API server (Kubernetes mode), which keeps
    /// its own record of it.
    #[serde(default)]
    pub from_node: bool,
    /// Stopped by `lab stop` (its processes ended, its namespace and files kept) until
    /// `lab start`: not waited for, not counted as failed.
    #[serde(default)]
    pub stopped: bool,
}

/// One cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    /// Name.
    pub name: String,
    /// Position in the topology.
    pub index: usize,
    /// Router namespace.
    pub router_netns: String,
    /// Last pod address offset used.
    pub last_pod: u32,
    /// Last ClusterIP offset used.
    pub last_service: u32,
    /// How many VMs were started on the cluster's VM subnet (the next one's number).
    #[serde(default)]
    pub last_vm: u32,
    /// The control plane's pod IP (clusters that run one).
    pub control_plane_ip: Option<String>,
    /// `HOST:PORT` the cluster's proxies reach their control plane at.
    #[serde(default)]
    pub control_plane_addr: Option<String>,
    /// The cluster whose CA and credential key serve this cluster's workloads.
    #[serde(default)]
    pub ca_cluster: String,
    /// `namespace/name` -> ClusterIP.
    pub cluster_ips: BTreeMap<String, String>,
    /// Namespaces with `istio-injection=enabled`.
    pub injected_namespaces: Vec<String>,
    /// Pods.
    pub pods: Vec<PodState>,
    /// The lab's node agent of a Kubernetes-mode cluster (its kubelet and kube-proxy).
    #[serde(default)]
    pub node_pid: Option<u32>,
}

impl ClusterState {
    /// Records whether `namespace` has sidecar injection (`istio-injection=enabled`).
    pub fn set_injection(&mut self, namespace: &str, injected: bool) {
        self.injected_namespaces.retain(|x| *x != namespace);
        if injected {
            self.injected_namespaces.push(namespace.to_string());
        }
    }
}

/// The lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// Namespace name prefix.
    pub prefix: String,
    /// The example folder it came from.
    pub source: PathBuf,
    /// Its topology.
    pub topology: Topology,
    /// The Envoy binary in use.
    pub envoy: PathBuf,
    /// Clusters.
    pub clusters: Vec<ClusterState>,
    /// The Kubernetes binaries, in Kubernetes mode.
    #[serde(default)]
    pub kube_bin: Option<PathBuf>,
}

impl LabState {
    /// A lab about to be built from `topology`: every cluster with its router namespace,
    /// no pods yet, and the address counters at their starting points (pods from `.2`,
    /// the router being `.1`; ClusterIPs from `.10`).
    pub fn new(prefix: &str, source: PathBuf, topology: Topology, envoy: PathBuf) -> LabState {
        LabState {
            prefix: prefix.to_string(),
            source,
            clusters: topology
                .clusters
                .iter()
                .enumerate()
                .map(|(i, c)| ClusterState {
                    name: c.name.clone(),
                    index: i,
                    router_netns: format!("{prefix}-{}-router", c.name),
                    last_pod: 1,
                    last_service: 9,
                    last_vm: 0,
                    control_plane_ip: None,
                    control_plane_addr: None,
                    ca_cluster: c.name.clone(),
                    cluster_ips: BTreeMap::new(),
                    injected_namespaces: Vec::new(),
                    pods: Vec::new(),
                    node_pid: None,
                })
                .collect(),
            topology,
            envoy,
            kube_bin: None,
        }
    }

    /// The state file in `dir`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    /// Reads the state, if a lab was started from `dir`.
    pub fn load(dir: &Path) -> Result<Option<LabState>, LabError> {
        let file = Self::file(dir);
        match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| LabError::Invalid(format!("{}: {e}", file.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&file)(e)),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, dir: &Path) -> Result<(), LabError> {
        let file = Self::file(dir);
        let tmp = dir.join("lab.json.tmp");
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| LabError::Invalid(format!("cannot encode lab state: {e}")))?;
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(io(&file))
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Result<&ClusterState, LabError> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                LabError::NotFound(format!(
                    "no cluster `{name}` (the lab has {})",
                    self.clusters
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The pod `pod` in `cluster`/`namespace`: an exact name, or a Deployment or `app`
    /// label (its first pod), as `kubectl exec deploy/NAME` does.
    pub fn pod(&self, cluster: &str, namespace: &str, pod: &str) -> Result<&PodState, LabError> {
        let c = self.cluster(cluster)?;
        let in_ns = || c.pods.iter().filter(|p| p.namespace == namespace);
        in_ns()
            .find(|p| p.name == pod)
            .or_else(|| in_ns().find(|p| p.deployment.as_deref() == Some(pod)))
            .or_else(|| in_ns().find(|p| p.labels.get("app").map(String::as_str) == Some(pod)))
            .ok_or_else(|| {
                LabError::NotFound(format!(
                    "no pod `{pod}` in namespace `{namespace}` of {cluster} (there: {})",
                    in_ns()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Labs built in memory for the other modules' tests.

    use super::*;

    /// The state of a lab with `topology` (YAML), as `up` makes it before building anything.
    pub(crate) fn lab(topology: &str) -> LabState {
        let topology: Topology = serde_saphyr::from_str(topology).expect("test topology");
        LabState::new(
            "t",
            PathBuf::from("/src"),
            topology,
            PathBuf::from("/bin/envoy"),
        )
    }

    /// The options of a lab whose state is under /state and whose binary is /bin/isthmus.
    pub(crate) fn opts() -> crate::options::LabOptions {
        crate::options::LabOptions {
            state_dir: PathBuf::from("/state"),
            prefix: "t".into(),
            exe: PathBuf::from("/bin/isthmus"),
            envoy: None,
            kubernetes: false,
            scoping: None,
            scope_idle: 0,
            kube_bin: None,
            replace: false,
        }
    }

    /// Two clusters on one pod CIDR, as in examples/gateway-connected.
    pub(crate) const TWO_CLUSTERS: &str = "name: two\nclusters:\n- {name: cluster1, network: network1, podCIDR: 10.10.0.0/16, egressGateway: true}\n- {name: cluster2, network: network2, podCIDR: 10.10.0.0/16}\n";

    /// An application pod with the lab's defaults.
    pub(crate) fn pod(namespace: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> PodState {
        PodState {
            namespace: namespace.into(),
            name: name.into(),
            deployment: None,
            subdomain: None,
            role: PodRole::App,
            ip: ip.into(),
            public_ip: None,
            netns: format!("t-c-{namespace}-{name}"),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_account: "default".into(),
            image: None,
            proxy: false,
            pids: Vec::new(),
            workdir: PathBuf::from("/state/pods").join(namespace).join(name),
            from_node: false,
            stopped: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_lab_has_a_router_per_cluster_and_fresh_counters() {
        let s = testing::lab(testing::TWO_CLUSTERS);
        assert_eq!(s.clusters.len(), 2);
        let c2 = &s.clusters[1];
        assert_eq!(c2.name, "cluster2");
        assert_eq!(c2.index, 1);
        assert_eq!(c2.router_netns, "t-cluster2-router");
        assert_eq!((c2.last_pod, c2.last_service), (1, 9));
        assert_eq!(c2.ca_cluster, "cluster2");
        assert!(c2.pods.is_empty() && c2.cluster_ips.is_empty());
    }

    #[test]
    fn injection_is_recorded_once_and_can_be_turned_off() {
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let c = &mut s.clusters[0];
        c.set_injection("foo", true);
        c.set_injection("bar", true);
        c.set_injection("foo", true);
        assert_eq!(c.injected_namespaces, ["bar", "foo"]);
        c.set_injection("bar", false);
        c.set_injection("baz", false);
        assert_eq!(c.injected_namespaces, ["foo"]);
    }

    #[test]
    fn pods_are_found_by_name_deployment_or_app_label() {
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let mut p = testing::pod("foo", "sleep-0", "10.10.0.31", &[("app", "sleeper")]);
        p.deployment = Some("sleep".into());
        s.clusters[0].pods.push(p);
        for name in ["sleep-0", "sleep", "sleeper"] {
            assert_eq!(s.pod("cluster1", "foo", name).expect(name).name, "sleep-0");
        }
        let err = s
            .pod("cluster1", "bar", "sleep")
            .expect_err("other namespace");
        assert!(
            err.to_string()
                .contains("no pod `sleep` in namespace `bar`"),
            "{err}"
        );
        let err = s.cluster("cluster3").expect_err("no such cluster");
        assert!(err.to_string().contains("cluster1, cluster2"), "{err}");
    }
}
