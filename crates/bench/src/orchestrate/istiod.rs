//! istiod (`pilot-discovery`, built from istio.io/istio by scripts/install-istiod.sh) started
//! by a benchmark against a real API server: the peer that `bench xds --peer istiod`,
//! `bench memory --peer istiod` and `isthmus conformance --peer istiod` hold Isthmus against.
//! Killed when dropped.
//!
//! It runs outside a pod as `pilot-discovery discovery --kubeconfig ...`, every port on
//! loopback at a free port, in a working directory of its own. That directory holds no
//! `./etc/istio/config/mesh`, so istiod reads its mesh config and meshNetworks from the `istio`
//! ConfigMap of istio-system, as Isthmus does. The injection and validation webhooks are not
//! patched (there is no webhook configuration to patch); everything else is istiod's default,
//! including its CA (it writes `istio-ca-secret` on first start).

use crate::error::BenchError;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running istiod; killed when dropped.
pub struct Istiod {
    child: Child,
    /// Plaintext xDS (istiod's 15010, which asks for no credential).
    pub grpc: SocketAddr,
    /// Its HTTP port (`/ready`, `/debug/...`; istiod's 8080).
    pub http: SocketAddr,
    /// Its monitoring port (`/metrics`; istiod's 15014).
    pub monitoring: SocketAddr,
    /// When it was started.
    pub started: Instant,
    /// From start to its `/ready` answering 200.
    pub ready_after: Duration,
    /// Its log.
    pub log: PathBuf,
}

impl Istiod {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Istiod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> Result<u16, BenchError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The arguments of `pilot-discovery` for cluster `cluster` of the API server of
/// `kubeconfig`, with its ports: gRPC (plaintext), HTTP, webhook HTTPS, secure gRPC,
/// monitoring and ControlZ, all on loopback.
pub fn arguments(kubeconfig: &Path, cluster: &str, ports: [u16; 6]) -> Vec<String> {
    let at = |p: u16| format!("127.0.0.1:{p}");
    let [grpc, http, https, secure, monitoring, ctrlz] = ports;
    vec![
        "discovery".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--clusterID".into(),
        cluster.into(),
        "--domain".into(),
        "cluster.local".into(),
        "--grpcAddr".into(),
        at(grpc),
        "--httpAddr".into(),
        at(http),
        "--httpsAddr".into(),
        at(https),
        "--secureGRPCAddr".into(),
        at(secure),
        "--monitoringAddr".into(),
        at(monitoring),
        "--ctrlz_address".into(),
        "127.0.0.1".into(),
        "--ctrlz_port".into(),
        ctrlz.to_string(),
        // istiod's chart default: connections are rebalanced after 30 minutes, longer than
        // any measurement here.
        "--keepaliveMaxServerConnectionAge".into(),
        "30m".into(),
    ]
}

/// The environment a pod of istiod's chart would give it, less what only a pod has.
pub fn environment(cluster: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POD_NAMESPACE", "istio-system".into()),
        ("POD_NAME", "istiod-bench".into()),
        ("CLUSTER_ID", cluster.into()),
        ("REVISION", "default".into()),
        ("INJECTION_WEBHOOK_CONFIG_NAME", String::new()),
        ("VALIDATION_WEBHOOK_CONFIG_NAME", String::new()),
    ]
}

/// Starts istiod `bin` as cluster `cluster`'s control plane reading the API server of
/// `kubeconfig`, working in `work` (its log: `work/istiod.log`), with `env` added to its
/// environment, and waits until its `/ready` answers 200 (its caches are synced and its first
/// push context is built).
pub async fn start(
    bin: &Path,
    kubeconfig: &Path,
    cluster: &str,
    work: &Path,
    env: &[(String, String)],
) -> Result<Istiod, BenchError> {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    let ports = [
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
    ];
    let log = work.join("istiod.log");
    let started = Instant::now();
    let child = Command::new(bin)
        .args(arguments(kubeconfig, cluster, ports))
        .envs(environment(cluster))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::from(std::fs::File::create(work.join("istiod.err"))?))
        .spawn()
        .map_err(|e| BenchError::Measure(format!("starting istiod {}: {e}", bin.display())))?;
    let local = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
    let mut istiod = Istiod {
        child,
        grpc: local(ports[0]),
        http: local(ports[1]),
        monitoring: local(ports[4]),
        started,
        ready_after: Duration::ZERO,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok((200, _)) = isthmus_lab::http::get(istiod.http, "/ready") {
            break;
        }
        if let Ok(Some(status)) = istiod.child.try_wait() {
            return Err(BenchError::Measure(format!(
                "istiod exited ({status}) before it was ready; see {}",
                istiod.log.display()
            )));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Measure(format!(
                "istiod was not ready within 600 s; see {}",
                istiod.log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    istiod.ready_after = started.elapsed();
    Ok(istiod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_is_on_loopback_and_the_cluster_is_named() {
        let args = arguments(Path::new("/k/config"), "cluster1", [1, 2, 3, 4, 5, 6]);
        let value = |flag: &str| {
            let i = args.iter().position(|a| a == flag).expect(flag);
            args[i + 1].clone()
        };
        assert_eq!(args[0], "discovery");
        assert_eq!(value("--kubeconfig"), "/k/config");
        assert_eq!(value("--clusterID"), "cluster1");
        for (flag, port) in [
            ("--grpcAddr", 1),
            ("--httpAddr", 2),
            ("--httpsAddr", 3),
            ("--secureGRPCAddr", 4),
            ("--monitoringAddr", 5),
        ] {
            assert_eq!(value(flag), format!("127.0.0.1:{port}"), "{flag}");
        }
        assert_eq!(value("--ctrlz_address"), "127.0.0.1");
        assert_eq!(value("--ctrlz_port"), "6");
        let env = environment("cluster1");
        assert!(env.contains(&("POD_NAMESPACE", "istio-system".into())));
        assert!(env.contains(&("CLUSTER_ID", "cluster1".into())));
    }
}
