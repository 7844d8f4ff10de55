//! Sidecar injection as Istio's webhook does it: a Pod being created in a namespace
//! labelled `istio-injection=enabled` gets the `istio-init` init container (the traffic
//! capture rules) and the `istio-proxy` container (the agent and Envoy), the volumes they
//! mount, and the `sidecar.istio.io/status` annotation, as a JSON patch
//! ([`patch`]). The namespace selection itself is the `MutatingWebhookConfiguration`'s
//! (the chart's `namespaceSelector`); this module decides per pod.
//!
//! Where Isthmus differs from Istio, on purpose:
//! - `istio-init` runs after the pod's own init containers, not before them: Istio puts it
//!   first, so an application init container's connections are redirected to an Envoy that
//!   is not running yet and fail (istio/istio's long-standing "init containers cannot reach
//!   the network" problem).
//! - The proxy's identity and addresses come from the downward API as in Istio; its labels
//!   are those the Pod has when it is admitted (Istio reads them later from a downward-API
//!   file; a label changed after creation does not move a running proxy in either).

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The annotation that turns injection off for one pod (`"false"`), as in Istio.
pub const INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";
/// The annotation injection leaves on a pod (what it added), as in Istio.
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
/// The init container that installs the capture rules.
pub const INIT_CONTAINER: &str = "istio-init";
/// The proxy container.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The uid and gid the proxy runs as, excluded from capture (Istio's 1337).
pub const PROXY_UID: i64 = 1337;
/// The audience of the proxy's service-account token (Istio's `istio-ca`).
pub const TOKEN_AUDIENCE: &str = "istio-ca";
/// The ConfigMap with the mesh's root certificate that the control plane puts into every
/// namespace (Istio's `istio-ca-root-cert`).
pub const ROOT_CERT_CONFIGMAP: &str = "istio-ca-root-cert";
/// The key of the root certificate in [`ROOT_CERT_CONFIGMAP`].
pub const ROOT_CERT_KEY: &str = "root-cert.pem";

/// Where the injected proxy finds what it mounts (Istio's paths).
pub mod paths {
    /// The proxy's service-account token (projected, audience `istio-ca`).
    pub const TOKEN: &str = "/var/run/secrets/tokens/istio-token";
    /// The folder of [`TOKEN`].
    pub const TOKEN_DIR: &str = "/var/run/secrets/tokens";
    /// The mesh root certificate (from [`super::ROOT_CERT_CONFIGMAP`]).
    pub const ROOT_CERT: &str = "/var/run/secrets/istio/root-cert.pem";
    /// The folder of [`ROOT_CERT`].
    pub const ROOT_CERT_DIR: &str = "/var/run/secrets/istio";
    /// The proxy's working folder (bootstrap, certificates, SDS socket).
    pub const PROXY_DIR: &str = "/etc/istio/proxy";
}

/// What injection puts into a pod: the settings of the cluster the pod runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionConfig {
    /// The image of `istio-init` and `istio-proxy` (the Isthmus image).
    pub image: String,
    /// The pod's cluster (Istio's `ISTIO_META_CLUSTER_ID`).
    pub cluster: String,
    /// The pod's network (Istio's `ISTIO_META_NETWORK`).
    pub network: String,
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// Where the proxy reaches the control plane (xDS and CA), `HOST:PORT`.
    pub control_plane: String,
    /// The agent's `--scope-idle` in seconds (on-demand scoping lets go of a service
    /// unused this long); 0 keeps every service the pod used.
    pub scope_idle: u64,
}

impl InjectionConfig {
    /// The same settings for a pod of another cluster: Istio's path form
    /// `/inject/cluster/CLUSTER/net/NETWORK` (a remote cluster's webhook points there), and
    /// `/discovery/HOST[/port/PORT]` for where its proxies reach the control plane.
    pub fn for_path(&self, path: &str) -> Result<InjectionConfig, InjectError> {
        let mut config = self.clone();
        let rest = path.trim_end_matches('/');
        if rest == "/inject" {
            return Ok(config);
        }
        let parts: Vec<&str> = rest
            .strip_prefix("/inject/")
            .ok_or_else(|| InjectError::Path(path.to_string()))?
            .split('/')
            .collect();
        let (mut discovery_host, mut discovery_port) = (None, None);
        let mut i = 0;
        while i < parts.len() {
            let value = parts
                .get(i + 1)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| InjectError::Path(path.to_string()))?;
            match parts[i] {
                "cluster" => config.cluster = value.to_string(),
                "net" => config.network = value.to_string(),
                // Where that cluster's proxies reach this control plane (a remote cluster
                // has no `istiod` of its own to resolve): Isthmus's own keys, host and
                // port apart (the API server allows no `:` in a path segment).
                "discovery" => discovery_host = Some(value.to_string()),
                "port" => discovery_port = Some(value.to_string()),
                _ => return Err(InjectError::Path(path.to_string())),
            }
            i += 2;
        }
        match (discovery_host, discovery_port) {
            (Some(host), port) => {
                let port = port.unwrap_or_else(|| "15012".into());
                if port.parse::<u16>().is_err() {
                    return Err(InjectError::Path(path.to_string()));
                }
                config.control_plane = format!("{host}:{port}");
            }
            (None, Some(_)) => return Err(InjectError::Path(path.to_string())),
            (None, None) => {}
        }
        Ok(config)
    }
}

/// Why a pod could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The AdmissionReview or its Pod could not be read.
    #[error("the admission request: {0}")]
    Request(String),
    /// A webhook path that is neither `/inject` nor `/inject/cluster/C/net/N`.
    #[error("webhook path `{0}`: expected /inject or /inject/cluster/CLUSTER/net/NETWORK[/discovery/HOST[/port/PORT]]")]
    Path(String),
}

/// Why a pod is left alone, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `sidecar.istio.io/inject: "false"` (annotation or label).
    OptedOut,
    /// It already has a proxy (`sidecar.istio.io/status` or an `istio-proxy` container).
    AlreadyInjected,
    /// It uses the node's network: capture would redirect the node's traffic.
    HostNetwork,
    /// Refused, not left alone: it carries Istio annotations that change the proxy or its
    /// capture in ways Isthmus does not implement (named, with the reason). Injecting
    /// without them would run a proxy other than the one the user asked for.
    Unsupported(Vec<String>),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Skip::OptedOut => "sidecar.istio.io/inject is \"false\"",
            Skip::AlreadyInjected => "already injected",
            Skip::HostNetwork => "hostNetwork pods are not injected",
            Skip::Unsupported(what) => {
                return write!(f, "{} (not supported by Isthmus)", what.join("; "));
            }
        })
    }
}

/// The prefixes of Istio's pod annotations that configure injection, the proxy or capture.
const ISTIO_POD_ANNOTATION_PREFIXES: [&str; 7] = [
    "sidecar.istio.io/",
    "traffic.sidecar.istio.io/",
    "proxy.istio.io/",
    "status.sidecar.istio.io/",
    "readiness.status.sidecar.istio.io/",
    "prometheus.istio.io/",
    "inject.istio.io/",
];

/// Whether Isthmus does what `key: value` asks for: the opt-in/out and status annotations,
/// and settings that ask for what Isthmus does anyway (REDIRECT capture, no probe rewrite).
fn annotation_supported(key: &str, value: &str) -> bool {
    match key {
        INJECT_ANNOTATION | STATUS_ANNOTATION => true,
        "sidecar.istio.io/interceptionMode" => value == "REDIRECT",
        "sidecar.istio.io/rewriteAppHTTPProbers" => value.eq_ignore_ascii_case("false"),
        _ => !ISTIO_POD_ANNOTATION_PREFIXES
            .iter()
            .any(|p| key.starts_with(p)),
    }
}

/// The Istio annotations of `pod` that Isthmus would otherwise ignore, each with its value.
pub fn unsupported_annotations(pod: &Pod) -> Vec<String> {
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, v)| !annotation_supported(k, v))
        .map(|(k, v)| format!("annotation {k}: {v:?}"))
        .collect()
}

/// Whether `pod` gets a proxy; `Err` says why not.
pub fn decide(pod: &Pod) -> Result<(), Skip> {
    let meta = &pod.metadata;
    let opted_out = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()
            .and_then(|m| m.get(INJECT_ANNOTATION))
            .is_some_and(|v| v.eq_ignore_ascii_case("false") || v == "n" || v == "no")
    };
    if opted_out(&meta.annotations) || opted_out(&meta.labels) {
        return Err(Skip::OptedOut);
    }
    let spec = pod.spec.as_ref();
    let has_proxy = spec.is_some_and(|s| s.containers.iter().any(|c| c.name == PROXY_CONTAINER));
    if has_proxy
        || meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(STATUS_ANNOTATION))
    {
        return Err(Skip::AlreadyInjected);
    }
    if spec.is_some_and(|s| s.host_network == Some(true)) {
        return Err(Skip::HostNetwork);
    }
    let unsupported = unsupported_annotations(pod);
    if !unsupported.is_empty() {
        return Err(Skip::Unsupported(unsupported));
    }
    Ok(())
}

/// A JSON pointer segment (RFC 6901: `~` and `/` escaped).
fn pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn env_field(name: &str, field: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field}}})
}

/// The `istio-init` container: `isthmus iptables` with Istio's ports, DNS capture on.
pub fn init_container(config: &InjectionConfig) -> Value {
    json!({
        "name": INIT_CONTAINER,
        "image": config.image,
        "args": [
            "iptables",
            "--outbound-port", "15001",
            "--inbound-port", "15006",
            "--proxy-uid", PROXY_UID.to_string(),
            "--exclude-inbound-ports", "15020,15021,15090",
            "--redirect-dns",
        ],
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    })
}

/// The `istio-proxy` container: the agent (which starts Envoy) as uid 1337, its identity
/// from the downward API. (No readiness probe yet: Envoy's admin port listens on the pod's
/// loopback only, and Istio's 15021 health listener is not generated; the lab's kubelet
/// asks Envoy's admin `/ready` itself.)
/// `workload` is the workload's name in metrics ([`workload_name`]); `app_metrics` the
/// application's own metrics (`PORT/PATH`, from its `prometheus.io` annotations), merged
/// into the agent's 15020 page.
pub fn proxy_container(
    config: &InjectionConfig,
    labels: &BTreeMap<String, String>,
    workload: &str,
    app_metrics: Option<&str>,
) -> Value {
    let mut args: Vec<String> = [
        "agent",
        "--kind",
        "sidecar",
        "--pod",
        "$(POD_NAME)",
        "--namespace",
        "$(POD_NAMESPACE)",
        "--ip",
        "$(INSTANCE_IP)",
        "--service-account",
        "$(SERVICE_ACCOUNT)",
        "--cluster",
        &config.cluster,
        "--network",
        &config.network,
        "--trust-domain",
        &config.trust_domain,
        "--control-plane",
        &config.control_plane,
        "--credential-file",
        paths::TOKEN,
        "--root-cert",
        paths::ROOT_CERT,
        "--workdir",
        paths::PROXY_DIR,
        "--interception",
        "REDIRECT",
        "--dns-capture",
        "--xds",
        "sotw",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    if !workload.is_empty() {
        args.push("--workload-name".into());
        args.push(workload.into());
    }
    if let Some(m) = app_metrics {
        args.push("--app-metrics".into());
        args.push(m.into());
    }
    if config.scope_idle > 0 {
        args.push("--scope-idle".into());
        args.push(config.scope_idle.to_string());
    }
    json!({
        "name": PROXY_CONTAINER,
        "image": config.image,
        "args": args,
        "env": [
            env_field("POD_NAME", "metadata.name"),
            env_field("POD_NAMESPACE", "metadata.namespace"),
            env_field("INSTANCE_IP", "status.podIP"),
            env_field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            env_field("HOST_IP", "status.hostIP"),
            {"name": "ISTIO_META_CLUSTER_ID", "value": config.cluster},
            {"name": "ISTIO_META_NETWORK", "value": config.network},
        ],
        "securityContext": {
            "runAsUser": PROXY_UID,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "istio-envoy", "mountPath": paths::PROXY_DIR},
            {"name": "istio-token", "mountPath": paths::TOKEN_DIR, "readOnly": true},
            {"name": "istiod-ca-cert", "mountPath": paths::ROOT_CERT_DIR, "readOnly": true},
        ],
    })
}

/// The volumes the two containers mount.
pub fn volumes() -> Vec<Value> {
    vec![
        json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}),
        json!({"name": "istio-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": TOKEN_AUDIENCE, "expirationSeconds": 43200, "path": "istio-token"}},
        ]}}),
        json!({"name": "istiod-ca-cert", "configMap": {"name": ROOT_CERT_CONFIGMAP}}),
    ]
}

/// The name of `pod`'s workload, as Istio's injector finds it: a Deployment's (the
/// ReplicaSet owning the pod, without its `pod-template-hash` suffix), another owner's
/// (StatefulSet, DaemonSet, Job, ...), else the pod's `generateName` or name.
pub fn workload_name(pod: &Pod) -> String {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|r| r.controller == Some(true)).or(o.first()));
    if let Some(owner) = owner {
        let hash = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"));
        if owner.kind == "ReplicaSet" {
            if let Some(deployment) = hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
                return deployment.to_string();
            }
        }
        return owner.name.clone();
    }
    meta.generate_name
        .as_deref()
        .map(|g| g.trim_end_matches('-').to_string())
        .or_else(|| meta.name.clone())
        .unwrap_or_default()
}

/// The annotations Prometheus scrapes a pod by (`prometheus.io/scrape`, `port`, `path`).
const PROMETHEUS_SCRAPE: &str = "prometheus.io/scrape";
const PROMETHEUS_PORT: &str = "prometheus.io/port";
const PROMETHEUS_PATH: &str = "prometheus.io/path";

/// The application's own metrics (`PORT/PATH`) its `prometheus.io` annotations name, when
/// it asks to be scraped.
fn app_metrics(annotations: &BTreeMap<String, String>) -> Option<String> {
    if annotations.get(PROMETHEUS_SCRAPE).map(String::as_str) == Some("false") {
        return None;
    }
    let port: u16 = annotations.get(PROMETHEUS_PORT)?.parse().ok()?;
    let path = annotations
        .get(PROMETHEUS_PATH)
        .map_or("metrics", |p| p.trim_start_matches('/'));
    Some(format!("{port}/{path}"))
}

/// The JSON patch (RFC 6902) that injects `pod`, or why it is left alone.
pub fn patch(pod: &Pod, config: &InjectionConfig) -> Result<Vec<Value>, Skip> {
    decide(pod)?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut ops = Vec::new();
    let add = |path: String, value: Value| json!({"op": "add", "path": path, "value": value});
    // After the pod's own init containers (see the module's notes).
    if spec.init_containers.as_ref().is_none_or(|c| c.is_empty()) {
        ops.push(add(
            "/spec/initContainers".into(),
            json!([init_container(config)]),
        ));
    } else {
        ops.push(add("/spec/initContainers/-".into(), init_container(config)));
    }
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let app = app_metrics(&annotations);
    ops.push(add(
        "/spec/containers/-".into(),
        proxy_container(config, &labels, &workload_name(pod), app.as_deref()),
    ));
    let vols = volumes();
    let names: Vec<String> = vols
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    if spec.volumes.as_ref().is_none_or(|v| v.is_empty()) {
        ops.push(add("/spec/volumes".into(), Value::Array(vols)));
    } else {
        for v in vols {
            ops.push(add("/spec/volumes/-".into(), v));
        }
    }
    let status = json!({
        "initContainers": [INIT_CONTAINER],
        "containers": [PROXY_CONTAINER],
        "volumes": names,
        "imagePullSecrets": null,
        "revision": "default",
    })
    .to_string();
    let canonical_name = labels
        .get("service.istio.io/canonical-name")
        .or_else(|| labels.get("app.kubernetes.io/name"))
        .or_else(|| labels.get("app"))
        .cloned()
        .or_else(|| {
            pod.metadata
                .generate_name
                .clone()
                .map(|g| g.trim_end_matches('-').to_string())
        })
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let canonical_revision = labels
        .get("service.istio.io/canonical-revision")
        .or_else(|| labels.get("app.kubernetes.io/version"))
        .or_else(|| labels.get("version"))
        .cloned()
        .unwrap_or_else(|| "latest".into());
    let mut new_labels = BTreeMap::from([
        ("security.istio.io/tlsMode".to_string(), "istio".to_string()),
        (
            "service.istio.io/canonical-name".to_string(),
            canonical_name,
        ),
        (
            "service.istio.io/canonical-revision".to_string(),
            canonical_revision,
        ),
    ]);
    new_labels.retain(|k, _| !labels.contains_key(k));
    if pod.metadata.labels.is_none() {
        ops.push(add("/metadata/labels".into(), json!(new_labels)));
    } else {
        for (k, v) in new_labels {
            ops.push(add(format!("/metadata/labels/{}", pointer(&k)), json!(v)));
        }
    }
    // Prometheus scrapes the agent's merged page (Envoy's stats, the workload metrics and
    // the app's own), as Istio's metrics merging does; a pod that opted out of scraping
    // keeps its annotations.
    let mut new_annotations = BTreeMap::from([(STATUS_ANNOTATION.to_string(), status)]);
    if annotations.get(PROMETHEUS_SCRAPE).map(String::as_str) != Some("false") {
        for (k, v) in [
            (PROMETHEUS_SCRAPE, "true"),
            (PROMETHEUS_PORT, "15020"),
            (PROMETHEUS_PATH, "/stats/prometheus"),
        ] {
            new_annotations.insert(k.to_string(), v.to_string());
        }
    }
    if pod.metadata.annotations.is_none() {
        ops.push(add("/metadata/annotations".into(), json!(new_annotations)));
    } else {
        for (k, v) in new_annotations {
            // `add` replaces a member that exists (RFC 6902 4.1).
            ops.push(add(
                format!("/metadata/annotations/{}", pointer(&k)),
                json!(v),
            ));
        }
    }
    Ok(ops)
}

/// Answers one AdmissionReview (v1) body: the patch for its Pod, an unchanged pod, or a
/// refusal naming what could not be read. The answer is an AdmissionReview with the
/// request's uid; a pod that cannot be read is allowed unchanged but the error is returned
/// too, for the log (refusing it would block a pod over a webhook fault). A pod that asks
/// for what Isthmus does not do ([`Skip::Unsupported`]) is denied with the reason, which
/// the API server shows to whoever created it.
pub fn review(
    body: &[u8],
    config: &InjectionConfig,
) -> Result<(Value, Result<Option<String>, Skip>), InjectError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| InjectError::Request(e.to_string()))?;
    let request = review
        .get("request")
        .ok_or_else(|| InjectError::Request("no `request`".into()))?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or_else(|| InjectError::Request("no `request.uid`".into()))?;
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("admission.k8s.io/v1");
    let mut pod: Pod =
        serde_json::from_value(request.get("object").cloned().unwrap_or_default())
            .map_err(|e| InjectError::Request(format!("`request.object` is not a Pod: {e}")))?;
    // A ReplicaSet's pod has no name yet, only its namespace in the request.
    if pod.metadata.namespace.is_none() {
        pod.metadata.namespace = request
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let outcome = patch(&pod, config);
    let mut response = json!({"uid": uid, "allowed": true});
    let result = match outcome {
        Ok(ops) => {
            use base64::Engine;
            let text = Value::Array(ops).to_string();
            response["patchType"] = json!("JSONPatch");
            response["patch"] =
                json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()));
            let who = pod
                .metadata
                .name
                .clone()
                .or_else(|| pod.metadata.generate_name.clone())
                .unwrap_or_default();
            Ok(Some(format!(
                "{}/{who}",
                pod.metadata.namespace.clone().unwrap_or_default()
            )))
        }
        Err(skip) => {
            if let Skip::Unsupported(_) = &skip {
                response["allowed"] = json!(false);
                response["status"] = json!({
                    "code": 400,
                    "reason": "BadRequest",
                    "message": format!("sidecar injection: {skip}"),
                });
            }
            Err(skip)
        }
    };
    Ok((
        json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response}),
        result,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> InjectionConfig {
        InjectionConfig {
            image: "ghcr.io/isthmus-mesh/isthmus:0.1.0".into(),
            cluster: "cluster1".into(),
            network: "network1".into(),
            trust_domain: "cluster.local".into(),
            control_plane: "istiod.istio-system.svc:15012".into(),
            scope_idle: 0,
        }
    }

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).expect("a pod")
    }

    /// The value after `flag` in a container's args.
    fn after(args: &[String], flag: &str) -> String {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag}"));
        args[i + 1].clone()
    }

    /// Applies a JSON patch of `add` operations (all injection makes) to `doc`.
    fn apply(doc: &mut Value, ops: &[Value]) {
        for op in ops {
            assert_eq!(op["op"], "add", "{op}");
            let path = op["path"].as_str().expect("path");
            let segments: Vec<String> = path[1..]
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            let (last, parents) = segments.split_last().expect("segments");
            let mut at = &mut *doc;
            for s in parents {
                at = at
                    .get_mut(s.as_str())
                    .unwrap_or_else(|| panic!("{path}: no {s}"));
            }
            let value = op["value"].clone();
            if last == "-" {
                at.as_array_mut().expect("array").push(value);
            } else {
                at.as_object_mut()
                    .expect("object")
                    .insert(last.clone(), value);
            }
        }
    }

    fn helloworld() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "helloworld-v1-5d8f-", "namespace": "sample",
                         "labels": {"app": "helloworld", "version": "v1"}},
            "spec": {"containers": [{"name": "helloworld", "image": "docker.io/istio/examples-helloworld-v1"}]}
        })
    }

    #[test]
    fn the_workload_is_named_after_its_deployment_and_prometheus_scrapes_the_merged_page() {
        let mut doc = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "reviews-v2-7d9f8c6b5-x2k9q", "namespace": "sample",
                         "labels": {"app": "reviews", "pod-template-hash": "7d9f8c6b5"},
                         "annotations": {"prometheus.io/port": "9080", "prometheus.io/path": "/stats"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "reviews-v2-7d9f8c6b5", "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "reviews", "image": "docker.io/istio/examples-bookinfo-reviews-v2"}]}
        });
        assert_eq!(workload_name(&pod(doc.clone())), "reviews-v2");
        let ops = patch(&pod(doc.clone()), &config()).expect("injected");
        apply(&mut doc, &ops);
        let injected = pod(doc);
        let args = injected.spec.expect("spec").containers[1]
            .args
            .clone()
            .expect("args");
        assert_eq!(after(&args, "--workload-name"), "reviews-v2");
        assert_eq!(after(&args, "--app-metrics"), "9080/stats");
        let annotations = injected.metadata.annotations.expect("annotations");
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "15020");
        assert_eq!(annotations["prometheus.io/path"], "/stats/prometheus");
        // A StatefulSet's pod, a pod of no owner, and one that opted out of scraping.
        let web = pod(json!({"metadata": {"name": "web-0", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u"}]}}));
        assert_eq!(workload_name(&web), "web");
        assert_eq!(workload_name(&pod(helloworld())), "helloworld-v1-5d8f");
        let off = BTreeMap::from([
            ("prometheus.io/scrape".to_string(), "false".to_string()),
            ("prometheus.io/port".to_string(), "9080".to_string()),
        ]);
        assert_eq!(app_metrics(&off), None);
    }

    #[test]
    fn a_pod_gets_istio_init_istio_proxy_volumes_labels_and_status() {
        let mut doc = helloworld();
        let ops = patch(&pod(doc.clone()), &config()).expect("injected");
        apply(&mut doc, &ops);
        let injected = pod(doc.clone());
        let spec = injected.spec.expect("spec");
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["helloworld", "istio-proxy"]);
        let init = spec.init_containers.expect("init");
        assert_eq!(init[0].name, "istio-init");
        assert_eq!(init[0].args.as_ref().expect("args")[0], "iptables");
        let proxy = &spec.containers[1];
        let args = proxy.args.clone().expect("args");
        assert_eq!(after(&args, "--cluster"), "cluster1");
        assert_eq!(after(&args, "--network"), "network1");
        assert_eq!(after(&args, "--pod"), "$(POD_NAME)");
        assert_eq!(after(&args, "--credential-file"), paths::TOKEN);
        assert!(args.contains(&"app=helloworld".to_string()));
        assert!(
            !args.contains(&"--scope-idle".to_string()),
            "no letting go unless the control plane says: {args:?}"
        );
        let idle = InjectionConfig {
            scope_idle: 600,
            ..config()
        };
        let mut again = helloworld();
        apply(
            &mut again,
            &patch(&pod(helloworld()), &idle).expect("injected"),
        );
        let again = pod(again).spec.expect("spec").containers[1]
            .args
            .clone()
            .expect("args");
        assert_eq!(after(&again, "--scope-idle"), "600");
        assert_eq!(
            proxy.security_context.as_ref().and_then(|s| s.run_as_user),
            Some(1337)
        );
        let vols: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(vols, ["istio-envoy", "istio-token", "istiod-ca-cert"]);
        let token = spec.volumes.as_ref().expect("volumes")[1]
            .projected
            .clone()
            .expect("projected");
        let sat = token.sources.expect("sources")[0]
            .service_account_token
            .clone()
            .expect("token");
        assert_eq!(sat.audience.as_deref(), Some("istio-ca"));
        let labels = injected.metadata.labels.expect("labels");
        assert_eq!(labels["security.istio.io/tlsMode"], "istio");
        assert_eq!(labels["service.istio.io/canonical-name"], "helloworld");
        assert_eq!(labels["service.istio.io/canonical-revision"], "v1");
        let status: Value = serde_json::from_str(
            &injected.metadata.annotations.expect("annotations")[STATUS_ANNOTATION],
        )
        .expect("status JSON");
        assert_eq!(status["containers"], json!(["istio-proxy"]));
        // Injecting the result again changes nothing.
        assert_eq!(patch(&pod(doc), &config()), Err(Skip::AlreadyInjected));
    }

    #[test]
    fn istio_init_comes_after_the_pods_own_init_containers() {
        let mut doc = helloworld();
        doc["spec"]["initContainers"] = json!([{"name": "migrate", "image": "app"}]);
        doc["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
        doc["metadata"]["annotations"] = json!({"a/b": "c"});
        let ops = patch(&pod(doc.clone()), &config()).expect("injected");
        apply(&mut doc, &ops);
        let names: Vec<&str> = doc["spec"]["initContainers"]
            .as_array()
            .expect("init")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["migrate", "istio-init"]);
        assert_eq!(doc["spec"]["volumes"].as_array().expect("volumes").len(), 4);
        assert_eq!(doc["metadata"]["annotations"]["a/b"], "c");
        assert!(doc["metadata"]["annotations"][STATUS_ANNOTATION].is_string());
    }

    #[test]
    fn opted_out_host_network_and_injected_pods_are_left_alone() {
        let mut doc = helloworld();
        doc["metadata"]["annotations"] = json!({INJECT_ANNOTATION: "false"});
        assert_eq!(patch(&pod(doc), &config()), Err(Skip::OptedOut));
        let mut doc = helloworld();
        doc["metadata"]["labels"][INJECT_ANNOTATION] = json!("false");
        assert_eq!(decide(&pod(doc)), Err(Skip::OptedOut));
        let mut doc = helloworld();
        doc["spec"]["hostNetwork"] = json!(true);
        assert_eq!(decide(&pod(doc)), Err(Skip::HostNetwork));
        let mut doc = helloworld();
        doc["metadata"]["annotations"] = json!({INJECT_ANNOTATION: "true"});
        assert_eq!(decide(&pod(doc)), Ok(()));
    }

    #[test]
    fn a_remote_clusters_path_names_its_cluster_and_network() {
        let c = config()
            .for_path("/inject/cluster/remote_kubecfg/net/network2")
            .expect("path");
        assert_eq!(
            (c.cluster.as_str(), c.network.as_str()),
            ("remote_kubecfg", "network2")
        );
        assert_eq!(config().for_path("/inject").expect("plain"), config());
        let remote = config()
            .for_path("/inject/cluster/remote/net/network2/discovery/198.18.1.1")
            .expect("path");
        assert_eq!(remote.control_plane, "198.18.1.1:15012");
        let other_port = config()
            .for_path("/inject/discovery/198.18.1.1/port/15013")
            .expect("path");
        assert_eq!(other_port.control_plane, "198.18.1.1:15013");
        assert!(config().for_path("/inject/port/15013").is_err());
        assert!(config().for_path("/inject/discovery/a/port/x").is_err());
        assert_eq!(remote.cluster, "remote");
        assert!(config().for_path("/inject/cluster").is_err());
        assert!(config().for_path("/mutate").is_err());
        assert!(config().for_path("/inject/zone/a").is_err());
    }

    #[test]
    fn a_review_answers_with_the_uid_and_a_base64_patch() {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "abc-123", "namespace": "sample", "object": helloworld()}
        });
        let (answer, outcome) = review(body.to_string().as_bytes(), &config()).expect("answered");
        assert_eq!(outcome, Ok(Some("sample/helloworld-v1-5d8f-".to_string())));
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], "abc-123");
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
        use base64::Engine;
        let patch = base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().expect("patch"))
            .expect("base64");
        let ops: Vec<Value> = serde_json::from_slice(&patch).expect("JSON patch");
        assert!(ops.iter().any(|o| o["value"]["name"] == "istio-proxy"));

        let mut opted = body.clone();
        opted["request"]["object"]["metadata"]["annotations"] = json!({INJECT_ANNOTATION: "false"});
        let (answer, outcome) = review(opted.to_string().as_bytes(), &config()).expect("answered");
        assert_eq!(outcome, Err(Skip::OptedOut));
        assert!(answer["response"].get("patch").is_none());
        assert_eq!(answer["response"]["allowed"], true);

        assert!(review(b"{}", &config()).is_err());
        assert!(review(b"not json", &config()).is_err());
    }

    #[test]
    fn istio_annotations_isthmus_does_not_implement_refuse_the_pod_with_their_names() {
        let mut doc = helloworld();
        doc["metadata"]["annotations"] = json!({
            "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
            "proxy.istio.io/config": "{}",
            "sidecar.istio.io/interceptionMode": "REDIRECT",
            "sidecar.istio.io/rewriteAppHTTPProbers": "false",
            "example.com/owner": "team-a",
        });
        let Err(Skip::Unsupported(what)) = decide(&pod(doc.clone())) else {
            panic!("not refused");
        };
        assert_eq!(
            what,
            vec![
                "annotation proxy.istio.io/config: \"{}\"".to_string(),
                "annotation traffic.sidecar.istio.io/excludeOutboundPorts: \"5432\"".to_string(),
            ]
        );
        // What Isthmus does anyway is accepted: REDIRECT capture, no probe rewrite.
        doc["metadata"]["annotations"] = json!({
            "sidecar.istio.io/interceptionMode": "REDIRECT",
            "sidecar.istio.io/rewriteAppHTTPProbers": "false",
            "example.com/owner": "team-a",
        });
        assert_eq!(decide(&pod(doc.clone())), Ok(()));
        doc["metadata"]["annotations"] = json!({"sidecar.istio.io/interceptionMode": "TPROXY"});
        assert!(matches!(
            decide(&pod(doc.clone())),
            Err(Skip::Unsupported(_))
        ));
        // An opted-out pod is not injected, so its annotations do not matter.
        doc["metadata"]["annotations"] = json!({
            INJECT_ANNOTATION: "false",
            "sidecar.istio.io/proxyCPU": "100m",
        });
        assert_eq!(decide(&pod(doc)), Err(Skip::OptedOut));

        // The review denies the pod, with the names, for whoever created it.
        let mut object = helloworld();
        object["metadata"]["annotations"] = json!({"sidecar.istio.io/proxyMemory": "1Gi"});
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "namespace": "sample", "object": object}
        });
        let (answer, outcome) = review(body.to_string().as_bytes(), &config()).expect("answered");
        assert!(matches!(outcome, Err(Skip::Unsupported(_))));
        assert_eq!(answer["response"]["allowed"], false);
        assert!(answer["response"].get("patch").is_none());
        assert_eq!(
            answer["response"]["status"]["message"],
            "sidecar injection: annotation sidecar.istio.io/proxyMemory: \"1Gi\" (not supported by Isthmus)"
        );
    }
}
