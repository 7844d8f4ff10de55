//! The Helm chart (manifests/charts/isthmus) with a real `helm` built from its Go module
//! (scripts/install-helm.sh) and a real kube-apiserver: `helm lint` passes and refuses a
//! value the chart does not use; `helm template` renders objects Isthmus reads without a
//! problem (the mesh config, the Services), command lines that `isthmus control-plane` and
//! `isthmus agent` accept, and the control plane's RBAC equal to the read rights of
//! `create-remote-secret` (both derived from what the control plane watches); `helm install`
//! into the API server creates Istio's CRDs and every object. Fails saying what to run when
//! helm or the Kubernetes binaries are missing.

use clap::Parser;
use isthmus_kube::local::{locate_binaries, LocalCluster, LocalOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The helm that scripts/install-helm.sh built.
fn helm() -> PathBuf {
    let bin = root().join(".kube-bin");
    std::fs::read_dir(&bin)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("helm"))
        .find(|p| p.parent().is_some_and(|d| d.to_string_lossy().contains("helm-")) && p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no helm in {}/helm-*/: run scripts/install-helm.sh (it builds helm from the pinned helm.sh/helm/v3 module)",
                bin.display()
            )
        })
}

fn chart() -> String {
    root()
        .join("manifests/charts/isthmus")
        .display()
        .to_string()
}

/// Runs helm; (success, stdout, stderr).
fn run_helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(helm())
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("isthmus-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("isthmus-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("isthmus-helm-data"),
        )
        .output()
        .expect("run helm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `isthmus ARGS` from the repository root.
fn isthmus<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run isthmus")
}

/// The documents of a multi-document YAML stream.
fn documents(text: &str) -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line == "---" {
            if current
                .lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                docs.push(
                    serde_saphyr::from_str(&current)
                        .unwrap_or_else(|e| panic!("helm rendered invalid YAML: {e}\n{current}")),
                );
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not rendered"))
}

fn args_of(deployment: &serde_json::Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

#[derive(Parser)]
struct ControlPlaneLine {
    #[command(flatten)]
    config: isthmus_control_plane::ControlPlaneConfig,
}

#[derive(Parser)]
struct AgentLine {
    #[command(flatten)]
    config: isthmus_agent::AgentConfig,
}

#[test]
fn lint_refuses_values_the_chart_does_not_use() {
    let (ok, out, err) = run_helm(&["lint", &chart()]);
    assert!(ok, "helm lint failed:\n{out}{err}");
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let (ok, out, err) = run_helm(&["lint", &chart(), "--set", "global.meshId=mesh1"]);
    assert!(!ok, "a value the chart does not use was accepted:\n{out}");
    assert!(
        format!("{out}{err}").contains("meshId"),
        "the refusal does not name the value:\n{out}{err}"
    );
}

#[test]
fn template_renders_what_isthmus_reads_and_the_rights_it_needs() {
    let networks = r#"{"net-east": {"endpoints": [{"fromRegistry": "east"}], "gateways": [{"registryServiceName": "istio-eastwestgateway.istio-system.svc.cluster.local", "port": 15443}]}}"#;
    let (ok, out, err) = run_helm(&[
        "template",
        "isthmus",
        &chart(),
        "--namespace",
        "istio-system",
        "--set",
        "global.multiCluster.clusterName=east",
        "--set",
        "global.network=net-east",
        "--set-json",
        &format!("meshNetworks={networks}"),
    ]);
    assert!(ok, "helm template failed:\n{err}");
    let docs = documents(&out);
    let crds = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .count();
    assert_eq!(crds, 15, "Istio's CRDs");

    // The RBAC is exactly the reader's rights: what the control plane watches.
    let (cluster_rules, namespaced) = isthmus_kube::remote_secret::reader_rules();
    let role = find(&docs, "ClusterRole", "istiod-clusterrole-istio-system");
    assert_eq!(
        role["rules"],
        serde_json::to_value(&cluster_rules).expect("rules"),
        "the chart's ClusterRole is not what the control plane watches"
    );
    let ns_role = find(&docs, "Role", "istiod");
    assert_eq!(
        ns_role["rules"],
        serde_json::to_value(&namespaced["istio-system"]).expect("rules"),
        "the chart's Role is not what the control plane watches in istio-system"
    );

    // The mesh config and the Services, read by Isthmus as it reads them from a cluster.
    let read: String = ["ConfigMap", "Service"]
        .iter()
        .flat_map(|k| docs.iter().filter(move |d| d["kind"] == *k))
        .map(|d| format!("{}\n---\n", serde_json::to_string(d).expect("json")))
        .collect();
    let loaded = isthmus_api::load_str(&read, None, "istio-system");
    assert!(
        !loaded.has_errors(),
        "{:?}",
        loaded
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
    );
    let cm = find(&docs, "ConfigMap", "istio");
    let mesh =
        isthmus_api::mesh::MeshNetworks::parse(cm["data"]["meshNetworks"].as_str().expect("text"))
            .expect("meshNetworks");
    assert_eq!(
        mesh.networks["net-east"].endpoints[0]
            .from_registry
            .as_deref(),
        Some("east")
    );

    // Command lines the binary accepts, with this cluster's name and network.
    let cp = args_of(find(&docs, "Deployment", "istiod"));
    let parsed = ControlPlaneLine::try_parse_from(
        std::iter::once("control-plane".to_string()).chain(cp.iter().skip(1).cloned()),
    )
    .unwrap_or_else(|e| panic!("isthmus control-plane refuses the chart's arguments {cp:?}: {e}"));
    assert_eq!(cp[0], "control-plane");
    assert_eq!(parsed.config.sources.cluster, "east");
    assert_eq!(parsed.config.sources.network, "net-east");
    assert!(parsed.config.in_cluster);
    let gw = args_of(find(&docs, "Deployment", "istio-eastwestgateway"));
    assert_eq!(gw[0], "agent");
    let filled: Vec<String> = gw
        .iter()
        .skip(1)
        .map(|a| {
            a.replace("$(POD_IP)", "10.0.0.5")
                .replace("$(POD_NAME)", "gw-0")
                .replace("$(POD_NAMESPACE)", "istio-system")
                .replace(
                    "$(SERVICE_ACCOUNT)",
                    "istio-eastwestgateway-service-account",
                )
        })
        .collect();
    let agent = AgentLine::try_parse_from(std::iter::once("agent".to_string()).chain(filled))
        .unwrap_or_else(|e| panic!("isthmus agent refuses the chart's arguments {gw:?}: {e}"));
    assert_eq!(agent.config.cluster, "east");
    assert_eq!(agent.config.control_plane, "istiod.istio-system.svc:15012");
    // The gateway mounts the CA's root certificate, never its key.
    let volumes =
        &find(&docs, "Deployment", "istio-eastwestgateway")["spec"]["template"]["spec"]["volumes"];
    assert!(!volumes.to_string().contains("ca-key.pem"), "{volumes}");
}

/// An object with what legitimately differs between `helm template` and `isthmus install
/// --dry-run` taken out: the label naming the tool that manages it.
fn normalized(mut o: serde_json::Value) -> serde_json::Value {
    if let Some(labels) = o["metadata"]["labels"].as_object_mut() {
        labels.remove("app.kubernetes.io/managed-by");
    }
    o
}

#[test]
fn isthmus_install_renders_what_helm_renders() {
    let sets = [
        "global.multiCluster.clusterName=east",
        "global.network=net-east",
        "eastWestGateway.service.type=NodePort",
        "pilot.replicaCount=2",
    ];
    let networks = r#"meshNetworks={"net-east": {"endpoints": [{"fromRegistry": "east"}]}, "net-west": {"gateways": [{"address": "198.18.0.1", "port": 15443}]}}"#;
    for extra in [
        &[][..],
        &["eastWestGateway.enabled=false", "base.enableCRDs=false"][..],
        // Istio's remote profile.
        &[
            "global.remotePilotAddress=198.18.1.1",
            "istiodRemote.injectionCABundle=Zm9v",
        ][..],
    ] {
        let mut helm_args = vec![
            "template".to_string(),
            "isthmus".into(),
            chart(),
            "--namespace".into(),
            "istio-system".into(),
        ];
        let mut ours = vec!["install".to_string(), "--dry-run".into()];
        for s in sets.iter().chain(extra) {
            helm_args.extend(["--set".to_string(), s.to_string()]);
            ours.extend(["--set".to_string(), s.to_string()]);
        }
        helm_args.extend(["--set-json".to_string(), networks.to_string()]);
        ours.extend(["--set-json".to_string(), networks.to_string()]);
        let args: Vec<&str> = helm_args.iter().map(String::as_str).collect();
        let (ok, helm_out, err) = run_helm(&args);
        assert!(ok, "helm template failed:\n{err}");
        let out = isthmus(&ours);
        assert!(
            out.status.success(),
            "isthmus install --dry-run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = |o: &serde_json::Value| {
            format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        };
        let by_key = |docs: Vec<serde_json::Value>| -> std::collections::BTreeMap<String, serde_json::Value> {
            docs.into_iter().map(|d| (key(&d), normalized(d))).collect()
        };
        let helm = by_key(documents(&helm_out));
        let isthmus = by_key(documents(&String::from_utf8_lossy(&out.stdout)));
        assert_eq!(
            helm.keys().collect::<Vec<_>>(),
            isthmus.keys().collect::<Vec<_>>(),
            "different objects (values {extra:?})"
        );
        for (k, h) in &helm {
            assert_eq!(h, &isthmus[k], "{k} differs (values {extra:?})");
        }
    }
    // A value the chart does not use is refused by both.
    let out = isthmus(&["install", "--dry-run", "--set", "global.meshId=mesh1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("meshId"));
}

/// `kubectl ARGS -o name` against `cluster`: the objects' names, one per line.
fn names(cluster: &LocalCluster, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["-o", "name"]);
    cluster
        .kubectl(&all, None)
        .unwrap_or_else(|e| panic!("kubectl {all:?}: {e}"))
}

#[test]
fn install_into_a_real_api_server() {
    std::env::set_current_dir(root()).expect("repository root");
    let bin = locate_binaries(None).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("isthmus-helm-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = LocalCluster::start(LocalOptions::loopback(bin, dir.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    let (ok, out, err) = run_helm(&[
        "install",
        "isthmus",
        &chart(),
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "istio-system",
        "--create-namespace",
    ]);
    assert!(ok, "helm install failed:\n{out}{err}");
    let got = names(
        &cluster,
        &[
            "get",
            "crd/virtualservices.networking.istio.io",
            "crd/authorizationpolicies.security.istio.io",
            "clusterrole/istiod-clusterrole-istio-system",
        ],
    );
    assert_eq!(got.lines().count(), 3, "{got}");
    let got = names(
        &cluster,
        &[
            "get",
            "deployment,service,serviceaccount,configmap,role,rolebinding",
            "-n",
            "istio-system",
            "-l",
            "app.kubernetes.io/part-of=isthmus",
        ],
    );
    for object in [
        "deployment.apps/istiod",
        "deployment.apps/istio-eastwestgateway",
        "service/istiod",
        "service/istio-eastwestgateway",
        "serviceaccount/istiod",
        "configmap/istio",
        "role.rbac.authorization.k8s.io/istiod",
    ] {
        assert!(
            got.lines().any(|l| l == object),
            "{object} not installed: {got}"
        );
    }
    let (ok, out, err) = run_helm(&[
        "uninstall",
        "isthmus",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "istio-system",
    ]);
    assert!(ok, "helm uninstall failed:\n{out}{err}");

    // The same objects without Helm.
    let install = [
        "install",
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "global.network=net-east",
    ];
    let out = isthmus(&install);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "isthmus install failed:\n{stderr}");
    assert!(stderr.contains("applied Deployment istiod"), "{stderr}");
    assert!(
        stderr.contains("applied 15 of Istio's CustomResourceDefinitions"),
        "{stderr}"
    );
    let got = names(
        &cluster,
        &[
            "get",
            "deployment,service,serviceaccount,configmap,role,rolebinding",
            "-n",
            "istio-system",
            "-l",
            "app.kubernetes.io/managed-by=isthmus",
        ],
    );
    assert_eq!(got.lines().count(), 9, "{got}");
    // Running it again changes nothing and fails nothing (server-side apply).
    let again = isthmus(&install);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
