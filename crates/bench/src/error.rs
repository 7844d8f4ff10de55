//! What can stop a benchmark run. The messages are the ones `isthmus bench ...` prints.

use std::path::PathBuf;

/// A benchmark could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file, directory or runtime could not be used.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Creating the benchmark's CA failed.
    #[error(transparent)]
    Ca(#[from] isthmus_ca::CaError),
    /// Creating or loading the credential key failed.
    #[error(transparent)]
    Credential(#[from] isthmus_ca::CredentialError),
    /// A lab operation (namespaces, processes in them, the lab itself) failed.
    #[error(transparent)]
    Lab(#[from] isthmus_lab::LabError),
    /// The control plane process could not be started.
    #[error("starting the control plane")]
    StartControlPlane(#[source] std::io::Error),
    /// The control plane did not report ready in time; its log says why.
    #[error("the control plane did not become ready; see {}", log.display())]
    ControlPlaneNotReady {
        /// The control plane's log.
        log: PathBuf,
    },
    /// `bench envoy` cannot create network namespaces.
    #[error("bench envoy needs root and iproute2 (network namespaces)")]
    EnvoyPreflight(#[source] isthmus_lab::LabError),
    /// Envoy did not become LIVE with every cluster warm in time.
    #[error(
        "Envoy did not apply its configuration within 600 s; see {} and {}",
        agent_log.display(),
        agent_dir.display()
    )]
    EnvoyNotApplied {
        /// The agent's log.
        agent_log: PathBuf,
        /// The agent's working directory (Envoy's bootstrap and log).
        agent_dir: PathBuf,
    },
    /// `/proc/PID/status` of a process could not be read.
    #[error("cannot read /proc/{0}/status")]
    ProcStatus(u32),
    /// The options ask for something that cannot be measured.
    #[error("{0}")]
    InvalidOptions(&'static str),
    /// The soak saw errors (the report above says which).
    #[error("the soak saw {0} errors (see the report above)")]
    SoakErrors(u64),
    /// A `bench http` run inside a pod failed or printed something else than numbers.
    #[error("{label}: {stdout} {stderr}")]
    PodOutput {
        /// Which measurement.
        label: String,
        /// What it printed.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A measurement (DNS, HTTP latency, CA signing) failed; the message says how.
    #[error("{0}")]
    Measure(String),
}
