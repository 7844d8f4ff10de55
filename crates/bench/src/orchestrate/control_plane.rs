//! A real control plane process on a synthetic mesh, started by a benchmark (`bench xds`,
//! `bench sweep`, `bench memory`) from the `isthmus` binary and killed when dropped.

use crate::error::BenchError;
use crate::generate;
use isthmus_control_plane::memory;
use isthmus_control_plane::ControlPlaneConfig;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A control plane started by a benchmark on a synthetic mesh; killed when dropped.
pub struct BenchControlPlane {
    child: Killed,
    /// Its xDS port on 127.0.0.1.
    pub port: u16,
    /// The mesh root certificate (PEM) its proxies trust.
    pub root_pem: String,
    /// A workload certificate and key (PEM) for the simulated proxies, whose nodes claim
    /// [`crate::xds::LOAD_NAMESPACE`]/[`crate::xds::LOAD_SERVICE_ACCOUNT`]: the control plane
    /// serves xDS only to proxies that prove who they are.
    pub load_identity: (String, String),
    /// When it was started.
    pub started: Instant,
    /// Its monitoring address (metrics, debug pages).
    pub monitoring: SocketAddr,
    /// From start to ready (its first snapshot built).
    pub ready_after: Duration,
    /// The monitoring port while it was reading the mesh: the slowest answer (any status)
    /// to the polls of `/ready` every 50 ms, and how many polls it answered.
    pub loading_answers: ResponseTimes,
    /// Its log file.
    pub log: PathBuf,
    /// How it was started, to start it again: binary, arguments, environment.
    command: (PathBuf, Vec<std::ffi::OsString>, Vec<(String, String)>),
}

/// How a port answered a series of polls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResponseTimes {
    /// Polls answered.
    pub answered: u32,
    /// Polls not answered (connection refused, or no HTTP answer).
    pub unanswered: u32,
    /// The slowest answer.
    pub slowest: Duration,
}

impl ResponseTimes {
    /// Records one poll.
    pub fn record(&mut self, took: Duration, answered: bool) {
        if answered {
            self.answered += 1;
            self.slowest = self.slowest.max(took);
        } else {
            self.unanswered += 1;
        }
    }
}

impl BenchControlPlane {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.child.id()
    }

    /// How the simulated proxies connect to it: TLS, checked against its root, with the
    /// load's workload certificate.
    pub fn load_tls(&self) -> crate::xds::LoadTls {
        crate::xds::LoadTls {
            root_pem: self.root_pem.clone(),
            identity: self.load_identity.clone(),
        }
    }

    /// Whether the process is still running (not exited on its own).
    pub fn running(&mut self) -> bool {
        matches!(self.child.child.try_wait(), Ok(None))
    }

    /// Kills the process (SIGKILL, as a crash or an evicted pod) and starts it again with
    /// the same settings, ports and CA, its log appended; returns once it is ready.
    pub async fn restart(&mut self) -> Result<Duration, BenchError> {
        self.child.stop();
        let (exe, args, env) = &self.command;
        let log = std::fs::OpenOptions::new().append(true).open(&self.log)?;
        let started = Instant::now();
        let (mut cmd, wrapped) = command(exe);
        self.child = Killed::spawn(
            cmd.args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env(
                    "RUST_LOG",
                    "warn,isthmus_control_plane=info,isthmus_xds::cache=debug",
                )
                .stdout(Stdio::null())
                .stderr(Stdio::from(log)),
            wrapped,
        )?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while !matches!(
            isthmus_lab::http::get(self.monitoring, "/ready"),
            Ok((200, _))
        ) {
            if Instant::now() > deadline || !self.running() {
                return Err(BenchError::ControlPlaneNotReady {
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.started = started;
        Ok(started.elapsed())
    }
}

/// The environment variable naming a command that the benchmarks' control plane is started
/// under, for profiling: `ISTHMUS_BENCH_CP_WRAPPER="heaptrack -o /tmp/cp"` runs
/// `heaptrack -o /tmp/cp isthmus control-plane ...`. The figures read from the process
/// (RSS, CPU) are then the wrapper's, not the control plane's. The wrapper and what it
/// starts form a process group of their own, stopped together with SIGTERM (so that a
/// profiler writes its data out), then SIGKILL after 30 s. Under a wrapper the control plane
/// is given `GLIBC_TUNABLES` with glibc's thread cache off, as it would set it, so that it
/// does not start itself again out of a profiler's sight
/// (`isthmus_control_plane::memory::restart_without_thread_cache`).
pub const WRAPPER_ENV: &str = "ISTHMUS_BENCH_CP_WRAPPER";

/// The command that starts `exe`, and whether it is [`WRAPPER_ENV`]'s (then in a process
/// group of its own).
fn command(exe: &Path) -> (Command, bool) {
    use std::os::unix::process::CommandExt;
    let wrapper = std::env::var(WRAPPER_ENV).unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    match words.next() {
        Some(first) => {
            let mut cmd = Command::new(first);
            cmd.args(words).arg(exe).process_group(0);
            let current = std::env::var("GLIBC_TUNABLES").ok();
            if let Some(t) = memory::tunables_without_thread_cache(current.as_deref()) {
                cmd.env("GLIBC_TUNABLES", t);
            }
            (cmd, true)
        }
        None => (Command::new(exe), false),
    }
}

/// Kills and reaps the child when dropped, also on early return; under a wrapper, its whole
/// process group.
struct Killed {
    child: Child,
    /// Started under a wrapper, as the leader of its process group.
    group: bool,
}

impl Killed {
    /// Spawns `cmd` (`wrapped`: made by [`command`] with a wrapper).
    fn spawn(cmd: &mut Command, wrapped: bool) -> Result<Killed, BenchError> {
        let child = cmd.spawn().map_err(BenchError::StartControlPlane)?;
        Ok(Killed {
            child,
            group: wrapped,
        })
    }

    /// Stops the process (SIGKILL), or a wrapper's group (SIGTERM, SIGKILL after 30 s),
    /// and reaps it.
    fn stop(&mut self) {
        if self.group {
            let group = format!("-{}", self.child.id());
            let signal = |s: &str| {
                let _ = Command::new("kill")
                    .args([s, "--", &group])
                    .stderr(Stdio::null())
                    .status();
            };
            signal("-TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            signal("-KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two different free TCP ports on 127.0.0.1 (free when asked; the caller binds them soon
/// after): both held while the second is asked for, so that they differ.
fn free_ports() -> Result<(u16, u16), BenchError> {
    let a = std::net::TcpListener::bind("127.0.0.1:0")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// The settings of cluster1's control plane on network1, reading every registry of
/// `written`, with the CA under `ca`, xDS on 127.0.0.1:`port` and monitoring on
/// 127.0.0.1:`mon`. Sidecars are scoped fully (every service), as the rows measured
/// before on-demand scoping and istiod's; `start_on_demand` is the on-demand row.
fn control_plane_config(
    written: &generate::Written,
    ca: &Path,
    port: u16,
    mon: u16,
) -> ControlPlaneConfig {
    let mut config = ControlPlaneConfig::new(
        "cluster1",
        "network1",
        PathBuf::new(),
        ca.join("cluster1"),
        ca.join("key"),
    );
    config.sources.registries = written.registries.clone();
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    config.monitoring = std::net::SocketAddr::from(([127, 0, 0, 1], mon));
    config.scoping = isthmus_control_plane::config::ScopingMode::Full;
    config
}

/// Starts a control plane (cluster1's, on network1) from the `isthmus` binary `exe`, reading
/// every registry of `written`, with a fresh CA under `work`, and waits until it reports
/// ready (its first snapshot is built).
pub async fn start(
    exe: &Path,
    written: &generate::Written,
    work: &Path,
) -> Result<BenchControlPlane, BenchError> {
    start_with(exe, work, &[], |ca, port, mon| {
        control_plane_config(written, ca, port, mon)
    })
    .await
}

/// [`start`], scoping sidecars on demand (`--scoping on-demand`).
pub async fn start_on_demand(
    exe: &Path,
    written: &generate::Written,
    work: &Path,
) -> Result<BenchControlPlane, BenchError> {
    start_with(exe, work, &[], |ca, port, mon| {
        let mut config = control_plane_config(written, ca, port, mon);
        config.scoping = isthmus_control_plane::config::ScopingMode::OnDemand;
        config
    })
    .await
}

/// [`start`], with `env` set for the process (such as `LD_PRELOAD` of another allocator).
pub async fn start_with_env(
    exe: &Path,
    written: &generate::Written,
    work: &Path,
    env: &[(String, String)],
) -> Result<BenchControlPlane, BenchError> {
    start_with(exe, work, env, |ca, port, mon| {
        control_plane_config(written, ca, port, mon)
    })
    .await
}

/// Starts cluster1's control plane watching the Kubernetes API server of `kubeconfig`
/// instead of registry folders (see [`start`]).
pub async fn start_kube(
    exe: &Path,
    kubeconfig: &Path,
    work: &Path,
) -> Result<BenchControlPlane, BenchError> {
    start_kube_with_env(exe, kubeconfig, work, &[]).await
}

/// [`start_kube`], with `env` set for the process (such as `RUST_LOG`).
pub async fn start_kube_with_env(
    exe: &Path,
    kubeconfig: &Path,
    work: &Path,
    env: &[(String, String)],
) -> Result<BenchControlPlane, BenchError> {
    start_with(exe, work, env, |ca, port, mon| {
        let empty = generate::Written {
            registries: Vec::new(),
            objects: 0,
            bytes: 0,
        };
        let mut config = control_plane_config(&empty, ca, port, mon);
        config.kubeconfig = Some(kubeconfig.to_path_buf());
        config
    })
    .await
}

/// Starts a control plane with the settings `config(ca, xds port, monitoring port)` gives,
/// a fresh CA under `work`, and waits until it reports ready.
async fn start_with(
    exe: &Path,
    work: &Path,
    env: &[(String, String)],
    config: impl FnOnce(&Path, u16, u16) -> ControlPlaneConfig,
) -> Result<BenchControlPlane, BenchError> {
    let ca = work.join("ca");
    let _ = std::fs::remove_dir_all(&ca);
    isthmus_ca::create_root(&ca.join("root"))?;
    isthmus_ca::create_intermediate(&ca.join("root"), "cluster1", &ca.join("cluster1"))?;
    let root_pem = std::fs::read_to_string(ca.join("root/root-cert.pem"))?;
    let load_identity = isthmus_ca::Authority::load(&ca.join("cluster1"))?.issue_workload(
        &crate::xds::load_identity("cluster.local"),
        Duration::from_secs(24 * 3600),
    )?;
    let (port, mon) = free_ports()?;
    let log: PathBuf = work.join("control-plane.log");
    let mut args = vec![std::ffi::OsString::from("control-plane")];
    args.extend(config(&ca, port, mon).to_args());
    let (mut cmd, wrapped) = command(exe);
    cmd.args(&args)
        .env(
            "RUST_LOG",
            "warn,isthmus_control_plane=info,isthmus_xds::cache=debug",
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?));
    let started = Instant::now();
    let mut child = Killed::spawn(&mut cmd, wrapped)?;
    let monitoring = SocketAddr::from((Ipv4Addr::LOCALHOST, mon));
    let ready_deadline = Instant::now() + Duration::from_secs(600);
    let mut loading_answers = ResponseTimes::default();
    loop {
        let asked = Instant::now();
        let answer = isthmus_lab::http::get(monitoring, "/ready");
        loading_answers.record(asked.elapsed(), answer.is_ok());
        if let Ok((200, _)) = answer {
            break;
        }
        // Exited: no point waiting (its log says why).
        if Instant::now() > ready_deadline || !matches!(child.child.try_wait(), Ok(None)) {
            return Err(BenchError::ControlPlaneNotReady { log });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(BenchControlPlane {
        child,
        port,
        root_pem,
        load_identity,
        started,
        monitoring,
        ready_after: started.elapsed(),
        loading_answers,
        log,
        command: (exe.to_path_buf(), args, env.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_reads_every_registry_and_listens_on_loopback() {
        let written = generate::Written {
            registries: vec![
                ("cluster1".into(), PathBuf::from("/w/mesh/cluster1")),
                ("cluster2".into(), PathBuf::from("/w/mesh/cluster2")),
            ],
            objects: 0,
            bytes: 0,
        };
        let config = control_plane_config(&written, Path::new("/w/ca"), 1234, 5678);
        assert_eq!(config.sources.cluster, "cluster1");
        assert_eq!(config.sources.network, "network1");
        assert_eq!(
            config.sources.registries,
            [
                ("cluster1".to_string(), PathBuf::from("/w/mesh/cluster1")),
                ("cluster2".to_string(), PathBuf::from("/w/mesh/cluster2")),
            ]
        );
        assert_eq!(config.cacerts, Path::new("/w/ca/cluster1"));
        assert_eq!(config.credential_key, Path::new("/w/ca/key"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:1234");
        assert_eq!(config.monitoring.to_string(), "127.0.0.1:5678");
    }

    #[test]
    fn free_ports_differ_and_can_be_bound() {
        let (port, mon) = free_ports().expect("free ports");
        assert_ne!(port, 0);
        assert_ne!(port, mon);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        std::net::TcpListener::bind(("127.0.0.1", mon)).expect("the other port is free");
    }
}
