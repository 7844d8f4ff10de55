//! The lab's kubelet: runs a Deployment's pods (a namespace each, the demo app, a captured
//! sidecar in injected namespaces), starts agents (sidecars and gateways' routers), stops
//! pods, and probes readiness. Every pod it runs or stops is told to the API server.

use crate::api_server::ApiServer;
use crate::demo::DemoApp;
use crate::error::{io, LabError};
use crate::netns;
use crate::network;
use crate::options::LabOptions;
use crate::process::{self, args};
use crate::state::{LabState, PodRole, PodState};
use isthmus_agent::{AgentConfig, XdsMode};
use isthmus_api::kube::{Container, Deployment};
use isthmus_api::{Interception, NodeKind, RouterMode};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a workload credential the lab issues is valid: 30 days.
const CREDENTIAL_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// A gateway's agent: Envoy as a router (no interception, delta xDS).
#[derive(Debug, Clone, Copy)]
pub struct Router<'a> {
    /// Extra node metadata, `KEY=VALUE` each.
    pub metadata: &'a [(&'a str, &'a str)],
    /// Passes 15443 through by SNI on its own (`--router-mode sni-dnat`).
    pub sni_dnat: bool,
}

/// The settings of `pod`'s agent in cluster number `ci`: a router when `router` is given,
/// else a captured sidecar. `control_plane` is `HOST:PORT` of its control plane,
/// `credential` the file holding its workload credential.
pub fn agent_config(
    opts: &LabOptions,
    state: &LabState,
    ci: usize,
    pod: &PodState,
    control_plane: &str,
    credential: &Path,
    router: Option<Router<'_>>,
) -> AgentConfig {
    let c = &state.clusters[ci];
    let spec = &state.topology.clusters[ci];
    let mut config = AgentConfig::new(
        pod.name.clone(),
        pod.namespace.clone(),
        pod.ip.clone(),
        spec.cluster_id.as_deref().unwrap_or(&c.name),
        control_plane,
        pod.workdir.join("agent"),
    );
    config.service_account = pod.service_account.clone();
    config.trust_domain = state.topology.trust_domain.clone();
    config.network = spec.network.clone();
    config.credential_file = credential.to_path_buf();
    config.root_cert = opts.ca_dir().join("root/root-cert.pem");
    config.envoy = Some(state.envoy.clone());
    config.labels = pod
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match router {
        Some(Router { metadata, sni_dnat }) => {
            config.kind = NodeKind::Router;
            config.interception = Interception::None;
            config.xds_mode = XdsMode::Delta;
            config.router_mode = sni_dnat.then_some(RouterMode::SniDnat);
            config.metadata = metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        None => {
            config.interception = Interception::Redirect;
            config.capture = true;
            // The pod's DNS is answered by its agent from the mesh's name table.
            config.dns_capture = true;
            if state.topology.on_demand() {
                config.scope_idle = state.topology.scope_idle_seconds;
            }
            config.xds_mode = XdsMode::Sotw;
        }
    }
    config
}

/// Starts `pod`'s agent in cluster number `ci` (see [`agent_config`]), after writing its
/// workload credential from the key of the cluster whose CA serves it; returns its pid.
pub fn start_agent(
    opts: &LabOptions,
    state: &LabState,
    ci: usize,
    pod: &PodState,
    router: Option<Router<'_>>,
) -> Result<u32, LabError> {
    let c = &state.clusters[ci];
    let key = isthmus_ca::CredentialKey::load_or_create(
        &opts.ca_dir().join(format!("{}.key", c.ca_cluster)),
    )
    .map_err(|e| LabError::Invalid(format!("credential key: {e}")))?;
    let credential = key.issue(
        &pod.namespace,
        &pod.service_account,
        CREDENTIAL_LIFETIME_SECS,
    );
    start_agent_with(opts, state, ci, pod, router, &credential)
}

/// Writes a secret for the pod's agent alone (mode 0600), whole: it goes to a temporary file
/// first, so that an agent reading it during a renewal never sees half of it.
fn write_private(path: &Path, text: &str) -> Result<(), LabError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Rewrites a running pod's credential (a renewed Kubernetes token); its agent reads it at
/// its next certificate request.
pub fn renew_credential(pod: &PodState, credential: &str) -> Result<(), LabError> {
    write_private(&credential_file(pod), credential)
}

/// The file an agent reads its credential from (a Kubernetes token there is rewritten when
/// renewed).
pub fn credential_file(pod: &PodState) -> PathBuf {
    pod.workdir.join("credential")
}

/// Starts `pod`'s agent with `credential` (this lab's own, or a Kubernetes service-account
/// token) written to its credential file; returns its pid.
pub fn start_agent_with(
    opts: &LabOptions,
    state: &LabState,
    ci: usize,
    pod: &PodState,
    router: Option<Router<'_>>,
    credential: &str,
) -> Result<u32, LabError> {
    let c = &state.clusters[ci];
    let cp = c
        .control_plane_addr
        .clone()
        .ok_or_else(|| LabError::Invalid(format!("{}: no control plane", c.name)))?;
    let cred = credential_file(pod);
    write_private(&cred, credential)?;
    let a = process::command_line(
        &opts.exe_arg(),
        "agent",
        agent_config(opts, state, ci, pod, &cp, &cred, router).to_args(),
    );
    process::spawn(&pod.netns, &a, &pod.workdir.join("agent.log"))
}

/// The command line of a demo app's container in pod `pod_name`: its environment as
/// `env NAME=VALUE ...`, then `isthmus lab app` with the image and ports (those named
/// `tcp...` as raw TCP).
pub fn app_args(opts: &LabOptions, container: &Container, pod_name: &str) -> Vec<String> {
    let mut a = Vec::new();
    if !container.env.is_empty() {
        a.push("env".to_string());
        a.extend(
            container
                .env
                .iter()
                .map(|e| format!("{}={}", e.name, e.value)),
        );
    }
    a.extend(args(&[
        &opts.exe_arg(),
        "lab",
        "app",
        "--image",
        &container.image,
        "--pod",
        pod_name,
    ]));
    for p in &container.ports {
        let tcp = p.name.as_deref().is_some_and(|n| n.starts_with("tcp"));
        let flag = if tcp { "--tcp-port" } else { "--port" };
        a.extend(args(&[flag, &p.container_port.to_string()]));
    }
    a
}

/// The DNS search path of a pod in `namespace`, as in a Kubernetes pod (plus the
/// `global` suffixes of the seeds' multicluster DNS).
pub fn search_domains(namespace: &str) -> Vec<String> {
    vec![
        format!("{namespace}.svc.cluster.local"),
        "svc.cluster.local".into(),
        "cluster.local".into(),
        "global".into(),
        format!("{namespace}.global"),
    ]
}

/// A short name of a demo app for progress lines.
pub fn describe(app: &DemoApp) -> String {
    match app {
        DemoApp::Sleep => "sleep".to_string(),
        DemoApp::Httpbin => "httpbin".to_string(),
        DemoApp::Helloworld(v) => format!("helloworld {v}"),
        DemoApp::Bookinfo(b) => b.describe(),
        DemoApp::Jwks => "JWKS server".to_string(),
        DemoApp::GrpcEcho => "gRPC echo".to_string(),
    }
}

/// Makes `pod` one of Deployment `d`'s: its labels, service account (`default` when the
/// template names none) and image come from the template; it has a proxy when `sidecar`.
pub fn from_template(pod: &mut PodState, d: &Deployment, container: &Container, sidecar: bool) {
    pod.deployment = Some(d.metadata.name.to_string());
    pod.subdomain = d.spec.service_name.clone();
    pod.labels = d.spec.template.metadata.labels.to_map();
    pod.service_account = if d.spec.template.spec.service_account_name.is_empty() {
        "default".into()
    } else {
        d.spec.template.spec.service_account_name.to_string()
    };
    pod.image = Some(container.image.clone());
    pod.proxy = sidecar;
}

/// Brings Deployment `d`'s pods in cluster number `ci` to its replica count: scaling down
/// stops the newest, scaling up starts the missing ones, an unchanged count leaves the
/// pods alone (as Kubernetes does).
pub fn run_deployment(
    opts: &LabOptions,
    state: &mut LabState,
    ci: usize,
    d: &Deployment,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let ns = d.metadata.namespace.to_string();
    let name = d.metadata.name.clone();
    let replicas = d.spec.replicas.unwrap_or(1);
    let existing: Vec<usize> = state.clusters[ci]
        .pods
        .iter()
        .enumerate()
        .filter(|(_, p)| p.namespace == ns && p.deployment.as_deref() == Some(&name))
        .map(|(i, _)| i)
        .collect();
    let have = existing.len() as u32;
    if have > replicas {
        // Scaled down: the newest pods go.
        for i in existing.into_iter().skip(replicas as usize).rev() {
            let pod_name = state.clusters[ci].pods[i].name.clone();
            stop_pod(opts, state, ci, i)?;
            progress(&format!(
                "{}: pod {ns}/{pod_name} deleted (scaled to {replicas})",
                state.clusters[ci].name
            ));
        }
        return Ok(());
    }
    // Re-applying an unchanged Deployment leaves its pods alone, as Kubernetes does;
    // scaling up adds the missing replicas.
    let container = d.spec.template.spec.containers.first().ok_or_else(|| {
        LabError::Invalid(format!(
            "Deployment {ns}/{name}: spec.template.spec.containers is empty"
        ))
    })?;
    let app = DemoApp::for_image(&container.image)
        .map_err(|e| LabError::Invalid(format!("Deployment {ns}/{name}: {e}")))?;
    let ports: Vec<u32> = container.ports.iter().map(|p| p.container_port).collect();
    // Injection as Istio decides it: the namespace label, unless the pod opts out.
    let opted_out = d
        .spec
        .template
        .metadata
        .annotations
        .get("sidecar.istio.io/inject")
        .map(String::as_str)
        == Some("false");
    let sidecar = state.clusters[ci].injected_namespaces.contains(&ns) && !opted_out;
    let api = ApiServer::new(&opts.state_dir, &state.clusters[ci].name);
    for r in have..replicas {
        let pod_name = format!("{name}-{r}");
        let mut pod = network::pod_netns(&opts.state_dir, state, ci, &ns, &pod_name, PodRole::App)?;
        from_template(&mut pod, d, container, sidecar);
        // A cluster without a control plane has no DNS of its own in the lab: its pods
        // resolve nothing rather than leak to the host's resolver.
        let cp = state.clusters[ci]
            .control_plane_ip
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into());
        netns::resolv_conf(&pod.netns, &cp, &search_domains(&ns))?;
        api.put_pod(&pod, &ports)?;
        pod.pids.push(process::spawn(
            &pod.netns,
            &app_args(opts, container, &pod_name),
            &pod.workdir.join("app.log"),
        )?);
        if sidecar {
            let pid = start_agent(opts, state, ci, &pod, None)?;
            pod.pids.push(pid);
        }
        progress(&format!(
            "{}: pod {ns}/{pod_name} ({}) at {}{}",
            state.clusters[ci].name,
            describe(&app),
            pod.ip,
            if sidecar { " with sidecar" } else { "" }
        ));
        state.clusters[ci].pods.push(pod);
    }
    Ok(())
}

/// Stops pod number `index` of cluster number `ci`: its processes (and whatever else
/// runs in its namespace), its Pod object, its namespace.
pub fn stop_pod(
    opts: &LabOptions,
    state: &mut LabState,
    ci: usize,
    index: usize,
) -> Result<(), LabError> {
    let pod = state.clusters[ci].pods.remove(index);
    for pid in &pod.pids {
        process::stop(*pid, Duration::from_secs(3));
    }
    for pid in process::in_namespace(&pod.netns) {
        process::stop(pid, Duration::from_secs(2));
    }
    ApiServer::new(&opts.state_dir, &state.clusters[ci].name).delete(
        &pod.namespace,
        "Pod",
        &pod.name,
    )?;
    netns::delete(&pod.netns)
}

/// GET on a pod's loopback (Envoy admin 15000, control plane monitoring 15014).
pub fn pod_http(
    opts: &LabOptions,
    pod: &PodState,
    port: u16,
    path: &str,
) -> Result<String, LabError> {
    pod_http_at(opts, pod, "127.0.0.1", port, path)
}

/// GET on `address:port` from inside a pod (a readiness probe at the pod's address).
pub fn pod_http_at(
    opts: &LabOptions,
    pod: &PodState,
    address: &str,
    port: u16,
    path: &str,
) -> Result<String, LabError> {
    netns::exec(
        &pod.netns,
        &opts.exe_arg(),
        &["lab", "http-get", &format!("{address}:{port}"), path],
    )
}

/// The last lines of every log in a pod's working directory, for an error report.
fn log_tails(workdir: &Path) -> String {
    std::fs::read_dir(workdir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            format!(
                "--- {}\n{}",
                e.path().display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until every proxy's Envoy says it is ready (all initial xDS received) and every
/// control plane answers `/ready`; fails at once when a process of a pod has exited.
pub fn wait_ready(
    opts: &LabOptions,
    state: &LabState,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    let mut reported = std::collections::BTreeSet::new();
    loop {
        let mut waiting = Vec::new();
        for c in &state.clusters {
            for p in c.pods.iter().filter(|p| !p.stopped) {
                // A node agent's pod whose process is gone is being deleted, or is reported
                // not ready through the API by its kubelet: not the lab's failure.
                if p.from_node && !p.pids.iter().all(|pid| process::alive(*pid)) {
                    continue;
                }
                for pid in &p.pids {
                    if !process::alive(*pid) {
                        let log = log_tails(&p.workdir);
                        return Err(LabError::Invalid(format!(
                            "{}: pod {}/{}: a process (pid {pid}) exited\n{log}",
                            c.name, p.namespace, p.name
                        )));
                    }
                }
                let ready = match p.role {
                    PodRole::ControlPlane => pod_http(opts, p, 15014, "/ready").is_ok(),
                    _ if p.proxy => pod_http(opts, p, 15000, "/ready")
                        .map(|b| b.contains("LIVE"))
                        .unwrap_or(false),
                    _ => true,
                };
                let key = format!("{}/{}/{}", c.name, p.namespace, p.name);
                if ready {
                    if reported.insert(key) && (p.proxy || p.role == PodRole::ControlPlane) {
                        progress(&format!("{}: {}/{} ready", c.name, p.namespace, p.name));
                    }
                } else {
                    waiting.push(key);
                }
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout(format!(
                "not ready after {}s: {} (see the logs under {})",
                timeout.as_secs(),
                waiting.join(", "),
                opts.state_dir.join("pods").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing;
    use isthmus_api::kube::{ContainerPort, EnvVar};

    use testing::opts;

    fn agent_line(
        s: &LabState,
        ci: usize,
        pod: &PodState,
        cp: &str,
        cred: &Path,
        router: Option<Router<'_>>,
    ) -> Vec<String> {
        let config = agent_config(&opts(), s, ci, pod, cp, cred, router);
        process::command_line("/bin/isthmus", "agent", config.to_args())
    }

    fn container(image: &str, ports: &[(Option<&str>, u32)], env: &[(&str, &str)]) -> Container {
        Container {
            name: "app".into(),
            image: image.into(),
            ports: ports
                .iter()
                .map(|(name, port)| ContainerPort {
                    name: name.map(str::to_string),
                    container_port: *port,
                })
                .collect(),
            env: env
                .iter()
                .map(|(k, v)| EnvVar {
                    name: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    /// The value following `flag` in `args` (its first occurrence).
    fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).map(String::as_str)
    }

    #[test]
    fn an_app_runs_with_its_environment_first_and_tcp_ports_apart() {
        let c = container(
            "docker.io/istio/examples-helloworld-v1",
            &[(Some("http"), 5000), (Some("tcp-echo"), 9000), (None, 8080)],
            &[("SERVICE_VERSION", "v1")],
        );
        assert_eq!(
            app_args(&opts(), &c, "helloworld-v1-0"),
            [
                "env",
                "SERVICE_VERSION=v1",
                "/bin/isthmus",
                "lab",
                "app",
                "--image",
                "docker.io/istio/examples-helloworld-v1",
                "--pod",
                "helloworld-v1-0",
                "--port",
                "5000",
                "--tcp-port",
                "9000",
                "--port",
                "8080",
            ]
        );
        let plain = container("curlimages/curl", &[], &[]);
        assert_eq!(app_args(&opts(), &plain, "sleep-0")[0], "/bin/isthmus");
    }

    #[test]
    fn a_sidecar_agent_captures_and_a_router_does_not() {
        let mut s = testing::lab(testing::TWO_CLUSTERS);
        s.topology.clusters[1].cluster_id = Some("remote1".into());
        let pod = testing::pod("foo", "sleep-0", "10.10.0.31", &[("app", "sleep")]);
        let cred = Path::new("/state/pods/cluster2/foo/sleep-0/credential");
        let sidecar = agent_line(&s, 1, &pod, "10.10.0.2:15012", cred, None);
        assert_eq!(
            &sidecar[..4],
            ["/bin/isthmus", "agent", "--kind", "sidecar"]
        );
        assert_eq!(flag(&sidecar, "--cluster"), Some("remote1"));
        assert_eq!(flag(&sidecar, "--network"), Some("network2"));
        assert_eq!(flag(&sidecar, "--control-plane"), Some("10.10.0.2:15012"));
        assert_eq!(
            flag(&sidecar, "--root-cert"),
            Some("/state/ca/root/root-cert.pem")
        );
        assert_eq!(flag(&sidecar, "--envoy"), Some("/bin/envoy"));
        assert_eq!(flag(&sidecar, "--interception"), Some("REDIRECT"));
        assert_eq!(flag(&sidecar, "--xds"), Some("sotw"));
        assert!(sidecar.contains(&"--capture".to_string()));
        assert_eq!(flag(&sidecar, "--label"), Some("app=sleep"));
        let typed = agent_config(&opts(), &s, 1, &pod, "10.10.0.2:15012", cred, None);
        assert!(typed.capture);
        assert!(typed.dns_capture, "a sidecar's agent serves the pod's DNS");
        assert_eq!(typed.labels, [("app".to_string(), "sleep".to_string())]);

        let router = Router {
            metadata: &[("REQUESTED_NETWORK_VIEW", "external")],
            sni_dnat: true,
        };
        let gw = agent_line(&s, 0, &pod, "cp:15012", cred, Some(router));
        assert_eq!(flag(&gw, "--kind"), Some("router"));
        assert_eq!(flag(&gw, "--cluster"), Some("cluster1"));
        assert_eq!(flag(&gw, "--interception"), Some("NONE"));
        assert_eq!(flag(&gw, "--xds"), Some("delta"));
        assert_eq!(flag(&gw, "--router-mode"), Some("sni-dnat"));
        assert_eq!(
            flag(&gw, "--metadata"),
            Some("REQUESTED_NETWORK_VIEW=external")
        );
        assert!(!gw.contains(&"--capture".to_string()));
        let standard = Router {
            metadata: &[],
            sni_dnat: false,
        };
        let gw = agent_line(&s, 0, &pod, "cp:15012", cred, Some(standard));
        assert_eq!(flag(&gw, "--router-mode"), None);
        assert_eq!(flag(&gw, "--metadata"), None);
    }

    #[test]
    fn a_deployments_pod_takes_labels_account_and_image_from_the_template() {
        let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: sleep, namespace: foo}\nspec:\n  template:\n    metadata: {labels: {app: sleep, version: v1}}\n    spec:\n      containers:\n      - {name: sleep, image: curlimages/curl}\n";
        let loaded = isthmus_api::load_str(yaml, None, "default");
        let Some(isthmus_api::Object::Deployment(d)) =
            loaded.resources.into_iter().next().map(|r| r.object)
        else {
            panic!("not a Deployment: {:?}", loaded.diagnostics);
        };
        let container = &d.spec.template.spec.containers[0];
        let mut pod = testing::pod("foo", "sleep-0", "10.10.0.11", &[]);
        from_template(&mut pod, &d, container, true);
        assert_eq!(pod.deployment.as_deref(), Some("sleep"));
        assert_eq!(pod.labels.get("version").map(String::as_str), Some("v1"));
        assert_eq!(pod.service_account, "default");
        assert_eq!(pod.image.as_deref(), Some("curlimages/curl"));
        assert!(pod.proxy);
        assert_eq!(pod.subdomain, None);
        // A StatefulSet's pods are named under its serviceName.
        let stateful = yaml
            .replace("kind: Deployment", "kind: StatefulSet")
            .replace(
                "spec:\n  template:",
                "spec:\n  serviceName: sleep-headless\n  template:",
            );
        let loaded = isthmus_api::load_str(&stateful, None, "default");
        let Some(isthmus_api::Object::Deployment(s)) =
            loaded.resources.into_iter().next().map(|r| r.object)
        else {
            panic!(
                "a StatefulSet is read as a Deployment: {:?}",
                loaded.diagnostics
            );
        };
        from_template(&mut pod, &s, container, true);
        assert_eq!(pod.subdomain.as_deref(), Some("sleep-headless"));
    }

    #[test]
    fn pods_search_their_namespace_then_the_cluster_then_global() {
        assert_eq!(
            search_domains("foo"),
            [
                "foo.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "global",
                "foo.global"
            ]
        );
        assert_eq!(describe(&DemoApp::Helloworld("v2".into())), "helloworld v2");
        assert_eq!(describe(&DemoApp::Sleep), "sleep");
    }

    #[test]
    fn log_tails_keep_the_last_eight_lines_of_each_log() {
        let dir = std::env::temp_dir().join(format!("isthmus-lab-kubelet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let lines: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
        std::fs::write(dir.join("agent.log"), lines.join("\n")).expect("log");
        std::fs::write(dir.join("credential"), "secret").expect("not a log");
        let got = log_tails(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            got.starts_with(&format!(
                "--- {}\nline 3\n",
                dir.join("agent.log").display()
            )),
            "{got}"
        );
        assert!(
            got.ends_with("line 10") && !got.contains("line 2\n"),
            "{got}"
        );
        assert!(!got.contains("secret"), "{got}");
    }
}
