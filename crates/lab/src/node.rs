//! The lab's node agent in Kubernetes mode: the kubelet and kube-proxy of a cluster's one
//! Node, run as `isthmus lab node --cluster NAME` in the cluster's router namespace.
//!
//! - It registers the Node (capacity for the scheduler, a Ready condition renewed every
//!   10 s so that the node lifecycle controller keeps it).
//! - It watches the Pods bound to the Node. Each new Pod runs as the file-mode lab runs
//!   one (its own network namespace, the demo app its image names, a captured sidecar in a
//!   namespace labelled `istio-injection=enabled`), and its status (pod IP, phase, Ready
//!   once its sidecar's Envoy is ready) goes back to the API server, so that the real
//!   endpoint controller makes the EndpointSlices. A Pod being deleted is stopped, then
//!   removed with a zero grace period, as a kubelet does.
//! - A pod's sidecar authenticates to the mesh CA with a bound service-account token for the
//!   audience `istio-ca` (what a kubelet projects as Istio's `istio-token`), requested from
//!   the API server for the pod and renewed at 80% of its life; the CA reviews it there.
//!   In a cluster served by another cluster's control plane (seed 003's remote) the sidecar
//!   uses the lab's credential instead: that seed creates the remote secret only after the
//!   remote workloads run, and until then no control plane could review their tokens (Istio
//!   refuses them too).
//! - It keeps the router's ClusterIP rules (`ISTHMUS-SERVICES`) in line with the Services
//!   and EndpointSlices, as kube-proxy does.
//!
//! Pods the lab itself runs (the mesh's control plane and gateways, annotated
//! [`LAB_MANAGED`]) are on the Node too but are left alone. The pods it runs are written to
//! `node-CLUSTER.json` in the state directory for the other lab commands.

use crate::container;
use crate::demo::DemoApp;
use crate::error::{io, LabError};
use crate::kubelet;
use crate::kubernetes;
use crate::netns;
use crate::network;
use crate::options::LabOptions;
use crate::pod_spec::{self, ProjectedToken};
use crate::process;
use crate::state::{LabState, PodRole, PodState};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// The annotation of Pods the lab runs itself (the mesh's control plane and gateways): the
/// node agent does not run them.
pub const LAB_MANAGED: &str = "isthmus.io/lab-managed";

/// The file of the pods the node agent of `cluster` runs.
pub fn pods_file(state_dir: &Path, cluster: &str) -> PathBuf {
    state_dir.join(format!("node-{cluster}.json"))
}

/// The pods the node agent of `cluster` runs, as it last wrote them.
pub fn read_pods(state_dir: &Path, cluster: &str) -> Vec<PodState> {
    std::fs::read(pods_file(state_dir, cluster))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_pods(
    state_dir: &Path,
    cluster: &str,
    pods: &BTreeMap<String, Running>,
) -> Result<(), LabError> {
    let file = pods_file(state_dir, cluster);
    let tmp = file.with_extension("json.tmp");
    let list: Vec<&PodState> = pods.values().map(|r| &r.pod).collect();
    let bytes = serde_json::to_vec_pretty(&list)
        .map_err(|e| LabError::Invalid(format!("encoding {}: {e}", file.display())))?;
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &file).map_err(io(&file))
}

/// When a projected token that lives `ttl_secs` is renewed: at 80% of its life, as a
/// kubelet renews projected tokens.
fn token_renewal(ttl_secs: i64) -> std::time::Instant {
    std::time::Instant::now()
        + Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(3600) * 8 / 10)
}

/// A pod's HTTP readiness probes: (port, path) at its address.
type Probes = Vec<(u16, String)>;

/// A pod the agent runs.
struct Running {
    pod: PodState,
    /// The Pod's uid in the API (a Pod re-created under the same name is another pod).
    uid: String,
    /// Whether its Ready condition has been reported true.
    reported_ready: bool,
    /// Its projected service-account tokens and when each is renewed (none for a pod
    /// adopted from an earlier agent, which keeps the tokens it has).
    tokens: Vec<(ProjectedToken, std::time::Instant)>,
    /// Its containers' HTTP readiness probes (port, path), asked at the pod's address.
    probes: Probes,
    /// The Pod as the API had it when it started (for renewing bound tokens).
    api: Option<Box<Pod>>,
}

/// What the agent works from.
struct Agent {
    opts: LabOptions,
    /// The lab (topology, addresses); its pod address counter is the agent's own.
    state: LabState,
    ci: usize,
    client: kube::Client,
    running: BTreeMap<String, Running>,
    /// Pods that could not run: when to try again (with backoff, as a kubelet retries an
    /// image pull), by namespace/name and uid.
    failed: BTreeMap<String, (String, u32, std::time::Instant)>,
    /// The LoadBalancer Service given the cluster's public address, and the pod holding it
    /// (namespace/name each).
    load_balancer: Option<(String, String)>,
}

/// Runs the node agent of `cluster` until it is stopped.
pub async fn run(opts: LabOptions, cluster: &str) -> Result<(), LabError> {
    let state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::NotRunning(opts.state_dir.clone()))?;
    let ci = state.cluster(cluster)?.index;
    let access = isthmus_kube::Access::File {
        path: kubernetes::kubeconfig(&opts.state_dir, cluster),
        context: None,
    };
    let client = access
        .client()
        .await
        .map_err(|e| LabError::Invalid(e.to_string()))?;
    let node = kubernetes::node_name(cluster);
    let mut state = state;
    // App pods take addresses after everything the lab has given out.
    let c = &mut state.clusters[ci];
    c.last_pod = c.last_pod.max(kubernetes::HOST);
    let mut agent = Agent {
        opts,
        state,
        ci,
        client: client.clone(),
        running: BTreeMap::new(),
        failed: BTreeMap::new(),
        load_balancer: None,
    };
    // Pods a previous agent ran and that still run are kept.
    for p in read_pods(&agent.opts.state_dir, cluster) {
        if p.pids.iter().all(|pid| process::alive(*pid)) {
            // Their addresses stay taken.
            let cidr = agent.state.topology.clusters[ci].pod_cidr;
            if let Ok(ip) = p.ip.parse::<std::net::Ipv4Addr>() {
                let host = u32::from(ip).saturating_sub(u32::from(cidr.addr));
                let c = &mut agent.state.clusters[ci];
                c.last_pod = c.last_pod.max(host);
            }
            let key = format!("{}/{}", p.namespace, p.name);
            agent.running.insert(
                key,
                Running {
                    uid: String::new(),
                    pod: p,
                    reported_ready: false,
                    tokens: Vec::new(),
                    probes: Vec::new(),
                    api: None,
                },
            );
        }
    }
    register(&client, &node, &agent.state, ci).await?;
    tracing::info!(%node, "node registered");
    tokio::spawn(heartbeat(client.clone(), node.clone()));
    tokio::spawn(kube_proxy(
        client.clone(),
        agent.state.clusters[ci].router_netns.clone(),
    ));
    let agent = Arc::new(Mutex::new(agent));
    tokio::spawn(readiness(agent.clone()));
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = std::pin::pin!(watcher(pods, config).default_backoff());
    // The Pods bound to the node, by namespace/name.
    let mut desired: BTreeMap<String, Pod> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, Pod>> = None;
    loop {
        // Events, and a tick every 2 s for pods waiting to be tried again.
        let event = tokio::select! {
            e = stream.next() => match e {
                Some(e) => Some(e),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_secs(2)) => None,
        };
        let event = match event {
            None => {
                let mut agent = agent.lock().await;
                agent.renew_tokens().await;
                agent.load_balancers().await;
                if listing.is_none() {
                    if let Err(e) = agent.reconcile(&desired).await {
                        tracing::error!(error = %e, "reconciling the node's pods");
                    }
                }
                continue;
            }
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "watching the node's pods failed; retrying");
                continue;
            }
        };
        let key = |p: &Pod| {
            format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            )
        };
        match event {
            watcher::Event::Init => listing = Some(BTreeMap::new()),
            watcher::Event::InitApply(p) => {
                if let Some(l) = &mut listing {
                    l.insert(key(&p), p);
                }
            }
            watcher::Event::InitDone => desired = listing.take().unwrap_or_default(),
            watcher::Event::Apply(p) => {
                desired.insert(key(&p), p);
            }
            watcher::Event::Delete(p) => {
                desired.remove(&key(&p));
            }
        }
        if listing.is_none() {
            let mut agent = agent.lock().await;
            if let Err(e) = agent.reconcile(&desired).await {
                tracing::error!(error = %e, "reconciling the node's pods");
            }
        }
    }
    Ok(())
}

/// Creates (or takes over) the Node object, with room for many pods and Ready.
async fn register(
    client: &kube::Client,
    node: &str,
    state: &LabState,
    ci: usize,
) -> Result<(), LabError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let spec = &state.topology.clusters[ci];
    let address = spec
        .pod_cidr
        .host(1)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let object: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node,
            "labels": {
                "kubernetes.io/hostname": node,
                "kubernetes.io/os": "linux",
                "topology.istio.io/network": spec.network,
            }
        },
    }))
    .map_err(|e| LabError::Invalid(format!("node object: {e}")))?;
    match nodes.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(LabError::Invalid(format!("registering node {node}: {e}"))),
    }
    let status = serde_json::json!({
        "status": {
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "250"},
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "250"},
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": node}],
            "conditions": [ready_condition()],
            "nodeInfo": {
                "architecture": std::env::consts::ARCH,
                "operatingSystem": "linux",
                "kubeletVersion": "isthmus-lab",
                "kubeProxyVersion": "isthmus-lab",
                "containerRuntimeVersion": "isthmus-lab://netns",
                "bootID": "", "kernelVersion": "", "machineID": "", "osImage": "isthmus lab", "systemUUID": ""
            }
        }
    });
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| LabError::Invalid(format!("node {node} status: {e}")))?;
    Ok(())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn ready_condition() -> serde_json::Value {
    serde_json::json!({
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "the lab's node agent is running",
        "lastHeartbeatTime": now(), "lastTransitionTime": now(),
    })
}

/// Renews the Node's Ready condition every 10 s.
async fn heartbeat(client: kube::Client, node: String) {
    let nodes: Api<Node> = Api::all(client);
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let status = serde_json::json!({"status": {"conditions": [ready_condition()]}});
        if let Err(e) = nodes
            .patch_status(&node, &PatchParams::default(), &Patch::Strategic(&status))
            .await
        {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
    }
}

impl Agent {
    /// Brings the running pods in line with the Pods bound to the node.
    async fn reconcile(&mut self, desired: &BTreeMap<String, Pod>) -> Result<(), LabError> {
        // Pods gone from the API, re-created under another uid, or being deleted.
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(k, r)| match desired.get(*k) {
                None => true,
                Some(p) => {
                    p.metadata.deletion_timestamp.is_some()
                        || (!r.uid.is_empty() && p.metadata.uid.as_deref() != Some(r.uid.as_str()))
                }
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.stop(&key, desired.get(&key)).await;
        }
        // Pods being deleted that this agent never ran (or already stopped) are removed.
        for (key, p) in desired {
            if p.metadata.deletion_timestamp.is_some() && !self.running.contains_key(key) {
                self.finish_deletion(p).await;
            }
        }
        for (key, p) in desired {
            if self.running.contains_key(key) || p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let managed = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(LAB_MANAGED));
            if managed {
                continue;
            }
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let attempts = match self.failed.get(key) {
                Some((u, n, at)) if *u == uid => {
                    if std::time::Instant::now() < *at {
                        continue;
                    }
                    *n
                }
                _ => 0,
            };
            match self.start(p).await {
                Ok(()) => {
                    self.failed.remove(key);
                }
                Err(e) => {
                    let wait = Duration::from_secs((2u64 << attempts.min(5)).min(60));
                    tracing::error!(pod = %key, error = %e, retry_in_s = wait.as_secs(), "cannot run pod");
                    self.report_failure(p, &e.to_string()).await;
                    self.failed.insert(
                        key.clone(),
                        (uid, attempts + 1, std::time::Instant::now() + wait),
                    );
                }
            }
        }
        self.failed.retain(|k, _| desired.contains_key(k));
        let cluster = self.state.clusters[self.ci].name.clone();
        write_pods(&self.opts.state_dir, &cluster, &self.running)
    }

    /// Runs one Pod as its spec says and reports it running (not yet ready): its volumes,
    /// its init containers to completion, then its containers. A container of the Isthmus
    /// image runs the `isthmus` binary ([`crate::container`]); any other image is one of the
    /// lab's demo apps.
    async fn start(&mut self, p: &Pod) -> Result<(), LabError> {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let spec = p.spec.clone().unwrap_or_default();
        if spec.containers.is_empty() {
            return Err(LabError::Invalid(format!(
                "pod {ns}/{name} has no container"
            )));
        }
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let image = c.image.clone().unwrap_or_default();
            if !container::is_isthmus_image(&image) {
                DemoApp::for_image(&image).map_err(|e| {
                    LabError::Invalid(format!("pod {ns}/{name}: container {}: {e}", c.name))
                })?;
            }
        }
        let injected = spec
            .containers
            .iter()
            .any(|c| c.name == isthmus_kube::inject::PROXY_CONTAINER);
        // What the lab installed since this agent started (the control plane's address).
        let (opts, ci) = (self.opts.clone(), self.ci);
        if let Ok(Some(now)) = LabState::load(&opts.state_dir) {
            let last_pod = self.state.clusters[ci].last_pod;
            self.state.clusters = now.clusters;
            self.state.clusters[ci].last_pod = last_pod.max(self.state.clusters[ci].last_pod);
        }
        let c = &self.state.clusters[self.ci];
        let own_control_plane = c.ca_cluster == c.name;
        // A cluster served by another cluster's control plane (seed 003's remote) has no
        // injection webhook in the lab: that seed creates the remote secret only after the
        // remote workloads run, and until then no control plane could review their tokens
        // (Istio refuses them too). There the namespace label gives a pod the lab's sidecar
        // with the lab's credential, as in file mode.
        let lab_sidecar = !own_control_plane && !injected && {
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            let labelled = namespaces
                .get_opt(&ns)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.metadata.labels)
                .and_then(|l| l.get("istio-injection").cloned())
                .as_deref()
                == Some("enabled");
            labelled && isthmus_kube::inject::decide(p).is_ok()
        };
        let host_ip = self.state.topology.clusters[self.ci]
            .pod_cidr
            .host(1)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let kube_env = self.kubernetes_service_env().await;
        // The cluster's DNS: the lab's control plane, or else the installed control plane's
        // Service (`istiod`, port 53, as Istio's DNS is reached), as a kubelet's clusterDNS.
        let nameserver = match self.state.clusters[self.ci].control_plane_ip.clone() {
            Some(ip) => ip,
            None => self
                .cluster_dns()
                .await
                .unwrap_or_else(|| "127.0.0.1".into()),
        };
        let uid = p.metadata.uid.clone().unwrap_or_default();
        // The address first (volumes and the environment may name it), then everything
        // read from the API, then the processes.
        let state = &mut self.state;
        let pod = tokio::task::block_in_place(|| {
            network::pod_netns(&opts.state_dir, state, ci, &ns, &name, PodRole::App)
        })?;
        let fetch = pod_spec::Fetch {
            client: &self.client,
            namespace: &ns,
        };
        let all: Vec<_> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .cloned()
            .collect();
        let prepared = match fetch.volumes(p, &pod.ip, &host_ip).await {
            Ok(v) => match fetch.env_sources(&all).await {
                Ok(e) => Ok((v, e)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let netns_name = pod.netns.clone();
        let started = prepared.and_then(|(volumes, sources)| {
            tokio::task::block_in_place(|| {
                run_in(
                    &opts,
                    &self.state,
                    ci,
                    pod,
                    RunSpec {
                        api: p,
                        volumes: &volumes,
                        env_sources: &sources,
                        kube_env: &kube_env,
                        host_ip: &host_ip,
                        nameserver: &nameserver,
                        lab_sidecar,
                        namespace: &ns,
                        name: &name,
                    },
                )
            })
        });
        let (pod, tokens) = match started {
            Ok(s) => s,
            Err(e) => {
                // Nothing half made stays: the next attempt starts clean.
                tokio::task::block_in_place(|| {
                    for pid in process::in_namespace(&netns_name) {
                        process::stop(pid, Duration::from_secs(2));
                    }
                    let _ = netns::delete(&netns_name);
                });
                return Err(e);
            }
        };
        let probes = spec
            .containers
            .iter()
            .filter_map(|c| c.readiness_probe.as_ref()?.http_get.as_ref())
            .filter_map(|g| {
                let port = match &g.port {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
                        u16::try_from(*n).ok()?
                    }
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_) => {
                        return None
                    }
                };
                Some((port, g.path.clone().unwrap_or_else(|| "/".into())))
            })
            .collect();
        tracing::info!(
            pod = %format!("{ns}/{name}"),
            image = %pod.image.clone().unwrap_or_default(),
            ip = %pod.ip,
            injected,
            lab_sidecar,
            "pod running"
        );
        let ip = pod.ip.clone();
        self.running.insert(
            format!("{ns}/{name}"),
            Running {
                pod,
                uid,
                reported_ready: false,
                tokens: tokens
                    .into_iter()
                    .map(|t| {
                        let at = token_renewal(t.ttl_secs);
                        (t, at)
                    })
                    .collect(),
                probes,
                api: Some(Box::new(p.clone())),
            },
        );
        self.report(&ns, &name, &ip, false).await;
        Ok(())
    }

    /// The ClusterIP of the installed control plane's Service `istio-system/istiod` when it
    /// serves DNS (a port 53), else `None`.
    async fn cluster_dns(&self) -> Option<String> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), "istio-system");
        let spec = services.get_opt("istiod").await.ok()??.spec?;
        spec.ports.as_ref()?.iter().find(|p| p.port == 53)?;
        spec.cluster_ip
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
    }

    /// The lab's stand-in for a cloud load balancer: the first Service of type LoadBalancer
    /// gets the cluster's public WAN address (the one the lab's own east-west gateway has
    /// when the lab installs the mesh), given to one of its running pods as a leg on the
    /// WAN, and written to the Service's `status.loadBalancer`. A cluster has one public
    /// address for this, so a second LoadBalancer Service stays pending, as with no quota.
    async fn load_balancers(&mut self) {
        use k8s_openapi::api::core::v1::Service as KService;
        if self.state.topology.clusters[self.ci].east_west_gateway {
            return;
        }
        let services: Api<KService> = Api::all(self.client.clone());
        let Ok(list) = services.list(&Default::default()).await else {
            return;
        };
        let key = |s: &KService| {
            format!(
                "{}/{}",
                s.metadata.namespace.as_deref().unwrap_or_default(),
                s.metadata.name.as_deref().unwrap_or_default()
            )
        };
        let lbs: Vec<&KService> = list
            .items
            .iter()
            .filter(|s| s.spec.as_ref().and_then(|p| p.type_.as_deref()) == Some("LoadBalancer"))
            .collect();
        if let Some((svc, _)) = &self.load_balancer {
            if !lbs.iter().any(|s| key(s) == *svc) {
                self.load_balancer = None;
            }
        }
        let Some(svc) = lbs.iter().find(|s| match &self.load_balancer {
            Some((k, _)) => key(s) == *k,
            None => true,
        }) else {
            return;
        };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let selector = svc
            .spec
            .as_ref()
            .and_then(|p| p.selector.clone())
            .unwrap_or_default();
        let public = crate::topology::Topology::gateway_wan(self.ci).to_string();
        if self.load_balancer.is_none() {
            let Some((pod_key, running)) = self.running.iter_mut().find(|(_, r)| {
                r.pod.namespace == ns
                    && !selector.is_empty()
                    && selector.iter().all(|(k, v)| r.pod.labels.get(k) == Some(v))
            }) else {
                return;
            };
            let prefix = self.state.prefix.clone();
            let (ci, netns) = (self.ci, running.pod.netns.clone());
            match tokio::task::block_in_place(|| network::attach_load_balancer(&prefix, ci, &netns))
            {
                Ok(ip) => {
                    running.pod.public_ip = Some(ip.to_string());
                    tracing::info!(service = %key(svc), pod = %pod_key, %ip, "load balancer address given");
                    self.load_balancer = Some((key(svc), pod_key.clone()));
                }
                Err(e) => {
                    tracing::warn!(service = %key(svc), error = %e, "cannot give the load balancer address");
                    return;
                }
            }
        }
        let has = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .is_some_and(|i| i.iter().any(|i| i.ip.as_deref() == Some(public.as_str())));
        if !has {
            let api: Api<KService> = Api::namespaced(self.client.clone(), &ns);
            let status =
                serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": public}]}}});
            let name = svc.metadata.name.clone().unwrap_or_default();
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                tracing::warn!(service = %key(svc), error = %e, "cannot write the load balancer status");
            }
        }
    }

    /// `KUBERNETES_SERVICE_HOST` and `_PORT` (the `kubernetes` Service), which a kubelet
    /// gives every container; nothing when the Service cannot be read.
    async fn kubernetes_service_env(&self) -> Vec<(String, String)> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), "default");
        let Ok(svc) = services.get("kubernetes").await else {
            return Vec::new();
        };
        let spec = svc.spec.unwrap_or_default();
        let (Some(ip), Some(port)) = (
            spec.cluster_ip,
            spec.ports.and_then(|p| p.first().map(|p| p.port)),
        ) else {
            return Vec::new();
        };
        vec![
            ("KUBERNETES_SERVICE_HOST".into(), ip),
            ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
        ]
    }

    /// Patches a Pod's status: running at `ip`, ready or not.
    async fn report(&self, ns: &str, name: &str, ip: &str, ready: bool) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let host_ip = self.state.topology.clusters[self.ci]
            .pod_cidr
            .host(1)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let flag = if ready { "True" } else { "False" };
        let condition = |kind: &str, status: &str| serde_json::json!({"type": kind, "status": status, "lastTransitionTime": now()});
        // Each container running, ready with the pod (what `kubectl get pods` counts).
        let key = format!("{ns}/{name}");
        let statuses: Vec<serde_json::Value> = self
            .running
            .get(&key)
            .and_then(|r| r.api.as_deref())
            .and_then(|p| p.spec.as_ref())
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "name": c.name,
                            "image": c.image.clone().unwrap_or_default(),
                            "imageID": "",
                            "ready": ready,
                            "started": true,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": now()}},
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": now(),
            "conditions": [
                condition("PodScheduled", "True"),
                condition("Initialized", "True"),
                condition("ContainersReady", flag),
                condition("Ready", flag),
            ],
            "containerStatuses": statuses,
        }});
        if let Err(e) = pods
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
            .await
        {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "cannot report pod status");
        }
    }

    /// Reports a Pod that cannot run yet (an image the lab has no app for, no address left)
    /// as pending with the reason, as a kubelet reports an image it cannot pull; it is tried
    /// again with backoff.
    async fn report_failure(&self, p: &Pod, message: &str) {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let status = serde_json::json!({"status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "LabCannotRun", "message": message},
            ],
        }});
        let _ = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await;
    }

    /// Renews the projected service-account tokens that are due; a failure is retried on
    /// the next tick (the old token lives on until then).
    async fn renew_tokens(&mut self) {
        let now = std::time::Instant::now();
        let client = self.client.clone();
        for (key, r) in self.running.iter_mut() {
            let Some(api) = r.api.as_deref() else {
                continue;
            };
            let ns = r.pod.namespace.clone();
            let fetch = pod_spec::Fetch {
                client: &client,
                namespace: &ns,
            };
            for (t, at) in r.tokens.iter_mut().filter(|(_, at)| *at <= now) {
                match fetch.token(api, t.audience.clone(), t.ttl_secs).await {
                    Ok(token) => match pod_spec::write_file(&t.file, token.as_bytes(), 0o644) {
                        Ok(()) => {
                            *at = token_renewal(t.ttl_secs);
                            tracing::info!(pod = %key, file = %t.file.display(), "service-account token renewed");
                        }
                        Err(e) => {
                            tracing::warn!(pod = %key, error = %e, "cannot write the renewed token")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(pod = %key, error = %e, "cannot renew the service-account token")
                    }
                }
            }
        }
    }

    /// Stops a running pod; `api` is its Pod when it is still in the API (being deleted).
    async fn stop(&mut self, key: &str, api: Option<&Pod>) {
        let Some(r) = self.running.remove(key) else {
            return;
        };
        if self
            .load_balancer
            .as_ref()
            .is_some_and(|(_, pod)| pod == key)
        {
            // Its public address goes with its namespace; the Service gets it again on
            // another of its pods.
            self.load_balancer = None;
        }
        let pod = r.pod;
        tokio::task::block_in_place(|| {
            for pid in &pod.pids {
                process::stop(*pid, Duration::from_secs(3));
            }
            for pid in process::in_namespace(&pod.netns) {
                process::stop(pid, Duration::from_secs(2));
            }
            if let Err(e) = netns::delete(&pod.netns) {
                tracing::warn!(pod = %key, error = %e, "removing the pod's namespace");
            }
        });
        tracing::info!(pod = %key, "pod stopped");
        if let Some(p) = api.filter(|p| p.metadata.deletion_timestamp.is_some()) {
            self.finish_deletion(p).await;
        }
    }

    /// Removes a Pod being deleted whose processes are gone (grace period 0, this uid
    /// only), as a kubelet does.
    async fn finish_deletion(&self, p: &Pod) {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut params = DeleteParams::default().grace_period(0);
        if let Some(uid) = &p.metadata.uid {
            params = params.preconditions(kube::api::Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            });
        }
        match pods.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "cannot remove the deleted pod")
            }
        }
    }
}

/// What a pod runs, from its Pod object.
struct RunSpec<'a> {
    /// The Pod.
    api: &'a Pod,
    /// Its volumes, read from the API.
    volumes: &'a [pod_spec::PreparedVolume],
    /// The ConfigMap and Secret values its environments name.
    env_sources: &'a BTreeMap<(String, String, String), String>,
    /// `KUBERNETES_SERVICE_HOST` and `_PORT`.
    kube_env: &'a [(String, String)],
    /// The node's address.
    host_ip: &'a str,
    /// The pod's DNS server.
    nameserver: &'a str,
    /// The lab's own sidecar (a cluster without a webhook; see [`Agent::start`]).
    lab_sidecar: bool,
    namespace: &'a str,
    name: &'a str,
}

/// How long an init container may run.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The log file of a container: `agent.log` for the proxy (where the lab's scenarios read
/// access logs, as for the lab's own sidecars), `app.log` for a demo app, else its name.
fn log_name(container: &str, isthmus: bool) -> String {
    if container == isthmus_kube::inject::PROXY_CONTAINER {
        "agent.log".into()
    } else if isthmus {
        format!("{container}.log")
    } else {
        "app.log".into()
    }
}

/// Starts the processes of `pod` (whose namespace exists): its volumes written, its init
/// containers run to completion in order, then its containers (and the lab's sidecar where
/// asked); returns the pod and its projected tokens.
fn run_in(
    opts: &LabOptions,
    state: &LabState,
    ci: usize,
    mut pod: PodState,
    spec: RunSpec<'_>,
) -> Result<(PodState, Vec<ProjectedToken>), LabError> {
    let p = spec.api;
    let pspec = p.spec.clone().unwrap_or_default();
    pod.from_node = true;
    pod.deployment = deployment_of(p);
    pod.labels = p.metadata.labels.clone().unwrap_or_default();
    pod.service_account = pspec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    pod.image = pspec.containers.first().and_then(|c| c.image.clone());
    pod.proxy = spec.lab_sidecar
        || pspec
            .containers
            .iter()
            .any(|c| c.name == isthmus_kube::inject::PROXY_CONTAINER);
    netns::resolv_conf(
        &pod.netns,
        spec.nameserver,
        &kubelet::search_domains(spec.namespace),
    )?;
    let tokens = pod_spec::write_volumes(&pod.workdir, spec.volumes)?;
    // What every container of the Isthmus image finds: Envoy on its PATH (the image's
    // /opt/envoy/bin), the API server's Service.
    let envoy_dir = state
        .envoy
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut base = vec![(
        "PATH".to_string(),
        format!("{envoy_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    )];
    base.extend(spec.kube_env.iter().cloned());
    if let Ok(filter) = std::env::var("RUST_LOG") {
        base.push(("RUST_LOG".into(), filter));
    }
    let ctx = pod_spec::EnvContext {
        pod: p,
        ip: &pod.ip,
        host_ip: spec.host_ip,
        sources: spec.env_sources,
        base: &base,
    };
    let exe = opts.exe_arg();
    let exec_line = |c: &k8s_openapi::api::core::v1::Container| -> Result<Vec<String>, LabError> {
        let env = pod_spec::environment(c, &ctx)?;
        Ok(pod_spec::isthmus_exec(p, c, &exe, env, &pod.workdir)?.command_line(&exe))
    };
    for c in pspec.init_containers.iter().flatten() {
        let image = c.image.clone().unwrap_or_default();
        let line = if container::is_isthmus_image(&image) {
            exec_line(c)?
        } else {
            kubelet::app_args(opts, &demo_container(c), spec.name)
        };
        let log = pod.workdir.join(format!("init-{}.log", c.name));
        process::run_to_completion(&pod.netns, &line, &log, INIT_TIMEOUT)
            .map_err(|e| LabError::Invalid(format!("init container {}: {e}", c.name)))?;
    }
    for c in &pspec.containers {
        let image = c.image.clone().unwrap_or_default();
        let isthmus = container::is_isthmus_image(&image);
        let line = if isthmus {
            exec_line(c)?
        } else {
            kubelet::app_args(opts, &demo_container(c), spec.name)
        };
        let log = pod.workdir.join(log_name(&c.name, isthmus));
        pod.pids.push(process::spawn(&pod.netns, &line, &log)?);
    }
    if spec.lab_sidecar {
        pod.pids
            .push(kubelet::start_agent(opts, state, ci, &pod, None)?);
    }
    Ok((pod, tokens))
}

/// A demo app's container as the lab's app runner takes it (its plain environment values).
fn demo_container(c: &k8s_openapi::api::core::v1::Container) -> isthmus_api::kube::Container {
    isthmus_api::kube::Container {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        ports: c
            .ports
            .iter()
            .flatten()
            .map(|cp| isthmus_api::kube::ContainerPort {
                name: cp.name.clone(),
                container_port: u32::try_from(cp.container_port).unwrap_or_default(),
            })
            .collect(),
        env: c
            .env
            .iter()
            .flatten()
            .filter_map(|e| {
                Some(isthmus_api::kube::EnvVar {
                    name: e.name.clone(),
                    value: e.value.clone()?,
                })
            })
            .collect(),
    }
}

/// The Deployment a ReplicaSet's pod belongs to: the ReplicaSet's name without its
/// `pod-template-hash` suffix.
fn deployment_of(p: &Pod) -> Option<String> {
    let owner = p
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.kind == "ReplicaSet")?;
    let hash = p.metadata.labels.as_ref()?.get("pod-template-hash")?;
    Some(
        owner
            .name
            .strip_suffix(&format!("-{hash}"))
            .unwrap_or(&owner.name)
            .to_string(),
    )
}

/// Reports pods Ready once their app runs and, with a sidecar, its Envoy is ready;
/// checks every 500 ms.
async fn readiness(agent: Arc<Mutex<Agent>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut agent = agent.lock().await;
        let opts = agent.opts.clone();
        // A ready pod one of whose processes has exited is ready no more (it leaves its
        // Services' endpoints), as a failed readiness probe makes it.
        let died: Vec<(String, PodState)> = agent
            .running
            .iter()
            .filter(|(_, r)| r.reported_ready && !r.pod.pids.iter().all(|p| process::alive(*p)))
            .map(|(k, r)| (k.clone(), r.pod.clone()))
            .collect();
        for (key, pod) in died {
            agent
                .report(&pod.namespace, &pod.name, &pod.ip, false)
                .await;
            if let Some(r) = agent.running.get_mut(&key) {
                r.reported_ready = false;
            }
            tracing::warn!(pod = %key, "a process of the pod exited: not ready");
        }
        let pending: Vec<(String, PodState, Probes)> = agent
            .running
            .iter()
            .filter(|(_, r)| !r.reported_ready)
            .map(|(k, r)| (k.clone(), r.pod.clone(), r.probes.clone()))
            .collect();
        for (key, pod, probes) in pending {
            let ready = tokio::task::block_in_place(|| {
                pod.pids.iter().all(|pid| process::alive(*pid))
                    && (!pod.proxy
                        || kubelet::pod_http(&opts, &pod, 15000, "/ready")
                            .map(|b| b.contains("LIVE"))
                            .unwrap_or(false))
                    && probes.iter().all(|(port, path)| {
                        kubelet::pod_http_at(&opts, &pod, &pod.ip, *port, path).is_ok()
                    })
            });
            if ready {
                agent.report(&pod.namespace, &pod.name, &pod.ip, true).await;
                if let Some(r) = agent.running.get_mut(&key) {
                    r.reported_ready = true;
                }
                tracing::info!(pod = %key, "pod ready");
            }
        }
    }
}

/// What kube-proxy watches.
enum ProxyEvent {
    Services(Box<watcher::Event<Service>>),
    Slices(Box<watcher::Event<EndpointSlice>>),
}

/// Keeps the router's ClusterIP rules in line with the Services and EndpointSlices.
async fn kube_proxy(client: kube::Client, router_netns: String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let services = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let slices = watcher(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default(),
    )
    .default_backoff();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(services);
        while let Some(e) = s.next().await {
            match e {
                Ok(e) => {
                    let _ = tx.send(ProxyEvent::Services(Box::new(e)));
                }
                Err(e) => tracing::warn!(error = %e, "watching Services failed; retrying"),
            }
        }
    });
    tokio::spawn(async move {
        let mut s = std::pin::pin!(slices);
        while let Some(e) = s.next().await {
            match e {
                Ok(e) => {
                    let _ = tx2.send(ProxyEvent::Slices(Box::new(e)));
                }
                Err(e) => tracing::warn!(error = %e, "watching EndpointSlices failed; retrying"),
            }
        }
    });
    let mut svcs: Store<Service> = Store::default();
    let mut eps: Store<EndpointSlice> = Store::default();
    let mut last = String::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
        }
        for e in batch {
            match e {
                ProxyEvent::Services(e) => svcs.apply(*e),
                ProxyEvent::Slices(e) => eps.apply(*e),
            }
        }
        // Rules from half a list would drop working ones: wait for both.
        if !svcs.listed || !eps.listed {
            continue;
        }
        let services: Vec<&Service> = svcs.objects.values().collect();
        let slices: Vec<&EndpointSlice> = eps.objects.values().collect();
        let rules = crate::kube_proxy::rules_from_slices(&services, &slices);
        if rules == last {
            continue;
        }
        match tokio::task::block_in_place(|| netns::restore(&router_netns, &rules)) {
            Ok(()) => last = rules,
            Err(e) => tracing::error!(error = %e, "writing ClusterIP rules"),
        }
    }
}

/// The objects of one kind, from a watcher's events.
struct Store<K> {
    objects: BTreeMap<String, K>,
    listing: Option<BTreeMap<String, K>>,
    /// Whether a complete list has arrived.
    listed: bool,
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            listing: None,
            listed: false,
        }
    }
}

impl<K: kube::Resource> Store<K> {
    fn key(k: &K) -> String {
        let m = k.meta();
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default()
        )
    }

    fn apply(&mut self, event: watcher::Event<K>) {
        match event {
            watcher::Event::Init => self.listing = Some(BTreeMap::new()),
            watcher::Event::InitApply(k) => {
                if let Some(l) = &mut self.listing {
                    l.insert(Self::key(&k), k);
                }
            }
            watcher::Event::InitDone => {
                self.objects = self.listing.take().unwrap_or_default();
                self.listed = true;
            }
            watcher::Event::Apply(k) => {
                self.objects.insert(Self::key(&k), k);
            }
            watcher::Event::Delete(k) => {
                self.objects.remove(&Self::key(&k));
            }
        }
    }
}
