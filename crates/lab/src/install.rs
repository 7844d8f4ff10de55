//! Installing the mesh's own components in each cluster, as the Istio install would: the
//! control plane (istiod), the east-west gateway and the egress gateway. Each is a row of
//! one table ([`COMPONENTS`]): its pod in `istio-system`, its labels and service account,
//! and the Service in front of it; the functions here start them.

use crate::api_server::{registry_dir, ApiServer};
use crate::error::LabError;
use crate::kubelet::{self, Router};
use crate::network;
use crate::options::LabOptions;
use crate::process;
use crate::state::{LabState, PodRole, PodState};
use crate::topology::{ClusterSpec, Topology};
use isthmus_api::kube::{
    IntOrString, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec,
    ServiceStatus,
};
use isthmus_api::{Labels, ObjectMeta};
use isthmus_control_plane::ControlPlaneConfig;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The namespace of the mesh's components.
pub const NAMESPACE: &str = "istio-system";

/// A mesh component: one pod in [`NAMESPACE`] and the Service in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshComponent {
    /// The Service's name.
    pub service: &'static str,
    /// The pod's name.
    pub pod: &'static str,
    /// What the pod is.
    pub role: PodRole,
    /// The labels of the pod and of its Service.
    pub labels: &'static [(&'static str, &'static str)],
    /// The label the Service selects the pod by.
    pub selector: (&'static str, &'static str),
    /// The Service port's name.
    pub port_name: &'static str,
    /// The Service port, also the pod's one container port.
    pub port: u32,
    /// More Service ports: (name, port, the pod's port).
    pub extra_ports: &'static [(&'static str, u32, u32)],
    /// The pod's service account.
    pub service_account: &'static str,
    /// Runs an Envoy.
    pub proxy: bool,
    /// Has a leg on the WAN with a public address; its Service is a LoadBalancer there.
    pub public: bool,
}

/// istiod: xDS and CA on 15012 (the seeds' remote cluster reaches it through the local
/// east-west gateway, which passes connections to this Service).
pub const CONTROL_PLANE: MeshComponent = MeshComponent {
    service: "istiod",
    pod: "istiod-0",
    role: PodRole::ControlPlane,
    labels: &[("app", "istiod")],
    selector: ("app", "istiod"),
    port_name: "tcp-istiod",
    port: 15012,
    // The sidecar injection webhook, as istiod's Service has it.
    extra_ports: &[("https-webhook", 443, 15017)],
    service_account: "default",
    proxy: false,
    public: false,
};

/// The east-west gateway, `istio-ingressgateway`: 15443 at its public WAN address.
pub const EAST_WEST_GATEWAY: MeshComponent = MeshComponent {
    service: "istio-ingressgateway",
    pod: "istio-ingressgateway-0",
    role: PodRole::Gateway,
    labels: &[("app", "istio-ingressgateway"), ("istio", "ingressgateway")],
    selector: ("istio", "ingressgateway"),
    port_name: "tls",
    port: 15443,
    extra_ports: &[],
    service_account: "istio-ingressgateway-service-account",
    proxy: true,
    public: true,
};

/// The egress gateway, `istio-egressgateway`: 15443 inside the cluster.
pub const EGRESS_GATEWAY: MeshComponent = MeshComponent {
    service: "istio-egressgateway",
    pod: "istio-egressgateway-0",
    role: PodRole::Gateway,
    labels: &[("app", "istio-egressgateway"), ("istio", "egressgateway")],
    selector: ("istio", "egressgateway"),
    port_name: "tls",
    port: 15443,
    extra_ports: &[],
    service_account: "istio-egressgateway-service-account",
    proxy: true,
    public: false,
};

/// Every component the lab installs.
pub const COMPONENTS: [&MeshComponent; 3] = [&CONTROL_PLANE, &EAST_WEST_GATEWAY, &EGRESS_GATEWAY];

impl MeshComponent {
    /// The labels as a map.
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The component's Service; with a `public_ip`, a LoadBalancer whose ingress is that
    /// address.
    pub fn service(&self, public_ip: Option<&str>) -> Service {
        let (sk, sv) = self.selector;
        Service {
            metadata: ObjectMeta {
                name: self.service.into(),
                namespace: NAMESPACE.into(),
                labels: Arc::new(self.label_map().into()),
                ..Default::default()
            },
            spec: ServiceSpec {
                ports: std::iter::once(ServicePort {
                    name: self.port_name.into(),
                    port: self.port,
                    ..Default::default()
                })
                .chain(
                    self.extra_ports
                        .iter()
                        .map(|(name, port, target)| ServicePort {
                            name: (*name).into(),
                            port: *port,
                            target_port: Some(IntOrString::Int(*target)),
                            ..Default::default()
                        }),
                )
                .collect(),
                selector: Arc::new(Labels::from([(sk.to_string(), sv.to_string())])),
                type_: public_ip.map(|_| "LoadBalancer".into()),
                ..Default::default()
            },
            status: match public_ip {
                Some(ip) => ServiceStatus {
                    load_balancer: LoadBalancerStatus {
                        ingress: vec![LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            hostname: None,
                        }],
                    },
                },
                None => Default::default(),
            },
        }
    }

    /// Fills in a freshly made pod of the component: its public address (when
    /// [`public`](Self::public)), labels, service account and proxy.
    pub fn dress(&self, pod: &mut PodState, public_ip: Option<Ipv4Addr>) {
        pod.public_ip = public_ip.map(|ip| ip.to_string());
        pod.labels = self.label_map();
        pod.service_account = self.service_account.into();
        pod.proxy = self.proxy;
    }

    /// Makes the component's pod in cluster number `ci`: its namespace and address, and
    /// its WAN leg when it has one (no processes yet).
    pub fn make_pod(
        &self,
        opts: &LabOptions,
        state: &mut LabState,
        ci: usize,
    ) -> Result<PodState, LabError> {
        let mut pod = network::pod_netns(
            &opts.state_dir,
            state,
            ci,
            NAMESPACE,
            self.pod,
            self.role.clone(),
        )?;
        let public = if self.public {
            Some(network::attach_to_wan(&state.prefix, ci, &pod.netns)?)
        } else {
            None
        };
        self.dress(&mut pod, public);
        Ok(pod)
    }

    /// Tells cluster number `ci`'s API server about the component: its Service (returns
    /// the ClusterIP) and `pod`.
    pub fn publish(
        &self,
        opts: &LabOptions,
        state: &mut LabState,
        ci: usize,
        pod: &PodState,
    ) -> Result<String, LabError> {
        let api = ApiServer::of(opts, state, ci)?;
        let cidr = state.topology.clusters[ci].service_cidr;
        let ip = api.put_service(
            &mut state.clusters[ci],
            cidr,
            self.service(pod.public_ip.as_deref()),
        )?;
        api.put_pod(pod, &[self.port])?;
        Ok(ip)
    }
}

/// Makes the mesh's certificate authorities: one root, and an intermediate CA per
/// cluster signed by it (each cluster's `cacerts`).
pub fn certificates(
    opts: &LabOptions,
    topology: &Topology,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let ca = opts.ca_dir();
    isthmus_ca::create_root(&ca.join("root"))?;
    for c in &topology.clusters {
        isthmus_ca::create_intermediate(&ca.join("root"), &c.name, &ca.join(&c.name))?;
    }
    progress(&format!(
        "certificates: one root, an intermediate CA per cluster ({})",
        ca.display()
    ));
    Ok(())
}

/// The control plane's settings in cluster `spec`: its own registry, the other clusters'
/// networks (and registries, with the automation), its CA, ports and options.
pub fn control_plane_config(
    opts: &LabOptions,
    topology: &Topology,
    spec: &ClusterSpec,
) -> ControlPlaneConfig {
    let ca = opts.ca_dir();
    let mut config = ControlPlaneConfig::new(
        spec.name.clone(),
        spec.network.clone(),
        registry_dir(&opts.state_dir, &spec.name),
        ca.join(&spec.name),
        ca.join(format!("{}.key", spec.name)),
    );
    let others = || topology.clusters.iter().filter(|o| o.name != spec.name);
    config.sources.cluster_networks = others()
        .map(|o| (o.name.clone(), o.network.clone()))
        .collect();
    config.listen = SocketAddr::from(([0, 0, 0, 0], 15012));
    config.monitoring = SocketAddr::from(([0, 0, 0, 0], 15014));
    config.dns = Some(SocketAddr::from(([0, 0, 0, 0], 53)));
    config.scoping = if topology.on_demand() {
        isthmus_control_plane::config::ScopingMode::OnDemand
    } else {
        isthmus_control_plane::config::ScopingMode::Full
    };
    if topology.automation {
        config.remote_registries = others()
            .map(|o| (o.name.clone(), registry_dir(&opts.state_dir, &o.name)))
            .collect();
    }
    // Both were checked when the topology was read (`Topology::load`).
    if let Some(d) = topology
        .export_default
        .as_deref()
        .and_then(|d| d.parse().ok())
    {
        config.export_default = d;
    }
    if topology.kubernetes {
        // The cluster's own API server, at its pod address.
        config.sources.registries.clear();
        config.kubeconfig = Some(crate::kubernetes::kubeconfig(&opts.state_dir, &spec.name));
        // Pods get their sidecars from the control plane's injection webhook, as in Istio.
        config.injection.injection_listen = Some(SocketAddr::from(([0, 0, 0, 0], 15017)));
    }
    if spec.egress_gateway && spec.egress_funnel {
        config.sources.egress_gateway =
            Some("istio-egressgateway.istio-system.svc.cluster.local".into());
    }
    config.dns_templates = topology
        .dns_templates
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    config
}

/// Starts cluster number `ci`'s control plane; a cluster without one is pointed at the
/// first cluster that has one, through that cluster's east-west gateway.
pub fn control_plane(
    opts: &LabOptions,
    state: &mut LabState,
    ci: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let spec = state.topology.clusters[ci].clone();
    if !spec.control_plane {
        // Served by the first cluster that runs a control plane, through that cluster's
        // east-west gateway (seed 003's remotePilotAddress = the local gateway).
        let Some((pi, primary)) = state
            .topology
            .clusters
            .iter()
            .enumerate()
            .find(|(_, c)| c.control_plane)
        else {
            // No mesh from the lab (Kubernetes mode only, see `Topology::check`): the user
            // installs one; its pods are served by what they install in their own cluster.
            progress(&format!(
                "{}: no control plane from the lab: install the mesh yourself (`isthmus install` or the Helm chart manifests/charts/isthmus)",
                spec.name
            ));
            state.clusters[ci].ca_cluster = spec.name.clone();
            return state.save(&opts.state_dir);
        };
        if !primary.east_west_gateway {
            return Err(LabError::Invalid(format!(
                "cluster {} has no control plane and {}, which has one, has no east-west gateway to reach it through",
                spec.name, primary.name
            )));
        }
        let addr = format!("{}:15012", Topology::gateway_wan(pi));
        progress(&format!(
            "{}: no control plane; its proxies use {}'s through its gateway at {addr}",
            spec.name, primary.name
        ));
        let primary = primary.name.clone();
        state.clusters[ci].control_plane_addr = Some(addr);
        state.clusters[ci].ca_cluster = primary;
        return state.save(&opts.state_dir);
    }
    let mut pod = CONTROL_PLANE.make_pod(opts, state, ci)?;
    // The control plane resolves the cluster's names with its own DNS (it fetches JWKS
    // documents from the cluster's services), not with the host's resolver.
    crate::netns::resolv_conf(
        &pod.netns,
        &pod.ip,
        &kubelet::search_domains(&pod.namespace),
    )?;
    if !crate::kubernetes::enabled(state) {
        ApiServer::new(&opts.state_dir, &spec.name).create()?;
    }
    let a = control_plane_command(opts, state, ci);
    // The credential key must exist before the lab issues workload credentials.
    isthmus_ca::CredentialKey::load_or_create(&opts.ca_dir().join(format!("{}.key", spec.name)))
        .map_err(|e| LabError::Invalid(format!("credential key: {e}")))?;
    let pid = process::spawn(&pod.netns, &a, &pod.workdir.join("control-plane.log"))?;
    pod.pids.push(pid);
    progress(&format!(
        "{}: control plane (xDS+CA :15012, DNS :53) at {}",
        spec.name, pod.ip
    ));
    let c = &mut state.clusters[ci];
    c.control_plane_ip = Some(pod.ip.clone());
    c.control_plane_addr = Some(format!("{}:15012", pod.ip));
    c.ca_cluster = spec.name.clone();
    // istiod's Service and Pod, so that a gateway can pass connections to it (the seeds'
    // remote cluster reaches the control plane through the local gateway).
    CONTROL_PLANE.publish(opts, state, ci, &pod)?;
    state.clusters[ci].pods.push(pod);
    state.save(&opts.state_dir)?;
    if crate::kubernetes::enabled(state) {
        injection_webhook(opts, state, ci)?;
        progress(&format!(
            "{}: sidecar injection webhook (istiod:443 -> :15017) for namespaces labelled istio-injection=enabled",
            spec.name
        ));
    }
    Ok(())
}

/// Registers cluster number `ci`'s control plane as the sidecar injector (the chart's
/// MutatingWebhookConfiguration), trusted through the mesh root.
fn injection_webhook(opts: &LabOptions, state: &LabState, ci: usize) -> Result<(), LabError> {
    use base64::Engine;
    let root_file = opts.ca_dir().join("root/root-cert.pem");
    let root = std::fs::read(&root_file).map_err(crate::error::io(&root_file))?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(root);
    let webhook = isthmus_kube::install::injector_webhook(NAMESPACE, "/inject", Some(&bundle));
    crate::kubernetes::run_kubectl(
        opts,
        state,
        ci,
        &["apply", "-f", "-"],
        Some(&webhook.to_string()),
    )?;
    Ok(())
}

/// The command line of cluster number `ci`'s control plane.
fn control_plane_command(opts: &LabOptions, state: &LabState, ci: usize) -> Vec<String> {
    process::command_line(
        &opts.exe_arg(),
        "control-plane",
        control_plane_config(opts, &state.topology, &state.topology.clusters[ci]).to_args(),
    )
}

/// A mesh component `lab stop`, `lab start` and `lab restart` act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restartable {
    /// The control plane (`istiod-0`).
    ControlPlane,
    /// The east-west gateway's agent and Envoy (`istio-ingressgateway-0`).
    Gateway,
    /// The egress gateway's agent and Envoy (`istio-egressgateway-0`).
    EgressGateway,
}

impl std::str::FromStr for Restartable {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "control-plane" | "istiod" => Restartable::ControlPlane,
            "gateway" | "east-west-gateway" | "istio-ingressgateway" => Restartable::Gateway,
            "egress-gateway" | "istio-egressgateway" => Restartable::EgressGateway,
            other => {
                return Err(LabError::Invalid(format!(
                    "unknown component `{other}`: control-plane, gateway or egress-gateway"
                )))
            }
        })
    }
}

impl std::fmt::Display for Restartable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Restartable::ControlPlane => "control plane",
            Restartable::Gateway => "east-west gateway",
            Restartable::EgressGateway => "egress gateway",
        })
    }
}

impl Restartable {
    fn component(self) -> &'static MeshComponent {
        match self {
            Restartable::ControlPlane => &CONTROL_PLANE,
            Restartable::Gateway => &EAST_WEST_GATEWAY,
            Restartable::EgressGateway => &EGRESS_GATEWAY,
        }
    }
}

/// The index of `what`'s pod in cluster number `ci`.
fn component_pod(state: &LabState, ci: usize, what: Restartable) -> Result<usize, LabError> {
    let c = what.component();
    state.clusters[ci]
        .pods
        .iter()
        .position(|p| p.name == c.pod && p.namespace == "istio-system")
        .ok_or_else(|| {
            LabError::Invalid(format!(
                "cluster {} runs no {} ({})",
                state.clusters[ci].name, c.service, c.pod
            ))
        })
}

/// Stops `what` in cluster number `ci`, keeping its pod (namespace, address, files): its
/// processes end and nothing answers at its address until [`start`].
pub fn stop(
    opts: &LabOptions,
    state: &mut LabState,
    ci: usize,
    what: Restartable,
) -> Result<(), LabError> {
    let i = component_pod(state, ci, what)?;
    let pod = &mut state.clusters[ci].pods[i];
    pod.stopped = true;
    for pid in pod.pids.drain(..) {
        process::stop(pid, Duration::from_secs(3));
    }
    for pid in process::in_namespace(&pod.netns) {
        process::stop(pid, Duration::from_secs(2));
    }
    state.save(&opts.state_dir)
}

/// Starts `what` again in its pod in cluster number `ci`, as `up` started it (its previous
/// log kept beside as `*.log.1`); does nothing when it runs.
pub fn start(
    opts: &LabOptions,
    state: &mut LabState,
    ci: usize,
    what: Restartable,
) -> Result<(), LabError> {
    let i = component_pod(state, ci, what)?;
    let pod = state.clusters[ci].pods[i].clone();
    if pod.pids.iter().any(|p| process::alive(*p)) {
        return Ok(());
    }
    keep_logs(&pod.workdir);
    let spec = state.topology.clusters[ci].clone();
    let pid = match what {
        Restartable::ControlPlane => process::spawn(
            &pod.netns,
            &control_plane_command(opts, state, ci),
            &pod.workdir.join("control-plane.log"),
        )?,
        Restartable::Gateway => {
            kubelet::start_agent(opts, state, ci, &pod, Some(east_west_router(&spec)))?
        }
        Restartable::EgressGateway => {
            kubelet::start_agent(opts, state, ci, &pod, Some(egress_router(&spec)))?
        }
    };
    let p = &mut state.clusters[ci].pods[i];
    p.pids = vec![pid];
    p.stopped = false;
    state.save(&opts.state_dir)
}

/// Moves each `*.log` of a pod's folder to `*.log.1`, so that a restart's log starts empty
/// and the one before it stays readable.
fn keep_logs(workdir: &Path) {
    let Ok(entries) = std::fs::read_dir(workdir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "log") {
            let mut old = path.clone().into_os_string();
            old.push(".1");
            let _ = std::fs::rename(&path, old);
        }
    }
}

/// The east-west gateway's agent settings: it passes 15443 through by SNI on its own unless
/// the topology says `eastWestGatewayMode: standard` (only Gateway resources configure it).
fn east_west_router(spec: &ClusterSpec) -> Router<'static> {
    Router {
        metadata: &[],
        sni_dnat: spec.east_west_gateway_mode.as_deref() != Some("standard"),
    }
}

/// The egress gateway's agent settings: funnelling, it forwards to the addresses
/// ServiceEntries give (no network view); otherwise it relays to the remote gateways a
/// ServiceEntry puts on network `external` (seed 000's egress variant).
fn egress_router(spec: &ClusterSpec) -> Router<'static> {
    if spec.egress_funnel {
        Router {
            metadata: &[],
            sni_dnat: false,
        }
    } else {
        Router {
            metadata: &[("REQUESTED_NETWORK_VIEW", "external")],
            sni_dnat: true,
        }
    }
}

/// Starts cluster number `ci`'s egress gateway.
pub fn egress_gateway(
    opts: &LabOptions,
    state: &mut LabState,
    ci: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let spec = state.topology.clusters[ci].clone();
    let mut pod = EGRESS_GATEWAY.make_pod(opts, state, ci)?;
    let ip = EGRESS_GATEWAY.publish(opts, state, ci, &pod)?;
    let role = if spec.egress_funnel {
        "sidecars' HTTP to MESH_EXTERNAL services leaves through it, mTLS on :15443"
    } else {
        "network view `external`"
    };
    let pid = kubelet::start_agent(opts, state, ci, &pod, Some(egress_router(&spec)))?;
    pod.pids.push(pid);
    progress(&format!(
        "{}: egress gateway istio-egressgateway at {} (ClusterIP {ip}, {role})",
        spec.name, pod.ip
    ));
    state.clusters[ci].pods.push(pod);
    state.save(&opts.state_dir)
}

/// Starts cluster number `ci`'s east-west gateway.
pub fn east_west_gateway(
    opts: &LabOptions,
    state: &mut LabState,
    ci: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let spec = state.topology.clusters[ci].clone();
    let mut pod = EAST_WEST_GATEWAY.make_pod(opts, state, ci)?;
    EAST_WEST_GATEWAY.publish(opts, state, ci, &pod)?;
    let pid = kubelet::start_agent(opts, state, ci, &pod, Some(east_west_router(&spec)))?;
    pod.pids.push(pid);
    progress(&format!(
        "{}: east-west gateway istio-ingressgateway at {} (public {}:15443)",
        spec.name,
        pod.ip,
        pod.public_ip.as_deref().unwrap_or_default()
    ));
    state.clusters[ci].pods.push(pod);
    state.save(&opts.state_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing;
    use isthmus_control_plane::config::ExportDefault;
    use std::path::{Path, PathBuf};

    use testing::opts;

    #[test]
    fn restartable_components_are_named_as_users_and_istio_name_them() {
        for (name, want) in [
            ("control-plane", Restartable::ControlPlane),
            ("istiod", Restartable::ControlPlane),
            ("gateway", Restartable::Gateway),
            ("istio-ingressgateway", Restartable::Gateway),
            ("egress-gateway", Restartable::EgressGateway),
        ] {
            assert_eq!(name.parse::<Restartable>().ok(), Some(want), "{name}");
        }
        let err = "sleep".parse::<Restartable>().expect_err("not a component");
        assert!(
            err.to_string()
                .contains("control-plane, gateway or egress-gateway"),
            "{err}"
        );
        assert_eq!(
            Restartable::Gateway.component().pod,
            "istio-ingressgateway-0"
        );
    }

    #[test]
    fn the_table_names_each_component_once_and_selects_its_own_pods() {
        let mut names: Vec<&str> = COMPONENTS.iter().map(|c| c.service).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COMPONENTS.len());
        for c in COMPONENTS {
            let (k, v) = c.selector;
            assert_eq!(
                c.label_map().get(k).map(String::as_str),
                Some(v),
                "{}",
                c.service
            );
            assert!(c.pod.starts_with(c.service), "{}", c.pod);
            assert_eq!(c.proxy, c.role == PodRole::Gateway, "{}", c.service);
        }
    }

    #[test]
    fn istiod_service_is_a_cluster_ip_on_15012_and_443_for_the_webhook() {
        let svc = CONTROL_PLANE.service(None);
        let v = serde_json::to_value(&svc).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}},
                "spec": {"ports": [
                    {"name": "tcp-istiod", "port": 15012},
                    {"name": "https-webhook", "port": 443, "targetPort": 15017},
                ], "selector": {"app": "istiod"}},
            }),
        );
    }

    #[test]
    fn the_east_west_gateway_is_a_load_balancer_at_its_public_address() {
        let svc = EAST_WEST_GATEWAY.service(Some("198.18.1.2"));
        assert_eq!(&*svc.metadata.name, "istio-ingressgateway");
        assert_eq!(&*svc.metadata.namespace, "istio-system");
        assert_eq!(
            svc.metadata.labels.get("app").map(String::as_str),
            Some("istio-ingressgateway")
        );
        assert_eq!(svc.spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(svc.spec.ports.len(), 1);
        assert_eq!(
            (&*svc.spec.ports[0].name, svc.spec.ports[0].port),
            ("tls", 15443)
        );
        assert_eq!(
            svc.spec.selector.get("istio").map(String::as_str),
            Some("ingressgateway")
        );
        assert_eq!(svc.spec.selector.iter().count(), 1);
        let ingress = &svc.status.load_balancer.ingress;
        assert_eq!(ingress.len(), 1);
        assert_eq!(ingress[0].ip.as_deref(), Some("198.18.1.2"));
        let egress = EGRESS_GATEWAY.service(None);
        assert_eq!(egress.spec.type_, None);
        assert!(egress.status.load_balancer.ingress.is_empty());
        assert_eq!(
            egress.spec.selector.get("istio").map(String::as_str),
            Some("egressgateway")
        );
    }

    #[test]
    fn a_component_pod_gets_labels_account_proxy_and_public_address() {
        let mut pod = testing::pod(NAMESPACE, "istio-ingressgateway-0", "10.10.0.3", &[]);
        EAST_WEST_GATEWAY.dress(&mut pod, Some(Ipv4Addr::new(198, 18, 1, 1)));
        assert_eq!(pod.public_ip.as_deref(), Some("198.18.1.1"));
        assert_eq!(pod.service_account, "istio-ingressgateway-service-account");
        assert!(pod.proxy);
        assert_eq!(
            pod.labels.get("istio").map(String::as_str),
            Some("ingressgateway")
        );
        let pod_object =
            crate::api_server::pod_object(&pod, &[EAST_WEST_GATEWAY.port]).expect("pod");
        assert_eq!(pod_object.spec.containers[0].ports[0].container_port, 15443);
        let mut cp = testing::pod(NAMESPACE, "istiod-0", "10.10.0.2", &[]);
        CONTROL_PLANE.dress(&mut cp, None);
        assert_eq!(cp.labels, BTreeMap::from([("app".into(), "istiod".into())]));
        assert_eq!((cp.service_account.as_str(), cp.proxy), ("default", false));
    }

    #[test]
    fn control_plane_config_names_registries_networks_and_options() {
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        let spec = s.topology.clusters[0].clone();
        let c = control_plane_config(&opts(), &s.topology, &spec);
        assert_eq!(
            (c.sources.cluster.as_str(), c.sources.network.as_str()),
            ("cluster1", "network1")
        );
        assert_eq!(
            c.sources.registries,
            [(
                "cluster1".to_string(),
                PathBuf::from("/state/registry/cluster1")
            )]
        );
        assert_eq!(
            c.sources.cluster_networks,
            [("cluster2".to_string(), "network2".to_string())]
        );
        assert_eq!(c.cacerts, Path::new("/state/ca/cluster1"));
        assert_eq!(c.credential_key, Path::new("/state/ca/cluster1.key"));
        assert_eq!(c.listen.to_string(), "0.0.0.0:15012");
        assert_eq!(c.monitoring.to_string(), "0.0.0.0:15014");
        assert_eq!(c.dns.map(|d| d.to_string()).as_deref(), Some("0.0.0.0:53"));
        assert!(c.remote_registries.is_empty());
        assert_eq!(c.sources.egress_gateway, None, "no funnel");
        assert_eq!(c.export_default, ExportDefault::Exported);
        s.topology.automation = true;
        s.topology.export_default = Some("hidden".into());
        s.topology.dns_templates = vec!["remote=198.18.1.2".into()];
        let mut funnel = spec.clone();
        funnel.egress_funnel = true;
        let c = control_plane_config(&opts(), &s.topology, &funnel);
        assert_eq!(
            c.remote_registries,
            [(
                "cluster2".to_string(),
                PathBuf::from("/state/registry/cluster2")
            )]
        );
        assert_eq!(c.export_default, ExportDefault::Hidden);
        assert_eq!(
            c.sources.egress_gateway.as_deref(),
            Some("istio-egressgateway.istio-system.svc.cluster.local")
        );
        assert_eq!(c.dns_templates.len(), 1);
        assert_eq!(c.dns_templates[0].suffix, "remote");
        let line = process::command_line("/bin/isthmus", "control-plane", c.to_args()).join(" ");
        assert!(
            line.starts_with("/bin/isthmus control-plane --cluster cluster1 "),
            "{line}"
        );
        assert!(line.contains(" --export-default hidden"), "{line}");
    }
}
