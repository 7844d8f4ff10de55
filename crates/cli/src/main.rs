//! `isthmus`: the one binary. It only parses arguments and wires the crates together.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

mod analyze;
mod bench;
mod conformance;
mod lab;
/// When the release build lays out the code the control plane runs first (the build
/// script's decision, tested here).
#[cfg(test)]
#[path = "../build_support/link_order.rs"]
mod link_order;
mod offline_dump;
mod proxy_config;
mod proxy_status;

/// Isthmus: a multicluster service mesh for Istio users, with Envoy as the data plane.
#[derive(Parser, Debug)]
#[command(name = "isthmus", version, about, propagate_version = true)]
struct Cli {
    /// Log lines as plain text (in colour only on a terminal) or as one JSON object per
    /// line (for log collectors). Which lines: `RUST_LOG` (such as `info,isthmus_xds=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ISTHMUS_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the mesh root and per-cluster intermediate CAs (Istio's `cacerts` files).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Check Istio/Kubernetes YAML as `istioctl analyze` does: each resource, the mesh the
    /// control plane would build from them, and what one names that another must define;
    /// every message with Istio's code (IST0101, ...), file:line, resource and field. Exits
    /// 1 when a message reaches --failure-threshold.
    Analyze {
        /// Directories or files to check (a `kind: List`, as `kubectl get -o yaml` prints,
        /// is read item by item).
        #[arg(required_unless_present = "kubeconfig")]
        paths: Vec<PathBuf>,
        /// Also analyze what this kubeconfig's API server holds (every kind the mesh reads,
        /// listed as the control plane lists them); files given replace its objects of the
        /// same name.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// The kubeconfig's context (its current context by default).
        #[arg(long, requires = "kubeconfig")]
        context: Option<String>,
        /// Namespace for objects that name none (like `kubectl apply -n`).
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = analyze::Output::Text)]
        output: analyze::Output,
        /// The level from which a message fails the command.
        #[arg(long, value_enum, ignore_case = true, default_value_t = analyze::Threshold::Error)]
        failure_threshold: analyze::Threshold,
    },
    /// Run a cluster's control plane: xDS (SotW and delta) and the CA on one TLS port.
    ControlPlane(Box<isthmus_control_plane::ControlPlaneConfig>),
    /// Issue the credential a workload's agent presents to the CA.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Make another cluster's credential, as `istioctl create-remote-secret`: a reader
    /// ServiceAccount with only the rights the control plane uses, and its token, in the
    /// cluster the kubeconfig reaches; prints the Secret to apply in the reading cluster.
    CreateRemoteSecret(CreateRemoteSecretArgs),
    /// Install the control plane, the east-west gateway and Istio's CRDs without Helm: the
    /// objects of the Helm chart manifests/charts/isthmus, from the same values.
    Install(InstallArgs),
    /// Run the pod agent: certificate, SDS, bootstrap, Envoy.
    Agent(Box<isthmus_agent::AgentConfig>),
    /// Install the pod's traffic capture rules and exit: what an injected pod's `istio-init`
    /// container runs (Istio's istio-iptables). Needs NET_ADMIN in the pod's namespace.
    Iptables(isthmus_agent::capture::IptablesArgs),
    /// Print the Envoy resources the control plane would send a proxy, as Istio names them.
    ProxyConfig(ProxyConfigArgs),
    /// Each connected proxy's CDS/LDS/EDS/RDS state (SYNCED, STALE, NOT SENT), as istioctl
    /// prints it, from a control plane's monitoring port.
    ProxyStatus {
        /// The control plane's monitoring address.
        #[arg(long, default_value = "127.0.0.1:15014")]
        monitoring: std::net::SocketAddr,
    },
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
        /// `yaml` (one document per entry), `json` (a `List`) or `table`.
        #[arg(short, long, value_enum, default_value_t = lab::Output::Yaml)]
        output: lab::Output,
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
    /// Compare what Isthmus and istiod send the same sidecar in the seed scenarios (each lab
    /// on real Kubernetes, istiod reading the same API servers) and write the differences,
    /// each with which side is right and why, to docs/CONFORMANCE.md. Needs root, Envoy, the
    /// Kubernetes binaries and istiod (scripts/install-*.sh).
    Conformance(conformance::ConformanceArgs),
    /// Print a shell completion script: `source <(isthmus completion bash)`, or write it to
    /// `~/.local/share/bash-completion/completions/isthmus`, zsh's `$fpath`, fish's
    /// `~/.config/fish/completions/isthmus.fish`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
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

#[derive(Args, Debug)]
struct CreateRemoteSecretArgs {
    /// The kubeconfig of the cluster to be read (default: KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context (its current context otherwise).
    #[arg(long)]
    context: Option<String>,
    /// The cluster's name, as the reading control plane knows it (its cluster id).
    #[arg(long)]
    name: String,
    /// The namespace of the reader ServiceAccount, and of the printed Secret.
    #[arg(long, default_value = "istio-system")]
    namespace: String,
    /// The reader ServiceAccount.
    #[arg(long, default_value = isthmus_kube::remote_secret::READER_SERVICE_ACCOUNT)]
    service_account: String,
    /// The API server address the reading cluster reaches (the kubeconfig's by default).
    #[arg(long)]
    server: Option<String>,
    /// `secret`: a service-account token Secret, which does not expire (istioctl's way);
    /// `request`: a TokenRequest token valid for --token-duration.
    #[arg(long, default_value = "secret", value_parser = ["secret", "request"])]
    token_source: String,
    /// How long a `request` token is valid, such as `24h`.
    #[arg(long, default_value = "24h", value_parser = duration_arg)]
    token_duration: std::time::Duration,
    /// Delete the token Secret first: the old token stops working, a new one is made.
    #[arg(long)]
    rotate: bool,
    /// How long to wait for kube-controller-manager to fill the token Secret.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    wait: std::time::Duration,
}

#[derive(Args, Debug)]
struct InstallArgs {
    /// The cluster's kubeconfig (default: KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context (its current context otherwise).
    #[arg(long)]
    context: Option<String>,
    /// A values file, as `helm install -f` (several merge in order, over the chart's).
    #[arg(short = 'f', long = "values")]
    values: Vec<PathBuf>,
    /// A value KEY=VALUE with a dotted key, as `helm --set`, such as
    /// global.multiCluster.clusterName=east.
    #[arg(long = "set")]
    set: Vec<String>,
    /// A value KEY=JSON, as `helm --set-json`, such as meshNetworks={"net1": {...}}.
    #[arg(long = "set-json")]
    set_json: Vec<String>,
    /// Istio's CRDs (default: what scripts/install-istio-crds.sh fetched, or ISTIO_CRDS).
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Print the objects as YAML instead of applying them.
    #[arg(long)]
    dry_run: bool,
}

fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    isthmus_api::duration::parse(s)
        .ok_or_else(|| format!("{s:?} is not a duration such as 30s, 15m or 24h"))
}

#[derive(Args, Debug)]
struct ProxyConfigArgs {
    /// What to show of a live Envoy: cluster, listener, route, endpoint, secret or all.
    #[arg(value_enum, default_value_t = proxy_config::ConfigKind::All)]
    kind: proxy_config::ConfigKind,
    /// A live Envoy's admin address (a sidecar's 127.0.0.1:15000, or a port-forward to it):
    /// what it holds now, from its `/config_dump`.
    #[arg(long, conflicts_with = "offline")]
    admin: Option<std::net::SocketAddr>,
    /// `table`, `json` or `yaml` (Envoy's own JSON of the part asked for).
    #[arg(short, long, value_enum, default_value_t = proxy_config::Format::Table)]
    output: proxy_config::Format,
    /// Instead of a live Envoy: generate what the control plane would send the node
    /// `--node-id`, from registry directories (`--cluster`, `--network`, `--registry`),
    /// shown as the same tables, or Envoy's own JSON/YAML, as a live Envoy's.
    #[arg(long, requires = "node_id")]
    offline: bool,
    #[command(flatten)]
    sources: OfflineSources,
    /// Node id, such as `sidecar~10.0.0.1~sleep-0.foo~foo.svc.cluster.local` (`--offline`).
    #[arg(long)]
    node_id: Option<String>,
    /// Node metadata NAME=VALUE (INTERCEPTION_MODE, ROUTER_MODE, ...).
    #[arg(long = "metadata", value_parser = isthmus_control_plane::config::key_value)]
    metadata: Vec<(String, String)>,
}

/// `proxy-config --offline`'s mesh: the control plane's flags, required only offline.
#[derive(clap::Args, Debug)]
struct OfflineSources {
    /// This cluster's name (`--offline`).
    #[arg(long)]
    cluster: Option<String>,
    /// This cluster's network (`--offline`).
    #[arg(long)]
    network: Option<String>,
    /// CLUSTER=DIR: a registry directory (repeat for other clusters; `--offline`).
    #[arg(long = "registry", value_parser = isthmus_control_plane::config::cluster_dir)]
    registries: Vec<(String, std::path::PathBuf)>,
    /// CLUSTER=NETWORK for other clusters (`--offline`).
    #[arg(long = "cluster-network", value_parser = isthmus_control_plane::config::key_value)]
    cluster_networks: Vec<(String, String)>,
    /// The egress gateway service MESH_EXTERNAL HTTP traffic goes through (`--offline`).
    #[arg(long)]
    egress_gateway: Option<String>,
}

impl OfflineSources {
    /// The control plane's sources, once the required flags are there.
    fn sources(&self) -> Result<isthmus_control_plane::MeshSources> {
        let (Some(cluster), Some(network)) = (&self.cluster, &self.network) else {
            bail!(
                "proxy-config --offline needs --cluster and --network (and --registry CLUSTER=DIR)"
            );
        };
        if self.registries.is_empty() {
            bail!(
                "proxy-config reads registry directories: give at least one --registry CLUSTER=DIR"
            );
        }
        Ok(isthmus_control_plane::MeshSources {
            cluster: cluster.clone(),
            network: network.clone(),
            registries: self.registries.clone(),
            cluster_networks: self.cluster_networks.clone(),
            egress_gateway: self.egress_gateway.clone(),
        })
    }
}

fn snapshot_input(r: &isthmus_control_plane::MeshSources) -> isthmus_model::SnapshotInput {
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
    let cli = Cli::parse();
    let format = cli.log_format;
    init_logs(format);
    // Errors are printed plainly (cause chain, no backtrace), whatever RUST_BACKTRACE says;
    // with JSON logs, as one more JSON line, so that a collector reads every line.
    if let Err(e) = run(cli) {
        let message = error_chain(&e);
        match format {
            LogFormat::Text => eprintln!("error: {message}"),
            LogFormat::Json => tracing::error!(error = %message, "exiting"),
        }
        std::process::exit(1);
    }
}

/// Writes a command's output to stdout. A reader that closes the pipe early (`| head`)
/// ends the output quietly: not an error, and no panic as `print!` would. (SIGPIPE stays
/// ignored: the servers this binary also runs must never die of a closed socket.)
fn emit(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing to standard output")
        }
        _ => Ok(()),
    }
}

/// An error and its causes on one line, each cause once: a library error whose message
/// already says its source (`"{path}: {source}"`) would otherwise repeat it.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), in `format`.
fn init_logs(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        // Colour only on a terminal: logs written to files must stay plain text.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

fn run(cli: Cli) -> Result<()> {
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
        Command::Analyze {
            paths,
            namespace,
            kubeconfig,
            context,
            output,
            failure_threshold,
        } => {
            let live = match kubeconfig {
                None => None,
                Some(path) => {
                    let access = isthmus_kube::Access::File { path, context };
                    eprintln!("analyze: reading {}", access.describe());
                    Some(
                        tokio::runtime::Runtime::new()?.block_on(isthmus_kube::read_once(
                            &access,
                            "analyze",
                            std::time::Duration::from_secs(30),
                        ))?,
                    )
                }
            };
            let (count, found) = analyze::diagnostics(&paths, &namespace, live.as_deref())?;
            let (text, failed) = analyze::report(count, &found, output, failure_threshold)?;
            emit(&text)?;
            if failed {
                std::process::exit(1);
            }
        }
        Command::ControlPlane(config) => {
            // Before any thread: glibc reads its tunables only when a process starts.
            if let Err(e) = isthmus_control_plane::memory::restart_without_thread_cache() {
                tracing::warn!(error = %e, "cannot start again with glibc's per-thread cache off; it stays on (more memory per remote cluster)");
            }
            if isthmus_control_plane::memory::thread_cache_off() {
                tracing::debug!(
                    tunables = %std::env::var("GLIBC_TUNABLES").unwrap_or_default(),
                    pid = std::process::id(),
                    "glibc's per-thread cache of freed blocks is off"
                );
            }
            tokio::runtime::Runtime::new()?.block_on(isthmus_control_plane::run(*config))?;
        }
        Command::Credential(CredentialCommand::Issue {
            key,
            namespace,
            service_account,
            ttl,
        }) => {
            // A key is made when there is none (so credentials can be issued before the
            // control plane first starts), but said loudly: a mistyped path would otherwise
            // give a credential that no running control plane accepts.
            if !key.exists() {
                eprintln!(
                    "warning: no credential key at {}: made a new one; the control plane must start with --credential-key {} to accept this credential",
                    key.display(),
                    key.display()
                );
            }
            let k = isthmus_ca::CredentialKey::load_or_create(&key)?;
            println!("{}", k.issue(&namespace, &service_account, ttl));
        }
        Command::CreateRemoteSecret(a) => {
            use isthmus_kube::remote_secret::{self, RemoteSecretOptions, TokenSource};
            let opts = RemoteSecretOptions {
                namespace: a.namespace,
                service_account: a.service_account,
                server: a.server,
                token: if a.token_source == "request" {
                    TokenSource::Request(a.token_duration)
                } else {
                    TokenSource::Secret
                },
                rotate: a.rotate,
                wait: a.wait,
                ..RemoteSecretOptions::new(a.name)
            };
            let secret = tokio::runtime::Runtime::new()?.block_on(async {
                let config =
                    remote_secret::load_config(a.kubeconfig.as_ref(), a.context.as_deref()).await?;
                remote_secret::create(config, &opts, &mut |step| {
                    eprintln!("create-remote-secret: {step}")
                })
                .await
            })?;
            if let Some(t) = secret.expires {
                eprintln!("create-remote-secret: the token expires at {t} (seconds since the epoch): run this again before then");
            }
            print!("{}", secret.to_yaml());
        }
        Command::Install(a) => {
            use isthmus_kube::install;
            let files = a
                .values
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|t| (p.display().to_string(), t))
                        .with_context(|| format!("cannot read values file {}", p.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let values = install::values(&files, &a.set, &a.set_json)?;
            let crds = if values.base.enable_crds {
                let path = match a.crds {
                    Some(p) => p,
                    None => isthmus_kube::local::locate_istio_crds()?,
                };
                Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read Istio's CRDs {}", path.display()))?,
                )
            } else {
                None
            };
            let objects = install::render(&values, crds.as_deref())?;
            if a.dry_run {
                print!("{}", install::to_yaml(&objects)?);
            } else {
                let namespace = values.global.istio_namespace.clone();
                tokio::runtime::Runtime::new()?.block_on(async {
                    let client = isthmus_kube::remote_secret::connect(
                        a.kubeconfig.as_ref(),
                        a.context.as_deref(),
                    )
                    .await?;
                    install::apply(&client, &namespace, &objects, &mut |s| {
                        eprintln!("install: {s}")
                    })
                    .await?;
                    anyhow::Ok(())
                })?;
                eprintln!(
                    "install: done; the control plane starts once the Secret {}/{} (Istio's cacerts files) exists and the image {}/isthmus:{} can be pulled",
                    values.global.istio_namespace, values.cacerts.secret_name, values.global.hub, values.global.tag
                );
            }
        }
        Command::Agent(config) => {
            tokio::runtime::Runtime::new()?.block_on(isthmus_agent::run(*config))?;
        }
        Command::Iptables(args) => {
            let resolv = if args.redirect_dns {
                std::fs::read_to_string("/etc/resolv.conf")
                    .map_err(|e| anyhow::anyhow!("/etc/resolv.conf: {e}"))?
            } else {
                String::new()
            };
            let capture = args.capture(&resolv);
            isthmus_agent::capture::apply(&capture)?;
            println!(
                "capture installed: outbound -> {}, inbound -> {}, uid/gid {} uncaptured{}",
                capture.outbound_port,
                capture.inbound_port,
                capture.proxy_uid,
                match &capture.dns {
                    Some(d) => format!(", DNS to {:?} -> {}", d.resolvers, d.port),
                    None => String::new(),
                }
            );
        }
        Command::ProxyConfig(a) => {
            if let Some(admin) = a.admin {
                emit(&proxy_config::live(admin, a.kind, a.output)?)?;
                return Ok(());
            }
            if !a.offline {
                anyhow::bail!("proxy-config reads a live Envoy (--admin HOST:PORT) or generates offline (--offline --cluster C --network N --registry C=DIR --node-id ID)");
            }
            let registry = a.sources.sources()?;
            let Some(node_id) = &a.node_id else {
                anyhow::bail!("proxy-config --offline needs --node-id");
            };
            let mut input = snapshot_input(&registry);
            // RequestAuthentication keys are fetched as the control plane would fetch them.
            let wanted = isthmus_control_plane::jwks::wanted(&input);
            if !wanted.is_empty() {
                let resolver = isthmus_control_plane::jwks::JwksResolver::new(Default::default())?;
                input.jwks = tokio::runtime::Runtime::new()?.block_on(resolver.resolve(&wanted));
                for (at, fetched) in &input.jwks.by_location {
                    if let Err(e) = fetched {
                        eprintln!("warning: JWKS {at}: {e}; the proxy would get keys that verify no token");
                    }
                }
            }
            let snapshot = isthmus_model::MeshSnapshot::build(&input, 1);
            for d in &snapshot.diagnostics {
                eprintln!("{d}");
            }
            let node = isthmus_model::NodeId::parse(node_id)?;
            let proxy = snapshot.proxy(&node, &isthmus_api::NodeMetadata::from_map(a.metadata));
            let (dump, endpoints) =
                offline_dump::dump(&isthmus_envoy::generate(&snapshot, &proxy))?;
            emit(&proxy_config::render(a.kind, a.output, &dump, &endpoints)?)?;
        }
        Command::Get {
            kind: _,
            generated,
            monitoring,
            output,
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
            emit(&lab::format_service_entries(&body, output)?)?;
        }
        Command::ProxyStatus { monitoring } => {
            let (code, body) =
                isthmus_lab::http::get(monitoring, "/debug/syncz").with_context(|| {
                    format!("cannot reach the control plane's monitoring port {monitoring}")
                })?;
            if code != 200 {
                bail!("{monitoring}/debug/syncz: HTTP {code}");
            }
            emit(&proxy_status::table(&body, &monitoring.to_string())?)?;
        }
        Command::Bench(cmd) => bench::run(cmd)?,
        Command::Conformance(args) => conformance::run(args)?,
        Command::Lab { global, command } => lab::run(&global, command)?,
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "isthmus",
                &mut script,
            );
            emit(&String::from_utf8_lossy(&script))?;
        }
    }
    Ok(())
}

/// `1 error`, `2 errors`.
fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
