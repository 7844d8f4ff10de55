//! The agent's main loop.

use crate::bootstrap::{bootstrap, BootstrapParams};
use crate::sds::{Material, SdsServer};
use backon::{ExponentialBuilder, Retryable};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// State of the world or delta xDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdsMode {
    /// `GRPC`.
    Sotw,
    /// `DELTA_GRPC`.
    Delta,
}

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `sidecar` or `router`.
    pub kind: String,
    /// Pod IP.
    pub ip: String,
    /// Pod name.
    pub pod: String,
    /// Namespace.
    pub namespace: String,
    /// Service account (the identity asked for).
    pub service_account: String,
    /// Trust domain.
    pub trust_domain: String,
    /// Cluster id.
    pub cluster: String,
    /// Network.
    pub network: String,
    /// Control plane `host:port`.
    pub control_plane: String,
    /// The credential (token text).
    pub credential: String,
    /// Mesh root certificate file.
    pub root_cert: PathBuf,
    /// Working directory (bootstrap, SDS socket).
    pub workdir: PathBuf,
    /// Envoy binary.
    pub envoy: PathBuf,
    /// `REDIRECT` or `NONE`.
    pub interception: String,
    /// `sni-dnat` for an east-west gateway.
    pub router_mode: Option<String>,
    /// Pod labels (sent as `LABELS`).
    pub labels: BTreeMap<String, String>,
    /// Extra node metadata, such as `REQUESTED_NETWORK_VIEW=external`.
    pub metadata: BTreeMap<String, String>,
    /// xDS variant.
    pub xds_mode: XdsMode,
    /// Requested certificate lifetime.
    pub cert_ttl: Duration,
    /// Admin address (15000 is the port).
    pub admin_address: String,
    /// Envoy log level.
    pub log_level: String,
    /// Install the iptables capture rules in this network namespace first (Istio's init
    /// step) and run Envoy as uid/gid 1337.
    pub capture: bool,
}

/// Agent failures.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate could not be obtained.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Envoy could not be started.
    #[error("cannot start Envoy {envoy}: {source}")]
    Envoy {
        /// The binary.
        envoy: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// Transparent capture could not be installed.
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

async fn fetch(config: &AgentConfig, root: &str, generation: u64) -> Result<Material, AgentError> {
    let identity = format!(
        "spiffe://{}/ns/{}/sa/{}",
        config.trust_domain, config.namespace, config.service_account
    );
    let (csr, key) =
        isthmus_ca::workload_csr(&identity).map_err(|e| AgentError::Certificate(e.to_string()))?;
    let attempt = || async {
        let ch = crate::caclient::channel(&config.control_plane, root)
            .await
            .map_err(tonic::Status::unavailable)?;
        crate::caclient::request(
            ch,
            &config.credential,
            &csr,
            config.cert_ttl.as_secs() as i64,
        )
        .await
    };
    let chain = attempt
        .retry(ExponentialBuilder::default().with_max_times(8).with_max_delay(Duration::from_secs(5)))
        .when(|s: &tonic::Status| matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown))
        .notify(|e, d| tracing::warn!(error = %e.message(), retry_in = ?d, "certificate request failed, retrying"))
        .await
        .map_err(|s| AgentError::Certificate(format!("{} ({:?})", s.message(), s.code())))?;
    let mut iter = chain.into_iter();
    let leaf_and_chain: Vec<String> = iter.by_ref().collect();
    let (root_pem, rest) = leaf_and_chain
        .split_last()
        .ok_or_else(|| AgentError::Certificate("empty chain".into()))?;
    tracing::info!(%identity, generation, "workload certificate issued");
    Ok(Material {
        chain: rest.concat(),
        key,
        root: root_pem.clone(),
        generation,
    })
}

fn set_mode(path: &std::path::Path, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let root = std::fs::read_to_string(&config.root_cert).map_err(io(&config.root_cert))?;
    std::fs::create_dir_all(&config.workdir).map_err(io(&config.workdir))?;
    let run_as = if config.capture {
        let cp: Option<std::net::SocketAddr> = config.control_plane.parse().ok();
        crate::capture::apply(&crate::capture::CaptureConfig::istio(cp))?;
        tracing::info!(control_plane_excluded = ?cp, "iptables capture installed: outbound -> 15001, inbound -> 15006");
        // Envoy (uid 1337) reads the bootstrap and connects to the SDS socket.
        set_mode(&config.workdir, 0o755)?;
        Some(crate::capture::PROXY_UID)
    } else {
        None
    };
    let material = fetch(&config, &root, 1).await?;
    let (mat_tx, mat_rx) = watch::channel(Arc::new(material));

    // SDS on a unix socket.
    let sock = config.workdir.join("sds.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).map_err(io(&sock))?;
    if run_as.is_some() {
        set_mode(&sock, 0o666)?;
    }
    let sds = SdsServer::new(mat_rx.clone());
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(sds.into_service())
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "SDS server stopped");
        }
    });

    // Bootstrap.
    let (cp_host, cp_port) = config
        .control_plane
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_matches(|c| c == '[' || c == ']'),
                p.parse::<u16>().ok()?,
            ))
        })
        .ok_or_else(|| {
            AgentError::Config(format!(
                "--control-plane `{}` must be HOST:PORT",
                config.control_plane
            ))
        })?;
    let mut metadata = BTreeMap::from([
        ("CLUSTER_ID".to_string(), config.cluster.clone()),
        ("NETWORK".to_string(), config.network.clone()),
        ("NAMESPACE".to_string(), config.namespace.clone()),
        ("INTERCEPTION_MODE".to_string(), config.interception.clone()),
        (
            "SERVICE_ACCOUNT".to_string(),
            config.service_account.clone(),
        ),
    ]);
    if let Some(m) = &config.router_mode {
        metadata.insert("ROUTER_MODE".into(), m.clone());
    }
    metadata.extend(config.metadata.clone());
    if !config.labels.is_empty() {
        metadata.insert(
            "LABELS".into(),
            serde_json::to_string(&config.labels).unwrap_or_default(),
        );
    }
    let node_id = format!(
        "{}~{}~{}.{}~{}.svc.cluster.local",
        config.kind, config.ip, config.pod, config.namespace, config.namespace
    );
    let app = config
        .labels
        .get("app")
        .cloned()
        .unwrap_or_else(|| config.pod.clone());
    let root_file = config.workdir.join("root-cert.pem");
    std::fs::write(&root_file, &root).map_err(io(&root_file))?;
    let boot = bootstrap(&BootstrapParams {
        node_id: node_id.clone(),
        service_cluster: format!("{app}.{}", config.namespace),
        metadata,
        admin_address: &config.admin_address,
        admin_port: 15000,
        control_plane: (cp_host, cp_port),
        root_cert: &root_file,
        sds_socket: &sock,
        delta: config.xds_mode == XdsMode::Delta,
    });
    let boot_file = config.workdir.join("envoy-bootstrap.json");
    std::fs::write(
        &boot_file,
        serde_json::to_vec_pretty(&boot).unwrap_or_default(),
    )
    .map_err(io(&boot_file))?;
    tracing::info!(node = %node_id, bootstrap = %boot_file.display(), "starting Envoy");

    let mut child = crate::envoy::start(&config.envoy, &boot_file, &config.log_level, run_as)
        .map_err(|source| AgentError::Envoy {
            envoy: config.envoy.clone(),
            source,
        })?;
    let mut generation = 1;
    let mut restarts = 0u32;
    let renew_after = |ttl: Duration| ttl.mul_f64(0.5).max(Duration::from_secs(1));
    let mut renew = Box::pin(tokio::time::sleep(renew_after(config.cert_ttl)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io(&config.workdir))?;
    loop {
        tokio::select! {
            status = child.wait() => {
                restarts += 1;
                let delay = Duration::from_millis(200 * u64::from(restarts.min(25)));
                tracing::error!(?status, restarts, ?delay, "Envoy exited; restarting");
                tokio::time::sleep(delay).await;
                child = crate::envoy::start(&config.envoy, &boot_file, &config.log_level, run_as)
                    .map_err(|source| AgentError::Envoy { envoy: config.envoy.clone(), source })?;
            }
            _ = &mut renew => {
                generation += 1;
                match fetch(&config, &root, generation).await {
                    Ok(m) => {
                        let _ = mat_tx.send(Arc::new(m));
                        renew = Box::pin(tokio::time::sleep(renew_after(config.cert_ttl)));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "certificate rotation failed; retrying in 5s");
                        renew = Box::pin(tokio::time::sleep(Duration::from_secs(5)));
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("stopping Envoy");
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&sock);
    Ok(())
}
