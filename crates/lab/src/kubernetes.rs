//! Kubernetes mode: each cluster runs a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, built by
//! `scripts/install-kubernetes.sh`) in a pod of its own, `kube-system/kube-apiserver-0`, on
//! the cluster's pod network and with a public address on the WAN (a managed cluster's API
//! endpoint; etcd listens on that pod's loopback only). The mesh's control plane watches it,
//! the lab's node agent ([`crate::node`]) is the kubelet and kube-proxy of the cluster's one
//! Node, and everything the lab applies goes through it with kubectl.

use crate::error::LabError;
use crate::network;
use crate::options::LabOptions;
use crate::state::{LabState, PodRole};
use crate::topology::Topology;
use isthmus_kube::local::{
    locate_binaries, locate_istio_crds, Kubectl, LocalCluster, LocalOptions,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The namespace of the Kubernetes control plane's pod.
pub const NAMESPACE: &str = "kube-system";
/// The Kubernetes control plane's pod.
pub const POD: &str = "kube-apiserver-0";
/// The API server's port.
pub const API_PORT: u16 = 6443;
/// etcd's client port (on the pod's loopback).
pub const ETCD_PORT: u16 = 2379;
/// The pod address (host number in the pod CIDR) of the Kubernetes control plane: after
/// the mesh's own pods (from .2), before the apps (from .11).
pub const HOST: u32 = 9;

/// The name of cluster `cluster`'s one Node.
pub fn node_name(cluster: &str) -> String {
    format!("{cluster}-node")
}

/// The folder of cluster `cluster`'s Kubernetes control plane (data, certificates,
/// kubeconfigs, logs).
pub fn dir(state_dir: &Path, cluster: &str) -> PathBuf {
    state_dir.join("kube").join(cluster)
}

/// The admin kubeconfig that reaches the API server at its pod address (from inside the
/// cluster's network: its control plane, the node agent, kubectl in the router).
pub fn kubeconfig(state_dir: &Path, cluster: &str) -> PathBuf {
    dir(state_dir, cluster).join("kubeconfig")
}

/// The admin kubeconfig that reaches the API server at its public WAN address (what another
/// cluster's control plane is given).
pub fn public_kubeconfig(state_dir: &Path, cluster: &str) -> PathBuf {
    dir(state_dir, cluster).join("kubeconfig-public")
}

/// The reader kubeconfig for another cluster's control plane: the credential that
/// `isthmus create-remote-secret` made in this cluster (a ServiceAccount with only the read
/// rights a control plane uses, its token, the API server's public address).
pub fn reader_kubeconfig(state_dir: &Path, cluster: &str) -> PathBuf {
    dir(state_dir, cluster).join("kubeconfig-reader")
}

/// Whether the lab runs on Kubernetes.
pub fn enabled(state: &LabState) -> bool {
    state.topology.kubernetes
}

/// Runs `isthmus create-remote-secret` for `cluster` inside its API server's namespace (as
/// a user would with the cluster's admin kubeconfig), with the public address, and keeps
/// the kubeconfig of the Secret it prints as [`reader_kubeconfig`].
fn make_reader_credential(
    opts: &LabOptions,
    netns: &str,
    cluster: &str,
    public: std::net::Ipv4Addr,
) -> Result<(), LabError> {
    let admin = kubeconfig(&opts.state_dir, cluster).display().to_string();
    let server = format!("https://{public}:{API_PORT}");
    let yaml = crate::netns::exec(
        netns,
        &opts.exe_arg(),
        &[
            "create-remote-secret",
            "--kubeconfig",
            &admin,
            "--name",
            cluster,
            "--server",
            &server,
        ],
    )?;
    let secret: serde_json::Value = isthmus_api::yaml::from_str(&yaml).map_err(|e| {
        LabError::Invalid(format!(
            "{cluster}: create-remote-secret printed no Secret: {e}"
        ))
    })?;
    let kubeconfig_text = secret["stringData"][cluster].as_str().ok_or_else(|| {
        LabError::Invalid(format!(
            "{cluster}: the Secret of create-remote-secret has no key {cluster}"
        ))
    })?;
    isthmus_kube::local::write_private(
        &reader_kubeconfig(&opts.state_dir, cluster),
        kubeconfig_text,
    )
    .map_err(|e| LabError::Invalid(e.to_string()))
}

/// kubectl for cluster number `ci`, run in its router's namespace (which reaches the API
/// server's pod address).
pub fn kubectl(opts: &LabOptions, state: &LabState, ci: usize) -> Result<Kubectl, LabError> {
    let bin = state
        .kube_bin
        .clone()
        .ok_or_else(|| LabError::Invalid("the lab does not run on Kubernetes".into()))?;
    let c = &state.clusters[ci];
    Ok(Kubectl {
        exe: bin.join("kubectl"),
        kubeconfig: kubeconfig(&opts.state_dir, &c.name),
        wrap: vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            c.router_netns.clone(),
        ],
    })
}

/// Runs kubectl for cluster number `ci`; an error carries the API server's message.
pub fn run_kubectl(
    opts: &LabOptions,
    state: &LabState,
    ci: usize,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, LabError> {
    kubectl(opts, state, ci)?
        .run(args, stdin)
        .map_err(|stderr| LabError::Command {
            command: format!(
                "kubectl {} (cluster {})",
                args.join(" "),
                state.clusters[ci].name
            ),
            stderr,
        })
}

/// Starts cluster number `ci`'s Kubernetes control plane in its pod, installs Istio's CRDs
/// and the `istio-system` namespace, and records the pod (and its processes) in the state.
pub fn start(
    opts: &LabOptions,
    state: &mut LabState,
    ci: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let bin =
        locate_binaries(opts.kube_bin.as_deref()).map_err(|e| LabError::Invalid(e.to_string()))?;
    let crds = locate_istio_crds().map_err(|e| LabError::Invalid(e.to_string()))?;
    state.kube_bin = Some(bin.clone());
    let spec = state.topology.clusters[ci].clone();
    let ip = spec.pod_cidr.host(HOST).ok_or_else(|| {
        LabError::Invalid(format!(
            "{}: pod CIDR too small for the API server",
            spec.name
        ))
    })?;
    let mut pod = network::pod_netns_at(
        &opts.state_dir,
        state,
        ci,
        NAMESPACE,
        POD,
        PodRole::Kubernetes,
        ip,
        "kapi",
    )?;
    let public = Topology::api_server_wan(ci);
    network::attach_to_wan_at(&state.prefix, &pod.netns, &format!("k{ci}"), public)?;
    pod.public_ip = Some(public.to_string());
    pod.labels = [("component".to_string(), "kube-apiserver".to_string())].into();
    let folder = dir(&opts.state_dir, &spec.name);
    let _ = std::fs::remove_dir_all(&folder);
    let options = LocalOptions {
        bin: bin.clone(),
        dir: folder.clone(),
        address: IpAddr::V4(ip),
        bind: IpAddr::from([0, 0, 0, 0]),
        extra_addresses: vec![IpAddr::V4(public)],
        api_port: API_PORT,
        etcd_port: ETCD_PORT,
        service_cidr: String::from(spec.service_cidr),
        controllers: true,
        wrap: vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            pod.netns.clone(),
        ],
        startup: Duration::from_secs(120),
    };
    let started = std::time::Instant::now();
    let cluster = LocalCluster::start(options)
        .map_err(|e| LabError::Invalid(format!("{}: Kubernetes control plane: {e}", spec.name)))?;
    let public_config = public_kubeconfig(&opts.state_dir, &spec.name);
    isthmus_kube::local::write_private(&public_config, &cluster.kubeconfig(IpAddr::V4(public)))
        .map_err(|e| LabError::Invalid(e.to_string()))?;
    cluster
        .install_istio_crds(&crds)
        .map_err(|stderr| LabError::Command {
            command: format!("kubectl apply -f {}", crds.display()),
            stderr,
        })?;
    cluster
        .kubectl(&["create", "namespace", crate::install::NAMESPACE], None)
        .map_err(|stderr| LabError::Command {
            command: "kubectl create namespace istio-system".into(),
            stderr,
        })?;
    pod.pids = cluster.detach().into_iter().map(|(_, pid)| pid).collect();
    make_reader_credential(opts, &pod.netns, &spec.name, public)?;
    progress(&format!(
        "{}: Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) at https://{ip}:{API_PORT}, public https://{public}:{API_PORT}, ready in {:.1}s, Istio CRDs installed, reader credential made by `isthmus create-remote-secret`",
        spec.name,
        started.elapsed().as_secs_f64()
    ));
    state.clusters[ci].pods.push(pod);
    state.save(&opts.state_dir)
}
