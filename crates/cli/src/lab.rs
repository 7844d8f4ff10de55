//! `isthmus lab ...`: the local multi-cluster lab, with kubectl-style verbs.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use isthmus_lab::{Lab, LabOptions};
use std::path::PathBuf;

/// Options every lab command shares.
#[derive(Args, Debug, Clone)]
pub struct LabGlobal {
    /// State directory (registries, certificates, logs).
    #[arg(
        long,
        global = true,
        env = "ISTHMUS_LAB_STATE",
        default_value = "/var/run/isthmus-lab"
    )]
    state: PathBuf,
    /// Prefix of the lab's network namespaces.
    #[arg(long, global = true, env = "ISTHMUS_LAB_PREFIX", default_value = "ism")]
    prefix: String,
    /// Envoy binary (default: `envoy` on PATH, then .venv/bin/envoy).
    #[arg(long, global = true, env = "ISTHMUS_ENVOY")]
    envoy: Option<PathBuf>,
    /// The Kubernetes binaries for Kubernetes mode (default: $KUBE_BIN, then the newest
    /// .kube-bin/*/ that scripts/install-kubernetes.sh built, here or in a parent folder).
    #[arg(long, global = true)]
    kube_bin: Option<PathBuf>,
}

/// The lab's verbs.
#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Create the clusters of a lab folder (topology.yaml + one manifest folder per cluster)
    /// and wait until every proxy is ready.
    Up {
        /// The lab folder, such as examples/gateway-connected.
        dir: PathBuf,
        /// Run every cluster on a real Kubernetes control plane (etcd, kube-apiserver,
        /// kube-controller-manager, kube-scheduler, built by scripts/install-kubernetes.sh);
        /// the lab is each cluster's kubelet and kube-proxy. Also `kubernetes: true` in
        /// topology.yaml.
        #[arg(long)]
        kubernetes: bool,
        /// How sidecars are scoped: `on-demand` (the default; each gets only the services
        /// its pod resolved or called) or `full` (everything it may see). Also
        /// `onDemandScoping: true|false` in topology.yaml.
        #[arg(long, value_enum)]
        scoping: Option<isthmus_control_plane::config::ScopingMode>,
        /// With on-demand scoping: a name a pod has not resolved for this many seconds,
        /// whose services carry no connection, leaves its sidecar's scope (agents'
        /// --scope-idle). Also `scopeIdleSeconds` in topology.yaml.
        #[arg(long, default_value_t = 0)]
        scope_idle: u64,
        /// Stop a lab that still runs with this state folder or namespace prefix first
        /// (without it, `up` refuses to touch a running lab).
        #[arg(long)]
        replace: bool,
    },
    /// Stop everything and remove the lab's namespaces.
    Down,
    /// Apply manifests to a cluster (like `kubectl apply -f`).
    Apply {
        /// Cluster.
        #[arg(long)]
        cluster: String,
        /// File or folder.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Namespace for objects that name none.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Delete what manifests name from a cluster (like `kubectl delete -f`).
    Delete {
        /// Cluster.
        #[arg(long)]
        cluster: String,
        /// File or folder.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Namespace for objects that name none.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Stop a mesh component, keeping its pod: `lab stop cluster2 control-plane` (also
    /// `gateway`, `egress-gateway`). Proxies keep serving their last configuration.
    Stop {
        /// Cluster.
        cluster: String,
        /// `control-plane`, `gateway` or `egress-gateway`.
        component: String,
    },
    /// Start a stopped mesh component again and wait until every proxy is ready.
    Start {
        /// Cluster.
        cluster: String,
        /// `control-plane`, `gateway` or `egress-gateway`.
        component: String,
    },
    /// Stop and start a mesh component: `lab restart cluster2 control-plane`.
    Restart {
        /// Cluster.
        cluster: String,
        /// `control-plane`, `gateway` or `egress-gateway`.
        component: String,
    },
    /// Start or delete a VM: a workload outside every pod network (on its cluster's VM
    /// subnet, 192.168.(100+N).0/24) that joins the mesh through its agent. Register it with
    /// a WorkloadEntry for its address (`${podIP:CLUSTER/NS/NAME}` in applied files).
    #[command(subcommand)]
    Vm(VmCommand),
    /// What a pod's Envoy holds now, read from its admin inside the pod: `lab proxy-config
    /// cluster cluster1 foo sleep` (also listener, route, endpoint, secret, all).
    ProxyConfig {
        /// What to show.
        #[arg(value_enum)]
        kind: crate::proxy_config::ConfigKind,
        /// Cluster.
        cluster: String,
        /// Namespace.
        namespace: String,
        /// Pod, Deployment or app name.
        pod: String,
        /// `table`, `json` or `yaml`.
        #[arg(short, long, value_enum, default_value_t = crate::proxy_config::Format::Table)]
        output: crate::proxy_config::Format,
    },
    /// Run a command in a pod: `lab exec cluster1 foo sleep -- curl -s httpbin.bar.global:8000/ip`.
    Exec {
        /// Cluster.
        cluster: String,
        /// Namespace.
        namespace: String,
        /// Pod, Deployment or app name.
        pod: String,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show clusters, pods, addresses and proxy readiness.
    Status,
    /// Each proxy's CDS/LDS/EDS/RDS state from a cluster's control plane, as istioctl's
    /// proxy-status prints it.
    ProxyStatus {
        /// Cluster.
        cluster: String,
    },
    /// Show what a cluster's control plane serves: `get serviceentries [--generated]`.
    Get {
        /// Resource kind; `serviceentries` (or `se`).
        #[arg(value_parser = ["serviceentries", "serviceentry", "se"])]
        kind: String,
        /// Cluster.
        #[arg(long)]
        cluster: String,
        /// Only the generated ones, with where they came from.
        #[arg(long)]
        generated: bool,
        /// `yaml` (one document per entry, generated ones with where they came from),
        /// `json` (a `List`) or `table`.
        #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
        output: Output,
    },
    /// Run a scenario file's steps; brings the lab up first when none is running.
    Run {
        /// Scenario file, such as examples/gateway-connected/s1.yaml.
        scenario: PathBuf,
        /// Tear the lab down afterwards.
        #[arg(long)]
        down: bool,
        /// Run it with every cluster on a real Kubernetes control plane (see `lab up
        /// --kubernetes`).
        #[arg(long)]
        kubernetes: bool,
        /// When the running lab is another one (or not healthy), stop it and bring up the
        /// scenario's (without it, `run` refuses to touch a running lab).
        #[arg(long)]
        replace: bool,
    },
    /// Print the path of an admin kubeconfig for a cluster's API server (Kubernetes mode);
    /// use it from the cluster's network, as `isthmus lab kubectl` does.
    Kubeconfig {
        /// Cluster.
        cluster: String,
        /// The admin kubeconfig for the API server's public (WAN) address instead (another
        /// cluster's control plane gets the reader credential `create-remote-secret` made).
        #[arg(long)]
        public: bool,
    },
    /// Run the lab's kubectl against a cluster's API server (Kubernetes mode), such as
    /// `isthmus lab kubectl cluster1 -- get pods -A`.
    Kubectl {
        /// Cluster.
        cluster: String,
        /// kubectl's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// (started by `lab up --kubernetes`) the kubelet and kube-proxy of a cluster's Node.
    #[command(hide = true)]
    Node {
        /// Cluster.
        #[arg(long)]
        cluster: String,
    },
    /// (inside a pod) run a built-in demo app.
    #[command(hide = true)]
    App {
        /// The Deployment's image, which selects the app.
        #[arg(long)]
        image: String,
        /// Pod name (shown by helloworld).
        #[arg(long)]
        pod: String,
        /// HTTP ports to serve.
        #[arg(long = "port")]
        ports: Vec<u16>,
        /// Raw TCP echo ports (container ports named `tcp...`).
        #[arg(long = "tcp-port")]
        tcp_ports: Vec<u16>,
    },
    /// (started by the lab's kubelet, inside a pod) run a container of the Isthmus image:
    /// its volumes mounted in a mount namespace of its own, as its user, with its
    /// environment only.
    #[command(hide = true)]
    ContainerExec {
        /// SOURCE:TARGET[:ro], one per volume mount.
        #[arg(long = "mount")]
        mounts: Vec<String>,
        /// The container's user.
        #[arg(long, default_value_t = 0)]
        uid: u32,
        /// The container's group.
        #[arg(long, default_value_t = 0)]
        gid: u32,
        /// NAME=VALUE, its whole environment.
        #[arg(long = "env")]
        env: Vec<String>,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// (inside a pod) call the lab's gRPC echo service at URL (such as
    /// `http://grpc-echo.bar.global:7070`): one unary call, then a server stream of
    /// `--stream` replies; prints one line per reply (scenarios run it as `${isthmus}`).
    #[command(hide = true)]
    GrpcCall {
        /// The service's URL.
        url: String,
        /// The message to echo.
        #[arg(long, default_value = "hello")]
        message: String,
        /// Replies to ask of the streaming method (0: unary only).
        #[arg(long, default_value_t = 0)]
        stream: u32,
    },
    /// (inside a pod) ask SERVER (IP:PORT, UDP) for NAME's A records; prints the addresses
    /// and the milliseconds the answer took; exit 1 without an answer within 10 s.
    #[command(hide = true)]
    DnsGet {
        /// The resolver.
        server: std::net::SocketAddr,
        /// The name.
        name: String,
    },
    /// (inside a pod) GET a URL on loopback and print the body; exit 1 unless 200.
    #[command(hide = true)]
    HttpGet {
        /// HOST:PORT.
        addr: std::net::SocketAddr,
        /// Path.
        path: String,
    },
}

/// The control plane pod of `cluster` (its monitoring port answers `get` and `proxy-status`).
fn control_plane_pod<'a>(lab: &'a Lab, cluster: &str) -> Result<&'a isthmus_lab::state::PodState> {
    lab.state
        .cluster(cluster)?
        .pods
        .iter()
        .find(|p| p.role == isthmus_lab::state::PodRole::ControlPlane)
        .ok_or_else(|| anyhow::anyhow!("{cluster} runs no control plane"))
}

fn options(g: &LabGlobal) -> Result<LabOptions> {
    Ok(LabOptions {
        state_dir: g.state.clone(),
        prefix: g.prefix.clone(),
        exe: std::env::current_exe()?,
        envoy: g.envoy.clone(),
        kubernetes: false,
        scoping: None,
        scope_idle: 0,
        kube_bin: g.kube_bin.clone(),
        replace: false,
    })
}

/// Prints a progress line; a closed stdout (`| head`) does not stop the work.
fn progress(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "  {line}");
}

/// Runs a lab command.
pub fn run(g: &LabGlobal, cmd: LabCommand) -> Result<()> {
    match cmd {
        LabCommand::Up {
            dir,
            kubernetes,
            scoping,
            scope_idle,
            replace,
        } => {
            println!("bringing up {} ...", dir.display());
            let mut opts = options(g)?;
            opts.kubernetes = kubernetes;
            opts.scoping = scoping;
            opts.scope_idle = scope_idle;
            opts.replace = replace;
            let lab = Lab::up(&dir, opts, &mut |l| progress(l)).map_err(|e| {
                anyhow::anyhow!(
                    "{e}\n(what was started is left for inspection; `isthmus lab down` removes it)"
                )
            })?;
            println!(
                "lab is up: {} clusters; try `isthmus lab status`",
                lab.state.clusters.len()
            );
        }
        LabCommand::Down => {
            Lab::down(&options(g)?, &mut |l| progress(l))?;
            println!("lab is down");
        }
        LabCommand::Apply {
            cluster,
            file,
            namespace,
        } => {
            let mut lab = Lab::load(options(g)?)?;
            lab.apply(&cluster, &file, &namespace, &mut |l| progress(l))?;
        }
        LabCommand::Delete {
            cluster,
            file,
            namespace,
        } => {
            let mut lab = Lab::load(options(g)?)?;
            lab.delete(&cluster, &file, &namespace, &mut |l| progress(l))?;
        }
        LabCommand::Vm(VmCommand::Add {
            cluster,
            namespace,
            name,
            image,
            service_account,
            labels,
            ports,
        }) => {
            let mut lab = Lab::load(options(g)?)?;
            let spec = isthmus_lab::vm::VmSpec {
                cluster,
                namespace,
                name,
                image,
                service_account,
                labels: labels.into_iter().collect(),
                ports,
            };
            let ip = lab.add_vm(&spec, &mut |l| progress(l))?;
            println!(
                "VM {}/{} is at {ip}; register it with a WorkloadEntry in namespace {} (address: {ip}, serviceAccount: {})",
                spec.namespace, spec.name, spec.namespace, spec.service_account
            );
        }
        LabCommand::Vm(VmCommand::Delete {
            cluster,
            namespace,
            name,
        }) => {
            let mut lab = Lab::load(options(g)?)?;
            lab.delete_vm(&cluster, &namespace, &name, &mut |l| progress(l))?;
        }
        LabCommand::Stop { cluster, component } => {
            let mut lab = Lab::load(options(g)?)?;
            lab.stop_component(&cluster, component.parse()?, &mut |l| progress(l))?;
        }
        LabCommand::Start { cluster, component } => {
            let mut lab = Lab::load(options(g)?)?;
            lab.start_component(&cluster, component.parse()?, &mut |l| progress(l))?;
        }
        LabCommand::Restart { cluster, component } => {
            let mut lab = Lab::load(options(g)?)?;
            lab.restart_component(&cluster, component.parse()?, &mut |l| progress(l))?;
        }
        LabCommand::ProxyConfig {
            kind,
            cluster,
            namespace,
            pod,
            output,
        } => {
            let lab = Lab::load(options(g)?)?;
            let p = lab.state.pod(&cluster, &namespace, &pod)?;
            if !p.proxy {
                bail!("{cluster}: {namespace}/{} runs no Envoy", p.name);
            }
            let text = crate::proxy_config::read_and_render(kind, output, |path| {
                Ok(serde_json::from_str(&lab.pod_http(p, 15000, path)?)?)
            })?;
            crate::emit(&text)?;
        }
        LabCommand::Exec {
            cluster,
            namespace,
            pod,
            command,
        } => {
            let lab = Lab::load(options(g)?)?;
            let code = lab.exec(&cluster, &namespace, &pod, &command)?;
            std::process::exit(code);
        }
        LabCommand::Get {
            kind: _,
            cluster,
            generated,
            output,
        } => {
            let lab = Lab::load(options(g)?)?;
            let cp = control_plane_pod(&lab, &cluster)?;
            let path = if generated {
                "/debug/serviceentries?generated"
            } else {
                "/debug/serviceentries"
            };
            let body = lab.pod_http(cp, 15014, path)?;
            crate::emit(&format_service_entries(&body, output)?)?;
        }
        LabCommand::Status => {
            let lab = Lab::load(options(g)?)?;
            print!("{}", lab.status());
        }
        LabCommand::ProxyStatus { cluster } => {
            let lab = Lab::load(options(g)?)?;
            let cp = control_plane_pod(&lab, &cluster)?;
            let body = lab.pod_http(cp, 15014, "/debug/syncz")?;
            let addr = format!("{}:15012", cp.ip);
            crate::emit(&crate::proxy_status::table(&body, &addr)?)?;
        }
        LabCommand::Run {
            scenario,
            down,
            kubernetes,
            replace,
        } => {
            let (sc, base) = isthmus_lab::scenario::Scenario::load(&scenario)?;
            let mut opts = options(g)?;
            opts.kubernetes = kubernetes;
            opts.replace = replace;
            let wanted = base.join(&sc.lab).canonicalize()?;
            let mut lab = match Lab::load(opts.clone()) {
                Ok(lab)
                    if lab.state.source == wanted
                        && lab.healthy()
                        && (!kubernetes || lab.is_kubernetes()) =>
                {
                    lab
                }
                _ => {
                    println!("bringing up {} ...", wanted.display());
                    Lab::up(&wanted, opts.clone(), &mut |l| progress(l))?
                }
            };
            let failures = isthmus_lab::scenario::run(&mut lab, &sc, &base, &mut |l| {
                use std::io::Write;
                let _ = writeln!(std::io::stdout(), "{l}");
            })?;
            if down {
                Lab::down(&opts, &mut |l| progress(l))?;
            }
            if failures > 0 {
                bail!(
                    "{failures} step(s) or check(s) of `{}` failed (see FAILED above)",
                    sc.name
                );
            }
        }
        LabCommand::App {
            image,
            pod,
            ports,
            tcp_ports,
        } => {
            let app = isthmus_lab::demo::DemoApp::for_image(&image)?;
            tokio::runtime::Runtime::new()?
                .block_on(isthmus_lab::demo::serve(app, pod, ports, tcp_ports))?;
        }
        LabCommand::Kubeconfig { cluster, public } => {
            let lab = Lab::load(options(g)?)?;
            lab.state.cluster(&cluster)?;
            if !lab.is_kubernetes() {
                bail!("the lab does not run on Kubernetes (start it with `isthmus lab up --kubernetes DIR`)");
            }
            let path = if public {
                isthmus_lab::kubernetes::public_kubeconfig(&g.state, &cluster)
            } else {
                isthmus_lab::kubernetes::kubeconfig(&g.state, &cluster)
            };
            println!("{}", path.display());
        }
        LabCommand::Kubectl { cluster, args } => {
            let lab = Lab::load(options(g)?)?;
            let ci = lab.state.cluster(&cluster)?.index;
            let kubectl = isthmus_lab::kubernetes::kubectl(&options(g)?, &lab.state, ci)?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match kubectl.run(&args, None) {
                Ok(out) => print!("{out}"),
                Err(e) => bail!("{e}"),
            }
        }
        LabCommand::Node { cluster } => {
            let opts = options(g)?;
            tokio::runtime::Runtime::new()?.block_on(isthmus_lab::node::run(opts, &cluster))?;
        }
        LabCommand::ContainerExec {
            mounts,
            uid,
            gid,
            env,
            argv,
        } => {
            let mut spec = isthmus_lab::container::ContainerExec {
                mounts: Vec::new(),
                uid,
                gid,
                env: Vec::new(),
                argv,
            };
            for m in &mounts {
                spec.mounts
                    .push(isthmus_lab::container::Mount::parse(m).map_err(|e| anyhow::anyhow!(e))?);
            }
            for e in &env {
                let (k, v) = e
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--env `{e}`: expected NAME=VALUE"))?;
                spec.env.push((k.to_string(), v.to_string()));
            }
            let e = isthmus_lab::container::exec(&spec);
            bail!("container {}: {e}", spec.argv.join(" "));
        }
        LabCommand::GrpcCall {
            url,
            message,
            stream,
        } => {
            let lines = tokio::runtime::Runtime::new()?
                .block_on(isthmus_lab::grpc_echo::call(&url, &message, stream))
                .map_err(anyhow::Error::msg)?;
            for l in lines {
                println!("{l}");
            }
        }
        LabCommand::DnsGet { server, name } => {
            let sock = std::net::UdpSocket::bind(if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            })?;
            sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            let id = (std::process::id() & 0xffff) as u16;
            let started = std::time::Instant::now();
            sock.send_to(&isthmus_dns::fast::a_query(id, &name), server)?;
            let mut buf = [0u8; 4096];
            let n = sock
                .recv(&mut buf)
                .map_err(|e| anyhow::anyhow!("no answer from {server} for {name}: {e}"))?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let ips: Vec<String> = isthmus_dns::fast::a_answers(&buf[..n])
                .iter()
                .map(ToString::to_string)
                .collect();
            println!("{} {ms:.2}", ips.join(","));
        }
        LabCommand::HttpGet { addr, path } => {
            let (code, body) = isthmus_lab::http::get(addr, &path)?;
            print!("{body}");
            if code != 200 {
                bail!("GET {path} on {addr}: HTTP {code}");
            }
        }
    }
    Ok(())
}

/// Renders the control plane's `/debug/serviceentries` JSON as YAML documents, each
/// generated one preceded by a comment saying where it came from.
pub fn format_service_entries(body: &str, output: Output) -> Result<String> {
    let list: Vec<serde_json::Value> = serde_json::from_str(body)?;
    match output {
        Output::Yaml => {}
        Output::Json => {
            let items: Vec<&serde_json::Value> = list.iter().map(|v| &v["object"]).collect();
            let l = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            return Ok(format!("{}\n", serde_json::to_string_pretty(&l)?));
        }
        Output::Table => {
            let mut out = format!(
                "{:<16} {:<28} {:<40} {:<18} {:<9} {}\n",
                "NAMESPACE", "NAME", "HOSTS", "ADDRESSES", "ENDPOINTS", "ORIGIN"
            );
            for v in &list {
                let o = &v["object"];
                let join = |a: &serde_json::Value| {
                    a.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|h| h.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "-".into())
                };
                out.push_str(&format!(
                    "{:<16} {:<28} {:<40} {:<18} {:<9} {}\n",
                    o["metadata"]["namespace"].as_str().unwrap_or("-"),
                    o["metadata"]["name"].as_str().unwrap_or("-"),
                    join(&o["spec"]["hosts"]),
                    join(&o["spec"]["addresses"]),
                    o["spec"]["endpoints"].as_array().map_or(0, Vec::len),
                    if v["generated"].as_bool() == Some(true) {
                        format!("generated: {}", v["explanation"].as_str().unwrap_or(""))
                    } else {
                        "written".into()
                    }
                ));
            }
            return Ok(out);
        }
    }
    let mut out = String::new();
    for v in &list {
        out.push_str("---\n");
        if v["generated"].as_bool() == Some(true) {
            out.push_str(&format!(
                "# generated from {}\n",
                v["explanation"].as_str().unwrap_or("")
            ));
        }
        // JSON is YAML; one document per entry keeps `kubectl apply -f`-style tools happy.
        out.push_str(&serde_json::to_string_pretty(&v["object"])?);
        out.push('\n');
    }
    if list.is_empty() {
        out.push_str("# no ServiceEntries\n");
    }
    Ok(out)
}

/// How `get` prints what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// YAML documents.
    Yaml,
    /// JSON.
    Json,
    /// One line per object.
    Table,
}

/// `lab vm`.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Start a VM with a demo app and a sidecar: `lab vm add cluster1 vm db-vm --image
    /// docker.io/kennethreitz/httpbin --port 80 --service-account db --label app=db`.
    Add {
        /// The cluster whose network it joins and whose control plane serves it.
        cluster: String,
        /// Namespace of its identity (and of its WorkloadEntry).
        namespace: String,
        /// Name.
        name: String,
        /// Demo app image, as in a Deployment.
        #[arg(long)]
        image: String,
        /// Service account of its identity.
        #[arg(long, default_value = "default")]
        service_account: String,
        /// A label NAME=VALUE its agent reports (repeatable).
        #[arg(long = "label", value_parser = isthmus_control_plane::config::key_value)]
        labels: Vec<(String, String)>,
        /// A port the app listens on (repeatable).
        #[arg(long = "port")]
        ports: Vec<u32>,
    },
    /// Stop a VM and remove its namespace.
    Delete {
        /// Cluster.
        cluster: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"[
      {"generated": true, "explanation": "cluster2: 1 endpoint via 198.18.1.2:15443",
       "object": {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                  "metadata": {"name": "httpbin-bar-global", "namespace": "istio-system"},
                  "spec": {"hosts": ["httpbin.bar.global"], "addresses": ["240.240.0.2"],
                           "endpoints": [{"address": "198.18.1.2"}]}}},
      {"generated": false, "explanation": "",
       "object": {"metadata": {"name": "db", "namespace": "foo"}, "spec": {"hosts": ["db.example"]}}}
    ]"#;

    #[test]
    fn service_entries_print_as_yaml_documents_a_json_list_or_a_table() {
        let yaml = format_service_entries(BODY, Output::Yaml).expect("yaml");
        assert_eq!(yaml.matches("---\n").count(), 2, "{yaml}");
        assert!(yaml.contains("# generated from cluster2: 1 endpoint via 198.18.1.2:15443"));
        let json: serde_json::Value =
            serde_json::from_str(&format_service_entries(BODY, Output::Json).expect("json"))
                .expect("valid JSON");
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"][1]["metadata"]["name"], "db");
        let table = format_service_entries(BODY, Output::Table).expect("table");
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("NAMESPACE") && lines[0].contains("ORIGIN"),
            "{table}"
        );
        assert!(
            lines[1].contains("httpbin.bar.global")
                && lines[1].contains("240.240.0.2")
                && lines[1].contains("generated: cluster2"),
            "{table}"
        );
        assert!(
            lines[2].contains("db.example") && lines[2].ends_with("written"),
            "{table}"
        );
        assert!(format_service_entries("not json", Output::Table).is_err());
    }
}
