//! The control plane: reads the registries, builds a mesh snapshot on every change, and
//! serves Envoy ADS and the CA on one TLS port (15012, as istiod), plus a plain-text
//! monitoring port with metrics and debug pages.

use isthmus_ca::{Authority, CaService, CredentialKey};
use isthmus_model::{MeshSnapshot, SnapshotInput};
use isthmus_registry::{watch_dirs, FileRegistry};
use isthmus_xds::{AdsServer, XdsStatus};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Control plane settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// This cluster.
    pub cluster: String,
    /// This cluster's network.
    pub network: String,
    /// cluster -> registry directory; the local cluster must be among them.
    pub registries: Vec<(String, PathBuf)>,
    /// Networks of other clusters.
    pub cluster_networks: BTreeMap<String, String>,
    /// The `cacerts` directory.
    pub cacerts: PathBuf,
    /// The credential key file (created when missing).
    pub credential_key: PathBuf,
    /// xDS + CA address.
    pub listen: SocketAddr,
    /// Monitoring address.
    pub monitoring: SocketAddr,
    /// Where to serve mesh DNS (UDP and TCP), if anywhere.
    pub dns: Option<SocketAddr>,
    /// DNS template suffixes (`remote=198.18.255.1`).
    pub dns_templates: Vec<isthmus_dns::Template>,
    /// The range ServiceEntry hosts without `addresses` get a VIP from.
    pub vip_range: isthmus_model::VipRange,
}

/// Failures starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The CA could not be loaded.
    #[error("certificate authority: {0}")]
    Ca(#[from] isthmus_ca::CaError),
    /// The credential key could not be loaded.
    #[error(transparent)]
    Credential(#[from] isthmus_ca::CredentialError),
    /// The registry directories could not be watched.
    #[error(transparent)]
    Watch(#[from] isthmus_registry::WatchError),
    /// The local cluster has no registry.
    #[error("no --registry given for the local cluster `{0}`")]
    NoLocalRegistry(String),
    /// Mesh DNS could not start.
    #[error(transparent)]
    Dns(#[from] isthmus_dns::DnsError),
    /// Serving failed.
    #[error("serving on {addr}: {source}")]
    Serve {
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn build(config: &Config, registries: &[FileRegistry], version: u64) -> MeshSnapshot {
    let input = SnapshotInput {
        local_cluster: config.cluster.clone(),
        local_network: config.network.clone(),
        cluster_networks: config.cluster_networks.clone(),
        clusters: registries.iter().map(|r| r.current().clone()).collect(),
        vip_range: config.vip_range,
    };
    MeshSnapshot::build(&input, version)
}

fn report(snapshot: &MeshSnapshot, seen: &mut Vec<String>) {
    let now: Vec<String> = snapshot.diagnostics.iter().map(|d| d.to_string()).collect();
    for d in now.iter().filter(|d| !seen.contains(d)) {
        tracing::error!("{d} (the last good configuration keeps serving)");
    }
    *seen = now;
}

/// Runs until the process is stopped.
pub async fn run(config: Config) -> Result<(), ControlPlaneError> {
    if !config.registries.iter().any(|(c, _)| c == &config.cluster) {
        return Err(ControlPlaneError::NoLocalRegistry(config.cluster.clone()));
    }
    let authority = Arc::new(Authority::load(&config.cacerts)?);
    let credentials = Arc::new(CredentialKey::load_or_create(&config.credential_key)?);
    let mut registries: Vec<FileRegistry> = config
        .registries
        .iter()
        .map(|(c, d)| FileRegistry::new(c.clone(), d.clone()))
        .collect();
    for r in &mut registries {
        r.reload();
    }
    let mut version = 1;
    let first = build(&config, &registries, version);
    let mut seen = Vec::new();
    report(&first, &mut seen);
    tracing::info!(
        services = first.services.len(),
        version,
        "initial mesh snapshot"
    );
    let trust_domain = first.mesh.trust_domain.clone();
    let (snap_tx, snap_rx) = watch::channel(Arc::new(first));
    // Problems are published on every read, also when they leave the snapshot unchanged
    // (an invalid edit keeps the last good resource, so nothing is pushed).
    let (diag_tx, diag_rx) = watch::channel(seen.clone());
    let dirs: Vec<PathBuf> = config.registries.iter().map(|(_, d)| d.clone()).collect();
    let (_watcher, mut changes) = watch_dirs(&dirs, Duration::from_millis(200))?;
    let cfg = config.clone();
    tokio::spawn(async move {
        let _keep = _watcher;
        while changes.recv().await.is_some() {
            let mut changed = false;
            for r in &mut registries {
                changed |= r.reload();
            }
            let next = build(&cfg, &registries, version + 1);
            report(&next, &mut seen);
            diag_tx.send_replace(seen.clone());
            if changed {
                version += 1;
                tracing::info!(
                    services = next.services.len(),
                    version,
                    "registry changed, pushing new snapshot"
                );
                let _ = snap_tx.send(Arc::new(next));
            }
        }
    });

    if let Some(addr) = config.dns {
        let table = |s: &MeshSnapshot| {
            Arc::new(isthmus_dns::NameTable::from_snapshot(
                s,
                &config.dns_templates,
            ))
        };
        let (table_tx, table_rx) = watch::channel(table(&snap_rx.borrow()));
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|source| isthmus_dns::DnsError::Bind { addr, source })?;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| isthmus_dns::DnsError::Bind { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = isthmus_dns::serve_on(udp, tcp, table_rx).await {
                tracing::error!(error = %e, "mesh DNS stopped");
            }
        });
        let mut snaps = snap_rx.clone();
        let templates = config.dns_templates.clone();
        tokio::spawn(async move {
            while snaps.changed().await.is_ok() {
                let next =
                    isthmus_dns::NameTable::from_snapshot(&snaps.borrow_and_update(), &templates);
                table_tx.send_replace(Arc::new(next));
            }
        });
    }
    let status = Arc::new(XdsStatus::default());
    let (cert, key) = authority.issue_server(&[
        isthmus_ca::CONTROL_PLANE_DNS.to_string(),
        "istiod.istio-system.svc.cluster.local".to_string(),
    ])?;
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .client_ca_root(tonic::transport::Certificate::from_pem(
            authority.root_pem(),
        ))
        .client_auth_optional(true);
    let ads = AdsServer::new(snap_rx.clone(), status.clone());
    let ca = CaService::new(authority.clone(), credentials, trust_domain);
    let monitor = tokio::net::TcpListener::bind(config.monitoring)
        .await
        .map_err(|e| ControlPlaneError::Serve {
            addr: config.monitoring,
            source: Box::new(e),
        })?;
    tokio::spawn(monitoring(monitor, status.clone(), diag_rx));
    tracing::info!(addr = %config.listen, cluster = %config.cluster, network = %config.network, "serving xDS and CA over TLS");
    tonic::transport::Server::builder()
        .tls_config(tls)
        .map_err(|e| ControlPlaneError::Serve {
            addr: config.listen,
            source: Box::new(e),
        })?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(ads.into_service())
        .add_service(ca.into_service())
        .serve(config.listen)
        .await
        .map_err(|e| ControlPlaneError::Serve {
            addr: config.listen,
            source: Box::new(e),
        })
}

/// Reads an HTTP request head (up to the blank line), however many segments it arrives
/// in; `None` when the client goes away, is too slow, or sends more than 16 KiB of head.
async fn read_request_head(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return None;
        }
        let n = tokio::time::timeout_at(deadline, sock.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

/// A minimal HTTP/1.1 server for `/metrics`, `/debug/syncz` and `/debug/diagnostics`.
async fn monitoring(
    listener: tokio::net::TcpListener,
    status: Arc<XdsStatus>,
    diagnostics: watch::Receiver<Vec<String>>,
) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let status = status.clone();
        let diagnostics = diagnostics.clone();
        tokio::spawn(async move {
            let Some(head) = read_request_head(&mut sock).await else {
                return;
            };
            let req = String::from_utf8_lossy(&head);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (code, body) = match path {
                "/metrics" => ("200 OK", status.metrics()),
                "/debug/syncz" => (
                    "200 OK",
                    serde_json::to_string_pretty(&status.proxies()).unwrap_or_default(),
                ),
                "/debug/diagnostics" => (
                    "200 OK",
                    diagnostics
                        .borrow()
                        .iter()
                        .map(|d| format!("{d}\n"))
                        .collect(),
                ),
                "/ready" => ("200 OK", "ready\n".into()),
                _ => (
                    "404 Not Found",
                    "try /metrics, /debug/syncz, /debug/diagnostics\n".into(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
