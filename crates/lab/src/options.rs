//! Where the lab keeps its state and what it runs: the options every part of the lab
//! reads, from the API side to the kubelet.

use std::path::PathBuf;

/// Where the lab keeps its state and what it runs.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// State directory (registries, certificates, logs, `lab.json`).
    pub state_dir: PathBuf,
    /// Prefix of every namespace the lab creates.
    pub prefix: String,
    /// The `isthmus` binary started inside pods.
    pub exe: PathBuf,
    /// Envoy, when given explicitly.
    pub envoy: Option<PathBuf>,
    /// Run every cluster on a real Kubernetes control plane, whatever the topology says.
    pub kubernetes: bool,
    /// The Kubernetes binaries (from scripts/install-kubernetes.sh), when given explicitly.
    pub kube_bin: Option<PathBuf>,
    /// How sidecars are scoped, whatever the topology says (`None`: as it says).
    pub scoping: Option<isthmus_control_plane::config::ScopingMode>,
    /// With on-demand scoping: the agents' `--scope-idle` (0: the topology's).
    pub scope_idle: u64,
    /// `lab up` may stop a lab that still runs with the same state folder or prefix.
    pub replace: bool,
}

impl LabOptions {
    /// The certificate authorities: `root/` and one intermediate (and credential key) per
    /// cluster.
    pub fn ca_dir(&self) -> PathBuf {
        self.state_dir.join("ca")
    }

    /// The `isthmus` binary as the first word of a command line.
    pub fn exe_arg(&self) -> String {
        self.exe.display().to_string()
    }
}
