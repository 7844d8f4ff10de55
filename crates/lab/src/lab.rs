//! The lab's life cycle: `up`, `apply`, `delete`, `exec`, `status`, `down`.
//!
//! Only the orchestration lives here; the parts it drives sit below it, one per role:
//! [`network`] (WAN, routers, pod namespaces and addresses),
//! [`api_server`](crate::api_server) (each cluster's objects as registry files),
//! [`kubelet`] (pods, agents, readiness),
//! [`kube_proxy`] (ClusterIPs on the routers) and
//! [`install`] (the mesh's CA, control planes and gateways).

use crate::api_server::{release_cluster_ip, ApiServer};
pub use crate::envoy_binary::locate_envoy;
use crate::error::{io, LabError};
use crate::install;
use crate::kube_proxy;
use crate::kubelet;
use crate::kubernetes;
use crate::manifests::{self, Manifests};
use crate::netns;
use crate::network;
use crate::node;
pub use crate::options::LabOptions;
use crate::process;
use crate::state::{LabState, PodRole, PodState};
use crate::topology::Topology;
use std::path::Path;
use std::time::Duration;

/// kubectl's `args`, with `-n ns` for documents that do not name their own namespace
/// (kubectl refuses `-n` that differs from an object's own).
fn with_namespace<'a>(args: &[&'a str], own: bool, ns: &'a str) -> Vec<&'a str> {
    let mut out = args.to_vec();
    if !own {
        out.extend(["-n", ns]);
    }
    out
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    opts: LabOptions,
    /// Its state.
    pub state: LabState,
    /// Variables a running scenario defines (its JWKS documents and tokens), filled into
    /// the files it applies as the lab's own are.
    pub scenario_vars: Vec<(String, String)>,
}

/// Refuses to go where a lab still runs: its state folder names live processes, or
/// network namespaces with its prefix hold some (a lab with another state folder).
/// The counters of an Envoy `/stats` answer that are above 0, as (name, value), in its order.
pub(crate) fn nonzero_counters(stats: &str) -> impl Iterator<Item = (&str, u64)> {
    stats.lines().filter_map(|l| {
        let (name, value) = l.trim().rsplit_once(": ")?;
        let n: u64 = value.trim().parse().ok()?;
        (n > 0).then_some((name, n))
    })
}

fn refuse_running(opts: &LabOptions) -> Result<(), LabError> {
    if let Ok(Some(state)) = LabState::load(&opts.state_dir) {
        let mut pids = state.clusters.iter().flat_map(|c| {
            c.pods
                .iter()
                .flat_map(|p| p.pids.iter().copied())
                .chain(c.node_pid)
        });
        if pids.any(process::alive) {
            return Err(LabError::AlreadyRunning(format!(
                "the lab of {} is running (state folder {}, namespaces {}-*)",
                state.source.display(),
                opts.state_dir.display(),
                state.prefix
            )));
        }
    }
    let busy = netns::list(&opts.prefix)?
        .into_iter()
        .filter(|ns| !process::in_namespace(ns).is_empty())
        .count();
    if busy > 0 {
        return Err(LabError::AlreadyRunning(format!(
            "{busy} network namespaces named {}-* have processes running: another lab uses this prefix",
            opts.prefix
        )));
    }
    Ok(())
}

impl Lab {
    /// The API server of cluster number `ci`.
    fn api(&self, ci: usize) -> Result<ApiServer, LabError> {
        ApiServer::of(&self.opts, &self.state, ci)
    }

    /// Whether the clusters run on real Kubernetes control planes.
    pub fn is_kubernetes(&self) -> bool {
        kubernetes::enabled(&self.state)
    }

    /// Takes in the pods the node agents run (Kubernetes mode), as they last wrote them.
    fn refresh_node_pods(&mut self) {
        if !self.is_kubernetes() {
            return;
        }
        for c in &mut self.state.clusters {
            c.pods.retain(|p| !p.from_node);
            c.pods
                .extend(node::read_pods(&self.opts.state_dir, &c.name));
        }
    }

    fn save(&self) -> Result<(), LabError> {
        self.state.save(&self.opts.state_dir)
    }

    /// True when every process the lab started is still running. Pods the node agents run
    /// (Kubernetes mode) are theirs to watch: one being deleted, or whose container
    /// exited, is reported through the API, not a broken lab.
    pub fn healthy(&self) -> bool {
        self.state
            .clusters
            .iter()
            .flat_map(|c| c.pods.iter())
            .filter(|p| !p.from_node)
            .flat_map(|p| p.pids.iter())
            .all(|pid| process::alive(*pid))
    }

    /// The running lab, or an error saying how to start one.
    pub fn load(opts: LabOptions) -> Result<Lab, LabError> {
        match LabState::load(&opts.state_dir)? {
            Some(state) => {
                let mut lab = Lab {
                    opts,
                    state,
                    scenario_vars: Vec::new(),
                };
                lab.refresh_node_pods();
                Ok(lab)
            }
            None => Err(LabError::NotRunning(opts.state_dir.clone())),
        }
    }

    /// Stops every process, removes every namespace with the prefix and the state.
    /// Also cleans up after a lab that crashed.
    pub fn down(opts: &LabOptions, progress: &mut dyn FnMut(&str)) -> Result<(), LabError> {
        netns::preflight()?;
        if let Ok(Some(state)) = LabState::load(&opts.state_dir) {
            // The node agents first, so that they start nothing more.
            for pid in state.clusters.iter().filter_map(|c| c.node_pid) {
                process::stop(pid, Duration::from_secs(3));
            }
            for c in &state.clusters {
                for p in c
                    .pods
                    .iter()
                    .chain(node::read_pods(&opts.state_dir, &c.name).iter())
                {
                    for pid in &p.pids {
                        process::stop(*pid, Duration::from_secs(3));
                    }
                }
            }
        }
        let namespaces = netns::list(&opts.prefix)?;
        for ns in &namespaces {
            for pid in process::in_namespace(ns) {
                process::stop(pid, Duration::from_secs(2));
            }
        }
        for ns in &namespaces {
            netns::delete(ns)?;
        }
        if !namespaces.is_empty() {
            progress(&format!(
                "removed {} network namespaces ({}-*)",
                namespaces.len(),
                opts.prefix
            ));
        }
        if let Ok(Some(state)) = LabState::load(&opts.state_dir) {
            for c in &state.clusters {
                let _ = std::fs::remove_file(node::pods_file(&opts.state_dir, &c.name));
            }
        }
        let file = LabState::file(&opts.state_dir);
        if file.exists() {
            std::fs::remove_file(&file).map_err(io(&file))?;
        }
        Ok(())
    }

    /// Brings up the lab described by `dir` (a topology file and one manifest folder per
    /// cluster), waiting until every proxy is ready. A lab that still runs with the same
    /// state folder or namespace prefix is an error unless `opts.replace` (what a crashed
    /// one left is removed).
    pub fn up(
        dir: &Path,
        opts: LabOptions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Lab, LabError> {
        netns::preflight()?;
        let mut topology = Topology::load(dir)?;
        topology.kubernetes |= opts.kubernetes;
        if let Some(scoping) = opts.scoping {
            topology.on_demand_scoping =
                Some(scoping == isthmus_control_plane::config::ScopingMode::OnDemand);
        }
        if opts.scope_idle > 0 {
            topology.scope_idle_seconds = opts.scope_idle;
        }
        if topology.scope_idle_seconds > 0 && !topology.on_demand() {
            return Err(LabError::Invalid(format!(
                "{}: a scope idle time ({} s) lets go of services a sidecar got on demand, and this lab scopes fully (`onDemandScoping: false` or `--scoping full`)",
                dir.join("topology.yaml").display(),
                topology.scope_idle_seconds
            )));
        }
        if topology.kubernetes && topology.automation {
            return Err(LabError::Invalid(format!(
                "{}: `automation: true` generates ServiceEntries from the other clusters' registry folders; on Kubernetes the clusters have API servers instead, which the automation does not read yet: run this lab without Kubernetes mode",
                dir.join("topology.yaml").display()
            )));
        }
        let envoy = locate_envoy(opts.envoy.as_deref())?;
        if topology.kubernetes {
            // Fail before touching the network when the binaries are not built.
            isthmus_kube::local::locate_binaries(opts.kube_bin.as_deref())
                .and_then(|_| isthmus_kube::local::locate_istio_crds())
                .map_err(|e| LabError::Invalid(e.to_string()))?;
        }
        if !opts.replace {
            refuse_running(&opts)?;
        }
        // Crash-safe: whatever a previous lab with this prefix left is removed first.
        Lab::down(&opts, progress)?;
        let _ = std::fs::remove_dir_all(&opts.state_dir);
        std::fs::create_dir_all(&opts.state_dir).map_err(io(&opts.state_dir))?;
        let vars = manifests::variables(&topology, &opts.state_dir);
        // Read every cluster's manifests before touching the network: a bad file stops
        // here with its file and line, and nothing is half built. (On Kubernetes they are
        // read again when applied, and the API server has the last word.)
        let mut manifests = Vec::new();
        for c in &topology.clusters {
            let cdir = dir.join(&c.name);
            let m = if cdir.is_dir() {
                manifests::read(&manifests::files(&cdir, "default")?, &vars)?
            } else {
                Manifests::default()
            };
            manifests::check_images(&m)?;
            manifests.push(m);
        }
        let source = dir.canonicalize().map_err(io(dir))?;
        let state = LabState::new(&opts.prefix, source, topology, envoy);
        let mut lab = Lab {
            opts,
            state,
            scenario_vars: Vec::new(),
        };
        lab.save()?;
        install::certificates(&lab.opts, &lab.state.topology, progress)?;
        network::build(&lab.state, progress)?;
        let clusters = lab.state.topology.clusters.clone();
        if lab.is_kubernetes() {
            for i in 0..clusters.len() {
                kubernetes::start(&lab.opts, &mut lab.state, i, progress)?;
                lab.start_node_agent(i, progress)?;
            }
        } else {
            // Every registry exists before any control plane starts: with the automation,
            // a control plane watches the other clusters' registries too.
            for c in &clusters {
                ApiServer::new(&lab.opts.state_dir, &c.name).create()?;
            }
        }
        for i in 0..clusters.len() {
            install::control_plane(&lab.opts, &mut lab.state, i, progress)?;
        }
        for (i, c) in clusters.iter().enumerate() {
            if c.east_west_gateway {
                install::east_west_gateway(&lab.opts, &mut lab.state, i, progress)?;
            }
            if c.egress_gateway {
                install::egress_gateway(&lab.opts, &mut lab.state, i, progress)?;
            }
        }
        if lab.is_kubernetes() {
            for c in &clusters {
                let cdir = dir.join(&c.name);
                if cdir.is_dir() {
                    lab.apply_kubernetes(&c.name, &cdir, "default", progress)?;
                }
            }
        } else {
            for (i, m) in manifests.into_iter().enumerate() {
                lab.apply_manifests(i, m, progress)?;
            }
        }
        lab.wait_ready(Duration::from_secs(90), progress)?;
        Ok(lab)
    }

    /// Starts cluster number `ci`'s node agent (`isthmus lab node`) in its router's
    /// namespace, and waits until its Node is registered.
    fn start_node_agent(
        &mut self,
        ci: usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        let c = &self.state.clusters[ci];
        let name = c.name.clone();
        let log = self
            .opts
            .state_dir
            .join("kube")
            .join(&name)
            .join("node.log");
        let args = process::args(&[
            &self.opts.exe_arg(),
            "lab",
            "node",
            "--cluster",
            &name,
            "--state",
            &self.opts.state_dir.display().to_string(),
            "--prefix",
            &self.opts.prefix,
        ]);
        let pid = process::spawn_in_net(&c.router_netns, &args, &log)?;
        self.state.clusters[ci].node_pid = Some(pid);
        self.save()?;
        let node = kubernetes::node_name(&name);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if !process::alive(pid) {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(LabError::Invalid(format!(
                    "{name}: the node agent exited:\n{}",
                    text.lines()
                        .rev()
                        .take(10)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                )));
            }
            let ready = kubernetes::run_kubectl(
                &self.opts,
                &self.state,
                ci,
                &[
                    "get",
                    "node",
                    &node,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
                None,
            );
            if ready.is_ok_and(|s| s.trim() == "True") {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(LabError::Timeout(format!(
                    "{name}: node {node} not Ready after 30 s (see {})",
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        progress(&format!(
            "{name}: node {node} Ready: the lab's node agent is its kubelet and kube-proxy (log {})",
            log.display()
        ));
        Ok(())
    }

    /// `kubectl apply -f` through cluster `cluster`'s real API server: every file (its
    /// placeholders filled) as it is, namespaces created first, then waits until the
    /// Deployments in the touched namespaces are available and every proxy is ready. The API
    /// server's message is the error for an object it refuses.
    fn apply_kubernetes(
        &mut self,
        cluster: &str,
        path: &Path,
        namespace: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        let ci = self.state.cluster(cluster)?.index;
        let vars = self.variables();
        let inputs = manifests::files(path, namespace)?;
        let mut namespaces: Vec<String> = Vec::new();
        let mut docs = Vec::new();
        for (file, ns) in &inputs {
            let text = std::fs::read_to_string(file).map_err(io(file))?;
            let filled = manifests::fill(&text, file, &vars)?;
            let (filled, notes) = manifests::upgrade_removed_apis(&filled, file)?;
            for n in notes {
                progress(&format!("{cluster}: {n}"));
            }
            if !namespaces.contains(ns) {
                namespaces.push(ns.clone());
            }
            docs.push((file.clone(), ns.clone(), filled));
        }
        for ns in &namespaces {
            let exists = kubernetes::run_kubectl(
                &self.opts,
                &self.state,
                ci,
                &["get", "namespace", ns, "-o", "name"],
                None,
            );
            if exists.is_err() {
                kubernetes::run_kubectl(
                    &self.opts,
                    &self.state,
                    ci,
                    &["create", "namespace", ns],
                    None,
                )?;
            }
        }
        // Files that define Namespaces go first, so that their labels are in place before
        // any pod starts.
        docs.sort_by_key(|(_, _, text)| !text.lines().any(|l| l.trim() == "kind: Namespace"));
        let mut failed = Vec::new();
        for (file, ns, text) in &docs {
            // Objects that name their namespace go as they are; the others into the file's
            // default namespace (kubectl refuses `-n` that differs from an object's own).
            for (own, part) in manifests::split_by_namespace(text) {
                let args = with_namespace(&["apply", "-f", "-"], own, ns);
                match kubernetes::run_kubectl(&self.opts, &self.state, ci, &args, Some(&part)) {
                    Ok(out) => {
                        for line in out.lines().filter(|l| !l.trim().is_empty()) {
                            progress(&format!("{cluster}: {line}"));
                        }
                    }
                    Err(e) => failed.push(format!("{}: {e}", file.display())),
                }
            }
        }
        if !failed.is_empty() {
            return Err(LabError::Invalid(format!(
                "{cluster}: the API server refused objects (the others were applied):\n{}",
                failed.join("\n")
            )));
        }
        for ns in &namespaces {
            let deployments = kubernetes::run_kubectl(
                &self.opts,
                &self.state,
                ci,
                &["get", "deployments", "-n", ns, "-o", "name"],
                None,
            )?;
            if deployments.trim().is_empty() {
                continue;
            }
            let waited = kubernetes::run_kubectl(
                &self.opts,
                &self.state,
                ci,
                &[
                    "wait",
                    "--for=condition=Available",
                    "deployment",
                    "--all",
                    "-n",
                    ns,
                    "--timeout=120s",
                ],
                None,
            );
            if let Err(e) = waited {
                // Why, as the controllers said it (a missing ServiceAccount, a refused pod).
                let warnings = kubernetes::run_kubectl(
                    &self.opts,
                    &self.state,
                    ci,
                    &[
                        "get",
                        "events",
                        "-n",
                        ns,
                        "--field-selector",
                        "type=Warning",
                        "-o",
                        "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message",
                        "--no-headers",
                    ],
                    None,
                )
                .unwrap_or_default();
                let mut seen = Vec::new();
                for line in warnings.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if !seen.contains(&line) {
                        seen.push(line);
                    }
                }
                if seen.is_empty() {
                    return Err(e);
                }
                return Err(LabError::Invalid(format!(
                    "{e}\n{cluster}: the warnings in namespace {ns}:\n{}",
                    seen.join("\n")
                )));
            }
            progress(&format!("{cluster}: deployments in {ns} available"));
        }
        self.refresh_node_pods();
        self.wait_ready(Duration::from_secs(60), progress)
    }

    fn apply_manifests(
        &mut self,
        ci: usize,
        m: Manifests,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        let cname = self.state.clusters[ci].name.clone();
        let api = self.api(ci)?;
        for n in &m.namespaces {
            api.put_namespace(n)?;
            let injected =
                n.metadata.labels.get("istio-injection").map(String::as_str) == Some("enabled");
            self.state.clusters[ci].set_injection(&n.metadata.name, injected);
        }
        for svc in m.services {
            let name = format!("{}.{}", svc.metadata.name, svc.metadata.namespace);
            let cidr = self.state.topology.clusters[ci].service_cidr;
            let ip = api.put_service(&mut self.state.clusters[ci], cidr, svc)?;
            progress(&format!("{cname}: service {name} ClusterIP {ip}"));
        }
        for d in &m.stored {
            api.put(&d.namespace, &d.kind, &d.name, &d.text)?;
            progress(&format!(
                "{cname}: {} {}/{} stored",
                d.kind, d.namespace, d.name
            ));
        }
        for d in m.deployments {
            kubelet::run_deployment(&self.opts, &mut self.state, ci, &d, progress)?;
        }
        self.sync_services(ci)?;
        self.save()
    }

    /// Rewrites cluster number `ci`'s ClusterIP rules (see [`kube_proxy::sync`]).
    fn sync_services(&self, ci: usize) -> Result<(), LabError> {
        kube_proxy::sync(&self.api(ci)?, &self.state.clusters[ci])
    }

    /// `kubectl apply -f`: validates, stores, and runs new Deployments' pods.
    pub fn apply(
        &mut self,
        cluster: &str,
        path: &Path,
        namespace: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        netns::preflight()?;
        if self.is_kubernetes() {
            return self.apply_kubernetes(cluster, path, namespace, progress);
        }
        let ci = self.state.cluster(cluster)?.index;
        let m = manifests::read(&manifests::files(path, namespace)?, &self.variables())?;
        manifests::check_images(&m)?;
        self.apply_manifests(ci, m, progress)?;
        self.wait_ready(Duration::from_secs(60), progress)
    }

    /// The variables files are filled with: the lab's (and `podIP:CLUSTER/NS/NAME` of each
    /// VM), then the running scenario's.
    fn variables(&self) -> Vec<(String, String)> {
        let mut vars = manifests::variables(&self.state.topology, &self.opts.state_dir);
        // A VM's address, for the WorkloadEntry that registers it.
        for c in &self.state.clusters {
            for p in c.pods.iter().filter(|p| p.role == PodRole::Vm) {
                vars.push((
                    format!("podIP:{}/{}/{}", c.name, p.namespace, p.name),
                    p.ip.clone(),
                ));
            }
        }
        vars.extend(self.scenario_vars.iter().cloned());
        vars
    }

    /// `kubectl delete -f`: removes what the file names, and the pods of its Deployments.
    pub fn delete(
        &mut self,
        cluster: &str,
        path: &Path,
        namespace: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        netns::preflight()?;
        if self.is_kubernetes() {
            return self.delete_kubernetes(cluster, path, namespace, progress);
        }
        let ci = self.state.cluster(cluster)?.index;
        let m = manifests::read(&manifests::files(path, namespace)?, &self.variables())?;
        let api = self.api(ci)?;
        for d in &m.stored {
            if api.delete(&d.namespace, &d.kind, &d.name)? {
                progress(&format!(
                    "{cluster}: {} {}/{} deleted",
                    d.kind, d.namespace, d.name
                ));
            } else {
                progress(&format!(
                    "{cluster}: {} {}/{} not found",
                    d.kind, d.namespace, d.name
                ));
            }
        }
        for svc in &m.services {
            api.delete(&svc.metadata.namespace, "Service", &svc.metadata.name)?;
            release_cluster_ip(
                &mut self.state.clusters[ci],
                &svc.metadata.namespace,
                &svc.metadata.name,
            );
            progress(&format!(
                "{cluster}: service {}.{} deleted",
                svc.metadata.name, svc.metadata.namespace
            ));
        }
        for d in &m.deployments {
            while let Some(i) = self.state.clusters[ci].pods.iter().position(|p| {
                *p.namespace == *d.metadata.namespace
                    && p.deployment.as_deref() == Some(&d.metadata.name)
            }) {
                let name = self.state.clusters[ci].pods[i].name.clone();
                kubelet::stop_pod(&self.opts, &mut self.state, ci, i)?;
                progress(&format!(
                    "{cluster}: pod {}/{name} deleted",
                    d.metadata.namespace
                ));
            }
        }
        self.sync_services(ci)?;
        self.save()
    }

    /// `kubectl delete -f` through cluster `cluster`'s real API server; the node agent
    /// stops the pods the controllers delete.
    fn delete_kubernetes(
        &mut self,
        cluster: &str,
        path: &Path,
        namespace: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        let ci = self.state.cluster(cluster)?.index;
        let vars = self.variables();
        for (file, ns) in manifests::files(path, namespace)? {
            let text = std::fs::read_to_string(&file).map_err(io(&file))?;
            let filled = manifests::fill(&text, &file, &vars)?;
            let (filled, _) = manifests::upgrade_removed_apis(&filled, &file)?;
            for (own, part) in manifests::split_by_namespace(&filled) {
                let args = with_namespace(&["delete", "-f", "-", "--ignore-not-found"], own, &ns);
                let out = kubernetes::run_kubectl(&self.opts, &self.state, ci, &args, Some(&part))?;
                for line in out.lines().filter(|l| !l.trim().is_empty()) {
                    progress(&format!("{cluster}: {line}"));
                }
            }
        }
        self.refresh_node_pods();
        Ok(())
    }

    /// Stops a mesh component of `cluster` (control plane or gateway), keeping its pod.
    pub fn stop_component(
        &mut self,
        cluster: &str,
        what: install::Restartable,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        let ci = self.state.cluster(cluster)?.index;
        install::stop(&self.opts, &mut self.state, ci, what)?;
        progress(&format!("{cluster}: {what} stopped"));
        Ok(())
    }

    /// Starts a stopped mesh component of `cluster` again and waits until every proxy is
    /// ready; returns how long that took.
    pub fn start_component(
        &mut self,
        cluster: &str,
        what: install::Restartable,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Duration, LabError> {
        let ci = self.state.cluster(cluster)?.index;
        let started = std::time::Instant::now();
        install::start(&self.opts, &mut self.state, ci, what)?;
        self.wait_ready(Duration::from_secs(60), progress)?;
        let took = started.elapsed();
        progress(&format!(
            "{cluster}: {what} started; every proxy ready after {:.1} s",
            took.as_secs_f64()
        ));
        Ok(took)
    }

    /// Stops and starts a mesh component of `cluster`; returns how long until every proxy
    /// was ready again.
    pub fn restart_component(
        &mut self,
        cluster: &str,
        what: install::Restartable,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Duration, LabError> {
        self.stop_component(cluster, what, progress)?;
        self.start_component(cluster, what, progress)
    }

    /// GET on a pod's loopback (Envoy admin 15000, control plane monitoring 15014).
    pub fn pod_http(&self, pod: &PodState, port: u16, path: &str) -> Result<String, LabError> {
        kubelet::pod_http(&self.opts, pod, port, path)
    }

    /// Waits until every proxy's Envoy says it is ready (all initial xDS received).
    pub fn wait_ready(
        &self,
        timeout: Duration,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        kubelet::wait_ready(&self.opts, &self.state, timeout, progress)
    }

    /// Starts a VM (see [`crate::vm`]) and waits until its sidecar is ready; returns its
    /// address.
    pub fn add_vm(
        &mut self,
        spec: &crate::vm::VmSpec,
        progress: &mut dyn FnMut(&str),
    ) -> Result<std::net::Ipv4Addr, LabError> {
        netns::preflight()?;
        let ip = crate::vm::start(&self.opts, &mut self.state, spec, progress);
        // What was started is recorded even when it failed half-way, so `down` finds it.
        self.save()?;
        let ip = ip?;
        self.wait_ready(Duration::from_secs(60), progress)?;
        Ok(ip)
    }

    /// Stops VM `namespace/name` of `cluster`.
    pub fn delete_vm(
        &mut self,
        cluster: &str,
        namespace: &str,
        name: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        netns::preflight()?;
        crate::vm::stop(&self.opts, &mut self.state, cluster, namespace, name)?;
        self.save()?;
        progress(&format!("{cluster}: VM {namespace}/{name} deleted"));
        Ok(())
    }

    /// The options the lab runs with.
    pub fn options(&self) -> &LabOptions {
        &self.opts
    }

    /// Runs a command in a pod, as `kubectl exec` does; returns its output.
    pub fn exec_output(
        &self,
        cluster: &str,
        namespace: &str,
        pod: &str,
        command: &[String],
    ) -> Result<std::process::Output, LabError> {
        let p = self.state.pod(cluster, namespace, pod)?;
        std::process::Command::new("ip")
            .args(["netns", "exec", &p.netns])
            .args(command)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| LabError::Command {
                command: command.join(" "),
                stderr: e.to_string(),
            })
    }

    /// Runs a command in a pod with the terminal attached; returns its exit code.
    pub fn exec(
        &self,
        cluster: &str,
        namespace: &str,
        pod: &str,
        command: &[String],
    ) -> Result<i32, LabError> {
        let p = self.state.pod(cluster, namespace, pod)?;
        let status = std::process::Command::new("ip")
            .args(["netns", "exec", &p.netns])
            .args(command)
            .status()
            .map_err(|e| LabError::Command {
                command: command.join(" "),
                stderr: e.to_string(),
            })?;
        Ok(status.code().unwrap_or(1))
    }

    /// One Envoy statistic of a pod's proxy (0 when absent).
    pub fn envoy_stat(
        &self,
        cluster: &str,
        namespace: &str,
        pod: &str,
        stat: &str,
    ) -> Result<u64, LabError> {
        let p = self.state.pod(cluster, namespace, pod)?;
        let stats = self.pod_http(p, 15000, "/stats")?;
        Ok(stats
            .lines()
            .find_map(|l| l.strip_prefix(stat).and_then(|r| r.strip_prefix(": ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Every running proxy's rejected configuration updates (NACKs): (`cluster/ns/pod`,
    /// each `...update_rejected` statistic above 0), and how many proxies were asked.
    /// A proxy that does not answer is listed with why.
    pub fn rejected_updates(&self) -> (Vec<(String, String)>, usize) {
        let mut rejected = Vec::new();
        let mut asked = 0;
        let nacks = |who: &str, stats: &str| -> Vec<(String, String)> {
            nonzero_counters(stats)
                .filter(|(name, _)| name.contains("update_rejected"))
                .map(|(name, n)| (who.to_string(), format!("{name}: {n}")))
                .collect()
        };
        let path = "/stats?filter=update_rejected";
        for c in &self.state.clusters {
            for p in c.pods.iter().filter(|p| p.proxy && !p.stopped) {
                let who = format!("{}/{}/{}", c.name, p.namespace, p.name);
                let first = self.pod_http(p, 15000, path);
                let stats = match first {
                    Ok(s) => Ok(s),
                    Err(e) => {
                        // A pod being deleted (Kubernetes terminates it before the lab's
                        // state forgets it) has nothing left to ask: not a failure. Its
                        // namespace empties, or its node agent stops its processes (Envoy
                        // first, its app maybe later) or no longer lists it.
                        std::thread::sleep(std::time::Duration::from_secs(2));
                        let deleting = p.from_node
                            && (!p.pids.iter().all(|pid| process::alive(*pid))
                                || !node::read_pods(&self.opts.state_dir, &c.name)
                                    .iter()
                                    .any(|q| q.namespace == p.namespace && q.name == p.name));
                        if deleting || process::in_namespace(&p.netns).is_empty() {
                            continue;
                        }
                        self.pod_http(p, 15000, path).map_err(|_| e)
                    }
                };
                asked += 1;
                match stats {
                    Ok(stats) => rejected.extend(nacks(&who, &stats)),
                    Err(e) => rejected.push((who, format!("its admin did not answer: {e}"))),
                }
            }
        }
        (rejected, asked)
    }

    /// A table of clusters and pods, like `kubectl get pods -A -o wide`.
    pub fn status(&self) -> String {
        let mut out = format!(
            "lab {} from {} (namespaces {}-*)\n",
            self.state.topology.name,
            self.state.source.display(),
            self.state.prefix
        );
        out.push_str(&format!(
            "{:<10} {:<14} {:<28} {:<12} {:<14} {:<8} {}\n",
            "CLUSTER", "NAMESPACE", "POD", "IP", "PUBLIC", "STATUS", "PROXY"
        ));
        for c in &self.state.clusters {
            for p in &c.pods {
                let running = p.pids.iter().all(|pid| process::alive(*pid));
                let proxy = if p.proxy {
                    match self.pod_http(p, 15000, "/ready") {
                        Ok(b) if b.contains("LIVE") => "ready",
                        _ => "not ready",
                    }
                } else if p.role == PodRole::ControlPlane {
                    "xDS+CA :15012, DNS :53"
                } else {
                    "-"
                };
                out.push_str(&format!(
                    "{:<10} {:<14} {:<28} {:<12} {:<14} {:<8} {}\n",
                    c.name,
                    p.namespace,
                    if p.role == PodRole::Vm {
                        format!("{} (VM)", p.name)
                    } else {
                        p.name.clone()
                    },
                    p.ip,
                    p.public_ip.as_deref().unwrap_or("-"),
                    if p.stopped {
                        "Stopped"
                    } else if running {
                        "Running"
                    } else {
                        "Failed"
                    },
                    proxy
                ));
            }
        }
        out
    }
}
