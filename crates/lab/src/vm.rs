//! Virtual machines: workloads outside every pod network that join the mesh through the
//! agent, as Istio's VMs do. A VM is a network namespace on its cluster's VM subnet
//! (`192.168.(100+N).0/24` behind the cluster's router, never inside a pod CIDR), running a
//! demo app and a captured sidecar whose workload credential is issued for the VM's
//! namespace and service account (what `istioctl x workload entry configure` hands a VM).
//! It has no Pod: the mesh knows it from the WorkloadEntry a user writes for its address.

use crate::error::{io, LabError};
use crate::kubelet;
use crate::netns;
use crate::network::{pod_netns_name, pod_workdir};
use crate::options::LabOptions;
use crate::process;
use crate::state::{LabState, PodRole, PodState};
use isthmus_api::kube::{Container, ContainerPort};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The bridge VMs attach to in their cluster's router.
const VM_BRIDGE: &str = "vms";
/// The first VM host number on a subnet.
const FIRST_VM_HOST: u32 = 10;

/// A VM to start: `lab vm add` and a scenario's `vm` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmSpec {
    /// The cluster whose network it sits on (behind its router) and whose control plane it
    /// joins.
    pub cluster: String,
    /// Namespace of its identity and of its WorkloadEntry.
    pub namespace: String,
    /// Name (its proxy's node id uses it as the pod name).
    pub name: String,
    /// Demo app image, as in a Deployment (`docker.io/kennethreitz/httpbin`, `sleep`, ...).
    pub image: String,
    /// Service account of its identity.
    #[serde(default = "default_account")]
    pub service_account: String,
    /// Labels its agent reports (the WorkloadEntry's are what the mesh reads).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Ports the app listens on.
    #[serde(default)]
    pub ports: Vec<u32>,
}

fn default_account() -> String {
    "default".into()
}

/// The VM subnet of cluster number `ci`: `192.168.(100+ci).0/24`.
pub fn subnet(ci: usize) -> Result<(Ipv4Addr, u8), LabError> {
    let third = u8::try_from(100 + ci)
        .map_err(|_| LabError::Invalid(format!("cluster number {ci} has no VM subnet")))?;
    Ok((Ipv4Addr::new(192, 168, third, 0), 24))
}

/// The address of VM number `n` (counting from 0) of cluster number `ci`.
pub fn address(ci: usize, n: u32) -> Result<Ipv4Addr, LabError> {
    let (net, _) = subnet(ci)?;
    let host = FIRST_VM_HOST + n;
    if host >= 255 {
        return Err(LabError::Invalid(format!(
            "cluster number {ci}: the VM subnet {net}/24 is full"
        )));
    }
    Ok(Ipv4Addr::from(u32::from(net) + host))
}

/// Gives cluster number `ci`'s router its VM subnet: a bridge with the gateway address `.1`
/// and NAT to the WAN, as its pods have (done once, with the first VM).
fn ensure_subnet(state: &LabState, ci: usize) -> Result<(), LabError> {
    let c = &state.clusters[ci];
    if c.last_vm > 0 {
        return Ok(());
    }
    let (net, prefix) = subnet(ci)?;
    let rt = &c.router_netns;
    netns::bridge(rt, VM_BRIDGE)?;
    let gw = Ipv4Addr::from(u32::from(net) + 1);
    netns::addr(rt, VM_BRIDGE, &format!("{gw}/{prefix}"))?;
    netns::masquerade(rt, &format!("{net}/{prefix}"), "wan0")
}

/// Starts VM `spec`: its namespace on the VM subnet, its app, and its captured sidecar with a
/// credential for its namespace and service account; returns its address. Readiness is the
/// caller's to wait for, as for pods.
pub fn start(
    opts: &LabOptions,
    state: &mut LabState,
    spec: &VmSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<Ipv4Addr, LabError> {
    let ci = state.cluster(&spec.cluster)?.index;
    if state.clusters[ci]
        .pods
        .iter()
        .any(|p| p.namespace == spec.namespace && p.name == spec.name)
    {
        return Err(LabError::Invalid(format!(
            "{}: {}/{} already runs",
            spec.cluster, spec.namespace, spec.name
        )));
    }
    let cp = state.clusters[ci].control_plane_ip.clone().ok_or_else(|| {
        LabError::Invalid(format!(
            "{}: no control plane: a VM joins the mesh through its cluster's",
            spec.cluster
        ))
    })?;
    let app = crate::demo::DemoApp::for_image(&spec.image)
        .map_err(|e| LabError::Invalid(format!("VM {}/{}: {e}", spec.namespace, spec.name)))?;
    ensure_subnet(state, ci)?;
    let (_, prefix) = subnet(ci)?;
    let n = state.clusters[ci].last_vm;
    let ip = address(ci, n)?;
    state.clusters[ci].last_vm += 1;
    let c = &state.clusters[ci];
    let ns = pod_netns_name(&state.prefix, &c.name, &spec.namespace, &spec.name);
    let veth = format!("v{}", n + 1);
    netns::add(&ns)?;
    netns::veth(&ns, "eth0", &c.router_netns, &veth)?;
    netns::attach(&c.router_netns, &veth, VM_BRIDGE)?;
    netns::addr(&ns, "eth0", &format!("{ip}/{prefix}"))?;
    let gw = Ipv4Addr::from(u32::from(ip) & !0xff | 1);
    netns::default_route(&ns, &gw.to_string())?;
    let workdir = pod_workdir(&opts.state_dir, &c.name, &spec.namespace, &spec.name);
    std::fs::create_dir_all(&workdir).map_err(io(&workdir))?;
    netns::resolv_conf(&ns, &cp, &kubelet::search_domains(&spec.namespace))?;
    let mut vm = PodState {
        namespace: spec.namespace.clone(),
        name: spec.name.clone(),
        deployment: None,
        subdomain: None,
        role: PodRole::Vm,
        ip: ip.to_string(),
        public_ip: None,
        netns: ns,
        labels: spec.labels.clone(),
        service_account: spec.service_account.clone(),
        image: Some(spec.image.clone()),
        proxy: true,
        pids: Vec::new(),
        workdir,
        from_node: false,
        stopped: false,
    };
    let container = Container {
        name: spec.name.clone(),
        image: spec.image.clone(),
        ports: spec
            .ports
            .iter()
            .map(|p| ContainerPort {
                container_port: *p,
                ..Default::default()
            })
            .collect(),
        env: Vec::new(),
    };
    vm.pids.push(process::spawn(
        &vm.netns,
        &kubelet::app_args(opts, &container, &spec.name),
        &vm.workdir.join("app.log"),
    )?);
    let agent = kubelet::start_agent(opts, state, ci, &vm, None);
    match agent {
        Ok(pid) => vm.pids.push(pid),
        Err(e) => {
            for pid in &vm.pids {
                process::stop(*pid, std::time::Duration::from_secs(2));
            }
            let _ = netns::delete(&vm.netns);
            return Err(e);
        }
    }
    progress(&format!(
        "{}: VM {}/{} ({}) at {ip} on the VM subnet, sidecar as {}",
        spec.cluster,
        spec.namespace,
        spec.name,
        kubelet::describe(&app),
        spec.service_account
    ));
    state.clusters[ci].pods.push(vm);
    Ok(ip)
}

/// Stops VM `namespace/name` of `cluster`: its processes and its namespace.
pub fn stop(
    opts: &LabOptions,
    state: &mut LabState,
    cluster: &str,
    namespace: &str,
    name: &str,
) -> Result<(), LabError> {
    let ci = state.cluster(cluster)?.index;
    let index = state.clusters[ci]
        .pods
        .iter()
        .position(|p| p.role == PodRole::Vm && p.namespace == namespace && p.name == name)
        .ok_or_else(|| LabError::Invalid(format!("{cluster}: no VM {namespace}/{name}")))?;
    kubelet::stop_pod(opts, state, ci, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_addresses_sit_on_a_per_cluster_subnet_outside_the_pod_cidrs() {
        assert_eq!(address(0, 0).expect("first").to_string(), "192.168.100.10");
        assert_eq!(address(0, 1).expect("second").to_string(), "192.168.100.11");
        assert_eq!(
            address(1, 0).expect("cluster2").to_string(),
            "192.168.101.10"
        );
        assert_eq!(subnet(1).expect("subnet").0.to_string(), "192.168.101.0");
        let full = address(0, 245).expect_err("full").to_string();
        assert!(full.contains("192.168.100.0/24 is full"), "{full}");
    }

    #[test]
    fn a_vm_step_is_read_strictly_with_defaults() {
        let spec: VmSpec = serde_saphyr::from_str(
            "cluster: cluster1\nnamespace: vm\nname: db-vm\nimage: docker.io/kennethreitz/httpbin\nports: [80]\n",
        )
        .expect("spec");
        assert_eq!(spec.service_account, "default");
        assert!(spec.labels.is_empty());
        let typo = serde_saphyr::from_str::<VmSpec>(
            "cluster: c\nnamespace: n\nname: v\nimage: i\nserviceAcount: x\n",
        );
        assert!(typo.is_err());
    }
}
